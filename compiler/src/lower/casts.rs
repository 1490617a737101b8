//! Conversions between dtypes: the cast semantics of docs/language.md §7 on registers, the
//! fast dequantizing casts to f16/bf16 (`lower_numerics`), and the codes of low-precision
//! values held in their containers.

use super::*;

impl Lower<'_> {
    /// The code of a register of `dtype` as an i32 (bits above the width are zero).
    pub(super) fn code_of_register(&mut self, body: &mut Vec<lir::Stmt>, register: Expr, dtype: DType) -> Var {
        use crate::lower_numerics::container_to_code;
        let e = match Ty::of(dtype) {
            Ty::I8 => container_to_code(register, dtype),
            Ty::I16 | Ty::F16 | Ty::BF16 => {
                let raw = if Ty::of(dtype) == Ty::I16 { register } else { Expr::Bitcast { to: Ty::I16, value: Box::new(register) } };
                Expr::Cast { to: Ty::I32, value: Box::new(raw), from_unsigned: true, to_unsigned: false }
            }
            Ty::F32 => Expr::Bitcast { to: Ty::I32, value: Box::new(register) },
            _ => register,
        };
        self.assign(body, Ty::I32, e)
    }

    /// A register of `dtype` holding `code` (an i32 variable with the code in its low bits and
    /// zeros above).
    pub(super) fn register_of_code(&mut self, body: &mut Vec<lir::Stmt>, code: Var, dtype: DType) -> Var {
        use crate::lower_numerics::{narrow_code, sign_extend};
        let register = match Ty::of(dtype) {
            Ty::I8 if dtype.is_signed_int() => {
                let extended = sign_extend(var(code), dtype.bits());
                Expr::Cast { to: Ty::I8, value: Box::new(extended), from_unsigned: false, to_unsigned: false }
            }
            Ty::I8 => narrow_code(var(code), Ty::I8),
            Ty::I16 => narrow_code(var(code), Ty::I16),
            Ty::F16 | Ty::BF16 => Expr::Bitcast { to: Ty::of(dtype), value: Box::new(narrow_code(var(code), Ty::I16)) },
            Ty::F32 => Expr::Bitcast { to: Ty::F32, value: Box::new(var(code)) },
            _ => var(code),
        };
        self.assign(body, Ty::of(dtype), register)
    }

    /// Converts `e` (a register of `from`) to `to` with the cast semantics, through
    /// statements; returns the register holding the result. Handles low-precision formats:
    /// floats decode to f32 and encode from f32, integers below 8 bits widen to i32 and
    /// saturate back.
    pub(super) fn cast_into(&mut self, body: &mut Vec<lir::Stmt>, e: Expr, from: DType, to: DType) -> Var {
        use crate::lower_numerics::{code_to_container, container_to_code, decode_float, encode_float};
        if from == to {
            return self.assign(body, Ty::of(to), e);
        }
        if crate::lower_numerics::fast_half_cast(from, to).is_some() {
            let r = self.assign(body, Ty::of(from), e);
            let out = self.cast_to_half_fast(body, &[r], from, to).expect("fast_half_cast applies");
            return out[0];
        }
        // Widen the source to a standard dtype.
        let (wide, wide_dtype) = match from.float_format() {
            Some(f) if from.is_low_precision() => {
                let code = self.assign(body, Ty::I32, container_to_code(e, from));
                (self.assign(body, Ty::F32, decode_float(var(code), f)), DType::F32)
            }
            _ if from.is_low_precision() => {
                let widened = Expr::Cast { to: Ty::I32, value: Box::new(e), from_unsigned: false, to_unsigned: false };
                (self.assign(body, Ty::I32, widened), DType::I32)
            }
            _ => (self.assign(body, Ty::of(from), e), from),
        };
        if !to.is_low_precision() {
            let converted = self.cast_expr(var(wide), wide_dtype, to);
            return self.assign(body, Ty::of(to), converted);
        }
        match to.float_format() {
            Some(f) => {
                let x = self.to_f32_for_encoding(body, wide, wide_dtype);
                let code = self.assign(body, Ty::I32, encode_float(var(x), f));
                self.assign(body, Ty::I8, code_to_container(var(code)))
            }
            None => {
                let as_i32 = self.cast_expr(var(wide), wide_dtype, DType::I32);
                let (lo, hi) = to.int_range().expect("integer");
                let clamped = bin(
                    lir::BinaryOp::Min,
                    bin(lir::BinaryOp::Max, as_i32, int(Ty::I32, lo as i64)),
                    int(Ty::I32, hi as i64),
                );
                let narrowed = Expr::Cast { to: Ty::I8, value: Box::new(clamped), from_unsigned: false, to_unsigned: false };
                self.assign(body, Ty::I8, narrowed)
            }
        }
    }

    /// Fast dequantizing casts to f16 or bf16 (`regs` are i8 containers of `from`): integers
    /// of at most 8 bits with the magic-number trick, floats of at most 8 bits by placing
    /// their bits under the destination's fields, special codes (infinity, NaN) replaced after
    /// ([`crate::lower_numerics::FastHalfCast`]). Consecutive registers are taken in pairs:
    /// one `prmt` packs both containers into bytes 0 and 2 of an i32, one `lop3` builds both
    /// 16-bit patterns, and each half is reinterpreted as f16/bf16 and corrected by one exact
    /// subtraction or multiplication (none when the scale is 1). A last, unpaired register takes the same steps alone
    /// (without the `prmt`). Returns the result registers in the order of `regs`,
    /// bit-identical to the generic conversion (every source value is exact in the
    /// destination); `None`, with nothing emitted, for the pairs without an exact plan (see
    /// `fast_half_cast`), which take the generic path.
    pub(super) fn cast_to_half_fast(&mut self, body: &mut Vec<lir::Stmt>, regs: &[Var], from: DType, to: DType) -> Option<Vec<Var>> {
        self.cast_to_half_fast_packed(body, regs, &adjacent_pairs(regs.len()), from, to).map(|cast| cast.regs)
    }

    /// [`Self::cast_to_half_fast`], and also the results as packed pairs (`packed.rs`) when
    /// `pairing` covers the registers (every register once) and the plan has a packed form,
    /// with the pairs before their last correction where the plan ends in one.
    pub(super) fn cast_to_half_fast_packed(&mut self, body: &mut Vec<lir::Stmt>, regs: &[Var], pairing: &[(usize, usize)], from: DType, to: DType) -> Option<FastCast> {
        use crate::lower_numerics::{fast_half_cast, pack_pair, widen_container};
        let plan = fast_half_cast(from, to)?;
        let ty = Ty::of(to);
        let covered = !regs.is_empty() && pairing.len() * 2 == regs.len();
        if covered && let Some(cast) = self.cast_codes_in_words(body, regs, pairing, from, to) {
            return Some(cast);
        }
        // Whole pairs and no special codes: both halves of each pair in one packed operation,
        // the scalar registers its halves.
        let in_pairs = covered && plan.packs(ty);
        if in_pairs {
            let (mut pairs, mut raw) = (Vec::with_capacity(pairing.len()), Vec::with_capacity(pairing.len()));
            for &(low, high) in pairing {
                let packed = self.assign(body, Ty::I32, pack_pair(var(regs[low]), var(regs[high])));
                let (pair, raw_pair) = self.fast_pair(&plan, packed, ty, body);
                pairs.push(pair);
                raw.push(raw_pair);
            }
            let halves = self.halves_of(&pairs, pairing, body);
            return Some(FastCast { regs: halves, pairs: Some(pairs), raw: raw.into_iter().collect() });
        }
        let mut out = Vec::with_capacity(regs.len());
        for pair in regs.chunks(2) {
            let packed = match pair {
                [low, high] => pack_pair(var(*low), var(*high)),
                [single] => widen_container(var(*single)),
                _ => unreachable!("chunks of one or two"),
            };
            let packed = self.assign(body, Ty::I32, packed);
            let patterns = self.assign(body, Ty::I32, plan.patterns(var(packed)));
            for high in [false, true].into_iter().take(pair.len()) {
                let mut value = self.assign(body, ty, plan.half(var(patterns), high, ty));
                if let Some(fixed) = plan.fix_specials(var(value), var(packed), high, ty) {
                    value = self.assign(body, ty, fixed);
                }
                out.push(value);
            }
        }
        Some(FastCast { regs: out, pairs: None, raw: None })
    }

    /// The fast cast of codes of 1, 2, 4 or 8 bits straight from the words they were loaded in
    /// (`code_sources`), pair by pair, without unpacking them first:
    /// * when the two codes of a pair sit 16 bits apart in one word (the fragment order of
    ///   `qmatmul_fragment` puts them there), the word shifted right already holds them at the
    ///   same place in each half: for integers, shifted by a multiple of
    ///   `raw_code_shift_limit`, one `lop3` builds both patterns from the codes `r` bits up
    ///   (`raw_code_magic` at `r`); for floats, shifted so that the codes start their halves,
    ///   the placement (`FloatPlacement`) takes the word as it is (its masks drop the other
    ///   codes above them);
    /// * otherwise one `prmt` first brings the byte of each code (each word shifted so the code
    ///   starts its byte) into bytes 0 and 2.
    ///
    /// The shifts are shared. One packed subtraction (or `fma`, for `r > 0`) finishes an
    /// integer pair, the placement's packed correction a float pair; the result also records
    /// the pairs before that correction where it is the last step, for a subtraction that can
    /// absorb it (`packed.rs`). `None`, with nothing emitted, unless every register has a known
    /// source and the plan has a packed form.
    fn cast_codes_in_words(&mut self, body: &mut Vec<lir::Stmt>, regs: &[Var], pairing: &[(usize, usize)], from: DType, to: DType) -> Option<FastCast> {
        use crate::lower_numerics::{fast_half_cast, raw_code_magic, raw_code_shift_limit, FastHalfCast};
        let limit = raw_code_shift_limit(to)?;
        let ty = Ty::of(to);
        let float_plan = match fast_half_cast(from, to)? {
            FastHalfCast::Float(p) => Some(FastHalfCast::Float(p)).filter(|plan| plan.packs(ty)),
            FastHalfCast::Magic(_) => None,
        };
        let integers = raw_code_magic(from, to, 0).is_some();
        if !integers && float_plan.is_none() {
            return None;
        }
        let sources: Vec<(Var, u32)> = regs.iter().map(|r| self.code_sources.get(r).copied()).collect::<Option<_>>()?;
        let mut shifted: HashMap<(Var, u32), Var> = HashMap::new();
        let mut shift_word = |s: &mut Self, body: &mut Vec<lir::Stmt>, word: Var, by: u32| -> Var {
            if by == 0 {
                return word;
            }
            *shifted.entry((word, by)).or_insert_with(|| s.assign(body, Ty::I32, bin(lir::BinaryOp::LShr, var(word), int(Ty::I32, by as i64))))
        };
        let (mut pairs, mut raw) = (Vec::with_capacity(pairing.len()), Vec::with_capacity(pairing.len()));
        for &(low, high) in pairing {
            let (low, high) = (sources[low], sources[high]);
            let same_word = low.0 == high.0 && high.1 == low.1 + 16;
            // The word with the pair's codes at the same place in each half: `r` bits up.
            let (codes, r) = if same_word {
                let r = if integers { low.1 % limit } else { 0 };
                (shift_word(self, body, low.0, low.1 - r), r)
            } else {
                let a = shift_word(self, body, low.0, low.1 % 8);
                let b = shift_word(self, body, high.0, high.1 % 8);
                // Result bytes 0 and 1 from byte low/8 of `a`, bytes 2 and 3 from byte high/8 of
                // `b` (selector values 4..7); the masks keep only the codes.
                let (lo_byte, hi_byte) = ((low.1 / 8) as i64, 4 + (high.1 / 8) as i64);
                let selector = lo_byte | (lo_byte << 4) | (hi_byte << 8) | (hi_byte << 12);
                (self.assign(body, Ty::I32, Expr::Prmt { a: Box::new(var(a)), b: Box::new(var(b)), selector: Box::new(int(Ty::I32, selector)) }), 0)
            };
            let plan = float_plan.unwrap_or_else(|| FastHalfCast::Magic(raw_code_magic(from, to, r).expect("r below the limit, a multiple of the width")));
            let (pair, raw_pair) = self.fast_pair(&plan, codes, ty, body);
            pairs.push(pair);
            raw.push(raw_pair);
        }
        let out = self.halves_of(&pairs, pairing, body);
        Some(FastCast { regs: out, pairs: Some(pairs), raw: raw.into_iter().collect() })
    }

    /// One pair of a fast cast by `plan` (one that packs) from `codes`, an i32 holding the
    /// pair's codes where the plan's patterns take them: the packed pair, and the pair before
    /// its last correction where the plan ends in one ([`crate::lower_numerics::FastHalfCast::correction`]).
    fn fast_pair(&mut self, plan: &crate::lower_numerics::FastHalfCast, codes: Var, ty: Ty, body: &mut Vec<lir::Stmt>) -> (Var, Option<RawPair>) {
        let patterns = self.assign(body, Ty::I32, plan.patterns(var(codes)));
        let value = plan.packed(var(patterns), var(codes), ty).expect("a plan that packs, to f16 or bf16");
        let pair = self.assign(body, ty.packed().expect("f16 or bf16"), value);
        (pair, plan.correction().map(|(scale, offset)| RawPair { pattern: patterns, scale, offset }))
    }

    /// `wide` (a register of `wide_dtype`) as an f32 that rounds into every low-precision
    /// format exactly like the value itself: exact conversions stay as they are; f64 (and
    /// integers, through f64) are narrowed by rounding to odd, which makes the later rounding
    /// into a format of at most 11 significand bits a single correct rounding.
    pub(super) fn to_f32_for_encoding(&mut self, body: &mut Vec<lir::Stmt>, wide: Var, wide_dtype: DType) -> Var {
        let exact_in_f32 = wide_dtype == DType::F32
            || (wide_dtype.is_float() && wide_dtype.bits() <= 16)
            || (wide_dtype.is_int() && wide_dtype.bits() <= 16)
            || wide_dtype == DType::Bool;
        if exact_in_f32 {
            let e = self.cast_expr(var(wide), wide_dtype, DType::F32);
            return self.assign(body, Ty::F32, e);
        }
        let as_f64 = self.cast_expr(var(wide), wide_dtype, DType::F64);
        let x = self.assign(body, Ty::F64, as_f64);
        let nearest = Expr::Cast { to: Ty::F32, value: Box::new(var(x)), from_unsigned: false, to_unsigned: false };
        let t = self.assign(body, Ty::F32, nearest);
        let back = Expr::Cast { to: Ty::F64, value: Box::new(var(t)), from_unsigned: false, to_unsigned: false };
        let back = self.assign(body, Ty::F64, back);
        // Inexact: step to the f32 below in magnitude if nearest rounded away from zero, then
        // set the last bit (round to odd). NaN compares unequal and keeps its (odd or even) bits
        // harmlessly: every NaN encodes to the format's NaN.
        let bits = self.assign(body, Ty::I32, Expr::Bitcast { to: Ty::I32, value: Box::new(var(t)) });
        let away = cmp(
            CmpOp::Gt,
            Expr::Unary(lir::UnaryOp::Abs, Box::new(var(back))),
            Expr::Unary(lir::UnaryOp::Abs, Box::new(var(x))),
        );
        let toward_zero = Expr::Select(Box::new(away), Box::new(bin(lir::BinaryOp::Sub, var(bits), int(Ty::I32, 1))), Box::new(var(bits)));
        let odd = bin(lir::BinaryOp::Or, toward_zero, int(Ty::I32, 1));
        let exact = cmp(CmpOp::Eq, var(back), var(x));
        let chosen = Expr::Select(Box::new(exact), Box::new(var(bits)), Box::new(odd));
        self.assign(body, Ty::F32, Expr::Bitcast { to: Ty::F32, value: Box::new(chosen) })
    }

    pub(super) fn cast_expr(&self, e: Expr, from: DType, to: DType) -> Expr {
        if from == to {
            return e;
        }
        if to == DType::Bool {
            let zero = float_or_int(Ty::of(from), 0.0);
            return cmp(CmpOp::Ne, e, zero);
        }
        Expr::Cast {
            to: Ty::of(to),
            value: Box::new(e),
            from_unsigned: from == DType::Bool || (from.is_int() && !from.is_signed_int()),
            to_unsigned: to.is_int() && !to.is_signed_int(),
        }
    }
}
