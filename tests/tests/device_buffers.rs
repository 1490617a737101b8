//! Launches on tensors in device memory (`Kernel::launch_device`, `cuda::DeviceTensor`): the
//! arguments are checked against the kernel's parameters before the driver is touched, as
//! for host tensors; without a driver the launch is `CudaError::NoDriver`; with one, the
//! kernel computes on the buffers in place (compared with the VM on the same inputs).

use tl_runtime::cuda::{self, DeviceTensor};
use tl_runtime::{Arg, Backend, DType, DeviceArg, HostTensor, Module, Number};

const AXPY: &str = "kernel axpy<BLOCK = 64>(n: i32, a: f32, x: global f32[n], y: global mut f32[n]) grid(cdiv(n, BLOCK)) warps(2) {
    let at = block.x * BLOCK;
    store(y, a * load(x, [at], [BLOCK]) + load(y, [at], [BLOCK]), [at]);
}
";

fn axpy() -> tl_runtime::Kernel {
    Module::from_source("axpy.tl", AXPY).unwrap().with_code_generator(tl_ptx::code_generator()).kernel(None, &[]).unwrap()
}

#[test]
fn device_arguments_are_checked_before_the_driver() {
    let kernel = axpy();
    // SAFETY: never launched on a GPU: every launch below fails its argument check, or there
    // is no driver (checked before the one launch that passes its checks).
    let (x, y, short, halves) = unsafe {
        (
            DeviceTensor::from_raw(0x10000, DType::F32, &[256]).unwrap(),
            DeviceTensor::from_raw(0x20000, DType::F32, &[256]).unwrap(),
            DeviceTensor::from_raw(0x30000, DType::F32, &[100]).unwrap(),
            DeviceTensor::from_raw(0x40000, DType::F16, &[256]).unwrap(),
        )
    };
    assert_eq!(x.bytes(), 1024);
    let n = DeviceArg::Scalar(Number::Int(256));
    let a = DeviceArg::Scalar(Number::Float(0.5));
    let error = |args: &[DeviceArg]| kernel.launch_device(args).unwrap_err().to_string();

    let wrong_shape = error(&[DeviceArg::Scalar(Number::Int(256)), DeviceArg::Scalar(Number::Float(0.5)), DeviceArg::Tensor(&short), DeviceArg::Tensor(&y)]);
    assert!(wrong_shape.contains("shape [100] does not match [n] = [256]") && wrong_shape.contains("axpy.tl:1:"), "{wrong_shape}");
    let wrong_dtype = error(&[DeviceArg::Scalar(Number::Int(256)), DeviceArg::Scalar(Number::Float(0.5)), DeviceArg::Tensor(&x), DeviceArg::Tensor(&halves)]);
    assert!(wrong_dtype.contains("expected a f32 tensor, got a f16 tensor"), "{wrong_dtype}");
    let scalar_for_tensor = error(&[DeviceArg::Scalar(Number::Int(256)), DeviceArg::Scalar(Number::Float(0.5)), DeviceArg::Scalar(Number::Int(1)), DeviceArg::Tensor(&y)]);
    assert!(scalar_for_tensor.contains("expected a f32 tensor, got a scalar"), "{scalar_for_tensor}");
    let out_of_range = error(&[DeviceArg::Scalar(Number::Int(1 << 40)), DeviceArg::Scalar(Number::Float(0.5)), DeviceArg::Tensor(&x), DeviceArg::Tensor(&y)]);
    assert!(out_of_range.contains("out of range for i32"), "{out_of_range}");
    let too_few = error(&[DeviceArg::Scalar(Number::Int(256)), DeviceArg::Tensor(&x)]);
    assert!(too_few.contains("takes 4 arguments, 2 were given"), "{too_few}");
    // SAFETY: refused before any use.
    let unaligned = unsafe { DeviceTensor::from_raw(0x10004, DType::F32, &[4]) }.unwrap_err().to_string();
    assert!(unaligned.contains("not 16-byte aligned"), "{unaligned}");

    if !cuda::driver_available() {
        let no_driver = error(&[n, a, DeviceArg::Tensor(&x), DeviceArg::Tensor(&y)]);
        assert!(no_driver.to_lowercase().contains("driver"), "{no_driver}");
    }
}

#[test]
fn device_buffers_are_computed_in_place_on_a_gpu() {
    if !cuda::driver_available() {
        eprintln!("SKIPPED device_buffers_are_computed_in_place_on_a_gpu: no CUDA driver on this machine (it runs where one is)");
        return;
    }
    let kernel = axpy();
    let n = 1000usize;
    let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 16.0).collect();
    let y: Vec<f32> = (0..n).map(|i| ((i * 11 % 23) as f32) / 8.0 + 1.0).collect();
    let stream = cuda::device_context().unwrap().default_stream();
    let mut device_x = stream.clone_htod(&x).unwrap();
    let mut device_y = stream.clone_htod(&y).unwrap();
    {
        let tx = DeviceTensor::new(&mut device_x, DType::F32, &[n]).unwrap();
        let ty = DeviceTensor::new(&mut device_y, DType::F32, &[n]).unwrap();
        let report = kernel.launch_device(&[DeviceArg::Scalar(Number::Int(n as i128)), DeviceArg::Scalar(Number::Float(0.5)), DeviceArg::Tensor(&tx), DeviceArg::Tensor(&ty)]).unwrap();
        assert_eq!(report.grid, [16, 1, 1]);
        assert!(report.kernel_ms.is_some());
    }
    let got = stream.clone_dtoh(&device_y).unwrap();
    let mut args = vec![Arg::scalar(n as i64), Arg::scalar(0.5), HostTensor::from_f64(DType::F32, &[n], &x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()).into(), HostTensor::from_f64(DType::F32, &[n], &y.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()).into()];
    kernel.launch(Backend::Vm, &mut args).unwrap();
    let Arg::Tensor(want) = &args[3] else { unreachable!() };
    for i in 0..n {
        assert_eq!(f64::from(got[i]), want.get(i), "y[{i}]");
        assert_eq!(f64::from(got[i]), f64::from(0.5 * x[i] + y[i]), "y[{i}] against the host");
    }
    // A buffer too small for the shape is refused.
    let mut small = stream.alloc_zeros::<f32>(10).unwrap();
    let refused = DeviceTensor::new(&mut small, DType::F32, &[n]).unwrap_err().to_string();
    assert!(refused.contains("needs 4000 bytes"), "{refused}");
}
