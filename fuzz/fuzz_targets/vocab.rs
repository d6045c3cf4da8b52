//! See `tokenizer::fuzzing::check_vocab`: must never panic, hang or run away with memory.
//! Run with `cargo +nightly fuzz run vocab seeds/vocab` from this directory (see README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tokenizer::fuzzing::check_vocab(data);
});
