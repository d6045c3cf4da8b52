//! Adapter listing and selection.

mod common;

use gpu::{list_adapters, BackendKind, DeviceOptions, GpuDevice};

/// The listing shows the adapter the tests run on, with its limits.
#[test]
fn adapters_are_listed_with_their_limits() {
    let d = common::dev();
    let all = list_adapters();
    assert!(!all.is_empty());
    let me = all
        .iter()
        .find(|a| a.name == d.adapter().name)
        .expect("the opened adapter is listed");
    assert!(me.max_storage_binding >= 128 << 20, "{me}");
    assert!(me.max_invocations >= 256, "{me}");
    assert_eq!(d.binding_limit(), me.max_storage_binding.min(me.max_buffer));
    let line = me.to_string();
    assert!(
        line.contains("storage binding") && line.contains("subgroups"),
        "{line}"
    );
}

/// An explicit API with no adapter is an error saying why, not a fallback.
#[cfg(target_os = "linux")]
#[test]
fn an_explicit_backend_without_adapter_is_an_error() {
    for (kind, why) in [
        (BackendKind::Metal, "macOS"),
        (BackendKind::Dx12, "Windows"),
    ] {
        let e = GpuDevice::open(kind)
            .err()
            .expect("no such adapter on Linux");
        let msg = e.to_string();
        assert!(
            msg.contains(&kind.to_string()) && msg.contains(why),
            "{msg}"
        );
    }
    assert_eq!(BackendKind::from_name("Vulkan"), Some(BackendKind::Vulkan));
    assert_eq!(BackendKind::from_name("auto"), Some(BackendKind::Any));
    assert_eq!(BackendKind::from_name("cuda"), None);
}

/// `hardware_only` (for `--backend auto`) passes over adapters that run on the CPU.
#[test]
fn hardware_only_skips_software_adapters() {
    let d = common::dev();
    let opts = DeviceOptions {
        hardware_only: true,
        ..Default::default()
    };
    match GpuDevice::open_with(BackendKind::Any, opts) {
        Ok(hw) => assert_ne!(hw.adapter().device_type, "Cpu", "{}", hw.adapter()),
        Err(e) => {
            assert_eq!(d.adapter().device_type, "Cpu", "{}", d.adapter());
            assert!(e.to_string().contains("run on the CPU"), "{e}");
        }
    }
}

/// The engine shares a loaded model across threads and moves states between them.
#[test]
fn models_and_states_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<gpu::GpuModel>();
    send_sync::<gpu::GpuState>();
    send_sync::<GpuDevice>();
}
