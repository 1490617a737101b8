//! The tl compiler: `.tl` source → AST → block IR → thread-level IR → LLVM IR → PTX.
//!
//! See ARCHITECTURE.md at the repository root for the map of modules and their invariants.

pub mod backend;
pub mod builtins;
pub mod check_reference;
pub mod diagnostics;
pub mod driver;
pub mod dtype;
pub mod syntax;
pub mod ir;
pub mod layout;
pub mod lower;
pub mod lower_numerics;
pub mod lir;
pub mod number;
pub mod passes;
pub mod sema;
pub mod text_cursor;
