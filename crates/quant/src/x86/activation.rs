//! AVX2 activation quantization (see [`crate::activation`]).

use std::arch::x86_64::*;

/// [`crate::activation`]'s scalar block quantizer with AVX2, in the same operations as ggml's
/// `quantize_row_q8_0` (`127 / amax`, one f32 multiply, round half to even, saturating
/// packs).
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn block_q8_avx2(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    assert!(x.len() == 32 && qs.len() == 32);
    // SAFETY: 32 floats are readable (asserted).
    let v = unsafe { [0, 8, 16, 24].map(|k| _mm256_loadu_ps(x.as_ptr().add(k))) };
    let sign = _mm256_set1_ps(-0.0);
    let mut amax = _mm256_setzero_ps();
    for &vk in &v {
        // Abs first so that max sees no sign; max_ps(a, m) keeps m when a is NaN.
        amax = _mm256_max_ps(_mm256_andnot_ps(sign, vk), amax);
    }
    let m4 = _mm_max_ps(_mm256_extractf128_ps(amax, 1), _mm256_castps256_ps128(amax));
    let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let i = v.map(|vk| {
        _mm256_cvtps_epi32(_mm256_round_ps(
            _mm256_mul_ps(vk, id),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        ))
    });
    let sum = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
    let s4 = _mm_add_epi32(
        _mm256_castsi256_si128(sum),
        _mm256_extracti128_si256(sum, 1),
    );
    let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
    let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0b01));
    // The packs work within 128-bit halves; the permute puts the 32 bytes back in order.
    let p = _mm256_packs_epi16(
        _mm256_packs_epi32(i[0], i[1]),
        _mm256_packs_epi32(i[2], i[3]),
    );
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: 32 writable bytes (asserted).
    unsafe { _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, p) };
    (d, _mm_cvtsi128_si32(s1))
}
