//! Float scalar arguments (f16, bf16, f32) from the embedding API: rounded once to the
//! parameter's dtype and used by the VM and the simulator as that value. The expected outputs
//! are computed on the host from the definitions, with the rounded scalars written out by hand:
//! 0.3 in f16 is 0x34CD = 1229 / 4096 = 0.300048828125 (10 mantissa bits), −0.015 in bf16 is
//! −246 / 128 · 2^−7 = −0.0150146484375 (7 mantissa bits, 1.92 · 128 = 245.76 rounds to 246).

use tl_compiler::dtype::DType;
use tl_runtime::{Arg, Backend, HostTensor, Module, Number};

fn kernel() -> tl_runtime::Kernel {
    Module::from_file(tl_tests::repo_root().join("tests/kernels/scalar_arguments.tl")).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn float_scalars_are_rounded_once_to_their_dtype_on_both_cpu_backends() {
    let kernel = kernel();
    let n = 128usize;
    // Values that f16 and bf16 hold exactly, so that only the scalars and the products round.
    let x: Vec<f64> = (0..n).map(|i| (i as f64 - 40.0) / 8.0).collect();
    let (alpha, beta, gamma) = (0.300048828125f64, -0.0150146484375f64, 3.0f64);
    // The host: each product rounded to its 16-bit dtype (f16: 11 significant bits, bf16: 8),
    // every value here being a normal number or zero of both formats.
    let round_to_bits = |v: f64, bits: i32| {
        if v == 0.0 {
            return 0.0;
        }
        let scale = 2f64.powi(bits - 1 - v.abs().log2().floor() as i32);
        let scaled = v * scale;
        // Ties to even.
        let r = scaled.round();
        let r = if (scaled - scaled.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - scaled.signum() } else { r };
        r / scale
    };
    let want: Vec<f64> = x.iter().map(|&v| ((round_to_bits(v * alpha, 11) + round_to_bits(v * beta, 8)) as f32 * gamma as f32) as f64).collect();
    for backend in [Backend::Vm, Backend::Simt] {
        let mut args = vec![
            Arg::Scalar(Number::Int(n as i128)),
            Arg::Scalar(Number::Float(0.3)),
            Arg::Scalar(Number::Float(-0.015)),
            Arg::Scalar(Number::Float(3.0)),
            HostTensor::from_f64(DType::F32, &[n], &x).into(),
            HostTensor::filled(DType::F32, &[n], f64::NAN).into(),
        ];
        kernel.launch(backend, &mut args).unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        let got = args[5].tensor().unwrap().to_f64();
        assert_eq!(got, want, "{}", backend.name());
    }
}

#[test]
fn random_arguments_take_given_floats_and_refuse_what_does_not_fit() {
    let kernel = kernel();
    let given = [("n".to_string(), Number::Int(70)), ("alpha".to_string(), Number::Float(0.3)), ("beta".to_string(), Number::Int(3))];
    let args = kernel.random_args_with_scalars(1, &given, 1 << 20).unwrap();
    assert_eq!(args[1], Arg::Scalar(Number::Float(0.300048828125)));
    assert_eq!(args[2], Arg::Scalar(Number::Float(3.0)));
    let report = kernel.check(Backend::Vm, &mut args.clone()).unwrap();
    assert!(report.passed(), "{report:?}");
    let refuse = |name: &str, v: Number, says: &str| {
        let e = kernel.random_args_with_scalars(1, &[(name.to_string(), v)], 1 << 20).expect_err("refused").to_string();
        assert!(e.contains(says) && e.contains("scalar_arguments.tl:3:"), "{e}");
    };
    refuse("n", Number::Float(1.5), "is not an integer, but `n` is i32");
    refuse("alpha", Number::Float(1e6), "beyond the largest finite f16 (65504)");
    refuse("gamma", Number::Float(1e300), "beyond the largest finite f32");
    // An infinity given as such is an argument like any other.
    let args = kernel.random_args_with_scalars(1, &[("gamma".to_string(), Number::Float(f64::INFINITY))], 1 << 20).unwrap();
    assert_eq!(args[3], Arg::Scalar(Number::Float(f64::INFINITY)));
}
