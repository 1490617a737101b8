//! The accuracy of the math functions (docs/language.md §5, "Accuracy"), measured: each
//! function runs on the simulator, which executes the very LIR sequence the GPU executes
//! (IEEE operations only), over many inputs per function (random over the whole useful
//! range, near the hard spots, special values), and every result is compared with the f64
//! function of the host (the platform's libm; `erf` from the `libm` crate, checked here
//! against high-precision values). The test prints the worst error in ulps of the result's
//! dtype and fails when it passes the documented bound. The VM computes the exact function
//! rounded once, so its error is at most half an ulp; that is checked too.

use tl_compiler::dtype::DType;
use tl_runtime::{Arg, Backend, HostTensor, Module};

/// A float format's precision (significant bits with the hidden one) and smallest normal
/// exponent, for ulps.
#[derive(Clone, Copy)]
struct Format {
    dtype: DType,
    precision: i32,
    min_exponent: i32,
}

const F32: Format = Format { dtype: DType::F32, precision: 24, min_exponent: -126 };
const F16: Format = Format { dtype: DType::F16, precision: 11, min_exponent: -14 };
const BF16: Format = Format { dtype: DType::BF16, precision: 8, min_exponent: -126 };

impl Format {
    fn largest(self) -> f64 {
        let max_exponent = if self.dtype == DType::F16 { 15 } else { 127 };
        (2.0 - 2f64.powi(1 - self.precision)) * 2f64.powi(max_exponent)
    }

    /// The spacing of the format's numbers around `v` (the subnormal spacing below the
    /// normal range).
    fn ulp(self, v: f64) -> f64 {
        let exponent = if v == 0.0 { self.min_exponent } else { (v.abs().log2().floor() as i32).max(self.min_exponent) };
        2f64.powi(exponent - self.precision + 1)
    }

    /// The error of `got` as an approximation of the exact `want`, in ulps of `want`. NaN
    /// must give NaN, a result past the format's range the infinity of its sign.
    fn ulps(self, got: f64, want: f64) -> f64 {
        if want.is_nan() || got.is_nan() {
            return if want.is_nan() && got.is_nan() { 0.0 } else { f64::INFINITY };
        }
        let largest = self.largest();
        let overflow = largest + self.ulp(largest) / 2.0;
        if want.abs() >= overflow || got.is_infinite() {
            return if got.is_infinite() && want.abs() >= overflow && got.signum() == want.signum() { 0.0 } else { f64::INFINITY };
        }
        (got - want).abs() / self.ulp(want)
    }
}

/// The accurate function `name` on a tile of `format`, on the simulator and the VM.
fn run(name: &str, format: Format, x: &[f64], y: Option<&[f64]>) -> Vec<(Backend, Vec<f64>)> {
    let d = format.dtype.name();
    let n = x.len();
    assert_eq!(n % 256, 0);
    let (params, call) = match y {
        Some(_) => (format!("x: global {d}[{n}], y: global {d}[{n}]"), format!("{name}(a, load(y, [block.x * 256], [256]))")),
        None => (format!("x: global {d}[{n}]"), format!("{name}(a)")),
    };
    let source = format!(
        "kernel k({params}, z: global mut {d}[{n}]) grid({}) warps(4) {{\n    let a = load(x, [block.x * 256], [256]);\n    store(z, {call}, [block.x * 256]);\n}}\n",
        n / 256
    );
    let kernel = Module::from_source("accuracy.tl", &source).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"));
    [Backend::Simt, Backend::Vm]
        .into_iter()
        .map(|backend| {
            let mut args: Vec<Arg> = vec![HostTensor::from_f64(format.dtype, &[n], x).into()];
            if let Some(y) = y {
                args.push(HostTensor::from_f64(format.dtype, &[n], y).into());
            }
            args.push(HostTensor::filled(format.dtype, &[n], 12345.0).into());
            kernel.launch(backend, &mut args).unwrap_or_else(|e| panic!("{name} on {}: {e}", backend.name()));
            (backend, args.last().unwrap().tensor().unwrap().to_f64())
        })
        .collect()
}

/// Checks `got` against `exact` over `inputs`: the worst ulp error within `bound` on the
/// simulator, half an ulp on the VM; prints the worst case.
fn measure(name: &str, format: Format, inputs: &[f64], second: Option<&[f64]>, exact: impl Fn(f64, f64) -> f64, bound: f64) {
    let mut padded = inputs.to_vec();
    let mut padded_second = second.map(|s| s.to_vec());
    while padded.len() % 256 != 0 {
        padded.push(1.0);
        if let Some(s) = padded_second.as_mut() {
            s.push(1.0);
        }
    }
    // The inputs as the format holds them.
    let round = |v: f64| HostTensor::from_f64(format.dtype, &[1], &[v]).to_f64()[0];
    let xs: Vec<f64> = padded.iter().map(|&v| round(v)).collect();
    let ys: Option<Vec<f64>> = padded_second.as_ref().map(|s| s.iter().map(|&v| round(v)).collect());
    for (backend, got) in run(name, format, &xs, ys.as_deref()) {
        let mut worst = (0.0f64, 0usize);
        for (i, &g) in got.iter().enumerate() {
            let want = exact(xs[i], ys.as_ref().map_or(0.0, |y| y[i]));
            let e = format.ulps(g, want);
            if e > worst.0 || e.is_nan() {
                worst = (e, i);
            }
        }
        let i = worst.1;
        let at = match &ys {
            Some(y) => format!("({:e}, {:e})", xs[i], y[i]),
            None => format!("{:e}", xs[i]),
        };
        let want = exact(xs[i], ys.as_ref().map_or(0.0, |y| y[i]));
        println!("{name} {} on {}: worst {:.3} ulp at {at} (got {:e}, exact {want:e}), {} inputs", format.dtype.name(), backend.name(), worst.0, got[i], xs.len());
        let limit = if backend == Backend::Vm { 0.5 + 1e-6 } else { bound };
        assert!(worst.0 <= limit, "{name} {} on {}: {:.3} ulp at {at} (got {:e}, exact {want:e}) exceeds {limit}", format.dtype.name(), backend.name(), worst.0, got[i]);
    }
}

/// Values for every function: zeros, infinities, NaN, the extremes of the format.
fn specials() -> Vec<f64> {
    let mut v = vec![0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1.0, -1.0, 0.5, 2.0];
    for &m in &[f64::from(f32::MAX), f64::from(f32::MIN_POSITIVE), 1e-45, 1e-40] {
        v.extend([m, -m]);
    }
    v
}

/// `count` values uniform in [lo, hi), the specials first.
fn uniform(rng: &mut tl_tests::Rng, lo: f64, hi: f64, count: usize) -> Vec<f64> {
    let mut v = specials();
    v.extend((0..count).map(|_| lo + (hi - lo) * rng.unit()));
    v
}

/// `count` positive f32 values with uniformly random bits: every binade, subnormals included.
fn random_positive_bits(rng: &mut tl_tests::Rng, count: usize) -> Vec<f64> {
    (0..count).map(|_| f64::from(f32::from_bits((rng.next() as u32) & 0x7f7f_ffff))).collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The bounds docs/language.md states for f32 (in ulps; the measured worst case rounded up).
const BOUNDS: &[(&str, f64)] = &[
    ("exp", 1.0),
    ("exp2", 1.0),
    ("log", 1.0),
    ("log2", 1.0),
    ("sin", 2.0),
    ("cos", 2.0),
    ("tanh", 2.0),
    ("erf", 1.5),
    ("rsqrt", 1.0),
    ("sigmoid", 2.0),
    ("pow", 1.0),
];

fn bound(name: &str) -> f64 {
    BOUNDS.iter().find(|(n, _)| *n == name).expect("a bound for every function").1
}

fn unary_exact(name: &str) -> fn(f64) -> f64 {
    match name {
        "exp" => f64::exp,
        "exp2" => f64::exp2,
        "log" => f64::ln,
        "log2" => f64::log2,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tanh" => f64::tanh,
        "erf" => libm::erf,
        "rsqrt" => |x| 1.0 / x.sqrt(),
        "sigmoid" => sigmoid,
        _ => unreachable!(),
    }
}

/// Random inputs per f32 function: `TL_MATH_INPUTS` (12 000 when unset); a few more are
/// added around the hard spots.
fn inputs_per_function() -> usize {
    std::env::var("TL_MATH_INPUTS").ok().map_or(12_000, |v| v.trim().parse().expect("TL_MATH_INPUTS is a number"))
}

/// The f32 inputs of a unary function.
fn f32_inputs(name: &str, rng: &mut tl_tests::Rng) -> Vec<f64> {
    let n = inputs_per_function();
    match name {
        "exp" => [uniform(rng, -104.0, 89.0, n), uniform(rng, -1.0, 1.0, n / 4)].concat(),
        "exp2" => [uniform(rng, -151.0, 129.0, n), uniform(rng, -1.0, 1.0, n / 4)].concat(),
        "log" | "log2" | "rsqrt" => [specials(), random_positive_bits(rng, n), uniform(rng, 0.5, 2.0, n / 2)].concat(),
        "sin" | "cos" => {
            // Near multiples of π/2 (the reduction's hard spots) too.
            let near: Vec<f64> = (0..n / 4).map(|_| (rng.next() % 200_000) as f64 * std::f64::consts::FRAC_PI_2).collect();
            // Every binade up to f32's largest, both signs (the large-argument reduction).
            let any: Vec<f64> = random_positive_bits(rng, n / 2).into_iter().enumerate().map(|(i, v)| if i % 2 == 0 { v } else { -v }).collect();
            [uniform(rng, -10.0, 10.0, n), uniform(rng, -1e5, 1e5, n / 2), uniform(rng, -3.3e7, 3.3e7, n / 4), near, any].concat()
        }
        "tanh" | "sigmoid" => [uniform(rng, -12.0, 12.0, n), uniform(rng, -1.0, 1.0, n / 2), uniform(rng, -100.0, 100.0, n / 8)].concat(),
        "erf" => [uniform(rng, -5.0, 5.0, n), uniform(rng, -1.0, 1.0, n / 2), uniform(rng, 0.85, 0.95, n / 8)].concat(),
        _ => unreachable!(),
    }
}

#[test]
fn unary_functions_are_within_their_f32_bounds() {
    let mut rng = tl_tests::Rng(0x6d61_7468);
    for &(name, _) in BOUNDS.iter().filter(|(n, _)| *n != "pow") {
        let inputs = f32_inputs(name, &mut rng);
        let f = unary_exact(name);
        measure(name, F32, &inputs, None, |x, _| f(x), bound(name));
    }
}

/// Every f16 and bf16 value: the f32 sequence rounded once more stays within one ulp.
#[test]
fn unary_functions_are_within_one_ulp_on_every_half_value() {
    for format in [F16, BF16] {
        let codes: Vec<f64> = (0..=u16::MAX)
            .map(|c| if format.dtype == DType::F16 { f64::from(half::f16::from_bits(c)) } else { f64::from(half::bf16::from_bits(c)) })
            .collect();
        for &(name, _) in BOUNDS.iter().filter(|(n, _)| *n != "pow") {
            let f = unary_exact(name);
            measure(name, format, &codes, None, |x, _| f(x), 1.0);
        }
    }
}

#[test]
fn pow_is_within_its_bound_and_follows_c_on_special_values() {
    let mut rng = tl_tests::Rng(0x706f_77);
    let n = inputs_per_function() / 2;
    let mut x = random_positive_bits(&mut rng, n);
    let mut y: Vec<f64> = (0..n).map(|_| (rng.unit() - 0.5) * 8.0).collect();
    // Bases near 1 with large exponents (where log2 must be accurate), negative bases with
    // integer exponents, and results near overflow and underflow.
    for _ in 0..n {
        x.push(0.5 + rng.unit() * 1.5);
        y.push((rng.unit() - 0.5) * 400.0);
        x.push(-(rng.unit() * 10.0));
        y.push(((rng.next() % 41) as f64) - 20.0);
        x.push(1.0 + rng.unit() * 1e-4);
        y.push(rng.unit() * 1e6);
    }
    // Every pair of special values: C99's special cases.
    let special = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 0.25, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e-45, 16777216.0, 16777217.0];
    for &a in &special {
        for &b in &special {
            x.push(a);
            y.push(b);
        }
    }
    measure("pow", F32, &x, Some(&y), f64::powf, bound("pow"));
}

/// The host's erf (the `libm` crate), which the checks above trust, against values computed
/// with 50 significant digits (mpmath).
#[test]
fn the_host_erf_matches_high_precision_values() {
    let table = [
        (0.001, 0.0011283787909692365),
        (0.1, 0.1124629160182849),
        (0.5, 0.5204998778130465),
        (0.9, 0.7969082124228322),
        (1.0, 0.8427007929497149),
        (1.5, 0.9661051464753108),
        (2.0, 0.9953222650189527),
        (3.0, 0.9999779095030014),
        (3.9, 0.9999999652077514),
    ];
    for (x, want) in table {
        let got = libm::erf(x);
        assert!((got - want).abs() <= 2.0 * f64::EPSILON * want, "erf({x}) = {got}, want {want}");
        assert_eq!(libm::erf(-x), -got);
    }
}
