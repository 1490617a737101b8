//! Instruction selection: decides how every instruction that moves data between threads does
//! it, and records the choice on the instruction (`ValueData::strategy`, see `ir::plan`).
//!
//! Expects a verified kernel with layouts (after `infer_layouts`). Chooses, first legal option
//! first (the legality rules are `ir::plan`'s, which the plan verifier applies too):
//! * `dot`: tensor cores when `plan::mma_instruction` gives an instruction, each operand read
//!   by `ldmatrix` in place when `plan::reads_in_place` allows it, else taken from its own
//!   registers when its layout is the fragment layout (`plan::reads_registers`), else staged;
//!   otherwise CUDA cores with both operands staged;
//! * reductions: warp shuffles when `plan::shuffle_reduction_fits`, else staged;
//! * `view`, `permute`, `reshape`, `broadcast`: in registers when `plan::in_registers`, else
//!   staged;
//! * `copy_async`: runs of `v` consecutive elements of the last dimension per thread, `v` the
//!   largest power of two with `v · bits ≤ 128` that divides it (one 16-, 8- or 4-byte
//!   `cp.async` per aligned run), or for 3-, 5-, 6- and 7-bit codes the `128 / gcd(bits, 128)`
//!   codes that fill whole 16-byte pieces (several `cp.async` per run) when it divides it; runs
//!   of elements narrower than a byte fill whole bytes (whole rows when nothing else does), so
//!   no two threads write parts of one byte; threads beyond
//!   the tile's runs hold replicas (only the first replica copies). The recorded run is the
//!   longest the layout holds (`plan::contiguous_run`).
//!
//! Guarantees: every such instruction has a strategy that `plan::verify_plan` accepts; nothing
//! else changes. A `copy_async` whose tile cannot be spread over the block's threads is a
//! diagnostic at the copy.

use crate::diagnostics::Diagnostic;
use crate::ir::plan::{self, OperandSource, Strategy};
use crate::ir::{Kernel, Op, ValueId};
use crate::layout::RegisterLayout;
use crate::passes::infer_layouts::{runs_of, widest_run};

pub fn select_instructions(kernel: &mut Kernel) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for i in 0..kernel.values.len() {
        let id = ValueId(i as u32);
        let strategy = match &kernel.value(id).op {
            Op::Dot { a, b, .. } => match plan::mma_instruction(kernel, id) {
                Some(instruction) => {
                    let source = |operand, b_operand: bool| {
                        if plan::reads_in_place(kernel, operand, id, instruction) {
                            OperandSource::InPlace
                        } else if b_operand && plan::reads_registers(kernel, id, instruction) {
                            OperandSource::Registers
                        } else {
                            OperandSource::Staged
                        }
                    };
                    Strategy::Mma { instruction, a: source(*a, false), b: source(*b, true) }
                }
                None => Strategy::Staged,
            },
            Op::Reduce { .. } => {
                if plan::shuffle_reduction_fits(kernel, id) { Strategy::Shuffle } else { Strategy::Staged }
            }
            Op::View(_) | Op::Permute { .. } | Op::Reshape(_) | Op::Broadcast(_) => {
                if plan::in_registers(kernel, id) { Strategy::InRegisters } else { Strategy::Staged }
            }
            Op::CopyAsync { .. } => {
                let threads = kernel.num_threads();
                match plan::copy_tile(kernel, id).and_then(|(tile, bits)| copy_layout(&tile, threads, bits)) {
                    Some((layout, run)) => Strategy::Copy { layout, run },
                    None => {
                        let tile = plan::copy_tile(kernel, id).map(|(tile, bits)| format!(" of {tile:?} ({bits}-bit elements)")).unwrap_or_default();
                        diagnostics.push(Diagnostic::error(
                            format!("this copy's tile{tile} cannot be spread over the block's {threads} threads in runs that fill whole bytes; choose a tile whose elements split into such runs"),
                            kernel.value(id).span,
                        ));
                        continue;
                    }
                }
            }
            _ => continue,
        };
        kernel.values[i].strategy = Some(strategy);
    }
    diagnostics
}

/// The layout that distributes a `copy_async` of a tile of `shape` over `threads` (see the
/// module header), with its run, when `plan::copy_fits` accepts it; `None` otherwise (the
/// runs would leave some thread a part of a byte), which is a diagnostic at the copy.
fn copy_layout(shape: &[usize], threads: usize, bits: usize) -> Option<(RegisterLayout, usize)> {
    let layout = preferred_copy_layout(shape, threads, bits)?;
    let run = plan::contiguous_run(&layout);
    plan::copy_fits(shape, bits, threads, &layout, run).then_some((layout, run))
}

/// The runs of the module header: the widest aligned run, 16-byte pieces for odd code
/// widths, whole rows where a run would not fill whole bytes.
fn preferred_copy_layout(shape: &[usize], threads: usize, bits: usize) -> Option<RegisterLayout> {
    let last = *shape.last()?;
    let mut v = widest_run(shape, bits, |_| true);
    // A code width that is not a power of two fills 16-byte pieces only with runs of
    // 128 / gcd(bits, 128) codes (128 u3 codes in 48 bytes, 64 u6 codes in 48): take those when
    // the rows hold them, so the copy still goes in 16-byte `cp.async`s.
    if bits < 8 && !bits.is_power_of_two() {
        let piece = 128 >> (bits.trailing_zeros());
        if last.is_multiple_of(piece) {
            v = piece;
        }
    }
    if !(v * bits).is_multiple_of(8) {
        v = last;
    }
    runs_of(shape, threads, v)
}
