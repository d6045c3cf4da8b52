//! Q4_0 matrices interleaved at load time (eager, AVX2 and up) give the logits of the same
//! file read in place, bit for bit. The model is the llama fixture with its matrices
//! requantized to Q4_0 (and its embedding left alone, as llama.cpp leaves it plain).

use std::path::PathBuf;
use std::sync::Arc;

use gguf::{GgmlType, GgufFile, GgufWriter};
use models::{KvDtype, Model};

/// Writes the fixture to `name` in the test directory (one file per test: tests run in
/// parallel, and rewriting a file another test has mapped kills it with SIGBUS).
fn q4_0_fixture(name: &str) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama.gguf");
    let file = GgufFile::open(&src).unwrap();
    let mut w = GgufWriter::new();
    w.add_all(file.metadata()).unwrap();
    let mut n_q4 = 0;
    for t in file.tensors() {
        let data = file.tensor_data(t);
        let (cols, rows) = (
            t.dims[0] as usize,
            t.dims.get(1).copied().unwrap_or(1) as usize,
        );
        if t.ty == GgmlType::F32 && t.dims.len() == 2 && t.name != "token_embd.weight" {
            assert!(cols.is_multiple_of(32));
            let f: Vec<f32> = data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let mut q = vec![0u8; rows * cols / 32 * 18];
            quant::q4_0::quantize(&f, &mut q);
            w.add_tensor(&t.name, &t.dims, GgmlType::Q4_0, q).unwrap();
            n_q4 += 1;
        } else {
            w.add_tensor(&t.name, &t.dims, t.ty, data.to_vec()).unwrap();
        }
    }
    assert!(n_q4 >= 7, "the fixture has Q/K/V/O and FFN matrices");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(name);
    w.write_file(&path).unwrap();
    path
}

#[test]
fn interleaved_q4_0_gives_the_logits_of_the_mapped_file() {
    let path = q4_0_fixture("llama-q4_0-interleave.gguf");
    let mapped = Model::load(Arc::new(GgufFile::open(&path).unwrap())).unwrap();
    let mut file = GgufFile::open(&path).unwrap();
    file.load_into_memory(|_, _| {}).unwrap();
    let plain_bytes: Vec<u8> = file
        .tensor_data(file.tensor("blk.0.attn_q.weight").unwrap())
        .to_vec();
    let eager = Model::load_owned(file).unwrap();
    let changed = eager
        .file()
        .tensor_data(eager.file().tensor("blk.0.attn_q.weight").unwrap())
        != plain_bytes.as_slice();
    assert_eq!(
        changed,
        quant::order::interleaves_q4_0(8),
        "interleaved iff AVX2"
    );
    let tokens: Vec<u32> = (0..37).map(|i| (i * 13 + 5) % 100).collect();
    for kv in [KvDtype::F32, KvDtype::F16] {
        let mut a = mapped.new_state(64, kv);
        let mut b = eager.new_state(64, kv);
        // A batch (the tile kernels), then single tokens (the decode kernels).
        assert_eq!(
            mapped.forward(&mut a, &tokens, 0, true).unwrap(),
            eager.forward(&mut b, &tokens, 0, true).unwrap()
        );
        for (i, &t) in tokens.iter().take(5).enumerate() {
            assert_eq!(
                mapped.forward(&mut a, &[t], 37 + i, false).unwrap(),
                eager.forward(&mut b, &[t], 37 + i, false).unwrap()
            );
        }
    }
}

/// The backend seam reads the file's layout: an eager model's interleaved matrices are
/// uploaded de-interleaved, and the CPU backend then gives the mapped file's logits.
#[test]
fn backends_take_interleaved_models() {
    let path = q4_0_fixture("llama-q4_0-interleave-backend.gguf");
    let mapped = Model::load(Arc::new(GgufFile::open(&path).unwrap())).unwrap();
    let mut file = GgufFile::open(&path).unwrap();
    file.load_into_memory(|_, _| {}).unwrap();
    let eager = Model::load_owned(file).unwrap();
    let cpu = compute::backend::Cpu::new(KvDtype::F16);
    let bm = models::backend::BackendModel::load(&eager, &cpu).unwrap();
    let mut bs = bm.new_state(&cpu, 32, 512).unwrap();
    let toks = [1u32, 5, 9, 2, 7, 3];
    let mut state = mapped.new_state(32, KvDtype::F16);
    let want = mapped.forward(&mut state, &toks, 0, true).unwrap();
    let got = bm.forward(&cpu, &mut bs, &toks, 0, true).unwrap();
    assert!(got == want, "logits differ");
}
