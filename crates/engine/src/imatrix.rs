//! Importance matrices the way llama-imatrix (llama.cpp b11434) computes and stores them: the
//! text is tokenized whole (the model's BOS rule), cut into windows of `n_ctx` tokens, and each
//! window runs from an empty cache with its first token replaced by BOS, as for perplexity
//! (which is measured on the way). For every weight matrix of the layers (and with
//! `process_output` the output projection), the input rows of its products are summed as
//! `x_j²` per column, with a count of rows; experts of a stack each have their own sums and
//! count. Products of fewer than 16 rows are left out, as llama-imatrix leaves them (except
//! for experts). The file is llama-imatrix's GGUF: per matrix `NAME.in_sum2` (columns x
//! experts), `NAME.counts` (one per expert) and `NAME.in_sum` (plain sums), names sorted;
//! `general.type = imatrix` and the `imatrix.*` keys. llama-imatrix's per-tensor statistics
//! (`NAME.stats`, `imatrix.stats_schema`) are not written: nothing reads them to quantize.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use models::{ActivationObserver, MatmulInput};

use crate::error::EngineError;
use crate::perplexity::{perplexity_chunks, ChunkProgress, PerplexityResult};

/// llama-imatrix ignores dense products of fewer rows (tokens) than this.
const MIN_ROWS: usize = 16;

/// What to run over and what to collect.
#[derive(Debug, Clone)]
pub struct ImatrixOptions {
    /// Tokens per window (llama-imatrix's `-c`, default 512).
    pub n_ctx: usize,
    /// At most this many windows (`--chunks`); all that fit when `None`.
    pub max_chunks: Option<usize>,
    /// Windows to skip at the start of the text (`--chunk`).
    pub skip_chunks: usize,
    /// Also collect the output projection (`output.weight`, or `token_embd.weight` when
    /// tied), as `--process-output`.
    pub process_output: bool,
    /// The text's name as recorded in `imatrix.datasets` (llama-imatrix records the `-f`
    /// path as given).
    pub dataset: String,
    pub kv_dtype: models::KvDtype,
}

impl Default for ImatrixOptions {
    fn default() -> Self {
        ImatrixOptions {
            n_ctx: 512,
            max_chunks: None,
            skip_chunks: 0,
            process_output: false,
            dataset: String::new(),
            kv_dtype: models::KvDtype::F16,
        }
    }
}

/// The sums of one weight matrix (or stack of experts).
#[derive(Debug, Clone, PartialEq)]
pub struct ImatrixEntry {
    /// `cols * experts` sums of squares, expert after expert.
    pub in_sum2: Vec<f32>,
    /// `cols * experts` plain sums.
    pub in_sum: Vec<f32>,
    /// Rows summed, per expert (one for a plain matrix).
    pub counts: Vec<i64>,
}

/// An importance matrix being collected or finished.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Imatrix {
    pub entries: BTreeMap<String, ImatrixEntry>,
    /// Windows the counts amount to (llama-imatrix's rounding of rows / `chunk_size`).
    pub chunk_count: u32,
    pub chunk_size: u32,
    pub datasets: Vec<String>,
}

impl Imatrix {
    fn add(&mut self, input: MatmulInput<'_>, process_output: bool) {
        let w = input.weight;
        let output = w == "output.weight" || w == "token_embd.weight";
        if !(w.starts_with("blk.") || process_output && output) {
            return;
        }
        if input.expert.is_none() && input.n < MIN_ROWS || input.n == 0 {
            return;
        }
        let cols = input.rows.len() / input.n;
        let (ex, n_ex) = input.expert.unwrap_or((0, 1));
        let e = self
            .entries
            .entry(w.to_string())
            .or_insert_with(|| ImatrixEntry {
                in_sum2: vec![0.0; cols * n_ex],
                in_sum: vec![0.0; cols * n_ex],
                counts: vec![0; n_ex],
            });
        if e.in_sum2.len() != cols * n_ex {
            // A matrix is always multiplied with rows of its column count.
            return;
        }
        let (acc, act) = (
            &mut e.in_sum2[ex * cols..(ex + 1) * cols],
            &mut e.in_sum[ex * cols..(ex + 1) * cols],
        );
        // Row after row, in f32, as llama-imatrix accumulates.
        for x in input.rows.chunks_exact(cols) {
            for ((a, s), &v) in acc.iter_mut().zip(act.iter_mut()).zip(x) {
                *a += v * v;
                *s += v;
            }
        }
        e.counts[ex] += input.n as i64;
        let cs = self.chunk_size.max(1) as i64;
        let chunks = ((e.counts[ex] + cs / 2) / cs) as u32;
        self.chunk_count = self.chunk_count.max(chunks);
    }

    /// The first matrix whose sums are not finite (llama-imatrix stops on one).
    fn non_finite(&self) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, e)| !e.in_sum2.iter().all(|v| v.is_finite()))
            .map(|(n, _)| n.as_str())
    }

    /// Writes llama-imatrix's GGUF to `path` (through a temporary file beside it, renamed
    /// at the end, so a failed write leaves no partial file under the name).
    pub fn write_gguf(&self, path: &Path) -> Result<(), EngineError> {
        use gguf::{GgmlType, GgufWriter, Value};
        let bad = |e: gguf::GgufError| EngineError::Imatrix(e.to_string());
        let mut w = GgufWriter::new();
        w.add("general.type", Value::String("imatrix".into()))
            .map_err(bad)?;
        let datasets = self.datasets.iter().cloned().map(Value::String).collect();
        w.add("imatrix.datasets", Value::Array(datasets))
            .map_err(bad)?;
        w.add("imatrix.chunk_count", Value::U32(self.chunk_count))
            .map_err(bad)?;
        w.add("imatrix.chunk_size", Value::U32(self.chunk_size))
            .map_err(bad)?;
        let f32s = |v: &mut dyn Iterator<Item = f32>| -> Vec<u8> {
            v.flat_map(f32::to_le_bytes).collect()
        };
        for (name, e) in &self.entries {
            let n_ex = e.counts.len() as u64;
            let cols = e.in_sum2.len() as u64 / n_ex.max(1);
            let sums = f32s(&mut e.in_sum2.iter().copied());
            let counts = f32s(&mut e.counts.iter().map(|&c| c as f32));
            let plain = f32s(&mut e.in_sum.iter().copied());
            w.add_tensor(
                format!("{name}.in_sum2"),
                &[cols, n_ex],
                GgmlType::F32,
                sums,
            )
            .map_err(bad)?;
            w.add_tensor(format!("{name}.counts"), &[1, n_ex], GgmlType::F32, counts)
                .map_err(bad)?;
            w.add_tensor(
                format!("{name}.in_sum"),
                &[cols, n_ex],
                GgmlType::F32,
                plain,
            )
            .map_err(bad)?;
        }
        let tmp = temp_path(path);
        let written = w
            .write_file(&tmp)
            .map_err(|e| EngineError::Imatrix(format!("cannot write {}: {e}", path.display())));
        let renamed = written.and_then(|()| {
            std::fs::rename(&tmp, path)
                .map_err(|e| EngineError::Imatrix(format!("cannot write {}: {e}", path.display())))
        });
        if renamed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        renamed
    }
}

/// `DIR/.NAME.tmp` beside `path`.
fn temp_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "imatrix".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp"))
}

/// Checks early that `path` can be written (a temporary file created and removed beside
/// it), so a long run does not end in a failed write.
pub fn check_writable(path: &Path) -> Result<(), EngineError> {
    if path.is_dir() {
        return Err(EngineError::Imatrix(format!(
            "cannot write {}: it is a directory",
            path.display()
        )));
    }
    let tmp = temp_path(path);
    std::fs::File::create(&tmp)
        .map_err(|e| EngineError::Imatrix(format!("cannot write {}: {e}", path.display())))?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

/// The observer set on the forward pass: adds to the shared [`Imatrix`].
struct Collector {
    imatrix: Arc<Mutex<Imatrix>>,
    process_output: bool,
}

impl ActivationObserver for Collector {
    fn observe(&mut self, input: MatmulInput<'_>) {
        // The forward pass runs on one thread; the lock is never contended.
        if let Ok(mut m) = self.imatrix.lock() {
            m.add(input, self.process_output);
        }
    }
}

/// Runs the windows of `tokens` through `model` on the CPU with a collector on the forward
/// pass. `progress` gets each window's perplexity progress and the matrix so far (to save
/// it every few windows, as llama-imatrix's `--output-frequency`).
pub(crate) fn collect(
    model: &Arc<models::Model>,
    tokens: &[u32],
    bos: Option<u32>,
    opts: &ImatrixOptions,
    mut progress: impl FnMut(&ChunkProgress, &Imatrix) -> Result<(), EngineError>,
) -> Result<(Imatrix, PerplexityResult), EngineError> {
    let n_ctx = opts.n_ctx;
    if n_ctx < 4 {
        return Err(EngineError::Imatrix(format!(
            "context of {n_ctx} tokens is too small (need at least 4)"
        )));
    }
    let mut tokens = tokens;
    if opts.skip_chunks > 0 {
        // llama-imatrix wants two windows left after the skipped ones.
        if (opts.skip_chunks + 2) * n_ctx >= tokens.len() {
            return Err(EngineError::Imatrix(format!(
                "there will be not enough tokens left after removing {} chunks ({} tokens)",
                opts.skip_chunks,
                tokens.len()
            )));
        }
        tokens = &tokens[opts.skip_chunks * n_ctx..];
    }
    if tokens.len() < 2 * n_ctx {
        return Err(EngineError::Imatrix(format!(
            "you need at least {} tokens for a context of {n_ctx} tokens; the text tokenizes \
             to only {} tokens (use a longer text or a smaller --ctx-size)",
            2 * n_ctx,
            tokens.len()
        )));
    }
    let shared = Arc::new(Mutex::new(Imatrix {
        chunk_size: n_ctx as u32,
        datasets: vec![opts.dataset.clone()],
        ..Imatrix::default()
    }));
    let mut state = model.new_state(n_ctx, opts.kv_dtype);
    state.set_observer(Some(Box::new(Collector {
        imatrix: shared.clone(),
        process_output: opts.process_output,
    })));
    let mut source = crate::model::ModelSource {
        model: model.clone(),
        state,
    };
    let mut failed = None;
    let result = perplexity_chunks(&mut source, tokens, n_ctx, bos, opts.max_chunks, |p| {
        if failed.is_some() {
            return;
        }
        let m = shared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = m.non_finite() {
            failed = Some(EngineError::Imatrix(format!(
                "non-finite values in the activations of {name}"
            )));
            return;
        }
        if let Err(e) = progress(p, &m) {
            failed = Some(e);
        }
    });
    source.state.set_observer(None);
    if let Some(e) = failed {
        return Err(e);
    }
    let ppl = result?;
    let m = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok((m, ppl))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(weight: &'a str, rows: &'a [f32], n: usize) -> MatmulInput<'a> {
        MatmulInput {
            weight,
            expert: None,
            rows,
            n,
        }
    }

    #[test]
    fn sums_squares_per_column_and_counts_rows() {
        let mut m = Imatrix {
            chunk_size: 16,
            ..Default::default()
        };
        let rows: Vec<f32> = (0..32).map(|i| (i % 2) as f32 + 1.0).collect(); // 16 x [1, 2]
        m.add(input("blk.0.attn_q.weight", &rows, 16), false);
        let e = &m.entries["blk.0.attn_q.weight"];
        assert_eq!(e.in_sum2, vec![16.0, 64.0]);
        assert_eq!(e.in_sum, vec![16.0, 32.0]);
        assert_eq!(e.counts, vec![16]);
        assert_eq!(m.chunk_count, 1);
        // Too few rows, the output without process_output, other names: ignored.
        m.add(input("blk.0.attn_q.weight", &rows[..30], 15), false);
        m.add(input("output.weight", &rows, 16), false);
        m.add(input("rope_freqs.weight", &rows, 16), true);
        assert_eq!(m.entries.len(), 1);
        assert_eq!(m.entries["blk.0.attn_q.weight"].counts, vec![16]);
        m.add(input("output.weight", &rows, 16), true);
        assert_eq!(m.entries.len(), 2);
    }

    #[test]
    fn experts_have_their_own_sums_and_counts_even_for_few_rows() {
        let mut m = Imatrix::default();
        let rows = [3.0f32, 4.0];
        m.add(
            MatmulInput {
                weight: "blk.1.ffn_down_exps.weight",
                expert: Some((2, 4)),
                rows: &rows,
                n: 1,
            },
            false,
        );
        let e = &m.entries["blk.1.ffn_down_exps.weight"];
        assert_eq!(e.counts, vec![0, 0, 1, 0]);
        assert_eq!(&e.in_sum2[4..6], &[9.0, 16.0]);
        assert!(e.in_sum2[..4]
            .iter()
            .chain(&e.in_sum2[6..])
            .all(|&v| v == 0.0));
    }
}
