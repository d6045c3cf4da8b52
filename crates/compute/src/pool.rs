//! One persistent worker pool shared by every op, so per-token calls never spawn threads.

use std::sync::{Arc, OnceLock, RwLock};

fn slot() -> &'static RwLock<Option<Arc<rayon::ThreadPool>>> {
    static POOL: OnceLock<RwLock<Option<Arc<rayon::ThreadPool>>>> = OnceLock::new();
    POOL.get_or_init(|| RwLock::new(None))
}

fn build(n: usize) -> Arc<rayon::ThreadPool> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .thread_name(|i| format!("torchless-compute-{i}"))
        .build()
        // Building only fails if the OS refuses threads; there is no meaningful fallback.
        .expect("cannot start compute threads");
    Arc::new(pool)
}

/// Use `n` worker threads for all later ops (0 = one per available core).
pub fn set_threads(n: usize) {
    let n = if n == 0 { default_threads() } else { n };
    let mut guard = slot().write().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().map(|p| p.current_num_threads()) != Some(n) {
        *guard = Some(build(n));
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Number of worker threads currently in use.
pub fn n_threads() -> usize {
    pool().current_num_threads()
}

pub(crate) fn pool() -> Arc<rayon::ThreadPool> {
    if let Some(p) = slot().read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return p.clone();
    }
    let mut guard = slot().write().unwrap_or_else(|e| e.into_inner());
    guard
        .get_or_insert_with(|| build(default_threads()))
        .clone()
}
