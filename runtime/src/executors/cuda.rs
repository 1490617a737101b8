//! `cuda`: an NVIDIA GPU through the CUDA driver (`crate::cuda`): the variant's PTX for the
//! device's architecture, JIT-compiled by the driver, launched and timed.

use super::Executor;
use crate::cuda;
use crate::{Arg, Assumptions, Kernel, RuntimeError};
use tl_compiler::ir::ParamKind;

pub struct Cuda;

impl Executor for Cuda {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn launch(&self, kernel: &Kernel, args: &mut [Arg], grid: [u32; 3], assumptions: &Assumptions) -> Result<Option<f64>, RuntimeError> {
        let times = time(kernel, args, grid, assumptions, &cuda::TimingPlan::ONCE)?;
        Ok(times.first().copied())
    }
}

/// Runs the variant for `assumptions` over `grid` on GPU 0 as `plan` says (`cuda::time`): its
/// PTX for the device's architecture, the arguments in the kernel's parameter order. Returns the
/// timed launches' kernel times in milliseconds.
pub(crate) fn time(kernel: &Kernel, args: &mut [Arg], grid: [u32; 3], assumptions: &Assumptions, plan: &cuda::TimingPlan) -> Result<Vec<f64>, RuntimeError> {
    let mut kargs: Vec<cuda::KernelArg> = Vec::new();
    for (p, a) in kernel.compiled.kernel.params.iter().zip(args.iter_mut()) {
        match (a, &p.kind) {
            (Arg::Scalar(v), ParamKind::Scalar(d)) => kargs.push(cuda::KernelArg::Scalar { value: *v, dtype: *d }),
            (Arg::Tensor(t), _) => kargs.push(cuda::KernelArg::Tensor(t)),
            _ => return Err(RuntimeError::Usage(format!("argument `{}` has the wrong kind", p.name))),
        }
    }
    time_kernel_args(kernel, &mut kargs, grid, assumptions, plan)
}

/// [`time`] with the arguments in the driver's form (host tensors to copy, device tensors to
/// pass as they are, scalars).
pub(crate) fn time_kernel_args(kernel: &Kernel, kargs: &mut [cuda::KernelArg], grid: [u32; 3], assumptions: &Assumptions, plan: &cuda::TimingPlan) -> Result<Vec<f64>, RuntimeError> {
    if !cuda::driver_available() {
        return Err(cuda::CudaError::NoDriver.into());
    }
    let arch = cuda::device_arch()?;
    let ptx = kernel.variant_ptx(assumptions, arch)?;
    let program = kernel.variant(assumptions)?;
    let spec = cuda::LaunchSpec {
        ptx: ptx.as_str(),
        kernel_name: &kernel.compiled.kernel.name,
        grid,
        block_threads: program.block_threads,
        shared_bytes: program.shared_bytes as u32,
        cubin_cache: Some(kernel.module.cache()),
    };
    Ok(cuda::time(&spec, kargs, plan)?)
}
