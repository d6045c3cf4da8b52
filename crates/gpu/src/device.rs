//! Adapter listing and device selection.

use std::fmt;

use crate::GpuError;

/// Which GPU API (or vendor) the caller asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The best adapter of any API: discrete, then integrated, then virtual, then CPU.
    Any,
    Vulkan,
    Metal,
    Dx12,
}

impl BackendKind {
    fn backends(self) -> wgpu::Backends {
        match self {
            BackendKind::Any => {
                wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
            }
            BackendKind::Vulkan => wgpu::Backends::VULKAN,
            BackendKind::Metal => wgpu::Backends::METAL,
            BackendKind::Dx12 => wgpu::Backends::DX12,
        }
    }

    /// `gpu`/`auto`/`any`, `vulkan`, `metal`, `dx12`.
    pub fn from_name(name: &str) -> Option<BackendKind> {
        Some(match name.to_ascii_lowercase().as_str() {
            "gpu" | "any" | "auto" => BackendKind::Any,
            "vulkan" => BackendKind::Vulkan,
            "metal" => BackendKind::Metal,
            "dx12" => BackendKind::Dx12,
            _ => return None,
        })
    }

    /// What to install when no adapter of this kind is found.
    fn install_hint(self) -> &'static str {
        match self {
            BackendKind::Metal => "Metal needs macOS",
            BackendKind::Dx12 => "DX12 needs Windows",
            _ => {
                "install a Vulkan driver: your GPU vendor's, or Mesa's \
                 (Debian/Ubuntu: apt-get install mesa-vulkan-drivers; lavapipe runs on the CPU)"
            }
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Any => "gpu",
            BackendKind::Vulkan => "vulkan",
            BackendKind::Metal => "metal",
            BackendKind::Dx12 => "dx12",
        })
    }
}

/// One adapter as `info --backends` shows it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` (lavapipe, WARP) or `Other`.
    pub device_type: String,
    pub driver: String,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
    pub max_workgroup_storage: u32,
    pub max_invocations: u32,
    pub subgroup_sizes: (u32, u32),
    pub subgroups: bool,
    /// `shader-f16`: where present, attention reads the f16 KV cache as f16.
    pub shader_f16: bool,
    /// Packed 8-bit integer dot products in hardware (Vulkan's `shaderIntegerDotProduct`,
    /// which naga turns WGSL's `dot4I8Packed` into): where present, Q8_0 and Q4_0
    /// matrix-vector products take the integer path. `false` on Metal and DX12, where
    /// wgpu gives no way to ask.
    pub int_dot: bool,
    /// Device-local memory in bytes, where the API says (Vulkan: the sum of the
    /// device-local heaps; lavapipe reports the host's RAM); `None` on Metal and DX12,
    /// which wgpu gives no way to ask.
    pub memory: Option<u64>,
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {}, driver {}): storage binding {} MiB, buffer {} MiB, workgroup memory {} KiB, \
             {} invocations, subgroups {} (size {}-{}), shader-f16 {}, packed i8 dot {}",
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            self.max_storage_binding >> 20,
            self.max_buffer >> 20,
            self.max_workgroup_storage >> 10,
            self.max_invocations,
            if self.subgroups { "yes" } else { "no" },
            self.subgroup_sizes.0,
            self.subgroup_sizes.1,
            if self.shader_f16 { "yes" } else { "no" },
            if self.int_dot { "yes" } else { "no" },
        )?;
        match self.memory {
            Some(m) => write!(f, ", memory {} MiB", m >> 20),
            None => write!(f, ", memory unknown"),
        }
    }
}

fn instance(kind: BackendKind) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = kind.backends();
    wgpu::Instance::new(desc)
}

fn summary(a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let limits = a.limits();
    let features = a.features();
    AdapterSummary {
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        max_storage_binding: limits.max_storage_buffer_binding_size,
        max_buffer: limits.max_buffer_size,
        max_workgroup_storage: limits.max_compute_workgroup_storage_size,
        max_invocations: limits.max_compute_invocations_per_workgroup,
        subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
        subgroups: features.contains(wgpu::Features::SUBGROUP),
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        int_dot: integer_dot_product(a),
        memory: device_memory(a),
    }
}

/// The sum of a Vulkan adapter's device-local heaps; `None` for other APIs.
fn device_memory(a: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: the hal adapter is only borrowed for this call, while `a` (which owns it)
    // is alive, and only read: a physical device's memory properties are a plain query of
    // a valid `VkPhysicalDevice` on its own live instance, with no external
    // synchronisation required.
    unsafe {
        let hal = a.as_hal::<wgpu::hal::api::Vulkan>()?;
        let props = hal
            .shared_instance()
            .raw_instance()
            .get_physical_device_memory_properties(hal.raw_physical_device());
        let heaps = &props.memory_heaps[..props.memory_heap_count as usize];
        Some(
            heaps
                .iter()
                .filter(|h| h.flags.contains(ash::vk::MemoryHeapFlags::DEVICE_LOCAL))
                .map(|h| h.size)
                .sum(),
        )
    }
}

/// Whether a Vulkan adapter has `shaderIntegerDotProduct`, the feature wgpu-hal enables
/// and hands naga the `DotProduct*` SPIR-V capabilities for (naga otherwise lowers
/// `dot4I8Packed` to shifts and multiplies, no faster than the f32 path).
fn integer_dot_product(a: &wgpu::Adapter) -> bool {
    // SAFETY: as in `device_memory`: the hal adapter is borrowed while `a` lives and only
    // queried. The feature struct is chained only where the device knows it (Vulkan 1.3 or
    // the extension), and `vkGetPhysicalDeviceFeatures2` is called only on a 1.1 instance,
    // where it is core.
    unsafe {
        let Some(hal) = a.as_hal::<wgpu::hal::api::Vulkan>() else {
            return false;
        };
        let caps = hal.physical_device_capabilities();
        let known = caps.properties().api_version >= ash::vk::API_VERSION_1_3
            || caps.supports_extension(ash::khr::shader_integer_dot_product::NAME);
        let inst = hal.shared_instance();
        if !known || inst.instance_api_version() < ash::vk::API_VERSION_1_1 {
            return false;
        }
        let mut dot = ash::vk::PhysicalDeviceShaderIntegerDotProductFeatures::default();
        let mut f2 = ash::vk::PhysicalDeviceFeatures2::default().push_next(&mut dot);
        inst.raw_instance()
            .get_physical_device_features2(hal.raw_physical_device(), &mut f2);
        dot.shader_integer_dot_product != 0
    }
}

/// Every adapter of every compute-capable API this build reaches.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let inst = instance(BackendKind::Any);
    pollster::block_on(inst.enumerate_adapters(BackendKind::Any.backends()))
        .iter()
        .map(summary)
        .collect()
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Settings of a device, mostly for tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceOptions {
    /// Largest binding a weight matrix is split into (bytes), below the adapter's own
    /// limit: tests set it small to exercise weights split across bindings.
    pub max_binding: Option<u64>,
    /// Do not use subgroup operations even where the adapter has them (tests the fallback).
    pub no_subgroups: bool,
    /// Do not use packed 8-bit dot products even where the adapter has them (tests the
    /// f32 fallback of the Q8_0 and Q4_0 matrix-vector products).
    pub no_int_dot: bool,
    /// Do not use `shader-f16` even where the adapter has it (tests attention's
    /// unpack2x16float reader of the KV cache).
    pub no_f16: bool,
    /// Refuse adapters that run on the CPU (lavapipe, WARP, SwiftShader): for `--backend
    /// auto`, where such a device would only be slower than the CPU backend.
    pub hardware_only: bool,
}

/// An opened device with its queue and the kernels compiled so far (clones share them).
#[derive(Clone)]
pub struct GpuDevice {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: AdapterSummary,
    /// Largest binding a weight matrix is split into, in bytes (a multiple of 4).
    pub(crate) max_binding: u64,
    /// The adapter's largest storage binding, in bytes.
    pub(crate) binding_limit: u64,
    pub(crate) max_groups: u32,
    pub(crate) uniform_align: u64,
    pub(crate) kernels: std::sync::Arc<crate::kernels::Kernels>,
    /// Parameter blocks of the pass being submitted (reused, grown on demand).
    pub(crate) uniforms: std::sync::Arc<std::sync::Mutex<crate::pass::Uniforms>>,
    /// Bound where a kernel declares an input the call does not use.
    pub(crate) dummy: wgpu::Buffer,
    /// The readback buffer (reused, grown on demand).
    pub(crate) staging: std::sync::Arc<std::sync::Mutex<Option<wgpu::Buffer>>>,
    /// Rows grouped by matrix id for `matmul_id`'s tiled kernel (reused, grown on demand;
    /// each grouping is consumed by the dispatch right after it).
    pub(crate) id_groups: std::sync::Arc<std::sync::Mutex<Option<wgpu::Buffer>>>,
    /// Activations quantized to 8 bits for the packed-dot kernels (reused, grown on demand;
    /// each quantization is consumed by the matmul right after it).
    pub(crate) x8: std::sync::Arc<std::sync::Mutex<Option<wgpu::Buffer>>>,
}

impl GpuDevice {
    /// The best adapter of `kind`; an error naming what to install when there is none.
    pub fn open(kind: BackendKind) -> Result<GpuDevice, GpuError> {
        GpuDevice::open_with(kind, DeviceOptions::default())
    }

    pub fn open_with(kind: BackendKind, opts: DeviceOptions) -> Result<GpuDevice, GpuError> {
        let inst = instance(kind);
        let mut adapters = pollster::block_on(inst.enumerate_adapters(kind.backends()));
        adapters.retain(|a| {
            let l = a.limits();
            l.max_storage_buffers_per_shader_stage >= 4
                && l.max_compute_invocations_per_workgroup >= 256
                && l.max_compute_workgroup_storage_size >= 16 * 1024
        });
        let any_software = adapters
            .iter()
            .any(|a| a.get_info().device_type == wgpu::DeviceType::Cpu);
        if opts.hardware_only {
            adapters.retain(|a| a.get_info().device_type != wgpu::DeviceType::Cpu);
        }
        adapters.sort_by_key(|a| rank(a.get_info().device_type));
        let Some(adapter) = adapters.into_iter().next() else {
            return Err(GpuError::NoAdapter {
                kind: kind.to_string(),
                hint: if opts.hardware_only && any_software {
                    "only adapters that run on the CPU were found"
                } else {
                    kind.install_hint()
                },
            });
        };
        let info = summary(&adapter);
        let limits = adapter.limits();
        let subgroups = info.subgroups && !opts.no_subgroups;
        // The WGSL extension is naga's to give (it always does, polyfilled where the
        // device lacks the instructions); the hardware check is `info.int_dot`.
        let int_dot = info.int_dot
            && !opts.no_int_dot
            && inst
                .wgsl_language_features()
                .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        let f16 = info.shader_f16 && !opts.no_f16;
        let mut features = wgpu::Features::empty();
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        if f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("torchless"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| GpuError::Device(e.to_string()))?;
        let binding_limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        // The kernels address weight bytes with u32: chunks stay below 2 GiB whatever the
        // adapter allows.
        let mut max_binding = binding_limit.min(1 << 31);
        if let Some(m) = opts.max_binding {
            max_binding = max_binding.min(m);
        }
        max_binding &= !3;
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused input"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(GpuDevice {
            dummy,
            kernels: std::sync::Arc::new(crate::kernels::Kernels::new(
                &device, subgroups, int_dot, f16,
            )?),
            device,
            queue,
            info,
            max_binding,
            binding_limit,
            max_groups: limits.max_compute_workgroups_per_dimension,
            uniform_align: limits.min_uniform_buffer_offset_alignment.max(16) as u64,
            uniforms: Default::default(),
            staging: Default::default(),
            id_groups: Default::default(),
            x8: Default::default(),
        })
    }

    /// The adapter this device runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.info
    }

    /// Whether matrix-vector products use subgroup operations.
    pub fn uses_subgroups(&self) -> bool {
        self.kernels.subgroups
    }

    /// Whether Q8_0 and Q4_0 matrix-vector products quantize the activations to 8 bits and
    /// multiply with packed integer dot products (`matvec_dot4.wgsl`).
    pub fn uses_int_dot(&self) -> bool {
        self.kernels.int_dot
    }

    /// Whether attention reads the KV cache as `f16` (`shader-f16`).
    pub fn uses_f16(&self) -> bool {
        self.kernels.f16
    }

    /// Largest binding a weight matrix is split into, in bytes.
    pub fn max_binding(&self) -> u64 {
        self.max_binding
    }

    /// The adapter's largest storage binding, in bytes: no activation tensor or KV cache
    /// may be larger.
    pub fn binding_limit(&self) -> u64 {
        self.binding_limit
    }
}
