//! GGUF container: reading (memory-mapped, v2/v3, split models) and writing.
//!
//! ```no_run
//! let f = gguf::GgufFile::open("model.gguf")?;
//! let arch = f.metadata().get_str("general.architecture")?;
//! let t = f.tensor("token_embd.weight").expect("present");
//! let bytes: &[u8] = f.tensor_data(t); // borrowed from the map, no copy
//! # Ok::<(), gguf::GgufError>(())
//! ```

mod error;
mod ftype;
#[doc(hidden)]
pub mod fuzzing;
mod parse;
mod residency;
mod split;
mod value;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

pub use error::{GgufError, Malformed, Result, SplitError};
pub use ftype::{file_type_from_name, file_type_name};
pub use quant::GgmlType;
pub use split::split_path;
pub use value::{Metadata, Value, ValueType};
pub use writer::{GgufWriter, TensorDataWriter};

/// Name shown in errors for files parsed from memory.
const MEMORY_NAME: &str = "<memory>";

/// One entry of the tensor directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the row length (ne0), the contiguous dimension.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the tensor's bytes from the start of its file's data section.
    pub offset: u64,
    /// Size of the tensor's bytes (without alignment padding).
    pub size: u64,
    /// Index of the split file holding the data (0 for single-file models).
    pub split: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        // The reader checked that this product does not overflow.
        self.dims.iter().product()
    }

    /// Number of rows (product of every dimension but the first).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }

    /// Length of one row in elements (ne0).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
}

/// Bytes of one file kept alive for the lifetime of the [`GgufFile`].
enum Backing {
    Mmap(memmap2::Mmap),
    /// In-memory files keep their bytes at a 64-byte aligned start inside the vector, so tensor
    /// data is as aligned in memory as it would be in a page-aligned map.
    Owned {
        buf: Vec<u8>,
        start: usize,
        len: usize,
    },
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned { buf, start, len } => &buf[*start..*start + *len],
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Backing::Mmap(_) => &mut [],
            Backing::Owned { buf, start, len } => &mut buf[*start..*start + *len],
        }
    }

    /// `len` zero bytes at a 64-byte aligned start. The zeroed allocation maps fresh pages,
    /// so nothing is resident until it is written.
    fn zeroed(len: usize) -> Backing {
        const ALIGN: usize = 64;
        let buf = vec![0u8; len + ALIGN];
        ask_for_huge_pages(&buf);
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        Backing::Owned { buf, start, len }
    }

    fn owned(bytes: &[u8]) -> Backing {
        const ALIGN: usize = 64;
        let mut buf: Vec<u8> = Vec::with_capacity(bytes.len() + ALIGN);
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        buf.resize(start, 0);
        // Within capacity, so the buffer is not reallocated and the alignment holds.
        buf.extend_from_slice(bytes);
        Backing::Owned {
            buf,
            start,
            len: bytes.len(),
        }
    }
}

/// Asks the kernel to back `buf`'s whole pages with transparent huge pages (2 MiB on
/// x86-64) when they are first written. Weights are streamed end to end on every token; with
/// 4 KiB pages each page costs a TLB miss and the hardware prefetchers stop at every page
/// boundary. Only a hint: where THP is off (`never`), or on other systems, nothing changes.
/// Call it before the buffer is first written (a fresh zeroed allocation is untouched).
pub fn ask_for_huge_pages<T>(buf: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = std::mem::size_of_val(buf);
        if bytes < HUGE {
            return;
        }
        let page = residency::page_size();
        let begin = (buf.as_ptr() as usize).next_multiple_of(page);
        let end = (buf.as_ptr() as usize + bytes) / page * page;
        if end > begin {
            // SAFETY: the range is whole pages inside `buf`'s own allocation, and
            // MADV_HUGEPAGE only changes how those pages are backed, never their contents
            // (fresh pages read as zero either way); a failure leaves the hint unapplied.
            unsafe {
                libc::madvise(begin as *mut libc::c_void, end - begin, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

struct Part {
    path: PathBuf,
    backing: Backing,
    data_offset: u64,
    /// Where the data section starts in `backing`: `data_offset` while the whole file is
    /// held, 0 once only the data section is (see [`GgufFile::load_into_memory`]).
    data_start: u64,
    file_len: u64,
}

impl Part {
    fn data(&self) -> &[u8] {
        &self.backing.bytes()[self.data_start as usize..]
    }
}

/// An opened GGUF model: metadata and tensor directory of all its split files, with tensor bytes
/// borrowed from memory maps.
pub struct GgufFile {
    path: PathBuf,
    version: u32,
    alignment: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    parts: Vec<Part>,
    /// Lazy paging: [`GgufFile::release`] gives mapped pages back to the kernel.
    release_pages: bool,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_entries", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("splits", &self.parts.len())
            .finish()
    }
}

fn malformed(path: &Path, (offset, kind): parse::ParseError) -> GgufError {
    GgufError::Malformed {
        path: path.to_path_buf(),
        offset,
        kind,
    }
}

/// Maps and parses one file.
fn open_part(path: &Path) -> Result<(Part, parse::Parsed)> {
    let io = |io| GgufError::Io {
        path: path.to_path_buf(),
        io,
    };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let backing = if len == 0 {
        // Mapping an empty file fails on some systems; an empty buffer gives the usual error.
        Backing::owned(&[])
    } else {
        // SAFETY: the map is read-only and private to this process. Like every mmap-based
        // reader we rely on the file not being truncated or rewritten while it is open; model
        // files are not modified in place.
        Backing::Mmap(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
    };
    let parsed = parse::parse(backing.bytes()).map_err(|e| malformed(path, e))?;
    let part = Part {
        path: path.to_path_buf(),
        data_start: parsed.data_offset,
        file_len: backing.bytes().len() as u64,
        backing,
        data_offset: parsed.data_offset,
    };
    Ok((part, parsed))
}

impl GgufFile {
    /// Opens a GGUF file. When its metadata says it is the first of several splits
    /// (`split.count` > 1), the other parts are found beside it by name
    /// (`<prefix>-00002-of-00003.gguf`, ...) and presented as one model.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let (first, parsed) = open_part(path)?;
        let split = split::split_info(path, &parsed.metadata)?;
        let mut file = GgufFile::from_parts(first, parsed);
        if let Some((count, prefix)) = split {
            split::attach_splits(&mut file, count, &prefix)?;
        }
        Ok(file)
    }

    /// Parses a whole GGUF file held in memory (split parts are not followed).
    pub fn from_bytes(bytes: impl AsRef<[u8]>) -> Result<GgufFile> {
        let backing = Backing::owned(bytes.as_ref());
        let path = PathBuf::from(MEMORY_NAME);
        let parsed = parse::parse(backing.bytes()).map_err(|e| malformed(&path, e))?;
        let part = Part {
            path,
            data_start: parsed.data_offset,
            file_len: backing.bytes().len() as u64,
            backing,
            data_offset: parsed.data_offset,
        };
        Ok(GgufFile::from_parts(part, parsed))
    }

    fn from_parts(part: Part, parsed: parse::Parsed) -> GgufFile {
        let index = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        GgufFile {
            path: part.path.clone(),
            version: parsed.version,
            alignment: parsed.alignment,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            index,
            parts: vec![part],
            release_pages: false,
        }
    }

    /// The path given to [`GgufFile::open`] (the first split).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Metadata of the first split (the others only repeat the `split.*` keys).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Tensors of every split, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes, borrowed from the memory map of its split (or from the heap copy
    /// after [`GgufFile::load_into_memory`]).
    ///
    /// # Panics
    /// If `t` does not come from this file (the reader has checked every tensor of this file
    /// lies inside its data section).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        self.parts
            .get(t.split)
            .and_then(|p| {
                p.data()
                    .get(t.offset as usize..(t.offset + t.size) as usize)
            })
            .expect("TensorInfo does not belong to this GgufFile")
    }

    /// Absolute offset of the tensor's bytes within its split file.
    pub fn tensor_file_offset(&self, t: &TensorInfo) -> u64 {
        self.parts.get(t.split).map_or(0, |p| p.data_offset) + t.offset
    }

    /// Number of files the model is stored in.
    pub fn n_splits(&self) -> usize {
        self.parts.len()
    }

    /// Paths of every split, first to last.
    pub fn split_paths(&self) -> impl Iterator<Item = &Path> {
        self.parts.iter().map(|p| p.path.as_path())
    }

    /// Total bytes of all split files.
    pub fn file_size(&self) -> u64 {
        self.parts.iter().map(|p| p.file_len).sum()
    }

    /// Total bytes of the tensor-data sections of all split files (what
    /// [`GgufFile::load_into_memory`] copies).
    pub fn data_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.file_len - p.data_offset).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_file_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<GgufFile>();
    }

    #[test]
    fn owned_backing_is_aligned() {
        for n in [0usize, 1, 100, 4096] {
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let b = Backing::owned(&data);
            assert_eq!(b.bytes(), &data[..]);
            if n > 0 {
                assert_eq!(b.bytes().as_ptr() as usize % 64, 0);
            }
        }
    }
}
