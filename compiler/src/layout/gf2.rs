//! Linear layouts over GF(2): the analysis form of power-of-two layouts.
//!
//! An [`F2Layout`] is a linear map `F_2^n -> F_2^m` (XOR is addition) between *named*
//! dimensions, stored as one column per input bit (Triton's linear-layout convention, hardware ->
//! data): applying it XORs the columns of the set input bits. Replication is a zero column.
//!
//! # Invariants
//!
//! * Input and output dimensions are packed into one integer each, **the first listed dimension
//!   in the lowest bits**; at most 64 bits on either side.
//! * `columns.len()` is the total input bit count and every column fits in the output bits.
//!
//! For a power-of-two [`RegisterLayout`], [`F2Layout::from_register`] gives inputs
//! `[local, thread]` (so the packed input is `thread << log2(local_size) | local`) and outputs
//! `[dim{r-1}, .., dim0]` (so the packed output is the row-major linear index of the
//! coordinate). Every column then has at most one bit set: the layout is a partial permutation.
//! [`super::shared::SharedLayout::to_f2`] takes that row-major index to a memory offset, so
//! `register.compose(shared)` maps `(thread, local)` to an offset.
//!
//! The elimination behind rank, images, kernels and inverses keeps the image basis in reduced
//! row-echelon form, which makes the pseudo-inverse linear, and inserts columns in input-bit order,
//! so preimages prefer low input bits (local before thread, lane before warp).

use std::fmt;

use super::error::LayoutError;
use super::register::{RegisterLayout, SpatialEntry};

/// A named dimension of `2^bits` values.
pub type F2Dim = (String, u32);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct F2Layout {
    in_dims: Vec<F2Dim>,
    out_dims: Vec<F2Dim>,
    columns: Vec<u64>,
}

fn total_bits(dims: &[F2Dim]) -> u32 {
    dims.iter().map(|(_, b)| b).sum()
}

/// `v << s`, and 0 once every bit is shifted out (a zero-width dimension can sit at offset 64).
fn shl(v: u64, s: u32) -> u64 {
    v.checked_shl(s).unwrap_or(0)
}

/// `v >> s`, and 0 once every bit is shifted out.
fn shr(v: u64, s: u32) -> u64 {
    v.checked_shr(s).unwrap_or(0)
}

fn low_mask(bits: u32) -> u64 {
    if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 }
}

/// Bit offset of every dimension in the packed integer.
fn offsets(dims: &[F2Dim]) -> Vec<u32> {
    let mut acc = 0;
    dims.iter()
        .map(|(_, b)| {
            let o = acc;
            acc += b;
            o
        })
        .collect()
}

fn find(dims: &[F2Dim], name: &str) -> Option<usize> {
    dims.iter().position(|(n, _)| n == name)
}

fn check_dims(dims: &[F2Dim]) -> Result<(), LayoutError> {
    let bits: u64 = dims.iter().map(|(_, b)| *b as u64).sum();
    if bits > 64 {
        return Err(LayoutError::TooManyBits(bits as usize));
    }
    for (i, (name, _)) in dims.iter().enumerate() {
        if dims[..i].iter().any(|(n, _)| n == name) {
            return Err(LayoutError::F2DimMismatch(format!("dimension {name} is listed twice")));
        }
    }
    Ok(())
}

/// Gaussian elimination state: an image basis in reduced row-echelon form keyed by pivot (the
/// highest set bit), each with one preimage, plus a basis of the kernel.
#[derive(Clone, Debug, Default)]
struct Echelon {
    /// `(pivot bit, image vector, a preimage)`.
    rows: Vec<(u32, u64, u64)>,
    kernel: Vec<u64>,
}

impl Echelon {
    fn of(columns: &[u64]) -> Echelon {
        let mut e = Echelon::default();
        for (j, &c) in columns.iter().enumerate() {
            e.insert(c, 1u64 << j);
        }
        e
    }

    /// Reduce `y` by the basis; returns the residue and the accumulated preimage.
    fn reduce(&self, mut y: u64) -> (u64, u64) {
        let mut x = 0;
        for &(p, v, pre) in &self.rows {
            if y >> p & 1 == 1 {
                y ^= v;
                x ^= pre;
            }
        }
        (y, x)
    }

    fn insert(&mut self, y: u64, x: u64) {
        let (r, px) = self.reduce(y);
        let x = x ^ px;
        if r == 0 {
            self.kernel.push(x);
            return;
        }
        let p = 63 - r.leading_zeros();
        // Keep the form reduced: no other row has the new pivot bit.
        for row in &mut self.rows {
            if row.1 >> p & 1 == 1 {
                row.1 ^= r;
                row.2 ^= x;
            }
        }
        self.rows.push((p, r, x));
        // Rows are reduced in descending pivot order by `reduce`; the form being fully reduced
        // makes the order irrelevant, but keep it sorted for determinism.
        self.rows.sort_by_key(|row| std::cmp::Reverse(row.0));
    }

    fn rank(&self) -> u32 {
        self.rows.len() as u32
    }

    /// A preimage of `y`, if `y` is in the image.
    fn solve(&self, y: u64) -> Option<u64> {
        let (r, x) = self.reduce(y);
        (r == 0).then_some(x)
    }
}

impl F2Layout {
    /// A layout from its columns (one per input bit, packed outputs).
    pub fn new(in_dims: Vec<F2Dim>, out_dims: Vec<F2Dim>, columns: Vec<u64>) -> Result<F2Layout, LayoutError> {
        check_dims(&in_dims)?;
        check_dims(&out_dims)?;
        if columns.len() != total_bits(&in_dims) as usize {
            return Err(LayoutError::F2DimMismatch(format!(
                "{} columns for {} input bits",
                columns.len(),
                total_bits(&in_dims)
            )));
        }
        let out_mask = low_mask(total_bits(&out_dims));
        if columns.iter().any(|c| c & !out_mask != 0) {
            return Err(LayoutError::F2DimMismatch("a column does not fit in the output bits".into()));
        }
        Ok(F2Layout { in_dims, out_dims, columns })
    }

    /// A layout from Triton-style bases: `bases[i][j]` is the image of bit `j` of input dimension
    /// `i`, given as one value per output dimension. The number of bases sets each input's width.
    pub fn from_bases(in_dims: &[(&str, Vec<Vec<u64>>)], out_dims: &[(&str, u32)]) -> Result<F2Layout, LayoutError> {
        let out: Vec<F2Dim> = out_dims.iter().map(|(n, b)| (n.to_string(), *b)).collect();
        check_dims(&out)?;
        let out_offsets = offsets(&out);
        let mut columns = Vec::new();
        let mut ins = Vec::new();
        for (name, bases) in in_dims {
            ins.push((name.to_string(), bases.len() as u32));
            for basis in bases {
                if basis.len() != out.len() {
                    return Err(LayoutError::F2DimMismatch(format!("basis {basis:?} has the wrong number of outputs")));
                }
                let mut c = 0u64;
                for ((v, (_, bits)), o) in basis.iter().zip(&out).zip(&out_offsets) {
                    if v & !low_mask(*bits) != 0 {
                        return Err(LayoutError::F2DimMismatch(format!("basis value {v} exceeds {bits} bits")));
                    }
                    c |= shl(*v, *o);
                }
                columns.push(c);
            }
        }
        F2Layout::new(ins, out, columns)
    }

    /// The identity on one dimension of `2^bits` values, renamed from `input` to `output`.
    pub fn identity(input: &str, output: &str, bits: u32) -> Result<F2Layout, LayoutError> {
        if bits > 64 {
            return Err(LayoutError::TooManyBits(bits as usize));
        }
        F2Layout::new(vec![(input.into(), bits)], vec![(output.into(), bits)], (0..bits).map(|j| 1u64 << j).collect())
    }

    /// The GF(2) form of a power-of-two register layout (see the module docs for the packing).
    pub fn from_register(layout: &RegisterLayout) -> Result<F2Layout, LayoutError> {
        if !layout.is_power_of_two() {
            return Err(LayoutError::NotPowerOfTwo(layout.to_string()));
        }
        let rank = layout.rank();
        let log2 = |x: usize| x.trailing_zeros();
        // Output bit offset of dimension d: the bits of the dimensions after it.
        let mut dim_offset = vec![0u32; rank];
        let mut acc = 0;
        for d in (0..rank).rev() {
            dim_offset[d] = acc;
            acc += log2(layout.shape()[d]);
        }
        let out_dims: Vec<F2Dim> = (0..rank).rev().map(|d| (format!("dim{d}"), log2(layout.shape()[d]))).collect();
        let weights = layout.mode_weights();
        let sizes = layout.mode_shape();
        let mode_columns = |m: usize| {
            let base = dim_offset[layout.mode_dims()[m]] + log2(weights[m]);
            (0..log2(sizes[m])).map(move |j| 1u64 << (base + j))
        };
        let mut columns = Vec::new();
        for &m in layout.local_modes().iter().rev() {
            columns.extend(mode_columns(m));
        }
        for e in layout.spatial_modes().iter().rev() {
            match *e {
                SpatialEntry::Mode(m) => columns.extend(mode_columns(m)),
                SpatialEntry::Replicate(r) => columns.extend(std::iter::repeat_n(0, log2(r) as usize)),
            }
        }
        let in_dims =
            vec![("local".to_string(), log2(layout.local_size())), ("thread".to_string(), log2(layout.num_threads()))];
        F2Layout::new(in_dims, out_dims, columns)
    }

    pub fn in_dims(&self) -> &[F2Dim] {
        &self.in_dims
    }

    pub fn out_dims(&self) -> &[F2Dim] {
        &self.out_dims
    }

    /// Column `j`: the image of input bit `j` (packed).
    pub fn columns(&self) -> &[u64] {
        &self.columns
    }

    pub fn in_bits(&self) -> u32 {
        total_bits(&self.in_dims)
    }

    pub fn out_bits(&self) -> u32 {
        total_bits(&self.out_dims)
    }

    /// The columns of input dimension `name` (empty if absent).
    pub fn dim_columns(&self, name: &str) -> &[u64] {
        match find(&self.in_dims, name) {
            Some(i) => {
                let o = offsets(&self.in_dims)[i] as usize;
                &self.columns[o..o + self.in_dims[i].1 as usize]
            }
            None => &[],
        }
    }

    /// Apply to a packed input (bits above the input width are ignored).
    pub fn apply(&self, input: u64) -> u64 {
        self.columns.iter().enumerate().filter(|(j, _)| input >> j & 1 == 1).fold(0, |acc, (_, c)| acc ^ c)
    }

    /// Apply to one value per input dimension; returns one value per output dimension.
    pub fn apply_dims(&self, inputs: &[u64]) -> Result<Vec<u64>, LayoutError> {
        if inputs.len() != self.in_dims.len() {
            return Err(LayoutError::F2DimMismatch(format!(
                "{} inputs for {} dimensions",
                inputs.len(),
                self.in_dims.len()
            )));
        }
        let mut packed = 0u64;
        for ((v, (_, bits)), o) in inputs.iter().zip(&self.in_dims).zip(offsets(&self.in_dims)) {
            if v & !low_mask(*bits) != 0 {
                return Err(LayoutError::F2DimMismatch(format!("input {v} exceeds {bits} bits")));
            }
            packed |= shl(*v, o);
        }
        let y = self.apply(packed);
        Ok(self
            .out_dims
            .iter()
            .zip(offsets(&self.out_dims))
            .map(|((_, bits), o)| shr(y, o) & low_mask(*bits))
            .collect())
    }

    /// `x -> next(self(x))`; `self`'s outputs must be `next`'s inputs (names and widths).
    pub fn compose(&self, next: &F2Layout) -> Result<F2Layout, LayoutError> {
        if self.out_dims != next.in_dims {
            return Err(LayoutError::F2DimMismatch(format!(
                "composing outputs {:?} with inputs {:?}",
                self.out_dims, next.in_dims
            )));
        }
        let columns = self.columns.iter().map(|&c| next.apply(c)).collect();
        F2Layout::new(self.in_dims.clone(), next.out_dims.clone(), columns)
    }

    /// Triton's `inner * outer`: per named dimension (inputs and outputs), `inner`'s bits are the
    /// low bits and `outer`'s are shifted above them. Dimensions are listed in `inner`'s order,
    /// then those only `outer` has. `F2(outer_reg * inner_reg) = product(F2(inner), F2(outer))`.
    pub fn product(inner: &F2Layout, outer: &F2Layout) -> Result<F2Layout, LayoutError> {
        let merge = |a: &[F2Dim], b: &[F2Dim]| -> Vec<F2Dim> {
            let mut dims: Vec<F2Dim> = a.to_vec();
            for (name, bits) in b {
                match find(&dims, name) {
                    Some(i) => dims[i].1 += bits,
                    None => dims.push((name.clone(), *bits)),
                }
            }
            dims
        };
        let in_dims = merge(&inner.in_dims, &outer.in_dims);
        let out_dims = merge(&inner.out_dims, &outer.out_dims);
        check_dims(&in_dims)?;
        check_dims(&out_dims)?;
        let out_offsets = offsets(&out_dims);
        // Re-pack an output value of `part` into the product's outputs.
        let repack = |value: u64, part: &F2Layout, is_outer: bool| -> u64 {
            let mut y = 0;
            for ((name, bits), o) in part.out_dims.iter().zip(offsets(&part.out_dims)) {
                let v = shr(value, o) & low_mask(*bits);
                let i = find(&out_dims, name).unwrap_or(0);
                let shift = if is_outer { find(&inner.out_dims, name).map_or(0, |k| inner.out_dims[k].1) } else { 0 };
                y |= shl(v, out_offsets[i] + shift);
            }
            y
        };
        let mut columns = Vec::new();
        for (name, _) in &in_dims {
            columns.extend(inner.dim_columns(name).iter().map(|&c| repack(c, inner, false)));
            columns.extend(outer.dim_columns(name).iter().map(|&c| repack(c, outer, true)));
        }
        F2Layout::new(in_dims, out_dims, columns)
    }

    /// The `C` with `self == product(inner, C)` (Triton `divideLeft`: `inner` is the minor
    /// factor), or `None`. `C` keeps `self`'s dimension order with reduced widths.
    pub fn divide_left(&self, inner: &F2Layout) -> Option<F2Layout> {
        let reduce = |dims: &[F2Dim], by: &[F2Dim]| -> Option<Vec<F2Dim>> {
            if by.iter().any(|(n, _)| find(dims, n).is_none()) {
                return None;
            }
            dims.iter()
                .map(|(n, b)| {
                    let sub = find(by, n).map_or(0, |k| by[k].1);
                    b.checked_sub(sub).map(|r| (n.clone(), r))
                })
                .collect()
        };
        let in_dims = reduce(&self.in_dims, &inner.in_dims)?;
        let out_dims = reduce(&self.out_dims, &inner.out_dims)?;
        let self_out_offsets = offsets(&self.out_dims);
        let mut columns = Vec::new();
        for ((name, bits), o) in self.in_dims.iter().zip(offsets(&self.in_dims)) {
            let skip = find(&inner.in_dims, name).map_or(0, |k| inner.in_dims[k].1);
            for j in skip..*bits {
                let c = self.columns[(o + j) as usize];
                // Take the high part of every output dimension, shifted down.
                let mut y = 0;
                let mut out_o = 0;
                for (k, (oname, obits)) in self.out_dims.iter().enumerate() {
                    let low = find(&inner.out_dims, oname).map_or(0, |i| inner.out_dims[i].1);
                    let v = shr(c, self_out_offsets[k]) & low_mask(*obits);
                    y |= shl(shr(v, low), out_o);
                    out_o += obits - low;
                }
                columns.push(y);
            }
        }
        let quotient = F2Layout::new(in_dims, out_dims, columns).ok()?;
        (F2Layout::product(inner, &quotient).ok()? == *self).then_some(quotient)
    }

    /// The `C` with `self == product(C, outer)` (Triton `divideRight`: `outer` is the major
    /// factor), or `None`.
    pub fn divide_right(&self, outer: &F2Layout) -> Option<F2Layout> {
        let reduce = |dims: &[F2Dim], by: &[F2Dim]| -> Option<Vec<F2Dim>> {
            if by.iter().any(|(n, _)| find(dims, n).is_none()) {
                return None;
            }
            dims.iter()
                .map(|(n, b)| {
                    let sub = find(by, n).map_or(0, |k| by[k].1);
                    b.checked_sub(sub).map(|r| (n.clone(), r))
                })
                .collect()
        };
        let in_dims = reduce(&self.in_dims, &outer.in_dims)?;
        let out_dims = reduce(&self.out_dims, &outer.out_dims)?;
        let self_out_offsets = offsets(&self.out_dims);
        let mut columns = Vec::new();
        for ((_, keep), o) in in_dims.iter().zip(offsets(&self.in_dims)) {
            for j in 0..*keep {
                let c = self.columns[(o + j) as usize];
                let mut y = 0;
                let mut out_o = 0;
                for (k, (_, keep_out)) in out_dims.iter().enumerate() {
                    let v = shr(c, self_out_offsets[k]) & low_mask(*keep_out);
                    y |= shl(v, out_o);
                    out_o += keep_out;
                }
                columns.push(y);
            }
        }
        let quotient = F2Layout::new(in_dims, out_dims, columns).ok()?;
        (F2Layout::product(&quotient, outer).ok()? == *self).then_some(quotient)
    }

    /// Dimension of the image.
    pub fn rank(&self) -> u32 {
        Echelon::of(&self.columns).rank()
    }

    /// A basis of the image (reduced row-echelon form, descending pivots).
    pub fn image_basis(&self) -> Vec<u64> {
        Echelon::of(&self.columns).rows.iter().map(|r| r.1).collect()
    }

    /// Whether `y` (packed output) is in the image.
    pub fn image_contains(&self, y: u64) -> bool {
        Echelon::of(&self.columns).solve(y).is_some()
    }

    /// A basis of the kernel (packed inputs that map to 0). Empty iff injective. For a register
    /// layout these are exactly the replication bits.
    pub fn kernel_basis(&self) -> Vec<u64> {
        Echelon::of(&self.columns).kernel
    }

    /// Input bits whose column is zero: they never affect the output (Triton's free variables
    /// for partial-permutation layouts).
    pub fn free_input_mask(&self) -> u64 {
        self.columns.iter().enumerate().filter(|(_, c)| **c == 0).fold(0, |m, (j, _)| m | 1u64 << j)
    }

    pub fn is_injective(&self) -> bool {
        self.rank() == self.in_bits()
    }

    pub fn is_surjective(&self) -> bool {
        self.rank() == self.out_bits()
    }

    /// A linear right inverse on the image: `self.apply(p.apply(y)) == y` for every `y` in the
    /// image (outputs outside the image map somewhere deterministic). Preimages use the lowest
    /// input bits available.
    pub fn pseudo_invert(&self) -> F2Layout {
        let e = Echelon::of(&self.columns);
        let columns = (0..self.out_bits()).map(|i| e.rows.iter().find(|r| r.0 == i).map_or(0, |r| r.2)).collect();
        F2Layout { in_dims: self.out_dims.clone(), out_dims: self.in_dims.clone(), columns }
    }

    /// The inverse of a bijective layout, `None` otherwise.
    pub fn invert(&self) -> Option<F2Layout> {
        (self.in_bits() == self.out_bits() && self.is_injective()).then(|| self.pseudo_invert())
    }

    /// `C` with `other.apply(C.apply(x)) == self.apply(x)` for all `x` (Triton
    /// `invertAndCompose`, `C = other⁻¹ ∘ self`), or `None` when `self`'s image is not inside
    /// `other`'s. Both must have the same outputs. Where `other` replicates, `C` picks the lowest
    /// input bits of `other`.
    pub fn invert_and_compose(&self, other: &F2Layout) -> Option<F2Layout> {
        if self.out_dims != other.out_dims {
            return None;
        }
        let e = Echelon::of(&other.columns);
        let columns: Option<Vec<u64>> = self.columns.iter().map(|&c| e.solve(c)).collect();
        F2Layout::new(self.in_dims.clone(), other.in_dims.clone(), columns?).ok()
    }
}

impl RegisterLayout {
    /// The GF(2) form; an error if some digit is not a power of two.
    pub fn to_f2(&self) -> Result<F2Layout, LayoutError> {
        F2Layout::from_register(self)
    }
}

/// Text form: one line per input dimension listing its bases, e.g.
/// `local: [1, 64] | thread: [2, 4, 8, 16, 32] -> [dim1:3, dim0:4]`.
impl fmt::Display for F2Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .in_dims
            .iter()
            .map(|(name, _)| {
                let cols: Vec<String> = self.dim_columns(name).iter().map(|c| c.to_string()).collect();
                format!("{name}: [{}]", cols.join(", "))
            })
            .collect();
        let outs: Vec<String> = self.out_dims.iter().map(|(n, b)| format!("{n}:{b}")).collect();
        write!(f, "{} -> [{}]", parts.join(" | "), outs.join(", "))
    }
}
