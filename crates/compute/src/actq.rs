//! Activation-row quantization as llama.cpp's x86 CPU backend does it. ggml's SIMD Q8_0 /
//! Q8_1 quantizers differ from the reference ones in two details that flip a value now and
//! then: the inverse scale is `127 / amax` (not `1 / (amax / 127)`) and rounding is
//! half-to-even. Other types use the reference quantizer, which is what x86 runs too.

use half::f16;
use quant::GgmlType;

use crate::ComputeError;

const QK: usize = 32;

fn block_q8(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        let r = (v * id).round_ties_even() as i32;
        sum += r;
        *q = r as i8 as u8;
    }
    (d, sum)
}

/// Quantizes one activation row `x` to `ty` into `out` (exactly `ty.row_bytes(x.len())`).
pub(crate) fn quantize_activation(
    ty: GgmlType,
    x: &[f32],
    out: &mut [u8],
) -> Result<(), ComputeError> {
    match ty {
        GgmlType::Q8_0 if x.len().is_multiple_of(QK) && out.len() == x.len() / QK * 34 => {
            for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(34)) {
                let (d, _) = block_q8(xb, &mut ob[2..]);
                ob[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
            }
            Ok(())
        }
        GgmlType::Q8_1 if x.len().is_multiple_of(QK) && out.len() == x.len() / QK * 36 => {
            for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(36)) {
                let (d, sum) = block_q8(xb, &mut ob[4..]);
                ob[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                ob[2..4].copy_from_slice(&f16::from_f32(d * sum as f32).to_le_bytes());
            }
            Ok(())
        }
        _ => Ok(quant::quantize_row(ty, x, out)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_rounds_half_to_even_with_127_over_amax() {
        // amax 127 -> id 1 exactly: 2.5 -> 2, 3.5 -> 4, -0.5 -> 0 (reference roundf gives 3, 4, -1)
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = 3.5;
        x[3] = -0.5;
        let mut out = vec![0u8; 34];
        quantize_activation(GgmlType::Q8_0, &x, &mut out).unwrap();
        assert_eq!(f16::from_le_bytes([out[0], out[1]]).to_f32(), 1.0);
        assert_eq!(&out[2..6], &[127u8, 2, 4, 0]);
        // values dequantize back within half a step
        let mut back = vec![0f32; 32];
        quant::dequantize_row(GgmlType::Q8_0, &out, &mut back).unwrap();
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() <= 0.5);
        }
    }

    #[test]
    fn q8_1_stores_scaled_sum() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 10.0).collect();
        let mut out = vec![0u8; 36];
        quantize_activation(GgmlType::Q8_1, &x, &mut out).unwrap();
        let d = f16::from_le_bytes([out[0], out[1]]).to_f32();
        let s = f16::from_le_bytes([out[2], out[3]]).to_f32();
        let qsum: i32 = out[4..].iter().map(|&b| b as i8 as i32).sum();
        assert!((d - 21.0 / 127.0).abs() < 1e-4);
        assert!((s - f16::from_f32(21.0f32 / 127.0 * qsum as f32).to_f32()).abs() < 1e-6);
        assert_eq!(out[4 + 31] as i8, 127);
    }
}
