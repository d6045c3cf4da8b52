//! Reading GGUF files written by llama.cpp's gguf-py (copied from the shared fixtures).

use gguf::{GgmlType, GgufFile, Value};

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn llama_q8_0_fixture_metadata_and_tensors() {
    let f = GgufFile::open(data("llama-q8_0.gguf")).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.file_size(), 137280);
    assert_eq!(f.n_splits(), 1);
    let md = f.metadata();
    assert_eq!(md.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(md.get_str("general.name").unwrap(), "tiny-llama-q8_0");
    assert_eq!(md.get_u32("general.file_type").unwrap(), 7);
    assert_eq!(md.get_u32("llama.embedding_length").unwrap(), 64);
    assert_eq!(md.get_u64("llama.context_length").unwrap(), 128);
    assert_eq!(md.get_f32("llama.rope.freq_base").unwrap(), 10000.0);
    assert_eq!(
        md.get_f32("llama.attention.layer_norm_rms_epsilon")
            .unwrap(),
        1e-5
    );
    assert_eq!(md.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 356);
    assert!(md.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    let tokens = md.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 360);
    assert_eq!(tokens[32], "Ġ");
    assert_eq!(tokens[356], "<|bos|>");
    assert_eq!(md.get_str_array("tokenizer.ggml.merges").unwrap()[0], "h e");
    assert_eq!(
        md.get_i32_array("tokenizer.ggml.token_type").unwrap()[356],
        3
    );
    // Metadata keeps file order.
    assert_eq!(md.iter().next().unwrap().0, "general.architecture");

    assert_eq!(f.tensors().len(), 21);
    let n_params: u64 = f.tensors().iter().map(|t| t.n_elements()).sum();
    assert_eq!(n_params, 120128);
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dims, vec![64, 360]);
    assert_eq!(emb.ty, GgmlType::Q8_0);
    assert_eq!(emb.size, 360 * 2 * 34);
    assert_eq!(f.tensor_data(emb).len() as u64, emb.size);
    let norm = f.tensor("output_norm.weight").unwrap();
    assert_eq!(norm.ty, GgmlType::F32);
    // Norm weights are ~ 1 + N(0, 0.1).
    let w: Vec<f32> = f
        .tensor_data(norm)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(w.len(), 64);
    assert!(w.iter().all(|&x| (0.5..1.5).contains(&x)), "{w:?}");
    assert_eq!(f.tensor_file_offset(emb) % 32, 0);
    assert!(f.tensor("missing").is_none());
}

#[test]
fn quant_fixture_tensor_bytes_match_ggml() {
    let f = GgufFile::open(data("Q4_K.gguf")).unwrap();
    assert_eq!(
        f.metadata().get_str("quantfixture.ggml_type").unwrap(),
        "Q4_K"
    );
    assert_eq!(
        f.metadata().get_u32("quantfixture.row_length").unwrap(),
        512
    );
    let names: Vec<_> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["normal", "outliers", "edge"]);
    let normal = f.tensor("normal").unwrap();
    assert_eq!(
        (normal.dims.clone(), normal.ty, normal.size),
        (vec![512, 4], GgmlType::Q4_K, 1152)
    );
    let bytes = f.tensor_data(normal);
    assert_eq!(
        hex(&bytes[..24]),
        "c51d922aada9eaf2b19da7e72925a0ff2a3bb93668a64a6f"
    );
    let edge = f.tensor_data(f.tensor("edge").unwrap());
    assert_eq!(
        hex(&edge[edge.len() - 24..]),
        "f7fcf7f8f7f4fff0f6fbf4fbfef6faf5fbf9fafefbfefbf4"
    );
    let outliers = f.tensor_data(f.tensor("outliers").unwrap());
    assert_eq!(
        hex(&outliers[..24]),
        "a6201030013f01c1003f00000101010be0e4e2e2e1e1e3e0"
    );
}

#[test]
fn iq_types_parse() {
    let f = GgufFile::open(data("IQ4_XS.gguf")).unwrap();
    let t = f.tensor("normal").unwrap();
    assert_eq!(t.ty, GgmlType::IQ4_XS);
    assert_eq!(t.size, 4 * 2 * 136);
}

#[test]
fn types_without_kernels_still_parse() {
    let mut w = gguf::GgufWriter::new();
    w.add_tensor("t", &[256, 3], GgmlType::MXFP4, vec![0u8; 3 * 8 * 17])
        .unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    let f = GgufFile::from_bytes(&bytes).unwrap();
    let t = f.tensor("t").unwrap();
    assert_eq!(t.ty, GgmlType::MXFP4);
    assert!(!t.ty.is_supported());
    assert_eq!(t.size, 3 * 8 * 17);
}

#[test]
fn in_memory_parse_equals_file_parse() {
    let bytes = std::fs::read(data("llama-q8_0.gguf")).unwrap();
    let a = GgufFile::from_bytes(&bytes).unwrap();
    let b = GgufFile::open(data("llama-q8_0.gguf")).unwrap();
    assert_eq!(a.metadata(), b.metadata());
    assert_eq!(a.tensors(), b.tensors());
    for t in a.tensors() {
        assert_eq!(a.tensor_data(t), b.tensor_data(t));
    }
    assert_eq!(a.metadata().get("llama.block_count"), Some(&Value::U32(2)));
}
