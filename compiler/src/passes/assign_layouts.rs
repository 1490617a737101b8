//! Layout assignment: gives every register tensor value and variable a layout.
//!
//! Expects a verified kernel without layouts. Guarantees that every tensor value and variable
//! has a layout covering its shape with exactly the block's thread count (checked by
//! `ir::verify` with `require_layouts`). The skeleton's rule: every tile gets
//! `Layout::auto(shape, threads)`, so equal shapes get equal layouts and elementwise
//! instructions never move data between threads; only broadcasts, reductions and `dot` do.

//!
//! `view` needs equal bits per thread in its operand's and its result's layout; where they
//! differ the pass reports a diagnostic at the `view`.

use crate::diagnostics::Diagnostic;
use crate::ir::{Kernel, Op};
use crate::layout::Layout;

pub fn assign_layouts(kernel: &mut Kernel) -> Vec<Diagnostic> {
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
    let mut diagnostics = Vec::new();
    for v in &kernel.values {
        let Op::View(a) = v.op else { continue };
        let source = &kernel.values[a.index()];
        let (Some(src_layout), Some(dst_layout)) = (&source.layout, &v.layout) else { continue };
        let (Some(src_dtype), Some(dst_dtype)) = (source.ty.dtype(), v.ty.dtype()) else { continue };
        let src_bits = src_layout.local_size() * src_dtype.bits() as usize;
        let dst_bits = dst_layout.local_size() * dst_dtype.bits() as usize;
        if src_bits != dst_bits || src_layout.replicas != dst_layout.replicas {
            diagnostics.push(
                Diagnostic::error(
                    format!(
                        "`view` needs equal bits per thread: each thread holds {} × {src_dtype} = {src_bits} bits of the operand (layout {src_layout}) but {} × {dst_dtype} = {dst_bits} bits of the result (layout {dst_layout})",
                        src_layout.local_size(),
                        dst_layout.local_size()
                    ),
                    v.span,
                )
                .with_note("give the tile more elements per thread (a larger tile or fewer warps)"),
            );
        }
    }
    diagnostics
}
