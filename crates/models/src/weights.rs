//! Typed handles on GGUF tensors. Matrices stay in their file encoding and are viewed in
//! place at run time; only small 1-D tensors (norm weights, biases) are decoded to f32.

use std::collections::HashSet;

use compute::WeightView;
use gguf::{GgufFile, TensorInfo};

use crate::error::ModelError;

/// A weight matrix of `rows` x `cols` (ggml dims `[cols, rows]`) inside the mapped file.
#[derive(Clone, Debug)]
pub(crate) struct Matrix {
    pub info: TensorInfo,
    pub rows: usize,
    pub cols: usize,
    /// Rows interleaved in memory at load time (see [`interleave`]).
    pub interleaved: bool,
}

impl Matrix {
    /// The matrix as the kernels read it, paged in on demand under lazy loading (the
    /// kernels hand its bytes back through the file's residency hook once done).
    pub fn view<'a>(&self, file: &'a GgufFile) -> Result<WeightView<'a>, ModelError> {
        let data = file.tensor_data(&self.info);
        let view = if self.interleaved && self.info.ty == quant::GgmlType::Q4_K {
            WeightView::interleaved_q4_k(self.rows, self.cols, data)?
        } else if self.interleaved {
            WeightView::interleaved_q4_0(self.rows, self.cols, data)?
        } else {
            WeightView::new(self.info.ty, self.rows, self.cols, data)?
        };
        Ok(view.paged_by(file.residency()))
    }
}

/// Interleaves the weight matrices of an in-memory (eager) file in place where llama.cpp
/// repacks them and this CPU has kernels for the interleaved layout: Q4_0 by 8 rows (AVX2)
/// and Q4_K by 16 (AVX-512 VNNI). Only 2-D tensors other than the token embedding, which is
/// read a row at a time and left plain by llama.cpp, also when tied as the output. Returns
/// their names; nothing changes for mapped files or other CPUs, and results stay bit for
/// bit those of the plain rows.
pub fn interleave(file: &mut GgufFile) -> HashSet<String> {
    use quant::GgmlType;
    let picks: Vec<(String, GgmlType, usize, usize)> = file
        .tensors()
        .iter()
        .filter(|t| t.dims.len() == 2 && t.name != "token_embd.weight")
        .map(|t| (t.name.clone(), t.ty, t.dims[1] as usize, t.dims[0] as usize))
        .filter(|&(_, ty, rows, _)| match ty {
            GgmlType::Q4_0 => quant::order::interleaves_q4_0(rows),
            GgmlType::Q4_K => quant::order::interleaves_q4_k(rows),
            _ => false,
        })
        .collect();
    let mut done = HashSet::new();
    for (name, ty, rows, cols) in picks {
        if let Some(data) = file.tensor_data_mut(&name) {
            let ok = match ty {
                GgmlType::Q4_0 => quant::q4_0x8::interleave(data, rows, cols),
                _ => quant::q4_kx16::interleave(data, rows, cols),
            };
            if ok {
                done.insert(name);
            }
        }
    }
    done
}

pub(crate) struct Loader<'a> {
    pub file: &'a GgufFile,
    /// Tensors [`interleave`] rewrote.
    pub interleaved: &'a HashSet<String>,
}

impl<'a> Loader<'a> {
    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }

    /// The tensor `name`, checked to exist, to have a supported type and to have ggml dims
    /// `dims` (trailing 1s ignored on either side).
    pub fn tensor(&self, name: &str, dims: &[usize]) -> Result<&'a TensorInfo, ModelError> {
        self.get(name, dims)
    }

    fn get(&self, name: &str, dims: &[usize]) -> Result<&'a TensorInfo, ModelError> {
        let t = self
            .file
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        if !t.ty.is_supported() {
            return Err(ModelError::UnsupportedType {
                name: name.to_string(),
                ty: t.ty,
            });
        }
        let expected: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
        // ggml pads shapes with trailing 1s; a [n] vector may be stored as [n, 1], and a
        // one-row matrix [n, 1] as [n].
        let trim = |d: &[u64]| {
            let mut d = d.to_vec();
            while d.len() > 1 && d.last() == Some(&1) {
                d.pop();
            }
            d
        };
        if trim(&t.dims) != trim(&expected) {
            return Err(ModelError::Shape {
                name: name.to_string(),
                expected,
                found: t.dims.clone(),
            });
        }
        Ok(t)
    }

    /// Matrix with `rows` output rows of `cols` inputs.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, ModelError> {
        let info = self.get(name, &[cols, rows])?.clone();
        if quant::GgmlType::vec_dot_type(info.ty)
            .row_bytes(cols as u64)
            .is_none()
        {
            return Err(ModelError::Shape {
                name: name.to_string(),
                expected: vec![cols as u64, rows as u64],
                found: info.dims.clone(),
            });
        }
        let interleaved = self.interleaved.contains(name);
        Ok(Matrix {
            info,
            rows,
            cols,
            interleaved,
        })
    }

    pub fn opt_matrix(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Option<Matrix>, ModelError> {
        if self.has(name) {
            self.matrix(name, rows, cols).map(Some)
        } else {
            Ok(None)
        }
    }

    /// 1-D tensor of `n` values decoded to f32.
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let t = self.get(name, &[n])?;
        let mut out = vec![0f32; n];
        quant::dequantize_row(t.ty, self.file.tensor_data(t), &mut out)
            .map_err(compute::ComputeError::from)?;
        // Lazy loading keeps only the decoded copy; the read may have mapped a large folio.
        self.file.release_touched(t, 0, t.size);
        Ok(out)
    }

    pub fn opt_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, ModelError> {
        if self.has(name) {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// `n` matrices of `rows` x `cols` stored one after another in one tensor (ggml dims
/// `[cols, rows, n]`, e.g. DeepSeek's per-head `attn_k_b` / `attn_v_b`), each viewed on its
/// own so the usual matmul kernels run on it.
#[derive(Clone, Debug)]
pub(crate) struct Stacked {
    pub info: TensorInfo,
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Stacked {
    /// Matrix `i` (`i < n`).
    pub fn view<'a>(&self, file: &'a GgufFile, i: usize) -> Result<WeightView<'a>, ModelError> {
        let data = file.tensor_data(&self.info);
        let per = data.len() / self.n;
        let view = WeightView::new(self.info.ty, self.rows, self.cols, &data[i * per..][..per])?;
        Ok(view.paged_by(file.residency()))
    }
}

impl Loader<'_> {
    /// `n` stacked matrices of `rows` x `cols` (ggml dims `[cols, rows, n]`).
    pub fn stacked(
        &self,
        name: &str,
        n: usize,
        rows: usize,
        cols: usize,
    ) -> Result<Stacked, ModelError> {
        let info = self.get(name, &[cols, rows, n])?.clone();
        let shape_err = || ModelError::Shape {
            name: name.to_string(),
            expected: vec![cols as u64, rows as u64, n as u64],
            found: info.dims.clone(),
        };
        // Each matrix must start on a row (and so a block) boundary, and activations must
        // quantize to the weight type's partner.
        if info.ty.row_bytes(cols as u64).is_none()
            || quant::GgmlType::vec_dot_type(info.ty)
                .row_bytes(cols as u64)
                .is_none()
        {
            return Err(shape_err());
        }
        Ok(Stacked {
            info,
            n,
            rows,
            cols,
        })
    }
}
