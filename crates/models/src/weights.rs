//! Typed handles on GGUF tensors. Matrices stay in their file encoding and are viewed in
//! place at run time; only small 1-D tensors (norm weights, biases) are decoded to f32.

use compute::WeightView;
use gguf::{GgufFile, TensorInfo};

use crate::error::ModelError;

/// A weight matrix of `rows` x `cols` (ggml dims `[cols, rows]`) inside the mapped file.
#[derive(Clone, Debug)]
pub(crate) struct Matrix {
    pub info: TensorInfo,
    pub rows: usize,
    pub cols: usize,
}

impl Matrix {
    pub fn view<'a>(&self, file: &'a GgufFile) -> Result<WeightView<'a>, ModelError> {
        Ok(WeightView::new(
            self.info.ty,
            self.rows,
            self.cols,
            file.tensor_data(&self.info),
        )?)
    }
}

pub(crate) struct Loader<'a> {
    pub file: &'a GgufFile,
}

impl<'a> Loader<'a> {
    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
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
        // ggml pads shapes with trailing 1s; a [n] vector may be stored as [n, 1].
        let mut found = t.dims.clone();
        while found.len() > expected.len() && found.last() == Some(&1) {
            found.pop();
        }
        if found != expected {
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
        Ok(Matrix { info, rows, cols })
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
