//! `view`: reinterpreting a register tensor's bits as another dtype, and when that moves no
//! data between threads.
//!
//! The language defines `view<T>(x)` on the logical tile, independent of layouts: each row of
//! `x` (all leading coordinates fixed) is the LSB-first concatenation of its codes, the packing
//! of [`crate::dtype::read_packed`] and [`crate::dtype::write_packed`], and that bit string is
//! cut into codes of `T`. Only the last extent changes (`u8[16, 32]` → `u4[16, 64]`).
//!
//! Each thread's registers also hold a packed LSB-first bit stream: local element `i` of a
//! `b`-bit dtype occupies bits `[i b, (i + 1) b)`. A [`RegisterView`] keeps every thread's
//! stream and changes only how it is cut into elements, which moves no data. It computes the
//! logical view only for some pairs of layouts; [`view_moves_no_data`] says which, and
//! [`view_result_layout`] builds, from the operand's layout, a result layout for which it does.
//!
//! # Invariants
//!
//! * A per-thread view is defined iff both layouts have the same thread count and the same bits
//!   per thread (`src.local_size * src_bits == dst.local_size * dst_bits`); [`view_bits`]
//!   checks this.
//! * Thread `t`'s destination element `j` is bits `[j b', (j + 1) b')` of thread `t`'s stream.
//! * Viewing back with the source layout and dtype restores the original values.
//! * `view_moves_no_data(src, b, view_result_layout(src, b, b')?, b')` holds.

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

/// Whether cutting each thread's bit stream anew (a [`RegisterView`] from `src` to `dst`)
/// computes the logical `view` from `src_bits`-bit to `dst_bits`-bit elements: every bit a
/// thread moves from one of its source elements into one of its destination elements sits, in
/// both, in the same row and at the same bit position of that row. Layouts of different rank or
/// thread count, or of unequal bits per thread, never do.
pub fn view_moves_no_data(src: &RegisterLayout, src_bits: u32, dst: &RegisterLayout, dst_bits: u32) -> bool {
    let Ok(view) = view_bits(src, src_bits, dst, dst_bits) else { return false };
    let rank = src.rank();
    if rank == 0 || dst.rank() != rank {
        return false;
    }
    let (sb, db) = (src_bits as usize, dst_bits as usize);
    for thread in 0..view.num_threads() {
        for j in 0..dst.local_size() {
            let Some(dst_coord) = dst.coord(thread, j) else { return false };
            for piece in view.source_pieces(j).unwrap_or_default() {
                let Some(src_coord) = src.coord(thread, piece.src_local) else { return false };
                if src_coord[..rank - 1] != dst_coord[..rank - 1] {
                    return false;
                }
                let src_position = src_coord[rank - 1] * sb + piece.src_bit as usize;
                let dst_position = dst_coord[rank - 1] * db + piece.dst_bit as usize;
                if src_position != dst_position {
                    return false;
                }
            }
        }
    }
    true
}

/// A layout for the result of a `view` from `src_bits` to `dst_bits` of a tile laid out by
/// `src` that moves no data ([`view_moves_no_data`]), or `None` when `src` has none of this
/// form. With `l = lcm(src_bits, dst_bits)`, `l / src_bits` consecutive source elements of a
/// row hold the same bits as `l / dst_bits` destination elements: when `src` is `Q *
/// local(1, .., l / src_bits)`, the result is `Q * local(1, .., l / dst_bits)`.
pub fn view_result_layout(src: &RegisterLayout, src_bits: u32, dst_bits: u32) -> Option<RegisterLayout> {
    if src_bits == 0 || dst_bits == 0 || src.rank() == 0 {
        return None;
    }
    let g = gcd(src_bits as usize, dst_bits as usize);
    let lcm = src_bits as usize / g * dst_bits as usize;
    let group = |bits: u32| {
        let mut shape = vec![1; src.rank()];
        *shape.last_mut().expect("rank >= 1") = lcm / bits as usize;
        RegisterLayout::local(&shape).ok()
    };
    let quotient = src.divide_right(&group(src_bits)?)?;
    let result = quotient.product(&group(dst_bits)?).ok()?;
    view_moves_no_data(src, src_bits, &result, dst_bits).then_some(result)
}

/// The greatest common divisor (`gcd(a, 0) = a`).
pub(crate) fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
