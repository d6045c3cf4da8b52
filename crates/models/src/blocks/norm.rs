//! The two normalisations decoder layers use, as ggml computes them (`build_norm`):
//! RMSNorm (`x / rms(x) * w`) and LayerNorm (`(x - mean) / std * w + b`).

use crate::error::ModelError;

/// A normalisation with its learned weights (one row of `n_embd`, or `head_dim` for the
/// per-head Q/K norms).
#[derive(Clone, Debug)]
pub(crate) enum Norm {
    Rms {
        w: Vec<f32>,
        eps: f32,
    },
    Layer {
        w: Vec<f32>,
        b: Option<Vec<f32>>,
        eps: f32,
    },
}

impl Norm {
    /// Normalises every row of `x` (rows of the weight's length) in place.
    pub fn apply_in_place(&self, x: &mut [f32]) -> Result<(), ModelError> {
        match self {
            Norm::Rms { w, eps } => compute::rms_norm_in_place(x, Some(w), *eps)?,
            Norm::Layer { w, b, eps } => compute::layer_norm(x, w, b.as_deref(), *eps)?,
        }
        Ok(())
    }

    /// `out = norm(x)`.
    pub fn apply(&self, x: &[f32], out: &mut [f32]) -> Result<(), ModelError> {
        out.copy_from_slice(x);
        self.apply_in_place(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain f64 references of the two norms.
    fn rms_ref(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        x.iter()
            .zip(w)
            .map(|(v, g)| v / (ms + eps).sqrt() * g)
            .collect()
    }

    fn ln_ref(x: &[f64], w: &[f64], b: &[f64], eps: f64) -> Vec<f64> {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        x.iter()
            .zip(w.iter().zip(b))
            .map(|(v, (g, c))| (v - mean) / (var + eps).sqrt() * g + c)
            .collect()
    }

    fn sample(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 4.0 - 1.5
            })
            .collect()
    }

    #[test]
    fn rms_and_layer_norm_match_plain_references_row_by_row() {
        let n = 64;
        let x = sample(3 * n, 1);
        let w = sample(n, 2);
        let b = sample(n, 3);
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        let rms = Norm::Rms {
            w: w.clone(),
            eps: 1e-5,
        };
        let ln = Norm::Layer {
            w: w.clone(),
            b: Some(b.clone()),
            eps: 1e-5,
        };
        let mut out = vec![0f32; 3 * n];
        rms.apply(&x, &mut out).unwrap();
        for r in 0..3 {
            let want = rms_ref(&f64s(&x[r * n..][..n]), &f64s(&w), 1e-5);
            for (a, b) in out[r * n..][..n].iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 1e-5, "rms row {r}: {a} vs {b}");
            }
        }
        ln.apply(&x, &mut out).unwrap();
        for r in 0..3 {
            let want = ln_ref(&f64s(&x[r * n..][..n]), &f64s(&w), &f64s(&b), 1e-5);
            for (a, b) in out[r * n..][..n].iter().zip(&want) {
                assert!(
                    (*a as f64 - b).abs() < 1e-5,
                    "layer norm row {r}: {a} vs {b}"
                );
            }
        }
        // LayerNorm removes the mean: a constant shift of the input changes nothing.
        let shifted: Vec<f32> = x[..n].iter().map(|v| v + 3.0).collect();
        let mut a = vec![0f32; n];
        let mut c = vec![0f32; n];
        ln.apply(&x[..n], &mut a).unwrap();
        ln.apply(&shifted, &mut c).unwrap();
        for (p, q) in a.iter().zip(&c) {
            assert!((p - q).abs() < 1e-4);
        }
        // A row of the wrong width is an error, not a panic.
        assert!(rms.apply_in_place(&mut [1.0; 5]).is_err());
    }
}
