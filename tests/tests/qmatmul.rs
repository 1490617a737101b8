//! The quantized matmul of the standard library (`stdlib/kernels/qmatmul.tl`), one kernel for
//! every weight format: on the VM against an f64 host product of the dequantized weights at
//! random shapes (M ∈ {1, 16, 33}, N and K not multiples of the tiles), with the tolerance of
//! f32 accumulation plus the final f16 rounding (the reference rounds each dequantized weight
//! to f16 as the kernel does before its tensor-core product); and its PTX assembles for every
//! format.

use tl_compiler::backend::{Arch, ptxas};
use tl_compiler::dtype::DType;
use tl_compiler::ir::ConstValue;
use tl_runtime::{Arg, Backend, HostTensor, Module};
use tl_tests::{repo_root, Rng};

/// Every weight format the kernel is checked with (integers and floats of at most 8 bits).
fn weight_formats() -> Vec<DType> {
    [
        "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "f3e1m1", "f3e2m0",
        "f4e2m1", "f4e1m2", "f4e3m0", "f5e2m2", "f5e3m1", "f6e2m3", "f6e3m2", "f7e3m3", "f7e4m2", "f7e5m1", "f8e4m3fn",
        "f8e5m2", "f8e4m3", "f8e3m4", "f8e2m5", "f8e6m1", "f8e5m2fn",
    ]
    .iter()
    .map(|n| DType::from_name(n).unwrap_or_else(|| panic!("{n}")))
    .collect()
}

fn module() -> Module {
    module_of("qmatmul")
}

fn module_of(file: &str) -> Module {
    Module::from_file(repo_root().join(format!("stdlib/kernels/{file}.tl"))).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"))
}


/// Random finite weight codes (NaN and infinity codes excluded, every other code possible).
fn weights(rng: &mut Rng, w: DType, k: usize, n: usize) -> HostTensor {
    let codes: Vec<u64> = (0..k * n)
        .map(|_| loop {
            let c = rng.next();
            if w.decode(c).is_finite() {
                break c;
            }
        })
        .collect();
    HostTensor::from_codes(w, &[k, n], &codes)
}

fn check(w: DType, s: DType, m: usize, n: usize, k: usize, seed: u64) {
    check_on(w, s, m, n, k, seed, Backend::Vm, WeightOrder::RowMajor, DType::F32, DType::F16, DType::F16)
}

/// How the kernel takes the packed weights: `qmatmul` as the `[k, n]` matrix, or
/// `qmatmul_fragment` in fragment order (`tl_stdlib::quant::to_fragment_order`, tiles of its
/// default BK × BN = 64 × 128).
#[derive(Clone, Copy, Debug)]
enum WeightOrder {
    RowMajor,
    /// `[k, n]` weights at the decode tiles BN = 128, BK = 64, G = 128, where the accumulator
    /// interleaves the `mma` column tiles (`plan::MmaTiling`) so that each thread reads its
    /// codes of a row in one 16-bit piece.
    RowMajorWide,
    Fragment,
    /// Fragment order through the split-K pair of `stdlib/kernels/qmatmul_split.tl` (partial
    /// products of this many k ranges, then their reduction).
    Split(usize),
}

/// The kernel with weights `w`, scales `s`, dequantization arithmetic `d` (the kernels' `D`)
/// and zero points of dtype `zero` (`Z`) at `m × n × k` on `backend`, against an f64 host
/// product of the weights dequantized as the kernel's definition says: `(q − z) · s` rounded
/// to `d` after each operation, then to the activations' dtype `act`. Integer zero points are
/// random over their whole range; f16 ones the middle of the weights' range.
#[allow(clippy::too_many_arguments)]
fn check_on(w: DType, s: DType, m: usize, n: usize, k: usize, seed: u64, backend: Backend, order: WeightOrder, d: DType, act: DType, zero: DType) {
    // Groups of two k tiles of the fragment kernels (BK = 64), so that their loop over a
    // group's tiles runs more than once, and the last group of a ragged k is partial.
    let g_rows: usize = match order {
        WeightOrder::RowMajor => 64,
        WeightOrder::RowMajorWide | WeightOrder::Fragment | WeightOrder::Split(_) => 128,
    };
    let consts = [
        ("W".to_string(), ConstValue::DType(w)),
        ("S".to_string(), ConstValue::DType(s)),
        ("G".to_string(), ConstValue::Int(g_rows as i64)),
        ("D".to_string(), ConstValue::DType(d)),
        ("Z".to_string(), ConstValue::DType(zero)),
    ];
    // Every kernel takes the activations' dtype.
    let consts = [&consts[..], &[("A".to_string(), ConstValue::DType(act))]].concat();
    let consts = match order {
        WeightOrder::RowMajorWide => [&consts[..], &[("BN".to_string(), ConstValue::Int(128)), ("BK".to_string(), ConstValue::Int(64))]].concat(),
        _ => consts,
    };
    let module = match order {
        WeightOrder::RowMajor | WeightOrder::RowMajorWide => module(),
        WeightOrder::Fragment => module_of("qmatmul_fragment"),
        WeightOrder::Split(_) => module_of("qmatmul_split"),
    };
    let (name, consts) = match order {
        WeightOrder::Split(splits) => (Some("qmatmul_split"), [&consts[..], &[("SPLITS".to_string(), ConstValue::Int(splits as i64))]].concat()),
        _ => (None, consts),
    };
    let kernel = module.kernel(name, &consts).unwrap_or_else(|e| panic!("{w}: {e}"));
    let mut rng = Rng(seed | 1);
    let groups = k.div_ceil(g_rows);
    let a = HostTensor::from_f64(act, &[m, k], &(0..m * k).map(|_| rng.unit()).collect::<Vec<_>>());
    let b = weights(&mut rng, w, k, n);
    // Scales near 1/max so dequantized weights are O(1); e8m0 scales are powers of two.
    let scale_of = |rng: &mut Rng| (1.0 + rng.unit().abs()) / w.max_value().abs().max(1.0);
    let scales = HostTensor::from_f64(s, &[groups, n], &(0..groups * n).map(|_| scale_of(&mut rng)).collect::<Vec<_>>());
    let zero_points = match zero.int_range() {
        Some((low, high)) => {
            let span = (high - low + 1) as u64;
            HostTensor::from_f64(zero, &[groups, n], &(0..groups * n).map(|_| (low + (rng.next() % span) as i128) as f64).collect::<Vec<_>>())
        }
        None => {
            let middle = if w.is_unsigned_int() { (w.max_value() / 2.0).round() } else { 0.0 };
            HostTensor::from_f64(zero, &[groups, n], &vec![middle; groups * n])
        }
    };
    let c = HostTensor::filled(act, &[m, n], f64::NAN);
    let mut args = vec![
        Arg::scalar(m as i64),
        Arg::scalar(n as i64),
        Arg::scalar(k as i64),
        a.clone().into(),
        match order {
            WeightOrder::RowMajor | WeightOrder::RowMajorWide => b.clone(),
            WeightOrder::Fragment | WeightOrder::Split(_) => {
                let tile = tl_stdlib::quant::FragmentTile::new(64, 128).unwrap();
                tl_stdlib::quant::to_fragment_order(&b, tile).unwrap()
            }
        }
        .into(),
        scales.clone().into(),
        zero_points.clone().into(),
        match order {
            WeightOrder::Split(splits) => HostTensor::filled(DType::F32, &[splits, m, n], f64::NAN),
            _ => c.clone(),
        }
        .into(),
    ];
    kernel.launch(backend, &mut args).unwrap_or_else(|e| panic!("{w} on {}: {e}", backend.name()));
    let got = match order {
        WeightOrder::Split(splits) => {
            // The partials, added in order of the split by the reduction kernel.
            let consts = [("SPLITS".to_string(), ConstValue::Int(splits as i64)), ("A".to_string(), ConstValue::DType(act))];
            let reduce = module.kernel(Some("qmatmul_split_reduce"), &consts).unwrap_or_else(|e| panic!("{e}"));
            let mut reduce_args = vec![Arg::scalar(m as i64), Arg::scalar(n as i64), args[7].clone(), c.into()];
            reduce.launch(backend, &mut reduce_args).unwrap_or_else(|e| panic!("{w} reduce on {}: {e}", backend.name()));
            reduce_args[3].tensor().unwrap().clone()
        }
        _ => args[7].tensor().unwrap().clone(),
    };
    for i in 0..m {
        for j in 0..n {
            let (mut exact, mut magnitude) = (0.0f64, 0.0f64);
            for p in 0..k {
                let g = p / g_rows;
                // The kernel's dequantized weight: (q - z)·s in d, rounded to f16.
                let shifted = d.round(d.round(b.get(p * n + j)) - d.round(zero_points.get(g * n + j)));
                let weight = act.round(d.round(shifted * d.round(scales.get(g * n + j))));
                exact += a.get(i * k + p) * weight;
                magnitude += (a.get(i * k + p) * weight).abs();
            }
            // f32 accumulation: at most k roundings of 2^-24 relative to the running sums;
            // then one f16 rounding of the result (2^-11 relative, plus half the smallest
            // subnormal step).
            let half_ulp = if act == DType::BF16 { 2f64.powi(-8) } else { 2f64.powi(-11) };
            let tolerance = k as f64 * 2f64.powi(-24) * magnitude * 2.0 + exact.abs() * half_ulp + 2f64.powi(-25);
            let value = got.get(i * n + j);
            assert!(
                (value - exact).abs() <= tolerance,
                "{w} with {s} scales, m={m} n={n} k={k}: c[{i}, {j}] = {value}, reference {exact} (tolerance {tolerance:e})"
            );
        }
    }
}

#[test]
fn quantized_matmul_matches_the_dequantized_product_for_every_format() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for w in weight_formats() {
        for m in [1, 16, 33] {
            let n = 33 + (rng.next() % 30) as usize; // never a multiple of BN = 32
            let k = 64 * (1 + (rng.next() % 2) as usize) + 1 + (rng.next() % 62) as usize; // ragged k
            check(w, DType::F16, m, n, k, rng.next());
        }
    }
}

/// The generated per-thread code (packed loads, bit-level decoders) on the SIMT simulator,
/// for a sample of formats, and with NVFP4-style `ue4m3` scales.
#[test]
fn quantized_matmul_on_the_simulator() {
    let mut rng = Rng(0x7777_1234_5555_9999);
    for (w, s) in [("u4", "f16"), ("i3", "f16"), ("f6e3m2", "f16"), ("f8e4m3fn", "f16"), ("f4e2m1", "e8m0"), ("f4e2m1", "ue4m3"), ("u7", "ue4m3")] {
        let (w, s) = (DType::from_name(w).unwrap(), DType::from_name(s).unwrap());
        check_on(w, s, 17, 37, 129, rng.next(), Backend::Simt, WeightOrder::RowMajor, DType::F32, DType::F16, DType::F16);
    }
}

/// `qmatmul_fragment` on weights re-laid out by the host (`to_fragment_order`), against the
/// same f64 product of the original `[k, n]` codes: on the VM for every format, on the
/// simulator for a sample, at ragged shapes (padding tiles included).
#[test]
fn fragment_ordered_weights_give_the_same_product() {
    let mut rng = Rng(0x5eed_f4a9_0e0d_e401);
    for w in weight_formats() {
        let (n, k) = (130 + (rng.next() % 100) as usize, 64 + 1 + (rng.next() % 126) as usize);
        check_on(w, DType::F16, 3, n, k, rng.next(), Backend::Vm, WeightOrder::Fragment, DType::F32, DType::F16, DType::F16);
    }
    for (w, s) in [("u4", "f16"), ("i3", "f16"), ("u8", "f16"), ("f6e3m2", "f16"), ("f4e2m1", "e8m0"), ("u1", "f16")] {
        let (w, s) = (DType::from_name(w).unwrap(), DType::from_name(s).unwrap());
        check_on(w, s, 17, 150, 129, rng.next(), Backend::Simt, WeightOrder::Fragment, DType::F32, DType::F16, DType::F16);
    }
}

/// Split-K for decode shapes (`qmatmul_split` then `qmatmul_split_reduce`): the product of
/// the whole k, on the VM and the simulator, for several split counts (with empty splits when
/// there are more splits than k tiles), against the same f64 host product.
#[test]
fn split_k_gives_the_whole_product() {
    let mut rng = Rng(0x5b11_7000_0000_0001);
    for (w, splits, m, k, backend, d) in [
        ("u4", 4, 1, 700, Backend::Vm, DType::F32),
        ("u4", 3, 16, 500, Backend::Simt, DType::F16),
        ("i3", 2, 5, 300, Backend::Simt, DType::F32),
        ("f4e2m1", 8, 3, 200, Backend::Vm, DType::F16),
        ("u8", 1, 2, 129, Backend::Simt, DType::F32),
    ] {
        let w = DType::from_name(w).unwrap();
        check_on(w, DType::F16, m, 150, k, rng.next(), backend, WeightOrder::Split(splits), d, DType::F16, DType::F16);
    }
    // bf16 activations, dequantized in bf16.
    check_on(DType::U4, DType::F16, 4, 150, 300, rng.next(), Backend::Simt, WeightOrder::Split(3), DType::BF16, DType::BF16, DType::F16);
}

/// bf16 activations (`-D A=bf16`) with bf16 dequantization (`-D D=bf16`, packed `bf16x2`
/// pairs; e8m0 scales too, which bf16 holds) and with f32 dequantization, in fragment order
/// and in `[k, n]` order, on the VM and the simulator, against the host product in bf16; ptxas
/// accepts both kernels.
#[test]
fn bf16_activations_dequantize_in_bf16() {
    let mut rng = Rng(0xbf16_bf16_0000_0001);
    for (w, s, d, backend) in [
        ("u4", "f16", "bf16", Backend::Simt),
        ("i4", "f16", "bf16", Backend::Vm),
        ("u2", "f16", "f32", Backend::Simt),
        ("f4e2m1", "e8m0", "bf16", Backend::Simt),
        ("f8e4m3fn", "e8m0", "bf16", Backend::Vm),
        ("f8e4m3fn", "e8m0", "bf16", Backend::Simt),
        ("f4e2m1", "f16", "bf16", Backend::Simt),
        // 8-bit integers to bf16 through the f32 magic number.
        ("u8", "f16", "bf16", Backend::Simt),
        ("i8", "f16", "bf16", Backend::Simt),
        ("i8", "f16", "bf16", Backend::Vm),
    ] {
        let [w, s, d] = [w, s, d].map(|n| DType::from_name(n).unwrap());
        check_on(w, s, 7, 140, 200, rng.next(), backend, WeightOrder::Fragment, d, DType::BF16, DType::F16);
        // The `[k, n]` kernel takes bf16 activations too.
        check_on(w, s, 7, 70, 100, rng.next(), backend, WeightOrder::RowMajor, d, DType::BF16, DType::F16);
        if tl_tests::ptxas_available("qmatmul bf16") {
            let consts = [("W", w), ("S", s), ("D", d), ("A", DType::BF16)].map(|(n, t)| (n.to_string(), ConstValue::DType(t)));
            for file in ["qmatmul_fragment", "qmatmul"] {
                let kernel = module_of(file).kernel(None, &consts).unwrap_or_else(|e| panic!("{e}"));
                let v128 = kernel.assumptions(&["m%128,n%128,k%128".into()]).unwrap();
                for arch in Arch::ALL {
                    let ptx = kernel.variant_ptx(&v128, arch).unwrap_or_else(|e| panic!("{w} bf16 {}: {e}", arch.name()));
                    ptxas::assemble(&ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected {file} W={w} D={d} A=bf16 for {}: {e}", arch.name()));
                }
            }
        }
    }
}

/// Dequantization in f16 (`-D D=f16`): the zero point subtracted and the scale applied in f16,
/// which the compiler does on pairs of weights with packed `f16x2` instructions. On the VM and
/// the simulator, both weight orders, against the host's f16 arithmetic; the integer formats
/// and the floats whose values f16 holds.
#[test]
fn half_precision_dequantization_matches_the_f16_definition() {
    let mut rng = Rng(0x0f16_0f16_0f16_0f16);
    for w in ["u1", "u2", "u4", "i4", "u3", "i3", "u5", "i6", "u7", "u8", "i8", "f3e1m1", "f4e2m1", "f5e2m2", "f6e3m2", "f6e2m3", "f7e3m3", "f8e4m3fn", "f8e5m2"] {
        let w = DType::from_name(w).unwrap();
        for (order, backend) in [(WeightOrder::RowMajor, Backend::Simt), (WeightOrder::Fragment, Backend::Simt), (WeightOrder::Fragment, Backend::Vm)] {
            check_on(w, DType::F16, 9, 140, 129, rng.next(), backend, order, DType::F16, DType::F16, DType::F16);
        }
    }
}

/// Integer zero points (`-D Z=u4`, as GPTQ/AWQ checkpoints store them), random over their
/// whole range: with f16 or bf16 dequantization the compiler folds them into the magic-number
/// correction of integer codes where every step stays exact, and keeps two steps where it
/// would not (bf16 with u8 zero points). Against the host's arithmetic.
#[test]
fn integer_zero_points_match_the_definition() {
    let mut rng = Rng(0x2e50_2e50_0000_0001);
    for (w, zero, d, act, backend, order) in [
        ("u4", "u4", "f16", "f16", Backend::Simt, WeightOrder::Fragment),
        ("u4", "u4", "f16", "f16", Backend::Vm, WeightOrder::Fragment),
        ("i4", "i8", "f16", "f16", Backend::Simt, WeightOrder::Fragment),
        ("u1", "u4", "f16", "f16", Backend::Simt, WeightOrder::Fragment),
        ("i2", "i4", "bf16", "bf16", Backend::Simt, WeightOrder::Fragment),
        ("u2", "u8", "bf16", "bf16", Backend::Simt, WeightOrder::Fragment),
        ("u3", "u4", "f16", "f16", Backend::Simt, WeightOrder::Fragment),
        ("i5", "i4", "f16", "f16", Backend::Simt, WeightOrder::Fragment),
        ("u6", "u8", "f16", "f16", Backend::Vm, WeightOrder::Fragment),
        ("u3", "u4", "bf16", "bf16", Backend::Simt, WeightOrder::Fragment),
        // 8-bit codes to bf16 through f32, the zero point in the f32 subtraction.
        ("u8", "u8", "bf16", "bf16", Backend::Simt, WeightOrder::Fragment),
        ("i8", "i4", "bf16", "bf16", Backend::Simt, WeightOrder::Fragment),
        ("i8", "u8", "bf16", "bf16", Backend::Vm, WeightOrder::Fragment),
        ("u4", "u8", "f16", "f16", Backend::Simt, WeightOrder::RowMajor),
        ("u4", "u4", "f32", "f16", Backend::Vm, WeightOrder::Split(2)),
        ("u4", "u4", "f16", "f16", Backend::Simt, WeightOrder::Split(3)),
    ] {
        let [w, zero, d, act] = [w, zero, d, act].map(|n| DType::from_name(n).unwrap());
        check_on(w, DType::F16, 5, 140, 300, rng.next(), backend, order, d, act, zero);
    }
}

/// ptxas accepts the dequantization paths of the fragment kernels for both architectures:
/// every format of `half_precision_dequantization_matches_the_f16_definition` in f16 (codes
/// from their words, the interleaved pairs, the packed special codes, the folded f16 zero
/// points of floats), IEEE-special floats, and integer zero points folded into the magic
/// numbers, in `qmatmul_fragment`, `qmatmul_split` and `qmatmul`.
#[test]
fn half_precision_dequantization_assembles() {
    if !tl_tests::ptxas_available("qmatmul f16 dequantization") {
        return;
    }
    let mut configs: Vec<(&str, [&str; 4])> = ["u1", "u2", "u4", "i4", "u3", "i3", "u5", "i5", "u6", "i6", "u7", "i7", "u8", "i8", "f3e1m1", "f4e2m1", "f5e2m2", "f6e3m2", "f7e3m3", "f8e4m3fn", "f8e5m2", "f8e4m3"]
        .into_iter()
        .map(|w| ("qmatmul_fragment", [w, "f16", "f16", "f16"]))
        .collect();
    configs.extend([
        ("qmatmul_fragment", ["u4", "f16", "f16", "u4"]),
        ("qmatmul_fragment", ["i2", "bf16", "bf16", "i4"]),
        ("qmatmul_fragment", ["i3", "bf16", "bf16", "i4"]),
        ("qmatmul_fragment", ["u8", "bf16", "bf16", "u8"]),
        ("qmatmul_fragment", ["i8", "bf16", "bf16", "i4"]),
        ("qmatmul_split", ["u5", "f16", "f16", "u4"]),
        ("qmatmul_fragment", ["f8e5m2", "bf16", "bf16", "f16"]),
        ("qmatmul_split", ["u4", "f16", "f16", "u4"]),
        ("qmatmul", ["u4", "f16", "f16", "u8"]),
    ]);
    for (file, [w, d, act, zero]) in configs {
        let consts = [("W", w), ("D", d), ("A", act), ("Z", zero)].map(|(n, t)| (n.to_string(), ConstValue::DType(DType::from_name(t).unwrap())));
        let kernel = module_of(file).kernel(Some(file), &consts).unwrap_or_else(|e| panic!("{file} {w}: {e}"));
        let v128 = kernel.assumptions(&["m%128,n%128,k%128".into()]).unwrap();
        for arch in Arch::ALL {
            let ptx = kernel.variant_ptx(&v128, arch).unwrap_or_else(|e| panic!("{file} {w} {}: {e}", arch.name()));
            ptxas::assemble(&ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected {file} W={w} D={d} A={act} Z={zero} for {}: {e}", arch.name()));
        }
    }
}

/// The count of packed half-precision instructions of each name in the PTX of
/// `qmatmul_fragment` (n and k multiples of 128, sm_80).
fn packed_instruction_counts(consts: &[(&str, &str)]) -> std::collections::HashMap<String, usize> {
    let consts: Vec<(String, ConstValue)> = consts.iter().map(|(n, t)| (n.to_string(), ConstValue::DType(DType::from_name(t).unwrap()))).collect();
    let kernel = module_of("qmatmul_fragment").kernel(None, &consts).unwrap_or_else(|e| panic!("{e}"));
    let variant = kernel.assumptions(&["n%128,k%128".into()]).unwrap();
    let ptx = kernel.variant_ptx(&variant, Arch::Sm80).unwrap_or_else(|e| panic!("{e}"));
    let mut counts = std::collections::HashMap::new();
    for line in ptx.lines() {
        if let Some(name) = line.split_whitespace().next().filter(|n| n.ends_with("f16x2") || n.starts_with("prmt") || n.starts_with("lop3")) {
            *counts.entry(name.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// u4 weights in fragment order with f16 dequantization: each pair of codes sits 16 bits apart
/// in its word, so one `lop3` makes both halves (no `prmt`), and integer zero points fold into
/// the correction: per k tile, each thread's 32 pairs take one `lop3`, one subtraction or
/// `fma`, and one multiplication by the scale (2 instructions per weight at most, shifts
/// included), where f16 zero points need a second subtraction per pair.
#[test]
fn u4_fragment_dequantization_takes_two_instructions_per_weight() {
    let folded = packed_instruction_counts(&[("W", "u4"), ("D", "f16"), ("Z", "u4")]);
    let unfolded = packed_instruction_counts(&[("W", "u4"), ("D", "f16"), ("Z", "f16")]);
    let get = |c: &std::collections::HashMap<String, usize>, n: &str| c.get(n).copied().unwrap_or(0);
    let corrections = |c: &std::collections::HashMap<String, usize>| get(c, "sub.rn.f16x2") + get(c, "fma.rn.f16x2") + get(c, "add.rn.f16x2");
    // 32 pairs per thread and tile (64 × 128 / 128 threads / 2), plus the corrections of
    // each column (4 columns × 2 bit positions of a pair in its byte) and the zero points' own
    // conversion (2 pairs).
    assert!(corrections(&folded) <= 32 + 8 + 2, "folded zero points: {folded:?}");
    assert!(corrections(&unfolded) >= 64, "f16 zero points: {unfolded:?}");
    assert_eq!(get(&folded, "mul.rn.f16x2"), 32, "{folded:?}");
    // One lop3 per pair (the u4 zero points' own conversion adds at most a few), no prmt per pair.
    assert!((32..=36).contains(&get(&folded, "lop3.b32")), "{folded:?}");
    assert!(get(&folded, "prmt.b32") <= 4, "{folded:?}");
}

/// Infinity and NaN weight codes in fragment order: the fast casts mark them in the placed
/// patterns (an all-ones field carries into the exponent above it), where the zero point and
/// the scale keep them. Every special code of the format, each in a column of its own, at a
/// random row; on the VM and the simulator against f64 arithmetic, where a column with an
/// infinity gives infinities of the activation's sign and one with a NaN gives NaN.
#[test]
fn special_weight_codes_in_fragment_order() {
    let mut rng = Rng(0x5eed_0f_1f_0000_0003);
    for (w, d) in [("f8e4m3fn", "f16"), ("f8e4m3", "f16"), ("f8e5m2", "f16"), ("f8e4m3", "bf16"), ("f8e5m2", "bf16"), ("f8e4m3fn", "bf16")] {
        let [w, d] = [w, d].map(|n| DType::from_name(n).unwrap());
        let consts: Vec<(String, ConstValue)> = [("W", w), ("D", d), ("A", d), ("S", d), ("Z", d)].map(|(n, t)| (n.to_string(), ConstValue::DType(t))).into_iter().collect();
        let kernel = module_of("qmatmul_fragment").kernel(None, &consts).unwrap_or_else(|e| panic!("{w}: {e}"));
        let (m, n, k) = (3usize, 140usize, 200usize);
        let specials: Vec<u64> = (0..1u64 << w.bits()).filter(|&c| !w.decode(c).is_finite()).collect();
        assert!(!specials.is_empty() && specials.len() < n);
        let a = HostTensor::from_f64(d, &[m, k], &(0..m * k).map(|_| {
            let x = 0.25 + rng.unit().abs();
            if rng.next() % 2 == 0 { x } else { -x }
        }).collect::<Vec<_>>());
        let mut b = weights(&mut rng, w, k, n);
        for (j, &code) in specials.iter().enumerate() {
            b.set_code((rng.next() as usize % k) * n + j, code);
        }
        let groups = k.div_ceil(128);
        let scales = HostTensor::from_f64(d, &[groups, n], &(0..groups * n).map(|_| (1.0 + rng.unit().abs()) / w.max_value()).collect::<Vec<_>>());
        let zero_points = HostTensor::from_f64(d, &[groups, n], &(0..groups * n).map(|_| rng.unit()).collect::<Vec<_>>());
        let ordered = tl_stdlib::quant::to_fragment_order(&b, tl_stdlib::quant::FragmentTile::new(64, 128).unwrap()).unwrap();
        for backend in [Backend::Vm, Backend::Simt] {
            let mut args = vec![
                Arg::scalar(m as i64),
                Arg::scalar(n as i64),
                Arg::scalar(k as i64),
                a.clone().into(),
                ordered.clone().into(),
                scales.clone().into(),
                zero_points.clone().into(),
                HostTensor::filled(d, &[m, n], 0.0).into(),
            ];
            kernel.launch(backend, &mut args).unwrap_or_else(|e| panic!("{w} on {}: {e}", backend.name()));
            let got = args[7].tensor().unwrap();
            for i in 0..m {
                for j in 0..n {
                    let (mut exact, mut magnitude) = (0.0f64, 0.0f64);
                    for p in 0..k {
                        let g = p / 128;
                        let weight = d.round(d.round(d.round(b.get(p * n + j)) - zero_points.get(g * n + j)) * scales.get(g * n + j));
                        exact += a.get(i * k + p) * weight;
                        magnitude += (a.get(i * k + p) * weight).abs();
                    }
                    let value = got.get(i * n + j);
                    let place = format!("{w} with {d} on {}: c[{i}, {j}] = {value}, reference {exact}", backend.name());
                    if exact.is_nan() {
                        assert!(value.is_nan(), "{place}");
                    } else if exact.is_infinite() {
                        assert_eq!(value, exact, "{place}");
                    } else {
                        let half_ulp = if d == DType::BF16 { 2f64.powi(-8) } else { 2f64.powi(-11) };
                        let tolerance = k as f64 * 2f64.powi(-24) * magnitude * 2.0 + exact.abs() * half_ulp + 2f64.powi(-25);
                        assert!((value - exact).abs() <= tolerance, "{place} (tolerance {tolerance:e})");
                    }
                }
            }
            // Every column with a special code is not finite in every row.
            for j in 0..specials.len() {
                assert!((0..m).all(|i| !got.get(i * n + j).is_finite()), "{w} with {d} on {}: column {j}", backend.name());
            }
        }
    }
}

/// Floats of 3, 5, 6 and 7 bits, whose two codes of a pair cannot sit 16 bits apart, take
/// each half's fields from a window of its own, joined by one `prmt`: no per-code unpacking
/// (`bfe`), one `prmt` and one `lop3` per pair.
#[test]
fn odd_width_float_pairs_take_one_prmt_and_one_lop3() {
    let get = |c: &std::collections::HashMap<String, usize>, n: &str| c.get(n).copied().unwrap_or(0);
    for w in ["f3e1m1", "f5e2m2", "f6e3m2", "f6e2m3", "f7e3m3"] {
        let counts = packed_instruction_counts(&[("W", w), ("D", "f16")]);
        assert!((32..=36).contains(&get(&counts, "prmt.b32")), "{w}: {counts:?}");
        assert!((32..=36).contains(&get(&counts, "lop3.b32")), "{w}: {counts:?}");
        assert_eq!(get(&counts, "mul.rn.f16x2"), 32, "{w}: {counts:?}");
    }
}

/// f8e5m2 codes are the top bytes of their f16 patterns: one `prmt` per pair puts both in
/// place over zero bytes, with no mask or shift.
#[test]
fn f8e5m2_pairs_take_one_prmt() {
    let counts = packed_instruction_counts(&[("W", "f8e5m2"), ("D", "f16")]);
    let get = |n: &str| counts.get(n).copied().unwrap_or(0);
    assert!((32..=36).contains(&get("prmt.b32")), "{counts:?}");
    assert!(get("lop3.b32") <= 4, "{counts:?}");
    assert_eq!(get("mul.rn.f16x2"), 32, "{counts:?}");
}

/// Codes of 3, 5, 6 and 7 bits in fragment order lie about 16 bits apart (12, 20, 12 and 14
/// bits), so a 32-bit window of each thread's run (a word, shifted, or two funnel-shifted)
/// holds the two codes of a pair inside their halves: one `lop3` per pair, no `prmt`, and
/// with integer zero points one correction per pair, as for u4.
#[test]
fn odd_width_fragment_dequantization_takes_one_lop3_per_pair() {
    let get = |c: &std::collections::HashMap<String, usize>, n: &str| c.get(n).copied().unwrap_or(0);
    for (w, signed) in [("u3", "i3"), ("u5", "i5"), ("u6", "i6"), ("u7", "i7")] {
        for w in [w, signed] {
            let counts = packed_instruction_counts(&[("W", w), ("D", "f16"), ("Z", "u4")]);
            let corrections = get(&counts, "sub.rn.f16x2") + get(&counts, "fma.rn.f16x2") + get(&counts, "add.rn.f16x2");
            // 32 pairs per thread and tile, and per column at most the corrections of 4 places
            // of a pair in its window and the zero points' own conversion.
            assert!(corrections <= 32 + 16 + 2, "{w}: {counts:?}");
            assert_eq!(get(&counts, "mul.rn.f16x2"), 32, "{w}: {counts:?}");
            assert!((32..=36).contains(&get(&counts, "lop3.b32")), "{w}: {counts:?}");
            assert!(get(&counts, "prmt.b32") <= 4, "{w}: {counts:?}");
        }
    }
}

/// The fragment kernels' own references (`reference` blocks, which undo the fragment order
/// with the kernels' `PW`) agree with the kernels for integer codes of every width, whose
/// groups of pairs differ (16 / 8 / 4 / 2 pairs), on the VM at random shapes.
#[test]
fn fragment_kernels_match_their_references_for_every_width() {
    for file in ["qmatmul_fragment", "qmatmul_split"] {
        let module = module_of(file);
        for w in ["u1", "u2", "u3", "i3", "u4", "u5", "i5", "u6", "i6", "u7", "i7", "u8"] {
            let consts = [("W".to_string(), ConstValue::DType(DType::from_name(w).unwrap()))];
            let kernel = module.kernel(Some(file), &consts).unwrap_or_else(|e| panic!("{file} {w}: {e}"));
            let mut args = kernel.random_args(7, &[]).unwrap();
            let report = kernel.check(Backend::Vm, &mut args).unwrap_or_else(|e| panic!("{file} {w}: {e}"));
            assert!(report.passed(), "{file} W={w}: {report:?}");
        }
    }
}

#[test]
fn mx_block_scaled_matmul_with_e8m0_scales() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for w in [DType::F4E2M1, DType::F6E2M3, DType::F6E3M2, DType::F8E4M3FN, DType::F8E5M2] {
        check(w, DType::E8M0, 16, 41, 97, rng.next());
    }
}

#[test]
fn qmatmul_ptx_assembles_for_every_format() {
    if !tl_tests::ptxas_available("qmatmul") {
        return;
    }
    let mut formats: Vec<(DType, DType)> = weight_formats().into_iter().map(|w| (w, DType::F16)).collect();
    formats.push((DType::F4E2M1, DType::E8M0));
    for file in ["qmatmul", "qmatmul_fragment"] {
        let module = module_of(file);
        for &(w, s) in &formats {
            let consts = [("W".to_string(), ConstValue::DType(w)), ("S".to_string(), ConstValue::DType(s))];
            let kernel = module.kernel(None, &consts).unwrap_or_else(|e| panic!("{w}: {e}"));
            // The unspecialized variant, the one for m, n, k multiples of 128 (vector
            // accesses as wide as the formats allow), and m, n, k multiples
            // of 16 (some copies tested for alignment at run time).
            let variants = ["m%128,n%128,k%128", "m%16,n%16,k%16"].map(|v| kernel.assumptions(&[v.into()]).unwrap());
            for arch in Arch::ALL {
                let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{w} {}: {e}", arch.name()));
                ptxas::assemble(ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected {file} W={w} S={s} for {}: {e}", arch.name()));
                for variant in &variants {
                    let ptx = kernel.variant_ptx(variant, arch).unwrap_or_else(|e| panic!("{w} {}: {e}", arch.name()));
                    ptxas::assemble(&ptx, arch)
                        .unwrap_or_else(|e| panic!("ptxas rejected {file} W={w} S={s} ({variant:?}) for {}: {e}", arch.name()));
                }
            }
        }
    }
}

/// ptxas accepts both split-K kernels for a sample of formats, in f32 and f16, on both
/// architectures.
#[test]
fn split_k_ptx_assembles() {
    if !tl_tests::ptxas_available("qmatmul_split") {
        return;
    }
    let module = module_of("qmatmul_split");
    for (w, d) in [("u4", "f16"), ("u4", "f32"), ("i3", "f32"), ("f4e2m1", "f16"), ("u8", "f32")] {
        let consts = [("W".to_string(), ConstValue::DType(DType::from_name(w).unwrap())), ("D".to_string(), ConstValue::DType(DType::from_name(d).unwrap()))];
        for (name, consts) in [("qmatmul_split", &consts[..]), ("qmatmul_split_reduce", &[][..])] {
            let kernel = module.kernel(Some(name), consts).unwrap_or_else(|e| panic!("{name} {w}: {e}"));
            let v128 = kernel.assumptions(&["m%128,n%128,k%128".into()]).ok();
            for arch in Arch::ALL {
                let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{name} {w} {}: {e}", arch.name()));
                ptxas::assemble(ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected {name} W={w} D={d} for {}: {e}", arch.name()));
                if let Some(v) = &v128 {
                    let ptx = kernel.variant_ptx(v, arch).unwrap_or_else(|e| panic!("{name} {w}: {e}"));
                    ptxas::assemble(&ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected {name} W={w} D={d} (% 128) for {}: {e}", arch.name()));
                }
            }
        }
    }
}

/// End to end with the host quantizer: quantize an f32 matrix (per-group symmetric integer
/// codes, and MX block scaling), run the kernel on the VM, compare with `a · dequantize(q)`.
#[test]
fn host_quantized_weights_run_through_the_kernel() {
    use tl_stdlib::quant::{self, Group, MxScheme, QuantScheme};
    const G: usize = 64;
    let (m, n, k) = (5, 37, 129);
    let mut rng = Rng(0x0dd_ba11);
    let weights: Vec<f32> = (0..k * n).map(|_| rng.unit() as f32).collect();
    let a = HostTensor::from_f64(DType::F16, &[m, k], &(0..m * k).map(|_| rng.unit()).collect::<Vec<_>>());
    let schemes = [
        quant::quantize(&weights, [k, n], &QuantScheme::symmetric(DType::U4, Group::Size(G), DType::F16)).unwrap(),
        quant::quantize(&weights, [k, n], &QuantScheme::symmetric(DType::I3, Group::Size(G), DType::F16)).unwrap(),
        quant::mx_quantize(&weights, [k, n], &MxScheme { block_size: G, ..MxScheme::ocp(DType::F4E2M1) }).unwrap(),
    ];
    for q in schemes {
        let (w, s) = (q.codes().dtype, q.scales().dtype);
        let groups = q.group_count();
        let zero_points: Vec<f64> = (0..groups * n).map(|i| q.zero_point(i / n, i % n)).collect();
        let consts = [("W".to_string(), ConstValue::DType(w)), ("S".to_string(), ConstValue::DType(s))];
        let kernel = module().kernel(None, &consts).unwrap_or_else(|e| panic!("{w}: {e}"));
        let mut args = vec![
            Arg::scalar(m as i64),
            Arg::scalar(n as i64),
            Arg::scalar(k as i64),
            a.clone().into(),
            q.codes().clone().into(),
            q.scales().clone().into(),
            HostTensor::from_f64(DType::F16, &[groups, n], &zero_points).into(),
            HostTensor::filled(DType::F16, &[m, n], f64::NAN).into(),
        ];
        kernel.launch(Backend::Vm, &mut args).unwrap_or_else(|e| panic!("{w}: {e}"));
        let dequantized = quant::dequantize(&q);
        let got = args[7].tensor().unwrap();
        for i in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k).map(|p| a.get(i * k + p) * dequantized[p * n + j]).sum();
                let magnitude: f64 = (0..k).map(|p| (a.get(i * k + p) * dequantized[p * n + j]).abs()).sum();
                // The kernel rounds each dequantized weight to f16 (relative error at most 2^-11),
                // accumulates in f32 and rounds the result to f16.
                let tolerance = magnitude * 2f64.powi(-11) + k as f64 * 2f64.powi(-23) * magnitude + exact.abs() * 2f64.powi(-11) + 2f64.powi(-25);
                let value = got.get(i * n + j);
                assert!((value - exact).abs() <= tolerance, "{w}/{s}: c[{i}, {j}] = {value}, reference {exact}");
            }
        }
    }
}

/// A tile whose copy cannot be cut into byte-filling runs for every thread (48 × 32 u1 codes
/// per k tile: 12 codes a thread) is an error at the copy, not an internal error; a 64 × 32
/// tile of the same codes compiles.
#[test]
fn copies_that_do_not_split_into_bytes_are_errors_at_the_copy() {
    let consts = |bk: i64| -> Vec<(String, ConstValue)> {
        [("BK", bk), ("BN", 32), ("G", bk)]
            .map(|(n, v)| (n.to_string(), ConstValue::Int(v)))
            .into_iter()
            .chain([("W".to_string(), ConstValue::DType(DType::U1))])
            .collect()
    };
    let error = module_of("qmatmul_fragment").kernel(None, &consts(48)).err().expect("u1 tiles of 48 × 32 do not split into bytes").to_string();
    assert!(error.contains("cannot be spread over the block's 128 threads in runs that fill whole bytes"), "{error}");
    assert!(!error.contains("internal"), "{error}");
    assert!(error.contains("copy_async(sb"), "the error shows the copy: {error}");
    module_of("qmatmul_fragment").kernel(None, &consts(64)).unwrap_or_else(|e| panic!("u1 at 64 × 32: {e}"));
}

/// `[k, n]` weights at the decode tiles (BN = 128, BK = 64): the accumulator interleaves the
/// `mma` column tiles (`plan::MmaTiling`), so each thread's B fragments are consecutive
/// columns of a row and come from one piece of the packed tile; in f16 the pieces of rows k
/// and k + 1 are joined into one word, so the pairs take the fast casts of fragment order. On
/// the simulator (the generated code) and the VM against the host product, for codes that
/// divide 16 bits and others, in f32 and f16, with ragged n and k.
#[test]
fn row_major_weights_at_decode_tiles() {
    let mut rng = Rng(0x0dec_0de0_7113_5eed);
    for (w, d, backend) in [
        ("u4", "f32", Backend::Simt),
        ("u4", "f16", Backend::Simt),
        ("u2", "f16", Backend::Simt),
        ("u8", "f32", Backend::Simt),
        ("i4", "f16", Backend::Simt),
        ("f4e2m1", "f16", Backend::Simt),
        ("f8e4m3fn", "f32", Backend::Simt),
        ("f8e4m3fn", "f16", Backend::Simt),
        ("f8e5m2", "f16", Backend::Simt),
        ("u8", "f16", Backend::Simt),
        ("i8", "f16", Backend::Simt),
        ("u6", "f16", Backend::Simt),
        ("u3", "f16", Backend::Simt),
        ("u1", "f16", Backend::Vm),
    ] {
        let [w, d] = [w, d].map(|n| DType::from_name(n).unwrap());
        check_on(w, DType::F16, 5, 250, 200, rng.next(), backend, WeightOrder::RowMajorWide, d, DType::F16, DType::F16);
    }
}

/// The PTX of the `[k, n]` kernel at the decode tiles reads u4 codes from shared memory in
/// 16-bit pieces, four codes of one row each (16 per k tile and thread: 64 codes), never a
/// byte at a time.
#[test]
fn row_major_u4_codes_come_from_shared_memory_in_16_bit_pieces() {
    let consts: Vec<(String, ConstValue)> = [("W", "u4"), ("D", "f16")]
        .iter()
        .map(|(n, t)| (n.to_string(), ConstValue::DType(DType::from_name(t).unwrap())))
        .chain([("BN", 128), ("BK", 64), ("G", 128)].map(|(n, v)| (n.to_string(), ConstValue::Int(v))))
        .collect();
    let kernel = module().kernel(None, &consts).unwrap_or_else(|e| panic!("{e}"));
    let variant = kernel.assumptions(&["n%128,k%128".into()]).unwrap();
    let ptx = kernel.variant_ptx(&variant, Arch::Sm80).unwrap_or_else(|e| panic!("{e}"));
    let count = |prefix: &str| ptx.lines().filter(|l| l.split_whitespace().next().is_some_and(|op| op.starts_with(prefix))).count();
    assert_eq!(count("ld.shared.b8") + count("ld.shared.u8"), 0, "byte loads of the codes");
    assert_eq!(count("ld.shared.b16") + count("ld.shared.u16"), 16, "one 16-bit load per row and column strip");
}
