//! The backends a kernel launches on, one file each, behind one trait.
//!
//! [`Executor`] is what a backend implements: run a checked launch of a kernel over its grid.
//! [`crate::Kernel::launch_variant`] does everything backends share first (argument checks,
//! the variant's assumptions against the arguments, the grid, an empty grid) and then calls the
//! executor of the [`crate::Backend`] it was given. A new backend is a new file here that
//! implements [`Executor`], and a variant of `Backend` naming it.

mod cpu;
pub(crate) mod cuda;
mod simt;
mod vm;

use crate::{Arg, Assumptions, Kernel, RuntimeError};

/// One backend: runs a launch whose arguments and grid are already checked.
pub trait Executor: Sync {
    /// The name users choose the backend by (`--backend NAME`).
    fn name(&self) -> &'static str;

    /// Runs `kernel`'s variant for `assumptions` (which the arguments satisfy) over `grid`
    /// (no extent zero), updating the tensors of `args` in place. Returns the GPU time of the
    /// kernel in milliseconds where the backend measures one.
    fn launch(&self, kernel: &Kernel, args: &mut [Arg], grid: [u32; 3], assumptions: &Assumptions) -> Result<Option<f64>, RuntimeError>;
}

pub(crate) static VM: vm::Vm = vm::Vm;
pub(crate) static SIMT: simt::Simt = simt::Simt;
pub(crate) static CUDA: cuda::Cuda = cuda::Cuda;
pub(crate) static CPU: cpu::Cpu = cpu::Cpu;

#[cfg(test)]
mod tests {
    use crate::Backend;

    #[test]
    fn every_backend_is_chosen_by_its_executors_name() {
        for backend in Backend::ALL {
            assert_eq!(Backend::parse(backend.executor().name()), Some(backend));
        }
        assert_eq!(Backend::ALL.map(|b| b.name()), ["vm", "simt", "cuda", "cpu"]);
        assert_eq!(Backend::parse("gpu"), None);
    }
}
