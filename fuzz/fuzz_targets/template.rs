//! See `tokenizer::fuzzing::check_template`: must never panic, hang or run away with memory.
//! Run with `cargo +nightly fuzz run template seeds/template` from this directory (see README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tokenizer::fuzzing::check_template(data);
});
