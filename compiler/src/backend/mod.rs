//! The interface between the compiler and its code generators, without any of them: target
//! architectures ([`Arch`]), the [`CodeGenerator`] trait a back end implements, its error type
//! ([`BackendError`]), and [`ptxas`], NVIDIA's assembler driver that validates PTX without a GPU.
//!
//! The PTX code generator itself (thread-level IR → LLVM IR → PTX, through inkwell and a
//! static LLVM) is the crate `tl-ptx`, the only crate that links LLVM: the front end, the VM,
//! the simulator and the tests that do not generate PTX never link it.

pub mod ptx_stats;
pub mod ptxas;

use crate::lir::Program;
use std::fmt;

/// Turns a thread-level program into GPU code. A code generator expects a [`Program`] that
/// follows the typing rules written in `lir.rs`, and guarantees that a program breaking them
/// gets a [`BackendError`], never a panic, and that a program following them yields PTX with
/// one `.entry` named after the program.
pub trait CodeGenerator: Send + Sync {
    /// The PTX assembly of `program` for `arch`.
    fn ptx(&self, program: &Program, arch: Arch) -> Result<String, BackendError>;
    /// The intermediate text the PTX is made from (LLVM IR for `tl-ptx`), for `--emit llvm`.
    fn intermediate(&self, program: &Program, arch: Arch) -> Result<String, BackendError>;
    /// What names this generator's output across processes: its name, version and build (a
    /// generator whose code changed must give another identity). A compile cache keeps PTX
    /// under it with the program and the architecture; `None` (the default) keeps this
    /// generator's output out of any cache.
    fn identity(&self) -> Option<String> {
        None
    }
}

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

    /// The most shared memory one block may use on this architecture (bytes), with the
    /// dynamic shared memory a launch opts in to: 163 KB on sm_80 (A100), 227 KB on sm_90
    /// (H100, H200).
    pub fn max_shared_bytes(self) -> usize {
        match self {
            Arch::Sm80 => 163 * 1024,
            Arch::Sm90a => 227 * 1024,
        }
    }
}

/// The most static shared memory (declared in the PTX) a kernel may have; a kernel that needs
/// more declares its shared buffer `.extern` (dynamic), and the launch asks for the bytes.
pub const STATIC_SHARED_BYTES: usize = 48 * 1024;

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
    /// The kernel needs more shared memory than the architecture has for one block.
    #[error("kernel `{kernel}` needs {bytes} bytes of shared memory, more than the {limit} bytes a block may use on {arch}; use smaller tiles or fewer stages, or compile for an architecture with more")]
    SharedMemory { kernel: String, bytes: usize, arch: Arch, limit: usize },
    /// The LLVM optimization pipeline failed.
    #[error("LLVM optimization failed for kernel `{kernel}`: {message}")]
    Optimization { kernel: String, message: String },
    /// LLVM could not emit PTX for the module.
    #[error("PTX emission failed for kernel `{kernel}` on {arch}: {message}")]
    Emission { kernel: String, arch: Arch, message: String },
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
