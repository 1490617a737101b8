//! Number formats known to the compiler, the VM and the runtime.
//!
//! This is the one place that says how many bits a format has, what its name is in `.tl`
//! source, and how an `f64` value is rounded into it. Every other crate asks this module.

use std::fmt;

/// A scalar element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F16,
    BF16,
    F32,
    F64,
}

impl DType {
    /// Every dtype, in a fixed order (used by the lexer and by docs).
    pub const ALL: [DType; 13] = [
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

    /// The name used in `.tl` source and in every text form.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.iter().copied().find(|d| d.name() == name)
    }

    /// Storage width in bits.
    pub fn bits(self) -> u32 {
        match self {
            DType::Bool => 8,
            DType::I8 | DType::U8 => 8,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 16,
            DType::I32 | DType::U32 | DType::F32 => 32,
            DType::I64 | DType::U64 | DType::F64 => 64,
        }
    }

    /// Storage width in bytes (every format here is byte-aligned).
    pub fn bytes(self) -> usize {
        (self.bits() / 8) as usize
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    pub fn is_int(self) -> bool {
        !self.is_float() && self != DType::Bool
    }

    pub fn is_signed_int(self) -> bool {
        matches!(self, DType::I8 | DType::I16 | DType::I32 | DType::I64)
    }

    /// Smallest and largest representable integer, for integer dtypes.
    pub fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            DType::Bool => (0, 1),
            DType::I8 => (i8::MIN as i128, i8::MAX as i128),
            DType::I16 => (i16::MIN as i128, i16::MAX as i128),
            DType::I32 => (i32::MIN as i128, i32::MAX as i128),
            DType::I64 => (i64::MIN as i128, i64::MAX as i128),
            DType::U8 => (0, u8::MAX as i128),
            DType::U16 => (0, u16::MAX as i128),
            DType::U32 => (0, u32::MAX as i128),
            DType::U64 => (0, u64::MAX as i128),
            _ => return None,
        })
    }

    /// Rounds `value` to the nearest value representable in this dtype, as a cast does:
    /// floats round to nearest even (f16/bf16 overflow to infinity like IEEE), integers
    /// round to nearest even and saturate, NaN becomes 0 for integers, bool is `value != 0`.
    pub fn round(self, value: f64) -> f64 {
        match self {
            DType::F64 => value,
            DType::F32 => value as f32 as f64,
            DType::F16 => half::f16::from_f64(value).to_f64(),
            DType::BF16 => half::bf16::from_f64(value).to_f64(),
            DType::Bool => {
                if value != 0.0 && !value.is_nan() {
                    1.0
                } else {
                    0.0
                }
            }
            _ => {
                if value.is_nan() {
                    return 0.0;
                }
                let (lo, hi) = self.int_range().expect("integer dtype");
                value.round_ties_even().clamp(lo as f64, hi as f64)
            }
        }
    }

    /// Encodes an already rounded value as little-endian bytes of this dtype.
    pub fn encode(self, value: f64, out: &mut [u8]) {
        let v = self.round(value);
        match self {
            DType::F64 => out[..8].copy_from_slice(&v.to_le_bytes()),
            DType::F32 => out[..4].copy_from_slice(&(v as f32).to_le_bytes()),
            DType::F16 => out[..2].copy_from_slice(&half::f16::from_f64(v).to_bits().to_le_bytes()),
            DType::BF16 => {
                out[..2].copy_from_slice(&half::bf16::from_f64(v).to_bits().to_le_bytes())
            }
            DType::Bool | DType::U8 => out[0] = v as u8,
            DType::I8 => out[0] = (v as i8) as u8,
            DType::I16 => out[..2].copy_from_slice(&(v as i16).to_le_bytes()),
            DType::U16 => out[..2].copy_from_slice(&(v as u16).to_le_bytes()),
            DType::I32 => out[..4].copy_from_slice(&(v as i32).to_le_bytes()),
            DType::U32 => out[..4].copy_from_slice(&(v as u32).to_le_bytes()),
            DType::I64 => out[..8].copy_from_slice(&(v as i64).to_le_bytes()),
            DType::U64 => out[..8].copy_from_slice(&(v as u64).to_le_bytes()),
        }
    }

    /// Decodes little-endian bytes of this dtype.
    pub fn decode(self, bytes: &[u8]) -> f64 {
        fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
            b[..N].try_into().expect("enough bytes")
        }
        match self {
            DType::F64 => f64::from_le_bytes(arr(bytes)),
            DType::F32 => f32::from_le_bytes(arr(bytes)) as f64,
            DType::F16 => half::f16::from_bits(u16::from_le_bytes(arr(bytes))).to_f64(),
            DType::BF16 => half::bf16::from_bits(u16::from_le_bytes(arr(bytes))).to_f64(),
            DType::Bool => (bytes[0] != 0) as u8 as f64,
            DType::U8 => bytes[0] as f64,
            DType::I8 => bytes[0] as i8 as f64,
            DType::I16 => i16::from_le_bytes(arr(bytes)) as f64,
            DType::U16 => u16::from_le_bytes(arr(bytes)) as f64,
            DType::I32 => i32::from_le_bytes(arr(bytes)) as f64,
            DType::U32 => u32::from_le_bytes(arr(bytes)) as f64,
            DType::I64 => i64::from_le_bytes(arr(bytes)) as f64,
            DType::U64 => u64::from_le_bytes(arr(bytes)) as f64,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_name("f17"), None);
    }

    #[test]
    fn f16_rounds_to_nearest_even() {
        // 1 + 2^-11 lies exactly between 1 and 1 + 2^-10: ties go to the even code (1.0).
        assert_eq!(DType::F16.round(1.0 + 2f64.powi(-11)), 1.0);
        // 1 + 3·2^-11 lies between 1 + 2^-10 (odd) and 1 + 2^-9 (even).
        assert_eq!(DType::F16.round(1.0 + 3.0 * 2f64.powi(-11)), 1.0 + 2f64.powi(-9));
        assert_eq!(DType::F16.round(70000.0), f64::INFINITY);
    }

    #[test]
    fn integers_saturate_and_round_even() {
        assert_eq!(DType::I8.round(300.0), 127.0);
        assert_eq!(DType::I8.round(-300.0), -128.0);
        assert_eq!(DType::I32.round(2.5), 2.0);
        assert_eq!(DType::U8.round(-1.0), 0.0);
    }

    #[test]
    fn encode_decode() {
        let mut buf = [0u8; 8];
        for d in DType::ALL {
            for v in [0.0, 1.0, -2.0, 3.5, 100.0] {
                let r = d.round(v);
                d.encode(r, &mut buf);
                assert_eq!(d.decode(&buf), r, "{d} {v}");
            }
        }
    }
}
