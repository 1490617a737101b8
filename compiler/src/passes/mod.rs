//! Passes over the block IR, one per file, run in the order `driver.rs` gives.

pub mod infer_layouts;
pub mod select_instructions;
pub mod plan_shared_memory;
pub mod divisibility;
