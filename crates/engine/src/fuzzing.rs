//! The property checked by the `model` fuzz target (`fuzz/fuzz_targets/model.rs`) and by the
//! seed-corpus test in normal `cargo test`: a tiny model whose hyperparameters and tensor
//! shapes are rewritten from arbitrary bytes never panics, hangs or allocates from a metadata
//! number, in the memory planner, in model setup, or in a first forward step.

use std::sync::Arc;

use gguf::GgmlType;
use gguf::{GgufFile, GgufWriter, Value};

/// Keys the fuzzer may set (after `{arch}.`).
const KEYS: &[&str] = &[
    "block_count",
    "embedding_length",
    "feed_forward_length",
    "context_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.sliding_window",
    "attention.sliding_window_pattern",
    "attention.kv_lora_rank",
    "attention.q_lora_rank",
    "attention.key_length_mla",
    "attention.value_length_mla",
    "rope.dimension_count",
    "rope.scaling.original_context_length",
    "expert_count",
    "expert_used_count",
    "expert_feed_forward_length",
    "expert_shared_count",
    "expert_shared_feed_forward_length",
    "expert_group_count",
    "expert_group_used_count",
    "expert_gating_func",
    "leading_dense_block_count",
    "vocab_size",
];

/// Reads the fuzz input as a little program of edits.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u64(&mut self) -> Option<u64> {
        // Small values are the interesting ones most of the time; sometimes a full 64 bits.
        let tag = self.u8()?;
        Some(match tag % 4 {
            0 => u64::from(self.u8()? % 16),
            1 => u64::from(self.u8()?) * 8,
            2 => 1u64 << (self.u8()? % 64),
            _ => {
                let mut v = 0u64;
                for _ in 0..8 {
                    v = v << 8 | u64::from(self.u8().unwrap_or(0));
                }
                v
            }
        })
    }
}

/// A tiny llama-shaped model (2 layers, n_embd 8, 4 heads of 2, 2 KV heads, vocab 16) under
/// architecture `arch`, with metadata and tensor dims edited as `data` says.
pub fn model_from_bytes(data: &[u8]) -> Option<Vec<u8>> {
    let mut b = Bytes(data);
    let archs = models::supported_archs();
    let arch = archs[usize::from(b.u8().unwrap_or(0)) % archs.len()];
    let mut kv: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (format!("{arch}.block_count"), Value::U32(2)),
        (format!("{arch}.embedding_length"), Value::U32(8)),
        (format!("{arch}.feed_forward_length"), Value::U32(16)),
        (format!("{arch}.context_length"), Value::U32(64)),
        (format!("{arch}.attention.head_count"), Value::U32(4)),
        (format!("{arch}.attention.head_count_kv"), Value::U32(2)),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        (
            format!("{arch}.attention.layer_norm_epsilon"),
            Value::F32(1e-5),
        ),
    ];
    let mut tensors: Vec<(String, Vec<u64>)> = vec![
        ("token_embd.weight".into(), vec![8, 16]),
        ("output_norm.weight".into(), vec![8]),
    ];
    for il in 0..2 {
        for (n, d) in [
            ("attn_norm.weight", vec![8]),
            ("attn_q.weight", vec![8, 8]),
            ("attn_k.weight", vec![8, 4]),
            ("attn_v.weight", vec![8, 4]),
            ("attn_output.weight", vec![8, 8]),
            ("ffn_norm.weight", vec![8]),
            ("ffn_gate.weight", vec![8, 16]),
            ("ffn_up.weight", vec![8, 16]),
            ("ffn_down.weight", vec![16, 8]),
        ] {
            tensors.push((format!("blk.{il}.{n}"), d));
        }
    }
    // Edits: 0-3 set a key (various integer types), 4 drops a key, 5 changes a tensor dim,
    // 6 adds a stacked-expert tensor, 7 adds a layer's worth of a tensor.
    // An edit cut short by the end of the input is dropped.
    while let Some(()) = edit(&mut b, arch, &mut kv, &mut tensors) {}
    build(&kv, &tensors)
}

fn edit(
    b: &mut Bytes,
    arch: &str,
    kv: &mut Vec<(String, Value)>,
    tensors: &mut Vec<(String, Vec<u64>)>,
) -> Option<()> {
    let op = b.u8()?;
    {
        let key = format!("{arch}.{}", KEYS[usize::from(b.u8()?) % KEYS.len()]);
        match op % 8 {
            0 => kv.push((key, Value::U32(b.u64()? as u32))),
            1 => kv.push((key, Value::U64(b.u64()?))),
            2 => kv.push((key, Value::I32((b.u64()? as i32).wrapping_neg()))),
            3 => kv.push((
                key,
                Value::Array((0..b.u8()? % 8).map(|i| Value::Bool(i % 2 == 0)).collect()),
            )),
            4 => kv.retain(|(k, _)| *k != key),
            5 => {
                let i = usize::from(b.u8()?) % tensors.len();
                let d = usize::from(b.u8()?) % tensors[i].1.len();
                tensors[i].1[d] = b.u64()? % 64;
            }
            6 => {
                let n = b.u64()? % 9;
                tensors.push(("blk.0.ffn_up_exps.weight".into(), vec![8, 16, n]));
            }
            _ => {
                let il = b.u64()? % 8;
                tensors.push((format!("blk.{il}.attn_norm.weight"), vec![8]));
            }
        }
    }
    Some(())
}

fn build(kv: &[(String, Value)], tensors: &[(String, Vec<u64>)]) -> Option<Vec<u8>> {
    let mut w = GgufWriter::new();
    // Later edits of a key win.
    for (i, (k, v)) in kv.iter().enumerate() {
        if !kv[i + 1..].iter().any(|(k2, _)| k2 == k) {
            w.add(k.clone(), v.clone()).ok()?;
        }
    }
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, d)| {
            let n: u64 = d.iter().product();
            vec![0u8; (n as usize) * 4]
        })
        .collect();
    for ((name, dims), bytes) in tensors.iter().zip(&data) {
        w.add_tensor(name.clone(), dims, GgmlType::F32, bytes)
            .ok()?;
    }
    let mut out = Vec::new();
    w.write_to(&mut out).ok()?;
    Some(out)
}

/// Plans, loads and runs one step of the model [`model_from_bytes`] makes. Returns whether it
/// loaded. Panics (the finding) only on a bug: errors are fine, and must be one line.
pub fn check_model(data: &[u8]) -> bool {
    let Some(bytes) = model_from_bytes(data) else {
        return false;
    };
    let Ok(file) = GgufFile::from_bytes(&bytes) else {
        return false;
    };
    if let Ok(p) = crate::memory::Planner::from_gguf(&file) {
        for mode in [crate::LoadMode::Eager, crate::LoadMode::Lazy] {
            let plan = p.plan(mode, 64, models::KvDtype::F16);
            let _ = crate::memory::decide(&p, mode, 64, models::KvDtype::F16, None);
            let _ = plan.total();
        }
    } else if let Err(e) = crate::memory::Planner::from_gguf(&file) {
        assert!(!e.contains('\n'), "{e}");
    }
    match models::Model::load(Arc::new(file)) {
        Ok(m) => {
            let mut st = m.new_state(8, models::KvDtype::F16);
            let _ = m.forward(&mut st, &[1, 2], 0, false);
            true
        }
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "{e}");
            false
        }
    }
}
