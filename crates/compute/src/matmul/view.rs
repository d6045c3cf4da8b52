//! A weight matrix as the kernels see it: its bytes in their GGUF encoding, how its rows are
//! laid out, and who holds them (resident, or paged in on demand).

use quant::{GgmlType, Residency};

use crate::{shape_err, ComputeError};

/// A row-major weight matrix kept in its on-disk encoding: `rows` rows of `cols` elements.
#[derive(Clone, Copy)]
pub struct WeightView<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    pub(super) row_bytes: usize,
    /// Rows interleaved at load time (Q4_0 by 8, [`quant::q4_0x8`]; Q4_K by 16,
    /// [`quant::q4_kx16`]): single rows cannot be read, only whole groups.
    pub(super) interleaved: bool,
    /// Set when the bytes are paged in on demand (lazy loading): the kernels hand them back
    /// through it once an operation is done with them.
    pub(super) residency: Option<&'a dyn Residency>,
}

impl<'a> WeightView<'a> {
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, ComputeError> {
        if !ty.is_supported() {
            return Err(ComputeError::UnsupportedWeight(ty));
        }
        let row_bytes = ty.row_bytes(cols as u64).ok_or_else(|| {
            shape_err(
                "weight row",
                format!("a multiple of {} ({ty})", ty.block_size()),
                cols,
            )
        })? as usize;
        let expected = row_bytes * rows;
        if data.len() != expected {
            return Err(shape_err("weight bytes", expected, data.len()));
        }
        Ok(WeightView {
            ty,
            rows,
            cols,
            data,
            row_bytes,
            interleaved: false,
            residency: None,
        })
    }

    /// A Q4_0 matrix whose rows were interleaved by 8 with [`quant::q4_0x8::interleave`].
    /// Refused unless this CPU has the kernels for it ([`quant::order::interleaves_q4_0`]).
    pub fn interleaved_q4_0(
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, ComputeError> {
        if !quant::order::interleaves_q4_0(rows) {
            return Err(shape_err(
                "interleaved Q4_0 rows",
                "a multiple of 8, on a CPU with AVX2",
                rows,
            ));
        }
        let mut w = WeightView::new(GgmlType::Q4_0, rows, cols, data)?;
        w.interleaved = true;
        Ok(w)
    }

    /// A Q4_K matrix whose rows were interleaved by 16 with [`quant::q4_kx16::interleave`].
    /// Refused unless this CPU has the kernels for it ([`quant::order::interleaves_q4_k`]).
    pub fn interleaved_q4_k(
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, ComputeError> {
        if !quant::order::interleaves_q4_k(rows) {
            return Err(shape_err(
                "interleaved Q4_K rows",
                "a multiple of 16, on a CPU with AVX-512 VNNI",
                rows,
            ));
        }
        let mut w = WeightView::new(GgmlType::Q4_K, rows, cols, data)?;
        w.interleaved = true;
        Ok(w)
    }

    /// The same matrix, its bytes paged in on demand by `residency` (lazy loading; `None`
    /// leaves them resident): [`crate::matmul`] and [`crate::get_rows`] give back what they
    /// read once done, and [`crate::matmul`] walks a large matrix in row chunks so that only
    /// one chunk is resident at a time.
    pub fn paged_by(mut self, residency: Option<&'a dyn Residency>) -> Self {
        self.residency = residency;
        self
    }

    /// Hands `bytes` (a part of this matrix an operation is done with) to the residency
    /// hook, if the matrix has one.
    pub(super) fn done_with(&self, bytes: &[u8]) {
        if let Some(r) = self.residency {
            r.done_with(bytes);
        }
    }

    pub fn is_interleaved(&self) -> bool {
        self.interleaved
    }

    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    pub fn row(&self, i: usize) -> &'a [u8] {
        &self.data[i * self.row_bytes..(i + 1) * self.row_bytes]
    }
}

impl std::fmt::Debug for WeightView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightView")
            .field("ty", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("interleaved", &self.interleaved)
            .field("paged", &self.residency.is_some())
            .finish()
    }
}
