//! tokenizer crate (see ARCHITECTURE.md).
