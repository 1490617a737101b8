//! The kernels this program embeds, compiled as the program and its tests both use them:
//! `saxpy` from a string in the program (with a compile-time parameter), `row_sum` from a file
//! shipped beside it.

use tl_runtime::{Kernel, Module, RuntimeError};

/// `y = a·x + y` over n f32 values, BLOCK per block.
pub const SAXPY: &str = "kernel saxpy<BLOCK = 128>(n: i32, a: f32, x: global f32[n], y: global mut f32[n]) grid(cdiv(n, BLOCK)) warps(4) {
    let at = block.x * BLOCK;
    store(y, a * load(x, [at], [BLOCK]) + load(y, [at], [BLOCK]), [at]);
}
";

/// `saxpy` with `block` elements per block, PTX by LLVM.
pub fn saxpy(block: i64) -> Result<Kernel, RuntimeError> {
    Module::from_source("saxpy.tl", SAXPY)?.with_code_generator(tl_ptx::code_generator()).kernel(None, &[("BLOCK".to_string(), block.into())])
}

/// `row_sum` from `kernels/row_sum.tl`, with its default parameters.
pub fn row_sum() -> Result<Kernel, RuntimeError> {
    Module::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/kernels/row_sum.tl"))?.with_code_generator(tl_ptx::code_generator()).kernel(Some("row_sum"), &[])
}
