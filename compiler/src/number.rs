//! Exact scalar values: [`Number`] holds a value of any dtype without loss.
//!
//! An `f64` holds every value of every float format and every integer of up to 53 bits, but
//! not every `i64` or `u64` (2^53 + 1 is not an `f64`). IR constants, kernel arguments and the
//! VM's tile elements are therefore [`Number`]s: integers and bools as the integer itself,
//! floats as the `f64` of their value. The conversions here follow the rules of
//! [`DType::round`] (docs/language.md, `cast`) and agree with them wherever an `f64` is exact.

use crate::dtype::{mask, sign_extend, DType};

/// A scalar value held exactly: an integer (or bool, 0 or 1) as its integer, a float as its
/// `f64` value. `i128` holds every value of `i64` and `u64`, and the exact results of
/// arithmetic on two of them before a range check.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    /// The value as an `f64`, rounded to nearest even when an integer has more than 53
    /// significant bits.
    pub fn to_f64(self) -> f64 {
        match self {
            Number::Int(v) => v as f64,
            Number::Float(f) => f,
        }
    }

    /// True unless the value is zero (a NaN is true, as IEEE `!= 0` says).
    pub fn is_nonzero(self) -> bool {
        match self {
            Number::Int(v) => v != 0,
            Number::Float(f) => f != 0.0,
        }
    }
}

impl From<i64> for Number {
    fn from(v: i64) -> Number {
        Number::Int(v as i128)
    }
}

impl From<f64> for Number {
    fn from(v: f64) -> Number {
        Number::Float(v)
    }
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Number::Int(v) => write!(f, "{v}"),
            Number::Float(v) => write!(f, "{v}"),
        }
    }
}

/// `value` as an `f64` rounded toward zero with the lowest significand bit set when
/// inexact ("round to odd"). Rounding that `f64` once more to a format of at most 51
/// significand bits gives the correctly rounded result, where rounding `value as f64` first
/// could round twice the wrong way (a tie created by the first rounding).
fn round_to_odd(value: i128) -> f64 {
    let magnitude = value.unsigned_abs();
    let nearest = magnitude as f64;
    let back = nearest as u128;
    let odd = if back == magnitude {
        nearest
    } else {
        // Toward zero: one step down when the nearest `f64` is above the magnitude.
        let truncated = if back > magnitude { f64::from_bits(nearest.to_bits() - 1) } else { nearest };
        f64::from_bits(truncated.to_bits() | 1)
    };
    if value < 0 { -odd } else { odd }
}

impl DType {
    /// The value of `number` in this dtype, with the rounding and saturation of `cast`
    /// ([`DType::round`]): integers round to nearest even and saturate (NaN → 0), exactly
    /// at every magnitude; floats round to nearest even once, also from integers beyond
    /// 2^53; `bool` is `!= 0`.
    pub fn round_number(self, number: Number) -> Number {
        match (self, number) {
            (DType::Bool, n) => Number::Int(n.is_nonzero() as i128),
            (DType::Int { .. }, Number::Int(v)) => {
                let (lo, hi) = self.int_range().expect("integer dtype");
                Number::Int(v.clamp(lo, hi))
            }
            (DType::Int { .. }, Number::Float(f)) => {
                if f.is_nan() {
                    return Number::Int(0);
                }
                let (lo, hi) = self.int_range().expect("integer dtype");
                // Compare in f64 before converting: `hi as f64` of i64/u64 rounds up to a
                // power of two that the integer type cannot hold.
                let r = f.round_ties_even();
                Number::Int(if r >= hi as f64 {
                    hi
                } else if r <= lo as f64 {
                    lo
                } else {
                    r as i128
                })
            }
            (DType::F32, Number::Int(v)) => Number::Float(v as f32 as f64),
            (DType::F64, Number::Int(v)) => Number::Float(v as f64),
            (DType::Float(_), Number::Int(v)) => Number::Float(self.round(round_to_odd(v))),
            (DType::Float(_), Number::Float(f)) => Number::Float(self.round(f)),
        }
    }

    /// The code of `number` rounded into this dtype (the low `bits()` bits of the result).
    pub fn encode_number(self, number: Number) -> u64 {
        match self.round_number(number) {
            Number::Int(v) => (v as u64) & mask(self.bits()),
            Number::Float(f) => self.encode(f),
        }
    }

    /// The value of a code (only its low `bits()` bits are read), exactly.
    pub fn decode_number(self, code: u64) -> Number {
        let code = code & mask(self.bits());
        match self {
            DType::Bool => Number::Int((code != 0) as i128),
            DType::Int { signed: false, .. } => Number::Int(code as i128),
            DType::Int { signed: true, bits } => Number::Int(sign_extend(code, bits as u32) as i128),
            DType::Float(_) => Number::Float(self.decode(code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_beyond_2_pow_53_stay_exact() {
        let big = (1i128 << 53) + 1;
        assert_eq!(DType::I64.round_number(Number::Int(big)), Number::Int(big));
        assert_eq!(DType::I64.decode_number(DType::I64.encode_number(Number::Int(big))), Number::Int(big));
        let max = i64::MAX as i128;
        assert_eq!(DType::I64.decode_number(DType::I64.encode_number(Number::Int(max))), Number::Int(max));
        let umax = u64::MAX as i128;
        assert_eq!(DType::U64.decode_number(DType::U64.encode_number(Number::Int(umax))), Number::Int(umax));
        // Saturation, exactly at the ends of the range.
        assert_eq!(DType::I64.round_number(Number::Int(max + 1)), Number::Int(max));
        assert_eq!(DType::U64.round_number(Number::Int(-1)), Number::Int(0));
        assert_eq!(DType::I64.round_number(Number::Float(1e300)), Number::Int(max));
        assert_eq!(DType::I64.round_number(Number::Float(-1e300)), Number::Int(i64::MIN as i128));
        assert_eq!(DType::U8.round_number(Number::Float(f64::NAN)), Number::Int(0));
        assert_eq!(DType::I8.round_number(Number::Float(2.5)), Number::Int(2));
        assert_eq!(DType::Bool.round_number(Number::Float(f64::NAN)), Number::Int(1));
    }

    #[test]
    fn integers_round_once_into_narrow_floats() {
        // 2^60 + 2^36 + 1 lies just above the midpoint of two f32 neighbours (spacing 2^37):
        // it rounds up. Through `as f64` first it would become the midpoint and round to even
        // (down).
        let v = (1i128 << 60) + (1i128 << 36) + 1;
        assert_eq!(DType::F32.round_number(Number::Int(v)), Number::Float((1u64 << 60) as f64 + (1u64 << 37) as f64));
        // The same for bf16 (8 significand bits: spacing 2^53 at 2^60).
        let v = (1i128 << 60) + (1i128 << 52) + 1;
        assert_eq!(DType::BF16.round_number(Number::Int(v)), Number::Float((1u64 << 60) as f64 + (1u64 << 53) as f64));
        let v = -((1i128 << 60) + (1i128 << 52) + 1);
        assert_eq!(DType::BF16.round_number(Number::Int(v)), Number::Float(-((1u64 << 60) as f64 + (1u64 << 53) as f64)));
        // Exact ties still go to even.
        let v = (1i128 << 60) + (1i128 << 52);
        assert_eq!(DType::BF16.round_number(Number::Int(v)), Number::Float((1u64 << 60) as f64));
        // Small integers agree with the f64 rules.
        for v in -300i128..300 {
            for d in [DType::F16, DType::BF16, DType::F8E4M3FN, DType::F4E2M1, DType::E8M0] {
                let (got, want) = (d.round_number(Number::Int(v)).to_f64(), d.round(v as f64));
                assert_eq!(got.to_bits(), want.to_bits(), "{v} into {d}");
            }
        }
    }
}
