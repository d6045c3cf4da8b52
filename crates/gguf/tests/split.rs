//! Models split over several files, written with the writer and read back as one.

use std::path::{Path, PathBuf};

use gguf::{split_path, GgmlType, GgufFile, GgufWriter, SplitError, Value};

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("gguf-split")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tensor_bytes(seed: u8, n: usize) -> Vec<u8> {
    (0..n * 4)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Tensor names per split (part 0 gets the model metadata too).
const LAYOUT: [&[&str]; 3] = [
    &["token_embd.weight", "blk.0.w"],
    &["blk.1.w"],
    &["blk.2.w", "output.weight"],
];

/// Writes `prefix-0000N-of-00003.gguf`; `tweak` may edit each part's writer before writing.
fn write_split(prefix: &Path, tweak: impl Fn(u32, &mut GgufWriter)) {
    let total: usize = LAYOUT.iter().map(|l| l.len()).sum();
    let mut seed = 0u8;
    for (no, names) in LAYOUT.iter().enumerate() {
        let no = no as u32;
        let mut w = GgufWriter::new();
        if no == 0 {
            w.add("general.architecture", Value::String("llama".into()))
                .unwrap();
            w.add("llama.block_count", Value::U32(3)).unwrap();
        }
        w.add("split.no", Value::U16(no as u16)).unwrap();
        w.add("split.count", Value::U16(3)).unwrap();
        w.add("split.tensors.count", Value::I32(total as i32))
            .unwrap();
        tweak(no, &mut w);
        for name in names.iter() {
            seed += 1;
            w.add_tensor(*name, &[8, 2], GgmlType::F32, tensor_bytes(seed, 16))
                .unwrap();
        }
        w.write_file(split_path(prefix, no, 3)).unwrap();
    }
}

#[test]
fn three_splits_read_as_one_model() {
    let d = dir("ok");
    let prefix = d.join("model");
    write_split(&prefix, |_, _| {});
    let first = d.join("model-00001-of-00003.gguf");
    let f = GgufFile::open(&first).unwrap();
    assert_eq!(f.n_splits(), 3);
    assert_eq!(f.path(), first);
    assert_eq!(
        f.metadata().get_str("general.architecture").unwrap(),
        "llama"
    );
    let names: Vec<_> = f
        .tensors()
        .iter()
        .map(|t| (t.name.as_str(), t.split))
        .collect();
    assert_eq!(
        names,
        [
            ("token_embd.weight", 0),
            ("blk.0.w", 0),
            ("blk.1.w", 1),
            ("blk.2.w", 2),
            ("output.weight", 2)
        ]
    );
    for (i, t) in f.tensors().iter().enumerate() {
        assert_eq!(
            f.tensor_data(t),
            &tensor_bytes(i as u8 + 1, 16)[..],
            "{}",
            t.name
        );
    }
    let sizes: u64 = (0..3)
        .map(|n| std::fs::metadata(split_path(&prefix, n, 3)).unwrap().len())
        .sum();
    assert_eq!(f.file_size(), sizes);
    let paths: Vec<_> = f.split_paths().map(Path::to_path_buf).collect();
    assert_eq!(paths[2], d.join("model-00003-of-00003.gguf"));
    // The last part's first tensor sits at the start of that part's data section, not after
    // the first part's data.
    assert_eq!(f.tensor("blk.2.w").unwrap().offset, 0);
}

fn open_err(path: &Path) -> (String, SplitError) {
    let e = GgufFile::open(path).unwrap_err();
    let msg = e.to_string();
    (
        msg,
        e.split_error()
            .cloned()
            .unwrap_or_else(|| panic!("not a split error: {e}")),
    )
}

#[test]
fn missing_part_is_named() {
    let d = dir("missing");
    let prefix = d.join("m");
    write_split(&prefix, |_, _| {});
    let third = split_path(&prefix, 2, 3);
    std::fs::remove_file(&third).unwrap();
    let (msg, kind) = open_err(&split_path(&prefix, 0, 3));
    assert_eq!(
        kind,
        SplitError::MissingPart {
            part: third.clone()
        }
    );
    assert!(
        msg.contains(&format!("split part {} is missing", third.display())),
        "{msg}"
    );
}

#[test]
fn opening_a_later_part_says_to_open_the_first() {
    let d = dir("later");
    let prefix = d.join("m");
    write_split(&prefix, |_, _| {});
    let (msg, kind) = open_err(&split_path(&prefix, 1, 3));
    assert_eq!(kind, SplitError::NotFirst { no: 1 });
    assert!(msg.contains("open the first split"), "{msg}");
}

#[test]
fn renamed_first_part_is_rejected() {
    let d = dir("renamed");
    let prefix = d.join("m");
    write_split(&prefix, |_, _| {});
    let renamed = d.join("model.gguf");
    std::fs::rename(split_path(&prefix, 0, 3), &renamed).unwrap();
    let (_, kind) = open_err(&renamed);
    assert_eq!(kind, SplitError::UnrecognisedName { count: 3 });
}

#[test]
fn parts_that_disagree_are_rejected() {
    let d = dir("count");
    write_split(&d.join("m"), |_, _| {});
    // Rewrite part 2 claiming to be part 3 of 3.
    let mut w = GgufWriter::new();
    w.add("split.no", Value::U16(2)).unwrap();
    w.add("split.count", Value::U16(3)).unwrap();
    w.write_file(split_path(d.join("m"), 1, 3)).unwrap();
    let (msg, kind) = open_err(&split_path(d.join("m"), 0, 3));
    assert_eq!(
        kind,
        SplitError::NumberMismatch {
            expected: 1,
            found: 2
        }
    );
    assert!(
        msg.starts_with(&split_path(d.join("m"), 1, 3).display().to_string()),
        "{msg}"
    );

    let d = dir("dup");
    write_split(&d.join("m"), |no, w| {
        if no == 1 {
            w.add_tensor("blk.0.w", &[4], GgmlType::F32, vec![0u8; 16])
                .unwrap();
        }
    });
    let (_, kind) = open_err(&split_path(d.join("m"), 0, 3));
    assert_eq!(
        kind,
        SplitError::DuplicateTensor {
            tensor: "blk.0.w".into(),
            first_split: 0,
            second_split: 1
        }
    );

    let d = dir("total");
    write_split(&d.join("m"), |no, w| {
        if no == 2 {
            w.add_tensor("extra", &[4], GgmlType::F32, vec![0u8; 16])
                .unwrap();
        }
    });
    let (_, kind) = open_err(&split_path(d.join("m"), 0, 3));
    assert_eq!(
        kind,
        SplitError::TensorCountMismatch {
            expected: 5,
            found: 6
        }
    );
}

#[test]
fn count_mismatch_is_rejected() {
    let d = dir("count-mismatch");
    write_split(&d.join("m"), |_, _| {});
    let mut w = GgufWriter::new();
    w.add("split.no", Value::U16(2)).unwrap();
    w.add("split.count", Value::U16(4)).unwrap();
    w.write_file(split_path(d.join("m"), 2, 3)).unwrap();
    let (_, kind) = open_err(&split_path(d.join("m"), 0, 3));
    assert_eq!(
        kind,
        SplitError::CountMismatch {
            expected: 3,
            found: 4
        }
    );
}
