//! `view`: reinterpreting a register tensor's per-thread bits under another layout and dtype.
//!
//! Each thread's registers hold a packed LSB-first bit stream: local element `i` of a `b`-bit
//! dtype occupies bits `[i b, (i + 1) b)` (the packing of [`crate::dtype::read_packed`] and
//! [`crate::dtype::write_packed`]). A view keeps every thread's stream and changes only how it is
//! cut into elements, so it moves no data.
//!
//! # Invariants
//!
//! * A view is legal iff both layouts have the same thread count and the same bits per thread
//!   (`src.local_size * src_bits == dst.local_size * dst_bits`); [`view_bits`] checks this.
//! * Thread `t`'s destination element `j` is bits `[j b', (j + 1) b')` of thread `t`'s stream.
//! * Viewing back with the source layout and dtype restores the original values.

use std::ops::Range;

use super::error::LayoutError;
use super::register::RegisterLayout;

/// A legal view between two (layout, element bits) pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegisterView {
    threads: usize,
    src_bits: u32,
    src_local_size: usize,
    dst_bits: u32,
    dst_local_size: usize,
}

/// A run of bits moving from one source element into one destination element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BitPiece {
    /// Source local index.
    pub src_local: usize,
    /// First bit within the source element.
    pub src_bit: u32,
    /// First bit within the destination element.
    pub dst_bit: u32,
    pub len: u32,
}

/// The view from `src` holding `src_bits`-bit elements to `dst` holding `dst_bits`-bit elements,
/// or an error if the thread counts or the bits per thread differ, or a width is not in 1..=64.
pub fn view_bits(
    src: &RegisterLayout,
    src_bits: u32,
    dst: &RegisterLayout,
    dst_bits: u32,
) -> Result<RegisterView, LayoutError> {
    for bits in [src_bits, dst_bits] {
        if bits == 0 || bits > 64 {
            return Err(LayoutError::BadElementBits(bits));
        }
    }
    let per_thread = |l: &RegisterLayout, bits: u32| l.local_size().checked_mul(bits as usize);
    let (src_total, dst_total) = (per_thread(src, src_bits), per_thread(dst, dst_bits));
    if src.num_threads() != dst.num_threads() || src_total.is_none() || src_total != dst_total {
        return Err(LayoutError::ViewMismatch {
            src_threads: src.num_threads(),
            src_bits: src_total.unwrap_or(usize::MAX),
            dst_threads: dst.num_threads(),
            dst_bits: dst_total.unwrap_or(usize::MAX),
        });
    }
    Ok(RegisterView {
        threads: src.num_threads(),
        src_bits,
        src_local_size: src.local_size(),
        dst_bits,
        dst_local_size: dst.local_size(),
    })
}

impl RegisterView {
    pub fn num_threads(&self) -> usize {
        self.threads
    }

    /// Bits each thread holds.
    pub fn bits_per_thread(&self) -> usize {
        self.src_local_size * self.src_bits as usize
    }

    /// The view back.
    pub fn inverse(&self) -> RegisterView {
        RegisterView {
            threads: self.threads,
            src_bits: self.dst_bits,
            src_local_size: self.dst_local_size,
            dst_bits: self.src_bits,
            dst_local_size: self.src_local_size,
        }
    }

    /// The bits of the thread's stream that destination element `dst_local` is made of.
    pub fn source_bit_range(&self, dst_local: usize) -> Option<Range<usize>> {
        (dst_local < self.dst_local_size).then(|| {
            let b = self.dst_bits as usize;
            dst_local * b..(dst_local + 1) * b
        })
    }

    /// The source element of `(thread, dst_local)`: the same thread, and the bit range above.
    pub fn source_of(&self, thread: usize, dst_local: usize) -> Option<(usize, Range<usize>)> {
        if thread >= self.threads {
            return None;
        }
        Some((thread, self.source_bit_range(dst_local)?))
    }

    /// The destination element `dst_local` as runs of source bits, lowest bits first.
    pub fn source_pieces(&self, dst_local: usize) -> Option<Vec<BitPiece>> {
        let range = self.source_bit_range(dst_local)?;
        let sb = self.src_bits as usize;
        let mut pieces = Vec::new();
        let mut bit = range.start;
        while bit < range.end {
            let src_local = bit / sb;
            let src_bit = bit % sb;
            let len = (sb - src_bit).min(range.end - bit);
            pieces.push(BitPiece {
                src_local,
                src_bit: src_bit as u32,
                dst_bit: (bit - range.start) as u32,
                len: len as u32,
            });
            bit += len;
        }
        Some(pieces)
    }

    /// One thread's destination element values from its source element values (each value in
    /// the low bits of a `u64`; higher bits are ignored).
    pub fn apply(&self, src_values: &[u64]) -> Result<Vec<u64>, LayoutError> {
        if src_values.len() != self.src_local_size {
            return Err(LayoutError::InvalidAccess(format!(
                "{} source values for a local size of {}",
                src_values.len(),
                self.src_local_size
            )));
        }
        let mask = |len: u32| if len >= 64 { u64::MAX } else { (1u64 << len) - 1 };
        let mut out = Vec::with_capacity(self.dst_local_size);
        for j in 0..self.dst_local_size {
            let mut value = 0u64;
            for p in self.source_pieces(j).unwrap_or_default() {
                value |= ((src_values[p.src_local] >> p.src_bit) & mask(p.len)) << p.dst_bit;
            }
            out.push(value);
        }
        Ok(out)
    }
}
