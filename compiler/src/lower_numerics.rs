//! LIR expressions that decode and encode low-precision number formats.
//!
//! Expects: the register conventions of [`Ty::of`] — a low-precision float lives in an `i8`
//! container holding its code in the low bits, an integer below 8 bits holds its value.
//! Guarantees: [`decode_float`] gives the exact value as f32 (every format of at most 8 bits
//! is exact in f32); [`encode_float`] rounds an f32 to nearest with ties to the even code and
//! applies the overflow, NaN and sign rules of `dtype` (the same as `DType::encode`, checked
//! by the simulator against the VM). Everything is integer and bit arithmetic on the f32
//! pattern, so the generated code needs no tables and no conversion instructions that older
//! GPUs lack.
//!
//! The builders clone their input expression several times: callers pass a variable (or a
//! constant), never a large tree.

use crate::dtype::{DType, FloatFormat, Specials};
use crate::lir::{BinaryOp, CmpOp, Expr, Ty};

fn i32c(v: i64) -> Expr {
    Expr::Int(Ty::I32, v)
}

fn bin(op: BinaryOp, a: Expr, b: Expr) -> Expr {
    Expr::Binary(op, Box::new(a), Box::new(b))
}

fn cmp(op: CmpOp, a: Expr, b: Expr) -> Expr {
    Expr::Cmp(op, Box::new(a), Box::new(b))
}

fn select(c: Expr, a: Expr, b: Expr) -> Expr {
    Expr::Select(Box::new(c), Box::new(a), Box::new(b))
}

fn pow2(e: i32) -> f64 {
    2f64.powi(e)
}

/// The code (0..2^bits) in an i32, from an i8 container.
pub fn container_to_code(container: Expr, dtype: DType) -> Expr {
    let widened = Expr::Cast { to: Ty::I32, value: Box::new(container), from_unsigned: true, to_unsigned: false };
    bin(BinaryOp::And, widened, i32c(((1u64 << dtype.bits()) - 1) as i64))
}

/// An i8 container from a code in an i32 (0..256): codes of 128 and more wrap to negative i8.
pub fn code_to_container(code: Expr) -> Expr {
    narrow_code(code, Ty::I8)
}

/// The `bits`-bit two's complement code in an i32 (`code` a variable), sign-extended.
pub fn sign_extend(code: Expr, bits: u32) -> Expr {
    let up = i32c(32 - bits as i64);
    bin(BinaryOp::AShr, bin(BinaryOp::Shl, code, up.clone()), up)
}

/// An i8 or i16 register holding the low bits of an unsigned code in an i32 (`code` a
/// variable): codes at or above half the range wrap to negative, since casts saturate.
pub fn narrow_code(code: Expr, to: Ty) -> Expr {
    let half = 1i64 << (to.bytes() * 8 - 1);
    let wrapped = select(cmp(CmpOp::Gt, code.clone(), i32c(half - 1)), bin(BinaryOp::Sub, code.clone(), i32c(2 * half)), code);
    Expr::Cast { to, value: Box::new(wrapped), from_unsigned: false, to_unsigned: false }
}

/// The f32 value of a code held in an i32 (`code` must be a variable or constant).
pub fn decode_float(code: Expr, f: FloatFormat) -> Expr {
    let (e_bits, m_bits) = (f.exponent_bits as i64, f.mantissa_bits as i64);
    let nan = Expr::Float(Ty::F32, f64::NAN);
    if f.specials == Specials::PowersOfTwo {
        // 2^(code − bias): the f32 exponent field when the biases agree (e8m0: 127), with the
        // one code below the f32 normal range written out.
        let bias = f.bias() as i64;
        let shifted = bin(BinaryOp::Shl, bin(BinaryOp::Add, code.clone(), i32c(127 - bias)), i32c(23));
        let normal = Expr::Bitcast { to: Ty::F32, value: Box::new(shifted) };
        let all_ones = (1i64 << e_bits) - 1;
        let below_normal = cmp(CmpOp::Le, bin(BinaryOp::Add, code.clone(), i32c(127 - bias)), i32c(0));
        let tiny = Expr::Float(Ty::F32, pow2(-(bias as i32)));
        return select(
            cmp(CmpOp::Eq, code.clone(), i32c(all_ones)),
            nan,
            select(below_normal, tiny, normal),
        );
    }
    let magnitude_mask = (1i64 << (e_bits + m_bits)) - 1;
    let magnitude = bin(BinaryOp::And, code.clone(), i32c(magnitude_mask));
    let exponent = bin(BinaryOp::LShr, magnitude.clone(), i32c(m_bits));
    let mantissa = bin(BinaryOp::And, code.clone(), i32c((1i64 << m_bits) - 1));
    let bias = f.bias() as i64;
    let normal_bits = bin(
        BinaryOp::Or,
        bin(BinaryOp::Shl, bin(BinaryOp::Add, exponent.clone(), i32c(127 - bias)), i32c(23)),
        bin(BinaryOp::Shl, mantissa.clone(), i32c(23 - m_bits)),
    );
    let normal = Expr::Bitcast { to: Ty::F32, value: Box::new(normal_bits) };
    let subnormal = bin(
        BinaryOp::Mul,
        Expr::Cast { to: Ty::F32, value: Box::new(mantissa.clone()), from_unsigned: false, to_unsigned: false },
        Expr::Float(Ty::F32, pow2(1 - bias as i32 - m_bits as i32)),
    );
    let mut value = select(cmp(CmpOp::Eq, exponent.clone(), i32c(0)), subnormal, normal);
    let exponent_all_ones = (1i64 << e_bits) - 1;
    match f.specials {
        Specials::Ieee => {
            let special = select(cmp(CmpOp::Eq, mantissa, i32c(0)), Expr::Float(Ty::F32, f64::INFINITY), nan);
            value = select(cmp(CmpOp::Eq, exponent, i32c(exponent_all_ones)), special, value);
        }
        Specials::NanAtAllOnes => {
            value = select(cmp(CmpOp::Eq, magnitude, i32c(magnitude_mask)), nan, value);
        }
        Specials::Finite | Specials::PowersOfTwo => {}
    }
    if f.signed {
        let sign = bin(BinaryOp::And, bin(BinaryOp::LShr, code, i32c(e_bits + m_bits)), i32c(1));
        value = select(cmp(CmpOp::Ne, sign, i32c(0)), Expr::Unary(crate::lir::UnaryOp::Neg, Box::new(value.clone())), value);
    }
    value
}

/// The code (in an i32) of an f32 value rounded into `f` (`x` must be a variable).
pub fn encode_float(x: Expr, f: FloatFormat) -> Expr {
    let bits = Expr::Bitcast { to: Ty::I32, value: Box::new(x) };
    let abs = bin(BinaryOp::And, bits.clone(), i32c(0x7fff_ffff));
    let negative = cmp(CmpOp::Lt, bits.clone(), i32c(0));
    let is_nan = cmp(CmpOp::Gt, abs.clone(), i32c(0x7f80_0000));
    let nan_code = f.nan_code().unwrap_or(0) as i64;
    if f.specials == Specials::PowersOfTwo {
        // Nearest power of two, ties up: add half of the f32 mantissa range and keep the
        // exponent field. At most 2^-127 gives code 0; (2^-127, 2^-126) rounds up to code 1.
        let rounded = bin(BinaryOp::LShr, bin(BinaryOp::Add, abs.clone(), i32c(0x0040_0000)), i32c(23));
        let clamped = bin(BinaryOp::Min, rounded, i32c(f.max_finite_code() as i64));
        let code = select(
            cmp(CmpOp::Le, abs.clone(), i32c(0x0040_0000)),
            i32c(0),
            select(cmp(CmpOp::Lt, abs.clone(), i32c(0x0080_0000)), i32c(1), clamped),
        );
        return select(bin(BinaryOp::Or, negative, is_nan), i32c(nan_code), code);
    }
    let m_bits = f.mantissa_bits as i64;
    let e_bits = f.exponent_bits as i64;
    let bias = f.bias() as i64;
    let min_exponent = 1 - bias;
    // Normal range: round the f32 pattern at the target's last mantissa bit, ties to the even
    // code (the kept bit), then rebias the exponent field.
    let shift = 23 - m_bits;
    let lsb = bin(BinaryOp::And, bin(BinaryOp::LShr, abs.clone(), i32c(shift)), i32c(1));
    let rounded = bin(
        BinaryOp::LShr,
        bin(BinaryOp::Add, bin(BinaryOp::Add, abs.clone(), i32c((1i64 << (shift - 1)) - 1)), lsb),
        i32c(shift),
    );
    let normal = bin(BinaryOp::Sub, rounded, i32c((127 - bias) << m_bits));
    // Below the smallest normal: count quanta of the subnormal spacing, rounding to nearest
    // even through the float-to-int conversion (exact: it only scales by a power of two).
    let abs_float = Expr::Bitcast { to: Ty::F32, value: Box::new(abs.clone()) };
    let scaled = bin(BinaryOp::Mul, abs_float, Expr::Float(Ty::F32, pow2((m_bits - min_exponent) as i32)));
    let subnormal = Expr::Cast { to: Ty::I32, value: Box::new(scaled), from_unsigned: false, to_unsigned: false };
    let min_normal_bits = (min_exponent + 127) << 23;
    let code = select(cmp(CmpOp::Ge, abs.clone(), i32c(min_normal_bits)), normal, subnormal);
    let max_code = f.max_finite_code() as i64;
    let overflow = f.infinity_code().unwrap_or(max_code as u64) as i64;
    let code = select(cmp(CmpOp::Gt, code.clone(), i32c(max_code)), i32c(overflow), code);
    let code = if f.signed {
        let sign = bin(BinaryOp::Shl, bin(BinaryOp::LShr, bits.clone(), i32c(31)), i32c(e_bits + m_bits));
        bin(BinaryOp::Or, code, sign)
    } else {
        // Unsigned formats: a negative number (not −0) has no code but NaN.
        let negative_nonzero = bin(BinaryOp::And, negative, cmp(CmpOp::Ne, abs.clone(), i32c(0)));
        select(negative_nonzero, i32c(nan_code), code)
    };
    select(is_nan, i32c(nan_code), code)
}

/// A magic-number conversion of an integer of at most 8 bits (held in an `i8` container, see
/// [`Ty::of`]) to f16 or bf16, without an int→float conversion instruction.
///
/// The value `u` (unsigned, or a signed value biased to unsigned) goes into the low mantissa
/// bits of a 16-bit pattern whose unit in the last place is 1 and whose low mantissa bits are
/// zero: the patched pattern is exactly `base + u`, and subtracting `offset` (`base`, plus the
/// bias for signed sources) gives the source value exactly, since every operand and the
/// result are small integers of the destination format. Signed values are biased by flipping
/// the top bit inside `mask` of their sign-extended byte. Masking, biasing and merging the
/// pattern are one `lop3`, for two values at once when they share an i32 (bytes 0 and 2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HalfMagic {
    /// The bits of a container's byte that carry the value.
    pub mask: i64,
    /// The destination's 16-bit pattern merged with the value (and, for signed sources, with
    /// the bias bit, which the `lop3` flips).
    pub pattern: i64,
    /// The `lop3` truth table: `(a & b) | c` (0xEA) for unsigned sources, `(a & b) ^ c` (0x6A)
    /// for signed ones, with `a` the container bytes, `b` the mask and `c` the pattern.
    pub lut: u8,
    /// What to subtract from the patched pattern's value, times `scale`, to get the source
    /// value.
    pub offset: f64,
    /// What the patched pattern's value is multiplied by: 1, or `2^-r` for a code placed `r`
    /// bits above the bottom of the mantissa ([`raw_code_magic`]).
    pub scale: f64,
}

/// The magic-number plan for a cast of integer `from` to `to`, if there is an exact one:
///
/// * to f16 (11 significand bits), every integer of at most 8 bits: `0x6400` is 1024 with a
///   unit in the last place of 1, so `0x6400 | u` is `1024 + u` for `u < 1024`. Signed values
///   `v` become `u = v + 128` by flipping bit 7 of their (sign-extended) byte: pattern 0x6480,
///   offset 1152.
/// * to bf16 (8 significand bits), integers of at most 7 bits: `0x4300` is 128 with a unit of
///   1, so `0x4300 | u` is `128 + u` for `u < 128`. Signed values (−64..=63) become
///   `v + 64` by flipping bit 6 of their low 7 bits: pattern 0x4340, offset 192.
///
/// u8 and i8 to bf16 have no such pattern (256 values need 8 mantissa bits): `None`, as for
/// every other pair.
pub fn half_magic(from: DType, to: DType) -> Option<HalfMagic> {
    if !from.is_int() || from.bits() > 8 {
        return None;
    }
    let signed = from.is_signed_int();
    let (mask, pattern, offset) = match (to, signed) {
        (DType::F16, false) => (0xFF, 0x6400, 1024.0),
        (DType::F16, true) => (0xFF, 0x6480, 1152.0),
        (DType::BF16, false) if from.bits() <= 7 => (0x7F, 0x4300, 128.0),
        (DType::BF16, true) if from.bits() <= 7 => (0x7F, 0x4340, 192.0),
        _ => return None,
    };
    Some(HalfMagic { mask, pattern, lut: if signed { 0x6A } else { 0xEA }, offset, scale: 1.0 })
}

/// `x` in both 16-bit halves of an i32 constant.
fn both_halves(x: i64) -> Expr {
    i32c(x | (x << 16))
}

/// The packed pair of `to` (f16 or bf16) holding `v` in both halves; `None` for other types.
pub fn packed_constant(v: f64, to: Ty) -> Option<Expr> {
    let packed = to.packed()?;
    let dtype = if to == Ty::F16 { DType::F16 } else { DType::BF16 };
    Some(Expr::Bitcast { to: packed, value: Box::new(both_halves(dtype.encode(v) as i64)) })
}

/// The low (`high == false`) or high 16-bit half of the i32 `word` as a register of the
/// 16-bit type `to`.
pub fn half_of_word(word: Expr, high: bool, to: Ty) -> Expr {
    let bits = if high { bin(BinaryOp::LShr, word, i32c(16)) } else { bin(BinaryOp::And, word, i32c(0xFFFF)) };
    // The bits are below 2^16, so the unsigned narrowing keeps them unchanged.
    let half = Expr::Cast { to: Ty::I16, value: Box::new(bits), from_unsigned: true, to_unsigned: true };
    if to == Ty::I16 { half } else { Expr::Bitcast { to, value: Box::new(half) } }
}

/// The i32 whose low half holds the bits of the 16-bit register `low` and whose high half
/// those of `high`.
pub fn word_of_halves(low: Expr, high: Expr) -> Expr {
    let bits = |r: Expr| Expr::Cast { to: Ty::I32, value: Box::new(Expr::Bitcast { to: Ty::I16, value: Box::new(r) }), from_unsigned: true, to_unsigned: false };
    bin(BinaryOp::Or, bits(low), bin(BinaryOp::Shl, bits(high), i32c(16)))
}

/// The magic-number conversion of a raw integer code of `from` (1, 2 or 4 bits, or 8 bits to
/// f16: two's complement for signed formats, nothing above it cleared) to f16 or bf16, with
/// the code `r` bits above the bottom of each 16-bit half: the `lop3` keeps the code's bits (`mask`),
/// merges the pattern of `base` and, for signed codes, flips the sign bit, which biases the
/// value by half the range. The pattern's value is `base + u·2^r` (`u` the biased code), so
/// `value · 2^-r − (base·2^-r + bias)` is the code, exactly: `r + bits` stays within the
/// mantissa (`r` below 8 for f16, below 4 for bf16, and a multiple of the width), and every
/// operand and result is a small integer or a power of two. `None` for other formats and for
/// an `r` out of range.
pub fn raw_code_magic(from: DType, to: DType, r: u32) -> Option<HalfMagic> {
    let bits = from.bits();
    // Bytes only into f16, whose 10 mantissa bits hold them (bf16's 7 do not).
    let width_fits = matches!(bits, 1 | 2 | 4) || (bits == 8 && to == DType::F16);
    if !from.is_int() || from == DType::Bool || !width_fits || r >= raw_code_shift_limit(to)? || !r.is_multiple_of(bits) {
        return None;
    }
    let (pattern, base) = match to {
        DType::F16 => (0x6400, 1024.0),
        DType::BF16 => (0x4300, 128.0),
        _ => return None,
    };
    let mask = ((1i64 << bits) - 1) << r;
    let scale = 2f64.powi(-(r as i32));
    Some(if from.is_signed_int() {
        let sign = 1i64 << (bits - 1);
        HalfMagic { mask, pattern: pattern | (sign << r), lut: 0x6A, offset: base * scale + sign as f64, scale }
    } else {
        HalfMagic { mask, pattern, lut: 0xEA, offset: base * scale, scale }
    })
}

/// How far above the bottom of a half [`raw_code_magic`] can place a code of 1, 2, 4 or 8 bits
/// in `to` (exclusive): a power of two at most the mantissa width, so a code at bit `r`
/// below it ends at or below it.
pub fn raw_code_shift_limit(to: DType) -> Option<u32> {
    match to {
        DType::F16 => Some(8),
        DType::BF16 => Some(4),
        _ => None,
    }
}

impl HalfMagic {
    /// Both 16-bit patterns of `packed` (codes in bytes 0 and 2, anything in their other bits,
    /// which the mask clears), with one `lop3`.
    pub fn patterns(&self, packed: Expr) -> Expr {
        Expr::Lop3 { a: Box::new(packed), b: Box::new(both_halves(self.mask)), c: Box::new(both_halves(self.pattern)), lut: self.lut }
    }

    /// Both halves of `word` (holding the patterns) as a packed pair of `to`, the magic value
    /// subtracted from each (exact): one subtraction, or one `fma` for a scaled pattern.
    pub fn packed_value(&self, word: Expr, to: Ty) -> Option<Expr> {
        let pair = Expr::Bitcast { to: to.packed()?, value: Box::new(word) };
        if self.scale == 1.0 {
            return Some(bin(BinaryOp::Sub, pair, packed_constant(self.offset, to)?));
        }
        Some(Expr::Fma(Box::new(pair), Box::new(packed_constant(self.scale, to)?), Box::new(packed_constant(-self.offset, to)?)))
    }
}

/// A bit-placement conversion of a low-precision float to f16 or bf16.
///
/// The code's exponent and mantissa fields move as one block under the destination's:
/// shifted left by `dst_mantissa − Y`, the source mantissa becomes the top of the destination
/// mantissa and the source exponent field the low bits of the destination exponent field; the
/// sign bit moves to bit 15. The resulting pattern is the source value scaled by
/// `2^-(bias_dst − bias_src)`, normal and subnormal codes alike (both formats put their
/// subnormals at exponent field 0), so one exact multiplication by `scale` restores it.
/// Codes with a special meaning that the placement does not carry over are replaced
/// afterwards (`specials`). [`fast_half_cast`] chooses it only where every finite value
/// lands exactly: the pattern's exponent field stays below all-ones and the scaled value is
/// within the destination's range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FloatPlacement {
    /// Left shift that puts the exponent and mantissa fields under the destination's.
    pub field_shift: i64,
    /// The destination bits (within a 16-bit half) that the shifted fields occupy.
    pub field_mask: i64,
    /// Left shift that puts the sign bit at bit 15 (`None` for unsigned formats).
    pub sign_shift: Option<i64>,
    /// `2^(bias_dst − bias_src)`.
    pub scale: f64,
    /// The fix-up of special codes after the placement.
    pub specials: SpecialCodes,
}

/// Which source codes a [`FloatPlacement`] replaces after placing the bits (masks over the
/// source code).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SpecialCodes {
    /// Every code lands on its value (all codes finite, or the exponent field is as wide as
    /// the destination's, so that infinities and NaN land on infinities and NaN).
    None,
    /// Magnitude bits all ones (`magnitude`) are NaN (`f8e4m3fn`, `ueXmY`).
    NanAtAllOnes { magnitude: i64 },
    /// Exponent field all ones (`exponent`) is ±infinity when the mantissa bits (`mantissa`)
    /// are zero, NaN otherwise.
    Ieee { exponent: i64, mantissa: i64 },
    /// `e8m0`: code 0 is 2^−127 (the placement gives 0), code 255 is NaN.
    PowersOfTwo,
}

/// The fast conversion of `from` to `to` (f16 or bf16), if there is an exact one: the magic
/// number for integers of at most 8 bits ([`half_magic`]), the bit placement for floats
/// ([`FloatPlacement`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FastHalfCast {
    Magic(HalfMagic),
    Float(FloatPlacement),
}

/// The fast conversion plan of `from` to `to`, or `None` (the generic conversion is used).
///
/// Floats of at most 8 bits take the placement when their exponent field is at most 4 bits
/// (to f16: bias at most 7, so every value is within f16's range and above its smallest
/// subnormal) or at most 7 bits (to bf16); `f8e5m2` to f16 is the top byte of the f16
/// pattern (scale 1, infinities and NaN included); `e8m0` to bf16 is the bf16 exponent field.
pub fn fast_half_cast(from: DType, to: DType) -> Option<FastHalfCast> {
    if let Some(m) = half_magic(from, to) {
        return Some(FastHalfCast::Magic(m));
    }
    let f = from.float_format().filter(|_| from.bits() <= 8)?;
    let (mantissa, bias, exponent_bits) = match to {
        DType::F16 => (10i64, 15i64, 5u8),
        DType::BF16 => (7, 127, 8),
        _ => return None,
    };
    let (x, y) = (f.exponent_bits as i64, f.mantissa_bits as i64);
    let same_exponent = f.exponent_bits == exponent_bits && f.bias() as i64 == bias;
    let narrower = f.exponent_bits < exponent_bits;
    let field_mask_of = |bits: i64| (1i64 << bits) - 1;
    let specials = match f.specials {
        _ if y > mantissa => return None,
        Specials::Finite if narrower => SpecialCodes::None,
        Specials::NanAtAllOnes if narrower => SpecialCodes::NanAtAllOnes { magnitude: field_mask_of(x + y) },
        Specials::Ieee if same_exponent => SpecialCodes::None,
        Specials::Ieee if narrower => SpecialCodes::Ieee { exponent: field_mask_of(x) << y, mantissa: field_mask_of(y) },
        Specials::PowersOfTwo if same_exponent && !f.signed => SpecialCodes::PowersOfTwo,
        _ => return None,
    };
    let field_shift = mantissa - y;
    let field_bits = x + y;
    let field_mask = field_mask_of(field_bits) << field_shift;
    let sign_shift = f.signed.then(|| 15 - field_bits);
    let scale = pow2((bias - f.bias() as i64) as i32);
    Some(FastHalfCast::Float(FloatPlacement { field_shift, field_mask, sign_shift, scale, specials }))
}

impl FastHalfCast {
    /// The destination patterns of both 16-bit halves of `packed` (an i32 variable holding
    /// codes or containers in bytes 0 and 2, zero above them), with one `lop3`.
    pub fn patterns(&self, packed: Expr) -> Expr {
        let both = both_halves;
        match self {
            FastHalfCast::Magic(m) => m.patterns(packed),
            FastHalfCast::Float(p) => {
                let fields = bin(BinaryOp::Shl, packed.clone(), i32c(p.field_shift));
                let sign = match p.sign_shift {
                    Some(shift) => bin(BinaryOp::And, bin(BinaryOp::Shl, packed, i32c(shift)), both(0x8000)),
                    None => i32c(0),
                };
                // (fields & mask) | sign
                Expr::Lop3 { a: Box::new(fields), b: Box::new(both(p.field_mask)), c: Box::new(sign), lut: 0xEA }
            }
        }
    }

    /// The value of the low (`high == false`) or high 16-bit half of `word` (a variable
    /// holding the patterns) as `to` (f16 or bf16): the magic value subtracted, or the scale
    /// multiplied in.
    pub fn half(&self, word: Expr, high: bool, to: Ty) -> Expr {
        let pattern = half_of_word(word, high, to);
        match self {
            FastHalfCast::Magic(m) => bin(BinaryOp::Sub, pattern, Expr::Float(to, m.offset)),
            FastHalfCast::Float(p) if p.scale == 1.0 => pattern,
            FastHalfCast::Float(p) => bin(BinaryOp::Mul, pattern, Expr::Float(to, p.scale)),
        }
    }

    /// Both halves of `word` (a variable holding the patterns) as one packed pair of `to`
    /// (f16 or bf16), corrected by one packed subtraction or multiplication: the same values
    /// as [`Self::half`] gives for each half (the corrections are exact). `codes` is the i32
    /// with the two codes at the bottom of its halves (anything above them): special codes are
    /// fixed in both halves at once with integer operations, all-ones-magnitude NaNs by
    /// OR-ing the NaN pattern into each half whose code is one (a pattern with every exponent
    /// bit and the top mantissa bit set is a NaN), IEEE infinities and NaNs by
    /// [`ieee_specials`]. `None` for `e8m0`, whose halves are converted one by one.
    pub fn packed(&self, word: Expr, codes: Expr, to: Ty) -> Option<Expr> {
        if !self.packs(to) {
            return None;
        }
        let packed = to.packed()?;
        let p = match self {
            FastHalfCast::Magic(m) => return m.packed_value(word, to),
            FastHalfCast::Float(p) => p,
        };
        let pattern = Expr::Bitcast { to: packed, value: Box::new(word) };
        let value = if p.scale == 1.0 { pattern } else { bin(BinaryOp::Mul, pattern, packed_constant(p.scale, to)?) };
        if let SpecialCodes::Ieee { exponent, mantissa } = p.specials {
            return Some(Expr::Bitcast { to: packed, value: Box::new(ieee_specials(value, codes, exponent, mantissa, to)) });
        }
        let SpecialCodes::NanAtAllOnes { magnitude } = p.specials else { return Some(value) };
        let (flags, top) = all_ones_flags(codes, magnitude);
        let nan_pattern = if to == Ty::F16 { 0x7E00 } else { 0x7FC0 };
        // Each flag (bit log2(top) of its half) times the NaN pattern over it: one multiplication
        // where the pattern is a multiple of the flag, else the flag shifted down first.
        let nans = if nan_pattern % top == 0 {
            bin(BinaryOp::Mul, flags, i32c(nan_pattern / top))
        } else {
            bin(BinaryOp::Mul, bin(BinaryOp::LShr, flags, i32c(top.trailing_zeros() as i64)), i32c(nan_pattern))
        };
        let bits = bin(BinaryOp::Or, Expr::Bitcast { to: Ty::I32, value: Box::new(value) }, nans);
        Some(Expr::Bitcast { to: packed, value: Box::new(bits) })
    }

    /// The last correction of [`Self::packed`] as `(scale, offset)`, when it is the only step
    /// after the patterns: each half's value is `pattern · scale − offset`, exactly. `None`
    /// where special codes are patched in afterwards.
    pub fn correction(&self) -> Option<(f64, f64)> {
        match self {
            FastHalfCast::Magic(m) => Some((m.scale, m.offset)),
            FastHalfCast::Float(p) if p.specials == SpecialCodes::None => Some((p.scale, 0.0)),
            FastHalfCast::Float(_) => None,
        }
    }

    /// Whether [`Self::packed`] has a packed form for a pair converted to `to`: f16 or bf16,
    /// and no special codes but all-ones NaNs and IEEE infinities and NaNs.
    pub fn packs(&self, to: Ty) -> bool {
        to.packed().is_some()
            && match self {
                FastHalfCast::Magic(_) => true,
                FastHalfCast::Float(p) => matches!(p.specials, SpecialCodes::None | SpecialCodes::NanAtAllOnes { .. } | SpecialCodes::Ieee { .. }),
            }
    }

    /// The value of a special code, replacing `value` (a variable holding what [`Self::half`]
    /// gave for the low or high half of `packed`, the i32 variable of codes in bytes 0 and 2
    /// with zero bytes above them); `None` when the plan has no special codes.
    pub fn fix_specials(&self, value: Expr, packed: Expr, high: bool, to: Ty) -> Option<Expr> {
        let FastHalfCast::Float(p) = self else { return None };
        let code = if high { bin(BinaryOp::LShr, packed, i32c(16)) } else { bin(BinaryOp::And, packed, i32c(0xFF)) };
        let is = |mask: i64, want: i64| cmp(CmpOp::Eq, bin(BinaryOp::And, code.clone(), i32c(mask)), i32c(want));
        let nan = Expr::Float(to, f64::NAN);
        Some(match p.specials {
            SpecialCodes::None => return None,
            SpecialCodes::NanAtAllOnes { magnitude } => select(is(magnitude, magnitude), nan, value),
            SpecialCodes::Ieee { exponent, mantissa } => {
                // The placed value of an infinity code is a nonzero number of its sign.
                let infinity = bin(BinaryOp::Mul, value.clone(), Expr::Float(to, f64::INFINITY));
                select(is(exponent, exponent), select(is(mantissa, 0), infinity, nan), value)
            }
            SpecialCodes::PowersOfTwo => {
                select(is(0xFF, 0), Expr::Float(to, pow2(-127)), select(is(0xFF, 0xFF), nan, value))
            }
        })
    }
}

/// For each half of `codes`, whether the bits of `field` (a contiguous mask) are all ones: the
/// field plus its lowest bit carries into the bit just above it, `top`, which is the flag
/// (the flags, and `top`). The field stays below bit 15, so no carry reaches the other half.
fn all_ones_flags(codes: Expr, field: i64) -> (Expr, i64) {
    let low = field & field.wrapping_neg();
    let top = field + low;
    (bin(BinaryOp::And, bin(BinaryOp::Add, bin(BinaryOp::And, codes, both_halves(field)), both_halves(low)), both_halves(top)), top)
}

/// The bits (an i32) of the packed pair `value` (placed and scaled codes) with the IEEE
/// special codes of both halves replaced at once: where a code's exponent field (`exponent`,
/// a mask over the code) is all ones, the half's exponent and mantissa become those of an
/// infinity (mantissa field zero: `mantissa`) or of a NaN, its sign kept. `codes` holds the two
/// codes at the bottom of each half (anything above them). All with integer operations on the
/// pair: [`all_ones_flags`] for the exponent, a nonzero mantissa plus its mask reaches the bit
/// above the mantissa, and a flag (bit 0 of a half) times a pattern below 2^16 spreads it over
/// its half only.
fn ieee_specials(value: Expr, codes: Expr, exponent: i64, mantissa: i64, to: Ty) -> Expr {
    let (infinity, quiet) = if to == Ty::F16 { (0x7C00, 0x0200) } else { (0x7F80, 0x0040) };
    let (all_ones, exponent_top) = all_ones_flags(codes.clone(), exponent);
    let special = bin(BinaryOp::LShr, all_ones, i32c(exponent_top.trailing_zeros() as i64));
    let mantissa_top = mantissa + 1;
    let nonzero = bin(BinaryOp::And, bin(BinaryOp::Add, bin(BinaryOp::And, codes, both_halves(mantissa)), both_halves(mantissa)), both_halves(mantissa_top));
    let nan = bin(BinaryOp::And, bin(BinaryOp::LShr, nonzero, i32c(mantissa_top.trailing_zeros() as i64)), special.clone());
    let patterns = bin(BinaryOp::Or, bin(BinaryOp::Mul, special.clone(), i32c(infinity)), bin(BinaryOp::Mul, nan, i32c(quiet)));
    let magnitudes = bin(BinaryOp::Mul, special, i32c(0x7FFF));
    // (value & ~magnitudes) | patterns
    let bits = Expr::Bitcast { to: Ty::I32, value: Box::new(value) };
    Expr::Lop3 { a: Box::new(bits), b: Box::new(magnitudes), c: Box::new(patterns), lut: 0xBA }
}

/// The `prmt` selector that puts byte 0 of `a` into byte 0 and byte 0 of `b` (source byte 4)
/// into byte 2 of the result; bytes 1 and 3 take bytes 1 of `a` and of `b`, zero for
/// zero-extended containers.
pub const PAIR_SELECTOR: i64 = 0x5410;

/// Two containers (`i8` expressions) in bytes 0 and 2 of one i32, with `prmt`.
pub fn pack_pair(low: Expr, high: Expr) -> Expr {
    Expr::Prmt { a: Box::new(widen_container(low)), b: Box::new(widen_container(high)), selector: Box::new(i32c(PAIR_SELECTOR)) }
}

/// One container (an `i8` expression) zero-extended into byte 0 of an i32.
pub fn widen_container(container: Expr) -> Expr {
    Expr::Cast { to: Ty::I32, value: Box::new(container), from_unsigned: true, to_unsigned: false }
}

#[cfg(test)]
mod tests {
    //! The builders are checked end to end by the simulator tests (they run the LIR against
    //! the VM); here only the shape of the output.
    use super::*;
    use crate::lir::Var;

    #[test]
    fn builders_produce_i32_codes_and_f32_values() {
        let program = crate::lir::Program {
            name: "t".into(),
            params: vec![],
            block_threads: 32,
            shared_bytes: 0,
            vars: vec![Ty::F32, Ty::I32],
            body: vec![],
        };
        for d in [DType::F4E2M1, DType::F8E4M3FN, DType::F8E5M2, DType::E8M0, DType::UE4M3] {
            let f = d.float_format().unwrap();
            assert_eq!(program.ty(&encode_float(Expr::Var(Var(0)), f)), Ty::I32);
            assert_eq!(program.ty(&decode_float(Expr::Var(Var(1)), f)), Ty::F32);
        }
    }

    #[test]
    fn fast_half_cast_plans() {
        let d = |n: &str| DType::from_name(n).unwrap();
        // Integers: the f16 magic for every width, the bf16 one up to 7 bits.
        let magic = |from: &str, to| match fast_half_cast(d(from), to) {
            Some(FastHalfCast::Magic(m)) => Some((m.mask, m.pattern, m.lut, m.offset)),
            _ => None,
        };
        assert_eq!(magic("u4", DType::F16), Some((0xFF, 0x6400, 0xEA, 1024.0)));
        assert_eq!(magic("i8", DType::F16), Some((0xFF, 0x6480, 0x6A, 1152.0)));
        assert_eq!(magic("u7", DType::BF16), Some((0x7F, 0x4300, 0xEA, 128.0)));
        assert_eq!(magic("i2", DType::BF16), Some((0x7F, 0x4340, 0x6A, 192.0)));
        assert_eq!(fast_half_cast(d("u8"), DType::BF16), None);
        assert_eq!(fast_half_cast(d("i8"), DType::BF16), None);
        assert_eq!(fast_half_cast(d("u4"), DType::F32), None);
        assert_eq!(fast_half_cast(d("i16"), DType::F16), None);
        // f4e2m1 → f16: the three fields under bits 9..11, the sign from bit 3 to 15, ×2^14.
        let plan = FloatPlacement { field_shift: 9, field_mask: 0x0E00, sign_shift: Some(12), scale: 16384.0, specials: SpecialCodes::None };
        assert_eq!(fast_half_cast(d("f4e2m1"), DType::F16), Some(FastHalfCast::Float(plan)));
        // Five exponent bits reach beyond f16 unless they are f16's own (f8e5m2: the top byte).
        assert_eq!(fast_half_cast(d("f7e5m1"), DType::F16), None);
        assert_eq!(fast_half_cast(d("ue5m3"), DType::F16), None);
        assert!(matches!(fast_half_cast(d("f7e5m1"), DType::BF16), Some(FastHalfCast::Float(_))));
        let top_byte = FloatPlacement { field_shift: 8, field_mask: 0x7F00, sign_shift: Some(8), scale: 1.0, specials: SpecialCodes::None };
        assert_eq!(fast_half_cast(d("f8e5m2"), DType::F16), Some(FastHalfCast::Float(top_byte)));
        // Special codes are replaced after the placement.
        let specials = |from: &str, to| match fast_half_cast(d(from), to) {
            Some(FastHalfCast::Float(p)) => Some(p.specials),
            _ => None,
        };
        assert_eq!(specials("f8e4m3fn", DType::F16), Some(SpecialCodes::NanAtAllOnes { magnitude: 0x7F }));
        assert_eq!(specials("ue4m3", DType::BF16), Some(SpecialCodes::NanAtAllOnes { magnitude: 0x7F }));
        assert_eq!(specials("f8e4m3", DType::F16), Some(SpecialCodes::Ieee { exponent: 0x78, mantissa: 0x07 }));
        assert_eq!(specials("f8e5m2", DType::BF16), Some(SpecialCodes::Ieee { exponent: 0x7C, mantissa: 0x03 }));
        assert_eq!(specials("e8m0", DType::BF16), Some(SpecialCodes::PowersOfTwo));
        assert_eq!(fast_half_cast(d("e8m0"), DType::F16), None);
        assert_eq!(fast_half_cast(d("f8e6m1"), DType::F16), None);
        // The builders give i32 patterns and f16/bf16 halves.
        let program = crate::lir::Program { name: "t".into(), params: vec![], block_threads: 32, shared_bytes: 0, vars: vec![Ty::I32], body: vec![] };
        for (from, to) in [("u4", DType::F16), ("f6e3m2", DType::BF16)] {
            let plan = fast_half_cast(d(from), to).unwrap();
            assert_eq!(program.ty(&plan.patterns(Expr::Var(Var(0)))), Ty::I32);
            assert_eq!(program.ty(&plan.half(Expr::Var(Var(0)), true, Ty::of(to))), Ty::of(to));
        }
    }
}
