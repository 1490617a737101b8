//! The PTX code generator: thread-level IR ([`tl_compiler::lir`]) → LLVM IR → PTX, through
//! LLVM 22's NVPTX back end (inkwell, linked statically).
//!
//! This is the only crate of the workspace that links LLVM. Everything else (the front end,
//! the passes, the lowering, the VM, the simulator, the runtime) depends only on the interface
//! in [`tl_compiler::backend`]: a program that needs PTX hands [`code_generator`] to
//! `tl_runtime::Module::with_code_generator`, or calls [`lir_to_ptx`] directly.
//!
//! Expects a [`Program`](tl_compiler::lir::Program) that follows the typing rules written in
//! `lir.rs`. Guarantees that a program breaking them gets a [`BackendError`], never a panic,
//! and that a program following them yields PTX with one `.entry` named after the program
//! (see `llvm.rs` for the exact calling convention and numeric choices).

mod llvm;

pub use llvm::{lir_to_llvm_ir, lir_to_ptx};
pub use tl_compiler::backend::{Arch, BackendError, CodeGenerator};

use std::sync::Arc;
use tl_compiler::lir::Program;

/// The LLVM NVPTX code generator as a [`CodeGenerator`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Llvm;

impl CodeGenerator for Llvm {
    fn ptx(&self, program: &Program, arch: Arch) -> Result<String, BackendError> {
        verified(program)?;
        lir_to_ptx(program, arch)
    }

    fn intermediate(&self, program: &Program, arch: Arch) -> Result<String, BackendError> {
        verified(program)?;
        lir_to_llvm_ir(program, arch)
    }

    /// The crate's version, a digest of the sources it was built from (this crate's and the
    /// compiler's, `build.rs`) and the LLVM it links.
    fn identity(&self) -> Option<String> {
        let (major, minor, patch) = inkwell::support::get_llvm_version();
        Some(format!("tl-ptx {} sources {} llvm {major}.{minor}.{patch}", env!("CARGO_PKG_VERSION"), env!("TL_PTX_SOURCE_DIGEST")))
    }
}

/// In debug builds (every test), the LIR verifier before code generation: whatever hands this
/// generator a program, a broken rule is reported as such rather than met halfway through.
fn verified(program: &Program) -> Result<(), BackendError> {
    if !cfg!(debug_assertions) {
        return Ok(());
    }
    tl_compiler::lir::verify::verify(program).map_err(|errors| BackendError::InvalidProgram {
        kernel: program.name.clone(),
        message: errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
    })
}

/// [`Llvm`] as a shared trait object, the form `tl_runtime::Module::with_code_generator`
/// takes.
pub fn code_generator() -> Arc<dyn CodeGenerator> {
    Arc::new(Llvm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tl_compiler::lir::{Expr, Stmt, Ty, Var};

    #[test]
    fn the_code_generator_verifies_its_input_in_debug_builds() {
        // A register read that nothing assigned: the verifier's error, not a code generator's.
        let program = Program {
            name: "k".into(),
            params: vec![],
            block_threads: 32,
            shared_bytes: 0,
            vars: vec![Ty::I32, Ty::I32],
            body: vec![Stmt::Assign(Var(0), Expr::Var(Var(1)))],
        };
        let e = Llvm.ptx(&program, Arch::Sm80).expect_err("invalid").to_string();
        assert!(e.contains("register r1 is read before every path has assigned it"), "{e}");
    }
}
