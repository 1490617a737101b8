//! Casts between register types with the value semantics of `cast` (docs/language.md §7),
//! rounding once.

use super::*;

impl<'ctx, 'a> Codegen<'ctx, 'a> {
    /// Converts with the value semantics of `cast` (docs/language.md §7; what `DType::round` computes):
    /// * to i1: `!= 0` (IEEE: a float NaN gives true); from i1: 0 or 1;
    /// * float→float: round to nearest even;
    /// * float→int: round to nearest even, then saturate to the target range, NaN → 0;
    /// * int→float: round to nearest even;
    /// * int→int: the source value (unsigned if `from_unsigned`) clamped to the target range
    ///   (unsigned if `to_unsigned`); without clamping this is sign/zero extension or identity.
    pub(super) fn cast(
        &self,
        a: Val<'ctx>,
        to: Ty,
        from_unsigned: bool,
        to_unsigned: bool,
    ) -> Result<Val<'ctx>, CodegenError> {
        let from = a.ty;
        let bld = &self.builder;
        let v: BasicValueEnum = if to == Ty::I1 {
            if from.is_float() {
                let x = a.v.into_float_value();
                bld.build_float_compare(
                    FloatPredicate::UNE,
                    x,
                    x.get_type().const_zero(),
                    "nonzero",
                )?
                .into()
            } else {
                let x = a.v.into_int_value();
                bld.build_int_compare(IntPredicate::NE, x, x.get_type().const_zero(), "nonzero")?
                    .into()
            }
        } else if from == Ty::I1 {
            let x = a.v.into_int_value();
            if to.is_float() {
                bld.build_unsigned_int_to_float(x, float_type(self.context, to), "bool_to_float")?
                    .into()
            } else {
                bld.build_int_z_extend(x, int_type(self.context, to), "bool_to_int")?.into()
            }
        } else {
            match (from.is_float(), to.is_float()) {
                (true, true) => self.float_to_float(a.v.into_float_value(), from, to)?.into(),
                (true, false) => {
                    let name = if to_unsigned { "llvm.fptoui.sat" } else { "llvm.fptosi.sat" };
                    let rounded = self.call_float_intrinsic("llvm.roundeven", from, &[a.v])?;
                    let overloads = [llvm_type(self.context, to), llvm_type(self.context, from)];
                    self.call_intrinsic(name, &overloads, &[rounded.v.into()])?
                }
                (false, true) => self.int_to_float(a.v.into_int_value(), from_unsigned, to)?.into(),
                (false, false) => self
                    .int_to_int(a.v.into_int_value(), from, to, from_unsigned, to_unsigned)?
                    .into(),
            }
        };
        Ok(Val { v, ty: to })
    }

    pub(super) fn float_to_float(
        &self,
        x: FloatValue<'ctx>,
        from: Ty,
        to: Ty,
    ) -> Result<FloatValue<'ctx>, CodegenError> {
        let target = float_type(self.context, to);
        Ok(match from.bytes().cmp(&to.bytes()) {
            std::cmp::Ordering::Less => self.builder.build_float_ext(x, target, "fpext")?,
            std::cmp::Ordering::Greater => self.builder.build_float_trunc(x, target, "fptrunc")?,
            // f16 ↔ bf16 (or identity): widening to f32 is exact, so this rounds once.
            std::cmp::Ordering::Equal if from == to => x,
            std::cmp::Ordering::Equal => {
                let wide = self.builder.build_float_ext(x, self.context.f32_type(), "fpext")?;
                self.builder.build_float_trunc(wide, target, "fptrunc")?
            }
        })
    }

    pub(super) fn int_to_float(
        &self,
        x: IntValue<'ctx>,
        unsigned: bool,
        to: Ty,
    ) -> Result<FloatValue<'ctx>, CodegenError> {
        let convert = |target: FloatType<'ctx>| {
            if unsigned {
                self.builder.build_unsigned_int_to_float(x, target, "itof")
            } else {
                self.builder.build_signed_int_to_float(x, target, "itof")
            }
        };
        if to == Ty::BF16 {
            // NVPTX on sm_80 converts int→bf16 through f32 with two roundings, and InstCombine
            // folds a plain int→f64→bf16 back into that. So: int→f64 (exact up to 32 bits; for
            // i64 beyond 2^53 this rounds, like a conversion through f64 does), f64→f32 rounded
            // to odd, then f32→bf16 to nearest even, which is then rounded once: f32 keeps more
            // than bf16's 8 bits plus 2.
            let wide = convert(self.context.f64_type())?;
            let odd = self.f64_to_f32_round_to_odd(wide)?;
            Ok(self.builder.build_float_trunc(odd, float_type(self.context, to), "to_bf16")?)
        } else {
            Ok(convert(float_type(self.context, to))?)
        }
    }

    /// f64→f32 rounding to odd: truncate toward zero, and set the last bit when inexact.
    pub(super) fn f64_to_f32_round_to_odd(
        &self,
        x: FloatValue<'ctx>,
    ) -> Result<FloatValue<'ctx>, CodegenError> {
        let bld = &self.builder;
        let (f32_type, i32_type) = (self.context.f32_type(), self.context.i32_type());
        let nearest = bld.build_float_trunc(x, f32_type, "nearest")?;
        let back = bld.build_float_ext(nearest, x.get_type(), "back")?;
        let inexact = bld.build_float_compare(FloatPredicate::ONE, x, back, "inexact")?;
        let magnitude = |v: FloatValue<'ctx>| -> Result<FloatValue<'ctx>, CodegenError> {
            Ok(self.call_float_intrinsic("llvm.fabs", Ty::F64, &[v.into()])?.v.into_float_value())
        };
        let rounded_away =
            bld.build_float_compare(FloatPredicate::OGT, magnitude(back)?, magnitude(x)?, "away")?;
        // A non-zero float's bit pattern minus one is the next float toward zero.
        let bits = bld.build_bit_cast(nearest, i32_type, "bits")?.into_int_value();
        let toward_zero =
            bld.build_int_sub(bits, bld.build_int_z_extend(rounded_away, i32_type, "away")?, "rz")?;
        let odd =
            bld.build_or(toward_zero, bld.build_int_z_extend(inexact, i32_type, "sticky")?, "odd")?;
        Ok(bld.build_bit_cast(odd, f32_type, "round_to_odd")?.into_float_value())
    }

    pub(super) fn int_to_int(
        &self,
        x: IntValue<'ctx>,
        from: Ty,
        to: Ty,
        from_unsigned: bool,
        to_unsigned: bool,
    ) -> Result<IntValue<'ctx>, CodegenError> {
        let source_bits = int_type(self.context, from).get_bit_width();
        let target = int_type(self.context, to);
        let (source_min, source_max) = int_range(source_bits, from_unsigned);
        let (target_min, target_max) = int_range(target.get_bit_width(), to_unsigned);
        // Both bounds, when needed, fit in the source type: they lie inside its range.
        let constant = |value: i128| x.get_type().const_int(value as u64, false);
        let mut v = x;
        if target_min > source_min {
            v = self.int_intrinsic("llvm.smax", v, constant(target_min))?;
        }
        if target_max < source_max {
            let min = if from_unsigned { "llvm.umin" } else { "llvm.smin" };
            v = self.int_intrinsic(min, v, constant(target_max))?;
        }
        Ok(match target.get_bit_width().cmp(&source_bits) {
            std::cmp::Ordering::Greater if from_unsigned => {
                self.builder.build_int_z_extend(v, target, "zext")?
            }
            // After clamping, a negative value remains only if the target is signed.
            std::cmp::Ordering::Greater => self.builder.build_int_s_extend(v, target, "sext")?,
            std::cmp::Ordering::Less => self.builder.build_int_truncate(v, target, "trunc")?,
            std::cmp::Ordering::Equal => v,
        })
    }
}
