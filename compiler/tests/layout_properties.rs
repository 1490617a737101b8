//! Property tests of the layout algebra: the invariants I1–I16, each stated at its test below,
//! 256 cases each.
//!
//! Generators: rank 1–3, each dimension a random run of digits from {1,2,3,4,5,8} ({1,2,4,8} for
//! the GF(2) checks; size-1 digits exercise canonicalization), all digits shuffled into the spatial
//! and local lists, random replication digits from {2,3,4} ({2,4}) inserted into the spatial list,
//! built through the canonicalizing constructor. Semantics are checked against a brute-force
//! evaluator of the *uncanonicalized* parts written here, independent of the library.

use std::collections::{HashMap, HashSet};

use SpatialEntry::{Mode, Replicate};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use tl_compiler::dtype::{read_packed, write_packed};
use tl_compiler::layout::analysis::{
    bank_wavefronts, bank_wavefronts_f2, classify_conversion_brute_force, shared_access_wavefronts,
    shared_access_wavefronts_f2, vector_width_brute_force, row_tile_vector_width,
};
use tl_compiler::layout::{
    ConversionKind, F2Layout, RegisterLayout, SharedLayout, SpatialEntry, Swizzle, classify_conversion, vector_width,
    view_bits,
};

const CASES: u32 = 256;

// ---------------------------------------------------------------------------------------------
// Generators and reference semantics
// ---------------------------------------------------------------------------------------------

/// Uncanonicalized parts of a layout.
#[derive(Clone, Debug)]
struct Spec {
    shape: Vec<usize>,
    dim_modes: Vec<Vec<usize>>,
    spatial: Vec<SpatialEntry>,
    local: Vec<usize>,
}

impl Spec {
    fn build(&self) -> RegisterLayout {
        RegisterLayout::from_modes(&self.shape, &self.dim_modes, &self.spatial, &self.local).expect("valid spec")
    }

    fn modes(&self) -> (Vec<usize>, Vec<usize>) {
        let mut sizes = Vec::new();
        let mut dims = Vec::new();
        for (d, ms) in self.dim_modes.iter().enumerate() {
            for &m in ms {
                sizes.push(m);
                dims.push(d);
            }
        }
        (sizes, dims)
    }

    fn spatial_sizes(&self) -> Vec<usize> {
        let (sizes, _) = self.modes();
        self.spatial
            .iter()
            .map(|e| match *e {
                Mode(m) => sizes[m],
                Replicate(r) => r,
            })
            .collect()
    }

    /// The coordinate of (t, l), straight from the definition.
    fn coord(&self, t: usize, l: usize) -> Vec<usize> {
        let (sizes, dims) = self.modes();
        let mut digits = vec![0; sizes.len()];
        for (e, x) in self.spatial.iter().zip(unravel(t, &self.spatial_sizes())) {
            if let Mode(m) = e {
                digits[*m] = x;
            }
        }
        let lsizes: Vec<usize> = self.local.iter().map(|&m| sizes[m]).collect();
        for (&m, x) in self.local.iter().zip(unravel(l, &lsizes)) {
            digits[m] = x;
        }
        let mut coord = vec![0; self.shape.len()];
        for m in 0..sizes.len() {
            coord[dims[m]] = coord[dims[m]] * sizes[m] + digits[m];
        }
        coord
    }

    fn threads(&self) -> usize {
        self.spatial_sizes().iter().product()
    }

    fn local_size(&self) -> usize {
        let (sizes, _) = self.modes();
        self.local.iter().map(|&m| sizes[m]).product()
    }
}

fn unravel(mut i: usize, sizes: &[usize]) -> Vec<usize> {
    let mut out = vec![0; sizes.len()];
    for (o, &s) in out.iter_mut().zip(sizes).rev() {
        *o = i % s;
        i /= s;
    }
    out
}

fn ravel(c: &[usize], shape: &[usize]) -> usize {
    c.iter().zip(shape).fold(0, |acc, (x, s)| acc * s + x)
}

type Semantics = (Vec<usize>, usize, usize, Vec<((usize, usize), Vec<usize>)>);

fn semantics(l: &RegisterLayout) -> Semantics {
    (l.shape().to_vec(), l.num_threads(), l.local_size(), l.relation())
}

fn spec_semantics(s: &Spec) -> Semantics {
    let mut rel = Vec::new();
    for t in 0..s.threads() {
        for l in 0..s.local_size() {
            rel.push(((t, l), s.coord(t, l)));
        }
    }
    (s.shape.clone(), s.threads(), s.local_size(), rel)
}

#[derive(Clone, Copy, Debug)]
struct Gen {
    pow2: bool,
    max_rank: usize,
    max_elems: usize,
    max_digits: usize,
    max_reps: usize,
}

const MIXED: Gen = Gen { pow2: false, max_rank: 3, max_elems: 1024, max_digits: 6, max_reps: 2 };
const POW2: Gen = Gen { pow2: true, max_rank: 3, max_elems: 1024, max_digits: 6, max_reps: 2 };
const SMALL: Gen = Gen { pow2: false, max_rank: 2, max_elems: 24, max_digits: 3, max_reps: 1 };
const SMALL_POW2: Gen = Gen { pow2: true, max_rank: 2, max_elems: 32, max_digits: 3, max_reps: 1 };

fn spec_strategy(g: Gen) -> impl Strategy<Value = Spec> {
    let digits: Vec<usize> = if g.pow2 { vec![1, 2, 4, 8] } else { vec![1, 2, 3, 4, 5, 8] };
    let reps: Vec<usize> = if g.pow2 { vec![2, 4] } else { vec![2, 3, 4] };
    (1..=g.max_rank, prop::collection::vec((0..3usize, prop::sample::select(digits)), 0..=g.max_digits))
        .prop_flat_map(move |(rank, pairs)| {
            let mut dim_modes = vec![Vec::new(); rank];
            let mut total = 1;
            for (d, s) in pairs {
                if total * s <= g.max_elems {
                    total *= s;
                    dim_modes[d % rank].push(s);
                }
            }
            let n: usize = dim_modes.iter().map(Vec::len).sum();
            let ids: Vec<usize> = (0..n).collect();
            (
                Just(dim_modes),
                Just(ids).prop_shuffle(),
                0..=n,
                prop::collection::vec((0..8usize, prop::sample::select(reps.clone())), 0..=g.max_reps),
            )
        })
        .prop_map(|(dim_modes, ids, split, reps)| {
            let shape = dim_modes.iter().map(|m| m.iter().product()).collect();
            let mut spatial: Vec<SpatialEntry> = ids[..split].iter().map(|&m| Mode(m)).collect();
            for (pos, r) in reps {
                let p = pos % (spatial.len() + 1);
                spatial.insert(p, Replicate(r));
            }
            Spec { shape, dim_modes, spatial, local: ids[split..].to_vec() }
        })
}

fn layout_strategy(g: Gen) -> impl Strategy<Value = RegisterLayout> {
    spec_strategy(g).prop_map(|s| s.build())
}

/// A byte-driven chooser, for structures easier to build imperatively.
struct Choices<'a> {
    bytes: &'a [u8],
    next: usize,
}

impl Choices<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let b = self.bytes[self.next % self.bytes.len()] as usize + self.next / self.bytes.len();
        self.next += 1;
        if n == 0 { 0 } else { b % n }
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.pick(i + 1);
            v.swap(i, j);
        }
    }
}

fn prime_factors(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut p = 2;
    while n > 1 {
        while n.is_multiple_of(p) {
            out.push(p);
            n /= p;
        }
        p += 1;
    }
    out
}

/// A layout of `shape` over exactly `threads` (a power of two) threads: prime digits per dim,
/// some 2s spatial, the rest of the threads as replication; orders from `spatial_bytes` and
/// `local_bytes` (the same `spatial_bytes` give the same thread structure).
fn layout_with_threads(shape: &[usize], threads: usize, spatial_bytes: &[u8], local_bytes: &[u8]) -> RegisterLayout {
    let mut c = Choices { bytes: spatial_bytes, next: 0 };
    let mut dim_modes = Vec::new();
    for &s in shape {
        let mut f = prime_factors(s);
        c.shuffle(&mut f);
        dim_modes.push(f);
    }
    let sizes: Vec<usize> = dim_modes.iter().flatten().copied().collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    c.shuffle(&mut order);
    let mut spatial = Vec::new();
    let mut local = Vec::new();
    let mut product = 1;
    for m in order {
        if threads.is_multiple_of(product * sizes[m]) && c.pick(3) != 0 {
            product *= sizes[m];
            spatial.push(Mode(m));
        } else {
            local.push(m);
        }
    }
    let pos = c.pick(spatial.len() + 1);
    spatial.insert(pos, Replicate(threads / product));
    let mut lc = Choices { bytes: local_bytes, next: 0 };
    lc.shuffle(&mut local);
    RegisterLayout::from_modes(shape, &dim_modes, &spatial, &local).unwrap()
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 16)
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(CASES)
}

// ---------------------------------------------------------------------------------------------
// I1–I8: the mode representation
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// I1: modes multiply to the shape, σ ∪ λ partitions the modes, the canonical form has no
    /// size-1 modes, no mergeable pairs and no adjacent replication, canon is idempotent, and
    /// canonicalization preserves the map.
    #[test]
    fn i1_well_formed(spec in spec_strategy(MIXED)) {
        let l = spec.build();
        prop_assert_eq!(semantics(&l), spec_semantics(&spec));
        for (d, modes) in l.dim_modes().iter().enumerate() {
            prop_assert_eq!(modes.iter().product::<usize>(), l.shape()[d]);
        }
        let n = l.mode_shape().len();
        let mut count = vec![0; n];
        let mut slot = vec![(0, 0); n];
        for (p, e) in l.spatial_modes().iter().enumerate() {
            match *e {
                Mode(m) => { count[m] += 1; slot[m] = (0, p); }
                Replicate(r) => prop_assert!(r > 1),
            }
        }
        for (p, &m) in l.local_modes().iter().enumerate() {
            count[m] += 1;
            slot[m] = (1, p);
        }
        prop_assert!(count.iter().all(|&c| c == 1));
        prop_assert!(l.mode_shape().iter().all(|&s| s > 1));
        for w in l.spatial_modes().windows(2) {
            prop_assert!(!matches!((w[0], w[1]), (Replicate(_), Replicate(_))));
        }
        for m in 0..n.saturating_sub(1) {
            let mergeable = l.mode_dims()[m] == l.mode_dims()[m + 1]
                && slot[m].0 == slot[m + 1].0 && slot[m + 1].1 == slot[m].1 + 1;
            prop_assert!(!mergeable, "{}", l);
        }
        let again = RegisterLayout::from_modes(l.shape(), &l.dim_modes(), l.spatial_modes(), l.local_modes()).unwrap();
        prop_assert_eq!(again, l);
    }

    /// I2: (t, l) -> c is a function into the shape; every c has exactly `replication()`
    /// preimages sharing one local index; T * L = R * |shape|; `owners` and `local_of` agree.
    #[test]
    fn i2_function_and_uniform_replication(l in layout_strategy(MIXED)) {
        let r = l.replication();
        prop_assert_eq!(l.num_threads() * l.local_size(), r * l.num_elements());
        let mut pre: HashMap<Vec<usize>, Vec<(usize, usize)>> = HashMap::new();
        for ((t, i), c) in l.relation() {
            prop_assert!(c.iter().zip(l.shape()).all(|(x, s)| x < s));
            pre.entry(c).or_default().push((t, i));
        }
        prop_assert_eq!(pre.len(), l.num_elements());
        for (c, owners) in pre {
            prop_assert_eq!(owners.len(), r);
            prop_assert!(owners.iter().all(|o| o.1 == owners[0].1));
            prop_assert_eq!(l.local_of(&c), Some(owners[0].1));
            let copies: HashSet<usize> = owners.iter().map(|o| l.replica_index(o.0).unwrap()).collect();
            prop_assert_eq!(copies.len(), r);
            prop_assert_eq!(l.owners(&c), owners);
        }
        prop_assert_eq!(l.coord(l.num_threads(), 0), None);
        prop_assert!(l.owners(&vec![usize::MAX; l.rank()]).is_empty());
    }

    /// I3 (refinement): splitting modes and replication digits into adjacent pieces and adding
    /// size-1 modes or replication never changes the canonical form.
    #[test]
    fn i3_refinements_canonicalize_equal(spec in spec_strategy(MIXED), choice_bytes in bytes()) {
        let mut c = Choices { bytes: &choice_bytes, next: 0 };
        let (sizes, dims) = spec.modes();
        // Refined modes: each old mode becomes a run of new modes (hi first), plus inserted 1s.
        let mut new_dim_modes: Vec<Vec<usize>> = vec![Vec::new(); spec.shape.len()];
        let mut pieces: Vec<Vec<usize>> = Vec::new(); // old mode -> new ids
        let mut extra_ones: Vec<usize> = Vec::new();
        let mut next_id = 0;
        // New ids must be numbered dim by dim, so build per dim and renumber at the end.
        let mut per_dim: Vec<Vec<(Option<usize>, usize)>> = vec![Vec::new(); spec.shape.len()];
        for m in 0..sizes.len() {
            let s = sizes[m];
            let divisors: Vec<usize> = (1..=s).filter(|d| s.is_multiple_of(*d)).collect();
            let hi = divisors[c.pick(divisors.len())];
            let mut run = vec![hi, s / hi];
            if c.pick(4) == 0 { run.insert(c.pick(3), 1); }
            for x in run {
                per_dim[dims[m]].push((Some(m), x));
            }
        }
        for (d, run) in per_dim.iter_mut().enumerate() {
            if c.pick(4) == 0 {
                let at = c.pick(run.len() + 1);
                run.insert(at, (None, 1));
            }
            let _ = d;
        }
        pieces.resize(sizes.len(), Vec::new());
        for (d, run) in per_dim.iter().enumerate() {
            for &(old, size) in run {
                new_dim_modes[d].push(size);
                match old {
                    Some(m) => pieces[m].push(next_id),
                    None => extra_ones.push(next_id),
                }
                next_id += 1;
            }
        }
        let mut spatial = Vec::new();
        for e in &spec.spatial {
            match *e {
                Mode(m) => spatial.extend(pieces[m].iter().map(|&i| Mode(i))),
                Replicate(r) => {
                    let divisors: Vec<usize> = (1..=r).filter(|d| r.is_multiple_of(*d)).collect();
                    let hi = divisors[c.pick(divisors.len())];
                    spatial.push(Replicate(hi));
                    spatial.push(Replicate(r / hi));
                }
            }
        }
        if c.pick(3) == 0 {
            let at = c.pick(spatial.len() + 1);
            spatial.insert(at, Replicate(1));
        }
        let mut local: Vec<usize> = spec.local.iter().flat_map(|&m| pieces[m].clone()).collect();
        for one in extra_ones {
            if c.pick(2) == 0 {
                let at = c.pick(local.len() + 1);
                local.insert(at, one);
            } else {
                let at = c.pick(spatial.len() + 1);
                spatial.insert(at, Mode(one));
            }
        }
        let refined = Spec { shape: spec.shape.clone(), dim_modes: new_dim_modes, spatial, local };
        prop_assert_eq!(spec_semantics(&refined), spec_semantics(&spec));
        prop_assert_eq!(refined.build(), spec.build());
    }

    /// I3 (pairs): in a small space where equal maps are common, equal relations ⇔ equal
    /// canonical forms (and equal hashes).
    #[test]
    fn i3_semantic_equality_of_pairs(a in spec_strategy(SMALL), b in spec_strategy(SMALL)) {
        let (la, lb) = (a.build(), b.build());
        prop_assert_eq!(spec_semantics(&a) == spec_semantics(&b), la == lb, "{} {}", la, lb);
    }

    /// I4: Rel(A*B) = {((t_a T_B + t_b, l_a L_B + l_b), c_a ⊙ S_B + c_b)}.
    #[test]
    fn i4_product_semantics(a in layout_strategy(SMALL), b in layout_strategy(SMALL)) {
        let p = (&a * &b).unwrap();
        let rank = a.rank().max(b.rank());
        let (a, b) = (a.padded_to_rank(rank), b.padded_to_rank(rank));
        prop_assert_eq!(p.num_threads(), a.num_threads() * b.num_threads());
        prop_assert_eq!(p.local_size(), a.local_size() * b.local_size());
        for t in 0..p.num_threads() {
            for l in 0..p.local_size() {
                let ca = a.coord(t / b.num_threads(), l / b.local_size()).unwrap();
                let cb = b.coord(t % b.num_threads(), l % b.local_size()).unwrap();
                let want: Vec<usize> = (0..rank).map(|d| ca[d] * b.shape()[d] + cb[d]).collect();
                prop_assert_eq!(p.coord(t, l).unwrap(), want);
            }
        }
    }

    /// I5: the product is associative with unit `local(1, .., 1)`.
    #[test]
    fn i5_monoid(a in layout_strategy(SMALL), b in layout_strategy(SMALL), c in layout_strategy(SMALL)) {
        let left = (&(&a * &b).unwrap() * &c).unwrap();
        let right = (&a * &(&b * &c).unwrap()).unwrap();
        prop_assert_eq!(left, right);
        let u = RegisterLayout::unit(a.rank());
        prop_assert_eq!((&u * &a).unwrap(), a.clone());
        prop_assert_eq!((&a * &u).unwrap(), a.clone());
        prop_assert_eq!(RegisterLayout::local(&vec![1; a.rank()]).unwrap(), u);
    }

    /// I6: divide_right(A*B, B) = A, divide_left(A*B, A) = B, and any quotient multiplies back.
    #[test]
    fn i6_division_round_trips(a in layout_strategy(SMALL), b in layout_strategy(SMALL), x in layout_strategy(SMALL)) {
        let rank = a.rank().max(b.rank());
        let p = (&a * &b).unwrap();
        prop_assert_eq!(p.divide_right(&b), Some(a.padded_to_rank(rank)));
        prop_assert_eq!(p.divide_left(&a), Some(b.padded_to_rank(rank)));
        if let Some(q) = x.divide_right(&b) {
            prop_assert_eq!((&q * &b).unwrap(), x.clone());
        }
        if let Some(q) = x.divide_left(&a) {
            prop_assert_eq!((&a * &q).unwrap(), x.clone());
        }
        // Dividing by a layout's own suffix factor of a product of three.
        let c = (&p * &x).unwrap();
        let bx = (&b * &x).unwrap();
        prop_assert_eq!(c.divide_right(&bx), Some(a.padded_to_rank(c.rank())));
    }

    /// I7: reshape relabels coordinates through the row-major index and undoes itself; reshaping
    /// to one dimension per mode always works; permute, squeeze/unsqueeze and concat have their
    /// bookkeeping semantics.
    #[test]
    fn i7_reshape_permute(l in layout_strategy(MIXED), choice_bytes in bytes(), first in layout_strategy(SMALL), other in layout_strategy(SMALL)) {
        let mut c = Choices { bytes: &choice_bytes, next: 0 };
        // A random shape of the same size.
        let mut factors = prime_factors(l.num_elements());
        c.shuffle(&mut factors);
        let rank = 1 + c.pick(3);
        let mut shape = vec![1; rank];
        for f in factors { shape[c.pick(rank)] *= f; }
        let check = |r: &RegisterLayout, shape: &[usize]| -> Result<(), TestCaseError> {
            prop_assert_eq!(r.shape(), shape);
            prop_assert_eq!((r.num_threads(), r.local_size()), (l.num_threads(), l.local_size()));
            for ((t, i), coord) in l.relation() {
                let want = unravel(ravel(&coord, l.shape()), shape);
                prop_assert_eq!(r.coord(t, i).unwrap(), want);
            }
            prop_assert_eq!(r.reshape(l.shape()).unwrap(), l.clone());
            Ok(())
        };
        if let Ok(r) = l.reshape(&shape) {
            check(&r, &shape)?;
        }
        let modes = l.mode_shape().to_vec();
        check(&l.reshape(&modes).unwrap(), &modes)?;
        check(&l.flatten().unwrap(), &[l.num_elements()])?;

        let mut perm: Vec<usize> = (0..l.rank()).collect();
        c.shuffle(&mut perm);
        let p = l.permute(&perm).unwrap();
        let mut inverse = vec![0; perm.len()];
        for (j, &d) in perm.iter().enumerate() { inverse[d] = j; }
        prop_assert_eq!(p.permute(&inverse).unwrap(), l.clone());
        for ((t, i), coord) in l.relation() {
            let want: Vec<usize> = perm.iter().map(|&d| coord[d]).collect();
            prop_assert_eq!(p.coord(t, i).unwrap(), want);
        }

        let at = c.pick(l.rank() + 1);
        let u = l.unsqueeze(&[at]).unwrap();
        prop_assert_eq!(u.shape()[at], 1);
        prop_assert_eq!(u.squeeze(&[at]).unwrap(), l.clone());

        let cat = first.concat(&other).unwrap();
        prop_assert_eq!(cat.num_threads(), first.num_threads() * other.num_threads());
        for t in 0..cat.num_threads() {
            for i in 0..cat.local_size() {
                let mut want = first.coord(t / other.num_threads(), i / other.local_size()).unwrap();
                want.extend(other.coord(t % other.num_threads(), i % other.local_size()).unwrap());
                prop_assert_eq!(cat.coord(t, i).unwrap(), want);
            }
        }
    }

    /// I8: reduce projects the relation onto the kept dims: the owners of a kept coordinate are
    /// the union of the owners of its preimages; replication grows by the reduced spatial digits,
    /// the local size shrinks by the reduced local digits.
    #[test]
    fn i8_reduce(spec in spec_strategy(MIXED), mask in prop::collection::vec(any::<bool>(), 3)) {
        let l = spec.build();
        let dims: Vec<usize> = (0..l.rank()).filter(|&d| mask[d]).collect();
        let r = l.reduce(&dims).unwrap();
        let kept: Vec<usize> = (0..l.rank()).filter(|d| !mask[*d]).collect();
        let mut owners: HashMap<Vec<usize>, HashSet<usize>> = HashMap::new();
        for ((t, _), c) in l.relation() {
            owners.entry(kept.iter().map(|&d| c[d]).collect()).or_default().insert(t);
        }
        prop_assert_eq!(owners.len(), r.num_elements());
        for (c, threads) in owners {
            let got: HashSet<usize> = r.owners(&c).into_iter().map(|o| o.0).collect();
            prop_assert_eq!(got, threads);
        }
        let reduced = |spatial: bool| -> usize {
            let sizes = l.mode_shape();
            let in_reduced = |m: usize| mask[l.mode_dims()[m]];
            if spatial {
                l.spatial_modes().iter().map(|e| match *e { Mode(m) if in_reduced(m) => sizes[m], _ => 1 }).product()
            } else {
                l.local_modes().iter().filter(|&&m| in_reduced(m)).map(|&m| sizes[m]).product()
            }
        };
        prop_assert_eq!(r.replication(), l.replication() * reduced(true));
        prop_assert_eq!(r.local_size() * reduced(false), l.local_size());
        prop_assert_eq!(r.num_threads(), l.num_threads());
        let keep = l.reduce_keep_dims(&dims).unwrap();
        prop_assert_eq!(keep.squeeze(&dims).unwrap(), r);
    }
}

/// I3 (exhaustive): every layout with at most 8 elements, rank ≤ 2, at most one replication
/// digit of 2, in every mode split and digit order: equal maps ⇔ equal canonical forms.
#[test]
fn i3_exhaustive_small_layouts() {
    fn factorizations(n: usize) -> Vec<Vec<usize>> {
        if n == 1 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for f in 2..=n {
            if n.is_multiple_of(f) {
                for mut rest in factorizations(n / f) {
                    rest.insert(0, f);
                    out.push(rest);
                }
            }
        }
        out
    }
    fn permutations(v: &[usize]) -> Vec<Vec<usize>> {
        if v.is_empty() {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for i in 0..v.len() {
            let mut rest = v.to_vec();
            let x = rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, x);
                out.push(p);
            }
        }
        out
    }
    let extents = [1usize, 2, 3, 4, 6, 8];
    let mut shapes: Vec<Vec<usize>> = extents.iter().map(|&e| vec![e]).collect();
    for &a in &extents {
        for &b in &extents {
            if a * b <= 8 {
                shapes.push(vec![a, b]);
            }
        }
    }
    let mut by_layout: HashMap<RegisterLayout, Semantics> = HashMap::new();
    let mut by_semantics: HashMap<Semantics, RegisterLayout> = HashMap::new();
    let mut count = 0;
    for shape in &shapes {
        let per_dim: Vec<Vec<Vec<usize>>> = shape.iter().map(|&s| factorizations(s)).collect();
        let combos: Vec<Vec<Vec<usize>>> = if shape.len() == 1 {
            per_dim[0].iter().map(|f| vec![f.clone()]).collect()
        } else {
            per_dim[0].iter().flat_map(|f0| per_dim[1].iter().map(move |f1| vec![f0.clone(), f1.clone()])).collect()
        };
        for dim_modes in combos {
            let n: usize = dim_modes.iter().map(Vec::len).sum();
            for subset in 0..1usize << n {
                let sp: Vec<usize> = (0..n).filter(|m| subset >> m & 1 == 1).collect();
                let lo: Vec<usize> = (0..n).filter(|m| subset >> m & 1 == 0).collect();
                for sp_order in permutations(&sp) {
                    for lo_order in permutations(&lo) {
                        for rep in 0..=sp_order.len() + 1 {
                            let mut spatial: Vec<SpatialEntry> = sp_order.iter().map(|&m| Mode(m)).collect();
                            if rep <= sp_order.len() {
                                spatial.insert(rep, Replicate(2));
                            }
                            let spec = Spec {
                                shape: shape.clone(),
                                dim_modes: dim_modes.clone(),
                                spatial,
                                local: lo_order.clone(),
                            };
                            let l = spec.build();
                            let sem = spec_semantics(&spec);
                            assert_eq!(semantics(&l), sem, "{spec:?}");
                            if let Some(prev) = by_layout.insert(l.clone(), sem.clone()) {
                                assert_eq!(prev, sem, "{l} stands for two maps");
                            }
                            if let Some(prev) = by_semantics.insert(sem, l.clone()) {
                                assert_eq!(prev, l, "one map, two canonical forms");
                            }
                            count += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(count > 500, "{count}");
}

/// I5: the product is not commutative, and the generator finds that out.
#[test]
fn i5_product_is_not_commutative() {
    let mut runner = TestRunner::new(Config::with_cases(CASES));
    let strategy = (layout_strategy(SMALL), layout_strategy(SMALL));
    let mut found = false;
    for _ in 0..CASES {
        let (a, b) = strategy.new_tree(&mut runner).unwrap().current();
        if (&a * &b).unwrap() != (&b * &a).unwrap() {
            found = true;
            break;
        }
    }
    assert!(found, "no non-commuting pair generated");
}

// ---------------------------------------------------------------------------------------------
// I9–I11: GF(2)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Matrix {
    n: u32,
    m: u32,
    columns: Vec<u64>,
}

fn matrix(max_in: u32, max_out: u32) -> impl Strategy<Value = Matrix> {
    (0..=max_in, 0..=max_out).prop_flat_map(|(n, m)| {
        prop::collection::vec(0..(1u64 << m), n as usize).prop_map(move |columns| Matrix { n, m, columns })
    })
}

fn f2(mat: &Matrix, input: &str, output: &str) -> F2Layout {
    F2Layout::new(vec![(input.into(), mat.n)], vec![(output.into(), mat.m)], mat.columns.clone()).unwrap()
}

fn image(l: &F2Layout) -> HashSet<u64> {
    (0..1u64 << l.in_bits()).map(|x| l.apply(x)).collect()
}

proptest! {
    #![proptest_config(config())]

    /// I9: the GF(2) form agrees with the layout, turns products into Triton products (operands
    /// swapped) and right division into `divide_left`.
    #[test]
    fn i9_f2_agreement(a in layout_strategy(SMALL_POW2), b in layout_strategy(SMALL_POW2), l in layout_strategy(POW2)) {
        let f = l.to_f2().unwrap();
        let local_bits = l.local_size().trailing_zeros();
        for ((t, i), c) in l.relation() {
            prop_assert_eq!(f.apply(((t as u64) << local_bits) | i as u64), ravel(&c, l.shape()) as u64);
        }
        prop_assert_eq!(f.kernel_basis().len() as u32, l.replication().trailing_zeros());
        let rank = a.rank().max(b.rank());
        let (a, b) = (a.padded_to_rank(rank), b.padded_to_rank(rank));
        let p = (&a * &b).unwrap();
        let (fa, fb, fp) = (a.to_f2().unwrap(), b.to_f2().unwrap(), p.to_f2().unwrap());
        prop_assert_eq!(F2Layout::product(&fb, &fa).unwrap(), fp.clone());
        prop_assert_eq!(p.divide_right(&b).unwrap().to_f2().unwrap(), fp.divide_left(&fb).unwrap());
        prop_assert_eq!(p.divide_left(&a).unwrap().to_f2().unwrap(), fp.divide_right(&fa).unwrap());
    }

    /// I10: compose, invert, pseudo-invert, invert_and_compose, rank, kernel and division of
    /// linear maps, against brute force.
    #[test]
    fn i10_f2_algebra(a in matrix(6, 6), b in matrix(6, 6), w in matrix(6, 6)) {
        let la = f2(&a, "x", "y");
        let img = image(&la);
        prop_assert_eq!(1usize << la.rank(), img.len());
        prop_assert_eq!(la.is_injective(), img.len() == 1 << a.n);
        prop_assert_eq!(la.is_surjective(), img.len() == 1 << a.m);
        prop_assert_eq!(la.kernel_basis().len() as u32, a.n - la.rank());
        for k in la.kernel_basis() { prop_assert_eq!(la.apply(k), 0); }
        for y in 0..1u64 << a.m { prop_assert_eq!(la.image_contains(y), img.contains(&y)); }
        for (j, c) in a.columns.iter().enumerate() {
            prop_assert_eq!(la.free_input_mask() >> j & 1 == 1, *c == 0);
        }
        let pinv = la.pseudo_invert();
        for &y in &img { prop_assert_eq!(la.apply(pinv.apply(y)), y); }
        match la.invert() {
            Some(inv) => {
                prop_assert!(a.n == a.m && la.is_injective());
                for x in 0..1u64 << a.n { prop_assert_eq!(inv.apply(la.apply(x)), x); }
            }
            None => prop_assert!(a.n != a.m || !la.is_injective()),
        }
        // compose: y -> z.
        let next = F2Layout::new(vec![("y".into(), a.m)], vec![("z".into(), b.m)],
            (0..a.m).map(|j| b.columns.get(j as usize).copied().unwrap_or(0)).collect()).unwrap();
        let comp = la.compose(&next).unwrap();
        for x in 0..1u64 << a.n { prop_assert_eq!(comp.apply(x), next.apply(la.apply(x))); }
        // invert_and_compose: C with other(C(x)) = self(x) exists iff im(self) ⊆ im(other).
        let other = F2Layout::new(vec![("w".into(), w.n)], vec![("y".into(), a.m)],
            w.columns.iter().map(|c| c & ((1u64 << a.m) - 1)).collect()).unwrap();
        let other_img = image(&other);
        match la.invert_and_compose(&other) {
            Some(c) => for x in 0..1u64 << a.n { prop_assert_eq!(other.apply(c.apply(x)), la.apply(x)); },
            None => prop_assert!(!img.is_subset(&other_img)),
        }
        // Product and its divisions.
        let lb = f2(&b, "x", "y");
        let p = F2Layout::product(&lb, &la).unwrap();
        prop_assert_eq!(p.divide_left(&lb), Some(la.clone()));
        prop_assert_eq!(p.divide_right(&la), Some(lb.clone()));
        for x in 0..1u64 << p.in_bits() {
            let (xb, xa) = (x & ((1 << b.n) - 1), x >> b.n);
            prop_assert_eq!(p.apply(x), lb.apply(xb) | la.apply(xa) << b.m);
        }
    }

    /// I11: swizzles are involutions, keep the low `base` bits and the bits from `span` up,
    /// permute every aligned 2^span block, and are linear (their columns reproduce them).
    #[test]
    fn i11_swizzle(bits in 0u32..=3, base in 0u32..=4, extra in 0u32..=3, xs in prop::collection::vec(any::<u64>(), 32)) {
        let sw = Swizzle::new(bits, base, bits + extra).unwrap();
        let span = sw.span();
        for &x in &xs {
            prop_assert_eq!(sw.apply(sw.apply(x)), x);
            prop_assert_eq!(sw.apply(x) & ((1 << base) - 1), x & ((1 << base) - 1));
            prop_assert_eq!(sw.apply(x) >> span, x >> span);
            for &y in &xs { prop_assert_eq!(sw.apply(x ^ y), sw.apply(x) ^ sw.apply(y)); }
            let columns = sw.columns(64);
            let via_columns = (0..64).filter(|j| x >> j & 1 == 1).fold(0, |acc, j| acc ^ columns[j]);
            prop_assert_eq!(via_columns, sw.apply(x));
        }
        for n in span..=span + 1 {
            let image: HashSet<u64> = (0..1u64 << n).map(|x| sw.apply(x)).collect();
            prop_assert!(image.len() == 1 << n && image.iter().all(|&y| y < 1 << n));
        }
        prop_assert!(Swizzle::new(bits + 1, base, bits).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// I12: shared layouts
// ---------------------------------------------------------------------------------------------

/// A random injective shared layout: random digits per dim, strides from a random order of the
/// digits (fastest first) with optional padding factors, and an optional swizzle whose span fits
/// the element count.
fn shared_strategy(pow2: bool) -> impl Strategy<Value = (SharedLayout, bool)> {
    (spec_strategy(if pow2 { POW2 } else { MIXED }), bytes()).prop_map(move |(spec, choice_bytes)| {
        let mut c = Choices { bytes: &choice_bytes, next: 0 };
        let (sizes, dims) = spec.modes();
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        c.shuffle(&mut order);
        let padded = c.pick(3) == 0;
        let mut strides = vec![0; sizes.len()];
        let mut acc = 1;
        for &m in &order {
            strides[m] = acc;
            let pad = if padded { [1, 1, 2, 3][c.pick(4)] } else { 1 };
            acc *= sizes[m] * pad;
        }
        let mut dim_strides: Vec<Vec<usize>> = vec![Vec::new(); spec.shape.len()];
        for m in 0..sizes.len() {
            dim_strides[dims[m]].push(strides[m]);
        }
        let total: usize = spec.shape.iter().product();
        let log = usize::BITS - 1 - total.leading_zeros();
        let swizzle = if c.pick(2) == 0 && log >= 1 {
            let bits = c.pick(3) as u32;
            let shift = bits + c.pick(2) as u32;
            let room = log.saturating_sub(bits + shift);
            Swizzle::new(bits, c.pick(room as usize + 1) as u32, shift).ok().filter(|s| s.span() <= log)
        } else {
            None
        };
        let l = SharedLayout::from_modes(&spec.shape, &spec.dim_modes, &dim_strides, swizzle).unwrap();
        (l, padded)
    })
}

fn all_coords(shape: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = shape.iter().product();
    (0..n).map(|i| unravel(i, shape)).collect()
}

proptest! {
    #![proptest_config(config())]

    /// I12: offsets are injective on the shape, below `storage_size()` (below `count_size()`
    /// unswizzled, and within the next power of two when swizzled), and a compact power-of-two
    /// layout's GF(2) form agrees with its offsets.
    #[test]
    fn i12_shared_injectivity((l, padded) in shared_strategy(false), (p, p_padded) in shared_strategy(true)) {
        for (l, padded) in [(l, padded), (p, p_padded)] {
            prop_assert!(l.is_injective(), "{}", l);
            let mut seen = HashSet::new();
            for c in all_coords(l.shape()) {
                let o = l.offset(&c).unwrap();
                prop_assert!(o < l.storage_size());
                prop_assert!(l.offset_unswizzled(&c).unwrap() < l.count_size());
                prop_assert!(seen.insert(o));
            }
            if let Some(sw) = l.swizzle() {
                let count = l.count_size();
                if sw.span() <= usize::BITS - 1 - count.leading_zeros() {
                    prop_assert!(l.storage_size() <= count.next_power_of_two());
                }
            }
            if !padded {
                if let Ok(f) = l.to_f2() {
                    for c in all_coords(l.shape()) {
                        prop_assert_eq!(f.apply(ravel(&c, l.shape()) as u64), l.offset(&c).unwrap() as u64);
                    }
                } else {
                    prop_assert!(!l.shape().iter().chain(l.mode_shape()).all(|s| s.is_power_of_two()));
                }
            }
        }
    }
}

#[test]
fn i12_overlapping_strides_are_not_injective() {
    let l = SharedLayout::from_dims(&[2, 2], &[1, 1]).unwrap();
    assert!(!l.is_injective());
    assert!(l.to_f2().is_err());
}

// ---------------------------------------------------------------------------------------------
// I13–I16: analyses
// ---------------------------------------------------------------------------------------------

/// The vector-width contract checked directly.
fn vector_ok(reg: &RegisterLayout, mem: &SharedLayout, bits: u32, v: usize) -> bool {
    let bytes_ok =
        (v * bits as usize).is_multiple_of(8) && (v * bits as usize / 8).is_power_of_two() && v * bits as usize <= 128;
    if !bytes_ok || !reg.local_size().is_multiple_of(v) {
        return false;
    }
    (0..reg.num_threads()).all(|t| {
        (0..reg.local_size()).step_by(v).all(|k| {
            let start = mem.offset(&reg.coord(t, k).unwrap()).unwrap();
            start.is_multiple_of(v) && (0..v).all(|i| mem.offset(&reg.coord(t, k + i).unwrap()).unwrap() == start + i)
        })
    })
}

fn memory_for(reg: &RegisterLayout, pick: usize, elem_bytes: usize) -> SharedLayout {
    match pick {
        0 => SharedLayout::row_major(reg.shape()).unwrap(),
        1 => SharedLayout::column_major(reg.shape()).unwrap(),
        _ => SharedLayout::row_major_swizzled(reg.shape(), elem_bytes).unwrap(),
    }
}

proptest! {
    #![proptest_config(config())]

    /// I13: the vector width satisfies the contract and twice it (or any larger power of two
    /// within 16 bytes) does not; GF(2) and brute force agree.
    #[test]
    fn i13_vector_width(mixed in layout_strategy(MIXED), pow2 in layout_strategy(POW2),
                        pick in 0usize..3, bits_pick in 0usize..4) {
        let bits = [4u32, 8, 16, 32][bits_pick];
        for reg in [mixed, pow2] {
            let mem = memory_for(&reg, pick, (bits as usize / 8).max(1));
            let v = vector_width(&reg, &mem, bits, 16).unwrap();
            prop_assert!(v == 1 || vector_ok(&reg, &mem, bits, v), "{} v={}", reg, v);
            let mut w = v * 2;
            while w * bits as usize <= 128 {
                prop_assert!(!vector_ok(&reg, &mem, bits, w), "{} {} v={} w={}", reg, mem, v, w);
                w *= 2;
            }
            prop_assert_eq!(vector_width_brute_force(&reg, &mem, bits, 16).unwrap(), v);
        }
    }

    /// I13b: the vector width of a tile of a global tensor with unknown row strides is the
    /// largest power of two `v` (a power-of-two number of whole bytes, at most 16) such that
    /// every thread's groups of `v` consecutive local indices are `v` consecutive columns of one
    /// row, the first a multiple of `v`: stated here on coordinates alone.
    #[test]
    fn i13b_row_tile_vector_width(mixed in layout_strategy(MIXED), pow2 in layout_strategy(POW2), bits_pick in 0usize..5) {
        let bits = [1u32, 4, 8, 16, 32][bits_pick];
        for reg in [mixed, pow2] {
            let last = reg.rank() - 1;
            let local = reg.local_size();
            let works = |v: usize| {
                let b = v * bits as usize;
                local.is_multiple_of(v) && b.is_multiple_of(8) && (b / 8).is_power_of_two() && b / 8 <= 16
                    && (0..reg.num_threads()).all(|t| (0..local / v).all(|g| {
                        let first = reg.coord(t, g * v).unwrap();
                        first[last] % v == 0 && (1..v).all(|j| {
                            let c = reg.coord(t, g * v + j).unwrap();
                            c[last] == first[last] + j && (0..last).all(|d| c[d] == first[d])
                        })
                    }))
            };
            let mut want = 1;
            let mut v = 2;
            while v * bits as usize <= 128 {
                if works(v) { want = v; }
                v *= 2;
            }
            prop_assert_eq!(row_tile_vector_width(&reg, bits, 16).unwrap(), want, "{}", reg);
        }
    }

    /// I14: InThread iff every thread holds (in src) all it needs in dst; IntraWarp iff every
    /// warp does and some thread does not; CrossWarp otherwise. The GF(2) answer (power-of-two
    /// layouts) equals the brute-force one.
    #[test]
    fn i14_conversion_classification(
        extents in prop::collection::vec(prop::sample::select(vec![1usize, 2, 3, 4, 6, 8, 16]), 1..=2),
        pow2_extents in prop::collection::vec(prop::sample::select(vec![1usize, 2, 4, 8, 16]), 1..=2),
        log_threads in 0u32..=7,
        sa in bytes(), la in bytes(), sb in bytes(), lb in bytes(), same_threads in any::<bool>(),
    ) {
        let threads = 1usize << log_threads;
        for shape in [extents, pow2_extents] {
            let src = layout_with_threads(&shape, threads, &sa, &la);
            let dst = layout_with_threads(&shape, threads, if same_threads { &sa } else { &sb }, &lb);
            let holds = |group: &dyn Fn(usize) -> usize| {
                let mut have = HashSet::new();
                for ((t, _), c) in src.relation() { have.insert((group(t), c)); }
                dst.relation().into_iter().all(|((t, _), c)| have.contains(&(group(t), c)))
            };
            let want = if holds(&|t| t) {
                ConversionKind::InThread
            } else if holds(&|t| t / 32) {
                ConversionKind::IntraWarp
            } else {
                ConversionKind::CrossWarp
            };
            prop_assert_eq!(classify_conversion(&src, &dst).unwrap(), want, "{} -> {}", src, dst);
            prop_assert_eq!(classify_conversion_brute_force(&src, &dst).unwrap(), want);
            if same_threads {
                prop_assert_eq!(want, ConversionKind::InThread);
            }
        }
    }

    /// I15: the GF(2) wavefront count equals the bank simulation, for random linear lane
    /// patterns and for register layouts accessing (swizzled) shared layouts.
    #[test]
    fn i15_bank_conflicts(
        lane_bits in 0usize..=5, access_pick in 0usize..5, raw in prop::collection::vec(0u64..4096, 5),
        extents in prop::collection::vec(prop::sample::select(vec![1usize, 2, 4, 8, 16, 32, 64]), 1..=2),
        log_threads in 0u32..=7, sa in bytes(), la in bytes(), mem_pick in 0usize..3, elem_pick in 0usize..3,
    ) {
        let access = [1u32, 2, 4, 8, 16][access_pick];
        let columns: Vec<u64> = raw[..lane_bits].iter().map(|c| c & !(access as u64 - 1)).collect();
        let addresses: Vec<u64> = (0..1u64 << lane_bits)
            .map(|x| (0..lane_bits).filter(|j| x >> j & 1 == 1).fold(0, |acc, j| acc ^ columns[j]))
            .collect();
        prop_assert_eq!(bank_wavefronts_f2(&columns, access).unwrap(), bank_wavefronts(&addresses, access).unwrap());

        let elem_bytes = [1usize, 2, 4][elem_pick];
        let reg = layout_with_threads(&extents, 1 << log_threads, &sa, &la);
        let mem = memory_for(&reg, mem_pick, elem_bytes);
        let bits = 8 * elem_bytes as u32;
        let v = vector_width(&reg, &mem, bits, 16).unwrap();
        prop_assert_eq!(
            shared_access_wavefronts_f2(&reg, &mem, bits, v).unwrap(),
            shared_access_wavefronts(&reg, &mem, bits, v).unwrap(),
            "{} {} v={}", reg, mem, v
        );
    }

    /// I16: packing is LSB-first with element i at bit i*b, pack(unpack(bytes)) = bytes, a view
    /// reads exactly the packed bits, and viewing back restores the values.
    #[test]
    fn i16_view_and_bit_packing(
        src_bits in 1u32..=8, dst_pick in 0usize..6, elems in 1usize..=24, threads_log in 0u32..=3,
        seed in prop::collection::vec(any::<u64>(), 192),
    ) {
        let dst_bits = [1u32, 2, 4, 8, 16, 32][dst_pick];
        // Round the element count so that both sides hold whole elements.
        let total_bits = {
            let lcm = |a: usize, b: usize| a / gcd(a, b) * b;
            fn gcd(a: usize, b: usize) -> usize { if b == 0 { a } else { gcd(b, a % b) } }
            let unit = lcm(lcm(src_bits as usize, dst_bits as usize), 8);
            (elems * src_bits as usize).div_ceil(unit) * unit
        };
        let (ls, ld) = (total_bits / src_bits as usize, total_bits / dst_bits as usize);
        let threads = 1usize << threads_log;
        let src = RegisterLayout::spatial(&[threads]).unwrap().with_local(&[ls]).unwrap();
        let dst = RegisterLayout::local(&[ld]).unwrap().with_spatial(&[threads]).unwrap();
        let view = view_bits(&src, src_bits, &dst, dst_bits).unwrap();
        prop_assert_eq!(view.bits_per_thread(), total_bits);
        let mask = |b: u32| if b >= 64 { u64::MAX } else { (1u64 << b) - 1 };
        let values: Vec<u64> = (0..ls).map(|i| seed[i % seed.len()].rotate_left(i as u32) & mask(src_bits)).collect();
        let mut stream = vec![0u8; total_bits / 8];
        for (i, &v) in values.iter().enumerate() {
            write_packed(&mut stream, src_bits, i, v);
        }
        for (i, &v) in values.iter().enumerate() {
            prop_assert_eq!(read_packed(&stream, src_bits, i), v);
            for b in 0..src_bits as usize {
                let bit = i * src_bits as usize + b;
                prop_assert_eq!((stream[bit / 8] >> (bit % 8)) as u64 & 1, v >> b & 1);
            }
        }
        let viewed = view.apply(&values).unwrap();
        for (j, &v) in viewed.iter().enumerate() {
            prop_assert_eq!(v, read_packed(&stream, dst_bits, j));
            prop_assert_eq!(view.source_of(0, j).unwrap().1, j * dst_bits as usize..(j + 1) * dst_bits as usize);
        }
        prop_assert_eq!(view.inverse().apply(&viewed).unwrap(), values);
        // pack(unpack(bytes)) = bytes for arbitrary bytes.
        let random: Vec<u8> = (0..total_bits / 8).map(|i| seed[i % seed.len()] as u8 ^ i as u8).collect();
        let mut repacked = vec![0u8; random.len()];
        for i in 0..ls {
            write_packed(&mut repacked, src_bits, i, read_packed(&random, src_bits, i));
        }
        prop_assert_eq!(repacked, random);
        // Illegal views: different bits per thread or different thread counts.
        prop_assert!(view_bits(&src, src_bits, &dst, dst_bits * 2).is_err());
        let more = RegisterLayout::spatial(&[threads * 2]).unwrap().with_local(&[ls]).unwrap();
        prop_assert!(view_bits(&more, src_bits, &dst, dst_bits).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Robustness: bad input is an error, never a panic
// ---------------------------------------------------------------------------------------------

fn junk_size() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..10, Just(usize::MAX), Just(1usize << 40), any::<usize>()]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn constructors_and_operations_never_panic(
        shape in prop::collection::vec(junk_size(), 0..4),
        dim_modes in prop::collection::vec(prop::collection::vec(junk_size(), 0..3), 0..4),
        spatial in prop::collection::vec(prop_oneof![(0usize..8).prop_map(Mode), junk_size().prop_map(Replicate)], 0..4),
        local in prop::collection::vec(0usize..8, 0..4),
        dims in prop::collection::vec(0usize..5, 0..3),
        swizzle in (0u32..70, 0u32..70, 0u32..70),
        threads in junk_size(),
        bits in 0u32..200,
        l in layout_strategy(SMALL),
    ) {
        let _ = RegisterLayout::from_modes(&shape, &dim_modes, &spatial, &local);
        let _ = RegisterLayout::local(&shape);
        let _ = RegisterLayout::spatial(&shape);
        let _ = RegisterLayout::replicate(&shape, threads);
        let _ = RegisterLayout::auto_local_spatial(&shape, threads);
        let _ = RegisterLayout::spatial_in_order(&shape, &dims);
        let _ = l.reshape(&shape);
        let _ = l.permute(&dims);
        let _ = l.squeeze(&dims);
        let _ = l.unsqueeze(&dims);
        let _ = l.reduce(&dims);
        let _ = l.replicated(threads);
        let _ = l.coord(threads, threads);
        let _ = l.owners(&shape);
        let _ = l.local_of(&shape);
        let _ = l.replica_index(threads);
        let sw = Swizzle::new(swizzle.0, swizzle.1, swizzle.2);
        let _ = sw.clone().map(|s| s.in_bytes(bits));
        let _ = SharedLayout::row_major(&shape);
        let _ = SharedLayout::column_major(&shape);
        let _ = SharedLayout::from_dims(&shape, &local);
        let _ = SharedLayout::row_major_swizzled(&shape, threads);
        let _ = SharedLayout::from_modes(&shape, &dim_modes, &dim_modes, sw.clone().ok());
        if let Ok(s) = SharedLayout::row_major(l.shape()) {
            let _ = vector_width(&l, &s, bits, threads);
            let _ = shared_access_wavefronts(&l, &s, bits, threads.min(64));
            let _ = s.with_swizzle(sw.clone().ok()).is_injective();
            let _ = s.prepend_dim(threads);
            let _ = s.permute(&dims);
        }
        let _ = view_bits(&l, bits, &l, bits);
        let _ = F2Layout::identity("a", "b", bits);
        let _ = F2Layout::new(vec![("a".into(), bits)], vec![("b".into(), bits / 2)], local.iter().map(|&x| x as u64).collect());
    }
}
