//! `simt`: the thread-level simulator (`tl_vm::simt`), which runs the lowered per-thread
//! program of the launch's variant, every thread of a block in lockstep.

use super::Executor;
use crate::{Arg, Assumptions, Kernel, RuntimeError};

pub struct Simt;

impl Executor for Simt {
    fn name(&self) -> &'static str {
        "simt"
    }

    fn launch(&self, kernel: &Kernel, args: &mut [Arg], grid: [u32; 3], assumptions: &Assumptions) -> Result<Option<f64>, RuntimeError> {
        let program = kernel.variant(assumptions)?;
        tl_vm::simt::launch(&program, grid, args).map_err(|e| kernel.module.simt_error(e))?;
        Ok(None)
    }
}
