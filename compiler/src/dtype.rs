//! Number formats known to the compiler, the VM and the runtime.
//!
//! This is the one place that says how many bits a format has, what its name is in `.tl`
//! source, which value each code stands for, and how an `f64` value is rounded into a format.
//! Every other crate asks this module; nothing else decodes or encodes a format.
//!
//! # Formats
//!
//! * `bool`; integers `i1..i8`, `u1..u8` (two's complement / unsigned) and `i16 i32 i64`,
//!   `u16 u32 u64`.
//! * IEEE floats `f16`, `bf16`, `f32`, `f64`.
//! * Sub-byte floats `fNeXmY` for 3 ≤ N ≤ 7, X ≥ 1, X + Y = N − 1: bias 2^(X−1) − 1,
//!   subnormals, every code finite (no infinity, no NaN). OCP FP4/FP6 are `f4e2m1`, `f6e2m3`,
//!   `f6e3m2`.
//! * 8-bit floats `f8eXmY` (X + Y = 7, X, Y ≥ 1) are IEEE-style: the all-ones exponent holds infinity and
//!   NaN (`f8e5m2`, `f8e4m3` with max 240, `f8e3m4`). `f8eXmYfn` has no infinity and one NaN
//!   magnitude, all ones (OCP `f8e4m3fn`, max 448).
//! * Unsigned floats `ueXmY` (X, Y ≥ 1, X + Y ≤ 8): no sign bit, subnormals, the all-ones code is NaN, no
//!   infinity (`ue4m3` = the NVFP4 block scale, max 448).
//! * `e8m0`: the MX block scale, 2^(e−127) for e in 0..=254, 0xFF is NaN; no sign, no zero.
//!
//! # Rounding into a format ([`DType::encode`], [`DType::round`])
//!
//! * Floats round to nearest, ties to even, at every magnitude (subnormals included).
//! * Beyond the largest finite value: IEEE-style formats overflow to infinity as IEEE 754 says
//!   (at max + ½ulp); every other format saturates to ±max (PTX `.satfinite`); infinities
//!   saturate the same way.
//! * NaN becomes the format's canonical NaN (IEEE formats below 32 bits: quiet, sign clear;
//!   `fn`/`ue`/`e8m0`: the all-ones code; f32 and f64 keep the NaN's own bits). Formats
//!   without NaN (the sub-byte `fNeXmY`) encode NaN as +0.
//! * Unsigned float formats encode negative numbers as NaN; −0 is +0, except in `e8m0`, which
//!   has no zero: there −0 is NaN, +0 and positive values below 2^−127 become 2^−127.
//! * `e8m0` rounds to the nearest power of two with ties up (1.5·2^k → 2^(k+1)), and every value
//!   strictly between 2^−127 and 2^−126 rounds up to 2^−126 (this matches the reference vectors).
//! * Integers round to nearest even and saturate; NaN becomes 0. `bool` is `value != 0`
//!   (NaN is true).
//!
//! # Storage
//!
//! A code is the low [`DType::bits`] bits of a `u64`. Tensors pack codes densely, least
//! significant bit first: element k occupies bits `[k·n, (k+1)·n)` of the byte buffer and may
//! straddle bytes ([`read_packed`], [`write_packed`]).

use std::fmt;

/// What the codes with the largest exponent field mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Specials {
    /// Every code is a finite number (sub-byte `fNeXmY`).
    Finite,
    /// IEEE 754: the all-ones exponent is infinity (mantissa 0) or NaN (mantissa ≠ 0).
    Ieee,
    /// No infinity; the all-ones magnitude (exponent and mantissa) is NaN (`f8e4m3fn`, `ueXmY`).
    NanAtAllOnes,
    /// `e8m0`: every exponent code e < all-ones is 2^(e − bias); no zero, no subnormals; the
    /// all-ones code is NaN.
    PowersOfTwo,
}

/// A binary floating-point format: optional sign bit, exponent field, mantissa field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FloatFormat {
    pub exponent_bits: u8,
    pub mantissa_bits: u8,
    pub signed: bool,
    pub specials: Specials,
}

/// A scalar element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    Bool,
    /// Two's complement (`signed`) or unsigned integer of 1..=8, 16, 32 or 64 bits.
    Int { signed: bool, bits: u8 },
    Float(FloatFormat),
}

const fn ieee(exponent_bits: u8, mantissa_bits: u8) -> DType {
    DType::Float(FloatFormat { exponent_bits, mantissa_bits, signed: true, specials: Specials::Ieee })
}

#[allow(non_upper_case_globals)]
impl DType {
    pub const I1: DType = DType::Int { signed: true, bits: 1 };
    pub const I2: DType = DType::Int { signed: true, bits: 2 };
    pub const I3: DType = DType::Int { signed: true, bits: 3 };
    pub const I4: DType = DType::Int { signed: true, bits: 4 };
    pub const I8: DType = DType::Int { signed: true, bits: 8 };
    pub const I16: DType = DType::Int { signed: true, bits: 16 };
    pub const I32: DType = DType::Int { signed: true, bits: 32 };
    pub const I64: DType = DType::Int { signed: true, bits: 64 };
    pub const U1: DType = DType::Int { signed: false, bits: 1 };
    pub const U2: DType = DType::Int { signed: false, bits: 2 };
    pub const U3: DType = DType::Int { signed: false, bits: 3 };
    pub const U4: DType = DType::Int { signed: false, bits: 4 };
    pub const U8: DType = DType::Int { signed: false, bits: 8 };
    pub const U16: DType = DType::Int { signed: false, bits: 16 };
    pub const U32: DType = DType::Int { signed: false, bits: 32 };
    pub const U64: DType = DType::Int { signed: false, bits: 64 };
    pub const F16: DType = ieee(5, 10);
    pub const BF16: DType = ieee(8, 7);
    pub const F32: DType = ieee(8, 23);
    pub const F64: DType = ieee(11, 52);
    pub const F8E4M3FN: DType = DType::Float(FloatFormat {
        exponent_bits: 4,
        mantissa_bits: 3,
        signed: true,
        specials: Specials::NanAtAllOnes,
    });
    pub const F8E5M2: DType = ieee(5, 2);
    pub const F8E4M3: DType = ieee(4, 3);
    pub const F8E3M4: DType = ieee(3, 4);
    pub const F4E2M1: DType = DType::sub_byte_float(2, 1);
    pub const F6E2M3: DType = DType::sub_byte_float(2, 3);
    pub const F6E3M2: DType = DType::sub_byte_float(3, 2);
    pub const E8M0: DType = DType::Float(FloatFormat {
        exponent_bits: 8,
        mantissa_bits: 0,
        signed: false,
        specials: Specials::PowersOfTwo,
    });
    pub const UE4M3: DType = DType::unsigned_float(4, 3);

    /// A sub-byte float `fNeXmY` (all codes finite).
    pub const fn sub_byte_float(exponent_bits: u8, mantissa_bits: u8) -> DType {
        DType::Float(FloatFormat { exponent_bits, mantissa_bits, signed: true, specials: Specials::Finite })
    }

    /// An unsigned float `ueXmY` (all-ones NaN, no infinity).
    pub const fn unsigned_float(exponent_bits: u8, mantissa_bits: u8) -> DType {
        DType::Float(FloatFormat {
            exponent_bits,
            mantissa_bits,
            signed: false,
            specials: Specials::NanAtAllOnes,
        })
    }

    /// The standard byte-aligned dtypes (the ones `.npy` files and every backend hold natively).
    pub const STANDARD: [DType; 13] = [
        DType::Bool,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
    ];

    /// Every dtype with at most 8 bits, plus the standard ones: the set tests iterate over.
    pub fn all() -> Vec<DType> {
        let mut out = DType::STANDARD.to_vec();
        for bits in (1..=7).chain(std::iter::empty()) {
            out.push(DType::Int { signed: true, bits });
            out.push(DType::Int { signed: false, bits });
        }
        for n in 3..=7u8 {
            for x in 1..n {
                out.push(DType::sub_byte_float(x, n - 1 - x));
            }
        }
        for x in 1..=7u8 {
            out.push(ieee(x, 7 - x));
            out.push(DType::Float(FloatFormat {
                exponent_bits: x,
                mantissa_bits: 7 - x,
                signed: true,
                specials: Specials::NanAtAllOnes,
            }));
        }
        for x in 1..=8u8 {
            for y in 0..=8 - x {
                out.push(DType::unsigned_float(x, y));
            }
        }
        out.push(DType::E8M0);
        out.retain(|d| d.is_valid());
        out.sort();
        out.dedup();
        out
    }

    /// Whether this value describes a format we support (see the module docs).
    pub fn is_valid(self) -> bool {
        match self {
            DType::Bool => true,
            DType::Int { bits, .. } => matches!(bits, 1..=8 | 16 | 32 | 64),
            DType::Float(f) => {
                let n = f.total_bits();
                if self.is_standard() {
                    return true;
                }
                match (f.signed, f.specials) {
                    (true, Specials::Finite) => (3..=7).contains(&n) && f.exponent_bits >= 1,
                    // An 8-bit IEEE-style format needs a mantissa bit to tell NaN from infinity.
                    (true, Specials::Ieee | Specials::NanAtAllOnes) => n == 8 && f.exponent_bits >= 1 && f.mantissa_bits >= 1,
                    (false, Specials::NanAtAllOnes) => (2..=8).contains(&n) && f.exponent_bits >= 1 && f.mantissa_bits >= 1,
                    (false, Specials::PowersOfTwo) => self == DType::E8M0,
                    _ => false,
                }
            }
        }
    }

    fn is_standard(self) -> bool {
        DType::STANDARD.contains(&self)
    }

    /// The name used in `.tl` source and in every text form.
    pub fn name(self) -> String {
        match self {
            DType::Bool => "bool".into(),
            DType::Int { signed, bits } => format!("{}{bits}", if signed { 'i' } else { 'u' }),
            DType::F16 => "f16".into(),
            DType::BF16 => "bf16".into(),
            DType::F32 => "f32".into(),
            DType::F64 => "f64".into(),
            DType::E8M0 => "e8m0".into(),
            DType::Float(f) => {
                let (x, y) = (f.exponent_bits, f.mantissa_bits);
                if !f.signed {
                    format!("ue{x}m{y}")
                } else {
                    let suffix = if f.total_bits() == 8 && f.specials == Specials::NanAtAllOnes { "fn" } else { "" };
                    format!("f{}e{x}m{y}{suffix}", f.total_bits())
                }
            }
        }
    }

    /// Parses a dtype name; `None` for anything that is not a supported format.
    pub fn from_name(name: &str) -> Option<DType> {
        fn num(s: &str) -> Option<u8> {
            if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
                return None;
            }
            s.parse().ok()
        }
        // "eXmY" -> (X, Y)
        fn split(s: &str) -> Option<(u8, u8)> {
            let rest = s.strip_prefix('e')?;
            let m = rest.find('m')?;
            let x = num(&rest[..m])?;
            let y = &rest[m + 1..];
            let y = if y == "0" { 0 } else { num(y)? };
            Some((x, y))
        }
        let d = match name {
            "bool" => DType::Bool,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            "f32" => DType::F32,
            "f64" => DType::F64,
            "e8m0" | "ue8m0" => DType::E8M0,
            _ => {
                if let Some(rest) = name.strip_prefix("ue") {
                    let (x, y) = split(&format!("e{rest}"))?;
                    DType::unsigned_float(x, y)
                } else if let Some(b) = name.strip_prefix('i').and_then(num) {
                    DType::Int { signed: true, bits: b }
                } else if let Some(b) = name.strip_prefix('u').and_then(num) {
                    DType::Int { signed: false, bits: b }
                } else if let Some(rest) = name.strip_prefix('f') {
                    let e = rest.find('e')?;
                    let n = num(&rest[..e])?;
                    let (body, fnu) = match rest[e..].strip_suffix("fn") {
                        Some(b) => (b, true),
                        None => (&rest[e..], false),
                    };
                    let (x, y) = split(body)?;
                    if x as u32 + y as u32 + 1 != n as u32 {
                        return None;
                    }
                    let specials = match (n, fnu) {
                        (8, false) => Specials::Ieee,
                        (8, true) => Specials::NanAtAllOnes,
                        (_, false) => Specials::Finite,
                        (_, true) => return None,
                    };
                    let d = DType::Float(FloatFormat { exponent_bits: x, mantissa_bits: y, signed: true, specials });
                    // The standard floats have their own names only.
                    if d.is_standard() {
                        return None;
                    }
                    d
                } else {
                    return None;
                }
            }
        };
        (d.is_valid() && d.name() == name || (d == DType::E8M0 && name == "ue8m0")).then_some(d)
    }

    /// Width of one element in bits.
    pub fn bits(self) -> u32 {
        match self {
            DType::Bool => 8,
            DType::Int { bits, .. } => bits as u32,
            DType::Float(f) => f.total_bits(),
        }
    }

    /// Storage width in bytes of one element held on its own (a byte-aligned dtype's size; a
    /// sub-byte dtype occupies one byte when it is not packed).
    pub fn bytes(self) -> usize {
        self.bits().div_ceil(8) as usize
    }

    /// Whether elements are whole bytes (8, 16, 32 or 64 bits).
    pub fn is_byte_aligned(self) -> bool {
        self.bits() % 8 == 0
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::Float(_))
    }

    pub fn float_format(self) -> Option<FloatFormat> {
        match self {
            DType::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn is_int(self) -> bool {
        matches!(self, DType::Int { .. })
    }

    pub fn is_signed_int(self) -> bool {
        matches!(self, DType::Int { signed: true, .. })
    }

    pub fn is_unsigned_int(self) -> bool {
        matches!(self, DType::Int { signed: false, .. })
    }

    /// Narrow formats whose arithmetic goes through a wider type: integers below 8 bits, and
    /// every float other than f16, bf16, f32 and f64 (see [`DType::compute_type`]).
    pub fn is_low_precision(self) -> bool {
        match self {
            DType::Bool => false,
            DType::Int { bits, .. } => bits < 8,
            DType::Float(_) => !self.is_standard(),
        }
    }

    /// The type arithmetic on this dtype is computed in: `i32` for integers below 8 bits, `f32`
    /// for the low-precision floats, the dtype itself otherwise. The result is then converted
    /// back with the rules of [`DType::round`] (saturating).
    pub fn compute_type(self) -> DType {
        match self {
            DType::Int { bits, .. } if bits < 8 => DType::I32,
            d if d.is_float() && d.is_low_precision() => DType::F32,
            d => d,
        }
    }

    /// Smallest and largest representable integer, for integer dtypes and bool.
    pub fn int_range(self) -> Option<(i128, i128)> {
        match self {
            DType::Bool => Some((0, 1)),
            DType::Int { signed: true, bits } => Some((-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)),
            DType::Int { signed: false, bits } => Some((0, (1i128 << bits) - 1)),
            DType::Float(_) => None,
        }
    }

    /// The largest finite value (floats) or the largest integer.
    pub fn max_value(self) -> f64 {
        match self {
            DType::Float(f) => f.decode(f.max_finite_code()),
            d => d.int_range().expect("int").1 as f64,
        }
    }

    /// Rounds `value` to the nearest value representable in this dtype, as a cast does (the
    /// module docs list the rules). Returns the decoded value, so `round` is idempotent.
    pub fn round(self, value: f64) -> f64 {
        match self {
            DType::F64 => value,
            DType::F32 => value as f32 as f64,
            DType::Float(_) => self.decode(self.encode(value)),
            // `value != 0` as IEEE says: NaN is true.
            DType::Bool => {
                if value != 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            DType::Int { .. } => {
                if value.is_nan() {
                    return 0.0;
                }
                let (lo, hi) = self.int_range().expect("integer dtype");
                // `+ 0.0` turns the -0.0 of rounding a small negative value into the integer 0.
                value.round_ties_even().clamp(lo as f64, hi as f64) + 0.0
            }
        }
    }

    /// The code of `value` rounded into this dtype (the low `bits()` bits of the result).
    pub fn encode(self, value: f64) -> u64 {
        match self {
            DType::F64 => value.to_bits(),
            DType::F32 => (value as f32).to_bits() as u64,
            DType::Float(f) => f.encode(value),
            DType::Bool | DType::Int { .. } => {
                // Clamp in i128: the f64 of the largest i64/u64 rounds up to 2^63/2^64, which
                // would wrap if converted directly.
                let (lo, hi) = self.int_range().expect("integer or bool");
                let r = self.round(value);
                let v = if r >= hi as f64 {
                    hi
                } else if r <= lo as f64 {
                    lo
                } else {
                    r as i128
                };
                (v as u64) & mask(self.bits())
            }
        }
    }

    /// The value of a code (only its low `bits()` bits are read).
    pub fn decode(self, code: u64) -> f64 {
        let code = code & mask(self.bits());
        match self {
            DType::F64 => f64::from_bits(code),
            DType::F32 => f32::from_bits(code as u32) as f64,
            DType::Float(f) => f.decode(code),
            DType::Bool => (code != 0) as u8 as f64,
            DType::Int { signed: false, .. } => code as f64,
            DType::Int { signed: true, bits } => sign_extend(code, bits as u32) as f64,
        }
    }

    /// Writes the code of `value` as little-endian bytes (`bytes()` of them).
    pub fn encode_bytes(self, value: f64, out: &mut [u8]) {
        let code = self.encode(value).to_le_bytes();
        let n = self.bytes();
        out[..n].copy_from_slice(&code[..n]);
    }

    /// Reads a little-endian code of `bytes()` bytes.
    pub fn decode_bytes(self, bytes: &[u8]) -> f64 {
        let mut code = [0u8; 8];
        let n = self.bytes();
        code[..n].copy_from_slice(&bytes[..n]);
        self.decode(u64::from_le_bytes(code))
    }
}

impl FloatFormat {
    pub fn total_bits(self) -> u32 {
        self.signed as u32 + self.exponent_bits as u32 + self.mantissa_bits as u32
    }

    pub fn bias(self) -> i32 {
        (1i32 << (self.exponent_bits - 1)) - 1
    }

    fn exponent_all_ones(self) -> u64 {
        (1u64 << self.exponent_bits) - 1
    }

    fn magnitude_mask(self) -> u64 {
        mask(self.exponent_bits as u32 + self.mantissa_bits as u32)
    }

    fn sign_bit(self) -> u64 {
        if self.signed {
            1u64 << (self.exponent_bits as u32 + self.mantissa_bits as u32)
        } else {
            0
        }
    }

    pub fn has_nan(self) -> bool {
        self.specials != Specials::Finite
    }

    pub fn has_infinity(self) -> bool {
        self.specials == Specials::Ieee
    }

    /// The code of the canonical NaN, if the format has one.
    pub fn nan_code(self) -> Option<u64> {
        let m = self.mantissa_bits as u32;
        match self.specials {
            Specials::Finite => None,
            Specials::Ieee => Some((self.exponent_all_ones() << m) | (1u64 << (m.max(1) - 1))),
            Specials::NanAtAllOnes | Specials::PowersOfTwo => Some(self.magnitude_mask()),
        }
    }

    /// The code of +infinity, if the format has one.
    pub fn infinity_code(self) -> Option<u64> {
        self.has_infinity().then(|| self.exponent_all_ones() << self.mantissa_bits)
    }

    /// The positive code of the largest finite value.
    pub fn max_finite_code(self) -> u64 {
        match self.specials {
            Specials::Finite => self.magnitude_mask(),
            Specials::Ieee => (self.exponent_all_ones() << self.mantissa_bits) - 1,
            Specials::NanAtAllOnes | Specials::PowersOfTwo => self.magnitude_mask() - 1,
        }
    }

    pub fn decode(self, code: u64) -> f64 {
        let m_bits = self.mantissa_bits as u32;
        let negative = code & self.sign_bit() != 0;
        let magnitude = code & self.magnitude_mask();
        let exponent = magnitude >> m_bits;
        let mantissa = magnitude & mask(m_bits);
        let all_ones = exponent == self.exponent_all_ones();
        let value = match self.specials {
            Specials::Ieee if all_ones => {
                if mantissa == 0 {
                    f64::INFINITY
                } else {
                    return f64::NAN;
                }
            }
            Specials::NanAtAllOnes | Specials::PowersOfTwo if magnitude == self.magnitude_mask() => {
                return f64::NAN;
            }
            Specials::PowersOfTwo => pow2(exponent as i32 - self.bias()),
            _ if exponent == 0 => mantissa as f64 * pow2(1 - self.bias() - m_bits as i32),
            _ => (mantissa + (1u64 << m_bits)) as f64 * pow2(exponent as i32 - self.bias() - m_bits as i32),
        };
        if negative {
            -value
        } else {
            value
        }
    }

    pub fn encode(self, value: f64) -> u64 {
        let nan = || self.nan_code().unwrap_or(0);
        if value.is_nan() {
            return nan();
        }
        let negative = value.is_sign_negative();
        if !self.signed && negative && (value != 0.0 || self.specials == Specials::PowersOfTwo) {
            return nan();
        }
        let sign = if negative { self.sign_bit() } else { 0 };
        let a = value.abs();
        let max_code = self.max_finite_code();
        if a.is_infinite() {
            return sign | self.infinity_code().unwrap_or(max_code);
        }
        if self.specials == Specials::PowersOfTwo {
            return self.encode_power_of_two(a);
        }
        if a == 0.0 {
            return sign;
        }
        let m_bits = self.mantissa_bits as i32;
        let min_exponent = 1 - self.bias();
        // a = 2^e · f with f in [1, 2); below the normal range the quantum stays that of the
        // smallest binade (subnormals).
        let e = floor_log2(a).max(min_exponent);
        let quantum_exponent = e - m_bits;
        // a / 2^quantum_exponent is exact in f64 for every format here (it only scales).
        let scaled = a * pow2(-quantum_exponent);
        // Truncate to the quantum below, then step to the next code when the rest is more than
        // half a quantum, or exactly half and the code below is odd: ties go to the even *code*
        // (for formats with mantissa bits that is the even significand; for `eXm0` formats it
        // is the even exponent, which is what bit-level rounding gives).
        let below = scaled.floor();
        let rest = scaled - below;
        if below > 1e18 {
            return sign | self.infinity_code().unwrap_or(max_code);
        }
        let below = below as u64;
        let code_below = if e == min_exponent && below < (1u64 << m_bits) {
            below // subnormal (or zero)
        } else {
            // below in [2^m, 2^(m+1)): exponent field e + bias, mantissa below − 2^m.
            (((e + self.bias()) as u64) << m_bits) + (below - (1u64 << m_bits))
        };
        // Codes of one sign are ordered like their values, so the next value is code + 1
        // (a mantissa carry moves into the exponent field by itself).
        let code = if rest > 0.5 || (rest == 0.5 && code_below % 2 == 1) { code_below + 1 } else { code_below };
        if code > max_code {
            // Overflow: IEEE rounds to infinity; the others saturate.
            return sign | self.infinity_code().unwrap_or(max_code);
        }
        sign | code
    }

    /// e8m0: nearest power of two with ties up; values below the smallest normal f32 round up
    /// (the reference vectors' behavior); clamped to [2^-127, 2^127].
    fn encode_power_of_two(self, a: f64) -> u64 {
        let bias = self.bias();
        let min = pow2(-bias);
        if a <= min {
            return 0;
        }
        let e = if a < pow2(1 - bias) {
            1 - bias
        } else {
            let e = floor_log2(a);
            let frac = a * pow2(-e); // in [1, 2)
            if frac >= 1.5 {
                e + 1
            } else {
                e
            }
        };
        ((e + bias) as u64).min(self.max_finite_code())
    }
}

/// ⌊log2 a⌋ for finite a > 0 (exact, also for subnormal f64).
pub fn floor_log2(a: f64) -> i32 {
    let bits = a.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal f64: the leading one is somewhere in the mantissa.
        let mantissa = bits & ((1u64 << 52) - 1);
        -1022 - (mantissa.leading_zeros() as i32 - 12) - 1
    } else {
        biased - 1023
    }
}

/// 2^e as f64, exact for e in the f64 range (including subnormal powers).
fn pow2(e: i32) -> f64 {
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074))
    }
}

/// The low `bits` bits set.
pub fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Interprets the low `bits` bits of `code` as two's complement.
pub fn sign_extend(code: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((code << shift) as i64) >> shift
}

/// Number of bytes that hold `count` elements of `bits` bits packed densely.
pub fn packed_bytes(count: usize, bits: u32) -> Option<usize> {
    count.checked_mul(bits as usize).map(|b| b.div_ceil(8))
}

/// Code of element `index` of a densely packed, LSB-first buffer of `bits`-bit elements.
pub fn read_packed(buffer: &[u8], bits: u32, index: usize) -> u64 {
    let start = index * bits as usize;
    let mut code = 0u64;
    let mut done = 0u32;
    while done < bits {
        let bit = start + done as usize;
        let byte = buffer[bit / 8] as u64;
        let offset = (bit % 8) as u32;
        let take = (8 - offset).min(bits - done);
        code |= ((byte >> offset) & mask(take)) << done;
        done += take;
    }
    code
}

/// Writes the low `bits` bits of `code` as element `index` of a densely packed, LSB-first
/// buffer, leaving every other bit alone.
pub fn write_packed(buffer: &mut [u8], bits: u32, index: usize, code: u64) {
    let start = index * bits as usize;
    let mut done = 0u32;
    while done < bits {
        let bit = start + done as usize;
        let offset = (bit % 8) as u32;
        let take = (8 - offset).min(bits - done);
        let field = (mask(take) << offset) as u8;
        let value = (((code >> done) & mask(take)) << offset) as u8;
        buffer[bit / 8] = (buffer[bit / 8] & !field) | value;
        done += take;
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_for_every_format() {
        let all = DType::all();
        assert!(all.len() > 60, "{}", all.len());
        for d in all {
            assert!(d.is_valid(), "{d:?}");
            assert_eq!(DType::from_name(&d.name()), Some(d), "{}", d.name());
        }
        for bad in ["f17", "i9", "u0", "f8e4m4", "f4e2m1fn", "f9e4m4", "f16e5m10", "ue0m3", "f1", "i04", "e8m1", "f8e7m0"] {
            assert_eq!(DType::from_name(bad), None, "{bad}");
        }
        assert_eq!(DType::from_name("f8e4m3fn"), Some(DType::F8E4M3FN));
        assert_eq!(DType::from_name("f4e2m1"), Some(DType::F4E2M1));
        assert_eq!(DType::from_name("ue4m3"), Some(DType::UE4M3));
        assert_eq!(DType::from_name("e8m0"), Some(DType::E8M0));
    }

    #[test]
    fn format_constants_match_the_ocp_and_ieee_tables() {
        assert_eq!(DType::F8E4M3FN.max_value(), 448.0);
        assert_eq!(DType::F8E4M3.max_value(), 240.0);
        assert_eq!(DType::F8E5M2.max_value(), 57344.0);
        assert_eq!(DType::F8E3M4.max_value(), 15.5);
        assert_eq!(DType::F4E2M1.max_value(), 6.0);
        assert_eq!(DType::F6E2M3.max_value(), 7.5);
        assert_eq!(DType::F6E3M2.max_value(), 28.0);
        assert_eq!(DType::UE4M3.max_value(), 448.0);
        assert_eq!(DType::E8M0.max_value(), 2f64.powi(127));
        assert_eq!(DType::F16.max_value(), 65504.0);
        assert_eq!(DType::I4.int_range(), Some((-8, 7)));
        assert_eq!(DType::U3.int_range(), Some((0, 7)));
    }

    #[test]
    fn f16_rounds_to_nearest_even_and_overflows_to_infinity() {
        assert_eq!(DType::F16.round(1.0 + 2f64.powi(-11)), 1.0);
        assert_eq!(DType::F16.round(1.0 + 3.0 * 2f64.powi(-11)), 1.0 + 2f64.powi(-9));
        assert_eq!(DType::F16.round(70000.0), f64::INFINITY);
        assert_eq!(DType::F16.round(65519.0), 65504.0);
        assert_eq!(DType::F16.round(65520.0), f64::INFINITY);
    }

    #[test]
    fn saturation_and_nan_rules() {
        assert_eq!(DType::F8E4M3FN.round(1e6), 448.0);
        assert_eq!(DType::F8E4M3FN.round(-f64::INFINITY), -448.0);
        assert!(DType::F8E4M3FN.round(f64::NAN).is_nan());
        assert_eq!(DType::F4E2M1.round(7.0), 6.0);
        assert_eq!(DType::F4E2M1.encode(f64::NAN), 0);
        assert_eq!(DType::F4E2M1.round(5.0), 4.0);
        assert_eq!(DType::F4E2M1.round(0.25), 0.0);
        assert_eq!(DType::F8E5M2.round(1e6), f64::INFINITY);
        assert!(DType::E8M0.round(-1.0).is_nan());
        assert!(DType::E8M0.round(-0.0).is_nan());
        assert_eq!(DType::E8M0.round(0.0), 2f64.powi(-127));
        assert_eq!(DType::E8M0.round(3.0), 4.0);
        assert_eq!(DType::E8M0.round(2.9), 2.0);
        assert!(DType::UE4M3.round(-2.0).is_nan());
        assert_eq!(DType::I4.round(100.0), 7.0);
        assert_eq!(DType::U2.round(-3.0), 0.0);
        assert_eq!(DType::I8.round(2.5), 2.0);
    }

    #[test]
    fn integers_saturate_and_round_even() {
        assert_eq!(DType::I8.round(300.0), 127.0);
        assert_eq!(DType::I8.round(-300.0), -128.0);
        assert_eq!(DType::I32.round(2.5), 2.0);
        assert_eq!(DType::U8.round(-1.0), 0.0);
        assert_eq!(DType::I4.encode(-1.0), 0xf);
        assert_eq!(DType::I4.decode(0xf), -1.0);
        assert_eq!(DType::U64.encode(u64::MAX as f64), u64::MAX);
        assert_eq!(DType::I64.encode(i64::MAX as f64), i64::MAX as u64);
        assert_eq!(DType::I64.encode(-1e300), i64::MIN as u64);
        assert_eq!(DType::U64.encode(-5.0), 0);
    }

    #[test]
    fn bytes_round_trip_for_standard_types() {
        let mut buf = [0u8; 8];
        for d in DType::STANDARD {
            for v in [0.0, 1.0, -2.0, 3.5, 100.0] {
                let r = d.round(v);
                d.encode_bytes(r, &mut buf);
                assert_eq!(d.decode_bytes(&buf), r, "{d} {v}");
            }
        }
    }

    #[test]
    fn packed_elements_straddle_bytes() {
        let mut buf = vec![0xA5u8; 4];
        write_packed(&mut buf, 3, 2, 0b101); // bits 6..9
        assert_eq!(read_packed(&buf, 3, 2), 0b101);
        // Bits 0..6 and 9..32 are untouched.
        assert_eq!(buf[0] & 0x3f, 0xA5 & 0x3f);
        assert_eq!(buf[1] & !0x01, 0xA5 & !0x01);
        assert_eq!(buf[2..], [0xA5, 0xA5]);
        for bits in 1..=8u32 {
            let n = 37;
            let mut buf = vec![0u8; packed_bytes(n, bits).unwrap()];
            for i in 0..n {
                write_packed(&mut buf, bits, i, (i as u64 * 7 + 3) & mask(bits));
            }
            for i in 0..n {
                assert_eq!(read_packed(&buf, bits, i), (i as u64 * 7 + 3) & mask(bits), "bits {bits} i {i}");
            }
        }
    }
}
