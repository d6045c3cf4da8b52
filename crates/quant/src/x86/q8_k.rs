//! Q8_K activation quantizer on AVX2, byte for byte the scalar `crate::q8_k::quantize`.
//!
//! ggml's x86 build has no SIMD `quantize_row_q8_K`: its CPU `from_float` for Q8_K is the
//! reference quantizer, so the scalar bytes are also what llama.cpp feeds its K-quant dots on
//! this machine and there is only one variant to match.

use std::arch::x86_64::*;

use crate::k_common::QK_K;
use crate::q8_k::BLOCK_BYTES;

/// Safe entry: quantizes `src` (a multiple of 256 values) into `dst` (292 bytes per 256).
/// Falls back to the scalar quantizer where AVX2 is missing, so callers need no dispatch.
pub(crate) fn quantize_avx2(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(QK_K) && dst.len() == src.len() / QK_K * BLOCK_BYTES,
        "quantize Q8_K: {} values into {} bytes",
        src.len(),
        dst.len()
    );
    if !super::has_avx2() {
        return crate::q8_k::quantize(src, dst);
    }
    for (x, b) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        // SAFETY: AVX2 was detected above; `x` and `b` are exactly one block long.
        unsafe { block_avx2(x.as_ptr(), b.as_mut_ptr()) }
    }
}

/// One block: 256 floats at `x` into 292 bytes at `out`.
///
/// # Safety
/// AVX2 must be available; `x` readable for 256 f32, `out` writable for 292 bytes.
#[target_feature(enable = "avx2")]
unsafe fn block_avx2(x: *const f32, out: *mut u8) {
    // SAFETY (whole body): every access is within the 256 inputs / 292 output bytes the
    // caller guarantees; loads and stores are the unaligned kinds.
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        // `max_ps(a, m)` returns `m` when `a` is NaN, so NaNs are skipped as by the scalar
        // `ax > amax` test.
        let mut vmax = _mm256_setzero_ps();
        for k in 0..QK_K / 8 {
            let a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x.add(8 * k)));
            vmax = _mm256_max_ps(a, vmax);
        }
        let lanes: [f32; 8] = std::mem::transmute(vmax);
        let amax = lanes.iter().fold(0f32, |m, &v| if v > m { v } else { m });
        if amax == 0.0 {
            std::ptr::write_bytes(out, 0, BLOCK_BYTES);
            return;
        }
        // The scalar loop keeps the first value reaching the largest magnitude.
        let target = _mm256_set1_ps(amax);
        let mut max = 0f32;
        for k in 0..QK_K / 8 {
            let a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x.add(8 * k)));
            let hit = _mm256_movemask_ps(_mm256_cmp_ps(a, target, _CMP_EQ_OQ));
            if hit != 0 {
                max = *x.add(8 * k + hit.trailing_zeros() as usize);
                break;
            }
        }
        let iscale = -127.0 / max;
        let vs = _mm256_set1_ps(iscale);
        // nearest_int: the magic add puts the rounded integer in the low mantissa bits. The
        // multiply and add stay separate roundings, as in the scalar code.
        let magic = _mm256_set1_ps(12_582_912.0);
        let mant = _mm256_set1_epi32(0x007f_ffff);
        let bias = _mm256_set1_epi32(0x0040_0000);
        let cap = _mm256_set1_epi32(127);
        let low_byte = _mm256_set1_epi32(0xff);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let qs = out.add(4);
        let ones = _mm256_set1_epi8(1);
        let mut sums4 = [_mm256_setzero_si256(); 8];
        for (c, s4) in sums4.iter_mut().enumerate() {
            let mut v = [_mm256_setzero_si256(); 4];
            for (k, v) in v.iter_mut().enumerate() {
                let f = _mm256_loadu_ps(x.add(32 * c + 8 * k));
                let t = _mm256_add_ps(_mm256_mul_ps(vs, f), magic);
                let q = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(t), mant), bias);
                // `as i8` keeps the low byte; masking first makes the unsigned packs exact.
                *v = _mm256_and_si256(_mm256_min_epi32(q, cap), low_byte);
            }
            let p = _mm256_packus_epi16(
                _mm256_packus_epi32(v[0], v[1]),
                _mm256_packus_epi32(v[2], v[3]),
            );
            let bytes = _mm256_permutevar8x32_epi32(p, order);
            _mm256_storeu_si256(qs.add(32 * c) as *mut __m256i, bytes);
            // Sums of 4 consecutive quants; pairs of sums make the 16-wide bsums below.
            *s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones, bytes), _mm256_set1_epi16(1));
        }
        let mut g = [_mm256_setzero_si256(); 2];
        for (h, g) in g.iter_mut().enumerate() {
            let s = &sums4[4 * h..4 * h + 4];
            let t = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
            *g = _mm256_permutevar8x32_epi32(t, order);
        }
        // |bsum| <= 16 * 128 fits i16, so the saturating pack never saturates.
        let b16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(g[0], g[1]), 0b11_01_10_00);
        _mm256_storeu_si256(out.add(260) as *mut __m256i, b16);
        (out as *mut f32).write_unaligned(1.0 / iscale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::kquant::Rng;

    fn check_same(src: &[f32]) {
        let mut want = vec![0xAAu8; src.len() / QK_K * BLOCK_BYTES];
        let mut got = vec![0x55u8; want.len()];
        crate::q8_k::quantize(src, &mut want);
        quantize_avx2(src, &mut got);
        for (i, (g, w)) in got
            .chunks(BLOCK_BYTES)
            .zip(want.chunks(BLOCK_BYTES))
            .enumerate()
        {
            assert!(
                g == w,
                "block {i} differs: {:?}",
                &src[i * QK_K..i * QK_K + 8]
            );
        }
    }

    #[test]
    fn same_bytes_as_scalar_on_fixture_activation() {
        let x = crate::testkit::dot_x();
        check_same(&x);
        let mut via_dispatch = vec![0u8; 2 * BLOCK_BYTES];
        crate::activation::quantize_q8_k(&x, &mut via_dispatch);
        let mut want = vec![0u8; 2 * BLOCK_BYTES];
        crate::q8_k::quantize(&x, &mut want);
        assert!(via_dispatch == want);
        let rows: Vec<f32> = crate::testkit::source_rows().concat();
        check_same(&rows);
    }

    fn blk(src: &mut [f32], b: usize) -> &mut [f32] {
        &mut src[b * QK_K..(b + 1) * QK_K]
    }

    #[test]
    fn same_bytes_as_scalar_random_and_edges() {
        let mut rng = Rng::new(42);
        let mut src: Vec<f32> = (0..QK_K * 20)
            .map(|i| rng.unit() * 10f32.powi((i / QK_K) as i32 % 9 - 4))
            .collect();
        blk(&mut src, 0).fill(0.0);
        blk(&mut src, 1).fill(-0.0);
        blk(&mut src, 2).fill(1.0);
        blk(&mut src, 3)[17] = -1e9; // largest value negative
        blk(&mut src, 4)[5] = 3.0; // ties in magnitude: the first one wins
        blk(&mut src, 4)[9] = -3.0;
        blk(&mut src, 5)[0] = f32::NAN;
        blk(&mut src, 5)[200] = f32::NAN;
        blk(&mut src, 6)[100] = f32::INFINITY;
        blk(&mut src, 7)[255] = f32::MAX;
        blk(&mut src, 8).fill(f32::NAN);
        blk(&mut src, 9).fill(0.0);
        blk(&mut src, 9)[3] = 1e-40; // subnormal, everything else zero
        for (i, v) in blk(&mut src, 10).iter_mut().enumerate() {
            *v = (i as f32 - 127.5) / 127.0; // many exact half-way roundings
        }
        check_same(&src);
    }
}
