//! models crate (see ARCHITECTURE.md).
