use quant::GgmlType;

/// Why a model could not be loaded or run. Every variant names the key or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unsupported architecture `{arch}` (supported: {supported})")]
    UnsupportedArch { arch: String, supported: String },
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("metadata key `{key}`: {msg}")]
    Hparam { key: String, msg: String },
    #[error("tensor {0} is missing")]
    MissingTensor(String),
    #[error("tensor {name} has type {ty}, not supported yet")]
    UnsupportedType { name: String, ty: GgmlType },
    #[error("tensor {name}: expected shape {expected:?}, found {found:?}")]
    Shape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("invalid input: {0}")]
    Input(String),
    #[error(transparent)]
    Compute(#[from] compute::ComputeError),
}

pub(crate) fn hparam(key: impl Into<String>, msg: impl Into<String>) -> ModelError {
    ModelError::Hparam {
        key: key.into(),
        msg: msg.into(),
    }
}
