//! Snapshot tests of generated code in a user's own crate (feature `snapshot`, built on
//! `insta`): [`assert_kernel_snapshots!`](crate::assert_kernel_snapshots) records the block IR,
//! the thread-level IR and the PTX of a kernel variant in the calling crate's `snapshots/`
//! folder, beside the test, and fails when the compiler later makes different code. Accept a
//! change with `INSTA_UPDATE=always cargo test` or review it with `cargo insta review`.
//!
//! ```
//! # fn main() -> Result<(), tl_runtime::RuntimeError> {
//! use tl_runtime::{Arch, Module};
//! let source = "kernel double(n: i32, x: global mut f32[n]) grid(cdiv(n, 128)) warps(1) {
//!     store(x, load(x, [block.x * 128], [128]) * 2.0, [block.x * 128]);
//! }";
//! let kernel = Module::from_source("double.tl", source)?.kernel(None, &[])?;
//! // In a test: `tl_runtime::assert_kernel_snapshots!(kernel);` keeps
//! // snapshots/<test module>__double_ir.snap and double_lir (and double_ptx when the module
//! // has a code generator) up to date.
//! let stages = tl_runtime::snapshot::stages(&kernel, &kernel.assumptions(&[])?, Arch::Sm80)?;
//! let names: Vec<&str> = stages.iter().map(|(stage, _)| *stage).collect();
//! assert_eq!(names, ["ir", "lir"]);
//! # Ok(())
//! # }
//! ```

pub use insta;

use crate::{Arch, Assumptions, Kernel, RuntimeError};

/// The text of each stage of the variant of `kernel` for `assumptions`, as `tlc compile
/// --emit` prints it: `ir` (block IR with its layouts), `lir` (thread-level IR) and, when the
/// kernel's module has a code generator, `ptx` for `arch`.
pub fn stages(kernel: &Kernel, assumptions: &Assumptions, arch: Arch) -> Result<Vec<(&'static str, String)>, RuntimeError> {
    let mut stages = vec![("ir", tl_compiler::ir::print::kernel_to_string(&kernel.compiled.kernel)), ("lir", kernel.variant(assumptions)?.to_string())];
    if kernel.module.code_generator().is_ok() {
        stages.push(("ptx", kernel.variant_ptx(assumptions, arch)?.to_string()));
    }
    Ok(stages)
}

/// Asserts the generated code of a kernel against snapshots in the calling crate:
/// `assert_kernel_snapshots!(kernel)` for the unspecialized variant on sm_80, or
/// `assert_kernel_snapshots!(kernel, &assumptions, arch)`. One snapshot per stage
/// ([`stages`]), named `KERNEL_ir`, `KERNEL_lir`, `KERNEL_ptx` (with the assumptions and the
/// architecture in the name when they are given). Panics on a difference, as `insta` does.
#[macro_export]
macro_rules! assert_kernel_snapshots {
    ($kernel:expr) => {{
        let kernel: &$crate::Kernel = &$kernel;
        let assumptions = kernel.assumptions(&[]).expect("no assumptions");
        $crate::assert_kernel_snapshots!(@named kernel, &assumptions, $crate::Arch::Sm80, kernel.name().to_string())
    }};
    ($kernel:expr, $assumptions:expr, $arch:expr) => {{
        let kernel: &$crate::Kernel = &$kernel;
        let assumptions: &$crate::Assumptions = $assumptions;
        let arch: $crate::Arch = $arch;
        let mut name = kernel.name().to_string();
        if !assumptions.is_none() {
            name.push('_');
            name.push_str(&assumptions.describe(&kernel.compiled.kernel).replace(['%', ','], "_"));
        }
        name.push('_');
        name.push_str(arch.name());
        $crate::assert_kernel_snapshots!(@named kernel, assumptions, arch, name)
    }};
    (@named $kernel:expr, $assumptions:expr, $arch:expr, $name:expr) => {{
        let stages = $crate::snapshot::stages($kernel, $assumptions, $arch).unwrap_or_else(|e| panic!("{e}"));
        for (stage, text) in stages {
            $crate::snapshot::insta::assert_snapshot!(format!("{}_{}", $name, stage), text);
        }
    }};
}
