//! Embedding the tl JIT in a Rust program: compile the example vector-add kernel with a
//! compile-time parameter, launch it on host tensors with the VM (and on the GPU when there is
//! one), and check the result on the host.
//!
//! Run with `cargo run -p tl-examples --example embed`.

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng};
use tl_runtime::{Arch, Arg, Backend, DType, HostTensor, Module, RuntimeError, cuda};

fn main() -> Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vector_add.tl");
    let module = Module::from_file(path)?.with_code_generator(tl_ptx::code_generator());
    let kernel = module.kernel(Some("vector_add"), &[("BLOCK".to_string(), 256.into())])?;
    println!("compiled `{}`: {} threads per block, PTX for sm_80 is {} bytes", kernel.name(), kernel.compiled.lir.block_threads, kernel.ptx(Arch::Sm80)?.len());

    let n = 1000;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let a: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let b: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut backends = vec![Backend::Vm, Backend::Simt];
    if cuda::driver_available() {
        backends.push(Backend::Cuda);
    } else {
        println!("no CUDA driver on this machine: skipping the cuda backend");
    }
    for backend in backends {
        let mut args = vec![
            Arg::scalar(n as i64),
            HostTensor::from_f64(DType::F32, &[n], &a).into(),
            HostTensor::from_f64(DType::F32, &[n], &b).into(),
            HostTensor::filled(DType::F32, &[n], f64::NAN).into(),
        ];
        let report = match kernel.launch(backend, &mut args) {
            Ok(r) => r,
            Err(e @ RuntimeError::Cuda(_)) => {
                println!("{}: {e}", backend.name());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let Arg::Tensor(c) = &args[3] else { bail!("c is a tensor") };
        let worst = (0..n).map(|i| (c.get(i) - (a[i] as f32 + b[i] as f32) as f64).abs()).fold(0.0, f64::max);
        println!("{}: grid {:?}, max |c - (a + b)| = {worst:e}", backend.name(), report.grid);
        if worst.is_nan() || worst > 0.0 {
            bail!("{} computed a wrong sum", backend.name());
        }
    }
    Ok(())
}
