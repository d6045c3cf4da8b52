//! The planner's device memory (`engine::device_memory`) against what the GPU backend
//! allocates: dense, MoE and MLA fixtures and the two real models, whole and split, within 5% of
//! `GpuModel::device_bytes` (weights as uploaded, one state's KV caches and work buffers);
//! and the layer count that fits a budget. Runs on any Vulkan adapter (lavapipe in CI).

#![cfg(feature = "gpu")]

use std::path::PathBuf;
use std::sync::Arc;

use engine::device_memory::{device_plan, layers_that_fit, DeviceWeights};
use engine::memory::ModelShape;
use gguf::GgufFile;
use models::Model;

fn device() -> gpu::GpuDevice {
    gpu::GpuDevice::open(gpu::BackendKind::Any).unwrap_or_else(|e| {
        panic!("these tests need a GPU adapter: {e} (in CI: apt-get install mesa-vulkan-drivers)")
    })
}

fn check(path: PathBuf, seq: usize, dev: &gpu::GpuDevice) {
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let shape = ModelShape::from_gguf(&file).unwrap();
    let w = DeviceWeights::from_gguf(&file, shape.n_layer);
    let model = Model::load(file).unwrap();
    let n_layer = shape.n_layer;
    for layers in [None, Some(n_layer / 2).filter(|&n| n > 0)] {
        let g =
            gpu::GpuModel::load_layers(&model, dev.clone(), layers.map(|n| n as usize)).unwrap();
        let state = g.new_state(seq).unwrap();
        let got = g.device_bytes();
        drop(state);
        let plan = device_plan(&shape, &w, layers, seq as u64, 1);
        let name = path.file_name().unwrap().to_string_lossy();
        let err = (plan.total() as f64 - got as f64).abs() / got as f64;
        eprintln!(
            "{name} {layers:?}: planned {}, allocated {got} ({:.1}%)",
            plan.total(),
            err * 100.0
        );
        assert!(
            err <= 0.05,
            "{name} {layers:?} layers at {seq}: planned {plan:?} = {}, allocated {got}",
            plan.total()
        );
    }
}

#[test]
fn planned_device_bytes_are_what_the_gpu_allocates() {
    let dev = device();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data");
    for name in [
        "llama",
        "llama-q8_0",
        "qwen2",
        "gemma3",
        "phi3-swa",
        "gptneox",
        "qwen2moe",
        "deepseek2",
        "deepseek2-v3",
        "deepseek2-kvb",
    ] {
        check(data.join(format!("{name}.gguf")), 700, &dev);
    }
    let cache = std::env::var_os("TORCHLESS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/torchless")
        });
    for f in ["smollm2-135m-instruct-q4_1.gguf", "gemma3-270m-q4_k_m.gguf"] {
        let p = cache.join("models").join(f);
        assert!(
            p.is_file(),
            "{} is missing: run scripts/fetch-models.sh",
            p.display()
        );
        check(p, 4096, &dev);
    }
}

#[test]
fn layers_that_fit_a_budget() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/tests/data");
    let file = GgufFile::open(data.join("gemma2-pattern3.gguf")).unwrap();
    let shape = ModelShape::from_gguf(&file).unwrap();
    let w = DeviceWeights::from_gguf(&file, shape.n_layer);
    let plans: Vec<u64> = (0..=shape.n_layer)
        .map(|n| device_plan(&shape, &w, Some(n), 256, 1).total())
        .collect();
    assert_eq!(plans[0], 0);
    assert!(plans.windows(2).all(|p| p[0] < p[1]), "{plans:?}");
    assert_eq!(
        device_plan(&shape, &w, None, 256, 1),
        device_plan(&shape, &w, Some(shape.n_layer), 256, 1)
    );
    for (n, &bytes) in plans.iter().enumerate() {
        assert_eq!(layers_that_fit(&shape, &w, bytes, 256, 1), n as u64);
        if n > 0 {
            assert_eq!(layers_that_fit(&shape, &w, bytes - 1, 256, 1), n as u64 - 1);
        }
    }
    // Two sequences' caches take twice the KV bytes.
    let (one, two) = (
        device_plan(&shape, &w, None, 256, 1),
        device_plan(&shape, &w, None, 256, 2),
    );
    assert_eq!(two.kv_bytes, 2 * one.kv_bytes);
}
