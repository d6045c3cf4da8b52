//! Writer → reader round trips.

use gguf::{GgmlType, GgufError, GgufFile, GgufWriter, Value};

fn every_value() -> Vec<(&'static str, Value)> {
    vec![
        ("t.u8", Value::U8(255)),
        ("t.i8", Value::I8(-128)),
        ("t.u16", Value::U16(65535)),
        ("t.i16", Value::I16(-32768)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f32", Value::F32(-1.5e-7)),
        ("t.f64", Value::F64(std::f64::consts::PI)),
        ("t.true", Value::Bool(true)),
        ("t.false", Value::Bool(false)),
        ("t.str", Value::String("héllo ✓ \u{0}".to_string())),
        ("t.empty_str", Value::String(String::new())),
        (
            "t.arr_u8",
            Value::Array(vec![Value::U8(1), Value::U8(2), Value::U8(3)]),
        ),
        (
            "t.arr_i16",
            Value::Array(vec![Value::I16(-1), Value::I16(7)]),
        ),
        (
            "t.arr_f32",
            Value::Array(vec![Value::F32(0.25), Value::F32(-8.0)]),
        ),
        ("t.arr_f64", Value::Array(vec![Value::F64(1e300)])),
        (
            "t.arr_bool",
            Value::Array(vec![Value::Bool(true), Value::Bool(false)]),
        ),
        ("t.arr_u64", Value::Array(vec![Value::U64(1 << 60)])),
        ("t.arr_i64", Value::Array(vec![Value::I64(-5)])),
        ("t.arr_u16", Value::Array(vec![Value::U16(9)])),
        ("t.arr_i8", Value::Array(vec![Value::I8(-9)])),
        (
            "t.arr_u32",
            Value::Array(vec![Value::U32(1), Value::U32(2)]),
        ),
        (
            "t.arr_i32",
            Value::Array(vec![Value::I32(-1), Value::I32(2)]),
        ),
        (
            "t.arr_str",
            Value::Array(vec![
                Value::String("a".into()),
                Value::String(String::new()),
            ]),
        ),
        ("t.arr_empty", Value::Array(vec![])),
        (
            "t.arr_arr",
            Value::Array(vec![
                Value::Array(vec![Value::I32(1), Value::I32(2)]),
                Value::Array(vec![Value::String("x".into())]),
                Value::Array(vec![]),
            ]),
        ),
        (
            "t.arr_arr_arr",
            Value::Array(vec![Value::Array(vec![Value::Array(vec![Value::U8(42)])])]),
        ),
    ]
}

fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

#[test]
fn every_value_type_round_trips_in_order() {
    let mut w = GgufWriter::new();
    for (k, v) in every_value() {
        w.add(k, v).unwrap();
    }
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    let f = GgufFile::from_bytes(&bytes).unwrap();
    assert_eq!(f.version(), 3);
    let got: Vec<(&str, &Value)> = f.metadata().iter().collect();
    let want = every_value();
    assert_eq!(got.len(), want.len());
    for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
        assert_eq!(gk, wk);
        // NaN-free values, so plain equality is exact.
        assert_eq!(*gv, wv, "{wk}");
    }
    assert_eq!(f.metadata().get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(f.metadata().get_i64("t.i64").unwrap(), i64::MIN);
    assert_eq!(f.metadata().get_f32("t.f64").unwrap(), std::f32::consts::PI);
    assert!(f.tensors().is_empty());
}

#[test]
fn tensors_round_trip_with_alignment_and_padding() {
    for alignment in [None, Some(64u32), Some(1), Some(4096)] {
        let a: Vec<u8> = f32_bytes((0..24).map(|i| i as f32 * 0.5));
        let b: Vec<u8> = (0..34 * 3).map(|i| (i * 7) as u8).collect();
        let c: Vec<u8> = (0..2 * 5).map(|i| i as u8).collect();
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("test".into()))
            .unwrap();
        if let Some(al) = alignment {
            w.set_alignment(al).unwrap();
        }
        w.add_tensor("a", &[8, 3], GgmlType::F32, &a[..]).unwrap();
        w.add_tensor("b", &[32, 3], GgmlType::Q8_0, b.clone())
            .unwrap();
        w.add_tensor("c", &[5, 1, 1, 1], GgmlType::F16, &c[..])
            .unwrap();
        // Empty tensors are legal in ggml and take no bytes.
        w.add_tensor("empty", &[0, 3], GgmlType::F32, Vec::new())
            .unwrap();
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();

        let f = GgufFile::from_bytes(&bytes).unwrap();
        let al = alignment.unwrap_or(32) as u64;
        assert_eq!(f.alignment(), al);
        assert_eq!(
            bytes.len() as u64 % al,
            0,
            "file is padded to the alignment"
        );
        let names: Vec<_> = f.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "empty"]);
        let empty = f.tensor("empty").unwrap();
        assert_eq!((empty.n_elements(), empty.n_rows(), empty.size), (0, 3, 0));
        assert!(f.tensor_data(empty).is_empty());
        for (name, data) in [("a", &a), ("b", &b), ("c", &c)] {
            let t = f.tensor(name).unwrap();
            assert_eq!(f.tensor_data(t), &data[..], "{name}");
            assert_eq!(f.tensor_file_offset(t) % al, 0);
            assert_eq!(t.offset % al, 0);
        }
        let b_info = f.tensor("b").unwrap();
        assert_eq!(
            (b_info.dims.clone(), b_info.ty, b_info.size),
            (vec![32, 3], GgmlType::Q8_0, 102)
        );
        assert_eq!(f.tensor("c").unwrap().n_elements(), 5);
        assert_eq!(f.tensor("a").unwrap().n_rows(), 3);
    }
}

#[test]
fn streaming_writer_produces_the_same_bytes() {
    let a = f32_bytes((0..16).map(|i| i as f32));
    let b: Vec<u8> = (0..18).collect();
    let mut whole = GgufWriter::new();
    whole.add("k", Value::U32(1)).unwrap();
    whole.add_tensor("a", &[16], GgmlType::F32, &a[..]).unwrap();
    whole
        .add_tensor("b", &[32], GgmlType::Q4_0, &b[..])
        .unwrap();
    let mut expected = Vec::new();
    whole.write_to(&mut expected).unwrap();

    let mut stream = GgufWriter::new();
    stream.add("k", Value::U32(1)).unwrap();
    stream.add_tensor_info("a", &[16], GgmlType::F32).unwrap();
    stream.add_tensor_info("b", &[32], GgmlType::Q4_0).unwrap();
    // Declared-only tensors cannot go through the one-shot path.
    assert!(matches!(stream.write_to(Vec::new()), Err(GgufError::Writer(m)) if m.contains("`a`")));
    let mut out = stream.begin(Vec::new()).unwrap();
    assert_eq!(out.next_tensor(), Some("a"));
    let err = out.write_tensor(&b).unwrap_err();
    assert_eq!(
        err.to_string(),
        "gguf writer: tensor `a`: 18 bytes written, expected 64"
    );
    out.write_tensor(&a).unwrap();
    out.write_tensor(&b).unwrap();
    assert!(out.write_tensor(&b).is_err());
    assert_eq!(out.finish().unwrap(), expected);
}

#[test]
fn unfinished_stream_is_an_error() {
    let mut w = GgufWriter::new();
    w.add_tensor_info("x", &[4], GgmlType::F32).unwrap();
    let out = w.begin(Vec::new()).unwrap();
    let err = out.finish().unwrap_err();
    assert_eq!(
        err.to_string(),
        "gguf writer: tensor `x` was declared but its data never written"
    );
}

#[test]
fn version_2_is_written_and_read() {
    let mut w = GgufWriter::new();
    w.set_version(2).unwrap();
    assert!(w.set_version(1).is_err());
    w.add("x", Value::String("v2".into())).unwrap();
    w.add_tensor("t", &[4], GgmlType::F32, f32_bytes([1.0, 2.0, 3.0, 4.0]))
        .unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    let f = GgufFile::from_bytes(&bytes).unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(
        f.tensor_data(f.tensor("t").unwrap()),
        &f32_bytes([1.0, 2.0, 3.0, 4.0])[..]
    );
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = GgufWriter::new();
    w.add("k", Value::U8(1)).unwrap();
    let msg = |e: GgufError| e.to_string();
    assert_eq!(
        msg(w.add("k", Value::U8(2)).unwrap_err()),
        "gguf writer: metadata key `k` added twice"
    );
    assert_eq!(
        msg(w
            .add("mixed", Value::Array(vec![Value::U8(1), Value::I8(1)]))
            .unwrap_err()),
        "gguf writer: metadata key `mixed`: array mixes u8 and i8"
    );
    assert!(w.set_alignment(48).is_err());
    assert!(w.add("general.alignment", Value::U64(32)).is_err());
    assert_eq!(
        msg(w
            .add_tensor("q", &[33], GgmlType::Q4_0, vec![0u8; 18])
            .unwrap_err()),
        "gguf writer: tensor `q`: row length 33 is not a multiple of the Q4_0 block size 32"
    );
    assert_eq!(
        msg(w
            .add_tensor("f", &[4], GgmlType::F32, vec![0u8; 15])
            .unwrap_err()),
        "gguf writer: tensor `f`: 15 bytes given, F32 [4] needs 16"
    );
    assert!(w
        .add_tensor("d", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0u8; 4])
        .is_err());
    assert!(w
        .add_tensor_info("o", &[u64::MAX, 2], GgmlType::F32)
        .is_err());
    w.add_tensor("f", &[4], GgmlType::F32, vec![0u8; 16])
        .unwrap();
    assert_eq!(
        msg(w
            .add_tensor("f", &[4], GgmlType::F32, vec![0u8; 16])
            .unwrap_err()),
        "gguf writer: tensor `f` added twice"
    );
}

#[test]
fn fixture_is_rewritten_identically() {
    // Copying a gguf-py file through the writer (same order, alignment 32) gives the same bytes:
    // evidence that the writer's layout matches the reference writer's.
    let path = format!("{}/tests/data/llama-q8_0.gguf", env!("CARGO_MANIFEST_DIR"));
    let original = std::fs::read(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let mut w = GgufWriter::new();
    w.add_all(f.metadata()).unwrap();
    for t in f.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ty, f.tensor_data(t))
            .unwrap();
    }
    let mut copy = Vec::new();
    w.write_to(&mut copy).unwrap();
    assert_eq!(copy.len(), original.len());
    assert!(copy == original, "rewritten file differs from the original");
}
