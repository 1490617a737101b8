//! Layout assignment: gives every register tensor value and variable a layout.
//!
//! Expects a verified kernel without layouts. Guarantees that every tensor value and variable
//! has a layout covering its shape with exactly the block's thread count (checked by
//! `ir::verify` with `require_layouts`). The skeleton's rule: every tile gets
//! `Layout::auto(shape, threads)`, so equal shapes get equal layouts and elementwise
//! instructions never move data between threads; only broadcasts, reductions and `dot` do.

use crate::ir::Kernel;
use crate::layout::Layout;

pub fn assign_layouts(kernel: &mut Kernel) {
    let threads = kernel.num_threads();
    for v in &mut kernel.values {
        if let Some(shape) = v.ty.shape() {
            v.layout = Some(Layout::auto(shape, threads));
        }
    }
    for v in &mut kernel.vars {
        if let Some(shape) = v.ty.shape() {
            v.layout = Some(Layout::auto(shape, threads));
        }
    }
}
