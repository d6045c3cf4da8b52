//! Products with weights paged in on demand (lazy loading, [`WeightView::paged_by`]): the
//! residency hook gets back every byte an operation read once it is done, and a large matrix
//! (the vocabulary projection, a big FFN) runs in row chunks so that only one chunk of it is
//! resident at a time.

use super::{matmul_resident, WeightView};
use crate::ComputeError;

/// A paged matrix runs in row chunks of about this many weight bytes, each handed back
/// after use.
pub const PAGED_CHUNK_BYTES: usize = 16 << 20;

/// [`crate::matmul`] of a paged matrix. Every output equals the unchunked product's: chunks
/// are whole multiples of 64 rows and chunking only happens when the whole matrix is one
/// too, so the chunks and the whole have the same row-count residues, which are all a kernel
/// choice depends on.
pub(super) fn matmul(
    w: &WeightView,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    qbuf: &mut Vec<u8>,
) -> Result<(), ComputeError> {
    let chunk = (PAGED_CHUNK_BYTES / w.row_bytes().max(1)) / 64 * 64;
    if w.interleaved || chunk == 0 || chunk >= w.rows || !w.rows.is_multiple_of(64) {
        let r = matmul_resident(&mut [(w, out)], x, n, qbuf);
        w.done_with(w.data);
        return r;
    }
    if out.len() != n * w.rows {
        return Err(crate::shape_err("matmul output", n * w.rows, out.len()));
    }
    let mut part = Vec::new();
    for r0 in (0..w.rows).step_by(chunk) {
        let rows = chunk.min(w.rows - r0);
        let bytes = &w.data[r0 * w.row_bytes()..(r0 + rows) * w.row_bytes()];
        let v = WeightView::new(w.ty, rows, w.cols, bytes)?;
        let r = if n == 1 {
            matmul_resident(&mut [(&v, &mut out[r0..r0 + rows])], x, 1, qbuf)
        } else {
            part.resize(n * rows, 0.0);
            let r = matmul_resident(&mut [(&v, &mut part[..])], x, n, qbuf);
            for t in 0..n {
                out[t * w.rows + r0..][..rows].copy_from_slice(&part[t * rows..][..rows]);
            }
            r
        };
        w.done_with(bytes);
        r?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use quant::{GgmlType, Residency};

    use super::*;

    /// Records the byte ranges handed back (as offsets into `base`).
    struct Recorder {
        base: usize,
        ranges: Mutex<Vec<(usize, usize)>>,
    }

    impl Residency for Recorder {
        fn done_with(&self, bytes: &[u8]) {
            let a = bytes.as_ptr() as usize - self.base;
            self.ranges.lock().unwrap().push((a, a + bytes.len()));
        }
    }

    fn random(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn encode(ty: GgmlType, rows: usize, cols: usize, w: &[f32]) -> Vec<u8> {
        let rb = ty.row_bytes(cols as u64).unwrap() as usize;
        let mut out = vec![0u8; rows * rb];
        for r in 0..rows {
            quant::quantize_row(ty, &w[r * cols..][..cols], &mut out[r * rb..][..rb]).unwrap();
        }
        out
    }

    /// Chunked products equal the resident ones bit for bit, and every byte is handed back
    /// exactly once, chunk by chunk in order.
    #[test]
    fn paged_products_equal_resident_ones_and_give_every_byte_back() {
        // Q8_0 rows of 4096 columns are 4352 bytes: a 16 MiB chunk is 3840 rows, so 8192
        // rows run as chunks of 3840, 3840 and 512.
        let (rows, cols) = (8192, 4096);
        let ty = GgmlType::Q8_0;
        let data = encode(ty, rows, cols, &random(rows * cols, 1));
        for n in [1, 3] {
            let x = random(n * cols, 2);
            let w = WeightView::new(ty, rows, cols, &data).unwrap();
            let (mut want, mut got) = (vec![0f32; n * rows], vec![0f32; n * rows]);
            let mut qbuf = Vec::new();
            crate::matmul(&w, &x, n, &mut want, &mut qbuf).unwrap();
            let rec = Recorder {
                base: data.as_ptr() as usize,
                ranges: Mutex::new(Vec::new()),
            };
            let paged = w.paged_by(Some(&rec));
            crate::matmul(&paged, &x, n, &mut got, &mut qbuf).unwrap();
            assert!(want
                .iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            let rb = w.row_bytes();
            let ranges = rec.ranges.into_inner().unwrap();
            let chunk = 3840 * rb;
            let expect = vec![(0, chunk), (chunk, 2 * chunk), (2 * chunk, rows * rb)];
            assert_eq!(ranges, expect, "n = {n}");
        }
    }

    /// A matrix whose row count is not a multiple of 64 runs whole (a chunk could take a
    /// different kernel) and is handed back whole; so is a small one.
    #[test]
    fn odd_or_small_matrices_run_whole() {
        let ty = GgmlType::Q4_0;
        for (rows, cols) in [(4100, 4096), (100, 64)] {
            let data = encode(ty, rows, cols, &random(rows * cols, 3));
            let x = random(2 * cols, 4);
            let w = WeightView::new(ty, rows, cols, &data).unwrap();
            let (mut want, mut got) = (vec![0f32; 2 * rows], vec![0f32; 2 * rows]);
            let mut qbuf = Vec::new();
            crate::matmul(&w, &x, 2, &mut want, &mut qbuf).unwrap();
            let rec = Recorder {
                base: data.as_ptr() as usize,
                ranges: Mutex::new(Vec::new()),
            };
            crate::matmul(&w.paged_by(Some(&rec)), &x, 2, &mut got, &mut qbuf).unwrap();
            assert!(want
                .iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            assert_eq!(rec.ranges.into_inner().unwrap(), vec![(0, data.len())]);
        }
    }

    /// Matrices sharing activations, and embedding lookups, hand back what they read.
    #[test]
    fn many_and_get_rows_give_back_what_they_read() {
        let ty = GgmlType::Q8_0;
        let (rows, cols) = (64, 256);
        let data = encode(ty, 2 * rows, cols, &random(2 * rows * cols, 5));
        let half = data.len() / 2;
        let rec = Recorder {
            base: data.as_ptr() as usize,
            ranges: Mutex::new(Vec::new()),
        };
        let a = WeightView::new(ty, rows, cols, &data[..half])
            .unwrap()
            .paged_by(Some(&rec));
        let b = WeightView::new(ty, rows, cols, &data[half..])
            .unwrap()
            .paged_by(Some(&rec));
        let x = random(cols, 6);
        let (mut ya, mut yb) = (vec![0f32; rows], vec![0f32; rows]);
        crate::matmul_many(&mut [(&a, &mut ya), (&b, &mut yb)], &x, 1, &mut Vec::new()).unwrap();
        let mut row = vec![0f32; cols];
        crate::get_rows(&b, 5, &mut row).unwrap();
        let rb = a.row_bytes();
        assert_eq!(
            rec.ranges.into_inner().unwrap(),
            vec![(0, half), (half, 2 * half), (half + 5 * rb, half + 6 * rb)]
        );
    }
}
