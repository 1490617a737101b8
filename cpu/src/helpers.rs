//! The functions compiled code calls for what it does not generate inline: every operation
//! on 16-bit floats and packed pairs, conversions, float min/max/rem, integer division and
//! shifts, the hardware-approximation math, `prmt`/`lop3`, packed bit fields, and atomic
//! additions. Each forwards to `tl_vm::simt::registers`, the simulator's own semantics, so the
//! compiled code computes the simulator's bits by construction.
//!
//! Register values cross as `i64` holding the register's bytes (little-endian, low bytes);
//! operation and type codes are the indices of `lir::UnaryOp::ALL`, `BinaryOp::ALL`,
//! `CmpOp::ALL` and `Ty::ALL`.

use tl_compiler::lir::{BinaryOp, CmpOp, Ty, UnaryOp};
use tl_vm::simt::registers;

pub(crate) fn ty_code(ty: Ty) -> i64 {
    Ty::ALL.iter().position(|&t| t == ty).expect("a register type") as i64
}

fn ty_of(code: i64) -> Ty {
    Ty::ALL[code as usize]
}

pub(crate) fn unary_code(op: UnaryOp) -> i64 {
    UnaryOp::ALL.iter().position(|&o| o == op).expect("a unary op") as i64
}

pub(crate) fn binary_code(op: BinaryOp) -> i64 {
    BinaryOp::ALL.iter().position(|&o| o == op).expect("a binary op") as i64
}

pub(crate) fn cmp_code(op: CmpOp) -> i64 {
    CmpOp::ALL.iter().position(|&o| o == op).expect("a comparison") as i64
}

pub(crate) extern "C" fn unary(op: i64, ty: i64, x: i64) -> i64 {
    registers::unary(UnaryOp::ALL[op as usize], ty_of(ty), x)
}

/// Division or remainder by zero: `*failed` is set to 1 (the caller reports the fault).
pub(crate) extern "C" fn binary(op: i64, ty: i64, x: i64, y: i64, failed: *mut i64) -> i64 {
    match registers::binary(BinaryOp::ALL[op as usize], ty_of(ty), x, y) {
        Some(v) => v,
        None => {
            // SAFETY: the compiled code passes a pointer into its frame.
            unsafe { *failed = 1 };
            0
        }
    }
}

pub(crate) extern "C" fn compare(op: i64, ty: i64, x: i64, y: i64) -> i64 {
    registers::compare(CmpOp::ALL[op as usize], ty_of(ty), x, y)
}

pub(crate) extern "C" fn fma(ty: i64, x: i64, y: i64, z: i64) -> i64 {
    registers::fma(ty_of(ty), x, y, z)
}

/// `flags`: bit 0 `from_unsigned`, bit 1 `to_unsigned`.
pub(crate) extern "C" fn cast(x: i64, from: i64, to: i64, flags: i64) -> i64 {
    registers::cast(x, ty_of(from), ty_of(to), flags & 1 != 0, flags & 2 != 0)
}

pub(crate) extern "C" fn prmt(a: i64, b: i64, selector: i64) -> i64 {
    registers::prmt(a as u32, b as u32, selector as u32) as i32 as i64
}

pub(crate) extern "C" fn lop3(a: i64, b: i64, c: i64, lut: i64) -> i64 {
    registers::lop3(a as u32, b as u32, c as u32, lut as u8) as i32 as i64
}

/// Bits `[bit, bit + bits)` of the buffer at `base` (LSB first), zero-extended; the caller
/// checked that the bytes holding them lie inside it.
pub(crate) extern "C" fn read_bits(base: *const u8, bit: i64, bits: i64) -> i64 {
    let mut out = 0i64;
    for k in 0..bits {
        let b = bit + k;
        // SAFETY: bounds checked by the compiled code before the call.
        let byte = unsafe { *base.add((b / 8) as usize) };
        out |= (((byte >> (b % 8)) & 1) as i64) << k;
    }
    out
}

/// Replaces bits `[bit, bit + bits)` of the buffer at `base` with the low bits of `value`.
pub(crate) extern "C" fn write_bits(base: *mut u8, bit: i64, bits: i64, value: i64) {
    for k in 0..bits {
        let b = bit + k;
        let one = ((value >> k) & 1) as u8;
        // SAFETY: bounds checked by the compiled code before the call.
        unsafe {
            let p = base.add((b / 8) as usize);
            *p = (*p & !(1 << (b % 8))) | (one << (b % 8));
        }
    }
}

/// `*element += value` for a register type `ty` (integers wrap, floats round once); blocks run
/// one after another, so no other access comes between the read and the write.
pub(crate) extern "C" fn atomic_add(element: *mut u8, ty: i64, value: i64) {
    let ty = ty_of(ty);
    let n = ty.bytes();
    let mut bytes = [0u8; 8];
    // SAFETY: bounds checked by the compiled code before the call.
    unsafe { std::ptr::copy_nonoverlapping(element, bytes.as_mut_ptr(), n) };
    let old = i64::from_le_bytes(bytes);
    let sum = registers::binary(BinaryOp::Add, ty, old, value).expect("addition cannot fail");
    let out = sum.to_le_bytes();
    // SAFETY: as above.
    unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), element, n) };
}

/// The symbols compiled code imports, with their addresses.
pub(crate) fn symbols() -> Vec<(&'static str, *const u8)> {
    vec![
        ("tl_cpu_unary", unary as *const u8),
        ("tl_cpu_binary", binary as *const u8),
        ("tl_cpu_compare", compare as *const u8),
        ("tl_cpu_fma", fma as *const u8),
        ("tl_cpu_cast", cast as *const u8),
        ("tl_cpu_prmt", prmt as *const u8),
        ("tl_cpu_lop3", lop3 as *const u8),
        ("tl_cpu_read_bits", read_bits as *const u8),
        ("tl_cpu_write_bits", write_bits as *const u8),
        ("tl_cpu_atomic_add", atomic_add as *const u8),
    ]
}
