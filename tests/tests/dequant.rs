//! Fast dequantizing casts to f16 and bf16: from integer codes of 1 to 8 bits (signed and
//! unsigned), from the sub-byte floats (`fNeXmY`), the 8-bit floats, `ueXmY` and `e8m0`. Every code of
//! every such format goes through the `dequant` kernels (`tests/kernels/low_precision.tl`) on
//! the VM and on the SIMT simulator (which runs the generated `prmt`/`lop3` code); the outputs
//! must be bit-identical to each other and to the f16/bf16 bit patterns of the values, written
//! out here from the format definitions (not through `compiler::dtype`).

use tl_compiler::backend::{Arch, ptxas};
use tl_compiler::dtype::DType;
use tl_compiler::ir::ConstValue;
use tl_runtime::{Arg, Backend, HostTensor, Kernel, Module};
use tl_tests::{repo_root, Rng};

fn module() -> Module {
    Module::from_file(repo_root().join("tests/kernels/low_precision.tl")).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"))
}

fn int_formats() -> Vec<DType> {
    (1..=8).flat_map(|bits| [format!("u{bits}"), format!("i{bits}")]).map(|n| DType::from_name(&n).unwrap_or_else(|| panic!("{n}"))).collect()
}

/// Every sub-byte float `fNeXmY` (3 ≤ N ≤ 7, X ≥ 1), with its exponent and mantissa widths.
fn finite_float_formats() -> Vec<(DType, u32, u32)> {
    let mut out = Vec::new();
    for n in 3..=7u32 {
        for x in 1..n {
            let y = n - 1 - x;
            let name = format!("f{n}e{x}m{y}");
            out.push((DType::from_name(&name).unwrap_or_else(|| panic!("{name}")), x, y));
        }
    }
    out
}

/// The value of `code` in the sign/exponent/mantissa format with `x` exponent bits (bias
/// 2^(x−1) − 1), `y` mantissa bits, subnormals at exponent 0 and no special codes.
fn float_value(code: u64, x: u32, y: u32) -> f64 {
    let bias = (1i32 << (x - 1)) - 1;
    let sign = if (code >> (x + y)) & 1 == 1 { -1.0 } else { 1.0 };
    let e = ((code >> y) & ((1 << x) - 1)) as i32;
    let m = (code & ((1 << y) - 1)) as f64;
    let magnitude = if e == 0 { m * 2f64.powi(1 - bias - y as i32) } else { 2f64.powi(e - bias) * (1.0 + m / 2f64.powi(y as i32)) };
    sign * magnitude
}

/// How a format uses its codes beyond sign, exponent and mantissa.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Codes {
    /// IEEE: exponent all ones is ±infinity (mantissa 0) or NaN.
    Ieee,
    /// Magnitude all ones is NaN, there is no infinity.
    NanAtAllOnes,
    /// `e8m0`: code c is 2^(c − 127), 255 is NaN.
    PowersOfTwo,
}

/// The 8-bit and unsigned float formats: name, exponent bits, mantissa bits, signed, codes,
/// and whether a fast cast to f16 and to bf16 is expected (f16 has 5 exponent bits: wider
/// source exponents reach beyond it, except f8e5m2's, which is f16's own).
const SPECIAL_FLOATS: [(&str, u32, u32, bool, Codes, bool, bool); 9] = [
    ("f8e4m3fn", 4, 3, true, Codes::NanAtAllOnes, true, true),
    ("f8e5m2", 5, 2, true, Codes::Ieee, true, true),
    ("f8e4m3", 4, 3, true, Codes::Ieee, true, true),
    ("f8e3m4", 3, 4, true, Codes::Ieee, true, true),
    ("f8e2m5", 2, 5, true, Codes::Ieee, true, true),
    ("f8e6m1", 6, 1, true, Codes::Ieee, false, true),
    ("ue4m3", 4, 3, false, Codes::NanAtAllOnes, true, true),
    ("ue5m3", 5, 3, false, Codes::NanAtAllOnes, false, true),
    ("e8m0", 8, 0, false, Codes::PowersOfTwo, false, true),
];

/// The value of `code` in a format of [`SPECIAL_FLOATS`].
fn special_float_value(code: u64, x: u32, y: u32, signed: bool, codes: Codes) -> f64 {
    if codes == Codes::PowersOfTwo {
        return if code == 255 { f64::NAN } else { 2f64.powi(code as i32 - 127) };
    }
    let magnitude = code & ((1 << (x + y)) - 1);
    let sign = if signed && (code >> (x + y)) & 1 == 1 { -1.0 } else { 1.0 };
    let (e, m) = (magnitude >> y, magnitude & ((1 << y) - 1));
    match codes {
        Codes::Ieee if e == (1 << x) - 1 => if m == 0 { sign * f64::INFINITY } else { f64::NAN },
        Codes::NanAtAllOnes if magnitude == (1 << (x + y)) - 1 => f64::NAN,
        _ => sign * float_value(magnitude, x, y),
    }
}

/// The f16 pattern of a value that f16 holds exactly (normal or subnormal, or ±0).
fn f16_pattern(v: f64) -> u64 {
    let sign = if v.is_sign_negative() { 0x8000 } else { 0 };
    let a = v.abs();
    if a == 0.0 {
        return sign;
    }
    let e = a.log2().floor() as i32;
    let (field, fraction) = if e < -14 { (0, a / 2f64.powi(-24)) } else { ((e + 15) as u64, (a / 2f64.powi(e) - 1.0) * 1024.0) };
    assert!(fraction.fract() == 0.0 && field < 31, "{v} is not exact in f16");
    sign | (field << 10) | fraction as u64
}

/// The f16 pattern of any finite value, rounded to nearest even on the f16 grid (spacing
/// 2^(e − 10) for 2^e ≤ |v| < 2^(e+1), 2^−24 below 2^−14); beyond the largest finite value
/// (65504) it overflows to infinity.
fn f16_rounded(v: f64) -> u64 {
    if v.is_nan() {
        return 0x7e00;
    }
    if v.is_infinite() {
        return if v < 0.0 { 0xfc00 } else { 0x7c00 };
    }
    let a = v.abs();
    if a == 0.0 {
        return f16_pattern(v);
    }
    let spacing = 2f64.powi((a.log2().floor() as i32).max(-14) - 10);
    let r = (a / spacing).round_ties_even() * spacing;
    let sign = if v < 0.0 { 0x8000 } else { 0 };
    if r > 65504.0 { sign | 0x7c00 } else { f16_pattern(v.signum() * r) | sign }
}

/// The bf16 pattern of a value that bf16 holds exactly: the top half of its f32.
fn bf16_pattern(v: f64) -> u64 {
    if v.is_nan() {
        return 0x7fc0;
    }
    let bits = (v as f32).to_bits();
    assert!(v as f32 as f64 == v && bits & 0xffff == 0, "{v} is not exact in bf16");
    (bits >> 16) as u64
}

/// The value of `code` in the integer format `w` (two's complement when signed).
fn int_value(w: DType, code: u64) -> i64 {
    let bits = w.bits();
    let code = code & ((1u64 << bits) - 1);
    if w.is_signed_int() && code >> (bits - 1) == 1 { code as i64 - (1i64 << bits) } else { code as i64 }
}

/// The f16 pattern of an integer of magnitude below 2048 (exact): sign, biased exponent of
/// the leading bit, the bits below it as the mantissa.
fn f16_bits(v: i64) -> u64 {
    let sign = if v < 0 { 0x8000 } else { 0 };
    let a = v.unsigned_abs();
    if a == 0 {
        return sign;
    }
    let e = 63 - a.leading_zeros() as u64;
    sign | ((e + 15) << 10) | ((a - (1 << e)) << (10 - e))
}

/// The bf16 pattern of an integer of magnitude at most 256 (exact): the top half of its f32.
fn bf16_bits(v: i64) -> u64 {
    ((v as f32).to_bits() >> 16) as u64
}

fn kernel(module: &Module, name: &str, w: DType, v: DType, extra: &[(&str, i64)]) -> Kernel {
    let mut consts = vec![("W".to_string(), ConstValue::DType(w)), ("V".to_string(), ConstValue::DType(v))];
    consts.extend(extra.iter().map(|(k, x)| (k.to_string(), ConstValue::Int(*x))));
    module.kernel(Some(name), &consts).unwrap_or_else(|e| panic!("{name} {w} -> {v}: {e}"))
}

/// The tile configurations: inferred layouts, and BM rows of L consecutive elements per
/// thread, with an even (pairs only) and an odd number of registers per thread (the last one
/// without a partner).
const CONFIGS: [(&str, [(&str, i64); 2]); 5] = [
    ("dequant", [("BM", 8), ("BN", 32)]),
    ("dequant", [("BM", 4), ("BN", 128)]),
    ("dequant_rows", [("BM", 2), ("L", 3)]),
    ("dequant_rows", [("BM", 1), ("L", 1)]),
    ("dequant_rows", [("BM", 1), ("L", 3)]),
];

/// Every code of `w`, in random order at a random ragged shape, cast to `v` on the VM and the
/// simulator with every tile configuration; both outputs must hold `expected(code)`.
fn check_every_code(module: &Module, rng: &mut Rng, w: DType, v: DType, expected: impl Fn(u64) -> u64) {
    let count = 1u64 << w.bits();
    for (name, extra) in CONFIGS {
        let k = kernel(module, name, w, v, &extra);
        // Random ragged shapes holding every code at least twice, in a random order.
        let n = 20 + (rng.next() % 140) as usize;
        let m = (2 * count as usize).div_ceil(n) + (rng.next() % 5) as usize;
        let mut order: Vec<u64> = (0..count).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let start = rng.next() as usize;
        let codes: Vec<u64> = (0..m * n).map(|i| order[(start + i) % order.len()]).collect();
        let x = HostTensor::from_codes(w, &[m, n], &codes);
        let mut poison = HostTensor::zeros(v, &[m, n]);
        poison.data.iter_mut().for_each(|b| *b = 0xA5);
        let args = vec![Arg::scalar(m as i64), Arg::scalar(n as i64), x.into(), poison.into()];
        let (mut vm_args, mut simt_args) = (args.clone(), args);
        k.launch(Backend::Vm, &mut vm_args).unwrap_or_else(|e| panic!("{w} -> {v} ({name}) vm: {e}"));
        k.launch(Backend::Simt, &mut simt_args).unwrap_or_else(|e| panic!("{w} -> {v} ({name}) simt: {e}"));
        let (a, b) = (vm_args[3].tensor().unwrap(), simt_args[3].tensor().unwrap());
        // A NaN is any pattern with the exponent all ones and a nonzero mantissa.
        let (exponent, mantissa) = if v == DType::F16 { (0x7c00, 0x03ff) } else { (0x7f80, 0x007f) };
        let is_nan = |p: u64| p & exponent == exponent && p & mantissa != 0;
        for (i, &code) in codes.iter().enumerate() {
            let want = expected(code);
            for (backend, got) in [("vm", a.code(i)), ("simt", b.code(i))] {
                assert!(got == want || (is_nan(got) && is_nan(want)), "{w} -> {v} ({name} {extra:?}), {backend} at {i}: code {code:#x} gave {got:#x}, expected {want:#x}");
            }
        }
    }
}

#[test]
fn every_integer_code_dequantizes_exactly_on_vm_and_simt() {
    let module = module();
    let mut rng = Rng(0x00de_0a47_c0de_5eed);
    for w in int_formats() {
        check_every_code(&module, &mut rng, w, DType::F16, |code| f16_bits(int_value(w, code)));
        check_every_code(&module, &mut rng, w, DType::BF16, |code| bf16_bits(int_value(w, code)));
    }
}

#[test]
fn every_finite_float_code_dequantizes_exactly_on_vm_and_simt() {
    let module = module();
    let mut rng = Rng(0x0f10_a7c0_de5e_ed01);
    let formats = finite_float_formats();
    assert_eq!(formats.len(), 2 + 3 + 4 + 5 + 6);
    for (w, x, y) in formats {
        // Formats with 5 or more exponent bits reach beyond f16 (they take the generic cast).
        check_every_code(&module, &mut rng, w, DType::F16, |code| f16_rounded(float_value(code, x, y)));
        check_every_code(&module, &mut rng, w, DType::BF16, |code| bf16_pattern(float_value(code, x, y)));
    }
}

#[test]
fn every_code_of_the_8_bit_and_unsigned_floats_dequantizes_exactly_on_vm_and_simt() {
    let module = module();
    let mut rng = Rng(0x8b17_f10a_75ee_d002);
    for (name, x, y, signed, codes, _, _) in SPECIAL_FLOATS {
        let w = DType::from_name(name).unwrap_or_else(|| panic!("{name}"));
        let value = |code| special_float_value(code, x, y, signed, codes);
        // e8m0, ue5m3 and f8e6m1 reach beyond f16 (the generic cast rounds them).
        check_every_code(&module, &mut rng, w, DType::F16, |code| f16_rounded(value(code)));
        check_every_code(&module, &mut rng, w, DType::BF16, |code| bf16_pattern(value(code)));
    }
}

#[test]
fn reference_patterns_are_right() {
    // A few patterns known by heart, so that the host references above are not circular.
    assert_eq!(f16_bits(0), 0x0000);
    assert_eq!(f16_bits(1), 0x3c00);
    assert_eq!(f16_bits(-2), 0xc000);
    assert_eq!(f16_bits(3), 0x4200);
    assert_eq!(f16_bits(255), 0x5bf8);
    assert_eq!(f16_bits(-128), 0xd800);
    assert_eq!(f16_bits(1024), 0x6400);
    assert_eq!(bf16_bits(1), 0x3f80);
    assert_eq!(bf16_bits(-128), 0xc300);
    assert_eq!(bf16_bits(255), 0x437f);
    assert_eq!(int_value(DType::from_name("i3").unwrap(), 0b100), -4);
    assert_eq!(int_value(DType::from_name("u3").unwrap(), 0b100), 4);
    assert_eq!(f16_pattern(-0.0), 0x8000);
    assert_eq!(f16_pattern(6.0), 0x4600);
    assert_eq!(f16_pattern(2f64.powi(-24)), 0x0001);
    assert_eq!(f16_pattern(-0.5), 0xb800);
    assert_eq!(f16_rounded(65519.0), 0x7bff);
    assert_eq!(f16_rounded(-65520.0), 0xfc00);
    assert_eq!(f16_rounded(2f64.powi(-25)), 0x0000);
    assert_eq!(f16_rounded(3.0 * 2f64.powi(-25)), 0x0002);
    assert_eq!(f16_rounded(1.0 + 2f64.powi(-11)), 0x3c00);
    assert_eq!(bf16_pattern(-0.0), 0x8000);
    assert_eq!(bf16_pattern(6.0), 0x40c0);
    // f4e2m1: 0b0111 is 6, 0b1001 is −0.5 (subnormal), 0b0010 is 1.
    assert_eq!(float_value(0b0111, 2, 1), 6.0);
    assert_eq!(float_value(0b1001, 2, 1), -0.5);
    assert_eq!(float_value(0b0010, 2, 1), 1.0);
    // f6e3m2: 0b011111 is 2^4 · 1.75 = 28, 0b000001 is 2^-2 · 1/4 = 1/16.
    assert_eq!(float_value(0b011111, 3, 2), 28.0);
    assert_eq!(float_value(0b000001, 3, 2), 0.0625);
    // f8e4m3fn: 0x7e is 448, 0x7f NaN; f8e5m2: 0x7c is +inf, 0xfc −inf, 0x7d NaN, 0x7b 57344.
    assert_eq!(special_float_value(0x7e, 4, 3, true, Codes::NanAtAllOnes), 448.0);
    assert!(special_float_value(0xff, 4, 3, true, Codes::NanAtAllOnes).is_nan());
    assert_eq!(special_float_value(0x7c, 5, 2, true, Codes::Ieee), f64::INFINITY);
    assert_eq!(special_float_value(0xfc, 5, 2, true, Codes::Ieee), f64::NEG_INFINITY);
    assert!(special_float_value(0x7d, 5, 2, true, Codes::Ieee).is_nan());
    assert_eq!(special_float_value(0x7b, 5, 2, true, Codes::Ieee), 57344.0);
    // f8e4m3 (IEEE): 0x77 is 240; ue4m3 (7 bits): 0x7e is 2^8 · 1.75 = 448; e8m0: 127 is 1.
    assert_eq!(special_float_value(0x77, 4, 3, true, Codes::Ieee), 240.0);
    assert_eq!(special_float_value(0x7e, 4, 3, false, Codes::NanAtAllOnes), 448.0);
    assert!(special_float_value(0x7f, 4, 3, false, Codes::NanAtAllOnes).is_nan());
    assert_eq!(special_float_value(127, 8, 0, false, Codes::PowersOfTwo), 1.0);
    assert_eq!(bf16_pattern(2f64.powi(-127)), 0x0040);
    assert_eq!(f16_rounded(f64::NEG_INFINITY), 0xfc00);
}

/// The generated code takes the fast path (a `prmt` per pair of registers, a `lop3` per
/// pair or unpaired register, no conversion instruction) where it is exact, and the generic
/// conversion for u8/i8 → bf16 and for floats with 5 or more exponent bits → f16 (except
/// f8e5m2, whose exponent is f16's).
#[test]
fn dequantizing_casts_use_prmt_and_lop3() {
    let module = module();
    // (format, whether it has a fast cast to f16, to bf16)
    let ints = int_formats().into_iter().map(|w| (w, true, w.bits() <= 7));
    let floats = finite_float_formats().into_iter().map(|(w, x, _)| (w, x <= 4, true));
    let special = SPECIAL_FLOATS.into_iter().map(|(n, _, _, _, _, f16, bf16)| (DType::from_name(n).unwrap(), f16, bf16));
    let mut generic = 0;
    for (w, to_f16, to_bf16) in ints.chain(floats).chain(special) {
        for (v, fast) in [(DType::F16, to_f16), (DType::BF16, to_bf16)] {
            generic += !fast as usize;
            // Three elements per thread: one pair and one register without a partner.
            let lir = kernel(&module, "dequant_rows", w, v, &[("BM", 1), ("L", 3)]).compiled.lir.to_string();
            let (prmts, lop3s) = (lir.matches("prmt(").count(), lir.matches("lop3.").count());
            let int_to_float = lir.lines().any(|l| l.replace("bitcast.", "").contains(&format!("cast.{}", v.name())));
            if fast {
                assert_eq!((prmts, lop3s), (1, 2), "{w} -> {v}:\n{lir}");
                assert!(!int_to_float, "{w} -> {v} converts with a cast:\n{lir}");
            } else {
                assert_eq!((prmts, lop3s), (0, 0), "{w} -> {v}:\n{lir}");
                assert!(int_to_float, "{w} -> {v} has no conversion:\n{lir}");
            }
        }
    }
    // u8 and i8 to bf16; f6e5m0, f7e5m1, f7e6m0, f8e6m1, ue5m3 and e8m0 to f16.
    assert_eq!(generic, 8);
}

#[test]
fn dequantizing_casts_assemble_with_ptxas() {
    if !tl_tests::ptxas_available("dequant") {
        return;
    }
    let module = module();
    for (w, v) in [("u4", "f16"), ("i4", "f16"), ("u8", "f16"), ("i8", "f16"), ("u2", "bf16"), ("i7", "bf16"), ("u8", "bf16"), ("i1", "f16"), ("f4e2m1", "f16"), ("f6e3m2", "bf16"), ("f7e5m1", "f16"), ("f5e4m0", "f16"), ("f8e4m3fn", "f16"), ("f8e5m2", "f16"), ("f8e4m3", "bf16"), ("e8m0", "bf16"), ("ue4m3", "f16")] {
        let (w, v) = (DType::from_name(w).unwrap(), DType::from_name(v).unwrap());
        for (name, extra) in CONFIGS {
            let k = kernel(&module, name, w, v, &extra);
            for arch in Arch::ALL {
                let ptx = k.ptx(arch).unwrap_or_else(|e| panic!("{w} -> {v}: {e}"));
                let fast = match w.float_format() {
                    Some(f) => v == DType::BF16 || f.exponent_bits <= 4 || w == DType::F8E5M2,
                    None => v == DType::F16 || w.bits() <= 7,
                };
                // (With one element per thread there is nothing to pair.)
                let paired = extra != [("BM", 1), ("L", 1)];
                if fast {
                    assert!(ptx.contains("lop3.b32") && (ptx.contains("prmt.b32") || !paired), "{w} -> {v} for {}:\n{ptx}", arch.name());
                }
                ptxas::assemble(ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected {name} {w} -> {v} for {}: {e}", arch.name()));
            }
        }
    }
}
