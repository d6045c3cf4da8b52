//! `torchless quantize` against llama-quantize (llama.cpp b11434): the same input and options
//! must give the same file, byte for byte. The expected sha256 values are of the files
//! llama-quantize wrote (2 threads; its output does not depend on them) from
//! SmolLM2-135M-Instruct: first `--allow-requantize Q4_1 -> F16`, then from that F16 file.

mod common;
use common::real_model;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn torchless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_torchless"))
        .arg("quantize")
        .args(args)
        .output()
        .unwrap()
}

fn sha256(path: &Path) -> String {
    let mut h = Sha256::new();
    h.update(std::fs::read(path).unwrap());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory per test (tests run in parallel, and one looks for stray files). Each holds
/// several copies of a model, so it is removed when its test passes (kept for a look when it
/// fails): CI machines have finite disks.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn dir(test: &str) -> Scratch {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("quantize")
        .join(test);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs a quantization that must succeed, and returns its output's sha256.
fn quantize(input: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![s(input), s(out)];
    args.extend_from_slice(extra);
    args.push("--force");
    let o = torchless(&args);
    assert!(
        o.status.success(),
        "quantize {extra:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    sha256(out)
}

#[test]
fn output_equals_llama_quantize_byte_for_byte() {
    let d = dir("same-bytes");
    let f16 = d.join("smollm2-f16.gguf");
    let src = real_model("smollm2-135m-instruct-q4_1");
    assert_eq!(
        quantize(&src, &f16, &["F16", "--allow-requantize"]),
        "a269e3181fcbb25046f99f64ba8d3c159165b211c2ff4ffca7ba1bb219d2ccd0"
    );
    for (args, want) in [
        (
            &["Q4_K_M"][..],
            "27e1496775b07d69415cc5b6658f448ded3829cd2d769473cf2781e77d020b19",
        ),
        (
            &["IQ4_XS"],
            "55774849f739670f6843cc6f1e5cce50b4fda4a44e2bea59138ddbc272400998",
        ),
        (
            &["Q3_K_L"],
            "b4c2135a01cdcd6ec886a5a442c21a0504d6779707d2f42df81d151c07b4aa3a",
        ),
        (
            &["Q2_K"],
            "c7c9a27bc9b5004eaa297bc6ed0296f70a2783d0680f02315d9ec262362b6f44",
        ),
        (
            &["Q8_0"],
            "f7933c716a5b5334c54b997d1f6db3f38a0786c9046ac5f46311b396a3f1fe54",
        ),
        // IQ3_S tensors (ggml's grid search) in llama-quantize's IQ3_M mix.
        (
            &["IQ3_M"],
            "b1c3d2c71734a9e44cf2db1cbf0ea4bc65efd704549c34e1a7437bc953bbc0d4",
        ),
        // Without an importance matrix llama-quantize's IQ3_XXS mix falls back to K-quants.
        (
            &["IQ3_XXS"],
            "d7a15e7c64dd1ae5e3fe4265b4f1291ccf7e985a6d23b817fed0877d20f98f28",
        ),
        (
            &[
                "Q4_K_M",
                "--tensor-type",
                "attn_v=q8_0",
                "--tensor-type",
                "ffn_down=q5_k",
            ],
            "be451e5d7084b66828b9d4efc12447b00a52373a5c55fd6e2221402daba420d5",
        ),
        (
            &[
                "Q4_0",
                "--override-kv",
                "general.name=str:test-model",
                "--override-kv",
                "foo.int=int:-5",
                "--override-kv",
                "foo.f=float:1.5",
                "--override-kv",
                "foo.b=bool:true",
                "--override-kv",
                "general.file_type=int:7",
            ],
            "74b38445a73700882e083342d2c97b47e9ad3526a283f7e38844167e86d4b6b7",
        ),
    ] {
        let name: String = args
            .join("-")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let out = d.join(format!("smollm2-{name}.gguf"));
        assert_eq!(quantize(&f16, &out, args), want, "{args:?}");
    }
}

#[test]
fn the_quantized_file_runs() {
    let d = dir("runs");
    let out = d.join("smollm2-run-q4_0.gguf");
    let src = real_model("smollm2-135m-instruct-q4_1");
    quantize(&src, &out, &["Q4_0", "--allow-requantize", "-q"]);
    let o = Command::new(env!("CARGO_BIN_EXE_torchless"))
        .args([
            "run",
            s(&out),
            "-p",
            "What is 2+2?",
            "-n",
            "8",
            "--temp",
            "0",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!o.stdout.is_empty());
}

#[test]
fn bad_requests_are_refused_with_clear_errors_and_leave_no_file() {
    let d = dir("refused");
    let src = real_model("smollm2-135m-instruct-q4_1");
    let out = d.join("refused.gguf");
    let _ = std::fs::remove_file(&out);
    let cases: [(&[&str], &str); 5] = [
        (&["Q4_K_M"], "requantizing from a quantized type is off"),
        (&["Q9_9"], "unknown TYPE"),
        (
            &["IQ2_XXS", "--allow-requantize"],
            "needs an importance matrix",
        ),
        (
            &["Q4_0", "--allow-requantize", "--tensor-type", "(=q8_0"],
            "--tensor-type pattern",
        ),
        (
            &["Q4_0", "--allow-requantize", "--override-kv", "a.b=int:x"],
            "not an integer",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec![s(&src), s(&out)];
        args.extend_from_slice(extra);
        let o = torchless(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want),
            "{extra:?}: {err}"
        );
        assert!(!out.exists(), "{extra:?} left {}", out.display());
    }
    // An existing output is kept unless --force.
    std::fs::write(&out, b"keep me").unwrap();
    let o = torchless(&[s(&src), s(&out), "Q8_0", "--allow-requantize"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    // A directory that does not exist: an error naming the path, nothing written.
    let missing = d.join("no/such/dir/out.gguf");
    let o = torchless(&[s(&src), s(&missing), "Q8_0", "--allow-requantize"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/such/dir"));
    // No temporary file is left behind by any of these.
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn dry_run_lists_types_and_writes_nothing() {
    let src = real_model("smollm2-135m-instruct-q4_1");
    let d = dir("dry-run");
    let out = d.join("dry.gguf");
    let _ = std::fs::remove_file(&out);
    let o = torchless(&[
        s(&src),
        s(&out),
        "IQ4_XS",
        "--allow-requantize",
        "--dry-run",
    ]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    // 576-wide rows do not fit IQ4_XS's 256-blocks: IQ4_NL, as llama-quantize falls back.
    let q = text
        .lines()
        .find(|l| l.starts_with("blk.0.attn_q.weight"))
        .unwrap();
    assert!(
        q.contains("IQ4_NL") && q.contains("rows do not fit IQ4_XS"),
        "{q}"
    );
    let down = text
        .lines()
        .find(|l| l.starts_with("blk.0.ffn_down.weight"))
        .unwrap();
    assert!(down.contains("Q5_K"), "{down}"); // first eighth of the layers
    assert!(!out.exists());
    let list = torchless(&["--list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("Q4_K_M"));
}

/// Splits `input` into `parts` files of consecutive tensors the way llama-gguf-split does
/// (metadata in the first, `split.*` keys in every one); returns the first part's path.
fn split_model(input: &Path, prefix: &Path, parts: usize) -> PathBuf {
    let src = gguf::GgufFile::open(input).unwrap();
    let per = src.tensors().len().div_ceil(parts);
    for (i, chunk) in src.tensors().chunks(per).enumerate() {
        let mut w = gguf::GgufWriter::new();
        if i == 0 {
            for (k, v) in src.metadata().iter() {
                w.add(k, v.clone()).unwrap();
            }
        }
        w.add("split.no", gguf::Value::U16(i as u16)).unwrap();
        w.add("split.count", gguf::Value::U16(parts as u16))
            .unwrap();
        w.add(
            "split.tensors.count",
            gguf::Value::I32(src.tensors().len() as i32),
        )
        .unwrap();
        for t in chunk {
            w.add_tensor(t.name.clone(), &t.dims, t.ty, src.tensor_data(t))
                .unwrap();
        }
        w.write_file(gguf::split_path(prefix, i as u32, parts as u32))
            .unwrap();
    }
    gguf::split_path(prefix, 0, parts as u32)
}

/// `--keep-split` writes one file per input split, tensors in file order (which changes the
/// mix rules' counters), with the split keys llama-quantize writes; without it a split input
/// becomes one file. The hashes are llama-quantize's for the same split input.
#[test]
fn keep_split_equals_llama_quantize() {
    let d = dir("keep-split");
    let f16 = d.join("smollm2-f16.gguf");
    let src = real_model("smollm2-135m-instruct-q4_1");
    quantize(&src, &f16, &["F16", "--allow-requantize", "-q"]);
    let first = split_model(&f16, &d.join("in"), 3);
    let out = d.join("out.gguf");
    let o = torchless(&[
        s(&first),
        s(&out),
        "Q4_K_M",
        "--keep-split",
        "-q",
        "--force",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: Vec<String> = (0..3)
        .map(|i| sha256(&gguf::split_path(d.join("out"), i, 3)))
        .collect();
    assert_eq!(got, KEEP_SPLIT_SHA256);
    assert!(
        !out.exists(),
        "--keep-split writes OUT-0000N-of-00003.gguf only"
    );
    let joined = d.join("joined.gguf");
    assert_eq!(quantize(&first, &joined, &["Q4_K_M", "-q"]), JOINED_SHA256);
}

const KEEP_SPLIT_SHA256: [&str; 3] = [
    "d6417105e085db6cf1cfc6040e3cbd756b7b91a2a3c1acb4b0d305c538d4e212",
    "02dff1f8f66e9564e1cd0387823e2c712f9ceae080a63505f0e80c50e2cd1bd7",
    "1a2f56517aa8525122172d166b0f8581126ad45b9685bf3d7e0d0aa173315153",
];
/// The same as the unsplit file's Q4_K_M: the split input holds the same tensors.
const JOINED_SHA256: &str = "27e1496775b07d69415cc5b6658f448ded3829cd2d769473cf2781e77d020b19";

/// An importance matrix in llama-imatrix's GGUF format for every matrix of `model` but the
/// token embedding, with made-up but deterministic values (column `i` of a tensor weighted
/// `1 + ((7919 i + name length * 31) mod 97) / 16`, 20 tokens counted), so that
/// llama-quantize can be run on the same file.
fn synthetic_imatrix(model: &Path, out: &Path) {
    let f = gguf::GgufFile::open(model).unwrap();
    let mut w = gguf::GgufWriter::new();
    w.add("general.type", gguf::Value::String("imatrix".into()))
        .unwrap();
    w.add(
        "imatrix.datasets",
        gguf::Value::Array(vec![gguf::Value::String("synthetic.txt".into())]),
    )
    .unwrap();
    w.add("imatrix.chunk_count", gguf::Value::U32(3)).unwrap();
    w.add("imatrix.chunk_size", gguf::Value::U32(512)).unwrap();
    let count = 20f32;
    let mut data: Vec<(String, [u64; 2], Vec<u8>)> = Vec::new();
    for t in f.tensors() {
        if t.dims.len() < 2 || t.name == "token_embd.weight" {
            continue;
        }
        let (ne0, experts) = (t.dims[0] as usize, *t.dims.get(2).unwrap_or(&1) as usize);
        let sums: Vec<u8> = (0..ne0 * experts)
            .map(|i| count * (1 + (7919 * i + t.name.len() * 31) % 97) as f32 / 16.0)
            .flat_map(f32::to_le_bytes)
            .collect();
        let counts: Vec<u8> = (0..experts).flat_map(|_| count.to_le_bytes()).collect();
        data.push((
            format!("{}.in_sum2", t.name),
            [ne0 as u64, experts as u64],
            sums,
        ));
        data.push((format!("{}.counts", t.name), [1, experts as u64], counts));
    }
    for (name, dims, bytes) in &data {
        w.add_tensor(name.clone(), dims, gguf::GgmlType::F32, bytes)
            .unwrap();
    }
    w.write_file(out).unwrap();
}

/// With an importance matrix the files equal llama-quantize's too: the weighted quantizers,
/// the mix rules that change with one, and the `quantize.imatrix.*` metadata.
#[test]
fn imatrix_output_equals_llama_quantize() {
    let d = dir("imatrix");
    let src = real_model("smollm2-135m-instruct-q4_1");
    let f16 = d.join("smollm2-f16.gguf");
    quantize(&src, &f16, &["F16", "--allow-requantize"]);
    let im = d.join("synthetic.imatrix.gguf");
    synthetic_imatrix(&f16, &im);
    // llama-quantize records the path as given: run from the directory, by file name.
    for (ty, want) in [
        (
            "Q4_K_M",
            "e7ce1c0bb94d5a110d580905073731a86f30ce29bc7c3e7cdfdaf65a4605c8e5",
        ),
        (
            "IQ4_XS",
            "7e0d4f42a716a0475ceaa550ceae7d5ff2b91a797fdbdbecb0fe5d8a87d9679d",
        ),
        // IQ3_XXS tensors, which llama-quantize makes only with an importance matrix.
        (
            "IQ3_XXS",
            "931f1018f4259e1e95d479db00df9f9196af7a8cf02c8ab79abd893d400b6e2a",
        ),
        (
            "IQ2_XXS",
            "40d3160f7a4a947d11a9ce937b43a659f25aa76efd89d3e9e361da1a71792bd2",
        ),
        // IQ2_S tensors beside IQ2_XS ones.
        (
            "IQ2_M",
            "5222f3ddb5fa3e728cf17112d63f190b1bd960346a4eab34b90f6171909b1768",
        ),
        // IQ1_S and IQ1_M tensors, with IQ2_XXS attention outputs.
        (
            "IQ1_S",
            "f9a0280cdd471f2c90149da575dce816ebd18876c166f7275e14c36308ff2d2f",
        ),
        (
            "IQ1_M",
            "76971fe46cf1ce7a190d8a064e2e1e0636da336fc3ef79a5ef874c0729ed48ee",
        ),
    ] {
        let out = d.join(format!("smollm2-imatrix-{ty}.gguf"));
        let o = Command::new(env!("CARGO_BIN_EXE_torchless"))
            .current_dir(&d)
            .args(["quantize", "smollm2-f16.gguf"])
            .arg(&out)
            .args([ty, "--imatrix", "synthetic.imatrix.gguf", "--force", "-q"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(sha256(&out), want, "{ty}");
    }
}
