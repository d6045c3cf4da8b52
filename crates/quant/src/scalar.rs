//! Scalar conversions shared by the block formats, written to give exactly the bits ggml's
//! portable C gives (ggml-base is built without F16C, so its software conversions are the
//! reference every GGUF file was written with).

use half::f16;

/// IEEE half to single. Exact for every input, so any correct conversion matches ggml.
#[inline]
pub fn fp16_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// Single to IEEE half, round to nearest even, overflow to infinity. ggml's software
/// conversion collapses every NaN to the canonical quiet NaN (keeping the sign), whereas a
/// hardware conversion would keep the payload, so NaN is handled here explicitly.
#[inline]
pub fn f32_to_fp16(x: f32) -> u16 {
    if x.is_nan() {
        let sign = ((x.to_bits() >> 16) & 0x8000) as u16;
        return sign | 0x7e00;
    }
    f16::from_f32(x).to_bits()
}

/// bfloat16 is the top half of an f32, so widening is a shift.
#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// Single to bfloat16 as ggml does it: round to nearest even on the dropped 16 bits (which
/// also carries overflow into infinity), NaN kept but forced quiet, subnormals not flushed.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 0x40) as u16;
    }
    // Cannot overflow: the largest non-NaN pattern is 0xff80_0000.
    ((u + 0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// Little-endian u16 at `off`.
#[inline]
pub fn le_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// The f16 stored little-endian at `off`, widened.
#[inline]
pub fn le_f16(b: &[u8], off: usize) -> f32 {
    fp16_to_f32(le_u16(b, off))
}

/// Store `x` as a little-endian f16 at `off`.
#[inline]
pub fn put_f16(b: &mut [u8], off: usize, x: f32) {
    b[off..off + 2].copy_from_slice(&f32_to_fp16(x).to_le_bytes());
}

/// ggml's `MAX(a, b)` macro (`a > b ? a : b`): unlike `f32::max` it lets a NaN in `b` through,
/// which decides what a block containing NaN quantizes to.
#[inline]
pub fn c_max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// C's `roundf`: halves away from zero (not to even).
#[inline]
pub fn c_roundf(x: f32) -> f32 {
    x.round()
}

/// `1/d`, or 0 when `d` is zero (either sign), as every ggml quantizer guards it.
#[inline]
pub fn inv_or_zero(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp16_rounding_and_specials() {
        // 1 + 2^-11 is exactly halfway between 1 and the next half: ties go to even (1.0).
        assert_eq!(f32_to_fp16(1.0 + f32::powi(2.0, -11)), 0x3c00);
        // 1 + 3*2^-11 is halfway between two odd/even neighbours: goes up to even 0x3c02.
        assert_eq!(f32_to_fp16(1.0 + 3.0 * f32::powi(2.0, -11)), 0x3c02);
        assert_eq!(f32_to_fp16(65520.0), 0x7c00); // rounds past the max finite half
        assert_eq!(f32_to_fp16(65519.0), 0x7bff);
        assert_eq!(f32_to_fp16(-0.0), 0x8000);
        assert_eq!(f32_to_fp16(f32::powi(2.0, -25)), 0x0000); // tie with zero: even
        assert_eq!(f32_to_fp16(f32::powi(2.0, -25) * 1.5), 0x0001);
        assert_eq!(f32_to_fp16(f32::from_bits(0x7f80_0001)), 0x7e00);
        assert_eq!(f32_to_fp16(f32::from_bits(0xffc1_2345)), 0xfe00);
        assert_eq!(fp16_to_f32(0x0001), f32::powi(2.0, -24));
        assert_eq!(fp16_to_f32(0xfbff), -65504.0);
    }

    #[test]
    fn bf16_rounding_and_specials() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, even stays
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, odd rounds up
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x0000_8001)), 0x0001); // subnormal kept
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0); // signalling made quiet
        assert_eq!(f32_to_bf16(f32::from_bits(0xff81_2345)), 0xffc1);
        assert_eq!(bf16_to_f32(0xc0a0), -5.0);
    }

    #[test]
    fn c_semantics() {
        assert_eq!(c_roundf(2.5), 3.0);
        assert_eq!(c_roundf(-2.5), -3.0);
        assert!(c_max(1.0, f32::NAN).is_nan());
        assert_eq!(c_max(f32::NAN, 1.0), 1.0);
        assert_eq!(inv_or_zero(-0.0), 0.0);
        assert_eq!(inv_or_zero(4.0), 0.25);
    }
}
