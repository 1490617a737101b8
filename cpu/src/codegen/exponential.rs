//! `exp` and `exp2` of f32 registers, inline and bit-exact with the simulator.
//!
//! The simulator defines `exp` of an f32 as the math library's f64 `exp` of the operand,
//! rounded once to f32 (`UnaryOp::float_f64`); a call to it per element dominated softmax. The
//! inline code computes the f64 value itself to within a few f64 ulps and decides the f32
//! rounding from it whenever that decision is certain, calling the math library only when it
//! is not:
//!
//! * operands whose result is not a normal f32 (below e^-87, above e^88, NaN) go to the call;
//! * otherwise x = (k + j/32)·ln 2 + r with |r| ≤ ln 2 / 64 (k, j integers), and
//!   exp(x) = 2^k · 2^(j/32) · (1 + p(r)), p the degree-4 Taylor polynomial of e^r − 1
//!   (truncation below |r|⁵/120 · e^|r| < 1.26e-12 ≈ 2^-39.5), 2^(j/32) from a table of 32
//!   f64 values;
//! * the reduction r = x − n·fl(ln 2 / 32) (or (x − n/32)·ln 2 for exp2) is off by less than
//!   2^-45 (|n·ln 2/32| ≤ 88, so the product's rounding and the constant's each cost at most
//!   88·2^-53; the subtraction is exact), the table and the last multiply-add an f64 ulp or
//!   two: the value is within 2^-39.4 relative of e^x, which is 2^13.6 < 12,500 ulps of its
//!   f64 significand, and the library's `exp` is within an ulp of the exact value. Rounding
//!   to f32 keeps 24 of the 53 significant bits; the two give the same f32 unless an f32
//!   rounding midpoint lies between them, which needs the 29 dropped bits of the inline value
//!   to be within 12,500 of 2^28. When they are within `UNCERTAIN` = 2^15 of it, the call
//!   decides (about one operand in eight thousand): a loose polynomial and a one-step
//!   reduction cost less than the rare call.
//!
//! Expects an f32 operand; gives the f32 bits the simulator gives, for every operand
//! (`exponentials_match_the_math_library` checks every exponent range and the fallback band).

use super::Gen;
use crate::helpers;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;
use tl_compiler::lir::UnaryOp;

/// The 29 bits f32 rounding drops from an f64 significand, and their midpoint.
const DROPPED_BITS: i64 = (1 << 29) - 1;
const MIDPOINT: i64 = 1 << 28;
/// How close (in f64 ulps) the inline value may come to a midpoint before the call decides:
/// above the inline value's error (12,500 ulps, see the header) with room to spare.
const UNCERTAIN: i64 = 1 << 15;

/// The bytes of the table of 2^(j/32) (`helpers::exp2_fractions`).
fn exp2_table_bytes() -> Vec<u8> {
    helpers::exp2_fractions().iter().flat_map(|v| v.to_ne_bytes()).collect()
}

impl Gen<'_, '_> {
    /// The address of the table of 2^(j/32) the inline exponential reads.
    fn exp2_table(&mut self) -> Value {
        self.table("tl_exp2_fractions", exp2_table_bytes)
    }

    /// `exp` (`op == Exp`) or `exp2` (`op == Exp2`) of the f32 `x`, as the simulator rounds it.
    pub(super) fn exponential_f32(&mut self, op: UnaryOp, x: Value) -> Value {
        debug_assert!(matches!(op, UnaryOp::Exp | UnaryOp::Exp2));
        let wide = self.b.ins().fpromote(types::F64, x);
        let (fast, slow, done) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.append_block_param(done, types::F32);
        self.b.set_cold_block(slow);

        let in_range = in_inline_range(&mut self.b, op, wide, types::F64);
        self.b.ins().brif(in_range, fast, &[], slow, &[]);
        self.b.seal_block(fast);

        self.b.switch_to_block(fast);
        let table = self.exp2_table();
        let (value, significand_bits) = exponential_f64_inline(&mut self.b, op, wide, table);
        let uncertain = rounding_uncertain(&mut self.b, significand_bits);
        let rounded = self.b.ins().fdemote(types::F32, value);
        self.b.ins().brif(uncertain, slow, &[], done, &[rounded.into()]);
        self.b.seal_block(slow);

        self.b.switch_to_block(slow);
        let f = self.helpers.math[helpers::unary_code(op) as usize];
        let exact = self.call(f, &[wide]);
        let rounded = self.b.ins().fdemote(types::F32, exact);
        self.b.ins().jump(done, &[rounded.into()]);
        self.b.seal_block(done);

        self.b.switch_to_block(done);
        self.b.block_params(done)[0]
    }

    /// `op` (`exp` or `exp2`) of two f32 values at once: the range reduction and the
    /// polynomial on a pair of f64 lanes, the table, the scaling and the rounding decision per
    /// lane, exactly the operations of `exponential_f32` (so the same bits); when either
    /// operand is out of the inline range or either rounding is uncertain, both go through
    /// `exponential_f32`.
    pub(super) fn exponential_f32_pair(&mut self, op: UnaryOp, x: Value, y: Value) -> (Value, Value) {
        debug_assert!(matches!(op, UnaryOp::Exp | UnaryOp::Exp2));
        let (fast, slow, done) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.append_block_param(done, types::F32);
        self.b.append_block_param(done, types::F32);
        self.b.set_cold_block(slow);
        let lanes = [x, y].map(|v| self.b.ins().fpromote(types::F64, v));
        let first = self.b.ins().scalar_to_vector(types::F64X2, lanes[0]);
        let wide = self.b.ins().insertlane(first, lanes[1], 1);

        let in_range = in_inline_range(&mut self.b, op, wide, types::F64X2);
        let in_range = self.b.ins().vall_true(in_range);
        self.b.ins().brif(in_range, fast, &[], slow, &[]);
        self.b.seal_block(fast);

        self.b.switch_to_block(fast);
        let (n, p) = reduce(&mut self.b, op, wide, types::F64X2);
        let mut rounded = Vec::new();
        let mut any_uncertain = None;
        for lane in 0..2u8 {
            let n = self.b.ins().extractlane(n, lane);
            let p = self.b.ins().extractlane(p, lane);
            let table = self.exp2_table();
            let (value, significand_bits) = scale(&mut self.b, n, p, table);
            let uncertain = rounding_uncertain(&mut self.b, significand_bits);
            any_uncertain = Some(match any_uncertain {
                None => uncertain,
                Some(other) => self.b.ins().bor(other, uncertain),
            });
            rounded.push(self.b.ins().fdemote(types::F32, value));
        }
        let any_uncertain = any_uncertain.expect("two lanes");
        self.b.ins().brif(any_uncertain, slow, &[], done, &[rounded[0].into(), rounded[1].into()]);
        self.b.seal_block(slow);

        self.b.switch_to_block(slow);
        let first = self.exponential_f32(op, x);
        let second = self.exponential_f32(op, y);
        self.b.ins().jump(done, &[first.into(), second.into()]);
        self.b.seal_block(done);

        self.b.switch_to_block(done);
        (self.b.block_params(done)[0], self.b.block_params(done)[1])
    }
}

/// Whether `x` (f64, or each lane of f64x2: `ty`) gives a normal f32 result, the inline
/// range: e^-87 ≈ 1.6e-38 to e^88 ≈ 1.7e38 (2^-125 to 2^127 for exp2). NaN fails both
/// comparisons.
fn in_inline_range(b: &mut FunctionBuilder, op: UnaryOp, x: Value, ty: types::Type) -> Value {
    let (low, high) = if op == UnaryOp::Exp { (-87.0, 88.0) } else { (-125.0, 127.0) };
    let low = float_constant(b, ty, low);
    let high = float_constant(b, ty, high);
    let above = b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, low);
    let below = b.ins().fcmp(FloatCC::LessThanOrEqual, x, high);
    b.ins().band(above, below)
}

/// Whether the 29 bits f32 rounding drops from the inline value (`significand_bits`, see
/// `exponential_f64_inline`) lie within `UNCERTAIN` of their midpoint: the call decides then.
fn rounding_uncertain(b: &mut FunctionBuilder, significand_bits: Value) -> Value {
    let dropped = b.ins().band_imm_s(significand_bits, DROPPED_BITS);
    let distance = b.ins().iadd_imm_s(dropped, UNCERTAIN - MIDPOINT);
    b.ins().icmp_imm_s(IntCC::UnsignedLessThanOrEqual, distance, 2 * UNCERTAIN)
}

/// `value` as a constant of `ty` (f64, or both lanes of f64x2).
fn float_constant(b: &mut FunctionBuilder, ty: types::Type, value: f64) -> Value {
    let scalar = b.ins().f64const(value);
    if ty == types::F64 { scalar } else { b.ins().splat(ty, scalar) }
}

fn int_constant(b: &mut FunctionBuilder, ty: types::Type, value: i64) -> Value {
    let scalar = b.ins().iconst(types::I64, value);
    if ty == types::I64 { scalar } else { b.ins().splat(ty, scalar) }
}

/// e^x or 2^x for an f64 `x` whose result is a normal f32, to within 2^-39.4 relative; and the
/// bits of 2^(j/32)·(1 + p(r)), whose low 29 bits are the value's (the scaling by 2^k only
/// adds to the exponent field), so that the rounding decision does not wait for it.
fn exponential_f64_inline(b: &mut FunctionBuilder, op: UnaryOp, x: Value, table: Value) -> (Value, Value) {
    let (n, p) = reduce(b, op, x, types::F64);
    scale(b, n, p, table)
}

/// The range reduction and the polynomial, on f64 or on both lanes of f64x2 (`ty`): n (i64
/// lanes) with x = n·ln 2/32 + r (or n/32 + r/ln 2 for exp2), and p(r) ≈ e^r − 1.
fn reduce(b: &mut FunctionBuilder, op: UnaryOp, x: Value, ty: types::Type) -> (Value, Value) {
    let int_ty = if ty == types::F64 { types::I64 } else { types::I64X2 };
    // n = round(32·x / ln 2) (or 32·x): adding 1.5·2^52 leaves n in the low bits.
    let shifter = float_constant(b, ty, 1.5 * 2f64.powi(52));
    let per_step = if op == UnaryOp::Exp { 32.0 / std::f64::consts::LN_2 } else { 32.0 };
    let per_step = float_constant(b, ty, per_step);
    let scaled = b.ins().fmul(x, per_step);
    let shifted = b.ins().fadd(scaled, shifter);
    // Both in [2^52, 2^53): the difference of their bits is n, whatever its sign.
    let shifted_bits = b.ins().bitcast(int_ty, MemFlagsData::new(), shifted);
    let shifter_bits = int_constant(b, int_ty, -((1.5 * 2f64.powi(52)).to_bits() as i64));
    let n = b.ins().iadd(shifted_bits, shifter_bits);
    let n_float = b.ins().fsub(shifted, shifter);
    // r = x − n·ln 2/32, or (x − n/32)·ln 2 (exact subtraction) for exp2.
    let r = if op == UnaryOp::Exp {
        let step = float_constant(b, ty, std::f64::consts::LN_2 / 32.0);
        let whole = b.ins().fmul(n_float, step);
        b.ins().fsub(x, whole)
    } else {
        let step = float_constant(b, ty, 1.0 / 32.0);
        let whole = b.ins().fmul(n_float, step);
        let r = b.ins().fsub(x, whole);
        let ln2 = float_constant(b, ty, std::f64::consts::LN_2);
        b.ins().fmul(r, ln2)
    };
    // p(r) = r·(a + r²·b) with a = 1 + r/2, b = 1/6 + r/24: the Taylor polynomial to r⁴/24
    // in a shallow tree (Estrin's scheme), a and b and r² side by side (a dependency chain of
    // four operations instead of Horner's eight).
    let first_degree = |b: &mut FunctionBuilder, constant: f64, slope: f64| {
        let slope = float_constant(b, ty, slope);
        let product = b.ins().fmul(r, slope);
        let constant = float_constant(b, ty, constant);
        b.ins().fadd(product, constant)
    };
    let a = first_degree(b, 1.0, 0.5);
    let b_part = first_degree(b, 1.0 / 6.0, 1.0 / 24.0);
    let r2 = b.ins().fmul(r, r);
    let middle = b.ins().fmul(r2, b_part);
    let sum = b.ins().fadd(a, middle);
    let p = b.ins().fmul(sum, r);
    (n, p)
}

/// 2^(n/32)·(1 + p) from the table of 2^(j/32) and the exponent field (scalar n and p); and
/// the bits before the exponent is added (see `exponential_f64_inline`); `table` is the
/// address of the table (`Gen::exp2_table`).
fn scale(b: &mut FunctionBuilder, n: Value, p: Value, table: Value) -> (Value, Value) {
    // 2^(j/32) from the table, j = n mod 32; then 2^k, k = n div 32, into the exponent.
    let j = b.ins().band_imm_s(n, 31);
    let offset = b.ins().ishl_imm_s(j, 3);
    let at = b.ins().iadd(table, offset);
    let t = b.ins().load(types::F64, MemFlagsData::trusted().with_readonly(), at, 0);
    let tp = b.ins().fmul(t, p);
    let mantissa = b.ins().fadd(t, tp);
    let k = b.ins().sshr_imm_s(n, 5);
    let exponent = b.ins().ishl_imm_s(k, 52);
    let mantissa_bits = b.ins().bitcast(types::I64, MemFlagsData::new(), mantissa);
    let bits = b.ins().iadd(mantissa_bits, exponent);
    (b.ins().bitcast(types::F64, MemFlagsData::new(), bits), mantissa_bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cranelift_codegen::ir::{AbiParam, Signature};
    use cranelift_frontend::FunctionBuilderContext;
    use cranelift_module::{Linkage, Module};

    /// The inline f64 value alone, compiled as `fn(f64) -> f64`.
    fn compile_inline(op: UnaryOp) -> (cranelift_jit::JITModule, extern "C" fn(f64) -> f64) {
        let mut module = cranelift_jit::JITModule::new(crate::jit_builder().unwrap());
        let mut ctx = module.make_context();
        let target = module.target_config();
        let mut signature = Signature::new(module.isa().default_call_conv());
        signature.params.push(AbiParam::new(types::F64));
        signature.returns.push(AbiParam::new(types::F64));
        ctx.func.signature = signature.clone();
        let mut builder_context = FunctionBuilderContext::new();
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut builder_context);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let x = b.block_params(entry)[0];
        let global = crate::codegen::read_only_table(&mut module, b.func, "tl_exp2_fractions", exp2_table_bytes()).unwrap();
        let table = b.ins().symbol_value(types::I64, global);
        let (y, _) = exponential_f64_inline(&mut b, op, x, table);
        b.ins().return_(&[y]);
        b.finalize(target);
        let id = module.declare_function("inline_exponential", Linkage::Local, &signature).unwrap();
        module.define_function(id, &mut ctx).unwrap();
        module.finalize_definitions().unwrap();
        let code = module.get_finalized_function(id);
        // SAFETY: generated with this signature just above.
        (module, unsafe { std::mem::transmute::<*const u8, extern "C" fn(f64) -> f64>(code) })
    }

    /// The margin the rounding decision relies on: the inline value within 12,500 f64 ulps of the
    /// library's (which is within an ulp of the exact value), over the whole inline range,
    /// at the ends of the reduced interval (where the polynomial is least accurate) and on
    /// every multiple of a table step.
    #[test]
    fn inline_values_are_within_the_decision_margin() {
        for (op, library, low, high, step) in [(UnaryOp::Exp, f64::exp as fn(f64) -> f64, -87.0, 88.0, std::f64::consts::LN_2 / 32.0), (UnaryOp::Exp2, f64::exp2, -125.0, 127.0, 1.0 / 32.0)] {
            let (_module, inline) = compile_inline(op);
            let mut operands: Vec<f64> = (0..400_000).map(|i| low + (high - low) * f64::from(i) / 400_000.0).collect();
            let steps = ((high - low) / step) as i64;
            for k in 0..steps {
                let centre = low + step * k as f64;
                operands.extend([centre, centre + step * 0.499_999, centre - step * 0.499_999, centre + step * 0.500_001]);
            }
            let mut worst = 0u64;
            for x in operands.into_iter().filter(|x| (low..=high).contains(x)).map(|x| f64::from(x as f32)) {
                let (got, want) = (inline(x), library(x));
                let ulps = got.to_bits().abs_diff(want.to_bits());
                assert!(ulps <= 12_500, "{op:?}({x:e}): inline {got:e}, library {want:e}: {ulps} ulps apart");
                worst = worst.max(ulps);
            }
            // The operands reach the ends of the reduced interval, where the truncation
            // |r|⁵/120 is largest (about 11,200 ulps of a significand near 2); a mutation of
            // the polynomial or the reduction breaks the bound above.
            assert!(worst > 8_000, "{op:?}: worst {worst} ulps: the ends of the reduced interval were not reached");
        }
    }
}
