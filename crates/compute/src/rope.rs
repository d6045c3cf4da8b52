//! Rotary position embedding as ggml_rope_ext computes it: the angle for pair i is built by
//! repeated f32 multiplication `theta_{i+1} = theta_i * base^(-2/n_rot)` starting from the
//! position, divided by an optional per-pair frequency factor (llama3 rope_freqs, LongRoPE),
//! scaled by freq_scale (linear scaling) with optional YaRN ramp, and cos/sin are multiplied
//! by attn_factor.

/// How dimensions are paired for rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    /// Adjacent pairs (`x[2i]`, `x[2i+1]`): llama, deepseek2.
    Norm,
    /// Half-split pairs (`x[i]`, `x[i + n_rot/2]`): qwen2, gemma, phi3, gptneox...
    Neox,
}

#[derive(Clone, Debug)]
pub struct Rope {
    pub mode: RopeMode,
    /// Rotated dimensions per head (the rest pass through).
    pub n_rot: usize,
    pub freq_base: f32,
    pub freq_scale: f32,
    /// Per-pair divisors of the frequency (`n_rot / 2` values), if any.
    pub freq_factors: Option<Vec<f32>>,
    /// YaRN extrapolation mix (0 disables YaRN).
    pub ext_factor: f32,
    pub attn_factor: f32,
    pub beta_fast: f32,
    pub beta_slow: f32,
    pub n_ctx_orig: usize,
}

impl Rope {
    pub fn new(mode: RopeMode, n_rot: usize, freq_base: f32) -> Rope {
        Rope {
            mode,
            n_rot,
            freq_base,
            freq_scale: 1.0,
            freq_factors: None,
            ext_factor: 0.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            n_ctx_orig: 0,
        }
    }

    fn corr_dims(&self) -> [f32; 2] {
        let n = self.n_rot as f32;
        let base = self.freq_base;
        let dim = |n_rot: f32| {
            n * (self.n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * base.ln())
        };
        let start = dim(self.beta_fast).floor();
        let end = dim(self.beta_slow).ceil();
        [start.max(0.0), end.min(n - 1.0)]
    }

    /// Fills `cache` (n_rot floats: cos, sin per pair) for position `pos`.
    pub fn fill_cache(&self, pos: usize, cache: &mut [f32]) {
        let theta_scale = self.freq_base.powf(-2.0 / self.n_rot as f32);
        let corr = if self.ext_factor != 0.0 {
            self.corr_dims()
        } else {
            [0.0, 0.0]
        };
        let mut theta = pos as f32;
        for i in 0..self.n_rot / 2 {
            let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
            let extrap = theta / ff;
            let interp = self.freq_scale * extrap;
            let mut t = interp;
            let mut mscale = self.attn_factor;
            if self.ext_factor != 0.0 {
                let y = (i as f32 - corr[0]) / (corr[1] - corr[0]).max(0.001);
                let ramp = 1.0 - y.clamp(0.0, 1.0);
                let mix = ramp * self.ext_factor;
                t = interp * (1.0 - mix) + extrap * mix;
                mscale *= 1.0 + 0.1 * (1.0 / self.freq_scale).ln();
            }
            cache[2 * i] = t.cos() * mscale;
            cache[2 * i + 1] = t.sin() * mscale;
            theta *= theta_scale;
        }
    }

    /// Rotates `n_heads` heads of `head_dim` (laid out contiguously in `x`) with `cache`
    /// from [`Rope::fill_cache`], in the arithmetic of the active SIMD level for a rope that
    /// ggml computes into a separate buffer (llama.cpp's Q).
    pub fn apply_cached(&self, x: &mut [f32], n_heads: usize, head_dim: usize, cache: &[f32]) {
        let level = crate::simd_level();
        self.apply_cached_at(level, x, n_heads, head_dim, cache, false)
    }

    /// [`Rope::apply_cached`] for a rope ggml computes in place (llama.cpp's K: its graph
    /// allocator reuses the input buffer), which changes the adjacent-pair arithmetic.
    pub fn apply_cached_in_place(
        &self,
        x: &mut [f32],
        n_heads: usize,
        head_dim: usize,
        cache: &[f32],
    ) {
        let level = crate::simd_level();
        self.apply_cached_at(level, x, n_heads, head_dim, cache, true)
    }

    /// The rotation as ggml's SIMD builds compile it: GCC contracts `x0*c - x1*s` and
    /// `x0*s + x1*c` into one FMA each, x0's product kept exact and x1's rounded first.
    /// Half-split pairs run a scalar loop, every pair fused. Adjacent pairs run a
    /// vectorised loop over whole groups of 4 pairs with unfused leftovers, unless source
    /// and destination overlap (in place), where a pair-at-a-time unfused loop runs
    /// instead. The portable build rounds both products. (Read from b11434's x86-64
    /// AVX-512 build and checked against its roped Q and K tensors, bit for bit.)
    pub fn apply_cached_at(
        &self,
        level: quant::dispatch::SimdLevel,
        x: &mut [f32],
        n_heads: usize,
        head_dim: usize,
        cache: &[f32],
        in_place: bool,
    ) {
        let half = self.n_rot / 2;
        // GCC vectorises the adjacent-pair loop for the target's width, which is only
        // reproduced for x86; the half-split (NEOX) loop stays scalar and fused on aarch64 too.
        let simd = level != quant::dispatch::SimdLevel::Scalar
            || (self.mode == RopeMode::Neox && crate::arm_fma());
        let fused_pairs = match (simd, self.mode) {
            (false, _) => 0,
            (true, RopeMode::Norm) if in_place => 0,
            (true, RopeMode::Norm) => half / 4 * 4,
            (true, RopeMode::Neox) => half,
        };
        for h in 0..n_heads {
            let v = &mut x[h * head_dim..(h + 1) * head_dim];
            for i in 0..half {
                let (c, s) = (cache[2 * i], cache[2 * i + 1]);
                let (a, b) = match self.mode {
                    RopeMode::Norm => (2 * i, 2 * i + 1),
                    RopeMode::Neox => (i, i + half),
                };
                let (x0, x1) = (v[a], v[b]);
                let (y0, y1) = if i >= fused_pairs {
                    (x0 * c - x1 * s, x0 * s + x1 * c)
                } else {
                    (x0.mul_add(c, -(x1 * s)), x0.mul_add(s, x1 * c))
                };
                v[a] = y0;
                v[b] = y1;
            }
        }
    }

    /// Rotates `n_heads` heads of `head_dim` in `x` for position `pos`.
    pub fn apply(&self, x: &mut [f32], n_heads: usize, head_dim: usize, pos: usize) {
        let mut cache = vec![0f32; self.n_rot];
        self.fill_cache(pos, &mut cache);
        self.apply_cached(x, n_heads, head_dim, &cache);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(
        x: &[f32],
        pos: f64,
        n_rot: usize,
        base: f64,
        neox: bool,
        scale: f64,
        ff: Option<&[f32]>,
    ) -> Vec<f64> {
        let mut y: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for i in 0..n_rot / 2 {
            let mut th = pos * base.powf(-2.0 * i as f64 / n_rot as f64);
            if let Some(f) = ff {
                th /= f[i] as f64;
            }
            th *= scale;
            let (a, b) = if neox {
                (i, i + n_rot / 2)
            } else {
                (2 * i, 2 * i + 1)
            };
            let (x0, x1) = (x[a] as f64, x[b] as f64);
            y[a] = x0 * th.cos() - x1 * th.sin();
            y[b] = x0 * th.sin() + x1 * th.cos();
        }
        y
    }

    #[test]
    fn norm_and_neox_match_closed_form() {
        let x: Vec<f32> = (0..16)
            .map(|i| (i as f32 * 0.37).sin() + 0.1 * i as f32)
            .collect();
        for (mode, neox) in [(RopeMode::Norm, false), (RopeMode::Neox, true)] {
            for pos in [0usize, 1, 7, 100] {
                let r = Rope::new(mode, 16, 10000.0);
                let mut y = x.clone();
                r.apply(&mut y, 1, 16, pos);
                let want = naive(&x, pos as f64, 16, 10000.0, neox, 1.0, None);
                for (a, b) in y.iter().zip(&want) {
                    assert!(
                        (*a as f64 - b).abs() < 2e-5,
                        "{mode:?} pos {pos}: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// SmolLM2's layer-0 Q (head 2, pair 0, position 1) as llama.cpp b11434's AVX-512 build
    /// ropes it: both outputs fuse x0's product, so y1 is `fma(x0, s, x1*c)`; fusing x1's
    /// product instead gives -0.6660141 (one ulp off).
    #[test]
    fn adjacent_pairs_round_as_ggml_simd_build() {
        let level = quant::dispatch::active_level();
        if level == quant::dispatch::SimdLevel::Scalar || cfg!(not(target_arch = "x86_64")) {
            return;
        }
        let r = Rope::new(RopeMode::Norm, 64, 100000.0);
        let mut cache = vec![0f32; 64];
        r.fill_cache(1, &mut cache);
        let mut x = vec![0f32; 64];
        x[0] = -0.342_000_48;
        x[1] = -0.700_035_2;
        r.apply_cached_at(level, &mut x, 1, 64, &cache, false);
        assert_eq!((x[0], x[1]), (0.404_275_66, -0.666_014_13));
    }

    #[test]
    fn position_zero_is_identity_and_pairs_differ_by_mode() {
        let x: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let mut y = x.clone();
        Rope::new(RopeMode::Norm, 8, 10000.0).apply(&mut y, 1, 8, 0);
        assert_eq!(x, y);
        // pos 1, pair 0 has theta = 1 rad in both modes but rotates different elements
        let mut a = x.clone();
        Rope::new(RopeMode::Norm, 8, 10000.0).apply(&mut a, 1, 8, 1);
        let (c, s) = (1f32.cos(), 1f32.sin());
        assert!(
            (a[0] - (0.0 * c - 1.0 * s)).abs() < 1e-6 && (a[1] - (0.0 * s + 1.0 * c)).abs() < 1e-6
        );
        let mut b = x.clone();
        Rope::new(RopeMode::Neox, 8, 10000.0).apply(&mut b, 1, 8, 1);
        assert!(
            (b[0] - (0.0 * c - 4.0 * s)).abs() < 1e-6 && (b[4] - (0.0 * s + 4.0 * c)).abs() < 1e-6
        );
    }

    #[test]
    fn partial_rotary_scale_factors_and_attn_factor() {
        let x: Vec<f32> = (0..32).map(|i| 1.0 - i as f32 * 0.05).collect();
        let ff = [1.0f32, 2.0, 4.0, 8.0, 1.5, 3.0];
        let mut r = Rope::new(RopeMode::Neox, 12, 500000.0);
        r.freq_scale = 0.125;
        r.freq_factors = Some(ff.to_vec());
        let mut y = x.clone();
        r.apply(&mut y, 2, 16, 13);
        for h in 0..2 {
            let xs = &x[h * 16..(h + 1) * 16];
            let want = naive(xs, 13.0, 12, 500000.0, true, 0.125, Some(&ff));
            for d in 0..16 {
                assert!((y[h * 16 + d] as f64 - want[d]).abs() < 2e-5);
            }
            assert_eq!(&y[h * 16 + 12..h * 16 + 16], &xs[12..16]);
        }
        r.attn_factor = 2.0;
        let mut z = x.clone();
        r.apply(&mut z, 2, 16, 13);
        for d in 0..12 {
            assert!((z[d] - 2.0 * y[d]).abs() < 1e-5);
        }
    }

    #[test]
    fn simd_orders_differ_only_in_rounding_and_scalar_rounds_both_products() {
        use quant::dispatch::SimdLevel;
        let x: Vec<f32> = (0..2 * 40)
            .map(|i| (i as f32 * 0.91).cos() * 3.0 + 0.01 * i as f32)
            .collect();
        for mode in [RopeMode::Norm, RopeMode::Neox] {
            // 18 pairs: four groups of 4 plus 2 leftover pairs in the adjacent-pair order.
            let r = Rope::new(mode, 36, 10000.0);
            let mut cache = vec![0f32; 36];
            r.fill_cache(29, &mut cache);
            let mut want = x.clone();
            r.apply_cached_at(SimdLevel::Scalar, &mut want, 2, 40, &cache, false);
            for (i, v) in want.iter().enumerate().take(40) {
                if i >= 36 {
                    assert_eq!(*v, x[i]);
                }
            }
            for level in [SimdLevel::Avx2, SimdLevel::Avx512] {
                for in_place in [false, true] {
                    let mut y = x.clone();
                    r.apply_cached_at(level, &mut y, 2, 40, &cache, in_place);
                    for (a, b) in y.iter().zip(&want) {
                        assert!((a - b).abs() <= 4e-7 * b.abs().max(1.0), "{a} vs {b}");
                    }
                    if mode == RopeMode::Norm && in_place {
                        assert_eq!(y, want, "in-place adjacent pairs are unfused");
                    }
                }
            }
        }
    }
}
