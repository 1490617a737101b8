//! XOR swizzles of memory offsets: `Sw(x) = x ^ ((x & mask) >> shift)` with
//! `mask = ((1 << bits) - 1) << (base + shift)`.
//!
//! In words: the `bits` bits starting at `base + shift` are XOR-ed into the `bits` bits starting at
//! `base`. This is CuTe's `Swizzle<B = bits, M = base, S = shift>` and Tilus's
//! `Swizzle(base, bits, shift)`; offsets are in whatever unit the shared layout uses (elements),
//! [`Swizzle::in_bytes`] converts to byte offsets.
//!
//! # Invariants (checked by [`Swizzle::new`])
//!
//! * `shift >= bits`, so the source bits and the target bits do not overlap: the swizzle is then an
//!   involution (`Sw(Sw(x)) == x`) and a bijection on every aligned block of `2^span()` values.
//! * `base + shift + bits <= 63`.
//!
//! Consequences used elsewhere: the low `base` bits are untouched (vectors of `2^base` units stay
//! contiguous), bits from `span()` up are untouched, and the map is GF(2)-linear.

use std::fmt;

use super::error::LayoutError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Swizzle {
    bits: u32,
    base: u32,
    shift: u32,
}

impl Swizzle {
    pub fn new(bits: u32, base: u32, shift: u32) -> Result<Swizzle, LayoutError> {
        let err = |reason| LayoutError::InvalidSwizzle { bits, base, shift, reason };
        if shift < bits {
            return Err(err("shift must be at least bits, or source and target bits overlap"));
        }
        if base as u64 + shift as u64 + bits as u64 > 63 {
            return Err(err("base + shift + bits must be at most 63"));
        }
        Ok(Swizzle { bits, base, shift })
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    pub fn base(&self) -> u32 {
        self.base
    }

    pub fn shift(&self) -> u32 {
        self.shift
    }

    /// The number of low bits the swizzle reads or writes: `base + shift + bits`.
    pub fn span(&self) -> u32 {
        self.base + self.shift + self.bits
    }

    /// The source-bit mask `((1 << bits) - 1) << (base + shift)`.
    pub fn mask(&self) -> u64 {
        ((1u64 << self.bits) - 1) << (self.base + self.shift)
    }

    pub fn apply(&self, x: u64) -> u64 {
        x ^ ((x & self.mask()) >> self.shift)
    }

    /// The same swizzle on byte offsets when one unit is `unit_bytes` bytes (a power of two):
    /// `base` grows by `log2(unit_bytes)`. `Swizzle<3,3,3>` on f16 elements is `Swizzle<3,4,3>` on
    /// bytes.
    pub fn in_bytes(&self, unit_bytes: u32) -> Result<Swizzle, LayoutError> {
        if !unit_bytes.is_power_of_two() {
            return Err(LayoutError::BadElementBits(unit_bytes.saturating_mul(8)));
        }
        Swizzle::new(self.bits, self.base + unit_bytes.trailing_zeros(), self.shift)
    }

    /// The GF(2) columns of the swizzle on offsets of `width` bits: column `j` is `Sw(1 << j)`.
    pub fn columns(&self, width: u32) -> Vec<u64> {
        (0..width).map(|j| self.apply(1u64 << j)).collect()
    }
}

/// CuTe notation, `Swizzle<bits,base,shift>`.
impl fmt::Display for Swizzle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Swizzle<{},{},{}>", self.bits, self.base, self.shift)
    }
}
