//! See `engine::fuzzing::check_model`: must never panic, hang or run away with memory.
//! Run with `cargo +nightly fuzz run model seeds/model` from this directory (see README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    engine::fuzzing::check_model(data);
});
