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

/// `examples/rotary.tl` against a host computation in f64 from the definition of RoPE (not
/// the reference block): positions from 0 to past any trained context, negative ones too, on
/// the VM and the simulator. The tolerance is f16's rounding of the result plus the f32
/// rounding of the angle, which grows with the position.
#[test]
fn rotary_embedding_matches_the_host() {
    let source = std::fs::read_to_string(tl_tests::repo_root().join("examples/rotary.tl")).unwrap();
    let kernel = Module::from_source("rotary.tl", &source).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"));
    let (rows, d) = (40usize, 128usize);
    let positions: Vec<f64> = (0..rows).map(|i| [0.0, 1.0, 2.0, 7.0, 100.0, 4095.0, 32767.0, 131_071.0, -5.0, 1_000_000.0][i % 10] + (i / 10) as f64).collect();
    let mut rng = tl_tests::Rng(0x70e);
    let x: Vec<f64> = (0..rows * d).map(|_| f64::from(half::f16::from_f64(rng.unit() * 3.0 - 1.0))).collect();
    for backend in [Backend::Vm, Backend::Simt] {
        let mut args = vec![
            Arg::Scalar(Number::Int(rows as i128)),
            HostTensor::from_f64(DType::I32, &[rows], &positions).into(),
            HostTensor::from_f64(DType::F16, &[rows, d], &x).into(),
            HostTensor::filled(DType::F16, &[rows, d], f64::NAN).into(),
        ];
        kernel.launch(backend, &mut args).unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        let got = args[3].tensor().unwrap().to_f64();
        for r in 0..rows {
            for j in 0..d / 2 {
                let angle = positions[r] * 10000f64.powf(-2.0 * j as f64 / d as f64);
                let (low, high) = (x[r * d + j], x[r * d + j + d / 2]);
                let want = [low * angle.cos() - high * angle.sin(), high * angle.cos() + low * angle.sin()];
                let angle_error = 4.0 * positions[r].abs() * 2f64.powi(-24) + 1e-6;
                for (half, want) in want.into_iter().enumerate() {
                    let g = got[r * d + j + half * d / 2];
                    let tolerance = 2f64.powi(-11) * want.abs() + angle_error * (low.abs() + high.abs()) + 1e-7;
                    assert!((g - want).abs() <= tolerance, "{}: row {r} (position {}) column {}: got {g}, want {want}", backend.name(), positions[r], j + half * d / 2);
                }
            }
        }
    }
}

/// `stdlib/kernels/rmsnorm.tl` against an f64 host computation from the definition
/// (`x / sqrt(mean(x²) + eps) · weight`), rows of several lengths (a partial last tile, one
/// shorter than a tile), values of mixed signs and magnitudes, on the VM, the simulator and
/// the cpu backend. Tolerance: the f16 rounding of the output plus the f32 sum's error.
#[test]
fn rms_norm_matches_the_host() {
    let source = std::fs::read_to_string(tl_tests::repo_root().join("stdlib/kernels/rmsnorm.tl")).unwrap();
    let kernel = Module::from_source("rmsnorm.tl", &source).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = tl_tests::Rng(0x125);
    for (rows, n, eps) in [(9usize, 300usize, 1e-6f64), (4, 100, 1e-5), (5, 512, 0.5)] {
        let x: Vec<f64> = (0..rows * n).map(|k| f64::from(half::f16::from_f64((rng.unit() * 4.0 - 1.0) * [1.0, 30.0, 0.01][k % 3]))).collect();
        let weight: Vec<f64> = (0..n).map(|_| f64::from(half::f16::from_f64(rng.unit() * 2.0 - 0.5))).collect();
        for backend in [Backend::Vm, Backend::Simt, Backend::Cpu] {
            let mut args = vec![
                Arg::Scalar(Number::Int(rows as i128)),
                Arg::Scalar(Number::Int(n as i128)),
                Arg::Scalar(Number::Float(eps)),
                HostTensor::from_f64(DType::F16, &[rows, n], &x).into(),
                HostTensor::from_f64(DType::F16, &[n], &weight).into(),
                HostTensor::filled(DType::F16, &[rows, n], f64::NAN).into(),
            ];
            kernel.launch(backend, &mut args).unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
            let got = args[5].tensor().unwrap().to_f64();
            for r in 0..rows {
                let row = &x[r * n..(r + 1) * n];
                let inverse = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / n as f64 + eps).sqrt();
                for j in 0..n {
                    let want = row[j] * inverse * weight[j];
                    let g = got[r * n + j];
                    let tolerance = 2f64.powi(-11) * want.abs() + 1e-5 * want.abs() + 1e-7;
                    assert!((g - want).abs() <= tolerance, "{}: rows {rows} n {n}: [{r}, {j}]: got {g}, want {want}", backend.name());
                }
            }
        }
    }
}

/// The odd functions keep the sign of a zero (C's `sin(-0) = -0`, `tanh(-0) = -0`,
/// `erf(-0) = -0`): the accurate sequences' polynomials `x + x³·P(x²)` would give +0 for -0
/// when P(0) < 0. On every CPU backend, in f16, bf16, f32 and f64.
#[test]
fn odd_functions_keep_the_sign_of_zero() {
    for function in ["sin", "tanh", "erf"] {
        for dtype in ["f16", "bf16", "f32", "f64"] {
            let source = format!("kernel k(x: global {dtype}[4], y: global mut {dtype}[4]) grid(1) warps(1) {{\n    store(y, {function}(load(x, [0], [4])), [0]);\n}}\n");
            let kernel = Module::from_source("zeros.tl", &source).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"));
            let dt = DType::from_name(dtype).unwrap();
            let inputs = [-0.0, 0.0, -0.0, 0.0];
            for backend in [Backend::Vm, Backend::Simt, Backend::Cpu] {
                let mut args = vec![HostTensor::from_f64(dt, &[4], &inputs).into(), HostTensor::filled(dt, &[4], f64::NAN).into()];
                kernel.launch(backend, &mut args).unwrap_or_else(|e| panic!("{function} {dtype} {}: {e}", backend.name()));
                let got = args[1].tensor().unwrap().to_f64();
                for (g, x) in got.iter().zip(inputs) {
                    assert!(*g == 0.0 && g.is_sign_negative() == x.is_sign_negative(), "{function}({x:?}) in {dtype} on {}: {g:?}", backend.name());
                }
            }
        }
    }
}
