//! GGUF parsing of arbitrary bytes: never panics, and valid files round-trip through the writer.
//! Run with `cargo +nightly fuzz run parse` from this directory.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gguf::fuzzing::check_parse(data);
});
