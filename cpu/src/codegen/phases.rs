//! How a statement list splits into phases: runs of ordinary statements, which every thread
//! executes in turn (one loop over the threads), and the collective statements between them,
//! which need every thread's registers at once.
//!
//! One decision is made here, for both the code generator and the register placement
//! (`residency`), so the two always agree: a butterfly shuffle `dst = shfl.bfly src, mask`
//! with `dst != src` that is followed by a run which does not write `src` is folded into that
//! run. The run then starts, for each thread t, with `dst` = thread (t ^ mask)'s `src` read
//! from the register file: no thread writes `src` during the run, so every thread reads the
//! value each lane had before the shuffle, as the separate copying pass would have given it.
//! A reduction (`shfl; max; shfl; max; ...`) then takes one pass over the threads per step
//! instead of two. A chain of two or more such shuffles with the f32/i32 operations between
//! them is instead a phase of its own, computed a warp at a time in vectors (`butterfly`); the
//! register placement sees its statements as a run whose shuffles are `dst = src`
//! (`shuffle_as_assignment`, as for a folded shuffle).
//!
//! The other decision: the operands of warp instructions that are not registers (`ldmatrix`
//! row offsets, `staged_operands`) are computed at the end of each thread's pass of the run
//! before them, into scratch slots, instead of in a pass of their own, for the collective
//! statements that follow the run until one of them could not take part: an operand that
//! reads memory or may fault (it would move before other threads' statements), one that reads
//! a register an earlier collective statement of the chain writes (it would read the value
//! from before), more operands than scratch slots, control flow or an in-place shuffle (they
//! use scratch slots themselves).
//!
//! Expects a statement list of one block-level body. Guarantees: the phases in program order;
//! every statement of `body` in exactly one of them; a run is never empty.

use super::{butterfly, collective};
use crate::helpers;
use super::residency::{expr_registers, leaf_registers, RunAccess};
use tl_compiler::lir::{BinaryOp, Expr, Stmt, Ty, Var};

/// A shuffle folded into the run that follows it.
pub(super) struct FoldedShuffle {
    pub dst: Var,
    pub src: Var,
    pub lane_mask: u32,
    /// `dst = src`: what the run's register analysis sees (`dst` written first, `src` read,
    /// so it is in memory, where the other lanes read it).
    pub as_assignment: Stmt,
}

pub(super) enum Phase<'s> {
    /// Ordinary statements for every thread, after the folded shuffle if there is one; each
    /// thread's pass ends with the values of `staged` (operands of the collective statements
    /// that follow, `staged_operands`) in its scratch slots 0, 1, ...
    Run { shuffle: Option<FoldedShuffle>, statements: Vec<&'s Stmt>, staged: Vec<&'s Expr> },
    /// A collective statement; `staged`: its operands (`staged_operands`) are already in the
    /// scratch slots from this one on (the run before it put them there).
    Collective { statement: &'s Stmt, staged: Option<usize> },
    /// Shuffles and elementwise operations on 32-bit registers computed a warp at a time in
    /// vectors (`butterfly`): a reduction across the lanes of each warp.
    Butterfly { statements: &'s [Stmt] },
}

impl Phase<'_> {
    /// The registers of a run (the folded shuffle as an assignment `dst = src` first, the
    /// staged operands read last).
    pub fn access(&self, registers: usize) -> RunAccess {
        match self {
            Phase::Run { shuffle, statements, staged } => {
                let statements: Vec<&Stmt> = shuffle.iter().map(|f| &f.as_assignment).chain(statements.iter().copied()).collect();
                RunAccess::of(&statements, staged, registers)
            }
            Phase::Butterfly { statements } => {
                let statements: Vec<Stmt> = statements.iter().map(|s| shuffle_as_assignment(s).unwrap_or_else(|| s.clone())).collect();
                RunAccess::of(&statements.iter().collect::<Vec<_>>(), &[], registers)
            }
            Phase::Collective { .. } => unreachable!("a run or a butterfly"),
        }
    }
}

/// `d = shfl.bfly s, m` as `d = s`: what a shuffle reads and writes, for the register
/// analysis (the source is read, from memory, where the other lanes read it).
fn shuffle_as_assignment(s: &Stmt) -> Option<Stmt> {
    match s {
        Stmt::ShuffleXor { dst, src, .. } => Some(Stmt::Assign(*dst, Expr::Var(*src))),
        _ => None,
    }
}

/// The operands of a warp instruction that are not registers (a register operand is read
/// from its own slot): what must be staged in scratch slots, in slot order.
pub(super) fn staged_operands(s: &Stmt) -> Vec<&Expr> {
    match s {
        Stmt::LdMatrix { row_offset, .. } => vec![row_offset],
        Stmt::Mma { a, b, .. } => a.iter().chain(b.iter()).filter(|e| !matches!(e, Expr::Var(_))).collect(),
        _ => Vec::new(),
    }
}

/// Whether `e` reads no memory and cannot fault (a division only by a constant): it may then be evaluated at the end of a
/// thread's pass instead of in a pass of its own after every thread's.
fn pure(e: &Expr) -> bool {
    let here = match e {
        Expr::LoadGlobal { .. } | Expr::LoadGlobalBits { .. } | Expr::LoadShared { .. } | Expr::LoadSharedBits { .. } => false,
        // A constant divisor whose low byte is not zero is not zero at any width from 8 bits.
        Expr::Binary(BinaryOp::Div | BinaryOp::Rem | BinaryOp::UDiv | BinaryOp::URem, _, divisor) => matches!(**divisor, Expr::Int(ty, d) if ty != Ty::I1 && d as i8 != 0),
        _ => true,
    };
    let mut operands = true;
    e.for_each_operand(|a| operands &= pure(a));
    here && operands
}

/// The phases of `body` (`vars`: the types of the program's registers).
pub(super) fn split<'s>(body: &'s [Stmt], vars: &[Ty]) -> Vec<Phase<'s>> {
    let registers = vars.len();
    fn flush<'s>(phases: &mut Vec<Phase<'s>>, pending: &mut Option<FoldedShuffle>, run: &mut Vec<&'s Stmt>) -> Option<usize> {
        if run.is_empty() {
            return None;
        }
        phases.push(Phase::Run { shuffle: pending.take(), statements: std::mem::take(run), staged: Vec::new() });
        Some(phases.len() - 1)
    }
    let mut phases: Vec<Phase> = Vec::new();
    let mut pending: Option<FoldedShuffle> = None;
    let mut run: Vec<&Stmt> = Vec::new();
    // The run that may still stage operands of the collective statements after it, and the
    // registers those statements have written so far (an operand reading one of them must
    // wait for them).
    let mut staging: Option<usize> = None;
    let mut written_since: Vec<bool> = vec![false; registers];
    let mut i = 0;
    while i < body.len() {
        let s = &body[i];
        i += 1;
        if !collective(s) {
            run.push(s);
            continue;
        }
        if let Some(index) = flush(&mut phases, &mut pending, &mut run) {
            staging = Some(index);
            written_since.iter_mut().for_each(|w| *w = false);
        }
        if let Some(length) = butterfly::chain_length(&body[i - 1..], vars) {
            phases.push(Phase::Butterfly { statements: &body[i - 1..i - 1 + length] });
            i += length - 1;
            staging = None;
            continue;
        }
        if let Stmt::ShuffleXor { dst, src, lane_mask } = s {
            let following: Vec<&Stmt> = body[i..].iter().take_while(|s| !collective(s)).collect();
            let foldable = dst != src && !following.is_empty() && !RunAccess::of(&following, &[], registers).written[src.0 as usize];
            if foldable {
                pending = Some(FoldedShuffle { dst: *dst, src: *src, lane_mask: *lane_mask, as_assignment: shuffle_as_assignment(s).expect("a shuffle") });
                staging = None;
                continue;
            }
        }
        let operands = staged_operands(s);
        let mut staged = None;
        if let (false, Some(index)) = (operands.is_empty(), staging) {
            let Phase::Run { staged: into, .. } = &mut phases[index] else { unreachable!("`staging` is a run") };
            let fits = into.len() + operands.len() <= helpers::SCRATCH;
            let reads_written = |e: &Expr| {
                let mut found = false;
                expr_registers(e, &mut |v| found |= written_since[v.0 as usize]);
                found
            };
            if fits && operands.iter().all(|e| pure(e) && !reads_written(e)) {
                staged = Some(into.len());
                into.extend(operands.iter().copied());
            } else {
                // Its own staging pass writes scratch slots from 0, where later operands
                // staged by the run would be.
                staging = None;
            }
        }
        // Control flow holds runs of its own; a shuffle in place copies through scratch slot 0.
        if matches!(s, Stmt::If { .. } | Stmt::For { .. } | Stmt::ShuffleXor { .. }) {
            staging = None;
        }
        leaf_registers(s, &mut |_| {}, &mut |v| written_since[v.0 as usize] = true);
        phases.push(Phase::Collective { statement: s, staged });
    }
    flush(&mut phases, &mut pending, &mut run);
    debug_assert!(pending.is_none(), "a folded shuffle always has its run");
    phases
}
