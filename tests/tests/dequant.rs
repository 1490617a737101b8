//! Fast dequantizing casts: integer codes of 1 to 8 bits (signed and unsigned) to f16 and
//! bf16. Every code of every such format goes through the `dequant` kernels
//! (`tests/kernels/low_precision.tl`) on the VM and on the SIMT simulator (which runs the
//! generated `prmt`/`lop3` code); the outputs must be bit-identical to each other and to the
//! f16/bf16 bit patterns of the integers, written out here from the format definitions.

use tl_compiler::backend::{Arch, ptxas};
use tl_compiler::dtype::DType;
use tl_compiler::ir::ConstValue;
use tl_runtime::{Arg, Backend, HostTensor, Kernel, Module};
use tl_tests::{repo_root, Rng};

fn module() -> Module {
    Module::from_file(repo_root().join("tests/kernels/low_precision.tl")).unwrap_or_else(|e| panic!("{e}"))
}

fn int_formats() -> Vec<DType> {
    (1..=8).flat_map(|bits| [format!("u{bits}"), format!("i{bits}")]).map(|n| DType::from_name(&n).unwrap_or_else(|| panic!("{n}"))).collect()
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

#[test]
fn every_integer_code_dequantizes_exactly_on_vm_and_simt() {
    let module = module();
    let mut rng = Rng(0x00de_0a47_c0de_5eed);
    let mut runs = 0;
    for w in int_formats() {
        let count = 1u64 << w.bits();
        for v in [DType::F16, DType::BF16] {
            for (name, extra) in CONFIGS {
                let k = kernel(&module, name, w, v, &extra);
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
                let args = vec![Arg::Scalar(m as f64), Arg::Scalar(n as f64), x.into(), poison.into()];
                let (mut vm_args, mut simt_args) = (args.clone(), args);
                k.launch(Backend::Vm, &mut vm_args).unwrap_or_else(|e| panic!("{w} -> {v} ({name}) vm: {e}"));
                k.launch(Backend::Simt, &mut simt_args).unwrap_or_else(|e| panic!("{w} -> {v} ({name}) simt: {e}"));
                let (a, b) = (vm_args[3].tensor().unwrap(), simt_args[3].tensor().unwrap());
                for (i, &code) in codes.iter().enumerate() {
                    let value = int_value(w, code);
                    let want = if v == DType::F16 { f16_bits(value) } else { bf16_bits(value) };
                    assert_eq!(a.code(i), want, "{w} -> {v} ({name} {extra:?}), vm at {i}: code {code:#x} = {value}");
                    assert_eq!(b.code(i), want, "{w} -> {v} ({name} {extra:?}), simt at {i}: code {code:#x} = {value}");
                }
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 16 * 2 * CONFIGS.len());
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
}

/// The generated code takes the fast path (a `prmt` per pair of registers, a `lop3` per
/// pair or unpaired register, no int→float conversion) where a magic number is exact, and
/// the generic conversion for u8/i8 → bf16.
#[test]
fn dequantizing_casts_use_prmt_and_lop3() {
    let module = module();
    for w in int_formats() {
        for v in [DType::F16, DType::BF16] {
            let fast = v == DType::F16 || w.bits() <= 7;
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
}

#[test]
fn dequantizing_casts_assemble_with_ptxas() {
    if ptxas::find_ptxas().is_none() {
        println!("skipping ptxas check: ptxas not found (set TL_PTXAS or run scripts/setup.sh)");
        return;
    }
    let module = module();
    for (w, v) in [("u4", "f16"), ("i4", "f16"), ("u8", "f16"), ("i8", "f16"), ("u2", "bf16"), ("i7", "bf16"), ("u8", "bf16"), ("i1", "f16")] {
        let (w, v) = (DType::from_name(w).unwrap(), DType::from_name(v).unwrap());
        for (name, extra) in CONFIGS {
            let k = kernel(&module, name, w, v, &extra);
            for arch in Arch::ALL {
                let ptx = k.ptx(arch).unwrap_or_else(|e| panic!("{w} -> {v}: {e}"));
                let fast = v == DType::F16 || w.bits() <= 7;
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
