//! gguf crate (see ARCHITECTURE.md).
