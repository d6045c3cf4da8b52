//! A decode step must not touch the heap: every buffer (activations, quantized activations,
//! attention scratch, logits) is sized once and reused. Counted with a global allocator over
//! decode steps on the real models (positions where the KV cache does not grow).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use models::{KvDtype, Model};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn model_path(file: &str) -> PathBuf {
    let cache = std::env::var_os("TORCHLESS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
                .join(".cache/torchless")
        });
    let p = cache.join("models").join(file);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    p
}

#[test]
fn decode_steps_do_not_allocate() {
    // Two threads, so the pool's workers (and their attention scratch) are exercised too.
    models::set_threads(2);
    for file in ["smollm2-135m-instruct-q4_1.gguf", "gemma3-270m-q4_k_m.gguf"] {
        let gguf = gguf::GgufFile::open(model_path(file)).expect("open model");
        let model = Model::load(Arc::new(gguf)).expect("load model");
        let mut state = model.new_state(48, KvDtype::F16);
        let mut logits = Vec::new();
        let prompt = [1u32, 2, 3, 4, 5, 6, 7, 8];
        model
            .forward_into(&mut state, &prompt, 0, false, &mut logits)
            .unwrap();
        // Warm-up steps: first use of per-thread buffers on every worker.
        let mut pos = prompt.len();
        for _ in 0..4 {
            model
                .forward_into(&mut state, &[9], pos, false, &mut logits)
                .unwrap();
            pos += 1;
        }
        let before = ALLOCS.load(Ordering::Relaxed);
        for _ in 0..16 {
            model
                .forward_into(&mut state, &[10], pos, false, &mut logits)
                .unwrap();
            pos += 1;
        }
        let n = ALLOCS.load(Ordering::Relaxed) - before;
        assert_eq!(n, 0, "{file}: {n} heap allocations in 16 decode steps");
    }
}
