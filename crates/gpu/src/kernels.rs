//! WGSL sources and their compute pipelines, compiled on first use and kept by the device.
//!
//! A matrix kernel module is `common.wgsl` + the format family's file + a one-line
//! `load_sub` choosing the format + `matmul.wgsl`, so every format gets the same decode,
//! prefill and embedding kernels from one place, each reading its blocks as they sit in the
//! GGUF file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use quant::GgmlType;
use wgpu::util::DeviceExt;

use crate::GpuError;

const COMMON: &str = include_str!("shaders/common.wgsl");
const QUANT_32: &str = include_str!("shaders/quant_32.wgsl");
const QUANT_K: &str = include_str!("shaders/quant_k.wgsl");
const QUANT_IQ: &str = include_str!("shaders/quant_iq.wgsl");
const FLOAT: &str = include_str!("shaders/float.wgsl");
const MATMUL: &str = include_str!("shaders/matmul.wgsl");
const MATVEC_SUBGROUP: &str = include_str!("shaders/matvec_subgroup.wgsl");
const OPS: &str = include_str!("shaders/ops.wgsl");
const ATTENTION: &str = include_str!("shaders/attention.wgsl");
const ATTENTION_KV_U32: &str = include_str!("shaders/attention_kv_u32.wgsl");
const ATTENTION_KV_F16: &str = include_str!("shaders/attention_kv_f16.wgsl");
const MOE: &str = include_str!("shaders/moe.wgsl");
const QUANTIZE_X8: &str = include_str!("shaders/quantize_x8.wgsl");
const MATVEC_DOT4: &str = include_str!("shaders/matvec_dot4.wgsl");
const MATVEC_DOT4_SUBGROUP: &str = include_str!("shaders/matvec_dot4_subgroup.wgsl");

/// Every weight type the kernels decode: every type `quant` has a dot product for (Q8_1 and
/// Q8_K are only activation formats there, multiplied by no kernel).
pub const WEIGHT_TYPES: [GgmlType; 24] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::IQ4_NL,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_XS,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
];

/// Whether the GPU kernels read weights of type `ty`.
pub fn supports(ty: GgmlType) -> bool {
    WEIGHT_TYPES.contains(&ty)
}

/// The WGSL of `ty`'s matrix kernels, or `None` for a type they do not read; with
/// `subgroups`, also the subgroup matrix-vector kernel (`matvec_sg`).
pub fn matrix_source(ty: GgmlType, subgroups: bool) -> Option<String> {
    let name = ty.name().to_ascii_lowercase();
    let (family, load) = match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            (FLOAT, format!("load_{name}(rb, s, P.k);"))
        }
        GgmlType::Q8_0
        | GgmlType::Q4_0
        | GgmlType::Q4_1
        | GgmlType::Q5_0
        | GgmlType::Q5_1
        | GgmlType::IQ4_NL => (
            QUANT_32,
            format!("load_{name}(rb + s * {}u);", ty.type_size()),
        ),
        GgmlType::Q2_K
        | GgmlType::Q3_K
        | GgmlType::Q4_K
        | GgmlType::Q5_K
        | GgmlType::Q6_K
        | GgmlType::IQ4_XS
        | GgmlType::TQ1_0
        | GgmlType::TQ2_0 => (
            QUANT_K,
            format!("load_{name}(rb + (s >> 3u) * {}u, s & 7u);", ty.type_size()),
        ),
        GgmlType::IQ2_XXS
        | GgmlType::IQ2_XS
        | GgmlType::IQ2_S
        | GgmlType::IQ3_XXS
        | GgmlType::IQ3_S
        | GgmlType::IQ1_S
        | GgmlType::IQ1_M => (
            QUANT_IQ,
            format!("load_{name}(rb + (s >> 3u) * {}u, s & 7u);", ty.type_size()),
        ),
        _ => return None,
    };
    // wgpu's WGSL front end takes subgroup operations once the device has the feature, and
    // does not accept the `enable subgroups;` directive yet.
    let sg = if subgroups { MATVEC_SUBGROUP } else { "" };
    Some(format!(
        "{COMMON}\n{family}\nfn load_sub(rb: u32, s: u32) {{ {load} }}\n{MATMUL}\n{sg}"
    ))
}

/// The WGSL of `ty`'s packed 8-bit dot product matrix-vector kernel (`matvec_dot4`, with
/// `subgroups` also `matvec_dot4_sg`), or `None` for a type without one (every type but
/// Q8_0 and Q4_0, whose blocks are 8-bit and 4-bit integers times one scale).
pub fn int_dot_source(ty: GgmlType, subgroups: bool) -> Option<String> {
    let name = match ty {
        GgmlType::Q8_0 | GgmlType::Q4_0 => ty.name().to_ascii_lowercase(),
        _ => return None,
    };
    let bytes = ty.type_size();
    let sg = if subgroups { MATVEC_DOT4_SUBGROUP } else { "" };
    Some(format!(
        "{COMMON}\nconst BLOCK_BYTES: u32 = {bytes}u;\n\
         fn dot_blk(base: u32, xb: u32) -> f32 {{ return dot_{name}(base, xb); }}\n\
         {MATVEC_DOT4}\n{sg}"
    ))
}

/// The lattice grid `ty`'s kernels read (binding 5, `GRID` in quant_iq.wgsl), as words:
/// `quant`'s tables, two words per 8-value entry (low bytes first), one per 4-value entry.
pub fn grid_words(ty: GgmlType) -> Option<Vec<u32>> {
    use quant::iq_grid::{IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID};
    let split = |g: &[u64]| {
        g.iter()
            .flat_map(|&e| [e as u32, (e >> 32) as u32])
            .collect()
    };
    Some(match ty {
        GgmlType::IQ2_XXS => split(&IQ2XXS_GRID),
        GgmlType::IQ2_XS => split(&IQ2XS_GRID),
        GgmlType::IQ2_S => split(&IQ2S_GRID),
        GgmlType::IQ1_S | GgmlType::IQ1_M => split(&quant::iq1::IQ1S_GRID),
        GgmlType::IQ3_XXS => IQ3XXS_GRID.to_vec(),
        GgmlType::IQ3_S => IQ3S_GRID.to_vec(),
        _ => return None,
    })
}

/// The three kernels of one weight type.
#[derive(Clone)]
pub(crate) struct MatrixKernels {
    pub matvec: wgpu::ComputePipeline,
    /// The subgroup matrix-vector kernel, where the device has subgroups.
    pub matvec_sg: Option<wgpu::ComputePipeline>,
    pub tiled: wgpu::ComputePipeline,
    pub get_rows: wgpu::ComputePipeline,
    /// Stacked matrices chosen per output row (`matvec_id`), and its tiled form over rows
    /// grouped by matrix (`matmul_id_tiled`).
    pub matvec_id: wgpu::ComputePipeline,
    pub matmul_id_tiled: wgpu::ComputePipeline,
    /// The format's grid (bound at 5), for the grid formats.
    pub grid: Option<wgpu::Buffer>,
    /// The packed 8-bit dot product matrix-vector kernels, where the device has integer
    /// dot products and the format has such a kernel.
    pub int_dot: Option<IntDotKernels>,
}

/// `matvec_dot4` and its subgroup form (where the device has subgroups).
#[derive(Clone)]
pub(crate) struct IntDotKernels {
    pub matvec: wgpu::ComputePipeline,
    pub matvec_sg: Option<wgpu::ComputePipeline>,
}

/// Pipelines of the non-matrix ops.
pub(crate) struct OpKernels {
    pub rms_norm: wgpu::ComputePipeline,
    pub layer_norm: wgpu::ComputePipeline,
    pub rope: wgpu::ComputePipeline,
    pub swiglu: wgpu::ComputePipeline,
    pub geglu: wgpu::ComputePipeline,
    pub gelu: wgpu::ComputePipeline,
    pub add: wgpu::ComputePipeline,
    pub scale: wgpu::ComputePipeline,
    pub softcap: wgpu::ComputePipeline,
    pub kv_store: wgpu::ComputePipeline,
    pub attend: wgpu::ComputePipeline,
    pub route: wgpu::ComputePipeline,
    pub weighted_sum: wgpu::ComputePipeline,
    pub sigmoid: wgpu::ComputePipeline,
    pub copy: wgpu::ComputePipeline,
    pub group_ids: wgpu::ComputePipeline,
}

pub(crate) struct Kernels {
    pub ops: OpKernels,
    /// Matrix-vector products use subgroup sums.
    pub subgroups: bool,
    /// Q8_0 and Q4_0 matrix-vector products use packed 8-bit dot products; the kernel
    /// quantizing their activations is then `quantize_x8`.
    pub int_dot: bool,
    pub quantize_x8: Option<wgpu::ComputePipeline>,
    /// Attention reads the f16 KV cache as f16 (`attention_kv_f16.wgsl`).
    pub f16: bool,
    matrix: Mutex<HashMap<GgmlType, Arc<MatrixKernels>>>,
}

fn module(device: &wgpu::Device, label: &str, src: &str) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    })
}

fn pipeline(device: &wgpu::Device, m: &wgpu::ShaderModule, entry: &str) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module: m,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    })
}

/// Runs `f` inside validation and internal error scopes: a kernel the driver or wgpu
/// rejects (an adapter's shader compiler, a limit) becomes an error naming `what` instead
/// of wgpu's default panic.
pub(crate) fn checked<T>(
    device: &wgpu::Device,
    what: &str,
    f: impl FnOnce() -> T,
) -> Result<T, GpuError> {
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
    let memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let out = f();
    let errors = [memory, internal, validation].map(|s| pollster::block_on(s.pop()));
    match errors.into_iter().flatten().next() {
        Some(e) => Err(GpuError::Device(format!("{what}: {e}"))),
        None => Ok(out),
    }
}

impl Kernels {
    /// With `f16`, the device must have been opened with `SHADER_F16`.
    pub fn new(
        device: &wgpu::Device,
        subgroups: bool,
        int_dot: bool,
        f16: bool,
    ) -> Result<Kernels, GpuError> {
        checked(device, "compiling the GPU kernels", || {
            Kernels::compile(device, subgroups, int_dot, f16)
        })
    }

    fn compile(device: &wgpu::Device, subgroups: bool, int_dot: bool, f16: bool) -> Kernels {
        let ops = module(device, "ops", OPS);
        let att = module(
            device,
            "attention",
            &format!("{ATTENTION_KV_U32}\n{ATTENTION}"),
        );
        // The f16 reader must come first: `enable` directives open the module.
        let att_f16 = f16.then(|| {
            module(
                device,
                "attention f16",
                &format!("{ATTENTION_KV_F16}\n{ATTENTION}"),
            )
        });
        let moe = module(device, "moe", MOE);
        let p = |m, e| pipeline(device, m, e);
        Kernels {
            ops: OpKernels {
                rms_norm: p(&ops, "rms_norm"),
                layer_norm: p(&ops, "layer_norm"),
                rope: p(&ops, "rope"),
                swiglu: p(&ops, "swiglu"),
                geglu: p(&ops, "geglu"),
                gelu: p(&ops, "gelu"),
                add: p(&ops, "add"),
                scale: p(&ops, "scale"),
                softcap: p(&ops, "softcap"),
                kv_store: p(&att, "kv_store"),
                attend: p(att_f16.as_ref().unwrap_or(&att), "attend"),
                route: p(&moe, "route"),
                weighted_sum: p(&moe, "weighted_sum"),
                sigmoid: p(&moe, "sigmoid"),
                copy: p(&moe, "copy_rows"),
                group_ids: p(&moe, "group_ids"),
            },
            matrix: Mutex::new(HashMap::new()),
            subgroups,
            int_dot,
            f16,
            quantize_x8: int_dot.then(|| {
                pipeline(
                    device,
                    &module(device, "quantize_x8", QUANTIZE_X8),
                    "quantize_x8",
                )
            }),
        }
    }

    /// `ty`'s matrix kernels, compiled on first use.
    pub fn matrix(
        &self,
        device: &wgpu::Device,
        ty: GgmlType,
    ) -> Result<Arc<MatrixKernels>, GpuError> {
        let mut map = self.matrix.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = map.get(&ty) {
            return Ok(k.clone());
        }
        let src = matrix_source(ty, self.subgroups).ok_or(GpuError::Unsupported(ty))?;
        let k = checked(device, &format!("compiling the {ty} kernels"), || {
            let m = module(device, ty.name(), &src);
            let grid = grid_words(ty).map(|words| {
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("grid"),
                    contents: &bytes,
                    usage: wgpu::BufferUsages::STORAGE,
                })
            });
            let int_dot = self
                .int_dot
                .then(|| int_dot_source(ty, self.subgroups))
                .flatten()
                .map(|src| {
                    let m = module(device, &format!("{} dot4", ty.name()), &src);
                    IntDotKernels {
                        matvec: pipeline(device, &m, "matvec_dot4"),
                        matvec_sg: self
                            .subgroups
                            .then(|| pipeline(device, &m, "matvec_dot4_sg")),
                    }
                });
            Arc::new(MatrixKernels {
                grid,
                int_dot,
                matvec: pipeline(device, &m, "matvec"),
                matvec_sg: self.subgroups.then(|| pipeline(device, &m, "matvec_sg")),
                tiled: pipeline(device, &m, "matmul_tiled"),
                get_rows: pipeline(device, &m, "get_rows"),
                matvec_id: pipeline(device, &m, "matvec_id"),
                matmul_id_tiled: pipeline(device, &m, "matmul_id_tiled"),
            })
        })?;
        map.insert(ty, k.clone());
        Ok(k)
    }
}
