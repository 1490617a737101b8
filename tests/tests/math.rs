//! Elementwise math builtins against the host: `clamp` (docs/language.md §7) on floats and
//! integers, with scalar and tile bounds, folded on compile-time integers, and in a reference.

use tl_compiler::dtype::DType;
use tl_runtime::{Arg, Backend, HostTensor, Module, Number};

const SOURCE: &str = "\
kernel k(lo: f32, x: global f32[4, 64], b: global f32[4, 64], n: global i32[64], y: global mut f32[4, 64], m: global mut i32[clamp(100, 8, 64)]) grid(1) warps(2) {
    let t = load(x, [0, 0], [4, 64]);
    let hi = load(b, [0, 0], [4, 64]);
    store(y, clamp(t, lo, hi), [0, 0]);
    store(m, clamp(load(n, [0], [64]), -3, 5), [0]);
}
reference k {
    y = clamp(x, lo, b);
    m = clamp(n, -3, 5);
}
";

#[test]
fn clamp_bounds_floats_and_integers_like_the_host() {
    let kernel = Module::from_source("clamp.tl", SOURCE).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = tl_tests::Rng(0xc1a3);
    let x: Vec<f64> = (0..256).map(|_| (rng.unit() * 4.0) as f32 as f64).collect();
    // Upper bounds mostly above the lower bound -0.5, some below it (then the upper wins).
    let b: Vec<f64> = (0..256).map(|i| if i % 7 == 0 { -1.0 } else { (rng.unit() * 2.0 + 1.0) as f32 as f64 }).collect();
    let n: Vec<f64> = (0..64).map(|i| i as f64 - 30.0).collect();
    let want_y: Vec<f64> = x.iter().zip(&b).map(|(&v, &h)| v.max(-0.5).min(h)).collect();
    let want_m: Vec<f64> = n.iter().map(|&v| v.clamp(-3.0, 5.0)).collect();
    for backend in [Backend::Vm, Backend::Simt] {
        let mut args = vec![
            Arg::Scalar(Number::Float(-0.5)),
            HostTensor::from_f64(DType::F32, &[4, 64], &x).into(),
            HostTensor::from_f64(DType::F32, &[4, 64], &b).into(),
            HostTensor::from_f64(DType::I32, &[64], &n).into(),
            HostTensor::filled(DType::F32, &[4, 64], f64::NAN).into(),
            HostTensor::filled(DType::I32, &[64], 99.0).into(),
        ];
        let report = kernel.check(backend, &mut args).unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        assert!(report.passed(), "{}: {report:?}", backend.name());
        assert_eq!(args[4].tensor().unwrap().to_f64(), want_y, "{}", backend.name());
        assert_eq!(args[5].tensor().unwrap().to_f64(), want_m, "{}", backend.name());
    }
}
