//! `torchless imatrix` against llama-imatrix (llama.cpp b11434) on SmolLM2 and the GPL-3 text
//! (`tests/data/imatrix-smollm2-gpl3-ctx128.json`, made by
//! `scripts/imatrix-golden/make-golden.py`), the file it writes used by `quantize`, and its
//! errors.

mod common;
use common::real_model;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn torchless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args(args)
        .output()
        .unwrap()
}

fn dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("imatrix")
        .join(test);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gpl3() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/data/GPL-3")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `torchless imatrix SmolLM2 GPL-3 -c 128 --chunks 4 -o OUT`, which must succeed.
fn make_imatrix(out: &Path) {
    let model = real_model("smollm2-135m-instruct-q4_1");
    let o = torchless(&[
        "imatrix",
        s(&model),
        s(&gpl3()),
        "-o",
        s(out),
        "-c",
        "128",
        "--chunks",
        "4",
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The F32 values of tensor `name` of `f`.
fn floats(f: &gguf::GgufFile, name: &str) -> Vec<f32> {
    let t = f.tensor(name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(t.ty, gguf::GgmlType::F32);
    f.tensor_data(t)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Same matrices, counts and metadata as llama-imatrix, and sums of squares close to theirs:
/// each tensor's total within 2%, each sampled column within 10% (of the larger of its value
/// and 1% of the tensor's largest). The collector sums what it is shown exactly as
/// llama-imatrix does; the tolerance is for the activations themselves: our forward pass and
/// llama.cpp's (b11434, built natively) are not bit-identical on 128-token batches, and the
/// differences grow through 30 layers. On this text at 128 tokens llama-perplexity says
/// 23.32 and `torchless perplexity` 23.58; the totals differ by at most 0.64% and the
/// sampled columns by at most 5.3% (small columns of attention outputs). A wrong column, row
/// or count is off by far more.
#[test]
fn equals_llama_imatrix_within_rounding() {
    let d = dir("golden");
    let out = d.join("smollm2.imatrix.gguf");
    make_imatrix(&out);
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/imatrix-smollm2-gpl3-ctx128.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let f = gguf::GgufFile::open(&out).unwrap();
    let md = f.metadata();
    assert_eq!(md.get_str("general.type").unwrap(), "imatrix");
    assert_eq!(
        md.get_u32("imatrix.chunk_count").unwrap() as u64,
        golden["chunk_count"].as_u64().unwrap()
    );
    assert_eq!(
        md.get_u32("imatrix.chunk_size").unwrap() as u64,
        golden["chunk_size"].as_u64().unwrap()
    );
    let want = golden["tensors"].as_object().unwrap();
    let mut ours: Vec<&str> = f
        .tensors()
        .iter()
        .filter_map(|t| t.name.strip_suffix(".in_sum2"))
        .collect();
    ours.sort_unstable();
    let theirs: Vec<&str> = want.keys().map(String::as_str).collect();
    assert_eq!(ours, theirs, "the matrices collected");
    let mut worst = (0f64, String::new());
    for (name, g) in want {
        let counts: Vec<u64> = floats(&f, &format!("{name}.counts"))
            .iter()
            .map(|&c| c as u64)
            .collect();
        let gc: Vec<u64> = g["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        assert_eq!(counts, gc, "{name}: counts");
        let v = floats(&f, &format!("{name}.in_sum2"));
        assert_eq!(
            v.len() as u64,
            g["cols"].as_u64().unwrap() * gc.len() as u64
        );
        let sum: f64 = v.iter().map(|&x| x as f64).sum();
        let gsum = g["sum"].as_f64().unwrap();
        let rel = (sum - gsum).abs() / gsum;
        assert!(rel < 0.02, "{name}: sum {sum} vs llama-imatrix {gsum}");
        let max = v.iter().fold(0f32, |m, &x| m.max(x)) as f64;
        for p in g["samples"].as_array().unwrap() {
            let (i, want) = (p[0].as_u64().unwrap() as usize, p[1].as_f64().unwrap());
            let got = v[i] as f64;
            let err = (got - want).abs() / want.abs().max(1e-2 * max);
            if err > worst.0 {
                worst = (err, format!("{name}[{i}]: {got} vs {want}"));
            }
        }
    }
    eprintln!("largest relative difference: {:.2e} ({})", worst.0, worst.1);
    assert!(worst.0 < 0.1, "{}", worst.1);
}

/// The matrix quantizes SmolLM2 (IQ2_XXS needs one for every layer matrix), and the result
/// loads and generates.
#[test]
fn quantizes_a_model_that_generates() {
    let d = dir("quantize");
    let im = d.join("smollm2.imatrix.gguf");
    make_imatrix(&im);
    let model = real_model("smollm2-135m-instruct-q4_1");
    let f16 = d.join("smollm2-f16.gguf");
    let q = |args: &[&str]| {
        let o = torchless(&[&["quantize"][..], args, &["--force", "-q"]].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    q(&[s(&model), s(&f16), "F16", "--allow-requantize"]);
    let out = d.join("smollm2-iq2_xxs.gguf");
    q(&[s(&f16), s(&out), "IQ2_XXS", "--imatrix", s(&im)]);
    let o = torchless(&[
        "run",
        s(&out),
        "-p",
        "The capital of France is",
        "-n",
        "8",
        "--temp",
        "0",
        "--json",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["generated_ids"].as_array().unwrap().len(), 8, "{stdout}");
}

/// One-line errors for input that cannot work.
#[test]
fn bad_input_gives_clear_errors() {
    let d = dir("errors");
    let model = real_model("smollm2-135m-instruct-q4_1");
    let m = s(&model);
    let fails = |args: &[&str], want: &str| {
        let o = torchless(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "{args:?} succeeded");
        let last = err.trim_end().lines().last().unwrap_or("");
        assert!(
            last.starts_with("error: ") && last.contains(want),
            "{args:?}: {err}"
        );
        assert_eq!(err.matches("error:").count(), 1, "{err}");
    };
    let empty = d.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let out = d.join("out.gguf");
    fails(&["imatrix", m, s(&empty), "-o", s(&out), "-q"], "is empty");
    let short = d.join("short.txt");
    std::fs::write(&short, "Only a few words here.").unwrap();
    fails(
        &["imatrix", m, s(&short), "-o", s(&out), "-q"],
        "you need at least 1024 tokens for a context of 512 tokens",
    );
    fails(
        &[
            "imatrix",
            m,
            s(&gpl3()),
            "-o",
            s(&d.join("no/such/dir/out.gguf")),
            "-q",
        ],
        "cannot write",
    );
    fails(&["imatrix", m, "-o", s(&out)], "no text file given");
    fails(&["imatrix", m, s(&d.join("missing.txt"))], "cannot read");
    assert!(!out.exists(), "no output after a failure");
}
