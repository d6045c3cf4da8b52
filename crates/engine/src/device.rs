//! Where the forward pass runs: the CPU (today's kernels, bit-exact with llama.cpp's CPU
//! build) or a GPU through wgpu (`gpu` crate: Vulkan, Metal, DX12), chosen by
//! [`Backend`] in `LoadOptions`.

use std::str::FromStr;
#[cfg(feature = "gpu")]
use std::sync::Arc;

#[cfg(feature = "gpu")]
pub use gpu::{list_adapters, AdapterSummary};

use crate::error::EngineError;
#[cfg(feature = "gpu")]
use crate::session::LogitsSource;

/// Which GPU API `--backend` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuApi {
    /// The best adapter of any API.
    Any,
    Vulkan,
    Metal,
    Dx12,
}

#[cfg(feature = "gpu")]
impl From<GpuApi> for gpu::BackendKind {
    fn from(a: GpuApi) -> gpu::BackendKind {
        match a {
            GpuApi::Any => gpu::BackendKind::Any,
            GpuApi::Vulkan => gpu::BackendKind::Vulkan,
            GpuApi::Metal => gpu::BackendKind::Metal,
            GpuApi::Dx12 => gpu::BackendKind::Dx12,
        }
    }
}

/// The `--backend` choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// The CPU kernels (the default: the same tokens as llama.cpp's CPU build).
    #[default]
    Cpu,
    /// A hardware GPU if one is usable for this model, else the CPU.
    Auto,
    /// A GPU through this API; an error when none is usable.
    Gpu(GpuApi),
}

/// Names `--backend` takes. CUDA, ROCm and OpenCL are reached through wgpu's Vulkan (or
/// Metal/DX12) driver rather than those APIs.
pub const BACKEND_NAMES: &str = "auto, cpu, gpu, vulkan, metal, dx12, cuda, rocm, opencl";

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "cpu" => Backend::Cpu,
            "auto" => Backend::Auto,
            "gpu" | "cuda" | "rocm" | "opencl" => Backend::Gpu(GpuApi::Any),
            "vulkan" => Backend::Gpu(GpuApi::Vulkan),
            "metal" => Backend::Gpu(GpuApi::Metal),
            "dx12" => Backend::Gpu(GpuApi::Dx12),
            _ => {
                return Err(format!(
                    "unknown backend {s:?} (expected one of: {BACKEND_NAMES})"
                ))
            }
        })
    }
}

/// The model's weights on a GPU (a stand-in when built without the `gpu` feature).
#[cfg(feature = "gpu")]
pub(crate) type GpuModel = gpu::GpuModel;
#[cfg(not(feature = "gpu"))]
pub(crate) enum GpuModel {}

/// Without the `gpu` feature: the CPU, or an error for an explicit GPU.
#[cfg(not(feature = "gpu"))]
pub(crate) fn open(
    backend: Backend,
    _gpu_layers: Option<usize>,
    _session: (u64, u64),
    _model: &models::Model,
) -> Result<(Option<std::sync::Arc<GpuModel>>, String), EngineError> {
    match backend {
        Backend::Cpu => Ok((None, "CPU".into())),
        Backend::Auto => Ok((None, "CPU (built without GPU support)".into())),
        Backend::Gpu(_) => Err(EngineError::Backend(
            "this build has no GPU support (the engine's `gpu` feature is off)".into(),
        )),
    }
}

/// Opens the GPU `backend` asks for and uploads `model` to it, all of it or its first
/// `gpu_layers` layers (the rest then run on the CPU). Without `gpu_layers`, where the
/// adapter reports its memory, as many layers as fit in it with `slots` KV caches of
/// `max_seq_len` positions (`device_memory`). `Ok(None)`: run on the CPU (asked for, no layer
/// on the GPU, or `Auto` found nothing usable; the reason is in the second value).
#[cfg(feature = "gpu")]
pub(crate) fn open(
    backend: Backend,
    gpu_layers: Option<usize>,
    (max_seq_len, slots): (u64, u64),
    model: &models::Model,
) -> Result<(Option<Arc<gpu::GpuModel>>, String), EngineError> {
    let (kind, auto) = match backend {
        Backend::Cpu => return Ok((None, "CPU".into())),
        _ if gpu_layers == Some(0) => return Ok((None, "CPU (--gpu-layers 0)".into())),
        Backend::Auto => (gpu::BackendKind::Any, true),
        Backend::Gpu(api) => (api.into(), false),
    };
    let opts = gpu::DeviceOptions {
        hardware_only: auto,
        ..Default::default()
    };
    let dev = match gpu::GpuDevice::open_with(kind, opts) {
        Ok(d) => d,
        Err(e) if auto => return Ok((None, format!("CPU (no GPU: {e})"))),
        Err(e) => return Err(EngineError::Backend(e.to_string())),
    };
    let name = format!("{} ({})", dev.adapter().name, dev.adapter().backend);
    let mut why = String::new();
    let gpu_layers = match (gpu_layers, dev.adapter().memory) {
        (None, Some(mem)) => {
            let fit = fitting_layers(model, mem, max_seq_len, slots);
            match fit {
                Some((0, need)) => {
                    let msg = format!(
                        "{name}: not even one layer fits in its {} of memory (all of them need {})",
                        crate::memory::fmt_bytes(mem),
                        crate::memory::fmt_bytes(need)
                    );
                    return if auto {
                        Ok((None, format!("CPU ({msg})")))
                    } else {
                        Err(EngineError::Backend(msg))
                    };
                }
                Some((n, need)) => {
                    why = format!(
                        " (all of them need {} of device memory, it has {})",
                        crate::memory::fmt_bytes(need),
                        crate::memory::fmt_bytes(mem)
                    );
                    Some(n as usize)
                }
                None => None,
            }
        }
        (n, _) => n,
    };
    match gpu::GpuModel::load_layers(model, dev, gpu_layers) {
        Ok(m) if m.gpu_layers() < m.n_layer() => {
            let split = format!(
                "GPU {name}: {} of {} layers, the rest on the CPU{why}",
                m.gpu_layers(),
                m.n_layer()
            );
            Ok((Some(Arc::new(m)), split))
        }
        Ok(m) => Ok((Some(Arc::new(m)), format!("GPU {name}"))),
        Err(e) if auto => Ok((None, format!("CPU ({name} cannot run it: {e})"))),
        Err(e) => Err(EngineError::Backend(format!("{name}: {e}"))),
    }
}

/// When the whole model does not fit in `mem` bytes of device memory (with the comfort
/// margin): how many layers do, and what all of them need. `None` when it fits (or the
/// metadata cannot be planned: the upload then says what is wrong).
#[cfg(feature = "gpu")]
fn fitting_layers(
    model: &models::Model,
    mem: u64,
    max_seq_len: u64,
    slots: u64,
) -> Option<(u64, u64)> {
    use crate::device_memory::{device_plan, layers_that_fit, DeviceWeights, DEVICE_COMFORT};
    let shape = crate::memory::ModelShape::from_gguf(model.file()).ok()?;
    let w = DeviceWeights::from_gguf(model.file(), shape.n_layer);
    let need = device_plan(&shape, &w, None, max_seq_len, slots).total();
    let budget = (mem as f64 * DEVICE_COMFORT) as u64;
    if need <= budget {
        return None;
    }
    Some((
        layers_that_fit(&shape, &w, budget, max_seq_len, slots),
        need,
    ))
}

/// A session's logits from the GPU: the model's device weights and this sequence's state.
#[cfg(feature = "gpu")]
pub(crate) struct GpuSource {
    pub(crate) model: Arc<gpu::GpuModel>,
    pub(crate) state: gpu::GpuState,
}

#[cfg(feature = "gpu")]
impl LogitsSource for GpuSource {
    fn n_vocab(&self) -> usize {
        self.model.n_vocab()
    }
    fn max_seq_len(&self) -> usize {
        self.state.max_seq_len()
    }
    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, EngineError> {
        self.model
            .forward(&mut self.state, tokens, pos, all_logits)
            .map_err(|e| EngineError::Model(e.to_string()))
    }
    fn truncate(&mut self, n_tokens: usize) -> usize {
        self.state.truncate(n_tokens)
    }
}
