//! The PTX back end: thread-level IR ([`crate::lir`]) → LLVM IR → PTX, and `ptxas` checks.
//!
//! Expects a [`lir::Program`](crate::lir::Program) that follows the typing rules written in
//! `lir.rs`. Guarantees that a program breaking them gets a [`BackendError`], never a panic,
//! and that a program following them yields PTX with one `.entry` named after the program
//! (see [`llvm`] for the exact calling convention and numeric choices).
//!
//! * [`lir_to_llvm_ir`] / [`lir_to_ptx`]: code generation through LLVM 22 (inkwell, static).
//! * [`ptxas`]: finds NVIDIA's `ptxas` and assembles PTX with it, to validate output without a
//!   GPU.

mod llvm;
pub mod ptxas;

pub use llvm::{lir_to_llvm_ir, lir_to_ptx};

use std::fmt;

/// A GPU architecture the back end can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Ampere (A100): the baseline.
    Sm80,
    /// Hopper (H100) with its architecture-specific features.
    Sm90a,
}

impl Arch {
    /// Every supported architecture, oldest first.
    pub const ALL: [Arch; 2] = [Arch::Sm80, Arch::Sm90a];

    /// Parses the name used by `ptxas --gpu-name` and by LLVM (`"sm_80"`, `"sm_90a"`).
    pub fn parse(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The name used by `ptxas --gpu-name`, by LLVM as the CPU, and in PTX `.target`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Sm80 => "sm_80",
            Arch::Sm90a => "sm_90a",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a program could not be turned into LLVM IR or PTX.
#[derive(thiserror::Error, Debug)]
pub enum BackendError {
    /// The LIR breaks a rule of `lir.rs` (a lowering bug, not a user error).
    #[error("invalid thread-level IR in kernel `{kernel}`: {message}")]
    InvalidProgram { kernel: String, message: String },
    /// LLVM's verifier rejected the generated module (a back-end bug).
    #[error("LLVM verification failed for kernel `{kernel}`:\n{message}")]
    Verification { kernel: String, message: String },
    /// The NVPTX target or its target machine could not be created.
    #[error("cannot create the LLVM NVPTX target for {arch}: {message}")]
    Target { arch: Arch, message: String },
    /// An LLVM intrinsic the back end relies on does not exist in this LLVM.
    #[error("LLVM intrinsic `{0}` is not available in this LLVM version")]
    MissingIntrinsic(String),
    /// The LLVM IR builder refused an instruction.
    #[error("LLVM IR builder error: {0}")]
    Builder(String),
    /// The LLVM optimization pipeline failed.
    #[error("LLVM optimization failed for kernel `{kernel}`: {message}")]
    Optimization { kernel: String, message: String },
    /// LLVM could not emit PTX for the module.
    #[error("PTX emission failed for kernel `{kernel}` on {arch}: {message}")]
    Emission { kernel: String, arch: Arch, message: String },
}

impl From<inkwell::builder::BuilderError> for BackendError {
    fn from(e: inkwell::builder::BuilderError) -> Self {
        BackendError::Builder(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_round_trip() {
        for arch in Arch::ALL {
            assert_eq!(Arch::parse(arch.name()), Some(arch));
            assert_eq!(arch.to_string(), arch.name());
        }
        assert_eq!(Arch::parse("sm_90"), None);
        assert_eq!(Arch::parse("SM_80"), None);
    }
}
