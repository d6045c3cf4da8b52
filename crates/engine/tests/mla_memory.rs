//! The planner's KV figure for multi-head latent attention (`KvLayout::Latent`:
//! `kv_lora_rank + n_rot` elements per position and layer) is what `models` allocates.

use std::path::PathBuf;
use std::sync::Arc;

use engine::memory::{KvLayout, ModelShape};
use gguf::GgufFile;
use models::{KvDtype, Model};

#[test]
fn planner_kv_bytes_equal_the_latent_caches_models_allocates() {
    // The older attn_kv_b layout caches per-head keys (nope + rope) and values instead.
    let kvb = KvLayout::Heads {
        n_head_kv: 4,
        head_dim_k: 24,
        head_dim_v: 16,
    };
    let latent = KvLayout::Latent {
        kv_lora_rank: 32,
        n_rot: 8,
    };
    for (name, layout) in [
        ("deepseek2-dense", latent),
        ("deepseek2-lite-dense", latent),
        ("deepseek2", latent),
        ("deepseek2-kvb", kvb),
    ] {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models/tests/data")
            .join(format!("{name}.gguf"));
        let file = Arc::new(GgufFile::open(p).unwrap());
        let shape = ModelShape::from_gguf(&file).unwrap();
        assert_eq!(shape.kv, layout, "{name}");
        let model = Model::load(file).unwrap();
        for len in [1usize, 24, 128, 1000, 32768] {
            for kv in [KvDtype::F16, KvDtype::F32] {
                let state = model.new_state(len, kv);
                assert_eq!(
                    state.kv_bytes() as u64,
                    shape.kv_bytes(len as u64, kv),
                    "{name} {len} {kv:?}"
                );
                assert_eq!(
                    state.kv_bytes() as u64,
                    shape.kv_bytes_windowed(len as u64, kv)
                );
            }
        }
    }
}
