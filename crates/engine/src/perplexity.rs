//! Perplexity the way llama.cpp's `llama-perplexity` measures it, so numbers are comparable:
//! the token stream is cut into non-overlapping windows of `n_ctx` tokens, each evaluated from
//! an empty cache; only the second half of every window is scored (those tokens all see at
//! least `n_ctx/2` tokens of context); when the model expects a BOS token, the first token of
//! each window is replaced by BOS.

use crate::error::EngineError;
use crate::session::LogitsSource;

/// Progress after each window.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkProgress {
    /// 1-based index of the window just scored.
    pub chunk: usize,
    pub n_chunks: usize,
    /// Perplexity over all windows so far.
    pub ppl: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PerplexityResult {
    pub ppl: f64,
    /// Standard error of the estimate, in perplexity units (llama.cpp's "+/-").
    pub ppl_stderr: f64,
    /// Running perplexity after each window.
    pub chunk_ppl: Vec<f64>,
    pub n_tokens: usize,
    pub n_ctx: usize,
    pub n_scored: usize,
    pub seconds: f64,
}

/// Scores `tokens` (already tokenized with the model's BOS rule) with windows of `n_ctx`.
/// `bos`: the BOS id when the model adds one, else `None`.
pub fn perplexity(
    source: &mut dyn LogitsSource,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    progress: impl FnMut(&ChunkProgress),
) -> Result<PerplexityResult, EngineError> {
    perplexity_chunks(source, tokens, n_ctx, bos, None, progress)
}

/// [`perplexity`] over at most `max_chunks` windows (llama-perplexity's `--chunks`): the
/// first windows of the full run, so the running values are the full run's.
pub fn perplexity_chunks(
    source: &mut dyn LogitsSource,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    max_chunks: Option<usize>,
    mut progress: impl FnMut(&ChunkProgress),
) -> Result<PerplexityResult, EngineError> {
    if n_ctx < 4 {
        return Err(EngineError::Perplexity(format!(
            "context of {n_ctx} tokens is too small (need at least 4)"
        )));
    }
    if n_ctx > source.max_seq_len() {
        return Err(EngineError::Perplexity(format!(
            "context of {n_ctx} tokens exceeds the cache size {}",
            source.max_seq_len()
        )));
    }
    if tokens.len() < 2 * n_ctx {
        // The largest context two windows of this text fill (the smallest allowed is 4).
        let fits = tokens.len() / 2;
        let hint = if fits >= 4 {
            format!(": use --ctx {fits} or less, or a longer text")
        } else {
            ": the text is too short for any context; use a longer text".to_string()
        };
        return Err(EngineError::Perplexity(format!(
            "need at least {} tokens for a context of {n_ctx}, the text has {}{hint}",
            2 * n_ctx,
            tokens.len()
        )));
    }
    let n_vocab = source.n_vocab();
    let n_chunks = (tokens.len() / n_ctx).min(max_chunks.unwrap_or(usize::MAX).max(1));
    let first = n_ctx / 2;
    let start_time = std::time::Instant::now();
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut chunk_ppl = Vec::with_capacity(n_chunks);

    for c in 0..n_chunks {
        let mut window = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            window[0] = b;
        }
        source.truncate(0);
        let logits = source.forward(&window, 0, true)?;
        if logits.len() != n_ctx * n_vocab {
            return Err(EngineError::Internal(format!(
                "forward returned {} logits for {n_ctx} tokens x {n_vocab}",
                logits.len()
            )));
        }
        // Row i predicts token i + 1 of the window.
        for i in first..n_ctx - 1 {
            let row = &logits[i * n_vocab..(i + 1) * n_vocab];
            let target = window[i + 1] as usize;
            let v = -log_softmax_at(row, target);
            nll += v;
            nll2 += v * v;
            count += 1;
        }
        let ppl = (nll / count as f64).exp();
        chunk_ppl.push(ppl);
        progress(&ChunkProgress {
            chunk: c + 1,
            n_chunks,
            ppl,
            seconds: start_time.elapsed().as_secs_f64(),
        });
    }
    source.truncate(0);

    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = nll2 / count as f64 - mean * mean;
    // Delta method: d(exp(m)) = exp(m) dm, with dm the standard error of the mean NLL.
    let ppl_stderr = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    Ok(PerplexityResult {
        ppl,
        ppl_stderr,
        chunk_ppl,
        n_tokens: tokens.len(),
        n_ctx,
        n_scored: count,
        seconds: start_time.elapsed().as_secs_f64(),
    })
}

/// Like llama-perplexity: f32 exponentials (the costly part over a 256k vocabulary), summed
/// in f64.
fn log_softmax_at(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&l| (l - max).exp() as f64).sum();
    (row[target] - max) as f64 - sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Predicts `(t + 1) % n` with probability `p_hit`; remembers the windows it saw.
    struct Cyclic {
        n: usize,
        p_hit: f64,
        seen: Vec<Vec<u32>>,
    }

    impl LogitsSource for Cyclic {
        fn n_vocab(&self) -> usize {
            self.n
        }
        fn max_seq_len(&self) -> usize {
            64
        }
        fn forward(&mut self, t: &[u32], pos: usize, all: bool) -> Result<Vec<f32>, EngineError> {
            assert!(all && pos == 0);
            self.seen.push(t.to_vec());
            let miss = ((1.0 - self.p_hit) / (self.n - 1) as f64).ln() as f32;
            let hit = self.p_hit.ln() as f32;
            let mut out = Vec::new();
            for &x in t {
                let mut row = vec![miss; self.n];
                row[(x as usize + 1) % self.n] = hit;
                out.extend(row);
            }
            Ok(out)
        }
        fn truncate(&mut self, _: usize) -> usize {
            0
        }
    }

    #[test]
    fn perfectly_cyclic_text_scores_inverse_hit_probability() {
        let tokens: Vec<u32> = (0..40).map(|i| i % 5).collect();
        let mut m = Cyclic {
            n: 5,
            p_hit: 0.5,
            seen: vec![],
        };
        let mut progress = vec![];
        let r = perplexity(&mut m, &tokens, 16, None, |p| progress.push(p.chunk)).unwrap();
        // 40 / 16 = 2 windows, 16 - 1 - 8 = 7 scored tokens each.
        assert_eq!(progress, vec![1, 2]);
        assert_eq!(r.n_scored, 14);
        assert!((r.ppl - 2.0).abs() < 1e-5, "{}", r.ppl);
        assert!(r.ppl_stderr.abs() < 1e-5);
        assert_eq!(m.seen[1], tokens[16..32].to_vec());
    }

    #[test]
    fn bos_replaces_first_token_and_mixed_errors_give_stderr() {
        // Alternate: every other window position breaks the cycle.
        let tokens: Vec<u32> = (0..32).map(|i| if i % 2 == 0 { 0 } else { 1 }).collect();
        let mut m = Cyclic {
            n: 3,
            p_hit: 0.8,
            seen: vec![],
        };
        let r = perplexity(&mut m, &tokens, 8, Some(2), |_| {}).unwrap();
        assert!(m.seen.iter().all(|w| w[0] == 2));
        // Scored pairs (i = 4..6): 0->1 hit (p .8), 1->0 miss (p .1), 0->1 hit.
        let nll = [0.8f64, 0.1, 0.8].map(|p| -p.ln());
        let per_chunk: f64 = nll.iter().sum();
        let mean = per_chunk / 3.0;
        assert!((r.ppl - mean.exp()).abs() < 1e-4);
        let n = 12.0; // 4 windows x 3
        let var = nll.iter().map(|v| v * v).sum::<f64>() / 3.0 - mean * mean;
        let se = (var / (n - 1.0)).sqrt() * mean.exp();
        assert!((r.ppl_stderr - se).abs() < 1e-4, "{} vs {se}", r.ppl_stderr);
    }

    #[test]
    fn too_short_text_is_an_error() {
        let mut m = Cyclic {
            n: 3,
            p_hit: 0.5,
            seen: vec![],
        };
        let e = perplexity(&mut m, &[0; 20], 16, None, |_| {}).unwrap_err();
        assert!(e.to_string().contains("need at least 32 tokens"), "{e}");
        assert!(e.to_string().contains("use --ctx 10 or less"), "{e}");
        assert!(perplexity(&mut m, &[0; 200], 128, None, |_| {}).is_err());
        let e = perplexity(&mut m, &[0; 7], 16, None, |_| {}).unwrap_err();
        assert!(e.to_string().contains("too short for any context"), "{e}");
    }
}
