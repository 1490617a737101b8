//! The error type of the layout algebra.
//!
//! Every public constructor and every operation that can be handed invalid input returns
//! `Result<_, LayoutError>` (or `Option` where "no result" is an ordinary answer, as for
//! division), so that malformed annotations from user code become diagnostics instead of panics.

use thiserror::Error;

/// The largest thread count, per-thread element count or tile element count a layout may have.
///
/// Compile-time tiles are far smaller; the cap exists so that every size computation in the
/// algebra stays within `usize` (products of two capped values cannot overflow 64 bits).
pub const MAX_LAYOUT_SIZE: usize = 1 << 32;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LayoutError {
    #[error("layout extent 0 in {what} {extents:?}; every extent must be at least 1")]
    ZeroExtent { what: &'static str, extents: Vec<usize> },

    #[error("layout size exceeds the supported maximum of {MAX_LAYOUT_SIZE}")]
    TooLarge,

    #[error("invalid layout modes: {0}")]
    InvalidModes(String),

    #[error("dimension {dim} is out of range for a layout of rank {rank}")]
    DimOutOfRange { dim: usize, rank: usize },

    #[error("dimension {0} is listed twice")]
    DuplicateDim(usize),

    #[error("{0:?} is not a permutation of the dimensions")]
    NotAPermutation(Vec<usize>),

    #[error("dimension {dim} has extent {extent}, but only extent-1 dimensions can be squeezed")]
    NotSqueezable { dim: usize, extent: usize },

    #[error("cannot reshape {from:?} to {to:?}: {reason}")]
    Reshape { from: Vec<usize>, to: Vec<usize>, reason: &'static str },

    #[error("ranks differ: {0} and {1}")]
    RankMismatch(usize, usize),

    #[error("shapes differ: {0:?} and {1:?}")]
    ShapeMismatch(Vec<usize>, Vec<usize>),

    #[error("thread counts differ: {0} and {1}")]
    ThreadCountMismatch(usize, usize),

    #[error("layout is not a power-of-two layout: {0}")]
    NotPowerOfTwo(String),

    #[error("the GF(2) form supports at most 64 input and 64 output bits, got {0}")]
    TooManyBits(usize),

    #[error("GF(2) dimensions do not match: {0}")]
    F2DimMismatch(String),

    #[error("invalid swizzle (bits {bits}, base {base}, shift {shift}): {reason}")]
    InvalidSwizzle { bits: u32, base: u32, shift: u32, reason: &'static str },

    #[error("invalid shared layout: {0}")]
    InvalidShared(String),

    #[error("element width of {0} bits is not supported here")]
    BadElementBits(u32),

    #[error("cannot view {src_threads} threads x {src_bits} bits as {dst_threads} threads x {dst_bits} bits")]
    ViewMismatch { src_threads: usize, src_bits: usize, dst_threads: usize, dst_bits: usize },

    #[error("invalid memory access pattern: {0}")]
    InvalidAccess(String),
}

/// `a * b` with the layout size cap; the error the algebra reports when a product gets too big.
pub(crate) fn capped_mul(a: usize, b: usize) -> Result<usize, LayoutError> {
    match a.checked_mul(b) {
        Some(p) if p <= MAX_LAYOUT_SIZE => Ok(p),
        _ => Err(LayoutError::TooLarge),
    }
}

/// The product of `values` with the layout size cap.
pub(crate) fn capped_product(values: impl IntoIterator<Item = usize>) -> Result<usize, LayoutError> {
    values.into_iter().try_fold(1usize, capped_mul)
}
