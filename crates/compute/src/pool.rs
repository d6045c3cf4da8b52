//! One persistent worker pool shared by every op, built for many tiny parallel regions per
//! token (a decode step runs ~10 of them per layer).
//!
//! A region is `n_tasks` independent task indices. The calling thread publishes the region by
//! bumping a generation counter, works on it itself, and waits until every task has finished.
//! Idle workers poll the counter for a short while (a new region usually follows within
//! microseconds), then yield, then sleep on a condition variable, so an idle process costs no
//! CPU. Tasks are claimed one at a time from a shared counter, so a worker that the OS
//! deschedules delays only the task it holds: the caller never waits for a thread that has not
//! started, it just takes that thread's share of the tasks.
//!
//! Claiming packs the generation, the task count and the next index into one atomic word, so
//! a worker that wakes up late can never claim a task of a region other than the one it read:
//! its compare-and-swap fails as soon as the word moved on.

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bits of the packed state word: generation | task count | next task index.
const IDX_BITS: u32 = 20;
const MAX_TASKS: usize = (1 << IDX_BITS) - 1;
const IDX_MASK: u64 = (1 << IDX_BITS) - 1;

/// How long an idle worker polls before it starts yielding, and then before it sleeps.
const SPIN: Duration = Duration::from_micros(200);
const YIELD: Duration = Duration::from_millis(5);

/// The region being run: a borrowed closure on the caller's stack.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

struct Shared {
    /// generation << 40 | n_tasks << 20 | next index.
    state: AtomicU64,
    /// `*const Job` of the current generation; valid while the region has unfinished tasks.
    job: AtomicPtr<Job<'static>>,
    /// Tasks of the current generation that have finished.
    done: AtomicUsize,
    /// A task panicked in a worker; the caller re-raises after the region ends.
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

pub struct Pool {
    shared: Arc<Shared>,
    /// One region at a time; a concurrent or nested caller runs its region inline instead.
    dispatch: Mutex<()>,
    n_threads: usize,
    workers: Vec<JoinHandle<()>>,
}

thread_local! {
    /// Set inside pool tasks: a nested region then runs inline rather than re-entering.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

fn pack(gen: u64, n: usize, idx: u64) -> u64 {
    (gen << (2 * IDX_BITS)) | ((n as u64) << IDX_BITS) | idx
}

fn gen_of(s: u64) -> u64 {
    s >> (2 * IDX_BITS)
}

impl Shared {
    /// Claims and runs tasks of the region whose state word was `s` until none are left.
    fn work(&self, mut s: u64) {
        let gen = gen_of(s);
        loop {
            let n = (s >> IDX_BITS) & IDX_MASK;
            let idx = s & IDX_MASK;
            if gen_of(s) != gen || idx >= n {
                return;
            }
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // The claimed task keeps the region (and so the job) alive: the caller
                    // waits for `done` to count it before it reuses the slot.
                    let job = self.job.load(Ordering::Acquire);
                    // SAFETY: see above; the pointer was stored before the generation was
                    // published and points at a `Job` on the waiting caller's stack.
                    let f = unsafe { (*job).f };
                    let prev = IN_TASK.with(|c| c.replace(true));
                    if catch_unwind(AssertUnwindSafe(|| f(idx as usize))).is_err() {
                        self.panicked.store(true, Ordering::Relaxed);
                    }
                    IN_TASK.with(|c| c.set(prev));
                    self.done.fetch_add(1, Ordering::Release);
                    s = self.state.load(Ordering::Acquire);
                }
                Err(cur) => s = cur,
            }
        }
    }

    fn worker_loop(&self) {
        let mut seen = gen_of(self.state.load(Ordering::Acquire));
        loop {
            let s = self.wait_new(seen);
            if self.shutdown.load(Ordering::Acquire) {
                return;
            }
            seen = gen_of(s);
            self.work(s);
        }
    }

    /// Waits until the generation differs from `seen` (or shutdown) and returns the state.
    fn wait_new(&self, seen: u64) -> u64 {
        let mut start = Instant::now();
        let mut spins = 0u32;
        loop {
            let s = self.state.load(Ordering::Acquire);
            if gen_of(s) != seen || self.shutdown.load(Ordering::Relaxed) {
                return s;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            let waited = start.elapsed();
            if waited < SPIN {
                std::hint::spin_loop();
            } else if waited < YIELD {
                std::thread::yield_now();
            } else {
                let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                self.sleepers.fetch_add(1, Ordering::SeqCst);
                // Re-checked under the lock after announcing ourselves: a caller that
                // published before this load sees `sleepers > 0` and notifies under the lock.
                let s = self.state.load(Ordering::SeqCst);
                if gen_of(s) == seen && !self.shutdown.load(Ordering::SeqCst) {
                    drop(self.wake.wait(guard).unwrap_or_else(|e| e.into_inner()));
                }
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                // Woken (or spuriously): poll again as if a region had just ended.
                start = Instant::now();
            }
        }
    }

    fn notify(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
    }
}

impl Pool {
    fn new(n_threads: usize) -> Pool {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut workers = Vec::with_capacity(n_threads.min(MAX_THREADS) - 1);
        for i in 1..n_threads.min(MAX_THREADS) {
            let sh = shared.clone();
            match std::thread::Builder::new()
                .name(format!("torchless-compute-{i}"))
                .spawn(move || sh.worker_loop())
            {
                Ok(h) => workers.push(h),
                // The OS refused a thread (limits, memory): run with the ones it gave.
                Err(e) => {
                    eprintln!(
                        "warning: could start only {i} of {n_threads} compute threads ({e}); \
                         using {i}"
                    );
                    break;
                }
            }
        }
        Pool {
            shared,
            dispatch: Mutex::new(()),
            n_threads: workers.len() + 1,
            workers,
        }
    }

    fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        debug_assert!(n_tasks <= MAX_TASKS);
        let guard = match self.dispatch.try_lock() {
            Ok(g) => g,
            Err(_) => return (0..n_tasks).for_each(f),
        };
        let sh = &*self.shared;
        let job = Job { f };
        // The slot outlives its use: we do not return before `done` counts every task, and
        // workers read the slot only after claiming a task.
        sh.job
            .store(&job as *const Job as *mut Job<'static>, Ordering::Release);
        sh.done.store(0, Ordering::Relaxed);
        let gen = gen_of(sh.state.load(Ordering::Relaxed)) + 1;
        let gen = gen & ((1 << (64 - 2 * IDX_BITS)) - 1);
        let s = pack(gen, n_tasks, 0);
        sh.state.store(s, Ordering::SeqCst);
        sh.notify();
        let prev = IN_TASK.with(|c| c.replace(true));
        let mine = catch_unwind(AssertUnwindSafe(|| {
            // The caller is worker 0 and claims through the same counter.
            let mut s = s;
            loop {
                let idx = s & IDX_MASK;
                if gen_of(s) != gen || idx >= n_tasks as u64 {
                    break;
                }
                match sh
                    .state
                    .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        f(idx as usize);
                        sh.done.fetch_add(1, Ordering::Release);
                        s += 1;
                    }
                    Err(cur) => s = cur,
                }
            }
        }));
        IN_TASK.with(|c| c.set(prev));
        // Our own task panicked: its index is lost, so stop handing out tasks and count
        // the unclaimed ones and the failed one as finished; wait only for tasks other
        // threads hold, which still borrow the closure.
        if mine.is_err() {
            let cur = sh
                .state
                .swap(pack(gen, n_tasks, n_tasks as u64), Ordering::AcqRel);
            let unclaimed = n_tasks as u64 - (cur & IDX_MASK).min(n_tasks as u64);
            sh.done.fetch_add(unclaimed as usize + 1, Ordering::AcqRel);
        }
        let mut spins = 0u32;
        while sh.done.load(Ordering::Acquire) < n_tasks {
            spins += 1;
            if spins < 1 << 14 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        sh.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        let worker_panic = sh.panicked.swap(false, Ordering::Relaxed);
        drop(guard);
        if let Err(e) = mine {
            resume_unwind(e);
        }
        if worker_panic {
            panic!("a compute task panicked on a worker thread");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn slot() -> &'static RwLock<Option<Arc<Pool>>> {
    static POOL: OnceLock<RwLock<Option<Arc<Pool>>>> = OnceLock::new();
    POOL.get_or_init(|| RwLock::new(None))
}

fn pool() -> Arc<Pool> {
    if let Some(p) = slot().read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return p.clone();
    }
    let mut guard = slot().write().unwrap_or_else(|e| e.into_inner());
    guard
        .get_or_insert_with(|| Arc::new(Pool::new(default_threads())))
        .clone()
}

/// Most threads a pool starts (llama.cpp's `GGML_MAX_N_THREADS`); callers warn above it.
pub const MAX_THREADS: usize = 512;

/// Use `n` threads (the caller plus `n - 1` workers) for all later ops; 0 = the default.
/// At most [`MAX_THREADS`], and fewer if the OS refuses to start them (with a warning).
pub fn set_threads(n: usize) {
    let n = if n == 0 { default_threads() } else { n }.min(MAX_THREADS);
    let mut guard = slot().write().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().map(|p| p.n_threads) != Some(n) {
        // The old pool's workers stop once the last region still using it returns.
        *guard = Some(Arc::new(Pool::new(n)));
    }
}

/// Number of threads (including the caller) currently in use.
pub fn n_threads() -> usize {
    pool().n_threads
}

/// Runs `f(i)` for every `i` in `0..n_tasks`, spread over the pool; returns when all are done.
/// Tasks run in no particular order and must be independent. Called from inside a task, or
/// while another thread is running a region, it runs the tasks on the calling thread.
pub fn run(n_tasks: usize, f: impl Fn(usize) + Sync) {
    if n_tasks == 0 {
        return;
    }
    if n_tasks == 1 || IN_TASK.with(|c| c.get()) {
        return (0..n_tasks).for_each(f);
    }
    let p = pool();
    if p.n_threads == 1 {
        return (0..n_tasks).for_each(f);
    }
    if n_tasks <= MAX_TASKS {
        p.run(n_tasks, &f);
    } else {
        let per = n_tasks.div_ceil(MAX_TASKS);
        p.run(n_tasks.div_ceil(per), &|c| {
            (c * per..((c + 1) * per).min(n_tasks)).for_each(&f)
        });
    }
}

/// A raw pointer that pool tasks may share because each writes a disjoint part.
struct SharedMut<T>(*mut T);
// SAFETY: only used by `par_chunks_mut`, whose tasks touch disjoint chunks.
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

/// `f(i, chunk)` for each `chunk_len`-long chunk of `data` (the last may be shorter), in
/// parallel.
pub fn par_chunks_mut<T: Send>(
    data: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    assert!(chunk_len > 0, "chunk length must be positive");
    let len = data.len();
    let ptr = SharedMut(data.as_mut_ptr());
    run(len.div_ceil(chunk_len), |i| {
        let start = i * chunk_len;
        let n = chunk_len.min(len - start);
        // SAFETY: chunk i covers start..start + n, inside `data` and disjoint from every
        // other task's chunk; `data` is mutably borrowed for the whole region.
        let chunk = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(start), n) };
        f(i, chunk)
    });
}

/// Physical cores available to this process: hyper-threads of one core share its vector
/// units, so a second thread per core mostly adds contention for these kernels.
pub fn default_threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        let avail = std::thread::available_parallelism().map_or(1, |n| n.get());
        physical_cores().map_or(avail, |p| p.clamp(1, avail))
    })
}

fn physical_cores() -> Option<usize> {
    let mut cores = std::collections::HashSet::new();
    if let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu") {
        for e in dir.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let is_cpu = name
                .strip_prefix("cpu")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !is_cpu {
                continue;
            }
            let topo = e.path().join("topology");
            let read = |f: &str| std::fs::read_to_string(topo.join(f)).ok();
            if let (Some(pkg), Some(core)) = (read("physical_package_id"), read("core_id")) {
                cores.insert((pkg.trim().to_string(), core.trim().to_string()));
            }
        }
    }
    if cores.is_empty() {
        let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
        let mut pkg = String::new();
        for line in info.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k.trim() {
                "physical id" => pkg = v.trim().to_string(),
                "core id" => {
                    cores.insert((pkg.clone(), v.trim().to_string()));
                }
                _ => {}
            }
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_for_many_regions() {
        set_threads(2);
        for n in [0usize, 1, 2, 3, 17, 1000] {
            for _ in 0..200 {
                let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                run(n, |i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "n={n}");
            }
        }
    }

    #[test]
    fn chunks_cover_the_slice_and_nested_regions_run_inline() {
        let mut v = vec![0usize; 1001];
        par_chunks_mut(&mut v, 10, |i, c| {
            let inner = AtomicUsize::new(0);
            run(3, |_| {
                inner.fetch_add(1, Ordering::Relaxed);
            });
            for (k, x) in c.iter_mut().enumerate() {
                *x = i * 10 + k + inner.load(Ordering::Relaxed) - 3;
            }
        });
        assert!(v.iter().enumerate().all(|(i, &x)| i == x));
    }

    #[test]
    fn concurrent_callers_and_sleeping_workers() {
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..300 {
                        run(8, |_| {
                            total.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 3 * 300 * 8);
        // Long enough for the workers to go to sleep; the next region must wake them.
        std::thread::sleep(YIELD * 3);
        let n = AtomicUsize::new(0);
        run(64, |_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 64);
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_pool_survives() {
        let r = catch_unwind(|| {
            run(50, |i| {
                if i == 7 {
                    panic!("boom");
                }
            })
        });
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        run(50, |_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 50);
    }

    #[test]
    fn physical_cores_is_at_least_one() {
        assert!(default_threads() >= 1);
    }
}
