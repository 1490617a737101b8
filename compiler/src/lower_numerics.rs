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
    if let Some(placed) = decode_float_by_placement(code.clone(), f) {
        return placed;
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

/// The f32 value of a code (an i32 variable or constant) of a format whose exponent field is
/// narrower than f32's, by bit placement: the exponent and mantissa fields go under f32's
/// (mantissa at the top of f32's, exponent in the low bits of f32's exponent field), the sign
/// to bit 31, and one exact multiplication by `2^(127 − bias)` rescales normal and subnormal
/// codes alike (both formats keep their subnormals at exponent field 0). Special codes are
/// marked in the pattern before that: the placed field that is all ones for them (the
/// exponent of IEEE formats; exponent and mantissa for all-ones NaNs) plus its lowest bit
/// carries into the bit above it, and that bit spread up to bit 30 gives f32's all-ones
/// exponent over the code's own mantissa, which the multiplication keeps: infinity or NaN.
/// `None` where that does not give the value: `e8m0` and exponent fields as wide as f32's,
/// and all-ones NaNs without mantissa bits.
fn decode_float_by_placement(code: Expr, f: FloatFormat) -> Option<Expr> {
    let (x, y) = (f.exponent_bits as i64, f.mantissa_bits as i64);
    if x >= 8 || y > 23 {
        return None;
    }
    let placed = bin(BinaryOp::Shl, bin(BinaryOp::And, code.clone(), i32c((1i64 << (x + y)) - 1)), i32c(23 - y));
    let marking = match f.specials {
        Specials::Finite => None,
        Specials::Ieee => Some(1i64 << 23),
        Specials::NanAtAllOnes if y > 0 => Some(1i64 << (23 - y)),
        Specials::NanAtAllOnes | Specials::PowersOfTwo => return None,
    };
    // The field ends at bit 23 + x − 1; its carry reaches `top`, spread up to bit 30.
    let top = 1i64 << (23 + x);
    let mut bits = match marking {
        Some(low) => mark_all_ones(placed, low, top, (1i64 << 31) - top),
        None => placed,
    };
    if f.signed {
        let sign = bin(BinaryOp::And, bin(BinaryOp::Shl, code, i32c(31 - (x + y))), i32c(i32::MIN as i64));
        bits = bin(BinaryOp::Or, bits, sign);
    }
    let pattern = Expr::Bitcast { to: Ty::F32, value: Box::new(bits) };
    Some(bin(BinaryOp::Mul, pattern, Expr::Float(Ty::F32, pow2(127 - f.bias()))))
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
    /// The bits of each 16-bit half (low, high) of the i32 that carry the value: a container's
    /// byte, or a raw code where it lies in its half ([`raw_code_magic`]).
    pub mask: [i64; 2],
    /// Each half's 16-bit pattern merged with the value (and, for signed sources, with the
    /// bias bit, which the `lop3` flips).
    pub pattern: [i64; 2],
    /// The `lop3` truth table: `(a & b) | c` (0xEA) for unsigned sources, `(a & b) ^ c` (0x6A)
    /// for signed ones, with `a` the container bytes, `b` the mask and `c` the pattern.
    pub lut: u8,
    /// What to subtract from each half's patched pattern's value, times `scale`, to get the
    /// source value.
    pub offset: [f64; 2],
    /// What each half's patched pattern's value is multiplied by: 1, or `2^-r` for a code
    /// placed `r` bits above the bottom of the mantissa ([`raw_code_magic`]).
    pub scale: [f64; 2],
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
    Some(HalfMagic { mask: [mask; 2], pattern: [pattern; 2], lut: if signed { 0x6A } else { 0xEA }, offset: [offset; 2], scale: [1.0; 2] })
}

/// `x` in both 16-bit halves of an i32 constant.
fn both_halves(x: i64) -> Expr {
    i32c(x | (x << 16))
}

/// The packed pair of `to` (f16 or bf16) holding `v` in both halves; `None` for other types.
pub fn packed_constant(v: f64, to: Ty) -> Option<Expr> {
    packed_constant_halves([v, v], to)
}

/// The packed pair of `to` (f16 or bf16) holding `values[0]` in its low half and `values[1]`
/// in its high half; `None` for other types.
pub fn packed_constant_halves(values: [f64; 2], to: Ty) -> Option<Expr> {
    let packed = to.packed()?;
    let dtype = if to == Ty::F16 { DType::F16 } else { DType::BF16 };
    let bits = dtype.encode(values[0]) as i64 | (dtype.encode(values[1]) as i64) << 16;
    Some(Expr::Bitcast { to: packed, value: Box::new(i32c(bits)) })
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

/// The magic-number conversion of a pair of raw integer codes of `from` (any width up to 8
/// bits: two's complement for signed formats, nothing above it cleared) to f16 or bf16, with
/// the code of the low half `r[0]` bits above the bottom of that half and the code of the high
/// half `r[1]` bits above the bottom of its half: the `lop3` keeps the codes' bits (`mask`),
/// merges the pattern of `base` and, for signed codes, flips the sign bit, which biases the
/// value by half the range. A half's pattern value is `base + u·2^r` (`u` the biased code), so
/// `value · 2^-r − (base·2^-r + bias)` is the code, exactly: `r + bits` stays within the
/// mantissa ([`raw_code_capacity`]: `base + u·2^r` below `2·base`), and every operand and
/// result is a small integer or a power of two. `None` for other formats and for an `r` out of
/// range.
pub fn raw_code_magic(from: DType, to: DType, r: [u32; 2]) -> Option<HalfMagic> {
    let bits = from.bits();
    let capacity = raw_code_capacity(to)?;
    if !from.is_int() || from == DType::Bool || bits > 8 || r.iter().any(|&r| r + bits > capacity) {
        return None;
    }
    let (pattern, base) = match to {
        DType::F16 => (0x6400, 1024.0),
        DType::BF16 => (0x4300, 128.0),
        _ => return None,
    };
    let half = |r: u32| {
        let mask = ((1i64 << bits) - 1) << r;
        let scale = 2f64.powi(-(r as i32));
        if from.is_signed_int() {
            let sign = 1i64 << (bits - 1);
            (mask, pattern | (sign << r), base * scale + sign as f64, scale)
        } else {
            (mask, pattern, base * scale, scale)
        }
    };
    let (low, high) = (half(r[0]), half(r[1]));
    Some(HalfMagic {
        mask: [low.0, high.0],
        pattern: [low.1, high.1],
        lut: if from.is_signed_int() { 0x6A } else { 0xEA },
        offset: [low.2, high.2],
        scale: [low.3, high.3],
    })
}

/// How many bits above the bottom of a half the code of [`raw_code_magic`] may reach (its
/// bit position plus its width): the mantissa width of `to`, 10 for f16 and 7 for bf16.
pub fn raw_code_capacity(to: DType) -> Option<u32> {
    match to {
        DType::F16 => Some(10),
        DType::BF16 => Some(7),
        _ => None,
    }
}

impl HalfMagic {
    /// Both 16-bit patterns of `packed` (each half's code where its `mask` takes it, anything
    /// in the other bits, which the mask clears), with one `lop3`.
    pub fn patterns(&self, packed: Expr) -> Expr {
        let halves = |x: [i64; 2]| i32c(x[0] | x[1] << 16);
        Expr::Lop3 { a: Box::new(packed), b: Box::new(halves(self.mask)), c: Box::new(halves(self.pattern)), lut: self.lut }
    }

    /// Both halves of `word` (holding the patterns) as a packed pair of `to`, the magic value
    /// subtracted from each (exact): one subtraction, or one `fma` for a scaled pattern.
    pub fn packed_value(&self, word: Expr, to: Ty) -> Option<Expr> {
        let pair = Expr::Bitcast { to: to.packed()?, value: Box::new(word) };
        if self.scale == [1.0; 2] {
            return Some(bin(BinaryOp::Sub, pair, packed_constant_halves(self.offset, to)?));
        }
        let minus_offset = self.offset.map(|o| -o);
        Some(Expr::Fma(Box::new(pair), Box::new(packed_constant_halves(self.scale, to)?), Box::new(packed_constant_halves(minus_offset, to)?)))
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

impl FloatPlacement {
    /// Both 16-bit patterns from `fields`, an i32 with each code's exponent and mantissa
    /// fields under the destination's (each code shifted by `field_shift`), and `sign`, one
    /// with each code's sign bit at bit 15 of its half (shifted by `sign_shift`; `None` for
    /// unsigned formats): `(fields & field_mask) | (sign & 0x8000)` in each half, the masks
    /// dropping whatever else the two hold.
    pub fn patterns_of(&self, fields: Expr, sign: Option<Expr>) -> Expr {
        let sign = match sign {
            Some(sign) => bin(BinaryOp::And, sign, both_halves(0x8000)),
            None => i32c(0),
        };
        // (fields & mask) | sign
        Expr::Lop3 { a: Box::new(fields), b: Box::new(both_halves(self.field_mask)), c: Box::new(sign), lut: 0xEA }
    }

    /// Whether [`FastHalfCast::packed`] reads the codes themselves for a pair converted to
    /// `to`: for special codes not marked in the patterns.
    pub fn reads_codes(&self, to: Ty) -> bool {
        self.specials != SpecialCodes::None && self.special_marking(to).is_none()
    }

    /// The marking of special codes in the placed patterns ([`FastHalfCast::marked_specials`])
    /// for a conversion to `to` (f16 or bf16): the placed field whose all-ones value marks a
    /// special code, and the bit just above it (`top`). The field plus its lowest bit carries
    /// into `top` exactly when it is all ones; setting the bits from `top` up to bit 14 then
    /// completes an all-ones exponent. That is the value for IEEE codes (the placed exponent
    /// field: infinity over a zero mantissa, NaN over any other), and for all-ones-magnitude
    /// NaNs (the placed exponent and mantissa fields) when the mantissa part is not empty.
    fn special_marking(&self, to: Ty) -> Option<(i64, i64)> {
        let mantissa_mask = match to {
            Ty::F16 => 0x03FF,
            Ty::BF16 => 0x007F,
            _ => return None,
        };
        let field = match self.specials {
            SpecialCodes::NanAtAllOnes { .. } if self.field_mask & mantissa_mask != 0 => self.field_mask,
            SpecialCodes::Ieee { exponent, .. } => exponent << self.field_shift,
            _ => return None,
        };
        let top = field + (field & field.wrapping_neg());
        (top < 0x8000).then_some((field, top))
    }
}

impl FastHalfCast {
    /// The destination patterns of both 16-bit halves of `packed` (an i32 variable holding
    /// codes or containers in bytes 0 and 2, zero above them), with one `lop3`.
    pub fn patterns(&self, packed: Expr) -> Expr {
        match self {
            FastHalfCast::Magic(m) => m.patterns(packed),
            FastHalfCast::Float(p) => {
                let fields = bin(BinaryOp::Shl, packed.clone(), i32c(p.field_shift));
                let sign = p.sign_shift.map(|shift| bin(BinaryOp::Shl, packed, i32c(shift)));
                p.patterns_of(fields, sign)
            }
        }
    }

    /// The value of the low (`high == false`) or high 16-bit half of `word` (a variable
    /// holding the patterns) as `to` (f16 or bf16): the magic value subtracted, or the scale
    /// multiplied in.
    pub fn half(&self, word: Expr, high: bool, to: Ty) -> Expr {
        let pattern = half_of_word(word, high, to);
        match self {
            FastHalfCast::Magic(m) => {
                let h = high as usize;
                if m.scale[h] == 1.0 {
                    bin(BinaryOp::Sub, pattern, Expr::Float(to, m.offset[h]))
                } else {
                    Expr::Fma(Box::new(pattern), Box::new(Expr::Float(to, m.scale[h])), Box::new(Expr::Float(to, -m.offset[h])))
                }
            }
            FastHalfCast::Float(p) if p.scale == 1.0 => pattern,
            FastHalfCast::Float(p) => bin(BinaryOp::Mul, pattern, Expr::Float(to, p.scale)),
        }
    }

    /// The patterns of both halves of `pattern` (an i32 variable holding what
    /// [`Self::patterns`] gives) with the special codes marked in the patterns themselves,
    /// where the plan allows it (`FloatPlacement::special_marking`): IEEE infinities and NaNs,
    /// and all-ones-magnitude NaNs (`f8e4m3fn`, `ueXmY`). The marking field plus its lowest
    /// bit carries into the bit above it, which, spread up to bit 14 (one `lop3` when it is
    /// bit 14 itself, as for every 4-bit exponent into f16, else one multiplication), makes the
    /// exponent all ones over the code's own mantissa, sign kept. Infinities and NaNs stay so
    /// through the exact correction, so the correction stays the plan's last step
    /// ([`Self::correction`]). `None` where the plan has no such marking.
    pub fn marked_specials(&self, pattern: Expr, to: Ty) -> Option<Expr> {
        let FastHalfCast::Float(p) = self else { return None };
        let (field, top) = p.special_marking(to)?;
        let halves = |x: i64| x | x << 16;
        Some(mark_all_ones(pattern, halves(field & field.wrapping_neg()), halves(top), halves(0x8000 - top)))
    }

    /// Both halves of `word` (a variable holding the patterns, marked by
    /// [`Self::marked_specials`] where it marks) as one packed pair of `to` (f16 or bf16),
    /// corrected by one packed subtraction or multiplication: the same values as
    /// [`Self::half`] gives for each half (the corrections are exact). `codes` is the i32 with
    /// the two codes at the bottom of its halves (anything above them): all-ones-magnitude
    /// NaNs not marked in the patterns (no mantissa bits) are fixed in both halves at once with
    /// integer operations, by OR-ing the NaN pattern into each half whose code is one (a
    /// pattern with every exponent bit and the top mantissa bit set is a NaN). `None` for
    /// `e8m0`, whose halves are converted one by one.
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
        if p.special_marking(to).is_some() {
            return Some(value);
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

    /// The last correction of [`Self::packed`] as `(scale, offset)` of each half (low, high),
    /// when it is the only step after the (marked) patterns: each half's value is
    /// `pattern · scale − offset`, exactly (NaN for a NaN pattern). `None` where special codes
    /// are patched in afterwards.
    pub fn correction(&self, to: Ty) -> Option<([f64; 2], [f64; 2])> {
        match self {
            FastHalfCast::Magic(m) => Some((m.scale, m.offset)),
            FastHalfCast::Float(p) if p.specials == SpecialCodes::None || p.special_marking(to).is_some() => Some(([p.scale; 2], [0.0; 2])),
            FastHalfCast::Float(_) => None,
        }
    }

    /// Whether [`Self::packed`] has a packed form for a pair converted to `to`: f16 or bf16,
    /// and no special codes but all-ones NaNs and IEEE infinities and NaNs (marked in the
    /// patterns).
    pub fn packs(&self, to: Ty) -> bool {
        to.packed().is_some()
            && match self {
                FastHalfCast::Magic(_) => true,
                FastHalfCast::Float(p) => match p.specials {
                    SpecialCodes::None | SpecialCodes::NanAtAllOnes { .. } => true,
                    SpecialCodes::Ieee { .. } => p.special_marking(to).is_some(),
                    SpecialCodes::PowersOfTwo => false,
                },
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

/// `pattern` (an i32 variable) with the bits of `fill` set where a field is all ones: the
/// field plus its lowest bit (`low`) carries into the bit just above it, `top`, the lowest
/// bit of `fill`, which is then spread over `fill` (one `lop3` where `fill` is `top` itself,
/// one multiplication otherwise). `low`, `top` and `fill` may hold a bit in each 16-bit half,
/// for both halves at once: a field stays below its half's top bit, so no carry crosses.
fn mark_all_ones(pattern: Expr, low: i64, top: i64, fill: i64) -> Expr {
    let carried = bin(BinaryOp::Add, pattern.clone(), i32c(low));
    if fill == top {
        // pattern | (carried & top)
        return Expr::Lop3 { a: Box::new(pattern), b: Box::new(carried), c: Box::new(i32c(top)), lut: 0xF8 };
    }
    let flags = bin(BinaryOp::And, carried, i32c(top));
    bin(BinaryOp::Or, pattern, bin(BinaryOp::Mul, flags, i32c(fill / top)))
}

/// For each half of `codes`, whether the bits of `field` (a contiguous mask) are all ones: the
/// field plus its lowest bit carries into the bit just above it, `top`, which is the flag
/// (the flags, and `top`). The field stays below bit 15, so no carry reaches the other half.
fn all_ones_flags(codes: Expr, field: i64) -> (Expr, i64) {
    let low = field & field.wrapping_neg();
    let top = field + low;
    (bin(BinaryOp::And, bin(BinaryOp::Add, bin(BinaryOp::And, codes, both_halves(field)), both_halves(low)), both_halves(top)), top)
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

    /// Every code of every integer width, at every place in each half that `raw_code_magic`
    /// accepts, with other bits set around it: the `lop3` (computed here from its truth
    /// table) and the correction give the code's value exactly, in f16 arithmetic as decoded
    /// by `DType`; places beyond the mantissa are refused.
    #[test]
    fn raw_code_magic_is_exact_at_every_place() {
        for to in [DType::F16, DType::BF16] {
            let capacity = raw_code_capacity(to).unwrap();
            for bits in 1..=8u32 {
                for signed in [false, true] {
                    let from = DType::Int { signed, bits: bits as u8 };
                    if bits > capacity {
                        assert_eq!(raw_code_magic(from, to, [0, 0]), None, "{from} → {to}");
                        continue;
                    }
                    assert_eq!(raw_code_magic(from, to, [capacity + 1 - bits, 0]), None, "{from} → {to}");
                    assert_eq!(raw_code_magic(from, to, [0, capacity + 1 - bits]), None, "{from} → {to}");
                    let places = 0..=capacity - bits;
                    for (r0, r1) in places.clone().flat_map(|a| places.clone().map(move |b| (a, b))) {
                        let m = raw_code_magic(from, to, [r0, r1]).unwrap_or_else(|| panic!("{from} → {to} at {r0}, {r1}"));
                        // The correction's constants are values of `to` (the packed constants).
                        for x in m.scale.into_iter().chain(m.offset) {
                            assert_eq!(to.decode(to.encode(x)), x, "{from} → {to} at {r0}, {r1}");
                        }
                        for code in 0..1u64 << bits {
                            let other = (code * 7 + 3) % (1 << bits);
                            // Codes in place, every other bit of the word set.
                            let inside = (code << r0) | (other << (16 + r1));
                            let mask = ((1u64 << bits) - 1) << r0 | ((1u64 << bits) - 1) << (16 + r1);
                            let word = inside | (0xFFFF_FFFF & !mask);
                            let (b, c) = ((m.mask[0] | m.mask[1] << 16) as u64, (m.pattern[0] | m.pattern[1] << 16) as u64);
                            let lop3 = if m.lut == 0xEA { (word & b) | c } else { (word & b) ^ c };
                            for (half, value) in [(0, code), (1, other)] {
                                let pattern = to.decode((lop3 >> (16 * half)) & 0xFFFF);
                                let want = if signed && value >= 1 << (bits - 1) { value as f64 - (1u64 << bits) as f64 } else { value as f64 };
                                assert_eq!(pattern * m.scale[half] - m.offset[half], want, "{from} → {to} at {r0}, {r1}: code {value}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fast_half_cast_plans() {
        let d = |n: &str| DType::from_name(n).unwrap();
        // Integers: the f16 magic for every width, the bf16 one up to 7 bits.
        let magic = |from: &str, to| match fast_half_cast(d(from), to) {
            Some(FastHalfCast::Magic(m)) if m.mask[0] == m.mask[1] && m.pattern[0] == m.pattern[1] && m.offset[0] == m.offset[1] => {
                Some((m.mask[0], m.pattern[0], m.lut, m.offset[0]))
            }
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
