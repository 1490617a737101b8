//! Register layouts in the mode representation: which thread holds which element of a register
//! tensor, and at which per-thread (local) index.
//!
//! # Representation
//!
//! A [`RegisterLayout`] of rank `r` is four lists:
//!
//! * `shape`: the tile extents `s_0 .. s_{r-1}`;
//! * the **modes**: every dimension `d` is split into a run of modes (digits) whose product is
//!   `s_d`, listed dimension by dimension; *within a dimension the first mode is the most
//!   significant digit* (row-major), so coordinate `c_d = ((m_0) * size_1 + m_1) * size_2 + ...`;
//! * the **spatial list** σ: thread digits, most significant first. An entry is a mode id or
//!   `Replicate(r)`, a thread digit of size `r` that does not select data (the element is held by
//!   all `r` values of that digit);
//! * the **local list** λ: per-thread digits, most significant first.
//!
//! `thread = ravel(σ digits)`, `local = ravel(λ digits)`; given `(thread, local)` the coordinate is
//! a function ([`RegisterLayout::coord`]), given a coordinate the local index is a function and the
//! owner threads are a set of `replication()` threads ([`RegisterLayout::owners`]).
//!
//! # Invariants (hold for every value of the type)
//!
//! 1. The product of the modes of dimension `d` is `shape[d]`; every extent is at least 1.
//! 2. Every mode appears exactly once in σ ∪ λ.
//! 3. The thread count, the local size and the element count are at most [`MAX_LAYOUT_SIZE`](super::error::MAX_LAYOUT_SIZE).
//! 4. **Canonical form**, so that derived `Eq`/`Hash` are semantic equality (two layouts are equal
//!    iff they have the same shape, thread count, local size and the same map
//!    `(thread, local) -> coordinate`):
//!    * no mode has size 1 and no `Replicate(1)` entry exists;
//!    * no two modes are mergeable: modes `a`, `b` with `b` right after `a` in the same dimension
//!      *and* `b` right after `a` in the same list are merged into one mode of size `a * b`
//!      (the digit pair `(x_a, x_b)` means `x_a * b + x_b` both in the coordinate and in the
//!      thread/local index, so one digit of size `a * b` is the same function);
//!    * no two `Replicate` entries are adjacent in σ (`[-2, -3]` and `[-6]` are the same
//!      function; Tilus does not merge these, this implementation does);
//!    * modes are numbered dimension by dimension, in row-major order within a dimension.
//!
//! Every public constructor and operation returns a canonical value, so `Eq`/`Hash` can be used
//! for layout inference and caching directly.
//!
//! # Products
//!
//! `outer * inner` is the Kronecker product (Tilus `compose`, the `.local(..)`/`.spatial(..)`
//! chain): per dimension outer's modes come first, then inner's; σ = σ_outer ++ σ_inner and
//! λ = λ_outer ++ λ_inner. Hence `thread = t_o * T_i + t_i`, `local = l_o * L_i + l_i`,
//! `coord = c_o ⊙ S_i + c_i`. A lower-rank operand is padded with leading extent-1 dimensions.

use std::fmt;
use std::ops::{Mul, Range};

use super::error::{LayoutError, capped_mul, capped_product};

/// One entry of the spatial (thread) list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpatialEntry {
    /// The thread digit is the digit of this mode.
    Mode(usize),
    /// A thread digit of this size that selects no data: the element is replicated over it.
    Replicate(usize),
}

/// Which list a mode sits in, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Spatial(usize),
    Local(usize),
}

/// A register layout in canonical mode form (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegisterLayout {
    shape: Vec<usize>,
    /// Size of each mode; all > 1.
    mode_sizes: Vec<usize>,
    /// Dimension of each mode; non-decreasing.
    mode_dims: Vec<usize>,
    spatial: Vec<SpatialEntry>,
    local: Vec<usize>,
}

/// A layout under construction: the same fields, without the canonical-form invariant.
/// Internal operations build one and finish with [`Raw::canonical`].
#[derive(Clone, Debug)]
struct Raw {
    shape: Vec<usize>,
    mode_sizes: Vec<usize>,
    mode_dims: Vec<usize>,
    spatial: Vec<SpatialEntry>,
    local: Vec<usize>,
}

impl Raw {
    fn from_layout(layout: &RegisterLayout) -> Raw {
        Raw {
            shape: layout.shape.clone(),
            mode_sizes: layout.mode_sizes.clone(),
            mode_dims: layout.mode_dims.clone(),
            spatial: layout.spatial.clone(),
            local: layout.local.clone(),
        }
    }

    fn slot_of(&self, mode: usize) -> Option<Slot> {
        if let Some(p) = self.spatial.iter().position(|e| *e == SpatialEntry::Mode(mode)) {
            return Some(Slot::Spatial(p));
        }
        self.local.iter().position(|&m| m == mode).map(Slot::Local)
    }

    /// Ids of the modes of dimension `dim`, most significant first.
    fn modes_of_dim(&self, dim: usize) -> Vec<usize> {
        (0..self.mode_sizes.len()).filter(|&m| self.mode_dims[m] == dim).collect()
    }

    /// Renumber mode ids in the lists with `map` (old id -> new id).
    fn remap_lists(&mut self, map: impl Fn(usize) -> usize) {
        for e in &mut self.spatial {
            if let SpatialEntry::Mode(m) = e {
                *m = map(*m);
            }
        }
        for m in &mut self.local {
            *m = map(*m);
        }
    }

    /// Split mode `mode` (size `hi * lo`) into two adjacent modes `hi` (more significant, keeps
    /// the id) and `lo` (id `mode + 1`), adjacent in the same list. The function is unchanged.
    fn split_mode(&mut self, mode: usize, hi: usize, lo: usize) {
        debug_assert_eq!(self.mode_sizes[mode], hi * lo);
        let slot = self.slot_of(mode);
        self.remap_lists(|m| if m > mode { m + 1 } else { m });
        self.mode_sizes[mode] = hi;
        self.mode_sizes.insert(mode + 1, lo);
        let dim = self.mode_dims[mode];
        self.mode_dims.insert(mode + 1, dim);
        match slot {
            Some(Slot::Spatial(p)) => self.spatial.insert(p + 1, SpatialEntry::Mode(mode + 1)),
            Some(Slot::Local(p)) => self.local.insert(p + 1, mode + 1),
            None => {}
        }
    }

    /// Remove the modes in `remove` (their list entries must already be gone).
    fn remove_modes(&mut self, remove: &[bool]) {
        let mut new_id = vec![usize::MAX; self.mode_sizes.len()];
        let mut next = 0;
        for (m, id) in new_id.iter_mut().enumerate() {
            if !remove[m] {
                *id = next;
                next += 1;
            }
        }
        self.remap_lists(|m| new_id[m]);
        let keep = |m: &usize| !remove[*m];
        self.mode_sizes = (0..self.mode_sizes.len()).filter(keep).map(|m| self.mode_sizes[m]).collect();
        self.mode_dims = (0..self.mode_dims.len()).filter(keep).map(|m| self.mode_dims[m]).collect();
    }

    /// Bring the parts into canonical form. The parts must describe a valid layout (every mode
    /// in exactly one list, modes sorted by dimension); this is checked by [`validate`] for
    /// user input and holds by construction for internal operations.
    fn canonical(mut self) -> RegisterLayout {
        // Size-1 modes carry no digit: drop them and their list entries.
        let trivial: Vec<bool> = self.mode_sizes.iter().map(|&s| s == 1).collect();
        self.spatial.retain(|e| !matches!(e, SpatialEntry::Mode(m) if trivial[*m]));
        self.local.retain(|m| !trivial[*m]);
        self.remove_modes(&trivial);

        // Replication digits: drop size 1, merge neighbours (r1 digit then r2 digit covers
        // exactly the threads of one r1*r2 digit).
        let mut spatial: Vec<SpatialEntry> = Vec::with_capacity(self.spatial.len());
        for e in self.spatial.drain(..) {
            match (e, spatial.last_mut()) {
                (SpatialEntry::Replicate(1), _) => {}
                (SpatialEntry::Replicate(r), Some(SpatialEntry::Replicate(prev))) => *prev *= r,
                (e, _) => spatial.push(e),
            }
        }
        self.spatial = spatial;

        // Merge modes adjacent in both their dimension and their list, until none is left.
        // Merging never creates adjacent replication entries (a mode entry stays between them).
        loop {
            let n = self.mode_sizes.len();
            let mut merged = false;
            for a in 0..n.saturating_sub(1) {
                let b = a + 1;
                if self.mode_dims[a] != self.mode_dims[b] {
                    continue;
                }
                let adjacent = match (self.slot_of(a), self.slot_of(b)) {
                    (Some(Slot::Spatial(p)), Some(Slot::Spatial(q))) if q == p + 1 => Some(Slot::Spatial(q)),
                    (Some(Slot::Local(p)), Some(Slot::Local(q))) if q == p + 1 => Some(Slot::Local(q)),
                    _ => None,
                };
                let Some(slot_b) = adjacent else { continue };
                match slot_b {
                    Slot::Spatial(q) => {
                        self.spatial.remove(q);
                    }
                    Slot::Local(q) => {
                        self.local.remove(q);
                    }
                }
                self.mode_sizes[a] *= self.mode_sizes[b];
                let mut remove = vec![false; n];
                remove[b] = true;
                self.remove_modes(&remove);
                merged = true;
                break;
            }
            if !merged {
                break;
            }
        }
        RegisterLayout {
            shape: self.shape,
            mode_sizes: self.mode_sizes,
            mode_dims: self.mode_dims,
            spatial: self.spatial,
            local: self.local,
        }
    }
}

fn check_extents(what: &'static str, extents: &[usize]) -> Result<(), LayoutError> {
    if extents.contains(&0) {
        return Err(LayoutError::ZeroExtent { what, extents: extents.to_vec() });
    }
    capped_product(extents.iter().copied())?;
    Ok(())
}

/// Check the parts of a layout given by a caller (invariants 1–3 of the module documentation).
fn validate(raw: &Raw) -> Result<(), LayoutError> {
    check_extents("shape", &raw.shape)?;
    check_extents("modes", &raw.mode_sizes)?;
    for (d, &extent) in raw.shape.iter().enumerate() {
        let product = capped_product(raw.modes_of_dim(d).into_iter().map(|m| raw.mode_sizes[m]))?;
        if product != extent {
            return Err(LayoutError::InvalidModes(format!(
                "the modes of dimension {d} multiply to {product}, not to its extent {extent}"
            )));
        }
    }
    let n = raw.mode_sizes.len();
    let mut seen = vec![false; n];
    let spatial_modes = raw.spatial.iter().filter_map(|e| match e {
        SpatialEntry::Mode(m) => Some(*m),
        SpatialEntry::Replicate(_) => None,
    });
    for m in spatial_modes.chain(raw.local.iter().copied()) {
        if m >= n {
            return Err(LayoutError::InvalidModes(format!("mode {m} does not exist ({n} modes)")));
        }
        if seen[m] {
            return Err(LayoutError::InvalidModes(format!("mode {m} is listed twice")));
        }
        seen[m] = true;
    }
    if let Some(m) = seen.iter().position(|s| !s) {
        return Err(LayoutError::InvalidModes(format!("mode {m} is in neither the spatial nor the local list")));
    }
    if raw.spatial.contains(&SpatialEntry::Replicate(0)) {
        return Err(LayoutError::ZeroExtent { what: "replication", extents: vec![0] });
    }
    let sizes = spatial_sizes_of(&raw.spatial, &raw.mode_sizes);
    capped_product(sizes)?;
    capped_product(raw.local.iter().map(|&m| raw.mode_sizes[m]))?;
    Ok(())
}

fn spatial_sizes_of(spatial: &[SpatialEntry], mode_sizes: &[usize]) -> Vec<usize> {
    spatial
        .iter()
        .map(|e| match *e {
            SpatialEntry::Mode(m) => mode_sizes[m],
            SpatialEntry::Replicate(r) => r,
        })
        .collect()
}

/// Row-major ravel of `digits` over `sizes` (first digit most significant).
fn ravel(digits: impl IntoIterator<Item = usize>, sizes: impl IntoIterator<Item = usize>) -> usize {
    digits.into_iter().zip(sizes).fold(0, |acc, (x, s)| acc * s + x)
}

/// Row-major unravel of `index` over `sizes`.
fn unravel(mut index: usize, sizes: &[usize]) -> Vec<usize> {
    let mut digits = vec![0; sizes.len()];
    for (digit, &s) in digits.iter_mut().zip(sizes).rev() {
        *digit = index % s;
        index /= s;
    }
    digits
}

impl RegisterLayout {
    // ----------------------------------------------------------------------------------------
    // Constructors
    // ----------------------------------------------------------------------------------------

    /// A layout from its parts. `dim_modes[d]` lists the mode sizes of dimension `d`, most
    /// significant first; mode ids number these lists in order (dimension 0's modes first).
    /// `spatial` and `local` are the thread and per-thread digit lists, most significant first.
    /// The result is canonicalized, so it may have fewer modes than given.
    pub fn from_modes(
        shape: &[usize],
        dim_modes: &[Vec<usize>],
        spatial: &[SpatialEntry],
        local: &[usize],
    ) -> Result<RegisterLayout, LayoutError> {
        if dim_modes.len() != shape.len() {
            return Err(LayoutError::RankMismatch(shape.len(), dim_modes.len()));
        }
        let mut mode_sizes = Vec::new();
        let mut mode_dims = Vec::new();
        for (d, modes) in dim_modes.iter().enumerate() {
            mode_sizes.extend_from_slice(modes);
            mode_dims.extend(std::iter::repeat_n(d, modes.len()));
        }
        let raw =
            Raw { shape: shape.to_vec(), mode_sizes, mode_dims, spatial: spatial.to_vec(), local: local.to_vec() };
        validate(&raw)?;
        Ok(raw.canonical())
    }

    /// One mode per dimension (dropping extent-1 dims), listed in `order` (most significant first)
    /// in σ (if `spatial`) or λ.
    fn primitive(shape: &[usize], spatial: bool, order: &[usize]) -> Result<RegisterLayout, LayoutError> {
        check_extents("shape", shape)?;
        let dim_modes: Vec<Vec<usize>> = shape.iter().map(|&s| vec![s]).collect();
        let list: Vec<usize> = order.to_vec();
        if spatial {
            let entries: Vec<SpatialEntry> = list.into_iter().map(SpatialEntry::Mode).collect();
            RegisterLayout::from_modes(shape, &dim_modes, &entries, &[])
        } else {
            RegisterLayout::from_modes(shape, &dim_modes, &[], &list)
        }
    }

    fn check_order(rank: usize, order: &[usize]) -> Result<(), LayoutError> {
        let mut seen = vec![false; rank];
        if order.len() != rank {
            return Err(LayoutError::NotAPermutation(order.to_vec()));
        }
        for &d in order {
            if d >= rank || seen[d] {
                return Err(LayoutError::NotAPermutation(order.to_vec()));
            }
            seen[d] = true;
        }
        Ok(())
    }

    /// `local(n_0, ..)`: one thread holds the whole tile, local index row-major.
    pub fn local(shape: &[usize]) -> Result<RegisterLayout, LayoutError> {
        let order: Vec<usize> = (0..shape.len()).collect();
        RegisterLayout::primitive(shape, false, &order)
    }

    /// `spatial(n_0, ..)`: one element per thread, thread index row-major.
    pub fn spatial(shape: &[usize]) -> Result<RegisterLayout, LayoutError> {
        let order: Vec<usize> = (0..shape.len()).collect();
        RegisterLayout::primitive(shape, true, &order)
    }

    /// `column_local(n_0, ..)`: like `local`, local index column-major (dimension 0 fastest).
    pub fn column_local(shape: &[usize]) -> Result<RegisterLayout, LayoutError> {
        let order: Vec<usize> = (0..shape.len()).rev().collect();
        RegisterLayout::primitive(shape, false, &order)
    }

    /// `column_spatial(n_0, ..)`: like `spatial`, thread index column-major (dimension 0 fastest).
    pub fn column_spatial(shape: &[usize]) -> Result<RegisterLayout, LayoutError> {
        let order: Vec<usize> = (0..shape.len()).rev().collect();
        RegisterLayout::primitive(shape, true, &order)
    }

    /// `spatial` with an arbitrary digit order: `order` lists the dimensions from the most to
    /// the least significant thread digit (Tilus `spatial(.., ranks=..)`).
    pub fn spatial_in_order(shape: &[usize], order: &[usize]) -> Result<RegisterLayout, LayoutError> {
        RegisterLayout::check_order(shape.len(), order)?;
        RegisterLayout::primitive(shape, true, order)
    }

    /// `local` with an arbitrary digit order (see [`RegisterLayout::spatial_in_order`]).
    pub fn local_in_order(shape: &[usize], order: &[usize]) -> Result<RegisterLayout, LayoutError> {
        RegisterLayout::check_order(shape.len(), order)?;
        RegisterLayout::primitive(shape, false, order)
    }

    /// Every one of `threads` threads holds the whole `shape` tile (row-major local index).
    pub fn replicate(shape: &[usize], threads: usize) -> Result<RegisterLayout, LayoutError> {
        let ones = vec![1; shape.len()];
        RegisterLayout::replication_only(&ones, threads)?.product(&RegisterLayout::local(shape)?)
    }

    /// The extent-1 layout of rank `rank` over `threads` threads that all hold its one element:
    /// the replication factor alone, useful as an outer factor.
    fn replication_only(ones: &[usize], threads: usize) -> Result<RegisterLayout, LayoutError> {
        if threads == 0 {
            return Err(LayoutError::ZeroExtent { what: "thread count", extents: vec![0] });
        }
        let dim_modes = vec![Vec::new(); ones.len()];
        RegisterLayout::from_modes(ones, &dim_modes, &[SpatialEntry::Replicate(threads)], &[])
    }

    /// The unit of the product: rank `rank`, all extents 1, one thread, one element.
    pub fn unit(rank: usize) -> RegisterLayout {
        RegisterLayout { shape: vec![1; rank], mode_sizes: vec![], mode_dims: vec![], spatial: vec![], local: vec![] }
    }

    /// This layout replicated over `copies` groups of threads: thread `t` is copy
    /// `t / (num_threads / copies)` (replication as the most significant thread digit).
    pub fn replicated(&self, copies: usize) -> Result<RegisterLayout, LayoutError> {
        let ones = vec![1; self.rank()];
        RegisterLayout::replication_only(&ones, copies)?.product(self)
    }

    /// The default layout of a `shape` tile over `threads` threads: going from the last
    /// dimension to the first, each takes `gcd(threads left, extent)` threads; the rest of each
    /// extent stays local (`local(rest) * spatial(threads per dim)`); threads left over hold
    /// replicas (a leading replication digit).
    pub fn auto_local_spatial(shape: &[usize], threads: usize) -> Result<RegisterLayout, LayoutError> {
        check_extents("shape", shape)?;
        if threads == 0 {
            return Err(LayoutError::ZeroExtent { what: "thread count", extents: vec![0] });
        }
        let mut spatial = vec![1; shape.len()];
        let mut remaining = threads;
        for d in (0..shape.len()).rev() {
            let g = gcd(remaining, shape[d]);
            spatial[d] = g;
            remaining /= g;
        }
        let local: Vec<usize> = shape.iter().zip(&spatial).map(|(s, t)| s / t).collect();
        RegisterLayout::local(&local)?.product(&RegisterLayout::spatial(&spatial)?)?.replicated(remaining)
    }

    /// `self * local(shape)` (the Tilus `.local(..)` chain).
    pub fn with_local(&self, shape: &[usize]) -> Result<RegisterLayout, LayoutError> {
        self.product(&RegisterLayout::local(shape)?)
    }

    /// `self * spatial(shape)`.
    pub fn with_spatial(&self, shape: &[usize]) -> Result<RegisterLayout, LayoutError> {
        self.product(&RegisterLayout::spatial(shape)?)
    }

    /// `self * column_local(shape)`.
    pub fn with_column_local(&self, shape: &[usize]) -> Result<RegisterLayout, LayoutError> {
        self.product(&RegisterLayout::column_local(shape)?)
    }

    /// `self * column_spatial(shape)`.
    pub fn with_column_spatial(&self, shape: &[usize]) -> Result<RegisterLayout, LayoutError> {
        self.product(&RegisterLayout::column_spatial(shape)?)
    }

    // ----------------------------------------------------------------------------------------
    // Parts and sizes
    // ----------------------------------------------------------------------------------------

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements of the tile.
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Mode sizes, dimension by dimension, most significant first within a dimension.
    pub fn mode_shape(&self) -> &[usize] {
        &self.mode_sizes
    }

    /// The dimension of every mode (non-decreasing).
    pub fn mode_dims(&self) -> &[usize] {
        &self.mode_dims
    }

    /// Mode sizes of each dimension (the `dim_modes` argument of [`RegisterLayout::from_modes`]).
    pub fn dim_modes(&self) -> Vec<Vec<usize>> {
        (0..self.rank()).map(|d| self.dim_range(d).map(|m| self.mode_sizes[m]).collect()).collect()
    }

    pub fn spatial_modes(&self) -> &[SpatialEntry] {
        &self.spatial
    }

    pub fn local_modes(&self) -> &[usize] {
        &self.local
    }

    /// Range of the mode ids of dimension `dim` (modes are numbered dimension by dimension).
    fn dim_range(&self, dim: usize) -> Range<usize> {
        let start = self.mode_dims.iter().take_while(|&&d| d < dim).count();
        let end = start + self.mode_dims[start..].iter().take_while(|&&d| d == dim).count();
        start..end
    }

    /// Sizes of the σ digits, most significant first.
    pub fn spatial_shape(&self) -> Vec<usize> {
        spatial_sizes_of(&self.spatial, &self.mode_sizes)
    }

    /// Sizes of the λ digits, most significant first.
    pub fn local_shape(&self) -> Vec<usize> {
        self.local.iter().map(|&m| self.mode_sizes[m]).collect()
    }

    pub fn num_threads(&self) -> usize {
        self.spatial_shape().iter().product()
    }

    /// Elements held by each thread.
    pub fn local_size(&self) -> usize {
        self.local_shape().iter().product()
    }

    /// How many threads hold each element (the product of the replication digits).
    pub fn replication(&self) -> usize {
        self.spatial
            .iter()
            .map(|e| match e {
                SpatialEntry::Replicate(r) => *r,
                SpatialEntry::Mode(_) => 1,
            })
            .product()
    }

    /// True when every mode and replication digit is a power of two (the layout has a GF(2)
    /// form, see [`super::gf2::F2Layout::from_register`]).
    pub fn is_power_of_two(&self) -> bool {
        self.shape.iter().all(|s| s.is_power_of_two()) && self.spatial_shape().iter().all(|s| s.is_power_of_two())
    }

    /// For every mode, the coordinate weight of its digit within its dimension.
    pub(crate) fn mode_weights(&self) -> Vec<usize> {
        let mut weights = vec![1; self.mode_sizes.len()];
        for d in 0..self.rank() {
            let mut w = 1;
            for m in self.dim_range(d).rev() {
                weights[m] = w;
                w *= self.mode_sizes[m];
            }
        }
        weights
    }

    // ----------------------------------------------------------------------------------------
    // Queries
    // ----------------------------------------------------------------------------------------

    /// The coordinate held at local index `local` of thread `thread`; `None` if either is out of
    /// range.
    pub fn coord(&self, thread: usize, local: usize) -> Option<Vec<usize>> {
        if thread >= self.num_threads() || local >= self.local_size() {
            return None;
        }
        // Peel digits off the least significant end of each list; each lands in its dimension
        // scaled by the weight of its mode there.
        let weights = self.mode_weights();
        let mut coord = vec![0; self.rank()];
        let mut rest = thread;
        for entry in self.spatial.iter().rev() {
            match *entry {
                SpatialEntry::Mode(m) => {
                    coord[self.mode_dims[m]] += (rest % self.mode_sizes[m]) * weights[m];
                    rest /= self.mode_sizes[m];
                }
                SpatialEntry::Replicate(r) => rest /= r,
            }
        }
        let mut rest = local;
        for &m in self.local.iter().rev() {
            coord[self.mode_dims[m]] += (rest % self.mode_sizes[m]) * weights[m];
            rest /= self.mode_sizes[m];
        }
        Some(coord)
    }

    /// The mode digits of `coord`, or `None` if it is outside the shape.
    fn digits_of(&self, coord: &[usize]) -> Option<Vec<usize>> {
        if coord.len() != self.rank() || coord.iter().zip(&self.shape).any(|(c, s)| c >= s) {
            return None;
        }
        let mut digits = vec![0; self.mode_sizes.len()];
        for (d, &c) in coord.iter().enumerate() {
            let range = self.dim_range(d);
            let sizes: Vec<usize> = self.mode_sizes[range.clone()].to_vec();
            digits[range].copy_from_slice(&unravel(c, &sizes));
        }
        Some(digits)
    }

    /// The local index at which every owner of `coord` holds it; `None` if out of range.
    pub fn local_of(&self, coord: &[usize]) -> Option<usize> {
        let digits = self.digits_of(coord)?;
        Some(ravel(self.local.iter().map(|&m| digits[m]), self.local_shape()))
    }

    /// Every `(thread, local)` pair holding `coord`, ascending by thread; `replication()` pairs
    /// that all share the local index. Empty if `coord` is outside the shape.
    pub fn owners(&self, coord: &[usize]) -> Vec<(usize, usize)> {
        let Some(digits) = self.digits_of(coord) else { return Vec::new() };
        let local = ravel(self.local.iter().map(|&m| digits[m]), self.local_shape());
        let mut threads = vec![0usize];
        for entry in &self.spatial {
            threads = match *entry {
                SpatialEntry::Mode(m) => threads.iter().map(|t| t * self.mode_sizes[m] + digits[m]).collect(),
                SpatialEntry::Replicate(r) => threads.iter().flat_map(|t| (0..r).map(move |x| t * r + x)).collect(),
            };
        }
        threads.into_iter().map(|t| (t, local)).collect()
    }

    /// Which copy of the data thread `thread` holds: the ravel of its replication digits.
    /// Copy 0 is the primary one; threads with the same spatial digits and different copy numbers
    /// hold the same elements. `None` if the thread is out of range.
    pub fn replica_index(&self, thread: usize) -> Option<usize> {
        if thread >= self.num_threads() {
            return None;
        }
        let digits = unravel(thread, &self.spatial_shape());
        let mut copy = 0;
        for (entry, digit) in self.spatial.iter().zip(digits) {
            if let SpatialEntry::Replicate(r) = entry {
                copy = copy * r + digit;
            }
        }
        Some(copy)
    }

    /// The whole map, by brute force: `((thread, local), coord)` for every thread and local index,
    /// in ascending order. For tests and debugging (size `num_threads * local_size`).
    pub fn relation(&self) -> Vec<((usize, usize), Vec<usize>)> {
        let mut out = Vec::with_capacity(self.num_threads() * self.local_size());
        for t in 0..self.num_threads() {
            for l in 0..self.local_size() {
                if let Some(c) = self.coord(t, l) {
                    out.push(((t, l), c));
                }
            }
        }
        out
    }

    // ----------------------------------------------------------------------------------------
    // Algebra
    // ----------------------------------------------------------------------------------------

    /// This layout with `rank - self.rank()` leading extent-1 dimensions (no-op if not lower).
    pub fn padded_to_rank(&self, rank: usize) -> RegisterLayout {
        let extra = rank.saturating_sub(self.rank());
        let mut shape = vec![1; extra];
        shape.extend_from_slice(&self.shape);
        RegisterLayout {
            shape,
            mode_sizes: self.mode_sizes.clone(),
            mode_dims: self.mode_dims.iter().map(|d| d + extra).collect(),
            spatial: self.spatial.clone(),
            local: self.local.clone(),
        }
    }

    /// The Kronecker product `self * inner` (self is the outer factor); see the module docs.
    pub fn product(&self, inner: &RegisterLayout) -> Result<RegisterLayout, LayoutError> {
        let rank = self.rank().max(inner.rank());
        let outer = self.padded_to_rank(rank);
        let inner = inner.padded_to_rank(rank);
        capped_mul(outer.num_threads(), inner.num_threads())?;
        capped_mul(outer.local_size(), inner.local_size())?;
        let mut shape = Vec::with_capacity(rank);
        let mut mode_sizes = Vec::new();
        let mut mode_dims = Vec::new();
        let mut outer_id = vec![0; outer.mode_sizes.len()];
        let mut inner_id = vec![0; inner.mode_sizes.len()];
        for d in 0..rank {
            shape.push(capped_mul(outer.shape[d], inner.shape[d])?);
            for (ids, layout) in [(&mut outer_id, &outer), (&mut inner_id, &inner)] {
                for m in layout.dim_range(d) {
                    ids[m] = mode_sizes.len();
                    mode_sizes.push(layout.mode_sizes[m]);
                    mode_dims.push(d);
                }
            }
        }
        let map_spatial = |e: &SpatialEntry, ids: &[usize]| match *e {
            SpatialEntry::Mode(m) => SpatialEntry::Mode(ids[m]),
            r => r,
        };
        let spatial = outer
            .spatial
            .iter()
            .map(|e| map_spatial(e, &outer_id))
            .chain(inner.spatial.iter().map(|e| map_spatial(e, &inner_id)))
            .collect();
        let local = outer.local.iter().map(|&m| outer_id[m]).chain(inner.local.iter().map(|&m| inner_id[m])).collect();
        Ok(Raw { shape, mode_sizes, mode_dims, spatial, local }.canonical())
    }

    /// Right division: the `Q` with `self == Q * inner`, or `None` if there is none (also when
    /// `inner` has a higher rank than `self`; a lower-rank `inner` is padded with leading
    /// extent-1 dimensions, as in the product).
    ///
    /// `Q` is unique when it exists (`Q(t, l) = self(t * T_inner, l * L_inner) / S_inner`).
    /// Per dimension inner's modes must be a suffix of self's, and inner's lists suffixes of
    /// self's lists; the one place canonicalization can have merged a mode of `Q` with one of
    /// `inner` (the boundary of each dimension, and a replication digit at the boundary of σ) is
    /// split back first. The result is checked by multiplying back.
    pub fn divide_right(&self, inner: &RegisterLayout) -> Option<RegisterLayout> {
        if inner.rank() > self.rank() {
            return None;
        }
        let inner = inner.padded_to_rank(self.rank());
        if self.shape.iter().zip(&inner.shape).any(|(x, i)| x % i != 0) {
            return None;
        }
        let mut raw = Raw::from_layout(self);
        // Refine the boundary mode of each dimension.
        for d in 0..self.rank() {
            let inner_modes: Vec<usize> = inner.dim_range(d).collect();
            let k = inner_modes.len();
            if k == 0 {
                continue;
            }
            let modes = raw.modes_of_dim(d);
            if modes.len() < k {
                return None;
            }
            let tail = &modes[modes.len() - k..];
            for j in 1..k {
                if raw.mode_sizes[tail[j]] != inner.mode_sizes[inner_modes[j]] {
                    return None;
                }
            }
            let (boundary, want) = (tail[0], inner.mode_sizes[inner_modes[0]]);
            let size = raw.mode_sizes[boundary];
            if size != want {
                if !size.is_multiple_of(want) {
                    return None;
                }
                raw.split_mode(boundary, size / want, want);
            }
        }
        // Refine a replication digit at the σ boundary.
        let p = inner.spatial.len();
        if raw.spatial.len() < p {
            return None;
        }
        if let Some(&SpatialEntry::Replicate(want)) = inner.spatial.first() {
            let at = raw.spatial.len() - p;
            let SpatialEntry::Replicate(have) = raw.spatial[at] else { return None };
            if !have.is_multiple_of(want) {
                return None;
            }
            if have != want {
                raw.spatial[at] = SpatialEntry::Replicate(have / want);
                raw.spatial.insert(at + 1, SpatialEntry::Replicate(want));
            }
        }
        // Inner mode id -> refined self mode id.
        let mut matched = vec![usize::MAX; inner.mode_sizes.len()];
        for d in 0..self.rank() {
            let inner_modes: Vec<usize> = inner.dim_range(d).collect();
            let modes = raw.modes_of_dim(d);
            for (i, m) in inner_modes.iter().zip(&modes[modes.len() - inner_modes.len()..]) {
                matched[*i] = *m;
            }
        }
        let spatial_split = raw.spatial.len() - p;
        let local_split = raw.local.len().checked_sub(inner.local.len())?;
        let quotient = Self::strip(
            raw,
            &inner,
            &matched,
            spatial_split..spatial_split + p,
            local_split..local_split + inner.local.len(),
            |x, i| x / i,
        )?;
        (quotient.product(&inner).ok()? == *self).then_some(quotient)
    }

    /// Left division: the `Q` with `self == outer * Q`, or `None` if there is none (the prefix
    /// version of [`RegisterLayout::divide_right`]).
    pub fn divide_left(&self, outer: &RegisterLayout) -> Option<RegisterLayout> {
        if outer.rank() > self.rank() {
            return None;
        }
        let outer = outer.padded_to_rank(self.rank());
        if self.shape.iter().zip(&outer.shape).any(|(x, o)| x % o != 0) {
            return None;
        }
        let mut raw = Raw::from_layout(self);
        for d in 0..self.rank() {
            let outer_modes: Vec<usize> = outer.dim_range(d).collect();
            let k = outer_modes.len();
            if k == 0 {
                continue;
            }
            let modes = raw.modes_of_dim(d);
            if modes.len() < k {
                return None;
            }
            for j in 0..k - 1 {
                if raw.mode_sizes[modes[j]] != outer.mode_sizes[outer_modes[j]] {
                    return None;
                }
            }
            let (boundary, want) = (modes[k - 1], outer.mode_sizes[outer_modes[k - 1]]);
            let size = raw.mode_sizes[boundary];
            if size != want {
                if !size.is_multiple_of(want) {
                    return None;
                }
                raw.split_mode(boundary, want, size / want);
            }
        }
        let p = outer.spatial.len();
        if raw.spatial.len() < p {
            return None;
        }
        if let Some(&SpatialEntry::Replicate(want)) = outer.spatial.last() {
            let SpatialEntry::Replicate(have) = raw.spatial[p - 1] else { return None };
            if !have.is_multiple_of(want) {
                return None;
            }
            if have != want {
                raw.spatial[p - 1] = SpatialEntry::Replicate(want);
                raw.spatial.insert(p, SpatialEntry::Replicate(have / want));
            }
        }
        let mut matched = vec![usize::MAX; outer.mode_sizes.len()];
        for d in 0..self.rank() {
            let outer_modes: Vec<usize> = outer.dim_range(d).collect();
            let modes = raw.modes_of_dim(d);
            for (o, m) in outer_modes.iter().zip(&modes) {
                matched[*o] = *m;
            }
        }
        if raw.local.len() < outer.local.len() {
            return None;
        }
        let quotient = Self::strip(raw, &outer, &matched, 0..p, 0..outer.local.len(), |x, o| x / o)?;
        (outer.product(&quotient).ok()? == *self).then_some(quotient)
    }

    /// Remove the factor `part` from a refined layout: the σ entries in `spatial_range` and the
    /// λ entries in `local_range` must be exactly `part`'s lists under `matched` (part mode id ->
    /// raw mode id); the matched modes are deleted and the shape is divided.
    fn strip(
        mut raw: Raw,
        part: &RegisterLayout,
        matched: &[usize],
        spatial_range: Range<usize>,
        local_range: Range<usize>,
        divide: impl Fn(usize, usize) -> usize,
    ) -> Option<RegisterLayout> {
        let corresponds = raw.spatial[spatial_range.clone()].iter().zip(&part.spatial).all(|(x, e)| match (*x, *e) {
            (SpatialEntry::Mode(a), SpatialEntry::Mode(b)) => matched[b] == a,
            (SpatialEntry::Replicate(a), SpatialEntry::Replicate(b)) => a == b,
            _ => false,
        });
        let corresponds =
            corresponds && raw.local[local_range.clone()].iter().zip(&part.local).all(|(a, b)| matched[*b] == *a);
        if !corresponds {
            return None;
        }
        raw.spatial.drain(spatial_range);
        raw.local.drain(local_range);
        let mut remove = vec![false; raw.mode_sizes.len()];
        for &m in matched {
            remove[m] = true;
        }
        raw.remove_modes(&remove);
        raw.shape = raw.shape.iter().zip(&part.shape).map(|(x, p)| divide(*x, *p)).collect();
        Some(raw.canonical())
    }

    fn check_dims(&self, dims: &[usize]) -> Result<Vec<bool>, LayoutError> {
        let mut selected = vec![false; self.rank()];
        for &d in dims {
            if d >= self.rank() {
                return Err(LayoutError::DimOutOfRange { dim: d, rank: self.rank() });
            }
            if selected[d] {
                return Err(LayoutError::DuplicateDim(d));
            }
            selected[d] = true;
        }
        Ok(selected)
    }

    /// Reduce over `dims` and remove them: the spatial modes of the reduced dimensions become
    /// replication digits (the threads that held different slices now hold the same reduced
    /// element), their local modes vanish.
    pub fn reduce(&self, dims: &[usize]) -> Result<RegisterLayout, LayoutError> {
        let reduced = self.reduce_keep_dims(dims)?;
        reduced.squeeze(dims)
    }

    /// [`RegisterLayout::reduce`], keeping the reduced dimensions with extent 1.
    pub fn reduce_keep_dims(&self, dims: &[usize]) -> Result<RegisterLayout, LayoutError> {
        let selected = self.check_dims(dims)?;
        let mut raw = Raw::from_layout(self);
        let gone: Vec<bool> = raw.mode_dims.iter().map(|&d| selected[d]).collect();
        for e in &mut raw.spatial {
            if let SpatialEntry::Mode(m) = *e
                && gone[m]
            {
                *e = SpatialEntry::Replicate(raw.mode_sizes[m]);
            }
        }
        raw.local.retain(|&m| !gone[m]);
        raw.remove_modes(&gone);
        for (d, s) in raw.shape.iter_mut().enumerate() {
            if selected[d] {
                *s = 1;
            }
        }
        Ok(raw.canonical())
    }

    /// Remove extent-1 dimensions `dims`.
    pub fn squeeze(&self, dims: &[usize]) -> Result<RegisterLayout, LayoutError> {
        let selected = self.check_dims(dims)?;
        for &d in dims {
            if self.shape[d] != 1 {
                return Err(LayoutError::NotSqueezable { dim: d, extent: self.shape[d] });
            }
        }
        let new_dim: Vec<usize> = (0..self.rank()).map(|d| (0..d).filter(|&e| !selected[e]).count()).collect();
        let mut raw = Raw::from_layout(self);
        raw.shape = (0..self.rank()).filter(|&d| !selected[d]).map(|d| self.shape[d]).collect();
        raw.mode_dims = raw.mode_dims.iter().map(|&d| new_dim[d]).collect();
        Ok(raw.canonical())
    }

    /// Insert extent-1 dimensions so that they sit at positions `dims` of the result.
    pub fn unsqueeze(&self, dims: &[usize]) -> Result<RegisterLayout, LayoutError> {
        let rank = self.rank() + dims.len();
        let mut inserted = vec![false; rank];
        for &d in dims {
            if d >= rank {
                return Err(LayoutError::DimOutOfRange { dim: d, rank });
            }
            if inserted[d] {
                return Err(LayoutError::DuplicateDim(d));
            }
            inserted[d] = true;
        }
        let old_to_new: Vec<usize> = (0..rank).filter(|&d| !inserted[d]).collect();
        let mut raw = Raw::from_layout(self);
        raw.shape = vec![1; rank];
        for (old, &new) in old_to_new.iter().enumerate() {
            raw.shape[new] = self.shape[old];
        }
        raw.mode_dims = raw.mode_dims.iter().map(|&d| old_to_new[d]).collect();
        Ok(raw.canonical())
    }

    /// Reorder the dimensions: dimension `j` of the result is dimension `perm[j]` of `self`.
    pub fn permute(&self, perm: &[usize]) -> Result<RegisterLayout, LayoutError> {
        RegisterLayout::check_order(self.rank(), perm)?;
        let mut new_id = vec![0; self.mode_sizes.len()];
        let mut mode_sizes = Vec::new();
        let mut mode_dims = Vec::new();
        for (j, &old) in perm.iter().enumerate() {
            for m in self.dim_range(old) {
                new_id[m] = mode_sizes.len();
                mode_sizes.push(self.mode_sizes[m]);
                mode_dims.push(j);
            }
        }
        let mut raw = Raw::from_layout(self);
        raw.shape = perm.iter().map(|&d| self.shape[d]).collect();
        raw.mode_sizes = mode_sizes;
        raw.mode_dims = mode_dims;
        raw.remap_lists(|m| new_id[m]);
        Ok(raw.canonical())
    }

    /// The same map on a tile of shape `shape` with the same element count, where coordinates
    /// correspond through the row-major linear index. Fails when a new dimension boundary
    /// falls inside a mode whose size it does not divide (e.g. `[12]` with modes `[4, 3]` to
    /// `[3, 4]`).
    pub fn reshape(&self, shape: &[usize]) -> Result<RegisterLayout, LayoutError> {
        check_extents("shape", shape)?;
        let err = |reason| LayoutError::Reshape { from: self.shape.clone(), to: shape.to_vec(), reason };
        if capped_product(shape.iter().copied())? != self.num_elements() {
            return Err(err("element counts differ"));
        }
        // Modes numbered dimension by dimension, row-major within a dimension, are the row-major
        // digits of the linear index; cut them into runs with the new extents.
        let mut raw = Raw::from_layout(self);
        let mut dims = Vec::with_capacity(raw.mode_sizes.len());
        let mut m = 0;
        for (d, &extent) in shape.iter().enumerate() {
            let mut need = extent;
            while need > 1 {
                let Some(&size) = raw.mode_sizes.get(m) else { return Err(err("ran out of modes")) };
                if need % size == 0 {
                    need /= size;
                } else if size % need == 0 {
                    raw.split_mode(m, need, size / need);
                    need = 1;
                } else {
                    return Err(err("a new dimension boundary cuts a mode non-divisibly"));
                }
                dims.push(d);
                m += 1;
            }
        }
        raw.shape = shape.to_vec();
        raw.mode_dims = dims;
        Ok(raw.canonical())
    }

    /// Reshape to one dimension.
    pub fn flatten(&self) -> Result<RegisterLayout, LayoutError> {
        self.reshape(&[self.num_elements()])
    }

    /// Concatenate dimensions: shape `lhs.shape ++ rhs.shape`, threads and local indices
    /// multiply with `lhs` more significant (`thread = t_l * T_r + t_r`).
    pub fn concat(&self, rhs: &RegisterLayout) -> Result<RegisterLayout, LayoutError> {
        capped_mul(self.num_threads(), rhs.num_threads())?;
        capped_mul(self.local_size(), rhs.local_size())?;
        capped_mul(self.num_elements(), rhs.num_elements())?;
        let offset = self.mode_sizes.len();
        let shift = |e: &SpatialEntry| match *e {
            SpatialEntry::Mode(m) => SpatialEntry::Mode(m + offset),
            r => r,
        };
        let raw = Raw {
            shape: self.shape.iter().chain(&rhs.shape).copied().collect(),
            mode_sizes: self.mode_sizes.iter().chain(&rhs.mode_sizes).copied().collect(),
            mode_dims: self.mode_dims.iter().copied().chain(rhs.mode_dims.iter().map(|d| d + self.rank())).collect(),
            spatial: self.spatial.iter().copied().chain(rhs.spatial.iter().map(shift)).collect(),
            local: self.local.iter().copied().chain(rhs.local.iter().map(|m| m + offset)).collect(),
        };
        Ok(raw.canonical())
    }
}

/// One thread-dependent term of a coordinate:
/// `coord[dim] += ((thread / stride) % extent) * multiplier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadTerm {
    pub dim: usize,
    pub stride: usize,
    pub extent: usize,
    pub multiplier: usize,
}

/// The queries code generation uses: a coordinate is a constant per local index plus one term
/// per spatial mode, so generated code computes the thread's digits once and adds them.
impl RegisterLayout {
    /// The thread-dependent terms of the coordinates (one per spatial mode; replication digits
    /// select no data and have none).
    pub fn thread_terms(&self) -> Vec<ThreadTerm> {
        let weights = self.mode_weights();
        let mut terms = Vec::new();
        let mut stride = 1;
        for entry in self.spatial.iter().rev() {
            match *entry {
                SpatialEntry::Mode(m) => {
                    let extent = self.mode_sizes[m];
                    terms.push(ThreadTerm { dim: self.mode_dims[m], stride, extent, multiplier: weights[m] });
                    stride *= extent;
                }
                SpatialEntry::Replicate(r) => stride *= r,
            }
        }
        terms
    }

    /// The replication digits of the thread index as `(stride, extent)`: a thread holds the
    /// primary copy of its elements when all of them are zero.
    pub fn replication_digits(&self) -> Vec<(usize, usize)> {
        let mut digits = Vec::new();
        let mut stride = 1;
        for entry in self.spatial.iter().rev() {
            match *entry {
                SpatialEntry::Mode(m) => stride *= self.mode_sizes[m],
                SpatialEntry::Replicate(r) => {
                    digits.push((stride, r));
                    stride *= r;
                }
            }
        }
        digits
    }

    /// The thread-independent part of the coordinate of local index `local`: the coordinate
    /// thread 0 holds there. Panics if `local >= local_size()`.
    pub fn local_coords(&self, local: usize) -> Vec<usize> {
        self.coord(0, local).expect("local index in range")
    }
}

pub(crate) fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Mul<&RegisterLayout> for &RegisterLayout {
    type Output = Result<RegisterLayout, LayoutError>;

    /// The Kronecker product `outer * inner`; fails only when a size exceeds [`MAX_LAYOUT_SIZE`](super::error::MAX_LAYOUT_SIZE).
    fn mul(self, inner: &RegisterLayout) -> Self::Output {
        self.product(inner)
    }
}

impl Mul for RegisterLayout {
    type Output = Result<RegisterLayout, LayoutError>;

    fn mul(self, inner: RegisterLayout) -> Self::Output {
        self.product(&inner)
    }
}

/// Text form, e.g. `layout(shape=[16, 8], modes=[2, 8, 4, 2], spatial=[1, 2], local=[0, 3])`:
/// the canonical parts, replication digits written as negative numbers (as in Tilus).
/// One factor of a product form: `local`, `spatial` or `replicate` with its extents.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ProductFactor {
    Local(Vec<usize>),
    Spatial(Vec<usize>),
    Replicate(usize),
}

impl RegisterLayout {
    /// The layout written as a product of `local(..)`, `spatial(..)` and `replicate(n)`
    /// factors, outermost first (`local(2, 1) * spatial(8, 4) * local(1, 2)`), or `None` when
    /// the mode orders admit no such product. The result is checked: building it back gives
    /// this layout.
    pub fn product_form(&self) -> Option<String> {
        #[derive(Clone, Copy, PartialEq)]
        enum Item {
            Mode(usize),
            Replicate(usize),
        }
        let rank = self.rank();
        let mut items: Vec<Item> = (0..self.mode_sizes.len()).map(Item::Mode).collect();
        let mut replicate_ids = Vec::new();
        for e in &self.spatial {
            if let SpatialEntry::Replicate(_) = e {
                replicate_ids.push(items.len());
                items.push(Item::Replicate(0));
            }
        }
        // Item index of each σ entry and λ entry.
        let mut r = 0;
        let sigma: Vec<usize> = self
            .spatial
            .iter()
            .map(|e| match *e {
                SpatialEntry::Mode(m) => m,
                SpatialEntry::Replicate(n) => {
                    let id = replicate_ids[r];
                    items[id] = Item::Replicate(n);
                    r += 1;
                    id
                }
            })
            .collect();
        let lambda: Vec<usize> = self.local.clone();
        // Precedence: consecutive modes of a dimension, of σ and of λ.
        let n = items.len();
        let mut preds = vec![Vec::new(); n];
        for m in 1..self.mode_sizes.len() {
            if self.mode_dims[m] == self.mode_dims[m - 1] {
                preds[m].push(m - 1);
            }
        }
        for w in sigma.windows(2).chain(lambda.windows(2)) {
            preds[w[1]].push(w[0]);
        }
        let is_spatial = |i: usize| matches!(items[i], Item::Replicate(_)) || sigma.contains(&i);
        let mut done = vec![false; n];
        let mut order = Vec::new();
        while order.len() < n {
            let ready: Vec<usize> = (0..n).filter(|&i| !done[i] && preds[i].iter().all(|&p| done[p])).collect();
            let last_kind = order.last().map(|&i| is_spatial(i));
            let pick = ready.iter().copied().find(|&i| Some(is_spatial(i)) == last_kind).or(ready.first().copied())?;
            done[pick] = true;
            order.push(pick);
        }
        // Group runs of one kind over increasing dimensions into one factor.
        let mut factors: Vec<ProductFactor> = Vec::new();
        let mut last_dim: Option<usize> = None;
        for &i in &order {
            match items[i] {
                Item::Replicate(count) => {
                    factors.push(ProductFactor::Replicate(count));
                    last_dim = None;
                }
                Item::Mode(m) => {
                    let (dim, size) = (self.mode_dims[m], self.mode_sizes[m]);
                    let spatial = is_spatial(i);
                    let extend = match (factors.last_mut(), last_dim) {
                        (Some(ProductFactor::Spatial(e)), Some(d)) if spatial && dim > d => Some(e),
                        (Some(ProductFactor::Local(e)), Some(d)) if !spatial && dim > d => Some(e),
                        _ => None,
                    };
                    match extend {
                        Some(e) => e[dim] = size,
                        None => {
                            let mut e = vec![1; rank];
                            e[dim] = size;
                            factors.push(if spatial { ProductFactor::Spatial(e) } else { ProductFactor::Local(e) });
                        }
                    }
                    last_dim = Some(dim);
                }
            }
        }
        // Build it back; only a product that reproduces the layout is printed.
        let mut rebuilt = RegisterLayout::unit(rank);
        for f in &factors {
            rebuilt = match f {
                ProductFactor::Local(e) => rebuilt.with_local(e).ok()?,
                ProductFactor::Spatial(e) => rebuilt.with_spatial(e).ok()?,
                ProductFactor::Replicate(c) => rebuilt.product(&RegisterLayout::replicate(&vec![1; rank], *c).ok()?).ok()?,
            };
        }
        if rebuilt != *self {
            return None;
        }
        let list = |e: &[usize]| e.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
        let parts: Vec<String> = factors
            .iter()
            .map(|f| match f {
                ProductFactor::Local(e) => format!("local({})", list(e)),
                ProductFactor::Spatial(e) => format!("spatial({})", list(e)),
                ProductFactor::Replicate(c) => format!("replicate({c})"),
            })
            .collect();
        Some(if parts.is_empty() { format!("local({})", list(&vec![1; rank])) } else { parts.join(" * ") })
    }
}

impl RegisterLayout {
    /// The product form when there is one, else the mode form: how layouts are shown to users.
    pub fn readable(&self) -> String {
        self.product_form().unwrap_or_else(|| self.to_string())
    }
}

impl fmt::Display for RegisterLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |items: Vec<String>| items.join(", ");
        let spatial: Vec<String> = self
            .spatial
            .iter()
            .map(|e| match e {
                SpatialEntry::Mode(m) => m.to_string(),
                SpatialEntry::Replicate(r) => format!("-{r}"),
            })
            .collect();
        write!(
            f,
            "layout(shape=[{}], modes=[{}], spatial=[{}], local=[{}])",
            join(self.shape.iter().map(|s| s.to_string()).collect()),
            join(self.mode_sizes.iter().map(|s| s.to_string()).collect()),
            join(spatial),
            join(self.local.iter().map(|s| s.to_string()).collect()),
        )
    }
}
