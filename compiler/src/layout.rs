//! Register layouts: which thread holds which element of a register tensor.
//!
//! A layout is a Kronecker product of primitive layouts, outermost first:
//! `local(a..)` gives one thread a row-major block of elements, `spatial(a..)` spreads a
//! row-major block over threads. For `h = f * g`,
//! `h(t, i) = f(t / T_g, i / L_g) ⊙ S_g + g(t % T_g, i % L_g)`.
//! A layout may also be *replicated*: `replicas` copies of the whole thread grid hold the same
//! elements (thread `t` is replica `t / spatial_size`).
//!
//! This is the skeleton's layout system (local, spatial and their product); the full algebra
//! (canonical modes, division, reduce, GF(2) views) will replace it behind the same queries.

pub mod analysis;
pub mod error;
pub mod gf2;
pub mod register;
pub mod shared;
pub mod swizzle;
pub mod view;

pub use analysis::{classify_conversion, vector_width, ConversionKind};
pub use error::LayoutError;
pub use gf2::F2Layout;
pub use register::{RegisterLayout, SpatialEntry};
pub use shared::SharedLayout;
pub use swizzle::Swizzle;
pub use view::{view_bits, RegisterView};

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Primitive {
    Local(Vec<usize>),
    Spatial(Vec<usize>),
}

impl Primitive {
    pub fn shape(&self) -> &[usize] {
        match self {
            Primitive::Local(s) | Primitive::Spatial(s) => s,
        }
    }
    fn size(&self) -> usize {
        self.shape().iter().product()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Factors, outermost first. All have the rank of the layout.
    pub factors: Vec<Primitive>,
    /// Copies of the spatial part; thread `t` is replica `t / spatial_size()`.
    pub replicas: usize,
}

/// One term of a coordinate that depends on the thread index:
/// `coord[dim] += ((thread / stride) % extent) * multiplier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadTerm {
    pub dim: usize,
    pub stride: usize,
    pub extent: usize,
    pub multiplier: usize,
}

impl Layout {
    pub fn local(shape: &[usize]) -> Layout {
        Layout { factors: vec![Primitive::Local(shape.to_vec())], replicas: 1 }
    }

    pub fn spatial(shape: &[usize]) -> Layout {
        Layout { factors: vec![Primitive::Spatial(shape.to_vec())], replicas: 1 }
    }

    /// The Kronecker product `self * inner`. Both must have the same rank.
    pub fn product(&self, inner: &Layout) -> Layout {
        assert_eq!(self.rank(), inner.rank(), "layout product needs equal ranks");
        let mut factors = self.factors.clone();
        factors.extend(inner.factors.iter().cloned());
        Layout { factors, replicas: self.replicas * inner.replicas }
    }

    /// The same layout, replicated `r` times over more threads.
    pub fn replicated(&self, r: usize) -> Layout {
        Layout { factors: self.factors.clone(), replicas: self.replicas * r }
    }

    pub fn rank(&self) -> usize {
        self.factors.first().map_or(0, |f| f.shape().len())
    }

    /// The logical tile shape this layout covers.
    pub fn shape(&self) -> Vec<usize> {
        let mut shape = vec![1; self.rank()];
        for f in &self.factors {
            for (d, s) in f.shape().iter().enumerate() {
                shape[d] *= s;
            }
        }
        shape
    }

    /// Threads that hold distinct data (one replica).
    pub fn spatial_size(&self) -> usize {
        self.factors
            .iter()
            .filter(|f| matches!(f, Primitive::Spatial(_)))
            .map(Primitive::size)
            .product()
    }

    pub fn num_threads(&self) -> usize {
        self.spatial_size() * self.replicas
    }

    /// Elements each thread holds.
    pub fn local_size(&self) -> usize {
        self.factors
            .iter()
            .filter(|f| matches!(f, Primitive::Local(_)))
            .map(Primitive::size)
            .product()
    }

    /// Coordinate multiplier of factor `j` in dim `d`: the product of the inner factors' extents.
    fn multiplier(&self, j: usize, d: usize) -> usize {
        self.factors[j + 1..].iter().map(|f| f.shape()[d]).product()
    }

    /// The part of every coordinate contributed by local index `local`.
    pub fn local_coords(&self, local: usize) -> Vec<usize> {
        self.coords_of(local, false)
    }

    /// The thread-dependent terms of every coordinate (see [`ThreadTerm`]).
    pub fn thread_terms(&self) -> Vec<ThreadTerm> {
        let mut terms = Vec::new();
        let mut stride = 1;
        for (j, f) in self.factors.iter().enumerate().rev() {
            let Primitive::Spatial(shape) = f else { continue };
            let mut inner = 1;
            for d in (0..shape.len()).rev() {
                if shape[d] > 1 {
                    terms.push(ThreadTerm {
                        dim: d,
                        stride: stride * inner,
                        extent: shape[d],
                        multiplier: self.multiplier(j, d),
                    });
                }
                inner *= shape[d];
            }
            stride *= inner;
        }
        terms
    }

    fn coords_of(&self, index: usize, spatial: bool) -> Vec<usize> {
        let mut coords = vec![0; self.rank()];
        let mut rest = index;
        for (j, f) in self.factors.iter().enumerate().rev() {
            let shape = match (f, spatial) {
                (Primitive::Spatial(s), true) | (Primitive::Local(s), false) => s,
                _ => continue,
            };
            let size: usize = shape.iter().product();
            let mut part = rest % size;
            rest /= size;
            for d in (0..shape.len()).rev() {
                coords[d] += (part % shape[d]) * self.multiplier(j, d);
                part /= shape[d];
            }
        }
        coords
    }

    /// The logical coordinate held by (thread, local index).
    pub fn coords(&self, thread: usize, local: usize) -> Vec<usize> {
        let t = self.coords_of(thread % self.spatial_size().max(1), true);
        let l = self.coords_of(local, false);
        t.iter().zip(l).map(|(a, b)| a + b).collect()
    }

    /// The default layout of a `shape` tile over `threads` threads: threads go to the innermost
    /// dims first (`gcd` with each extent), each thread keeps the rest as a local block, and
    /// threads left over hold replicas.
    pub fn auto(shape: &[usize], threads: usize) -> Layout {
        let mut spatial = vec![1; shape.len()];
        let mut remaining = threads;
        for d in (0..shape.len()).rev() {
            let g = gcd(remaining, shape[d]);
            spatial[d] = g;
            remaining /= g;
        }
        let local: Vec<usize> = shape.iter().zip(&spatial).map(|(s, t)| s / t).collect();
        Layout::local(&local).product(&Layout::spatial(&spatial)).replicated(remaining)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for factor in &self.factors {
            if factor.shape().iter().all(|&s| s == 1) {
                continue;
            }
            if !first {
                f.write_str(" * ")?;
            }
            first = false;
            let (name, shape) = match factor {
                Primitive::Local(s) => ("local", s),
                Primitive::Spatial(s) => ("spatial", s),
            };
            let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
            write!(f, "{name}({})", dims.join(", "))?;
        }
        if first {
            let ones: Vec<&str> = vec!["1"; self.rank()];
            write!(f, "local({})", ones.join(", "))?;
        }
        if self.replicas > 1 {
            write!(f, " x{}", self.replicas)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mma_accumulator_fragment() {
        // local(2,1).spatial(8,4).local(1,2): the m16n8 accumulator of mma.sync.
        let l = Layout::local(&[2, 1])
            .product(&Layout::spatial(&[8, 4]))
            .product(&Layout::local(&[1, 2]));
        assert_eq!(l.num_threads(), 32);
        assert_eq!(l.local_size(), 4);
        for t in 0..32 {
            for i in 0..4 {
                // PTX ISA: row = groupID + 8 * (i >= 2), col = 2 * threadID_in_group + (i & 1).
                let want = vec![t / 4 + 8 * (i / 2), 2 * (t % 4) + (i % 2)];
                assert_eq!(l.coords(t, i), want, "t={t} i={i}");
            }
        }
    }

    #[test]
    fn thread_terms_agree_with_coords() {
        for (shape, threads) in [(vec![16, 64], 128), (vec![3, 5], 32), (vec![256], 128), (vec![1, 8], 64)] {
            let l = Layout::auto(&shape, threads);
            assert_eq!(l.shape(), shape);
            assert_eq!(l.num_threads(), threads);
            let mut seen = vec![0usize; shape.iter().product()];
            for t in 0..threads {
                for i in 0..l.local_size() {
                    let mut c = l.local_coords(i);
                    for term in l.thread_terms() {
                        c[term.dim] += ((t / term.stride) % term.extent) * term.multiplier;
                    }
                    assert_eq!(c, l.coords(t, i));
                    let flat = c.iter().zip(&shape).fold(0, |acc, (x, s)| acc * s + x);
                    seen[flat] += 1;
                }
            }
            // Every element is held by exactly `replicas` (thread, local) pairs.
            assert!(seen.iter().all(|&n| n == l.replicas), "{shape:?} {l}");
        }
    }
}
