//! Eager (heap copy) and lazy (mapped, pages released) tensor residency. One test per
//! process section that reads RSS, so other tests' allocations do not blur the numbers.

use std::path::PathBuf;

use gguf::{GgmlType, GgufFile, GgufWriter, Value};

const BIG: usize = 64 << 20;

/// A file with a 64 MiB F32 tensor of a known pattern and a small one after it.
fn write_file(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("residency");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("test".into()))
        .unwrap();
    let big: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    w.add_tensor("big", &[(BIG / 4) as u64], GgmlType::F32, big)
        .unwrap();
    w.add_tensor("small", &[8], GgmlType::F32, vec![7u8; 32])
        .unwrap();
    w.write_file(&path).unwrap();
    path
}

fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// `t`'s bytes read through a separate map.
fn mapped_copy(path: &std::path::Path, t: &gguf::TensorInfo) -> Vec<u8> {
    GgufFile::open(path).unwrap().tensor_data(t).to_vec()
}

fn checksum(b: &[u8]) -> u64 {
    b.iter()
        .enumerate()
        .map(|(i, &x)| (i as u64 % 97) * x as u64)
        .sum()
}

#[test]
fn heap_copy_and_page_release() {
    let path = write_file("residency.gguf");
    let mapped = GgufFile::open(&path).unwrap();
    let big = mapped.tensor("big").unwrap().clone();
    let want = checksum(mapped.tensor_data(&big));

    // Eager: same bytes from the heap, 64-byte aligned, progress up to the data size.
    let mut eager = GgufFile::open(&path).unwrap();
    assert!(!eager.is_in_memory());
    let mut calls = Vec::new();
    eager
        .load_into_memory(|done, total| calls.push((done, total)))
        .unwrap();
    assert!(eager.is_in_memory());
    let total = eager.data_bytes();
    assert_eq!(calls.first(), Some(&(0, total)));
    assert_eq!(calls.last(), Some(&(total, total)));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    for t in eager.tensors() {
        assert_eq!(eager.tensor_data(t), mapped.tensor_data(t), "{}", t.name);
        assert_eq!(eager.tensor_data(t).as_ptr() as usize % 32, 0);
    }
    assert_eq!(eager.file_size(), mapped.file_size());
    // Heap data can be rewritten in place; mapped data cannot.
    assert!(mapped_copy(&path, &big).len() == BIG);
    let small_t = eager.tensor("small").unwrap().clone();
    eager.tensor_data_mut("small").unwrap()[0] = 9;
    assert_eq!(eager.tensor_data(&small_t)[..2], [9, 7]);
    eager.tensor_data_mut("small").unwrap()[0] = 7;
    assert!(eager.tensor_data_mut("missing").is_none());
    assert!(GgufFile::open(&path)
        .unwrap()
        .tensor_data_mut("small")
        .is_none());
    // Releasing heap data is a no-op, even with paging on.
    eager.set_release_pages(true);
    eager.release(&big);
    assert_eq!(checksum(eager.tensor_data(&big)), want);
    drop(eager);

    // Lazy: touching the tensor makes it resident; release gives it back; the bytes
    // read the same afterwards.
    let mut lazy = GgufFile::open(&path).unwrap();
    lazy.set_release_pages(true);
    let before = rss();
    assert_eq!(checksum(lazy.tensor_data(&big)), want);
    let touched = rss();
    assert!(
        touched > before + (BIG as u64) * 3 / 4,
        "touching 64 MiB: {before} -> {touched}"
    );
    lazy.release(&big);
    let released = rss();
    assert!(
        released + (BIG as u64) * 3 / 4 < touched,
        "release: {touched} -> {released}"
    );
    assert_eq!(checksum(lazy.tensor_data(&big)), want, "re-faulted bytes");
    lazy.release(&big);

    // Partial release keeps the rest resident.
    std::hint::black_box(checksum(lazy.tensor_data(&big)));
    let full = rss();
    lazy.release_bytes(&big, 0, (BIG / 2) as u64);
    let half = rss();
    let dropped = full - half;
    assert!(
        dropped > (BIG as u64) * 3 / 8 && dropped < (BIG as u64) * 5 / 8,
        "half release dropped {dropped}"
    );
    // Several tensors at once: neighbours merge into one range.
    std::hint::black_box(checksum(lazy.tensor_data(&big)));
    let small = lazy.tensor("small").unwrap().clone();
    let full = rss();
    lazy.release_all(&[&small, &big]);
    assert!(rss() + (BIG as u64) * 3 / 4 < full, "release_all");
    assert_eq!(checksum(lazy.tensor_data(&big)), want);
    assert_eq!(lazy.tensor_data(&small), &[7u8; 32][..]);
    // One byte read may map a whole large page-cache folio around it: release_touched gives
    // back the 2 MiB-aligned window around the bytes named, release_bytes only whole pages
    // inside them (none, for one byte).
    let off = lazy.tensor_file_offset(&big) as usize;
    let x = (off + (4 << 20)).next_multiple_of(2 << 20) - off + (1 << 20);
    let around = x - (512 << 10)..x + (512 << 10);
    std::hint::black_box(checksum(&lazy.tensor_data(&big)[around.clone()]));
    let mapped = rss();
    lazy.release_bytes(&big, x as u64, 1);
    assert!(rss() + (64 << 10) > mapped, "one-byte release_bytes");
    lazy.release_touched(&big, x as u64, 1);
    let dropped = mapped - rss();
    assert!(dropped > 3 << 18, "release_touched dropped only {dropped}");
    assert_eq!(
        checksum(&lazy.tensor_data(&big)[around.clone()]),
        checksum(&mapped_copy(&path, &big)[around])
    );
    // The kernels' hook: a slice handed back leaves memory (widened to its folios), bytes
    // outside the maps are ignored, and the slice reads the same afterwards.
    let hook = lazy.residency().expect("paging on: a hook");
    let data = lazy.tensor_data(&big);
    std::hint::black_box(checksum(data));
    let full = rss();
    hook.done_with(&data[BIG / 4..BIG / 2]);
    let dropped = full - rss();
    assert!(
        dropped > (BIG as u64) / 5 && dropped < (BIG as u64) * 3 / 8,
        "done_with a quarter dropped {dropped}"
    );
    hook.done_with(&[1u8, 2, 3]);
    hook.done_with(&[]);
    assert_eq!(checksum(lazy.tensor_data(&big)), want);
    // Without paging on, release leaves pages alone and there is no hook.
    let plain = GgufFile::open(&path).unwrap();
    assert!(plain.residency().is_none());
    std::hint::black_box(checksum(plain.tensor_data(&big)));
    let a = rss();
    plain.release(&big);
    assert!(rss() + (BIG as u64) / 4 > a, "released without paging");
    std::fs::remove_file(&path).unwrap();
}
