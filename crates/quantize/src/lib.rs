//! `torchless quantize`: re-quantize a GGUF model the way `llama-quantize` does, byte for
//! byte (same per-tensor types, same metadata, same layout), tensor by tensor so memory
//! stays near the largest tensor rather than the model.
//!
//! * [`mix`]: the target types and mixes (`Q4_K_M`, ...) and their file type ids.
//! * [`policy`]: which type each tensor gets.
//! * this file: the driver (order, metadata, conversion on all cores, writing safely).

pub mod imatrix;
pub mod mix;
pub mod policy;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use gguf::{GgmlType, GgufFile, GgufWriter, TensorInfo, Value};

pub use mix::{Mix, MIXES};
use policy::{Counters, ModelFacts, Overrides};

/// What to make.
#[derive(Clone, Debug)]
pub struct Options {
    pub mix: Mix,
    /// Quantize tensors that are already quantized (dequantized first; quality suffers).
    pub allow_requantize: bool,
    /// Leave `output.weight` as it is (`--leave-output-tensor`).
    pub keep_output: bool,
    /// Every quantized tensor gets the mix's default type: no per-role adjustments.
    pub pure: bool,
    pub output_type: Option<GgmlType>,
    pub token_embedding_type: Option<GgmlType>,
    /// `PATTERN=TYPE` overrides, the pattern a regular expression searched in tensor names.
    pub tensor_types: Vec<(String, GgmlType)>,
    /// Replace an existing output file.
    pub force: bool,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// One output file per input split (`--keep-split`), tensors in file order.
    pub keep_split: bool,
    /// Metadata set in the output (`--override-kv`), after everything copied, in order.
    pub kv_overrides: Vec<(String, Value)>,
    /// Set (e.g. by a Ctrl-C handler) to stop between tensors; the partial file is removed.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Importance matrix (`--imatrix`): the quantizers weight each column by it, and the mix
    /// rules change as llama-quantize's do when one is given.
    pub imatrix: Option<std::sync::Arc<imatrix::Imatrix>>,
}

impl Options {
    pub fn new(mix: Mix) -> Options {
        Options {
            mix,
            allow_requantize: false,
            keep_output: false,
            pure: false,
            output_type: None,
            token_embedding_type: None,
            tensor_types: Vec::new(),
            force: false,
            threads: 0,
            keep_split: false,
            kv_overrides: Vec::new(),
            cancel: None,
            imatrix: None,
        }
    }
}

/// One tensor's plan.
#[derive(Clone, Debug)]
pub struct TensorPlan {
    pub name: String,
    pub dims: Vec<u64>,
    pub from: GgmlType,
    pub to: GgmlType,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The rules wanted another type, which the rows did not fit.
    pub fallback_from: Option<GgmlType>,
    /// Quantized with the importance matrix's weights for this tensor.
    pub uses_imatrix: bool,
}

/// Progress reported after each tensor.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    pub index: usize,
    pub total: usize,
    pub tensor: &'a TensorPlan,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Summary {
    pub tensors: Vec<TensorPlan>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub elements: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists (use --force to replace it)")]
    OutputExists(PathBuf),
    #[error("the output is the input file {0}")]
    SameFile(PathBuf),
    #[error("{0}")]
    Invalid(String),
    #[error("stopped before the end; nothing was written")]
    Cancelled,
    #[error(
        "tensor {tensor} is {ty}: requantizing from a quantized type is off (use \
         --allow-requantize; quality suffers, start from an F16/BF16/F32 file if you can)"
    )]
    Requantize { tensor: String, ty: GgmlType },
    #[error(
        "tensor {tensor} would be {ty}, which needs an importance matrix for it (--imatrix \
         FILE, made by llama-imatrix), or pick a mix without it (Q2_K, Q3_K_*, Q4_K_*, \
         IQ4_XS, ...)"
    )]
    NeedsImatrix { tensor: String, ty: GgmlType },
    #[error("tensor {tensor} would be {ty}, which torchless cannot write yet")]
    UnsupportedTarget { tensor: String, ty: GgmlType },
    #[error("tensor {tensor} is {ty}, which torchless cannot read yet")]
    UnsupportedSource { tensor: String, ty: GgmlType },
}

type Result<T> = std::result::Result<T, QuantizeError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QuantizeError + '_ {
    move |source| QuantizeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// llama.cpp's tensor order: tensors outside layers first, then layer by layer, by name
/// within each group.
fn ordered(tensors: &[TensorInfo]) -> Vec<&TensorInfo> {
    let layer = |n: &str| -> i64 {
        n.strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or(-1)
    };
    let mut v: Vec<&TensorInfo> = tensors.iter().collect();
    v.sort_by(|a, b| (layer(&a.name), a.name.as_bytes()).cmp(&(layer(&b.name), b.name.as_bytes())));
    v
}

/// ggml's `n_dims`: trailing dimensions of 1 do not count.
fn trimmed(dims: &[u64]) -> Vec<u64> {
    let n = dims.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1);
    dims[..n].to_vec()
}

fn first_u32(md: &gguf::Metadata, key: &str) -> Option<u32> {
    match md.get(key)? {
        Value::Array(a) => a.first().and_then(|v| v.as_integer()).map(|i| i as u32),
        v => v.as_integer().map(|i| i as u32),
    }
}

fn model_facts(file: &GgufFile, overrides: &[(String, Value)]) -> Result<ModelFacts> {
    // Overrides apply to what llama.cpp's loader reads as well (the rules see them).
    let mut md = gguf::Metadata::new();
    for (k, v) in overrides.iter().rev() {
        md.insert(k.clone(), v.clone());
    }
    for (k, v) in file.metadata().iter() {
        md.insert(k.to_string(), v.clone());
    }
    let md = &md;
    let arch = md.get_str("general.architecture")?.to_string();
    let n_layer = md.get_u32(&format!("{arch}.block_count"))?;
    let n_head = first_u32(md, &format!("{arch}.attention.head_count")).unwrap_or(0);
    let n_head_kv = first_u32(md, &format!("{arch}.attention.head_count_kv")).unwrap_or(n_head);
    let n_expert = first_u32(md, &format!("{arch}.expert_count")).unwrap_or(0);
    let is_70b = match arch.as_str() {
        "llama" => n_layer == 80 && n_head != n_head_kv,
        "deci" | "olmo" | "qwen2" => n_layer == 80,
        "jais2" => n_layer == 68,
        _ => false,
    };
    let names = file.tensors().iter().map(|t| t.name.as_str());
    Ok(ModelFacts {
        n_gqa: n_head.checked_div(n_head_kv).unwrap_or(0),
        n_layer,
        n_expert,
        is_70b,
        tied_embeddings: !names.clone().any(|n| n == "output.weight"),
        n_attn_v: names
            .filter(|n| {
                matches!(
                    policy::Category::of(n),
                    policy::Category::AttnV | policy::Category::AttnQkv | policy::Category::AttnKvB
                )
            })
            .count() as u32,
        arch,
    })
}

/// The plan for every tensor, in output order, without writing anything (`--dry-run`).
pub fn plan(input: &GgufFile, opts: &Options) -> Result<Vec<TensorPlan>> {
    let facts = model_facts(input, &opts.kv_overrides)?;
    let mut tensor_types = Vec::new();
    for (p, t) in &opts.tensor_types {
        let re = regex::Regex::new(p)
            .map_err(|e| QuantizeError::Invalid(format!("--tensor-type pattern {p:?}: {e}")))?;
        tensor_types.push((re, *t));
    }
    let ov = Overrides {
        output_type: opts.output_type,
        token_embedding_type: opts.token_embedding_type,
        tensor_types,
        pure: opts.pure,
        has_imatrix: opts.imatrix.is_some(),
    };
    let mut counters = Counters::default();
    let mut out = Vec::new();
    // llama-quantize's order: by layer and name, or with --keep-split the files' own order
    // (which also changes the counters the mix rules use).
    let order: Vec<&TensorInfo> = if opts.keep_split {
        input.tensors().iter().collect()
    } else {
        ordered(input.tensors())
    };
    for t in order {
        let dims = trimmed(&t.dims);
        let mut plan = TensorPlan {
            name: t.name.clone(),
            dims: dims.clone(),
            from: t.ty,
            to: t.ty,
            bytes_in: t.size,
            bytes_out: t.size,
            fallback_from: None,
            uses_imatrix: false,
        };
        if policy::allows_quantization(&t.name, dims.len(), &facts.arch, opts.keep_output) {
            let experts = dims.get(2).copied().unwrap_or(1);
            let (to, fb) = policy::choose(
                &opts.mix,
                &t.name,
                (dims[0], experts),
                &facts,
                &ov,
                &mut counters,
            )
            .map_err(QuantizeError::Invalid)?;
            plan.to = to;
            plan.fallback_from = fb.map(|f| f.wanted);
            // llama-quantize: the tensor's entry must cover every column of every expert; a
            // mismatch is an error except for the token embedding, which then goes without.
            let experts = dims.get(2).copied().unwrap_or(1);
            if let Some(e) = opts.imatrix.as_ref().and_then(|m| m.entries.get(&t.name)) {
                if e.len() as u64 == dims[0] * experts {
                    plan.uses_imatrix = true;
                } else if policy::Category::of(&t.name) != policy::Category::TokenEmbd {
                    return Err(QuantizeError::Invalid(format!(
                        "imatrix entry for {} has {} values, the tensor needs {} ({} columns x {} \
                         experts)",
                        t.name,
                        e.len(),
                        dims[0] * experts,
                        dims[0],
                        experts
                    )));
                }
            }
            if policy::requires_imatrix(&t.name, to, opts.mix.ftype) && !plan.uses_imatrix {
                return Err(QuantizeError::NeedsImatrix {
                    tensor: t.name.clone(),
                    ty: to,
                });
            }
        }
        if plan.to != plan.from {
            let n: u64 = dims.iter().product();
            plan.bytes_out = plan
                .to
                .row_bytes(dims[0])
                .and_then(|r| r.checked_mul(n / dims[0].max(1)))
                .ok_or_else(|| {
                    QuantizeError::Invalid(format!(
                        "tensor {}: {:?} does not fit {}",
                        t.name, dims, plan.to
                    ))
                })?;
            if !plan.to.is_supported()
                || plan.to.block_size() > 1 && !can_quantize(plan.to, plan.uses_imatrix)
            {
                return Err(QuantizeError::UnsupportedTarget {
                    tensor: t.name.clone(),
                    ty: plan.to,
                });
            }
            if !plan.from.is_supported() {
                return Err(QuantizeError::UnsupportedSource {
                    tensor: t.name.clone(),
                    ty: plan.from,
                });
            }
            if plan.from.block_size() > 1 && !opts.allow_requantize {
                return Err(QuantizeError::Requantize {
                    tensor: t.name.clone(),
                    ty: plan.from,
                });
            }
        }
        out.push(plan);
    }
    Ok(out)
}

/// Types `quant` writes (activation-only types excluded), with importance weights or not.
fn can_quantize(ty: GgmlType, weighted: bool) -> bool {
    let Some(f) = quant::formats::format(ty) else {
        return false;
    };
    !matches!(ty, GgmlType::Q8_1 | GgmlType::Q8_K)
        && (f.quantize.is_some() || weighted && f.quantize_weighted.is_some())
}

/// Removes the temporary file unless it was renamed to `dest`.
struct TempFile {
    path: PathBuf,
    dest: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The files [`quantize_file`] writes for `output`: itself, or with `keep_split` one per
/// input split, named as llama-quantize names them (`OUT` without `.gguf`, then
/// `-00001-of-00003.gguf`, ...).
pub fn output_paths(input: &GgufFile, output: &Path, opts: &Options) -> Vec<PathBuf> {
    if !opts.keep_split {
        return vec![output.to_path_buf()];
    }
    let n = input.n_splits() as u32;
    let s = output.to_string_lossy();
    let prefix = s.strip_suffix(".gguf").unwrap_or(&s);
    (0..n).map(|i| gguf::split_path(prefix, i, n)).collect()
}

/// Quantizes `input` into `output` with `opts`, calling `progress` after each tensor. Each
/// file is written under a temporary name beside its final one and renamed when complete, so
/// a failure (a full disk, Ctrl-C) never leaves a half-written file under a final name.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let src = GgufFile::open(input)?;
    let outputs = output_paths(&src, output, opts);
    for out in &outputs {
        if out.exists() {
            let same = std::fs::canonicalize(out).ok() == std::fs::canonicalize(input).ok();
            if same {
                return Err(QuantizeError::SameFile(out.to_path_buf()));
            }
            if !opts.force {
                return Err(QuantizeError::OutputExists(out.to_path_buf()));
            }
        }
    }
    let plans = plan(&src, opts)?;
    let by_name: std::collections::HashMap<&str, &TensorInfo> =
        src.tensors().iter().map(|t| (t.name.as_str(), t)).collect();
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut run = Run {
        src: &src,
        by_name,
        threads,
        opts,
        bytes_total: plans.iter().map(|p| p.bytes_in).sum(),
        bytes_done: 0,
        elements: 0,
        index: 0,
        total: plans.len(),
    };
    const DROPPED: [&str; 5] = [
        "general.quantization_version",
        "general.file_type",
        "split.no",
        "split.count",
        "split.tensors.count",
    ];
    let n_split = outputs.len();
    // Written to temporary names first; renamed only once every file is complete.
    let mut done = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        let mut w = GgufWriter::new();
        // llama-quantize gives the first file the metadata, every file the split keys.
        if i == 0 {
            // llama-quantize sets each override after the copy, which moves an existing key
            // to the end; the last override of a key wins.
            let overridden = |k: &str| opts.kv_overrides.iter().any(|(o, _)| o == k);
            for (k, v) in src.metadata().iter() {
                if !DROPPED.contains(&k) && !overridden(k) {
                    w.add(k, v.clone())?;
                }
            }
            for (k, v) in [
                ("general.quantization_version", Value::U32(2)),
                ("general.file_type", Value::U32(opts.mix.ftype)),
            ] {
                if !overridden(k) {
                    w.add(k, v)?;
                }
            }
            for (j, (k, v)) in opts.kv_overrides.iter().enumerate() {
                if !opts.kv_overrides[j + 1..].iter().any(|(o, _)| o == k) {
                    w.add(k.clone(), v.clone())?;
                }
            }
        }
        if n_split > 1 {
            w.add("split.no", Value::U16(i as u16))?;
            w.add("split.count", Value::U16(n_split as u16))?;
            w.add("split.tensors.count", Value::I32(plans.len() as i32))?;
        }
        let mine: Vec<&TensorPlan> = plans
            .iter()
            .filter(|p| n_split == 1 || run.by_name[p.name.as_str()].split == i)
            .collect();
        done.push(run.write(out, w, &mine, progress)?);
    }
    for mut tmp in done {
        let dest = tmp.dest.clone();
        std::fs::rename(&tmp.path, &dest).map_err(io(&dest))?;
        tmp.keep = true;
    }
    Ok(Summary {
        bytes_in: plans.iter().map(|p| p.bytes_in).sum(),
        bytes_out: plans.iter().map(|p| p.bytes_out).sum(),
        tensors: plans,
        elements: run.elements,
    })
}

/// State of one quantization across its output files.
struct Run<'a> {
    src: &'a GgufFile,
    by_name: std::collections::HashMap<&'a str, &'a TensorInfo>,
    threads: usize,
    opts: &'a Options,
    bytes_total: u64,
    bytes_done: u64,
    elements: u64,
    index: usize,
    total: usize,
}

impl Run<'_> {
    /// Writes one output file (header from `w`, then `plans`' tensors) to a temporary name
    /// beside `dest`, synced; the caller renames it.
    fn write(
        &mut self,
        dest: &Path,
        mut w: GgufWriter,
        plans: &[&TensorPlan],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<TempFile> {
        for p in plans {
            w.add_tensor_info(p.name.clone(), &p.dims, p.to)?;
        }
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let tmp = TempFile {
            path: dest.with_file_name(format!(".{file_name}.partial-{}", std::process::id())),
            dest: dest.to_path_buf(),
            keep: false,
        };
        let file = File::create(&tmp.path).map_err(io(&tmp.path))?;
        let mut data = w.begin(BufWriter::with_capacity(1 << 20, file))?;
        for p in plans {
            let cancelled = self.opts.cancel.as_ref();
            if cancelled.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
                return Err(QuantizeError::Cancelled);
            }
            let bytes = self.src.tensor_data(self.by_name[p.name.as_str()]);
            if p.to == p.from {
                data.write_tensor(bytes)?;
            } else {
                let qw = match (&self.opts.imatrix, p.uses_imatrix) {
                    (Some(m), true) => m.entries.get(&p.name).map(Vec::as_slice),
                    _ => None,
                };
                data.write_tensor(&convert(bytes, p, qw, self.threads)?)?;
            }
            self.bytes_done += p.bytes_in;
            self.elements += p.dims.iter().product::<u64>();
            progress(Progress {
                index: self.index,
                total: self.total,
                tensor: p,
                bytes_done: self.bytes_done,
                bytes_total: self.bytes_total,
            });
            self.index += 1;
        }
        let buf = data.finish()?;
        let file = buf.into_inner().map_err(|e| QuantizeError::Io {
            path: tmp.path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(&tmp.path))?;
        Ok(tmp)
    }
}

/// One tensor from its type to the plan's: each row widened to f32 and quantized (with the
/// importance weights `qw` of its expert, if given), rows split over `threads` (every row is
/// independent, so the bytes do not depend on it).
fn convert(bytes: &[u8], p: &TensorPlan, qw: Option<&[f32]>, threads: usize) -> Result<Vec<u8>> {
    let n = p.dims[0] as usize;
    let src_row = p.from.row_bytes(n as u64).unwrap_or(0) as usize;
    let dst_row = p.to.row_bytes(n as u64).unwrap_or(0) as usize;
    let rows = bytes.len().checked_div(src_row).unwrap_or(0);
    let mut out = vec![0u8; rows * dst_row];
    let per = rows.div_ceil(threads.max(1)).max(1);
    let rows_per_expert = p.dims.get(1).copied().unwrap_or(1).max(1) as usize;
    let failed = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for (chunk, (src, dst)) in bytes
            .chunks(per * src_row)
            .zip(out.chunks_mut(per * dst_row))
            .enumerate()
        {
            let failed = &failed;
            s.spawn(move || {
                let mut row = vec![0f32; n];
                for (i, (a, b)) in src
                    .chunks_exact(src_row)
                    .zip(dst.chunks_exact_mut(dst_row))
                    .enumerate()
                {
                    let expert = (chunk * per + i) / rows_per_expert;
                    let w = qw.map(|q| &q[expert * n..(expert + 1) * n]);
                    let r = quant::dequantize_row(p.from, a, &mut row).and_then(|_| match w {
                        Some(w) => quant::quantize_row_weighted(p.to, &row, w, b),
                        None => quant::quantize_row(p.to, &row, b),
                    });
                    if let Err(e) = r {
                        *failed.lock().unwrap() = Some(e);
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap() {
        Some(e) => Err(QuantizeError::Invalid(format!("tensor {}: {e}", p.name))),
        None => Ok(out),
    }
}
