//! `cpu`: the per-thread program of the launch's variant compiled to native code by Cranelift
//! (`tl_cpu`), compiled once per variant and reused across launches.

use super::Executor;
use crate::{Arg, Assumptions, Kernel, RuntimeError};

pub struct Cpu;

impl Executor for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn launch(&self, kernel: &Kernel, args: &mut [Arg], grid: [u32; 3], assumptions: &Assumptions) -> Result<Option<f64>, RuntimeError> {
        let program = kernel.cpu_program(assumptions)?;
        program.launch(grid, args).map_err(|e| kernel.module.cpu_error(e))?;
        Ok(None)
    }
}
