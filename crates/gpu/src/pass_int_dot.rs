//! Matrix-vector products with packed 8-bit dot products (Q8_0 and Q4_0 weights, where the
//! device has integer dot products): the activations are quantized to Q8_0 blocks on the
//! device once per matmul (`quantize_x8.wgsl`, as the CPU backend quantizes them), then
//! every weight row multiplies them four values per `dot4I8Packed` (`matvec_dot4.wgsl`).
//! Elsewhere, and for the tiled prefill kernel, the f32 path of `pass.rs` runs.

use crate::kernels::IntDotKernels;
use crate::pass::{u, MATVEC_ROWS, MATVEC_SG_ROWS};
use crate::tensor::{GpuWeights, Rows};
use crate::{GpuDevice, GpuError, Pass};

/// Words per quantized 32-value block: 8 of packed i8, one of scale.
const BLOCK_WORDS: usize = 9;

impl GpuDevice {
    /// The quantized-activation buffer, at least `words` long.
    fn x8_buffer(&self, words: usize) -> wgpu::Buffer {
        let mut slot = self.x8.lock().unwrap_or_else(|e| e.into_inner());
        let size = (words * 4) as u64;
        if slot.as_ref().is_none_or(|b| b.size() < size) {
            *slot = Some(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("8-bit activations"),
                size: size.next_power_of_two().max(256),
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }));
        }
        slot.as_ref().expect("made above").clone()
    }
}

impl Pass {
    /// [`Pass::matmul`] for `n <= MATVEC_MAX_TOKENS` through `k` (shapes already checked).
    pub(crate) fn matvec_int_dot(
        &mut self,
        k: &IntDotKernels,
        w: &GpuWeights,
        x: Rows,
        n: usize,
        y: Rows,
    ) -> Result<(), GpuError> {
        let blocks = n * (w.cols / 32);
        let x8 = self.dev().x8_buffer(blocks * BLOCK_WORDS);
        let quantize = self
            .dev()
            .kernels
            .quantize_x8
            .clone()
            .expect("compiled with the integer dot kernels");
        let groups = self.spread(blocks.div_ceil(64));
        self.step(
            &quantize,
            &[(1, &x.t.buf), (2, &x8)],
            &[u(n), u(w.cols), u(x.stride), u(x.off)],
            groups,
        )?;
        for c in &w.chunks {
            let bufs = [(1, &c.buf), (2, &x8), (3, &y.t.buf)];
            let words = [
                u(c.rows),
                u(w.cols),
                u(n),
                u(w.row_bytes),
                0,
                u(y.stride),
                u(y.off + c.row0),
                0,
            ];
            match &k.matvec_sg {
                Some(sg) => {
                    let groups = self.spread(c.rows.div_ceil(MATVEC_SG_ROWS));
                    self.step(sg, &bufs, &words, groups)?;
                }
                None => {
                    let groups = self.spread(c.rows.div_ceil(MATVEC_ROWS));
                    self.step(&k.matvec, &bufs, &words, groups)?;
                }
            }
        }
        Ok(())
    }
}
