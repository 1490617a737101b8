//! Conversions between f32 and the 16-bit floats (f16, bf16) as inline integer code: a
//! 16-bit register is its bits (an i16); arithmetic on it widens the operands to f32,
//! computes there and rounds back (`expressions::binary`, which says why that is exact).
//!
//! A value rounded to 16 bits and widened again inside one block (the next operation of a
//! chain, `a * b + c` on f16) skips the two conversions: `narrow16` also computes the f32 that
//! widening its result gives, rounded in place (`rounded_in_f32`), and `widen16` of that
//! result takes it. Guarantees: both forms are the same bits as converting out and back
//! (`sixteen_bit_conversions_match_the_half_crate` checks each direction and the round trip).

use super::Gen;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use tl_compiler::lir::Ty;

impl Gen<'_, '_> {
    /// A 16-bit float register as the f32 of its value (exact; a NaN keeps its payload and
    /// becomes quiet, as the `half` crate converts).
    pub(super) fn widen16(&mut self, x: Value, ty: Ty) -> Value {
        if let Some(&wide) = self.widened16.get(&x) {
            return wide;
        }
        let h = self.b.ins().uextend(types::I32, x);
        let bits = if ty == Ty::BF16 {
            let shifted = self.b.ins().ishl_imm_s(h, 16);
            let magnitude = self.b.ins().band_imm_s(h, 0x7fff);
            let nan = self.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThan, magnitude, 0x7f80);
            let quiet = self.b.ins().bor_imm_s(shifted, 0x0040_0000);
            self.b.ins().select(nan, quiet, shifted)
        } else {
            // Exponent and mantissa moved into f32's fields and scaled by 2^112: exact for
            // normal and subnormal values alike; infinities and NaNs set apart.
            let magnitude = self.b.ins().band_imm_s(h, 0x7fff);
            let moved = self.b.ins().ishl_imm_s(magnitude, 13);
            let as_float = self.b.ins().bitcast(types::F32, MemFlagsData::new(), moved);
            let scale = self.b.ins().f32const(f32::from_bits(0x7780_0000)); // 2^112
            let scaled = self.b.ins().fmul(as_float, scale);
            let finite = self.b.ins().bitcast(types::I32, MemFlagsData::new(), scaled);
            let special = self.b.ins().bor_imm_s(moved, 0x7000_0000);
            let mantissa = self.b.ins().band_imm_s(h, 0x3ff);
            let is_nan = self.b.ins().icmp_imm_s(IntCC::NotEqual, mantissa, 0);
            let quiet = self.b.ins().bor_imm_s(special, 0x0040_0000);
            let special = self.b.ins().select(is_nan, quiet, special);
            let is_special = self.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, magnitude, 0x7c00);
            let value = self.b.ins().select(is_special, special, finite);
            let sign = self.b.ins().band_imm_s(h, 0x8000);
            let sign = self.b.ins().ishl_imm_s(sign, 16);
            self.b.ins().bor(value, sign)
        };
        self.b.ins().bitcast(types::F32, MemFlagsData::new(), bits)
    }

    /// An f32 (or f64) rounded once to the 16-bit float `ty` (to nearest even; a NaN keeps
    /// the top of its payload and becomes quiet, as the `half` crate converts).
    pub(super) fn narrow16(&mut self, x: Value, from: Ty, ty: Ty) -> Value {
        if from == Ty::F64 {
            let r = self.call(self.helpers.narrow_f64[usize::from(ty == Ty::BF16)], &[x]);
            return self.b.ins().ireduce(types::I16, r);
        }
        let bits = self.b.ins().bitcast(types::I32, MemFlagsData::new(), x);
        let h = if ty == Ty::BF16 {
            // A bf16 is the top half of the f32 it widens to.
            let wide = self.rounded_in_f32_bits(bits, ty);
            self.b.ins().ushr_imm_s(wide, 16)
        } else {
            let sign = self.b.ins().band_imm_s(bits, 0x8000_0000_u32 as i32 as i64);
            let a = self.b.ins().bxor(bits, sign);
            // Values that round to a subnormal or zero: the addition of 0.5 rounds them to
            // nearest even in the low mantissa bits.
            let magic = self.b.ins().f32const(0.5);
            let a_float = self.b.ins().bitcast(types::F32, MemFlagsData::new(), a);
            let sum = self.b.ins().fadd(a_float, magic);
            let sum = self.b.ins().bitcast(types::I32, MemFlagsData::new(), sum);
            let small = self.b.ins().iadd_imm_s(sum, -0x3f00_0000);
            // Normal results: rebias the exponent, round to nearest even on bit 13.
            let odd = self.b.ins().ushr_imm_s(a, 13);
            let odd = self.b.ins().band_imm_s(odd, 1);
            let rebiased = self.b.ins().iadd_imm_s(a, 0xc800_0fff_u32 as i32 as i64);
            let rounded = self.b.ins().iadd(rebiased, odd);
            let normal = self.b.ins().ushr_imm_s(rounded, 13);
            // Overflow gives infinity, infinity stays, a NaN stays quiet with its payload's top.
            let payload = self.b.ins().ushr_imm_s(a, 13);
            let payload = self.b.ins().band_imm_s(payload, 0x3ff);
            let nan = self.b.ins().bor_imm_s(payload, 0x7e00);
            let infinity = self.b.ins().iconst(types::I32, 0x7c00);
            let is_nan = self.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThan, a, 0x7f80_0000);
            let huge = self.b.ins().select(is_nan, nan, infinity);
            let is_small = self.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, a, 0x3880_0000);
            let finite = self.b.ins().select(is_small, small, normal);
            let is_huge = self.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, a, 0x4780_0000);
            let magnitude = self.b.ins().select(is_huge, huge, finite);
            let sign = self.b.ins().ushr_imm_s(sign, 16);
            self.b.ins().bor(magnitude, sign)
        };
        let narrow = self.b.ins().ireduce(types::I16, h);
        let wide = self.rounded_in_f32(bits, ty);
        self.widened16.insert(narrow, wide);
        narrow
    }

    /// The f32 `bits` rounded to the 16-bit float `ty` and widened back, without leaving f32:
    /// what `widen16(narrow16(x))` gives, in about half the instructions (Cranelift drops
    /// whichever form goes unused).
    fn rounded_in_f32(&mut self, bits: Value, ty: Ty) -> Value {
        let result = self.rounded_in_f32_bits(bits, ty);
        self.b.ins().bitcast(types::F32, MemFlagsData::new(), result)
    }

    /// `rounded_in_f32` as the f32's bits (an i32).
    fn rounded_in_f32_bits(&mut self, bits: Value, ty: Ty) -> Value {
        if ty == Ty::BF16 {
            // To nearest even on bit 16; a NaN keeps its top payload bits and becomes quiet.
            let odd = self.b.ins().ushr_imm_s(bits, 16);
            let odd = self.b.ins().band_imm_s(odd, 1);
            let biased = self.b.ins().iadd_imm_s(bits, 0x7fff);
            let rounded = self.b.ins().iadd(biased, odd);
            let rounded = self.b.ins().band_imm_s(rounded, 0xffff_0000_u32 as i32 as i64);
            let top = self.b.ins().band_imm_s(bits, 0xffff_0000_u32 as i32 as i64);
            let quiet = self.b.ins().bor_imm_s(top, 0x0040_0000);
            let magnitude = self.b.ins().band_imm_s(bits, 0x7fff_ffff);
            let nan = self.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThan, magnitude, 0x7f80_0000);
            self.b.ins().select(nan, quiet, rounded)
        } else {
            let sign = self.b.ins().band_imm_s(bits, 0x8000_0000_u32 as i32 as i64);
            let a = self.b.ins().bxor(bits, sign);
            // Below f16's smallest normal: to a multiple of 2^-24 by adding and taking away
            // 0.5 (whose f32 spacing is 2^-24; both exact but the first rounding).
            let half = self.b.ins().f32const(0.5);
            let a_float = self.b.ins().bitcast(types::F32, MemFlagsData::new(), a);
            let sum = self.b.ins().fadd(a_float, half);
            let small = self.b.ins().fsub(sum, half);
            let small = self.b.ins().bitcast(types::I32, MemFlagsData::new(), small);
            // Normal: to nearest even on bit 13 (a carry into the exponent is right).
            let odd = self.b.ins().ushr_imm_s(a, 13);
            let odd = self.b.ins().band_imm_s(odd, 1);
            let biased = self.b.ins().iadd_imm_s(a, 0xfff);
            let rounded = self.b.ins().iadd(biased, odd);
            let normal = self.b.ins().band_imm_s(rounded, !0x1fff_i64);
            // From 65520 up infinity; a NaN keeps its top 10 payload bits and becomes quiet.
            let payload = self.b.ins().band_imm_s(a, 0x007f_e000);
            let nan = self.b.ins().bor_imm_s(payload, 0x7fc0_0000);
            let infinity = self.b.ins().iconst(types::I32, 0x7f80_0000);
            let is_nan = self.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThan, a, 0x7f80_0000);
            let huge = self.b.ins().select(is_nan, nan, infinity);
            let is_small = self.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, a, 0x3880_0000);
            let finite = self.b.ins().select(is_small, small, normal);
            let is_huge = self.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, a, 0x477f_f000);
            let magnitude = self.b.ins().select(is_huge, huge, finite);
            self.b.ins().bor(magnitude, sign)
        }
    }
}
