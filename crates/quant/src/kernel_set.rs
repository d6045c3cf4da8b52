//! What the SIMD kernel modules of every architecture (`x86/`, `aarch64/`) share: the set of
//! kernels one format has at one level, and the bounds checks their safe entry points make
//! before handing raw pointers to the kernels.

use crate::dispatch::{Tile, VecDotFn, VecDotW4Fn, VecDotX4Fn};

/// The SIMD kernels of one format at one level. Every kernel gives, per output, exactly the
/// bits of `one` at the same level: the others only share loads and unpacking between
/// independent sums.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LevelKernels {
    pub one: Option<VecDotFn>,
    /// One weight row times four activation rows.
    pub x4: Option<VecDotX4Fn>,
    /// Four weight rows times one activation row.
    pub w4: Option<VecDotW4Fn>,
    /// Blocks of weight rows times several activation rows.
    pub tile: Option<Tile>,
    /// A tile for one to three activation rows (generation), where one beats `tile` there.
    pub gemv_tile: Option<Tile>,
}

impl LevelKernels {
    pub const NONE: LevelKernels = LevelKernels {
        one: None,
        x4: None,
        w4: None,
        tile: None,
        gemv_tile: None,
    };
}

/// [`blocks`] for a tile kernel of at most `max_w` x `max_x` rows: every weight and
/// activation row, and room for the outputs. The x86 tile kernels take exactly `max_w`
/// weight rows and 1 to `max_x` activation rows.
#[inline]
#[allow(clippy::too_many_arguments)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn blocks_tile(
    n: usize,
    block: usize,
    w: &[&[u8]],
    w_bytes: usize,
    x: &[&[u8]],
    x_bytes: usize,
    out: &[f32],
    max_w: usize,
    max_x: usize,
) -> usize {
    assert!(
        w.len() == max_w && (1..=max_x).contains(&x.len()) && out.len() >= w.len() * x.len(),
        "tile: {} x {} rows for a {max_w} x {max_x} kernel",
        w.len(),
        x.len()
    );
    let nb = n / block;
    assert!(
        w.iter().all(|r| r.len() >= nb * w_bytes) && x.iter().all(|r| r.len() >= nb * x_bytes),
        "vec_dot: buffers too short for {n} elements"
    );
    nb
}

/// A kernel's `[weight row][activation row]` results into a tile's `out[t * RW + r]`.
#[inline]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn scatter<const RW: usize, const R: usize>(v: [[f32; R]; RW], out: &mut [f32]) {
    for (r, row) in v.iter().enumerate() {
        for (t, &o) in row.iter().enumerate() {
            out[t * RW + r] = o;
        }
    }
}

/// [`blocks`] for four weight rows and one activation row.
#[inline]
pub(crate) fn blocks_w4(
    n: usize,
    block: usize,
    w: [&[u8]; 4],
    w_bytes: usize,
    x: &[u8],
    x_bytes: usize,
) -> usize {
    let nb = blocks(n, block, w[0], w_bytes, x, x_bytes);
    assert!(
        w.iter().all(|r| r.len() >= nb * w_bytes),
        "vec_dot: buffers too short for {n} elements"
    );
    nb
}

/// [`blocks`] for one weight row and four activation rows.
#[inline]
pub(crate) fn blocks_x4(
    n: usize,
    block: usize,
    w: &[u8],
    w_bytes: usize,
    x: [&[u8]; 4],
    x_bytes: usize,
) -> usize {
    let nb = blocks(n, block, w, w_bytes, x[0], x_bytes);
    assert!(
        x.iter().all(|r| r.len() >= nb * x_bytes),
        "vec_dot: buffers too short for {n} elements"
    );
    nb
}

/// Number of blocks in a row of `n` elements, after checking both buffers hold them: the
/// kernels read through raw pointers, so this is what keeps them in bounds.
#[inline]
pub(crate) fn blocks(
    n: usize,
    block: usize,
    w: &[u8],
    w_bytes: usize,
    x: &[u8],
    x_bytes: usize,
) -> usize {
    let nb = n / block;
    assert!(
        w.len() >= nb * w_bytes && x.len() >= nb * x_bytes,
        "vec_dot: buffers too short for {n} elements"
    );
    nb
}
