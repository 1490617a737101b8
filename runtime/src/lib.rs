//! Runtime.
pub mod npy;
pub mod cuda;
