//! `vm`: the block-level reference interpreter (`tl_vm::interp`), which runs the block IR with
//! the language's semantics and needs no variant.

use super::Executor;
use crate::{Arg, Assumptions, Kernel, RuntimeError};

pub struct Vm;

impl Executor for Vm {
    fn name(&self) -> &'static str {
        "vm"
    }

    fn launch(&self, kernel: &Kernel, args: &mut [Arg], _grid: [u32; 3], _assumptions: &Assumptions) -> Result<Option<f64>, RuntimeError> {
        tl_vm::launch(&kernel.compiled.kernel, args).map_err(|e| kernel.module.vm_error(e))?;
        Ok(None)
    }
}
