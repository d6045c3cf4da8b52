//! compute crate (see ARCHITECTURE.md).
