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

/// Locks for atomic additions, chosen by address: additions to one element from blocks on
/// several threads take the same lock, so none comes between another's read and write.
static ATOMIC_LOCKS: [std::sync::Mutex<()>; 64] = [const { std::sync::Mutex::new(()) }; 64];

/// One line of `print` statement `id` (`Printer::prints`): `count` coordinates at `coords`
/// and the value's bits (an f64 or an i64, as the statement says), for the frame's block.
pub(crate) extern "C" fn print(frame: *mut crate::Frame, id: i64, coords: *const i64, count: i64, value: i64) {
    use tl_compiler::lir::{format_print_line, PrintValue};
    // SAFETY: the compiled code passes its frame, whose printer outlives the block, a print
    // number below the program's count, and `count` coordinates.
    unsafe {
        let frame = &mut *frame;
        let printer = &mut *frame.printer;
        let statement = &*printer.prints.add(id as usize);
        let coords = std::slice::from_raw_parts(coords, count as usize);
        let value = if statement.float {
            PrintValue::Float(f64::from_bits(value as u64))
        } else if statement.unsigned {
            PrintValue::Int(i128::from(value as u64))
        } else {
            PrintValue::Int(i128::from(value))
        };
        let block = frame.block.map(|b| b as u32);
        printer.lines.push(format_print_line(block, &statement.label, coords, value));
    }
}

/// `*element += value` for a register type `ty` (integers wrap, floats round once), atomically.
///
/// When the frame defers float additions (`Frame::deferred`), a float addition is recorded
/// there instead, to be applied when the block's turn comes (blocks in grid order).
pub(crate) extern "C" fn atomic_add(frame: *mut crate::Frame, element: *mut u8, ty: i64, value: i64) {
    // SAFETY: the compiled code passes its frame; `deferred` is null or the worker's log.
    unsafe {
        let deferred = (*frame).deferred;
        if !deferred.is_null() && ty_of(ty).is_float() {
            (*deferred).push(crate::DeferredAdd { element, ty, value });
            return;
        }
    }
    add_now(element, ty, value);
}

/// A deferred float addition (`FloatAtomics::Deferred`), applied by the block holding the
/// turn: nothing else touches float atomic targets during such a launch, so it takes no lock.
/// f32 and f64 add natively: the simulator's sum in f64 rounded once to f32 is the f32 sum
/// (53 ≥ 2·24 + 2 bits, so the double rounding is exact).
pub(crate) fn add_deferred(add: &crate::DeferredAdd) {
    // SAFETY: bounds checked by the compiled code before the addition was recorded.
    unsafe {
        match ty_of(add.ty) {
            Ty::F32 => {
                let element = add.element as *mut f32;
                element.write_unaligned(element.read_unaligned() + f32::from_bits(add.value as u32));
            }
            Ty::F64 => {
                let element = add.element as *mut f64;
                element.write_unaligned(element.read_unaligned() + f64::from_bits(add.value as u64));
            }
            _ => add_now(add.element, add.ty, add.value),
        }
    }
}

/// `*element += value` at once, under the element's lock.
pub(crate) fn add_now(element: *mut u8, ty: i64, value: i64) {
    let _guard = ATOMIC_LOCKS[(element as usize >> 3) % 64].lock().unwrap_or_else(|e| e.into_inner());
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

/// f64 to 16-bit floats in one rounding, the simulator's conversion (f32 to and from 16 bits
/// is generated inline). Not `half`'s `from_f64`, which on x86 goes through f32 (rounding
/// twice: a value just beside a midpoint of f16 can land on it and then round the wrong way).
pub(crate) extern "C" fn f64_to_f16(x: f64) -> i64 {
    registers::cast(x.to_bits() as i64, Ty::F64, Ty::F16, false, false)
}

pub(crate) extern "C" fn f64_to_bf16(x: f64) -> i64 {
    registers::cast(x.to_bits() as i64, Ty::F64, Ty::BF16, false, false)
}

/// The hardware-approximation math (`lir::UnaryOp` `Exp` .. `Cos`) as the simulator computes
/// it: the exact function in f64 (`UnaryOp::float_f64`; an f32 operand widened and the result
/// rounded once by the caller). One function per operation, `OP` its index in `UnaryOp::ALL`.
extern "C" fn math<const OP: usize>(x: f64) -> f64 {
    UnaryOp::ALL[OP].float_f64(x)
}

/// The symbols of `math`, by index in `UnaryOp::ALL`.
pub(crate) const MATH: [(&str, extern "C" fn(f64) -> f64); 12] = [
    ("tl_cpu_math_0", math::<0>),
    ("tl_cpu_math_1", math::<1>),
    ("tl_cpu_math_2", math::<2>),
    ("tl_cpu_math_3", math::<3>),
    ("tl_cpu_math_4", math::<4>),
    ("tl_cpu_math_5", math::<5>),
    ("tl_cpu_math_6", math::<6>),
    ("tl_cpu_math_7", math::<7>),
    ("tl_cpu_math_8", math::<8>),
    ("tl_cpu_math_9", math::<9>),
    ("tl_cpu_math_10", math::<10>),
    ("tl_cpu_math_11", math::<11>),
];

/// The simulator's result of unary `op` on every value of the 16-bit float `ty` (f16 or bf16),
/// indexed by the operand's bits: computed once per process on first use, then shared by
/// every compiled program (a table load replaces a call to the math library, with the same
/// bits by construction).
pub(crate) fn sixteen_bit_table(op: UnaryOp, ty: Ty) -> &'static [u16] {
    use std::sync::OnceLock;
    const OPS: usize = UnaryOp::ALL.len();
    static TABLES: [[OnceLock<Box<[u16]>>; OPS]; 2] = [const { [const { OnceLock::new() }; OPS] }; 2];
    let which = usize::from(ty == Ty::BF16);
    TABLES[which][unary_code(op) as usize].get_or_init(|| (0..=u16::MAX).map(|bits| registers::unary(op, ty, i64::from(bits as i16)) as u16).collect())
}

/// 2^(j/32) for j in 0..32, each within an ulp (the inline `exp`, `codegen::exponential`).
pub(crate) fn exp2_fractions() -> &'static [f64; 32] {
    use std::sync::OnceLock;
    static TABLE: OnceLock<[f64; 32]> = OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|j| (j as f64 / 32.0).exp2()))
}

/// Scratch slots per thread after its registers (operands of the warp instructions).
pub(crate) const SCRATCH: usize = 8;

/// One slot of every thread of the register file (`codegen::Gen::slot`): the `vars` registers
/// thread-major (a thread's registers adjacent), then the scratch slots, also thread-major but
/// apart from the registers, so that a warp's scratch (what the warp instructions gather) is a
/// few adjacent cache lines. Thread t's slot is at `start + t·stride` (in 8-byte slots),
/// worked out once per call of a warp helper.
#[derive(Clone, Copy)]
struct Column {
    start: usize,
    stride: usize,
}

impl Column {
    fn of(threads: usize, vars: usize, slot: usize) -> Column {
        if slot < vars { Column { start: slot, stride: vars } } else { Column { start: threads * vars + slot - vars, stride: SCRATCH } }
    }

    /// The low 4 bytes of thread `t`'s slot.
    ///
    /// # Safety
    /// `registers` holds `threads × (vars + SCRATCH)` slots and `t < threads`.
    unsafe fn at(self, registers: *mut u64, t: usize) -> *mut u32 {
        unsafe { registers.add(self.start + t * self.stride) as *mut u32 }
    }
}

/// `mma.sync` for every warp of the block (`tl_vm::warp`, as the simulator): the A and B
/// fragments of each lane in its slots `a0..a3` and `b0, b1` (registers or scratch slots), the
/// accumulator in slots `c0..c3` (f32, or i32 for `kind` 2, s8), updated in place.
#[allow(clippy::too_many_arguments)]
pub(crate) extern "C" fn mma(registers: *mut u64, threads: i64, kind: i64, scratch: i64, a0: i64, a1: i64, a2: i64, a3: i64, b0: i64, b1: i64, c0: i64, c1: i64, c2: i64, c3: i64) {
    use tl_compiler::lir::MmaKind;
    use tl_vm::warp::{a_element, b_element, c_element, mma_m16n8k16_matrices, mma_m16n8k32_s8, WARP};
    let (threads, scratch) = (threads as usize, scratch as usize);
    let column = |slot: i64| Column::of(threads, scratch, slot as usize);
    let (a_slots, b_slots, c_slots) = ([a0, a1, a2, a3].map(column), [b0, b1].map(column), [c0, c1, c2, c3].map(column));
    let kind = [MmaKind::F16, MmaKind::BF16, MmaKind::S8][kind as usize];
    for warp in 0..threads / WARP {
        // SAFETY (every access): the compiled code passes its register file and its shape.
        unsafe {
            if kind == MmaKind::S8 {
                let fa = std::array::from_fn(|lane| std::array::from_fn(|i| *a_slots[i].at(registers, warp * WARP + lane)));
                let fb = std::array::from_fn(|lane| std::array::from_fn(|i| *b_slots[i].at(registers, warp * WARP + lane)));
                let mut ic = std::array::from_fn(|lane| std::array::from_fn(|i| *c_slots[i].at(registers, warp * WARP + lane) as i32));
                mma_m16n8k32_s8(&fa, &fb, &mut ic);
                for (lane, values) in ic.iter().enumerate() {
                    for (i, &v) in values.iter().enumerate() {
                        *c_slots[i].at(registers, warp * WARP + lane) = v as u32;
                    }
                }
                continue;
            }
            // The matrices straight from each lane's registers, by the simulator's fragment
            // maps (`tl_vm::warp::a_element`...), then its arithmetic on them. Register r
            // holds elements 2r (low half) and 2r + 1 of the lane's fragment.
            let (mut a, mut b, mut accumulator) = ([0u16; 256], [0u16; 128], [0f64; 128]);
            for lane in 0..WARP {
                let t = warp * WARP + lane;
                for r in 0..4 {
                    let register = *a_slots[r].at(registers, t);
                    a[a_element(lane, 2 * r)] = register as u16;
                    a[a_element(lane, 2 * r + 1)] = (register >> 16) as u16;
                }
                for r in 0..2 {
                    let register = *b_slots[r].at(registers, t);
                    b[b_element(lane, 2 * r)] = register as u16;
                    b[b_element(lane, 2 * r + 1)] = (register >> 16) as u16;
                }
                for (i, &slot) in c_slots.iter().enumerate() {
                    accumulator[c_element(lane, i)] = f64::from(f32::from_bits(*slot.at(registers, t)));
                }
            }
            let d = mma_m16n8k16_matrices(kind, &a, &b, &accumulator);
            for lane in 0..WARP {
                for (i, &slot) in c_slots.iter().enumerate() {
                    *slot.at(registers, warp * WARP + lane) = (d[c_element(lane, i)] as f32).to_bits();
                }
            }
        }
    }
}

/// `ldmatrix` for every warp, by the PTX definition (`tl_vm::warp::ldmatrix` is the
/// simulator's, from its row arrays; this one reads shared memory in place): lane l < 8·count
/// gives in slot `row_slot` (a scratch slot) the byte offset of its row of 16 bytes in shared
/// memory, row l % 8 of matrix l / 8; lane l receives in slot `dst[i]` the elements (row l / 4,
/// columns 2·(l % 4) and 2·(l % 4) + 1) of matrix i, or with `trans` those of its transpose,
/// the lower column in the low half. Returns -1, or the first thread whose row is outside the
/// buffer or not 16-byte aligned (nothing written then).
#[allow(clippy::too_many_arguments)]
pub(crate) extern "C" fn ldmatrix(registers: *mut u64, threads: i64, shared: *const u8, shared_len: i64, count: i64, trans: i64, scratch: i64, row_slot: i64, d0: i64, d1: i64, d2: i64, d3: i64) -> i64 {
    use tl_vm::warp::WARP;
    let (threads, scratch, count, row_slot) = (threads as usize, scratch as usize, count as usize, row_slot as usize);
    let dst = [d0, d1, d2, d3].map(|slot| Column::of(threads, scratch, slot as usize));
    let row_column = Column::of(threads, scratch, row_slot);
    for warp in (0..threads).step_by(WARP) {
        let mut rows = [0usize; WARP];
        for (lane, row) in rows.iter_mut().enumerate().take(8 * count) {
            // SAFETY: the compiled code passes its register file and its shape.
            let offset = unsafe { *row_column.at(registers, warp + lane) } as i32 as i64;
            if offset < 0 || offset % 16 != 0 || offset + 16 > shared_len {
                return (warp + lane) as i64;
            }
            *row = offset as usize;
        }
        // SAFETY (reads): every row is 16 bytes inside the buffer (checked above), and every
        // read is within a row (columns < 8, 2 bytes each).
        let half = |at: usize| u32::from(u16::from_le_bytes(unsafe { shared.add(at).cast::<[u8; 2]>().read_unaligned() }));
        for lane in 0..WARP {
            for (i, &slot) in dst.iter().enumerate().take(count) {
                let value = if trans != 0 {
                    // Column lane / 4 of rows 2·(lane % 4) and the next.
                    let (row, column) = (8 * i + 2 * (lane % 4), 2 * (lane / 4));
                    half(rows[row] + column) | (half(rows[row + 1] + column) << 16)
                } else {
                    // Row lane / 4, columns 2·(lane % 4) and the next: adjacent halves.
                    let at = rows[8 * i + lane / 4] + 4 * (lane % 4);
                    half(at) | (half(at + 2) << 16)
                };
                // SAFETY: as above.
                unsafe { *slot.at(registers, warp + lane) = value };
            }
        }
    }
    -1
}

/// The symbols compiled code imports, with their addresses.
pub(crate) fn symbols() -> Vec<(&'static str, *const u8)> {
    let mut symbols = vec![
        ("tl_cpu_unary", unary as *const u8),
        ("tl_cpu_binary", binary as *const u8),
        ("tl_cpu_compare", compare as *const u8),
        ("tl_cpu_fma", fma as *const u8),
        ("tl_cpu_cast", cast as *const u8),
        ("tl_cpu_prmt", prmt as *const u8),
        ("tl_cpu_lop3", lop3 as *const u8),
        ("tl_cpu_atomic_add", atomic_add as *const u8),
        ("tl_cpu_f64_to_f16", f64_to_f16 as *const u8),
        ("tl_cpu_f64_to_bf16", f64_to_bf16 as *const u8),
        ("tl_cpu_mma", mma as *const u8),
        ("tl_cpu_print", print as *const u8),
        ("tl_cpu_ldmatrix", ldmatrix as *const u8),
    ];
    symbols.extend(MATH.iter().map(|&(name, f)| (name, f as *const u8)));
    symbols
}
