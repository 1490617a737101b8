//! Bit operations (`& | ^ ~ << >>`, docs/language.md §5) on every integer width, on the VM and
//! the simulator, against the host's answer. The host works on the raw codes (the bit patterns
//! a tensor stores), where the VM works on values: `<<` keeps the low `width` bits of the
//! shifted code, `>>` shifts the code with the sign bit copied in for signed dtypes, and an
//! amount outside `0 .. width` (a negative amount included) shifts every bit out.

use tl_compiler::dtype::DType;
use tl_compiler::ir::ConstValue;
use tl_runtime::{Arg, Backend, HostTensor, Module, Number};
use tl_tests::Rng;

/// `T` is the integer dtype under test.
const SOURCE: &str = include_str!("../kernels/bit_operations.tl");

const DTYPES: [DType; 16] = [
    DType::U1,
    DType::I1,
    DType::U3,
    DType::I3,
    DType::U4,
    DType::I4,
    DType::Int { signed: true, bits: 7 },
    DType::U8,
    DType::I8,
    DType::U16,
    DType::I16,
    DType::U32,
    DType::I32,
    DType::U64,
    DType::I64,
    DType::Int { signed: false, bits: 5 },
];

fn mask(d: DType) -> u64 {
    tl_compiler::dtype::mask(d.bits())
}

/// The shift amount a code stands for (negative codes of signed dtypes included).
fn amount_of(d: DType, code: u64) -> i64 {
    let w = d.bits();
    if d.is_signed_int() && w < 64 && code >> (w - 1) & 1 == 1 { (code | !mask(d)) as i64 } else { code as i64 }
}

/// The host's answer on codes.
fn shift_left(d: DType, code: u64, amount: i64) -> u64 {
    if !(0..i64::from(d.bits())).contains(&amount) {
        return 0;
    }
    (code << amount) & mask(d)
}

fn shift_right(d: DType, code: u64, amount: i64) -> u64 {
    let w = d.bits();
    let negative = d.is_signed_int() && code >> (w - 1) & 1 == 1;
    let fill = if negative { mask(d) } else { 0 };
    if !(0..i64::from(w)).contains(&amount) {
        return fill;
    }
    // Shift the code, then put the sign bits back above what remains.
    let shifted = code >> amount;
    let filled_bits = if amount == 0 { 0 } else { fill & !(mask(d) >> amount) };
    (shifted | filled_bits) & mask(d)
}

fn codes(t: &HostTensor) -> Vec<u64> {
    (0..t.len()).map(|i| t.code(i)).collect()
}

#[test]
fn bit_operations_agree_with_the_host_on_every_integer_width() {
    let module = Module::from_source("bits.tl", SOURCE).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for d in DTYPES {
        let kernel = module.kernel(None, &[("T".to_string(), ConstValue::DType(d))]).unwrap_or_else(|e| panic!("{d}: {e}"));
        let m = mask(d);
        let x: Vec<u64> = (0..64).map(|_| rng.next() & m).collect();
        let y: Vec<u64> = (0..64).map(|_| rng.next() & m).collect();
        // Amounts: mostly in range, some at and beyond the width, and negative ones.
        let w = u64::from(d.bits());
        let s: Vec<u64> = (0..64)
            .map(|i| match i % 8 {
                6 => (w + rng.next() % 3).min(m) & m,
                7 => m, // -1 for signed dtypes, the largest code for unsigned ones
                _ => rng.next() % w,
            })
            .collect();
        let want_and_or: Vec<u64> = x.iter().zip(&y).map(|(&a, &b)| ((a & b) | (!a & (b ^ a))) & m).collect();
        let want_xor_not: Vec<u64> = x.iter().zip(&y).map(|(&a, &b)| (a ^ !b) & m).collect();
        let want_left: Vec<u64> = x.iter().zip(&s).map(|(&a, &c)| shift_left(d, a, amount_of(d, c))).collect();
        let want_right: Vec<u64> = x.iter().zip(&s).map(|(&a, &c)| shift_right(d, a, amount_of(d, c))).collect();
        let poison = HostTensor::from_codes(d, &[64], &[0x5a5a_5a5a_5a5a_5a5a & m; 64]);
        let args = vec![
            HostTensor::from_codes(d, &[64], &x).into(),
            HostTensor::from_codes(d, &[64], &y).into(),
            HostTensor::from_codes(d, &[64], &s).into(),
            poison.clone().into(),
            poison.clone().into(),
            poison.clone().into(),
            poison.into(),
        ];
        for backend in [Backend::Vm, Backend::Simt] {
            let mut a = args.clone();
            kernel.launch(backend, &mut a).unwrap_or_else(|e| panic!("{d} on {}: {e}", backend.name()));
            let out = |i: usize| codes(a[i].tensor().expect("tensor"));
            let name = backend.name();
            assert_eq!(out(3), want_and_or, "{d} on {name}: & | ~ ^");
            assert_eq!(out(4), want_xor_not, "{d} on {name}: a ^ ~b");
            assert_eq!(out(5), want_left, "{d} on {name}: << by {s:?}");
            assert_eq!(out(6), want_right, "{d} on {name}: >> by {s:?}");
        }
    }
}

/// Scalars shift tiles, compile-time integers fold (`1 << 6` sizes a tile), and bool tiles
/// take `& | ^` as logical operations.
#[test]
fn scalar_amounts_folded_constants_and_bool_masks() {
    let source = "\
kernel k(x: global u32[64], k: u32, y: global mut u32[64], m: global mut bool[64]) grid(1) warps(1) {
    let a = load(x, [0], [1 << 6]);
    store(y, (a >> k) & ((1 << 12) - 1), [0]);
    store(m, (a > 100) & (a < 5000) ^ (a == 7) | (a >> 31 == 1), [0]);
}
";
    let kernel = Module::from_source("k.tl", source).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(77);
    let x: Vec<u64> = (0..64).map(|i| if i % 9 == 0 { 7 } else { rng.next() & 0xffff_ffff >> (i % 32) }).collect();
    let k = 5u64;
    let want_y: Vec<u64> = x.iter().map(|&a| (a >> k) & 0xfff).collect();
    let want_m: Vec<u64> = x.iter().map(|&a| u64::from((((a > 100) & (a < 5000)) ^ (a == 7)) | (a >> 31 == 1))).collect();
    for backend in [Backend::Vm, Backend::Simt] {
        let mut a = vec![
            HostTensor::from_codes(DType::U32, &[64], &x).into(),
            Arg::Scalar(Number::Int(k as i128)),
            HostTensor::from_codes(DType::U32, &[64], &[0xdead_beef; 64]).into(),
            HostTensor::from_codes(DType::Bool, &[64], &[1; 64]).into(),
        ];
        kernel.launch(backend, &mut a).unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        assert_eq!(codes(a[2].tensor().unwrap()), want_y, "{}", backend.name());
        assert_eq!(codes(a[3].tensor().unwrap()), want_m, "{}", backend.name());
    }
}

/// A reference block computes the same bit operations on exact integers (no width: `<<` is a
/// multiplication by a power of two, so the reference masks where the kernel wraps).
#[test]
fn references_state_bit_operations() {
    let source = "\
kernel k(x: global u8[32], y: global mut u8[32]) grid(1) warps(1) {
    let a = load(x, [0], [32]);
    store(y, (a << 3) ^ (a >> 2) | ~a & 0x11, [0]);
}
reference k {
    y = ((x << 3) & 255) ^ (x >> 2) | (~x & 0x11);
}
";
    let kernel = Module::from_source("k.tl", source).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"));
    for seed in 0..3 {
        let args = kernel.random_args(seed, &[]).unwrap();
        for backend in [Backend::Vm, Backend::Simt] {
            let report = kernel.check(backend, &mut args.clone()).unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
            assert!(report.passed(), "{}: {report:?}", backend.name());
        }
    }
}
