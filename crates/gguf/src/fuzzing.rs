//! The property checked by the fuzz target (`fuzz/fuzz_targets/parse.rs`) and by the corpus test
//! in normal `cargo test`: parsing arbitrary bytes never panics, and whatever parses survives a
//! write → parse round trip unchanged.

use crate::{GgufFile, GgufWriter};

/// Parses `bytes`; if they form a valid file, rewrites it and checks the rewrite is stable.
/// Returns whether `bytes` parsed. Panics only when the round-trip property is violated.
pub fn check_parse(bytes: &[u8]) -> bool {
    let Ok(file) = GgufFile::from_bytes(bytes) else {
        return false;
    };
    for t in file.tensors() {
        assert_eq!(
            file.tensor_data(t).len() as u64,
            t.size,
            "tensor {}",
            t.name
        );
    }
    for (k, v) in file.metadata().iter() {
        let _ = (
            k.len(),
            v.type_description(),
            file.metadata().get_u64(k),
            file.metadata().get_str_array(k),
        );
    }
    // Writing pads the header to `general.alignment`: right, but for a hostile 2^29 that is
    // half a gigabyte of zeros per input, which is not what this checks.
    if file.alignment() > 1 << 20 {
        return true;
    }
    // The writer is stricter than the reader (e.g. it wants general.alignment as u32), so a file
    // it refuses is not a failure; one it accepts must read back to the same bytes.
    let Some(first) = rewrite(&file) else {
        return true;
    };
    let again = GgufFile::from_bytes(&first).expect("a file written by GgufWriter must parse");
    assert_eq!(again.metadata().len(), file.metadata().len());
    assert_eq!(again.tensors().len(), file.tensors().len());
    let second = rewrite(&again).expect("a file written by GgufWriter must be rewritable");
    // Compared as bytes rather than values so NaN metadata does not count as a difference.
    assert!(first == second, "rewriting is not stable");
    true
}

fn rewrite(file: &GgufFile) -> Option<Vec<u8>> {
    let mut w = GgufWriter::new();
    w.set_version(file.version()).ok()?;
    w.add_all(file.metadata()).ok()?;
    for t in file.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ty, file.tensor_data(t))
            .ok()?;
    }
    let mut out = Vec::new();
    w.write_to(&mut out).ok()?;
    Some(out)
}
