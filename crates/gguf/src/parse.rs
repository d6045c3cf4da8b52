//! Parsing one GGUF file's bytes: header, metadata, tensor directory and data-section checks.
//!
//! Every count and length read from the file is checked against the bytes that remain before
//! anything is allocated from it, so a hostile header cannot make the reader allocate more than
//! a small multiple of the file size.

use quant::GgmlType;

use crate::error::Malformed;
use crate::value::{Metadata, Value, ValueType};
use crate::TensorInfo;

pub(crate) const MAGIC: &[u8; 4] = b"GGUF";
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;
pub(crate) const ALIGNMENT_KEY: &str = "general.alignment";
pub(crate) const MAX_DIMS: u32 = 4;
/// ggml itself never nests arrays; a small limit keeps hostile files from exhausting the stack.
pub(crate) const MAX_NESTING: usize = 8;

/// A parse failure: where the reader was, and what it found.
pub(crate) type ParseError = (u64, Malformed);
type PResult<T> = Result<T, ParseError>;

/// Everything in one file except the tensor bytes themselves.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section (tensor offsets are relative to it).
    pub data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn err(&self, kind: Malformed) -> ParseError {
        (self.pos as u64, kind)
    }

    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> PResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(Malformed::Truncated {
                what: what(),
                needed: n,
                available: self.remaining(),
            }));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> PResult<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> PResult<u32> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> PResult<u64> {
        self.array::<8>(what).map(u64::from_le_bytes)
    }

    /// A count of items each taking at least `min_item` bytes; rejected when the rest of the
    /// file cannot hold that many, which is what makes allocating `count` items safe.
    fn count(&mut self, what: &str, min_item: u64) -> PResult<u64> {
        let start = self.pos as u64;
        let count = self.u64(|| format!("{what} count"))?;
        let max = self.remaining() / min_item.max(1);
        if count > max {
            return Err((
                start,
                Malformed::CountTooLarge {
                    what: what.to_string(),
                    count,
                    max,
                },
            ));
        }
        Ok(count)
    }

    fn string(&mut self, what: impl Fn() -> String) -> PResult<String> {
        let len = self.u64(|| format!("length of {}", what()))?;
        let start = self.pos as u64;
        let bytes = self.take(len, &what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| (start, Malformed::InvalidUtf8 { what: what() }))
    }
}

pub(crate) fn parse(buf: &[u8]) -> PResult<Parsed> {
    let mut c = Cursor { buf, pos: 0 };
    let magic = c.array::<4>(|| "magic".to_string())?;
    if &magic != MAGIC {
        return Err((0, Malformed::BadMagic { found: magic }));
    }
    let version = c.u32(|| "version".to_string())?;
    if version != 2 && version != 3 {
        // A big-endian writer stores 2 or 3 in the high bytes.
        let swapped = version.swap_bytes();
        let kind = if swapped == 2 || swapped == 3 {
            Malformed::BigEndian { version: swapped }
        } else {
            Malformed::UnsupportedVersion { version }
        };
        return Err((4, kind));
    }
    // Minimum on-disk size of a tensor entry: empty name (8) + n_dims (4) + type (4) + offset (8).
    let n_tensors = c.count("tensor", 24)?;
    // Minimum of a key/value entry: empty key (8) + type (4) + a one-byte value.
    let n_kv = c.count("metadata entry", 13)?;

    let mut metadata = Metadata::new();
    for i in 0..n_kv {
        let entry_start = c.pos as u64;
        let key = c.string(|| format!("key of metadata entry {i}"))?;
        let type_id = c.u32(|| format!("value type of metadata key `{key}`"))?;
        let value = read_value(&mut c, &key, type_id, 0)?;
        if metadata.get(&key).is_some() {
            return Err((entry_start, Malformed::DuplicateKey { key }));
        }
        metadata.insert(key, value);
    }

    let alignment = alignment_of(&metadata)
        .map_err(|detail| (c.pos as u64, Malformed::BadAlignment { detail }))?;

    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
    let mut seen = std::collections::HashSet::with_capacity(n_tensors as usize);
    let mut entry_starts = Vec::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let entry_start = c.pos as u64;
        let t = read_tensor_info(&mut c, i)?;
        if !seen.insert(t.name.clone()) {
            return Err((entry_start, Malformed::DuplicateTensor { tensor: t.name }));
        }
        tensors.push(t);
        entry_starts.push(entry_start);
    }

    let header_end = c.pos as u64;
    // The padding after the directory is part of the format; a file with no tensors may end
    // without it, so the data section is clamped to the file.
    let data_offset = header_end.div_ceil(alignment) * alignment;
    let data_len = (buf.len() as u64).saturating_sub(data_offset);
    check_tensor_data(&tensors, &entry_starts, alignment, data_len)?;

    Ok(Parsed {
        version,
        metadata,
        tensors,
        alignment,
        data_offset: data_offset.min(buf.len() as u64),
    })
}

fn alignment_of(md: &Metadata) -> Result<u64, String> {
    let Some(v) = md.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let a = v
        .as_integer()
        .ok_or_else(|| format!("expected an integer, found {}", v.type_description()))?;
    if a <= 0 || a > u32::MAX as i128 || (a as u64 & (a as u64 - 1)) != 0 {
        return Err(format!("{a} is not a power of two"));
    }
    Ok(a as u64)
}

fn read_value(c: &mut Cursor<'_>, key: &str, type_id: u32, depth: usize) -> PResult<Value> {
    let at = c.pos as u64;
    let ty = ValueType::from_id(type_id).ok_or_else(|| {
        (
            at,
            Malformed::UnknownValueType {
                key: key.to_string(),
                type_id,
            },
        )
    })?;
    let what = || format!("value of metadata key `{key}`");
    Ok(match ty {
        ValueType::U8 => Value::U8(c.array::<1>(what)?[0]),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array::<1>(what)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array::<2>(what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array::<2>(what)?)),
        ValueType::U32 => Value::U32(c.u32(what)?),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array::<4>(what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array::<4>(what)?)),
        ValueType::U64 => Value::U64(c.u64(what)?),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array::<8>(what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array::<8>(what)?)),
        ValueType::Bool => match c.array::<1>(what)?[0] {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            byte => {
                return Err((
                    at,
                    Malformed::InvalidBool {
                        key: key.to_string(),
                        byte,
                    },
                ))
            }
        },
        ValueType::String => Value::String(c.string(what)?),
        ValueType::Array => {
            if depth >= MAX_NESTING {
                return Err((
                    at,
                    Malformed::NestingTooDeep {
                        key: key.to_string(),
                    },
                ));
            }
            let elem_at = c.pos as u64;
            let elem_id = c.u32(|| format!("element type of array `{key}`"))?;
            let elem = ValueType::from_id(elem_id).ok_or_else(|| {
                (
                    elem_at,
                    Malformed::UnknownValueType {
                        key: key.to_string(),
                        type_id: elem_id,
                    },
                )
            })?;
            let n = c.count(&format!("array `{key}` element"), elem.min_encoded_size())?;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(read_value(c, key, elem_id, depth + 1)?);
            }
            Value::Array(items)
        }
    })
}

fn read_tensor_info(c: &mut Cursor<'_>, i: u64) -> PResult<TensorInfo> {
    let name = c.string(|| format!("name of tensor {i}"))?;
    let dims_at = c.pos as u64;
    let n_dims = c.u32(|| format!("n_dims of tensor `{name}`"))?;
    if n_dims > MAX_DIMS {
        return Err((
            dims_at,
            Malformed::TooManyDims {
                tensor: name,
                n_dims,
            },
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        dims.push(c.u64(|| format!("dimension {d} of tensor `{name}`"))?);
    }
    let type_at = c.pos as u64;
    let type_id = c.u32(|| format!("type of tensor `{name}`"))?;
    let ty = GgmlType::from_id(type_id).ok_or_else(|| {
        (
            type_at,
            Malformed::UnknownTensorType {
                tensor: name.clone(),
                type_id,
            },
        )
    })?;
    let offset = c.u64(|| format!("data offset of tensor `{name}`"))?;

    // ggml stores dims as int64, so anything past i64::MAX is as invalid as an overflow.
    if !dims_fit(&dims) {
        return Err((dims_at, Malformed::DimsOverflow { tensor: name, dims }));
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    let rows: u64 = dims.iter().skip(1).product();
    let Some(row_bytes) = ty.row_bytes(ne0) else {
        return Err((
            type_at,
            Malformed::NotBlockMultiple {
                tensor: name,
                ty,
                ne0,
            },
        ));
    };
    let Some(size) = row_bytes.checked_mul(rows) else {
        return Err((dims_at, Malformed::DimsOverflow { tensor: name, dims }));
    };
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
        size,
        split: 0,
    })
}

/// Whether the product of the non-zero dimensions fits in an i64 (ggml's element count type).
/// Zero dimensions are skipped: such a tensor is empty, but the product of its other dimensions
/// (its row count, say) must still be computable.
pub(crate) fn dims_fit(dims: &[u64]) -> bool {
    dims.iter()
        .filter(|&&d| d != 0)
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .is_some_and(|n| n <= i64::MAX as u64)
}

fn check_tensor_data(
    tensors: &[TensorInfo],
    entry_starts: &[u64],
    alignment: u64,
    data_len: u64,
) -> PResult<()> {
    for (t, &at) in tensors.iter().zip(entry_starts) {
        if t.offset % alignment != 0 {
            return Err((
                at,
                Malformed::MisalignedTensor {
                    tensor: t.name.clone(),
                    offset: t.offset,
                    alignment,
                },
            ));
        }
        if t.offset
            .checked_add(t.size)
            .is_none_or(|end| end > data_len)
        {
            return Err((
                at,
                Malformed::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    offset: t.offset,
                    size: t.size,
                    data_len,
                },
            ));
        }
    }
    let mut order: Vec<usize> = (0..tensors.len())
        .filter(|&i| tensors[i].size > 0)
        .collect();
    order.sort_by_key(|&i| tensors[i].offset);
    for w in order.windows(2) {
        let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
        if a.offset + a.size > b.offset {
            let (first, second) = if w[0] < w[1] { (a, b) } else { (b, a) };
            return Err((
                entry_starts[w[0].max(w[1])],
                Malformed::OverlappingTensors {
                    first: first.name.clone(),
                    second: second.name.clone(),
                },
            ));
        }
    }
    Ok(())
}
