//! engine crate (see ARCHITECTURE.md).
