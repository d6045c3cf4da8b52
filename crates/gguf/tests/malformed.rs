//! A corpus of malformed files, built here from a valid layout, each checked for the specific
//! error it must produce (and for never panicking).

use gguf::{GgufError, GgufFile, Malformed};

/// Raw GGUF bytes, assembled field by field so any field can be made wrong.
#[derive(Clone)]
struct Spec {
    magic: [u8; 4],
    version: u32,
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    kvs: Vec<Vec<u8>>,
    tensors: Vec<Vec<u8>>,
    alignment: usize,
    data: Vec<u8>,
}

fn u32b(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn u64b(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn strb(s: &[u8]) -> Vec<u8> {
    [u64b(s.len() as u64), s.to_vec()].concat()
}

fn kv(key: &[u8], type_id: u32, value: Vec<u8>) -> Vec<u8> {
    [strb(key), u32b(type_id), value].concat()
}

fn kv_str(key: &str, s: &str) -> Vec<u8> {
    kv(key.as_bytes(), 8, strb(s.as_bytes()))
}

fn tensor(name: &[u8], dims: &[u64], type_id: u32, offset: u64) -> Vec<u8> {
    let mut out = strb(name);
    out.extend(u32b(dims.len() as u32));
    for d in dims {
        out.extend(u64b(*d));
    }
    out.extend(u32b(type_id));
    out.extend(u64b(offset));
    out
}

impl Spec {
    /// A valid file: two metadata entries, two F32 tensors of 32 bytes each.
    fn valid() -> Spec {
        Spec {
            magic: *b"GGUF",
            version: 3,
            n_tensors: None,
            n_kv: None,
            kvs: vec![
                kv_str("general.architecture", "test"),
                kv(b"test.block_count", 4, u32b(2)),
            ],
            tensors: vec![tensor(b"a", &[8], 0, 0), tensor(b"b", &[4, 2], 0, 32)],
            alignment: 32,
            data: (0..64).collect(),
        }
    }

    fn build(&self) -> Vec<u8> {
        let mut out = self.magic.to_vec();
        out.extend(u32b(self.version));
        out.extend(u64b(self.n_tensors.unwrap_or(self.tensors.len() as u64)));
        out.extend(u64b(self.n_kv.unwrap_or(self.kvs.len() as u64)));
        self.kvs.iter().for_each(|k| out.extend(k));
        self.tensors.iter().for_each(|t| out.extend(t));
        while !out.len().is_multiple_of(self.alignment) {
            out.push(0);
        }
        out.extend(&self.data);
        out
    }
}

fn parse_err(bytes: &[u8]) -> (u64, Malformed, String) {
    match GgufFile::from_bytes(bytes) {
        Ok(_) => panic!("malformed file was accepted"),
        Err(e) => {
            let msg = e.to_string();
            match e {
                GgufError::Malformed { offset, kind, .. } => (offset, kind, msg),
                other => panic!("expected a Malformed error, got {other:?}"),
            }
        }
    }
}

fn with(f: impl FnOnce(&mut Spec)) -> Vec<u8> {
    let mut s = Spec::valid();
    f(&mut s);
    s.build()
}

#[test]
fn the_base_file_is_valid() {
    let f = GgufFile::from_bytes(Spec::valid().build()).unwrap();
    assert_eq!(f.tensors().len(), 2);
    assert_eq!(f.metadata().get_u32("test.block_count").unwrap(), 2);
    assert_eq!(f.tensor_data(f.tensor("b").unwrap())[0], 32);
}

/// Each case: a name, the bytes, and a check of the exact error.
type Case = (&'static str, Vec<u8>, fn(&Malformed) -> bool);

fn cases() -> Vec<Case> {
    let valid = Spec::valid().build();
    let deep = {
        // 9 nested array headers around a u8 array.
        let mut v = Vec::new();
        for _ in 0..9 {
            v.extend(u32b(9));
            v.extend(u64b(1));
        }
        v.extend(u32b(0));
        v.extend(u64b(0));
        v
    };
    vec![
        (
            "empty file",
            vec![],
            |k| matches!(k, Malformed::Truncated { what, .. } if what == "magic"),
        ),
        ("half a magic", b"GG".to_vec(), |k| {
            matches!(
                k,
                Malformed::Truncated {
                    needed: 4,
                    available: 2,
                    ..
                }
            )
        }),
        (
            "wrong magic",
            with(|s| s.magic = *b"GGML"),
            |k| matches!(k, Malformed::BadMagic { found } if found == b"GGML"),
        ),
        ("version 1", with(|s| s.version = 1), |k| {
            *k == Malformed::UnsupportedVersion { version: 1 }
        }),
        ("version 4", with(|s| s.version = 4), |k| {
            *k == Malformed::UnsupportedVersion { version: 4 }
        }),
        ("big endian", with(|s| s.version = 3u32.swap_bytes()), |k| {
            *k == Malformed::BigEndian { version: 3 }
        }),
        (
            "cut after version",
            valid[..8].to_vec(),
            |k| matches!(k, Malformed::Truncated { what, .. } if what == "tensor count"),
        ),
        (
            "cut inside kv count",
            with(|s| {
                s.tensors.clear();
                s.data.clear();
            })[..20]
                .to_vec(),
            |k| matches!(k, Malformed::Truncated { what, .. } if what == "metadata entry count"),
        ),
        (
            "absurd tensor count",
            with(|s| s.n_tensors = Some(u64::MAX)),
            |k| matches!(k, Malformed::CountTooLarge { what, count: u64::MAX, .. } if what == "tensor"),
        ),
        (
            "absurd kv count",
            with(|s| s.n_kv = Some(1 << 40)),
            |k| matches!(k, Malformed::CountTooLarge { what, .. } if what == "metadata entry"),
        ),
        ("kv count one too many", with(|s| s.n_kv = Some(3)), |k| {
            matches!(
                k,
                Malformed::UnknownValueType { .. }
                    | Malformed::Truncated { .. }
                    | Malformed::InvalidUtf8 { .. }
            )
        }),
        (
            "key length past end",
            with(|s| s.kvs[0] = u64b(1 << 20)),
            |k| matches!(k, Malformed::Truncated { what, needed, .. } if what == "key of metadata entry 0" && *needed == 1 << 20),
        ),
        (
            "key not utf-8",
            with(|s| s.kvs[0] = kv(b"gen\xffral", 4, u32b(1))),
            |k| matches!(k, Malformed::InvalidUtf8 { what } if what == "key of metadata entry 0"),
        ),
        (
            "unknown value type",
            with(|s| s.kvs[1] = kv(b"test.x", 13, u32b(1))),
            |k| matches!(k, Malformed::UnknownValueType { key, type_id: 13 } if key == "test.x"),
        ),
        (
            "string value not utf-8",
            with(|s| s.kvs[0] = kv(b"general.architecture", 8, strb(b"\xc3\x28"))),
            |k| matches!(k, Malformed::InvalidUtf8 { what } if what.contains("general.architecture")),
        ),
        (
            "string value past end",
            with(|s| s.kvs[1] = kv(b"test.s", 8, u64b(u64::MAX))),
            |k| matches!(k, Malformed::Truncated { what, needed: u64::MAX, .. } if what.contains("test.s")),
        ),
        (
            "absurd array length",
            with(|s| s.kvs[1] = kv(b"test.arr", 9, [u32b(4), u64b(1 << 61)].concat())),
            |k| matches!(k, Malformed::CountTooLarge { what, .. } if what.contains("test.arr")),
        ),
        (
            "absurd string array length",
            with(|s| s.kvs[1] = kv(b"test.arr", 9, [u32b(8), u64b(100)].concat())),
            |k| matches!(k, Malformed::CountTooLarge { max, .. } if *max < 100),
        ),
        (
            "unknown array element type",
            with(|s| s.kvs[1] = kv(b"test.arr", 9, [u32b(99), u64b(0)].concat())),
            |k| matches!(k, Malformed::UnknownValueType { key, type_id: 99 } if key == "test.arr"),
        ),
        (
            "bool byte 2",
            with(|s| s.kvs[1] = kv(b"test.flag", 7, vec![2])),
            |k| matches!(k, Malformed::InvalidBool { key, byte: 2 } if key == "test.flag"),
        ),
        (
            "arrays nested too deep",
            with(|s| s.kvs[1] = kv(b"test.deep", 9, deep.clone())),
            |k| matches!(k, Malformed::NestingTooDeep { key } if key == "test.deep"),
        ),
        (
            "duplicate key",
            with(|s| s.kvs[1] = kv_str("general.architecture", "again")),
            |k| matches!(k, Malformed::DuplicateKey { key } if key == "general.architecture"),
        ),
        (
            "alignment not a power of two",
            with(|s| s.kvs[1] = kv(b"general.alignment", 4, u32b(48))),
            |k| matches!(k, Malformed::BadAlignment { detail } if detail.contains("48")),
        ),
        (
            "alignment zero",
            with(|s| s.kvs[1] = kv(b"general.alignment", 4, u32b(0))),
            |k| matches!(k, Malformed::BadAlignment { .. }),
        ),
        (
            "alignment as string",
            with(|s| s.kvs[1] = kv_str("general.alignment", "32")),
            |k| matches!(k, Malformed::BadAlignment { detail } if detail.contains("string")),
        ),
        (
            "five dimensions",
            with(|s| s.tensors[1] = tensor(b"b", &[1, 1, 1, 1, 8], 0, 32)),
            |k| {
                *k == Malformed::TooManyDims {
                    tensor: "b".into(),
                    n_dims: 5,
                }
            },
        ),
        (
            "dimension product overflows",
            with(|s| s.tensors[1] = tensor(b"b", &[1 << 32, 1 << 32], 0, 32)),
            |k| matches!(k, Malformed::DimsOverflow { tensor, .. } if tensor == "b"),
        ),
        (
            "zero dim beside overflowing dims",
            with(|s| s.tensors[1] = tensor(b"b", &[0, 1 << 40, 1 << 40], 0, 32)),
            |k| matches!(k, Malformed::DimsOverflow { tensor, .. } if tensor == "b"),
        ),
        (
            "dimension above i64::MAX",
            with(|s| s.tensors[1] = tensor(b"b", &[1 << 63], 0, 32)),
            |k| matches!(k, Malformed::DimsOverflow { .. }),
        ),
        (
            "retired tensor type id",
            with(|s| s.tensors[0] = tensor(b"a", &[8], 4, 0)),
            |k| {
                *k == Malformed::UnknownTensorType {
                    tensor: "a".into(),
                    type_id: 4,
                }
            },
        ),
        (
            "huge tensor type id",
            with(|s| s.tensors[0] = tensor(b"a", &[8], u32::MAX, 0)),
            |k| {
                matches!(
                    k,
                    Malformed::UnknownTensorType {
                        type_id: u32::MAX,
                        ..
                    }
                )
            },
        ),
        (
            "row not a block multiple",
            with(|s| s.tensors[0] = tensor(b"a", &[33], 2, 0)),
            |k| matches!(k, Malformed::NotBlockMultiple { tensor, ne0: 33, .. } if tensor == "a"),
        ),
        (
            "misaligned offset",
            with(|s| s.tensors[1] = tensor(b"b", &[4, 2], 0, 36)),
            |k| {
                *k == Malformed::MisalignedTensor {
                    tensor: "b".into(),
                    offset: 36,
                    alignment: 32,
                }
            },
        ),
        (
            "tensor data past end",
            with(|s| s.tensors[1] = tensor(b"b", &[4, 4], 0, 32)),
            |k| matches!(k, Malformed::TensorOutOfBounds { tensor, size: 64, data_len: 64, .. } if tensor == "b"),
        ),
        (
            "offset + size overflows",
            with(|s| s.tensors[1] = tensor(b"b", &[8], 0, u64::MAX - 31)),
            |k| matches!(k, Malformed::TensorOutOfBounds { .. }),
        ),
        (
            "overlapping tensors",
            with(|s| s.tensors[1] = tensor(b"b", &[16], 0, 0)),
            |k| matches!(k, Malformed::OverlappingTensors { first, second } if first == "a" && second == "b"),
        ),
        (
            "duplicate tensor name",
            with(|s| s.tensors[1] = tensor(b"a", &[4, 2], 0, 32)),
            |k| *k == Malformed::DuplicateTensor { tensor: "a".into() },
        ),
        (
            "tensor name not utf-8",
            with(|s| s.tensors[0] = tensor(b"\xfe", &[8], 0, 0)),
            |k| matches!(k, Malformed::InvalidUtf8 { what } if what == "name of tensor 0"),
        ),
        (
            "directory cut short",
            with(|s| {
                s.tensors.pop();
                s.n_tensors = Some(2);
                s.alignment = 1;
                s.data.clear();
            }),
            |k| matches!(k, Malformed::Truncated { what, .. } if what == "name of tensor 1" || what == "length of name of tensor 1"),
        ),
        (
            "missing data section",
            with(|s| s.data.truncate(40)),
            |k| matches!(k, Malformed::TensorOutOfBounds { tensor, data_len: 40, .. } if tensor == "b"),
        ),
    ]
}

#[test]
fn malformed_corpus_gives_specific_errors() {
    let cases = cases();
    assert!(cases.len() >= 25);
    let mut names = std::collections::HashSet::new();
    for (name, bytes, check) in cases {
        assert!(names.insert(name), "duplicate case name {name}");
        let (offset, kind, msg) = parse_err(&bytes);
        assert!(check(&kind), "{name}: unexpected error {kind:?} ({msg})");
        assert!(msg.starts_with("<memory>: at byte "), "{name}: {msg}");
        assert!(
            offset <= bytes.len() as u64,
            "{name}: offset {offset} past the end"
        );
    }
}

#[test]
fn error_offsets_point_at_the_bad_field() {
    let (offset, _, msg) = parse_err(&with(|s| s.version = 7));
    assert_eq!(offset, 4);
    assert_eq!(
        msg,
        "<memory>: at byte 4: unknown GGUF version 7 (only 2 and 3 are supported)"
    );
    let bytes = with(|s| s.tensors[0] = tensor(b"a", &[8], 4, 0));
    let (offset, _, msg) = parse_err(&bytes);
    // The type id follows the name ("a"), n_dims and one dimension.
    let dir_start = 24 + Spec::valid().kvs.iter().map(Vec::len).sum::<usize>() as u64;
    assert_eq!(offset, dir_start + 8 + 1 + 4 + 8);
    assert!(
        msg.ends_with("tensor `a` has unknown ggml type id 4"),
        "{msg}"
    );
}

#[test]
fn every_truncation_of_a_valid_file_is_rejected_cleanly() {
    let valid = Spec::valid().build();
    let header_len = valid.len() - 64;
    for cut in 0..valid.len() {
        let (_, kind, msg) = parse_err(&valid[..cut]);
        if cut < header_len {
            // A cut header either ends inside a field, or leaves too few bytes for the counts
            // already read, or (inside the padding) leaves the tensors without data.
            assert!(
                matches!(
                    kind,
                    Malformed::Truncated { .. }
                        | Malformed::CountTooLarge { .. }
                        | Malformed::TensorOutOfBounds { .. }
                ),
                "cut at {cut}: {msg}"
            );
        } else {
            assert!(
                matches!(kind, Malformed::TensorOutOfBounds { .. }),
                "cut at {cut}: {msg}"
            );
        }
    }
}

#[test]
fn every_single_byte_flip_is_handled() {
    // Not a check of specific errors: a parse either succeeds or fails, and never panics.
    let valid = Spec::valid().build();
    for i in 0..valid.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = valid.clone();
            b[i] ^= flip;
            let _ = GgufFile::from_bytes(&b);
        }
    }
}

#[test]
fn errors_from_files_name_the_file() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf-malformed");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad-magic.gguf");
    std::fs::write(&path, with(|s| s.magic = *b"XXXX")).unwrap();
    let err = GgufFile::open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: at byte 0: not a GGUF file (magic \"XXXX\", expected \"GGUF\")",
            path.display()
        )
    );
    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let err = GgufFile::open(&empty).unwrap_err();
    assert!(err.to_string().starts_with(&format!(
        "{}: at byte 0: file ends inside magic",
        empty.display()
    )));
    let missing = dir.join("does-not-exist.gguf");
    let err = GgufFile::open(&missing).unwrap_err();
    assert!(
        matches!(err, GgufError::Io { ref path, .. } if *path == missing),
        "{err}"
    );
}
