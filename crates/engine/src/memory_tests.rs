use gguf::{GgmlType, GgufFile, GgufWriter, Value};

use super::*;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

#[test]
fn kv_formula_matches_the_worked_numbers() {
    // Mistral 7B: 32 layers, 8 KV heads, head dim 128, 32k tokens in f16.
    assert_eq!(
        kv_cache_bytes(32, 8, 128, 128, 32_768, KvDtype::F16),
        4 * GIB
    );
    // LLaMA 3 8B at 8k: the same attention shape.
    assert_eq!(kv_cache_bytes(32, 8, 128, 128, 8_192, KvDtype::F16), GIB);
    assert_eq!(
        kv_cache_bytes(32, 8, 128, 128, 8_192, KvDtype::F32),
        2 * GIB
    );
    // SmolLM2-135M: 30 layers, 3 KV heads, head dim 64.
    assert_eq!(kv_cache_bytes(30, 3, 64, 64, 4096, KvDtype::F16), 90 * MIB);
}

/// Metadata of a model with `(key, value)` pairs under its architecture, no tensors.
fn meta(arch: &str, keys: &[(&str, u64)]) -> gguf::Metadata {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String(arch.into()))
        .unwrap();
    for &(k, v) in keys {
        w.add(format!("{arch}.{k}"), Value::U32(v as u32)).unwrap();
    }
    w.metadata().clone()
}

fn mistral_7b() -> ModelShape {
    let md = meta(
        "llama",
        &[
            ("block_count", 32),
            ("embedding_length", 4096),
            ("attention.head_count", 32),
            ("attention.head_count_kv", 8),
            ("feed_forward_length", 14336),
            ("context_length", 32768),
        ],
    );
    ModelShape::from_metadata(&md, 32000).unwrap()
}

#[test]
fn shapes_from_metadata_give_the_formula() {
    let s = mistral_7b();
    assert_eq!(s.kv_bytes(32_768, KvDtype::F16), 4 * GIB);
    assert_eq!(s.kv_bytes(32_768, KvDtype::F32), 8 * GIB);
    // LLaMA 3 8B differs only in vocabulary and context; its KV at 8k is 1 GiB.
    assert_eq!(s.kv_bytes(8_192, KvDtype::F16), GIB);
    assert_eq!(
        s.kv_bytes_windowed(8_192, KvDtype::F16),
        GIB,
        "no sliding window"
    );
}

#[test]
fn mla_caches_the_latent_and_rope_part_only() {
    // The deepseek2 fixture: llama.cpp reports K (f32) 0.12 MiB, V 0 for 256 cells x 3 layers.
    let md = meta(
        "deepseek2",
        &[
            ("block_count", 3),
            ("embedding_length", 64),
            ("attention.head_count", 4),
            ("attention.head_count_kv", 1),
            ("attention.key_length", 40),
            ("attention.value_length", 32),
            ("attention.kv_lora_rank", 32),
            ("attention.key_length_mla", 24),
            ("attention.value_length_mla", 16),
            ("rope.dimension_count", 8),
            ("context_length", 128),
            ("expert_count", 8),
            ("expert_used_count", 2),
            ("expert_feed_forward_length", 32),
            ("expert_shared_count", 1),
            ("feed_forward_length", 128),
        ],
    );
    let s = ModelShape::from_metadata(&md, 360).unwrap();
    assert_eq!(
        s.kv,
        KvLayout::Latent {
            kv_lora_rank: 32,
            n_rot: 8
        }
    );
    assert_eq!(s.kv_bytes(256, KvDtype::F32), 3 * 40 * 256 * 4);
    // DeepSeek-V2-Lite: 27 layers, rank 512 + 64 rope dims, f16: 31,104 bytes per token.
    let lite = meta(
        "deepseek2",
        &[
            ("block_count", 27),
            ("embedding_length", 2048),
            ("attention.head_count", 16),
            ("attention.kv_lora_rank", 512),
            ("attention.key_length_mla", 192),
            ("attention.value_length_mla", 128),
            ("rope.dimension_count", 64),
            ("context_length", 163_840),
        ],
    );
    let s = ModelShape::from_metadata(&lite, 102_400).unwrap();
    assert_eq!(s.kv_bytes(1, KvDtype::F16), 31_104);
    assert_eq!(s.kv_bytes(32_768, KvDtype::F16), 31_104 * 32_768);
    // MoE: the widest FFN activation is the dense one here (128 > 2 x 32 + 32).
    assert_eq!((s.n_expert, s.n_ff), (0, 8192));
}

#[test]
fn sliding_window_layers_are_reported_not_assumed() {
    // Gemma 3 270M: 18 layers, 1 KV head of 256, window 512 on 5 of every 6 layers.
    let md = meta(
        "gemma3",
        &[
            ("block_count", 18),
            ("embedding_length", 640),
            ("attention.head_count", 4),
            ("attention.head_count_kv", 1),
            ("attention.key_length", 256),
            ("attention.value_length", 256),
            ("attention.sliding_window", 512),
            ("feed_forward_length", 2048),
            ("context_length", 32768),
        ],
    );
    let s = ModelShape::from_metadata(&md, 262_144).unwrap();
    assert_eq!(s.swa_layers.iter().filter(|&&b| b).count(), 15);
    let per_pos = 512 * 2; // (256 + 256) values of 2 bytes
    assert_eq!(s.kv_bytes(4096, KvDtype::F16), 18 * 4096 * per_pos);
    // llama.cpp's SWA cache: window 512 + micro-batch 512, padded to 256 = 1024 cells.
    assert_eq!(
        s.kv_bytes_windowed(4096, KvDtype::F16),
        3 * 4096 * per_pos + 15 * 1024 * per_pos
    );
    assert_eq!(s.kv_bytes_windowed(4096, KvDtype::F16), 27 << 20);
    // Up to the ring size the two agree.
    for seq in [300, 1024] {
        assert_eq!(
            s.kv_bytes_windowed(seq, KvDtype::F16),
            s.kv_bytes(seq, KvDtype::F16)
        );
    }
}

/// A small llama GGUF with an MoE layer: 2 experts of [64 x 32] F16, norms F32.
fn moe_file() -> GgufFile {
    let mut w = GgufWriter::new();
    let mut put = |k: &str, v: u32| w.add(format!("llama.{k}"), Value::U32(v)).unwrap();
    put("block_count", 1);
    put("embedding_length", 64);
    put("attention.head_count", 4);
    put("context_length", 256);
    put("feed_forward_length", 32);
    put("expert_count", 2);
    put("expert_used_count", 1);
    w.add("general.architecture", Value::String("llama".into()))
        .unwrap();
    let f16 = |n: u64| vec![0u8; (n * 2) as usize];
    let f32v = |n: u64| vec![0u8; (n * 4) as usize];
    w.add_tensor("token_embd.weight", &[64, 100], GgmlType::F16, f16(6400))
        .unwrap();
    w.add_tensor("output_norm.weight", &[64], GgmlType::F32, f32v(64))
        .unwrap();
    w.add_tensor("blk.0.attn_norm.weight", &[64], GgmlType::F32, f32v(64))
        .unwrap();
    w.add_tensor("blk.0.attn_q.weight", &[64, 64], GgmlType::F16, f16(4096))
        .unwrap();
    w.add_tensor(
        "blk.0.ffn_up_exps.weight",
        &[64, 32, 2],
        GgmlType::F16,
        f16(4096),
    )
    .unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    GgufFile::from_bytes(bytes).unwrap()
}

#[test]
fn weights_come_from_the_tensor_directory() {
    let f = moe_file();
    let w = WeightStats::from_gguf(&f);
    assert_eq!(w.data_bytes, 12_800 + 256 + 256 + 8192 + 8192);
    assert_eq!(w.decoded_bytes, 2 * 64 * 4);
    // Lazy holds one expert of the stacked tensor at a time (eager keeps them all: it is
    // in data_bytes).
    assert_eq!(w.largest_layer_bytes, 8192 + 8192 / 2);
    assert_eq!((w.expert_bytes, w.expert_params), (8192, 64 * 32 * 2));
    assert_eq!(w.active_expert_bytes(1, 2), 4096);
    assert_eq!(w.active_params(1, 2), w.total_params - 64 * 32);
    assert_eq!(w.output_bytes, 12_800, "tied to the embedding");
    assert_eq!(w.header_bytes, f.file_size() - w.data_bytes);
    let p = Planner::from_gguf(&f).unwrap();
    assert_eq!(p.shape.n_expert, 2);
    let eager = p.plan(LoadMode::Eager, 128, KvDtype::F16);
    let lazy = p.plan(LoadMode::Lazy, 128, KvDtype::F16);
    assert_eq!(eager.weights_bytes, w.data_bytes + w.decoded_bytes);
    // The output chunk (12 800 bytes) outweighs the layer (8192 + one expert of 4096).
    assert_eq!(lazy.weights_bytes, w.decoded_bytes + 12_800);
    // 1 layer x 4 KV heads x (16 + 16) x 128 positions x 2 bytes.
    assert_eq!(eager.kv_bytes, 4 * 32 * 128 * 2);
    assert_eq!(eager.kv_bytes, lazy.kv_bytes);
    assert_eq!(
        eager.total(),
        eager.weights_bytes + eager.kv_bytes + eager.scratch_bytes + eager.overhead_bytes
    );
}

fn planner() -> Planner {
    Planner {
        shape: mistral_7b(),
        weights: WeightStats {
            data_bytes: 4 * GIB,
            header_bytes: MIB,
            decoded_bytes: MIB,
            largest_layer_bytes: 100 * MIB,
            total_params: 0,
            expert_params: 0,
            expert_bytes: 0,
            output_bytes: 70 * MIB,
        },
        all_logits: false,
        slots: 1,
    }
}

#[test]
fn all_logits_adds_a_row_of_logits_per_position() {
    let mut p = planner();
    let one = p.plan(LoadMode::Lazy, 512, KvDtype::F16);
    p.all_logits = true;
    let all = p.plan(LoadMode::Lazy, 512, KvDtype::F16);
    assert_eq!(all.scratch_bytes - one.scratch_bytes, 511 * 32_000 * 4);
    assert_eq!(all.kv_bytes, one.kv_bytes);
}

fn avail(bytes: u64) -> Option<Available> {
    Some(Available {
        bytes,
        source: "test".into(),
    })
}

#[test]
fn auto_prefers_eager_when_it_fits_comfortably() {
    let p = planner();
    let d = decide(&p, LoadMode::Auto, 4096, KvDtype::F16, avail(64 * GIB)).unwrap();
    assert_eq!(d.mode, LoadMode::Eager);
    assert!(d.reason.starts_with("eager"), "{}", d.reason);
    // Eager fits, but not with 20% to spare: lazy.
    let tight = (d.eager.total() as f64 / 0.9) as u64;
    let d = decide(&p, LoadMode::Auto, 4096, KvDtype::F16, avail(tight)).unwrap();
    assert_eq!(d.mode, LoadMode::Lazy);
    assert!(d.reason.contains("eager would need"), "{}", d.reason);
    // Unknown memory: lazy, the safe choice.
    let d = decide(&p, LoadMode::Auto, 4096, KvDtype::F16, None).unwrap();
    assert_eq!(d.mode, LoadMode::Lazy);
    // Explicit eager on a tight machine goes ahead with a warning.
    let d = decide(&p, LoadMode::Eager, 4096, KvDtype::F16, avail(2 * GIB)).unwrap();
    assert_eq!(d.mode, LoadMode::Eager);
    assert!(d.warning.unwrap().contains("--load lazy"));
}

#[test]
fn refusal_names_need_availability_and_the_flags_that_fit() {
    let p = planner();
    let budget = GIB;
    let err = decide(&p, LoadMode::Auto, 32_768, KvDtype::F32, avail(budget)).unwrap_err();
    assert!(err.starts_with("not enough memory"), "{err}");
    assert!(err.contains("1.00 GiB is available (test)"), "{err}");
    let fit = p.max_fitting_seq_len(LoadMode::Lazy, KvDtype::F32, budget, 32_768);
    assert!(fit > 0 && fit < 32_768);
    assert!(p.plan(LoadMode::Lazy, fit, KvDtype::F32).total() <= budget);
    assert!(p.plan(LoadMode::Lazy, fit + 1, KvDtype::F32).total() > budget);
    assert!(
        err.contains(&format!("--max-seq-len {fit} --load lazy")),
        "{err}"
    );
    let fit16 = p.max_fitting_seq_len(LoadMode::Lazy, KvDtype::F16, budget, 32_768);
    assert!(fit16 > fit);
    assert!(
        err.contains(&format!("--kv-dtype f16 --max-seq-len {fit16}")),
        "{err}"
    );
    // Nothing fits in 1 MiB, not even one token.
    let err = decide(&p, LoadMode::Lazy, 16, KvDtype::F16, avail(MIB)).unwrap_err();
    assert!(
        err.contains("does not fit even with a 1-token context"),
        "{err}"
    );
}

#[test]
fn load_modes_parse() {
    assert_eq!("Eager".parse::<LoadMode>(), Ok(LoadMode::Eager));
    assert_eq!("lazy".parse::<LoadMode>(), Ok(LoadMode::Lazy));
    assert_eq!("auto".parse::<LoadMode>(), Ok(LoadMode::Auto));
    assert!("mmap"
        .parse::<LoadMode>()
        .unwrap_err()
        .contains("eager, lazy or auto"));
}

#[test]
fn absurd_metadata_saturates_instead_of_panicking() {
    let md = meta(
        "llama",
        &[
            ("block_count", models::MAX_LAYERS),
            ("embedding_length", u32::MAX as u64),
            ("attention.head_count", 1),
            ("feed_forward_length", u32::MAX as u64),
            ("context_length", u32::MAX as u64),
        ],
    );
    let s = ModelShape::from_metadata(&md, u32::MAX as u64).unwrap();
    // More layers than any model: refused before anything is allocated per layer.
    let many = meta(
        "llama",
        &[
            ("block_count", u32::MAX as u64),
            ("embedding_length", 8),
            ("attention.head_count", 1),
            ("context_length", 8),
        ],
    );
    let e = ModelShape::from_metadata(&many, 8).unwrap_err();
    assert!(
        e.contains("llama.block_count") && e.contains("4294967295"),
        "{e}"
    );
    let p = Planner {
        shape: s,
        weights: WeightStats::default(),
        all_logits: true,
        slots: 1,
    };
    let plan = p.plan(LoadMode::Eager, u64::MAX, KvDtype::F32);
    assert_eq!(plan.kv_bytes, u64::MAX);
    assert_eq!(plan.total(), u64::MAX);
    let err = decide(&p, LoadMode::Auto, u64::MAX / 2, KvDtype::F16, avail(GIB)).unwrap_err();
    assert!(err.contains("not enough memory"), "{err}");
}

#[test]
fn server_slots_multiply_the_kv_cache() {
    let mut p = planner();
    let one = p.plan(LoadMode::Eager, 4096, KvDtype::F16);
    p.slots = 4;
    let four = p.plan(LoadMode::Eager, 4096, KvDtype::F16);
    assert_eq!(four.kv_bytes, 4 * one.kv_bytes);
    assert_eq!(four.weights_bytes, one.weights_bytes);
}
