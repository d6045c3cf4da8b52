//! See `tokenizer::fuzzing::check_template`: must never panic, hang or run away with memory.
//! Runaway renders are stopped by the chat-template allocator guard, as in `torchless serve`:
//! the render fails and its thread is left parked (with a 2 MiB budget here, so the ones a run
//! leaves behind stay small). Run with `scripts/fuzz.sh template 600` (see README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenizer::chat_guard::{self, OnStop, RenderAlloc};

#[global_allocator]
static ALLOC: RenderAlloc = RenderAlloc;

fuzz_target!(
    init: {
        chat_guard::set_on_stop(OnStop::Abandon);
        chat_guard::set_memory_budget(2 << 20);
    },
    |data: &[u8]| {
        tokenizer::fuzzing::check_template(data);
    }
);
