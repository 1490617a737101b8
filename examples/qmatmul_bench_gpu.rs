//! The GPU half of the quantized-matmul benchmark (`qmatmul_bench`, when a CUDA driver and a
//! device are present): our kernels against torch fp16 (cuBLAS), a Triton W4A16 kernel and the
//! copy-bandwidth bound, side by side in one run.
//!
//! * **Copy bandwidth** B: a device-to-device copy of 1 GiB, bytes read plus bytes written per
//!   second (`tl_runtime::cuda::copy_bandwidth_gbs`). A kernel that moves `bytes` (its inputs
//!   read once, its output written once) cannot take less than `bytes / B`: the bound.
//! * **Ours**: u1 … u8 codes in fragment order, f16 scales and u4 zero points per group of
//!   G = 128, dequantized in f16 (`D = f16`), f16 activations, BN = 128, BK = 64, STAGES = 3,
//!   the variant for n, k multiples of 128. Decode (m ≤ 16) takes BM = 16 and the best of
//!   `qmatmul_fragment` and `qmatmul_split` with SPLITS = 2, 4, 8 (partials and their
//!   reduction timed together); prefill (m ≥ 128) takes `qmatmul_fragment` with BM = 64. Every
//!   launch is timed alone by CUDA events after an L2 flush (the median of the runs).
//! * **Correctness first**: before any timing, each variant runs at a small shape (m = 1, 16,
//!   128; n = 1024, k = 2048) on random data and is compared with an f64 host product of the
//!   dequantized weights (the tolerance of `tests/tests/qmatmul.rs`); a mismatch stops the
//!   benchmark.
//! * **torch fp16 and Triton W4A16** come from `scripts/qmatmul_reference_bench.py`, run once
//!   with every shape (needs python3 with torch and triton; `TL_PYTHON` names the interpreter).
//!   Without them those columns say so and the rest still prints.
//!
//! Columns: `ms` (median kernel time), `GB/s` (bytes moved over time), `% bound` (the bound
//! over the time), `x fp16` (torch fp16 time over ours), `ideal x` (the bytes of the fp16
//! weights over ours: what a purely memory-bound kernel would gain, 16 / (b + (16 + 4) / G)
//! for the weights alone), `% ideal` (the two ratios' quotient).

use anyhow::{anyhow, bail, Context};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::process::Command;
use tl_runtime::cuda::{self, TimingPlan};
use tl_runtime::{Arg, Backend, ConstValue, DType, HostTensor, Kernel, Module};

/// Linear layers of Llama-3-70B: (name, n, k) of `y[m, n] = x[m, k] · W[k, n]`.
const LAYERS: [(&str, usize, usize); 4] = [("qkv", 10240, 8192), ("o", 8192, 8192), ("gate+up", 57344, 8192), ("down", 8192, 28672)];
const BATCH: [usize; 4] = [1, 16, 128, 4096];
const WIDTHS: [&str; 8] = ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"];
const SPLITS: [usize; 3] = [2, 4, 8];
const G: usize = 128;
const BN: usize = 128;
const BK: usize = 64;
/// Timing: warm-up and timed launches per variant, and the scratch written before each launch
/// (larger than the L2 cache of any current GPU).
const PLAN: TimingPlan = TimingPlan { warmup: 3, runs: 15, flush_bytes: 256 << 20 };

/// One way of running the product: the kernel (and, for split-K, its reduction).
struct Variant {
    label: String,
    main: Kernel,
    reduce: Option<Kernel>,
    splits: usize,
}

pub fn run(root: &str, markdown: bool) -> anyhow::Result<()> {
    let device = cuda::device_name()?;
    let (major, minor) = cuda::compute_capability()?;
    let bandwidth = cuda::copy_bandwidth_gbs(1 << 30, 10)?;
    println!();
    println!("GPU: {device} (sm_{major}{minor}); device-to-device copy of 1 GiB: {bandwidth:.0} GB/s (read + write)");

    let shapes: Vec<(usize, usize, usize)> = LAYERS.iter().flat_map(|&(_, n, k)| BATCH.iter().map(move |&m| (m, n, k))).collect();
    let references = reference_times(root, &shapes);
    if let Err(e) = &references {
        println!("torch fp16 and Triton W4A16: not measured ({e})");
    }

    let header = ["layer", "m", "format", "ours", "ms", "GB/s", "% bound", "torch fp16 ms", "x fp16", "ideal x", "% ideal", "Triton W4A16 ms"];
    if markdown {
        println!("| {} |", header.join(" | "));
        println!("|{}|", header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    } else {
        println!("{}", header.join("  "));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0x7157_bead);
    for width in WIDTHS {
        let w = DType::from_name(width).ok_or_else(|| anyhow!("unknown format {width}"))?;
        let decode = variants(root, w, 16, true)?;
        let prefill = variants(root, w, 64, false)?;
        for m in [1, 16] {
            for v in &decode {
                check_variant(v, w, (m, 1024, 2048), Backend::Cuda, &mut rng).with_context(|| format!("{width} {} at m = {m}", v.label))?;
            }
        }
        for v in &prefill {
            check_variant(v, w, (128, 1024, 2048), Backend::Cuda, &mut rng).with_context(|| format!("{width} {} at m = 128", v.label))?;
        }
        for (layer, n, k) in LAYERS {
            // Random codes in fragment order (random bytes are random codes in any order), with
            // random scales and zero points: timing data, checked above at small shapes.
            let weights = random_weights(w, n, k, &mut rng);
            let (scales, zero_points) = random_group_parameters(w, n, k, &mut rng);
            for m in BATCH {
                let a = random_activations(m, k, &mut rng);
                let candidates = if m <= 16 { &decode } else { &prefill };
                let mut best: Option<(f64, &str)> = None;
                for v in candidates {
                    let ms = time_variant(v, m, n, k, &a, &weights, &scales, &zero_points)?;
                    if best.is_none_or(|(b, _)| ms < b) {
                        best = Some((ms, &v.label));
                    }
                }
                let (ms, label) = best.expect("every batch size has a variant");
                let bytes = (weights.data.len() + scales.data.len() + zero_points.data.len() + a.data.len() + 2 * m * n) as f64;
                let bound_ms = bytes / (bandwidth * 1e9) * 1e3;
                let reference = references.as_ref().ok().and_then(|r| r.iter().find(|t| (t.m, t.n, t.k) == (m, n, k)));
                let fp16_ms = reference.and_then(|r| r.torch_fp16_ms);
                let ideal = (2 * n * k) as f64 / (weights.data.len() + scales.data.len() + zero_points.data.len()) as f64;
                let speedup = fp16_ms.map(|f| f / ms);
                let row = [
                    layer.to_string(),
                    m.to_string(),
                    width.to_string(),
                    label.to_string(),
                    format!("{ms:.4}"),
                    format!("{:.0}", bytes / (ms * 1e-3) / 1e9),
                    format!("{:.0}", 100.0 * bound_ms / ms),
                    fp16_ms.map_or("-".into(), |f| format!("{f:.4}")),
                    speedup.map_or("-".into(), |s| format!("{s:.2}")),
                    format!("{ideal:.2}"),
                    speedup.map_or("-".into(), |s| format!("{:.0}", 100.0 * s / ideal)),
                    match (width, reference.and_then(|r| r.triton_w4a16_ms)) {
                        ("u4", Some(t)) => format!("{t:.4}"),
                        _ => "-".into(),
                    },
                ];
                if markdown {
                    println!("| {} |", row.join(" | "));
                } else {
                    println!("{}", row.join("  "));
                }
            }
        }
    }
    Ok(())
}

/// The kernels compared for weights `w` at block rows `bm`: for decode, the unsplit kernel and
/// split-K with each of [`SPLITS`]; for prefill, the unsplit kernel.
fn variants(root: &str, w: DType, bm: usize, decode: bool) -> anyhow::Result<Vec<Variant>> {
    let mut consts = vec![
        ("W".to_string(), ConstValue::DType(w)),
        ("S".to_string(), ConstValue::DType(DType::F16)),
        ("Z".to_string(), ConstValue::DType(DType::U4)),
        ("D".to_string(), ConstValue::DType(DType::F16)),
        ("BM".to_string(), ConstValue::Int(bm as i64)),
        ("BN".to_string(), ConstValue::Int(BN as i64)),
        ("BK".to_string(), ConstValue::Int(BK as i64)),
        ("G".to_string(), ConstValue::Int(G as i64)),
        ("STAGES".to_string(), ConstValue::Int(3)),
    ];
    let module = |name: &str| -> anyhow::Result<Module> {
        let path = format!("{root}/stdlib/kernels/{name}.tl");
        Ok(Module::from_file(&path)?.with_code_generator(tl_ptx::code_generator()))
    };
    let mut out = vec![Variant { label: format!("fragment BM={bm}"), main: module("qmatmul_fragment")?.kernel(None, &consts)?, reduce: None, splits: 1 }];
    if decode {
        let split = module("qmatmul_split")?;
        for splits in SPLITS {
            consts.retain(|(n, _)| n != "SPLITS");
            consts.push(("SPLITS".to_string(), ConstValue::Int(splits as i64)));
            let reduce_consts = [("SPLITS".to_string(), ConstValue::Int(splits as i64)), ("BM".to_string(), ConstValue::Int(bm as i64))];
            out.push(Variant {
                label: format!("split {splits}"),
                main: split.kernel(Some("qmatmul_split"), &consts)?,
                reduce: Some(split.kernel(Some("qmatmul_split_reduce"), &reduce_consts)?),
                splits,
            });
        }
    }
    Ok(out)
}

/// Random codes of `w` for a `[k, n]` matrix, already in fragment order (tiles of BK × BN).
fn random_weights(w: DType, n: usize, k: usize, rng: &mut ChaCha8Rng) -> HostTensor {
    let mut t = HostTensor::zeros(w, &[k.div_ceil(BK), n.div_ceil(BN) * BK * BN]);
    rng.fill_bytes(&mut t.data);
    t
}

/// The arguments of the main kernel (and the output of the whole product: `c`, or the partials
/// for split-K).
fn main_args(v: &Variant, m: usize, n: usize, k: usize, a: &HostTensor, b: &HostTensor, scales: &HostTensor, zero_points: &HostTensor) -> Vec<Arg> {
    let out = if v.reduce.is_some() { HostTensor::filled(DType::F32, &[v.splits, m, n], f64::NAN) } else { HostTensor::filled(DType::F16, &[m, n], f64::NAN) };
    vec![Arg::scalar(m as i64), Arg::scalar(n as i64), Arg::scalar(k as i64), a.clone().into(), b.clone().into(), scales.clone().into(), zero_points.clone().into(), out.into()]
}

/// The arguments of the split-K reduction of the partials `partials` into a poisoned `c`.
fn reduce_args(m: usize, n: usize, partials: &Arg) -> Vec<Arg> {
    vec![Arg::scalar(m as i64), Arg::scalar(n as i64), partials.clone(), HostTensor::filled(DType::F16, &[m, n], f64::NAN).into()]
}

/// Per group of G rows and column of a `[k, n]` matrix of `w` codes: f16 scales near 1 / the
/// largest code (so dequantized weights are O(1)) and random u4 zero points.
fn random_group_parameters(w: DType, n: usize, k: usize, rng: &mut ChaCha8Rng) -> (HostTensor, HostTensor) {
    let groups = k.div_ceil(G);
    let scales = HostTensor::from_f64(DType::F16, &[groups, n], &(0..groups * n).map(|_| (1.0 + rng.random::<f64>()) / w.max_value()).collect::<Vec<_>>());
    let zero_points = HostTensor::from_codes(DType::U4, &[groups, n], &(0..groups * n).map(|_| rng.random_range(0..16u64)).collect::<Vec<_>>());
    (scales, zero_points)
}

/// f16 activations in [−0.75, 1.25): random, not zero-mean.
fn random_activations(m: usize, k: usize, rng: &mut ChaCha8Rng) -> HostTensor {
    HostTensor::from_f64(DType::F16, &[m, k], &(0..m * k).map(|_| rng.random::<f64>() * 2.0 - 0.75).collect::<Vec<_>>())
}

/// The median time of the product (the main kernel plus the reduction, each timed alone).
#[allow(clippy::too_many_arguments)]
fn time_variant(v: &Variant, m: usize, n: usize, k: usize, a: &HostTensor, b: &HostTensor, scales: &HostTensor, zero_points: &HostTensor) -> anyhow::Result<f64> {
    let mut args = main_args(v, m, n, k, a, b, scales, zero_points);
    let signature = v.main.signature(&args);
    let mut total = cuda::median_ms(&mut v.main.time_variant(&mut args, &signature, &PLAN)?);
    if let Some(reduce) = &v.reduce {
        let mut reduce_args = reduce_args(m, n, &args[7]);
        let signature = reduce.signature(&reduce_args);
        total += cuda::median_ms(&mut reduce.time_variant(&mut reduce_args, &signature, &PLAN)?);
    }
    Ok(total)
}

/// Runs variant `v` on `backend` at `m × n × k` with random weights, scales and zero points, and
/// compares every output with an f64 host product of the dequantized weights: `(q − z) · s`
/// rounded to f16 after each operation (the kernel's `D = f16`), f32 accumulation, one f16
/// rounding of the result.
fn check_variant(v: &Variant, w: DType, (m, n, k): (usize, usize, usize), backend: Backend, rng: &mut ChaCha8Rng) -> anyhow::Result<()> {
    let codes: Vec<u64> = (0..k * n).map(|_| rng.random_range(0..1u64 << w.bits())).collect();
    let b = HostTensor::from_codes(w, &[k, n], &codes);
    let tile = tl_stdlib::quant::FragmentTile::new(BK, BN)?;
    let ordered = tl_stdlib::quant::to_fragment_order(&b, tile)?;
    let (scales, zero_points) = random_group_parameters(w, n, k, rng);
    let a = random_activations(m, k, rng);
    let mut args = main_args(v, m, n, k, &a, &ordered, &scales, &zero_points);
    v.main.launch(backend, &mut args)?;
    let got = match &v.reduce {
        Some(reduce) => {
            let mut reduce_args = reduce_args(m, n, &args[7]);
            reduce.launch(backend, &mut reduce_args)?;
            reduce_args[3].tensor().ok_or_else(|| anyhow!("no output"))?.clone()
        }
        None => args[7].tensor().ok_or_else(|| anyhow!("no output"))?.clone(),
    };
    compare_with_host_product(&a, &b, &scales, &zero_points, &got)
}

/// `got` (`[m, n]`) against the f64 host product of `a` (`[m, k]`) and the weights `b`
/// (`[k, n]` codes) dequantized as `(q − z) · s` in f16.
fn compare_with_host_product(a: &HostTensor, b: &HostTensor, scales: &HostTensor, zero_points: &HostTensor, got: &HostTensor) -> anyhow::Result<()> {
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1]);
    let f16 = DType::F16;
    let weight: Vec<f64> = (0..k * n)
        .map(|i| {
            let (p, j) = (i / n, i % n);
            let g = p / G;
            let shifted = f16.round(f16.round(b.get(i)) - f16.round(zero_points.get(g * n + j)));
            f16.round(shifted * scales.get(g * n + j))
        })
        .collect();
    for i in 0..m {
        for j in 0..n {
            let (mut exact, mut magnitude) = (0.0f64, 0.0f64);
            for p in 0..k {
                let term = a.get(i * k + p) * weight[p * n + j];
                exact += term;
                magnitude += term.abs();
            }
            let tolerance = k as f64 * 2f64.powi(-24) * magnitude * 2.0 + exact.abs() * 2f64.powi(-11) + 2f64.powi(-25);
            let value = got.get(i * n + j);
            if !((value - exact).abs() <= tolerance) {
                bail!("c[{i}, {j}] = {value}, the host product gives {exact} (tolerance {tolerance:e})");
            }
        }
    }
    Ok(())
}

/// Times from `scripts/qmatmul_reference_bench.py` for one shape.
struct ReferenceTimes {
    m: usize,
    n: usize,
    k: usize,
    torch_fp16_ms: Option<f64>,
    triton_w4a16_ms: Option<f64>,
}

/// Runs the reference script once for every shape. It prints one line per shape,
/// `RESULT m n k torch_fp16_ms triton_w4a16_ms` (`nan` where a measurement failed), after
/// checking the Triton kernel against torch.
fn reference_times(root: &str, shapes: &[(usize, usize, usize)]) -> anyhow::Result<Vec<ReferenceTimes>> {
    let python = std::env::var("TL_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = format!("{root}/scripts/qmatmul_reference_bench.py");
    let list: Vec<String> = shapes.iter().map(|(m, n, k)| format!("{m}x{n}x{k}")).collect();
    let output = Command::new(&python).arg(&script).args(&list).output().with_context(|| format!("running {python} {script}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("{script} failed ({}): {}", output.status, stderr.lines().last().unwrap_or("no message"));
    }
    let times = parse_reference_lines(&stdout);
    if times.is_empty() {
        bail!("{script} printed no RESULT line");
    }
    Ok(times)
}

fn parse_reference_lines(text: &str) -> Vec<ReferenceTimes> {
    let time = |s: &str| s.parse::<f64>().ok().filter(|t| t.is_finite() && *t > 0.0);
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["RESULT", m, n, k, torch, triton] => Some(ReferenceTimes { m: m.parse().ok()?, n: n.parse().ok()?, k: k.parse().ok()?, torch_fp16_ms: time(torch), triton_w4a16_ms: time(triton) }),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The correctness check the GPU run starts with, on the CPU backends at a small shape:
    /// every variant (unsplit, split-K with its reduction, prefill tiles) against the host
    /// product, so the arguments, the fragment order and the reference the GPU run relies on
    /// are right before a GPU ever sees them.
    #[test]
    fn the_gpu_checks_pass_on_the_cpu_backends() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (width, backend) in [("u4", Backend::Vm), ("u3", Backend::Simt)] {
            let w = DType::from_name(width).unwrap();
            for v in variants(root, w, 16, true).unwrap().iter().chain(&variants(root, w, 64, false).unwrap()) {
                check_variant(v, w, (5, 256, 384), backend, &mut rng).unwrap_or_else(|e| panic!("{width} {}: {e:#}", v.label));
            }
        }
    }

    /// The comparison fails on a product off by one weight: the host product itself, then
    /// with one code changed.
    #[test]
    fn the_comparison_catches_a_wrong_product() {
        let (m, n, k) = (2, 8, 256);
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let b = HostTensor::from_codes(DType::U4, &[k, n], &(0..k * n).map(|_| rng.random_range(0..16u64)).collect::<Vec<_>>());
        let scales = HostTensor::from_f64(DType::F16, &[2, n], &(0..2 * n).map(|_| 0.1 + rng.random::<f64>() / 10.0).collect::<Vec<_>>());
        let zero_points = HostTensor::from_codes(DType::U4, &[2, n], &vec![3; 2 * n]);
        let a = HostTensor::from_f64(DType::F16, &[m, k], &(0..m * k).map(|_| rng.random::<f64>()).collect::<Vec<_>>());
        // The host product in f64 (each term exact in f64), rounded to f16.
        let product = |b: &HostTensor| {
            let values: Vec<f64> = (0..m * n)
                .map(|o| {
                    let (i, j) = (o / n, o % n);
                    (0..k).map(|p| a.get(i * k + p) * DType::F16.round((b.get(p * n + j) - 3.0) * scales.get((p / G) * n + j))).sum()
                })
                .collect();
            HostTensor::from_f64(DType::F16, &[m, n], &values)
        };
        compare_with_host_product(&a, &b, &scales, &zero_points, &product(&b)).unwrap();
        let mut changed = b.clone();
        changed.set_code(5 * n + 1, (b.code(5 * n + 1) + 1) % 16);
        assert!(compare_with_host_product(&a, &b, &scales, &zero_points, &product(&changed)).is_err());
    }

    #[test]
    fn reference_lines_parse() {
        let parsed = super::parse_reference_lines("noise\nRESULT 1 8192 8192 0.05 nan\nRESULT 16 8192 8192 0.06 0.02\nRESULT x\n");
        assert_eq!(parsed.len(), 2);
        assert_eq!((parsed[0].m, parsed[0].torch_fp16_ms, parsed[0].triton_w4a16_ms), (1, Some(0.05), None));
        assert_eq!((parsed[1].k, parsed[1].triton_w4a16_ms), (8192, Some(0.02)));
    }
}
