//! A program that embeds the tl JIT: it compiles `saxpy` from a string and `row_sum` from a
//! file, launches both on every CPU backend (and the GPU when there is one) on host tensors,
//! checks each result against the same computation done here in f64, prints the launch times,
//! and shows how errors come back: a kernel with a type error and a launch with a wrong
//! argument, each rendered at its place in the source. With a GPU, `saxpy` also runs on
//! tensors the program keeps in device memory (`cudarc` buffers), without copies.
//!
//! Run with `cargo run --release -p tl-embed-app`.

use anyhow::{Result, bail};
use tl_runtime::{Arg, Backend, DType, DeviceArg, HostTensor, Module, Number, RuntimeError, cuda};

fn main() -> Result<()> {
    let mut backends = vec![Backend::Vm, Backend::Simt, Backend::Cpu];
    if cuda::driver_available() {
        backends.push(Backend::Cuda);
    }

    let saxpy = tl_embed_app::saxpy(256)?;
    let n = 100_000;
    let x: Vec<f64> = (0..n).map(|i| ((i * 37 % 101) as f64 - 50.0) / 16.0).collect();
    let y: Vec<f64> = (0..n).map(|i| ((i * 11 % 23) as f64) / 8.0 + 1.0).collect();
    let a = 0.75f32;
    for &backend in &backends {
        let mut args = vec![Arg::scalar(n as i64), Arg::scalar(f64::from(a)), HostTensor::from_f64(DType::F32, &[n], &x).into(), HostTensor::from_f64(DType::F32, &[n], &y).into()];
        let report = saxpy.launch(backend, &mut args)?;
        let Arg::Tensor(result) = &args[3] else { bail!("y is a tensor") };
        // f32 arithmetic, as the kernel does it: a product rounded, then a sum rounded.
        let wrong = (0..n).filter(|&i| result.get(i) != f64::from(a * x[i] as f32 + y[i] as f32)).count();
        println!("saxpy   on {:<4}: {:>8.2} ms (grid {:?}), {wrong} wrong of {n}", backend.name(), report.wall_ms, report.grid);
        if wrong > 0 {
            bail!("saxpy on {} differs from the host", backend.name());
        }
    }

    if cuda::driver_available() {
        saxpy_on_device_buffers(&saxpy, a, &x, &y)?;
    }

    let row_sum = tl_embed_app::row_sum()?;
    let (m, cols) = (64, 1000);
    let matrix: Vec<f64> = (0..m * cols).map(|i| ((i * 7 % 13) as f64 - 6.0) / 4.0).collect();
    for &backend in &backends {
        let mut args = vec![Arg::scalar(m as i64), Arg::scalar(cols as i64), HostTensor::from_f64(DType::F32, &[m, cols], &matrix).into(), HostTensor::filled(DType::F32, &[m], f64::NAN).into()];
        let report = row_sum.launch(backend, &mut args)?;
        let Arg::Tensor(sums) = &args[3] else { bail!("y is a tensor") };
        // Quarters of integers: every partial sum is exact in f32, whatever the order.
        let wrong = (0..m).filter(|&r| sums.get(r) != matrix[r * cols..(r + 1) * cols].iter().sum::<f64>()).count();
        println!("row_sum on {:<4}: {:>8.2} ms (grid {:?}), {wrong} wrong of {m}", backend.name(), report.wall_ms, report.grid);
        if wrong > 0 {
            bail!("row_sum on {} differs from the host", backend.name());
        }
    }

    // Errors are values of `RuntimeError`; their text shows the source.
    let broken = "kernel broken(x: global mut f32[16]) grid(1) warps(1) {\n    store(x, load(x, [0], [16]) + true, [0]);\n}\n";
    match Module::from_source("broken.tl", broken).and_then(|m| m.kernel(None, &[])) {
        Err(RuntimeError::Compile { rendered, diagnostics }) => println!("a compile error ({} diagnostic):\n{rendered}", diagnostics.len()),
        other => bail!("the broken kernel compiled: {other:?}"),
    }
    let mut too_short = vec![Arg::scalar(8i64), Arg::scalar(1.0), HostTensor::zeros(DType::F32, &[4]).into(), HostTensor::zeros(DType::F32, &[8]).into()];
    match saxpy.launch(Backend::Cpu, &mut too_short) {
        Err(e) => println!("a launch error:\n{e}"),
        Ok(_) => bail!("a tensor of the wrong shape was accepted"),
    }
    Ok(())
}

/// `saxpy` on device buffers: x and y copied to the GPU once by the program, the kernel launched
/// on them twice (y = a·x + y, then again on the result), y copied back once at the end.
fn saxpy_on_device_buffers(saxpy: &tl_runtime::Kernel, a: f32, x: &[f64], y: &[f64]) -> Result<()> {
    let n = x.len();
    let stream = cuda::device_context()?.default_stream();
    let host_x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let host_y: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    let mut device_x = stream.clone_htod(&host_x)?;
    let mut device_y = stream.clone_htod(&host_y)?;
    let mut total_ms = 0.0;
    for _ in 0..2 {
        let tensor_x = cuda::DeviceTensor::new(&mut device_x, DType::F32, &[n])?;
        let tensor_y = cuda::DeviceTensor::new(&mut device_y, DType::F32, &[n])?;
        let args = [DeviceArg::Scalar(Number::Int(n as i128)), DeviceArg::Scalar(Number::Float(f64::from(a))), DeviceArg::Tensor(&tensor_x), DeviceArg::Tensor(&tensor_y)];
        total_ms += saxpy.launch_device(&args)?.wall_ms;
    }
    let result = stream.clone_dtoh(&device_y)?;
    let wrong = (0..n).filter(|&i| result[i] != a * host_x[i] + (a * host_x[i] + host_y[i])).count();
    println!("saxpy   on cuda device buffers, twice: {total_ms:>8.2} ms, {wrong} wrong of {n}");
    if wrong > 0 {
        bail!("saxpy on device buffers differs from the host");
    }
    Ok(())
}
