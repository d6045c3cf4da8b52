//! Writing GGUF v3 files.
//!
//! Small files are built in one go with [`GgufWriter::add_tensor`] + [`GgufWriter::write_file`].
//! Large ones (quantizing a model) declare tensors with [`GgufWriter::add_tensor_info`], write
//! the header with [`GgufWriter::begin`], then stream each tensor's bytes in declaration order
//! through [`TensorDataWriter::write_tensor`], so no more than one tensor is held in memory.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use quant::GgmlType;

use crate::error::{GgufError, Result};
use crate::parse::{dims_fit, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use crate::value::{Metadata, Value, ValueType};

const STREAM_NAME: &str = "<output stream>";

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    size: u64,
    data: Option<Cow<'a, [u8]>>,
}

/// Builds a GGUF file: metadata in insertion order, tensors in insertion order.
pub struct GgufWriter<'a> {
    version: u32,
    metadata: Metadata,
    tensors: Vec<PendingTensor<'a>>,
    names: HashSet<String>,
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

fn invalid(msg: String) -> GgufError {
    GgufError::Writer(msg)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> GgufError + '_ {
    move |io| GgufError::Io {
        path: path.to_path_buf(),
        io,
    }
}

impl<'a> GgufWriter<'a> {
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            metadata: Metadata::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Version number to put in the header (2 and 3 share one layout; default 3).
    pub fn set_version(&mut self, version: u32) -> Result<()> {
        if version != 2 && version != 3 {
            return Err(invalid(format!(
                "cannot write GGUF version {version} (only 2 or 3)"
            )));
        }
        self.version = version;
        Ok(())
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Adds a metadata entry. Arrays must hold elements of one type (arrays of arrays may
    /// differ in their inner types).
    pub fn add(&mut self, key: impl Into<String>, value: Value) -> Result<()> {
        let key = key.into();
        check_value(&key, &value)?;
        if key == ALIGNMENT_KEY {
            match value {
                Value::U32(a) if a.is_power_of_two() => {}
                _ => {
                    return Err(invalid(format!(
                        "{ALIGNMENT_KEY} must be a u32 power of two, got {value:?}"
                    )))
                }
            }
        }
        if self.metadata.contains_key(&key) {
            return Err(invalid(format!("metadata key `{key}` added twice")));
        }
        self.metadata.insert(key, value);
        Ok(())
    }

    /// Adds every entry of `md` (e.g. to copy a model's metadata), in its order.
    pub fn add_all(&mut self, md: &Metadata) -> Result<()> {
        md.iter().try_for_each(|(k, v)| self.add(k, v.clone()))
    }

    /// Sets `general.alignment` (default 32).
    pub fn set_alignment(&mut self, alignment: u32) -> Result<()> {
        self.add(ALIGNMENT_KEY, Value::U32(alignment))
    }

    pub fn alignment(&self) -> u64 {
        match self.metadata.get(ALIGNMENT_KEY) {
            Some(Value::U32(a)) => *a as u64,
            _ => DEFAULT_ALIGNMENT,
        }
    }

    /// Adds a tensor with its bytes (`dims` in ggml order, `dims[0]` = row length).
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<()> {
        let name = name.into();
        let data = data.into();
        let size = tensor_size(&name, dims, ty)?;
        if data.len() as u64 != size {
            return Err(invalid(format!(
                "tensor `{name}`: {} bytes given, {ty} {dims:?} needs {size}",
                data.len()
            )));
        }
        self.push(name, dims, ty, size, Some(data))
    }

    /// Declares a tensor whose bytes will be given later through [`GgufWriter::begin`].
    pub fn add_tensor_info(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
    ) -> Result<()> {
        let name = name.into();
        let size = tensor_size(&name, dims, ty)?;
        self.push(name, dims, ty, size, None)
    }

    fn push(
        &mut self,
        name: String,
        dims: &[u64],
        ty: GgmlType,
        size: u64,
        data: Option<Cow<'a, [u8]>>,
    ) -> Result<()> {
        if !self.names.insert(name.clone()) {
            return Err(invalid(format!("tensor `{name}` added twice")));
        }
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ty,
            size,
            data,
        });
        Ok(())
    }

    /// Writes the whole file; every tensor must have been added with its bytes.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = File::create(path).map_err(io_err(path))?;
        self.write_all(BufWriter::new(file), path)
    }

    /// Writes the whole file to `w`; every tensor must have been added with its bytes.
    pub fn write_to<W: Write>(&self, w: W) -> Result<()> {
        self.write_all(w, Path::new(STREAM_NAME))
    }

    fn write_all<W: Write>(&self, w: W, path: &Path) -> Result<()> {
        if let Some(t) = self.tensors.iter().find(|t| t.data.is_none()) {
            return Err(invalid(format!(
                "tensor `{}` was declared without data; stream it through begin()",
                t.name
            )));
        }
        let mut out = self.begin_named(w, path.to_path_buf())?;
        for t in &self.tensors {
            out.write_tensor(t.data.as_deref().unwrap_or_default())?;
        }
        let mut w = out.finish()?;
        w.flush().map_err(io_err(path))
    }

    /// Writes the header and tensor directory, returning a writer for the tensor bytes.
    pub fn begin<W: Write>(&self, w: W) -> Result<TensorDataWriter<W>> {
        self.begin_named(w, PathBuf::from(STREAM_NAME))
    }

    fn begin_named<W: Write>(&self, mut w: W, path: PathBuf) -> Result<TensorDataWriter<W>> {
        let alignment = self.alignment();
        let mut head = Vec::new();
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&self.version.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in self.metadata.iter() {
            put_str(&mut head, k);
            head.extend_from_slice(&wire_type(v).id().to_le_bytes());
            put_value(&mut head, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut head, &t.name);
            head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&t.ty.id().to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            offset += pad_len(t.size, alignment) + t.size;
        }
        let pad = pad_len(head.len() as u64, alignment);
        head.resize(head.len() + pad as usize, 0);
        w.write_all(&head).map_err(io_err(&path))?;
        Ok(TensorDataWriter {
            w,
            path,
            alignment,
            pending: self
                .tensors
                .iter()
                .map(|t| (t.name.clone(), t.size))
                .collect(),
            next: 0,
        })
    }
}

/// Receives tensor bytes in declaration order after [`GgufWriter::begin`].
pub struct TensorDataWriter<W: Write> {
    w: W,
    path: PathBuf,
    alignment: u64,
    pending: Vec<(String, u64)>,
    next: usize,
}

impl<W: Write> TensorDataWriter<W> {
    /// Name of the tensor whose bytes are expected next.
    pub fn next_tensor(&self) -> Option<&str> {
        self.pending.get(self.next).map(|(n, _)| n.as_str())
    }

    pub fn write_tensor(&mut self, data: &[u8]) -> Result<()> {
        let Some((name, size)) = self.pending.get(self.next) else {
            return Err(invalid(
                "more tensor data written than tensors declared".to_string(),
            ));
        };
        if data.len() as u64 != *size {
            return Err(invalid(format!(
                "tensor `{name}`: {} bytes written, expected {size}",
                data.len()
            )));
        }
        let pad = vec![0u8; pad_len(*size, self.alignment) as usize];
        self.w
            .write_all(data)
            .and_then(|_| self.w.write_all(&pad))
            .map_err(io_err(&self.path))?;
        self.next += 1;
        Ok(())
    }

    /// Checks every declared tensor was written and returns the underlying writer.
    pub fn finish(mut self) -> Result<W> {
        if let Some((name, _)) = self.pending.get(self.next) {
            return Err(invalid(format!(
                "tensor `{name}` was declared but its data never written"
            )));
        }
        self.w.flush().map_err(io_err(&self.path))?;
        Ok(self.w)
    }
}

fn pad_len(n: u64, alignment: u64) -> u64 {
    n.div_ceil(alignment) * alignment - n
}

fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> Result<u64> {
    if dims.len() > MAX_DIMS as usize {
        return Err(invalid(format!(
            "tensor `{name}`: {} dimensions, at most {MAX_DIMS}",
            dims.len()
        )));
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    let row = ty.row_bytes(ne0).ok_or_else(|| {
        invalid(format!(
            "tensor `{name}`: row length {ne0} is not a multiple of the {ty} block size {}",
            ty.block_size()
        ))
    })?;
    dims.iter()
        .skip(1)
        .try_fold(row, |acc, &d| acc.checked_mul(d))
        .filter(|_| dims_fit(dims))
        .ok_or_else(|| invalid(format!("tensor `{name}`: dimensions {dims:?} overflow")))
}

fn check_value(key: &str, v: &Value) -> Result<()> {
    if let Value::Array(items) = v {
        if let Some(first) = items.first() {
            let ty = first.value_type();
            if let Some(bad) = items.iter().find(|i| i.value_type() != ty) {
                return Err(invalid(format!(
                    "metadata key `{key}`: array mixes {} and {}",
                    ty.name(),
                    bad.value_type().name()
                )));
            }
        }
        items.iter().try_for_each(|i| check_value(key, i))?;
    }
    Ok(())
}

fn wire_type(v: &Value) -> ValueType {
    v.value_type()
}

/// Element type written for an array; empty arrays have none, and string is what an empty
/// array usually stands for in model files (merges, token lists).
fn element_type(items: &[Value]) -> ValueType {
    items.first().map_or(ValueType::String, Value::value_type)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            out.extend_from_slice(&element_type(items).id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i);
            }
        }
    }
}
