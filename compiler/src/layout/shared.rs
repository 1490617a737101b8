//! Shared-memory layouts: modes with strides plus an optional XOR swizzle.
//!
//! A [`SharedLayout`] maps a coordinate of its shape to an offset in units of one element (at
//! least one byte; sub-byte tensors live in shared memory as bytes, their element structure
//! exists only in registers):
//!
//! `offset(c) = Sw(Σ_m digit_m(c) * stride_m)`
//!
//! where every dimension is split into modes row-major (first mode most significant, as in
//! [`super::register::RegisterLayout`]) and `Sw` is the optional [`Swizzle`].
//!
//! # Invariants
//!
//! * Per dimension the modes multiply to the extent; every extent, mode and stride is at least 1
//!   (a stride-0 mode would alias) and every size fits [`MAX_LAYOUT_SIZE`].
//! * Normalized: no size-1 modes, and no two adjacent modes of one dimension where the more
//!   significant stride equals `size * stride` of the next (they are one mode). Structural
//!   equality therefore identifies the usual ways of writing the same unswizzled layout; it is not
//!   promised to be semantic equality in general (compare offsets for that).
//!
//! Injectivity is not an invariant (padding and broadcasts are legal to describe); check it
//! with [`SharedLayout::is_injective`].

use std::fmt;

use super::error::{LayoutError, MAX_LAYOUT_SIZE, capped_mul, capped_product};
use super::gf2::{F2Dim, F2Layout};
use super::register::gcd;
use super::swizzle::Swizzle;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SharedLayout {
    shape: Vec<usize>,
    mode_sizes: Vec<usize>,
    mode_dims: Vec<usize>,
    strides: Vec<usize>,
    swizzle: Option<Swizzle>,
}

impl SharedLayout {
    /// A layout from per-dimension modes (most significant first) and their strides.
    pub fn from_modes(
        shape: &[usize],
        dim_modes: &[Vec<usize>],
        dim_strides: &[Vec<usize>],
        swizzle: Option<Swizzle>,
    ) -> Result<SharedLayout, LayoutError> {
        if dim_modes.len() != shape.len() || dim_strides.len() != shape.len() {
            return Err(LayoutError::RankMismatch(shape.len(), dim_modes.len().min(dim_strides.len())));
        }
        if shape.contains(&0) {
            return Err(LayoutError::ZeroExtent { what: "shape", extents: shape.to_vec() });
        }
        capped_product(shape.iter().copied())?;
        let mut layout =
            SharedLayout { shape: shape.to_vec(), mode_sizes: vec![], mode_dims: vec![], strides: vec![], swizzle };
        for (d, (modes, strides)) in dim_modes.iter().zip(dim_strides).enumerate() {
            if modes.len() != strides.len() {
                return Err(LayoutError::InvalidShared(format!(
                    "dimension {d} has {} modes and {} strides",
                    modes.len(),
                    strides.len()
                )));
            }
            if modes.contains(&0) || strides.contains(&0) {
                return Err(LayoutError::InvalidShared(format!("dimension {d} has a zero mode or stride")));
            }
            if capped_product(modes.iter().copied())? != shape[d] {
                return Err(LayoutError::InvalidShared(format!(
                    "the modes of dimension {d} do not multiply to {}",
                    shape[d]
                )));
            }
            for (&m, &s) in modes.iter().zip(strides) {
                capped_mul(m, s)?;
                layout.mode_sizes.push(m);
                layout.strides.push(s);
                layout.mode_dims.push(d);
            }
        }
        // The largest unswizzled offset must fit the cap too.
        let top = layout
            .mode_sizes
            .iter()
            .zip(&layout.strides)
            .try_fold(1usize, |acc, (m, s)| acc.checked_add((m - 1) * s).filter(|&v| v <= MAX_LAYOUT_SIZE));
        if top.is_none() {
            return Err(LayoutError::TooLarge);
        }
        Ok(layout.normalized())
    }

    fn normalized(mut self) -> SharedLayout {
        let mut i = 0;
        while i < self.mode_sizes.len() {
            if self.mode_sizes[i] == 1 {
                self.remove_mode(i);
                continue;
            }
            if i + 1 < self.mode_sizes.len()
                && self.mode_dims[i] == self.mode_dims[i + 1]
                && self.strides[i] == self.mode_sizes[i + 1] * self.strides[i + 1]
            {
                self.mode_sizes[i] *= self.mode_sizes[i + 1];
                self.strides[i] = self.strides[i + 1];
                self.remove_mode(i + 1);
                continue;
            }
            i += 1;
        }
        self
    }

    fn remove_mode(&mut self, i: usize) {
        self.mode_sizes.remove(i);
        self.mode_dims.remove(i);
        self.strides.remove(i);
    }

    /// Row-major and compact: the last dimension has stride 1.
    pub fn row_major(shape: &[usize]) -> Result<SharedLayout, LayoutError> {
        let mut strides = vec![0; shape.len()];
        let mut acc = 1usize;
        for d in (0..shape.len()).rev() {
            strides[d] = acc;
            acc = capped_mul(acc, shape[d].max(1))?;
        }
        SharedLayout::from_dims(shape, &strides)
    }

    /// Column-major and compact: the first dimension has stride 1.
    pub fn column_major(shape: &[usize]) -> Result<SharedLayout, LayoutError> {
        let mut strides = vec![0; shape.len()];
        let mut acc = 1usize;
        for d in 0..shape.len() {
            strides[d] = acc;
            acc = capped_mul(acc, shape[d].max(1))?;
        }
        SharedLayout::from_dims(shape, &strides)
    }

    /// One mode per dimension with the given strides (padded layouts: e.g. `[m, n]` with strides
    /// `[n + 8, 1]`).
    pub fn from_dims(shape: &[usize], strides: &[usize]) -> Result<SharedLayout, LayoutError> {
        if strides.len() != shape.len() {
            return Err(LayoutError::RankMismatch(shape.len(), strides.len()));
        }
        let modes: Vec<Vec<usize>> = shape.iter().map(|&s| vec![s]).collect();
        let strides: Vec<Vec<usize>> = strides.iter().map(|&s| vec![s]).collect();
        SharedLayout::from_modes(shape, &modes, &strides, None)
    }

    /// The bank-conflict-free layout for 16-byte accesses (`cp.async` stores, `ldmatrix` loads)
    /// of a `[.., m, n]` tile of `elem_bytes`-byte elements (Tilus `shared_row_major_swizzle`):
    ///
    /// * each row is cut into segments of `n_vec = gcd(n, 128 / elem_bytes)` elements (at most
    ///   128 bytes, one pass over the 32 banks);
    /// * storage order is (leading dims, segment, row, element in segment), so one segment of all
    ///   `m` rows is a panel of `n_vec`-element rows;
    /// * the swizzle works on 16-byte chunks (`base = log2(16 / elem_bytes)`), XORs row bits into
    ///   the chunk index (`shift = 3`), with `bits = log2(segment_bytes / 16)`: 3 for 128-byte
    ///   segments, 2 for 64, 1 for 32, none for 16 bytes or less.
    ///
    /// For f16 rows of 64 elements this is `Swizzle<3,3,3>` on element offsets
    /// (`Swizzle<3,4,3>` on bytes): 16-byte chunk `c` of row `r` is stored at chunk `c ^ (r % 8)`.
    /// Rank-1 shapes get plain row-major.
    pub fn row_major_swizzled(shape: &[usize], elem_bytes: usize) -> Result<SharedLayout, LayoutError> {
        if !elem_bytes.is_power_of_two() || elem_bytes > 16 {
            return Err(LayoutError::BadElementBits(elem_bytes.saturating_mul(8).min(u32::MAX as usize) as u32));
        }
        if shape.contains(&0) {
            return Err(LayoutError::ZeroExtent { what: "shape", extents: shape.to_vec() });
        }
        let rank = shape.len();
        if rank < 2 {
            return SharedLayout::row_major(shape);
        }
        let (m, n) = (shape[rank - 2], shape[rank - 1]);
        let n_vec = gcd(n, 128 / elem_bytes);
        let segments = n / n_vec;
        let panel = capped_mul(m, n_vec)?;
        let tile = capped_mul(panel, segments)?;
        let mut dim_modes: Vec<Vec<usize>> = Vec::with_capacity(rank);
        let mut dim_strides: Vec<Vec<usize>> = Vec::with_capacity(rank);
        // Leading dims: row-major over whole tiles.
        let mut lead_strides = vec![0; rank - 2];
        let mut acc = tile;
        for d in (0..rank - 2).rev() {
            lead_strides[d] = acc;
            acc = capped_mul(acc, shape[d])?;
        }
        for d in 0..rank - 2 {
            dim_modes.push(vec![shape[d]]);
            dim_strides.push(vec![lead_strides[d]]);
        }
        dim_modes.push(vec![m]);
        dim_strides.push(vec![n_vec]);
        dim_modes.push(vec![segments, n_vec]);
        dim_strides.push(vec![panel, 1]);
        let segment_bytes = n_vec * elem_bytes;
        let swizzle = if segment_bytes >= 32 {
            let bits = (segment_bytes / 16).trailing_zeros().min(3);
            let base = (16 / elem_bytes).trailing_zeros();
            Some(Swizzle::new(bits, base, 3)?)
        } else {
            None
        };
        SharedLayout::from_modes(shape, &dim_modes, &dim_strides, swizzle)
    }

    /// The same layout with `swizzle` applied to its offsets (replacing any previous one).
    pub fn with_swizzle(&self, swizzle: Option<Swizzle>) -> SharedLayout {
        SharedLayout { swizzle, ..self.clone() }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn mode_shape(&self) -> &[usize] {
        &self.mode_sizes
    }

    pub fn mode_dims(&self) -> &[usize] {
        &self.mode_dims
    }

    pub fn mode_strides(&self) -> &[usize] {
        &self.strides
    }

    pub fn swizzle(&self) -> Option<Swizzle> {
        self.swizzle
    }

    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// `1 + Σ (size - 1) * stride`: one past the largest unswizzled offset.
    pub fn count_size(&self) -> usize {
        1 + self.mode_sizes.iter().zip(&self.strides).map(|(m, s)| (m - 1) * s).sum::<usize>()
    }

    /// Elements to allocate: every offset is below this. The swizzle changes only bits below
    /// `base + bits`, so it permutes aligned blocks of `2^(base + bits)` offsets; the count is
    /// rounded up to such a block.
    pub fn storage_size(&self) -> usize {
        let count = self.count_size();
        match self.swizzle {
            Some(sw) if sw.bits() > 0 => {
                let block = 1usize << (sw.base() + sw.bits());
                count.div_ceil(block) * block
            }
            _ => count,
        }
    }

    /// The offset before the swizzle, or `None` if `coord` is outside the shape.
    pub fn offset_unswizzled(&self, coord: &[usize]) -> Option<usize> {
        if coord.len() != self.rank() || coord.iter().zip(&self.shape).any(|(c, s)| c >= s) {
            return None;
        }
        let mut offset = 0;
        for (d, &c) in coord.iter().enumerate() {
            let mut rest = c;
            for m in (0..self.mode_sizes.len()).rev().filter(|&m| self.mode_dims[m] == d) {
                offset += (rest % self.mode_sizes[m]) * self.strides[m];
                rest /= self.mode_sizes[m];
            }
        }
        Some(offset)
    }

    /// The offset of `coord` in elements, or `None` if it is outside the shape.
    pub fn offset(&self, coord: &[usize]) -> Option<usize> {
        let raw = self.offset_unswizzled(coord)?;
        Some(match self.swizzle {
            Some(sw) => sw.apply(raw as u64) as usize,
            None => raw,
        })
    }

    /// Whether distinct coordinates get distinct offsets (brute force over the shape).
    pub fn is_injective(&self) -> bool {
        // A set rather than a bitmap over the storage: a large swizzle base can make the
        // storage size far larger than the tile.
        let mut seen = std::collections::HashSet::with_capacity(self.num_elements());
        let mut coord = vec![0; self.rank()];
        for _ in 0..self.num_elements() {
            let Some(o) = self.offset(&coord) else { return false };
            if !seen.insert(o) {
                return false;
            }
            for d in (0..self.rank()).rev() {
                coord[d] += 1;
                if coord[d] < self.shape[d] {
                    break;
                }
                coord[d] = 0;
            }
        }
        true
    }

    /// Kronecker product `outer * inner`: tiles of `inner` arranged by `outer`, shape multiplied
    /// per dimension, `offset = outer_offset * inner.count_size() + inner_offset`. `outer` must be
    /// unswizzled; a swizzled `inner` is kept only if its swizzle cannot reach the outer part
    /// (`inner.count_size()` a power of two covering the swizzle span).
    pub fn compose(outer: &SharedLayout, inner: &SharedLayout) -> Result<SharedLayout, LayoutError> {
        if outer.swizzle.is_some() {
            return Err(LayoutError::InvalidShared("the outer factor of a product cannot be swizzled".into()));
        }
        let rank = outer.rank().max(inner.rank());
        let pad = |l: &SharedLayout| {
            let extra = rank - l.rank();
            let mut shape = vec![1; extra];
            shape.extend_from_slice(&l.shape);
            (shape, l.mode_dims.iter().map(|d| d + extra).collect::<Vec<_>>())
        };
        let (outer_shape, outer_dims) = pad(outer);
        let (inner_shape, inner_dims) = pad(inner);
        let scale = inner.count_size();
        if let Some(sw) = inner.swizzle
            && (!scale.is_power_of_two() || scale < 1usize << sw.span().min(63))
        {
            return Err(LayoutError::InvalidShared("the inner swizzle would reach the outer offsets".into()));
        }
        let mut dim_modes = vec![Vec::new(); rank];
        let mut dim_strides = vec![Vec::new(); rank];
        for m in 0..outer.mode_sizes.len() {
            dim_modes[outer_dims[m]].push(outer.mode_sizes[m]);
            dim_strides[outer_dims[m]].push(capped_mul(outer.strides[m], scale)?);
        }
        for m in 0..inner.mode_sizes.len() {
            dim_modes[inner_dims[m]].push(inner.mode_sizes[m]);
            dim_strides[inner_dims[m]].push(inner.strides[m]);
        }
        let shape: Result<Vec<usize>, LayoutError> =
            outer_shape.iter().zip(&inner_shape).map(|(a, b)| capped_mul(*a, *b)).collect();
        SharedLayout::from_modes(&shape?, &dim_modes, &dim_strides, inner.swizzle)
    }

    /// Reorder dimensions: dimension `j` of the result is dimension `perm[j]` of `self`.
    pub fn permute(&self, perm: &[usize]) -> Result<SharedLayout, LayoutError> {
        let mut seen = vec![false; self.rank()];
        if perm.len() != self.rank() || perm.iter().any(|&d| d >= self.rank() || std::mem::replace(&mut seen[d], true))
        {
            return Err(LayoutError::NotAPermutation(perm.to_vec()));
        }
        let mut dim_modes = Vec::new();
        let mut dim_strides = Vec::new();
        for &d in perm {
            let ms: Vec<usize> = (0..self.mode_sizes.len()).filter(|&m| self.mode_dims[m] == d).collect();
            dim_modes.push(ms.iter().map(|&m| self.mode_sizes[m]).collect());
            dim_strides.push(ms.iter().map(|&m| self.strides[m]).collect());
        }
        let shape: Vec<usize> = perm.iter().map(|&d| self.shape[d]).collect();
        SharedLayout::from_modes(&shape, &dim_modes, &dim_strides, self.swizzle)
    }

    /// A leading dimension of `stages` copies, each `storage_size()` elements apart (multi-stage
    /// buffers).
    pub fn prepend_dim(&self, stages: usize) -> Result<SharedLayout, LayoutError> {
        let mut shape = vec![stages];
        shape.extend_from_slice(&self.shape);
        let mut dim_modes = vec![vec![stages]];
        let mut dim_strides = vec![vec![self.storage_size()]];
        for d in 0..self.rank() {
            let ms: Vec<usize> = (0..self.mode_sizes.len()).filter(|&m| self.mode_dims[m] == d).collect();
            dim_modes.push(ms.iter().map(|&m| self.mode_sizes[m]).collect());
            dim_strides.push(ms.iter().map(|&m| self.strides[m]).collect());
        }
        if stages == 0 {
            return Err(LayoutError::ZeroExtent { what: "stages", extents: vec![0] });
        }
        // The stage stride is a multiple of the swizzle block, so the swizzle stays per stage.
        SharedLayout::from_modes(&shape, &dim_modes, &dim_strides, self.swizzle)
    }

    /// The GF(2) form: inputs `[dim{r-1}, .., dim0]` (the row-major linear index, matching
    /// [`F2Layout::from_register`]'s outputs), output `offset`. Requires power-of-two extents
    /// and modes, power-of-two strides, and modes occupying disjoint offset bits (then the sum of
    /// the digits is their XOR and the map is linear).
    pub fn to_f2(&self) -> Result<F2Layout, LayoutError> {
        let not_pow2 = || LayoutError::NotPowerOfTwo(self.to_string());
        if !self.shape.iter().chain(&self.mode_sizes).chain(&self.strides).all(|x| x.is_power_of_two()) {
            return Err(not_pow2());
        }
        let mut columns = Vec::new();
        let mut used = 0u64;
        for d in (0..self.rank()).rev() {
            for m in (0..self.mode_sizes.len()).rev().filter(|&m| self.mode_dims[m] == d) {
                for j in 0..self.mode_sizes[m].trailing_zeros() {
                    let bit = self.strides[m].trailing_zeros() + j;
                    if bit >= 64 || used >> bit & 1 == 1 {
                        return Err(not_pow2());
                    }
                    used |= 1u64 << bit;
                    let c = 1u64 << bit;
                    columns.push(self.swizzle.map_or(c, |sw| sw.apply(c)));
                }
            }
        }
        let width = usize::BITS - (self.count_size() - 1).leading_zeros();
        let in_dims: Vec<F2Dim> =
            (0..self.rank()).rev().map(|d| (format!("dim{d}"), self.shape[d].trailing_zeros())).collect();
        F2Layout::new(in_dims, vec![("offset".to_string(), width)], columns)
    }
}

/// Text form, e.g. `shared(shape=[8, 64], modes=[8, 64], strides=[64, 1], swizzle=Swizzle<3,3,3>)`.
impl fmt::Display for SharedLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[usize]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
        write!(
            f,
            "shared(shape=[{}], modes=[{}], strides=[{}]",
            list(&self.shape),
            list(&self.mode_sizes),
            list(&self.strides)
        )?;
        if let Some(sw) = self.swizzle {
            write!(f, ", swizzle={sw}")?;
        }
        write!(f, ")")
    }
}
