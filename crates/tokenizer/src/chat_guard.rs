//! A memory limit on chat-template rendering. A template can grow a value exponentially in a
//! few instructions (`{% set ns.s = ns.s ~ ns.s %}` in a loop, a recursive macro), so fuel
//! alone does not bound its memory, and minijinja has no hook on value sizes. A program that
//! installs [`RenderAlloc`] as its global allocator gets a per-thread count of the bytes held
//! while a template renders (each render runs on a thread of its own, see `chat.rs`).
//!
//! An allocator can neither unwind nor fail an allocation without aborting the process, so
//! past the budget the render thread never gets the memory it asked for; what happens then is
//! the program's choice ([`set_on_stop`]):
//! - [`OnStop::Exit`] (the default, for one-shot commands): print one line saying the template
//!   was stopped and exit with status 1.
//! - [`OnStop::Abandon`] (for servers and libraries, which must keep serving): the render
//!   returns that error to its caller and the render thread parks for good, keeping what it
//!   holds (at most the budget). The template is remembered as stopped, and later renders of
//!   it fail at once, so one template costs at most one parked thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Mutex, OnceLock};

use crate::TokenizerError;

/// What happens when a render passes its memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStop {
    /// Print one line on stderr and exit the process with status 1.
    Exit,
    /// Return the error to the caller; the render thread parks with what it holds.
    Abandon,
}

static ON_STOP: AtomicU8 = AtomicU8::new(0);

/// Chooses what a render past its budget does (process-wide; the default is [`OnStop::Exit`]).
pub fn set_on_stop(mode: OnStop) {
    ON_STOP.store(mode as u8, Ordering::Relaxed);
}

fn on_stop() -> OnStop {
    match ON_STOP.load(Ordering::Relaxed) {
        0 => OnStop::Exit,
        _ => OnStop::Abandon,
    }
}

static BUDGET: AtomicUsize = AtomicUsize::new(crate::chat::MEMORY_BUDGET_BYTES);

/// Sets the memory a render may hold at once (process-wide; default
/// [`MEMORY_BUDGET_BYTES`](crate::chat::MEMORY_BUDGET_BYTES); more when the input is larger).
/// A fuzzer lowers it so that the renders it abandons stay small.
pub fn set_memory_budget(bytes: usize) {
    BUDGET.store(bytes.max(1 << 20), Ordering::Relaxed);
}

pub(crate) fn memory_budget() -> usize {
    BUDGET.load(Ordering::Relaxed)
}

static HINT: OnceLock<&'static str> = OnceLock::new();

/// What the stop message suggests (e.g. the command-line flags that go around the template).
/// Set once; later calls are ignored.
pub fn set_hint(hint: &'static str) {
    let _ = HINT.set(hint);
}

/// Templates stopped for their memory, by [`template_key`]; renders of them fail at once.
static STOPPED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// A key naming a template's text (FNV-1a).
pub(crate) fn template_key(template: &str) -> u64 {
    template.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The error for a template stopped earlier in this process, if `key` names one.
pub(crate) fn stopped_before(key: u64) -> Option<TokenizerError> {
    let stopped = STOPPED.lock().unwrap_or_else(|p| p.into_inner());
    stopped.contains(&key).then(|| {
        TokenizerError::Template(format!(
            "the template was stopped earlier for holding too much memory while rendering, \
             so it is not run again{}",
            hint_suffix()
        ))
    })
}

fn hint_suffix() -> String {
    match HINT.get().copied().unwrap_or("") {
        "" => String::new(),
        h => format!("; {h}"),
    }
}

/// Where a render thread delivers its result: its caller's channel and its template's key.
pub(crate) type Reply = SyncSender<crate::Result<String>>;

thread_local! {
    /// (budget, bytes held since armed); budget 0 = not counting.
    static STATE: Cell<(usize, isize)> = const { Cell::new((0, 0)) };
    /// Set on render threads: the channel the result goes to, and the template's key.
    static REPLY: RefCell<Option<(Reply, u64)>> = const { RefCell::new(None) };
}

/// Makes this thread a render thread: on a stop in [`OnStop::Abandon`] mode the error goes to
/// `reply`. [`take_reply`] gets the channel back for the normal result.
pub(crate) fn set_reply(reply: Reply, key: u64) {
    REPLY.with(|r| *r.borrow_mut() = Some((reply, key)));
}

pub(crate) fn take_reply() -> Option<Reply> {
    REPLY
        .with(|r| r.borrow_mut().take())
        .map(|(reply, _)| reply)
}

/// The counting allocator: [`System`] plus the per-thread budget check.
pub struct RenderAlloc;

fn track(delta: isize) {
    let _ = STATE.try_with(|s| {
        let (budget, held) = s.get();
        if budget == 0 {
            return;
        }
        let held = held.saturating_add(delta);
        s.set((budget, held));
        if held > budget as isize {
            // Counting off first: what follows allocates.
            s.set((0, 0));
            stop(budget);
        }
    });
}

#[cold]
fn stop(budget: usize) {
    let why = format!(
        "rendering it took more than {} MiB of memory{}",
        budget >> 20,
        hint_suffix()
    );
    let reply = REPLY.try_with(|r| r.borrow_mut().take()).ok().flatten();
    match (on_stop(), reply) {
        (OnStop::Abandon, Some((reply, key))) => {
            STOPPED.lock().unwrap_or_else(|p| p.into_inner()).push(key);
            let _ = reply.send(Err(TokenizerError::Template(format!(
                "the template was stopped: {why}"
            ))));
            drop(reply);
            // Never return to the render: the allocation it asked for is not made. The thread
            // keeps what it holds (at most the budget) and waits for the process to end.
            loop {
                std::thread::park();
            }
        }
        _ => {
            use std::io::Write;
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "error: the chat template was stopped: {why}");
            let _ = err.flush();
            std::process::exit(1)
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; the only addition is `track`, which touches a thread-local
// `Cell` (no allocation while counting is on) and, past the budget, either exits the process
// or parks the thread without returning — never returns a pointer `System` did not give.
unsafe impl GlobalAlloc for RenderAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        track(l.size() as isize);
        // SAFETY: `l` comes from the caller, who upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        track(l.size() as isize);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        track(-(l.size() as isize));
        // SAFETY: `p` was allocated by `System` (every path above allocates there) with `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        track(new as isize - l.size() as isize);
        // SAFETY: as in `dealloc`, and `new` is the caller's valid new size.
        unsafe { System.realloc(p, l, new) }
    }
}

/// Counting is on for this thread while it lives.
pub(crate) struct Armed;

impl Armed {
    pub(crate) fn new(budget: usize) -> Armed {
        let _ = STATE.try_with(|s| s.set((budget.max(1), 0)));
        Armed
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        let _ = STATE.try_with(|s| s.set((0, 0)));
    }
}
