//! CPU execution of tl programs: `interp` runs the block-level IR with the reference semantics
//! of docs/language.md; `simt` runs the thread-level IR of every thread of a block in lockstep.

pub mod interp;
pub mod progress;
pub mod simt;
pub mod warp;
pub mod tensor;

pub use interp::{Arg, VmError, launch};
pub use tensor::HostTensor;
pub use tl_compiler::number::Number;
