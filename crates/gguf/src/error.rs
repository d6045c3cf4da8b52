//! Error types. Every parse error carries the file it came from and the byte offset where the
//! reader stopped, so a user can tell which of several split files is broken and where.

use std::fmt;
use std::path::PathBuf;

use quant::GgmlType;

pub type Result<T, E = GgufError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The message already includes the OS error, so it is not repeated as a `source`.
    #[error("{}: {io}", path.display())]
    Io { path: PathBuf, io: std::io::Error },

    /// The bytes of a file do not form a valid GGUF file.
    #[error("{}: at byte {offset}: {kind}", path.display())]
    Malformed {
        path: PathBuf,
        offset: u64,
        kind: Malformed,
    },

    /// The parts of a split model do not fit together.
    #[error("{}: {kind}", path.display())]
    Split { path: PathBuf, kind: SplitError },

    #[error("metadata key `{key}` is missing")]
    MissingKey { key: String },

    #[error("metadata key `{key}`: expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },

    #[error("metadata key `{key}`: value {value} does not fit in {expected}")]
    OutOfRange {
        key: String,
        value: String,
        expected: &'static str,
    },

    /// Invalid input to [`crate::GgufWriter`].
    #[error("gguf writer: {0}")]
    Writer(String),
}

impl GgufError {
    /// The malformation, when this error is about the bytes of a file.
    pub fn malformed(&self) -> Option<&Malformed> {
        match self {
            GgufError::Malformed { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// The split problem, when this error is about how split files fit together.
    pub fn split_error(&self) -> Option<&SplitError> {
        match self {
            GgufError::Split { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// What is wrong with a GGUF file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// The file ends before `what` (which needs `needed` bytes, `available` remain).
    Truncated {
        what: String,
        needed: u64,
        available: u64,
    },
    BadMagic {
        found: [u8; 4],
    },
    BigEndian {
        version: u32,
    },
    UnsupportedVersion {
        version: u32,
    },
    /// A count field claims more items than the rest of the file could hold.
    CountTooLarge {
        what: String,
        count: u64,
        max: u64,
    },
    InvalidUtf8 {
        what: String,
    },
    UnknownValueType {
        key: String,
        type_id: u32,
    },
    InvalidBool {
        key: String,
        byte: u8,
    },
    NestingTooDeep {
        key: String,
    },
    DuplicateKey {
        key: String,
    },
    BadAlignment {
        detail: String,
    },
    TooManyDims {
        tensor: String,
        n_dims: u32,
    },
    DimsOverflow {
        tensor: String,
        dims: Vec<u64>,
    },
    UnknownTensorType {
        tensor: String,
        type_id: u32,
    },
    NotBlockMultiple {
        tensor: String,
        ty: GgmlType,
        ne0: u64,
    },
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    TensorOutOfBounds {
        tensor: String,
        offset: u64,
        size: u64,
        data_len: u64,
    },
    OverlappingTensors {
        first: String,
        second: String,
    },
    DuplicateTensor {
        tensor: String,
    },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Malformed::*;
        match self {
            Truncated { what, needed, available } => write!(
                f,
                "file ends inside {what}: needs {needed} bytes, only {available} left"
            ),
            BadMagic { found } => write!(
                f,
                "not a GGUF file (magic {:?}, expected \"GGUF\")",
                String::from_utf8_lossy(found)
            ),
            BigEndian { version } => write!(
                f,
                "big-endian GGUF (version {version}) is not supported; convert it to little-endian"
            ),
            UnsupportedVersion { version: 1 } => write!(
                f,
                "GGUF version 1 is not supported (only 2 and 3); re-convert the model with a recent llama.cpp"
            ),
            UnsupportedVersion { version } => {
                write!(f, "unknown GGUF version {version} (only 2 and 3 are supported)")
            }
            CountTooLarge { what, count, max } => write!(
                f,
                "{what} count {count} is impossible: the rest of the file holds at most {max} (truncated or corrupt file)"
            ),
            InvalidUtf8 { what } => write!(f, "{what} is not valid UTF-8"),
            UnknownValueType { key, type_id } => {
                write!(f, "metadata key `{key}` has unknown value type id {type_id}")
            }
            InvalidBool { key, byte } => {
                write!(f, "metadata key `{key}`: bool byte is {byte}, expected 0 or 1")
            }
            NestingTooDeep { key } => {
                write!(f, "metadata key `{key}`: arrays nested more than {} deep", crate::parse::MAX_NESTING)
            }
            DuplicateKey { key } => write!(f, "metadata key `{key}` appears twice"),
            BadAlignment { detail } => write!(f, "bad general.alignment: {detail}"),
            TooManyDims { tensor, n_dims } => {
                write!(f, "tensor `{tensor}` has {n_dims} dimensions (at most 4 allowed)")
            }
            DimsOverflow { tensor, dims } => {
                write!(f, "tensor `{tensor}`: dimensions {dims:?} overflow the element count")
            }
            UnknownTensorType { tensor, type_id } => {
                write!(f, "tensor `{tensor}` has unknown ggml type id {type_id}")
            }
            NotBlockMultiple { tensor, ty, ne0 } => write!(
                f,
                "tensor `{tensor}`: row length {ne0} is not a multiple of the {ty} block size {}",
                ty.block_size()
            ),
            MisalignedTensor { tensor, offset, alignment } => write!(
                f,
                "tensor `{tensor}`: data offset {offset} is not a multiple of the alignment {alignment}"
            ),
            TensorOutOfBounds { tensor, offset, size, data_len } => write!(
                f,
                "tensor `{tensor}`: data [{offset}, {offset}+{size}) runs past the end of the data section ({data_len} bytes)"
            ),
            OverlappingTensors { first, second } => {
                write!(f, "tensors `{first}` and `{second}` overlap in the data section")
            }
            DuplicateTensor { tensor } => write!(f, "tensor name `{tensor}` appears twice"),
        }
    }
}

/// What is wrong with a set of split files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// `split.count` > 1 but the file name does not follow `<prefix>-NNNNN-of-MMMMM.gguf`.
    UnrecognisedName {
        count: u32,
    },
    BadMetadata {
        detail: String,
    },
    NotFirst {
        no: u32,
    },
    MissingPart {
        part: PathBuf,
    },
    CountMismatch {
        expected: u32,
        found: u32,
    },
    NumberMismatch {
        expected: u32,
        found: u32,
    },
    TensorCountMismatch {
        expected: u64,
        found: u64,
    },
    DuplicateTensor {
        tensor: String,
        first_split: usize,
        second_split: usize,
    },
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SplitError::*;
        match self {
            UnrecognisedName { count } => write!(
                f,
                "split.count is {count} but the file name is not of the form <prefix>-00001-of-{count:05}.gguf"
            ),
            BadMetadata { detail } => write!(f, "{detail}"),
            NotFirst { no } => write!(
                f,
                "this is split number {} of a split model; open the first split (-00001-of-) instead",
                no + 1
            ),
            MissingPart { part } => write!(f, "split part {} is missing", part.display()),
            CountMismatch { expected, found } => {
                write!(f, "split.count is {found}, the first split says {expected}")
            }
            NumberMismatch { expected, found } => {
                write!(f, "split.no is {found}, expected {expected} from the file name")
            }
            TensorCountMismatch { expected, found } => write!(
                f,
                "split.tensors.count says {expected} tensors, the splits hold {found}"
            ),
            DuplicateTensor { tensor, first_split, second_split } => write!(
                f,
                "tensor `{tensor}` is in split {} and again in split {}",
                first_split + 1,
                second_split + 1
            ),
        }
    }
}
