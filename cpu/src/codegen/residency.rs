//! Where each register lives: in a Cranelift variable (a machine register or a spill slot the
//! register allocator chooses) while a thread runs a stretch of ordinary statements, and in the
//! block's register file (memory, one row of slots per thread) when its value must survive
//! other threads running: across a collective statement, or from one iteration of a
//! block-level loop to the next.
//!
//! Expects the statements split into runs exactly as `Gen::phases` splits them (`phases`:
//! maximal sequences of non-collective statements, a folded shuffle an assignment `dst = src`
//! at the start of its run, operands staged for the next collective statement read at its
//! end; a butterfly chain a run of its own, its shuffles `dst = src`). Guarantees: a register is in memory when a
//! collective statement or the block-level control flow mentions it, when two runs mention it,
//! or when a run may read it before writing it; within a run, such a register is loaded at the
//! start of each thread's pass when the run may read its earlier value or may leave it
//! unwritten, and stored at the end when the run writes it. Registers only one run mentions, and
//! always writes before reading, never touch memory.

use super::phases::{split, Phase};
use tl_compiler::lir::{Expr, Program, Stmt, Ty, Var};

/// The registers of one run: what it reads before writing, what it writes, and what it writes
/// on every path.
pub(super) struct RunAccess {
    pub mentioned: Vec<Var>,
    pub exposed: Vec<bool>,
    pub written: Vec<bool>,
    pub always_written: Vec<bool>,
}

impl RunAccess {
    /// The registers of the statements `run`, then of the expressions `after` (read at the
    /// end of the run).
    pub fn of(run: &[&Stmt], after: &[&Expr], registers: usize) -> RunAccess {
        let mut walk = Walk { exposed: vec![false; registers], written: vec![false; registers], mentioned: vec![false; registers], order: Vec::new() };
        let mut defined = vec![false; registers];
        for s in run {
            walk.stmt(s, &mut defined);
        }
        for e in after {
            walk.read(e, &defined);
        }
        RunAccess { mentioned: walk.order, exposed: walk.exposed, written: walk.written, always_written: defined }
    }

    /// Registers in memory to load when a thread enters the run.
    pub fn loads(&self, in_memory: &[bool]) -> Vec<Var> {
        let i = |v: &Var| v.0 as usize;
        self.mentioned.iter().copied().filter(|v| in_memory[i(v)] && (self.exposed[i(v)] || (self.written[i(v)] && !self.always_written[i(v)]))).collect()
    }

    /// Registers in memory to store when a thread leaves the run.
    pub fn stores(&self, in_memory: &[bool]) -> Vec<Var> {
        self.mentioned.iter().copied().filter(|v| in_memory[v.0 as usize] && self.written[v.0 as usize]).collect()
    }
}

struct Walk {
    exposed: Vec<bool>,
    written: Vec<bool>,
    mentioned: Vec<bool>,
    /// The mentioned registers in first-mention order (deterministic code).
    order: Vec<Var>,
}

impl Walk {
    fn mention(&mut self, v: Var) {
        if !self.mentioned[v.0 as usize] {
            self.mentioned[v.0 as usize] = true;
            self.order.push(v);
        }
    }

    fn read(&mut self, e: &Expr, defined: &[bool]) {
        expr_registers(e, &mut |v| {
            if !defined[v.0 as usize] {
                self.exposed[v.0 as usize] = true;
            }
            self.mention(v);
        });
    }

    fn write(&mut self, v: Var, defined: &mut [bool]) {
        self.written[v.0 as usize] = true;
        defined[v.0 as usize] = true;
        self.mention(v);
    }

    /// `defined`: the registers written on every path so far; updated past `s`.
    fn stmt(&mut self, s: &Stmt, defined: &mut Vec<bool>) {
        match s {
            Stmt::If { cond, then_body, else_body } => {
                self.read(cond, defined);
                let mut then_defined = defined.clone();
                for s in then_body {
                    self.stmt(s, &mut then_defined);
                }
                for s in else_body {
                    self.stmt(s, defined);
                }
                for (d, t) in defined.iter_mut().zip(then_defined) {
                    *d &= t;
                }
            }
            Stmt::For { var, start, end, body } => {
                self.read(start, defined);
                self.read(end, defined);
                // The body may run zero times: what it writes is not written on every path.
                let mut inside = defined.clone();
                self.write(*var, &mut inside);
                for s in body {
                    self.stmt(s, &mut inside);
                }
            }
            leaf => {
                let mut writes = Vec::new();
                leaf_registers(leaf, &mut |e| self.read(e, defined), &mut |v| writes.push(v));
                for v in writes {
                    self.write(v, defined);
                }
            }
        }
    }
}

/// Every register `e` reads.
pub(super) fn expr_registers(e: &Expr, f: &mut dyn FnMut(Var)) {
    if let Expr::Var(v) = e {
        f(*v);
    }
    e.for_each_operand(|a| expr_registers(a, f));
}

/// The expressions a statement without a body evaluates and the registers it writes (after
/// evaluating them). `If` and `For` give their condition and bounds (and the loop variable).
pub(super) fn leaf_registers<'s>(s: &'s Stmt, read: &mut impl FnMut(&'s Expr), write: &mut impl FnMut(Var)) {
    s.for_each_expr(&mut *read);
    match s {
        Stmt::Assign(v, _) | Stmt::AssignUniform(v, _) | Stmt::For { var: v, .. } => write(*v),
        Stmt::Mma { c, .. } => c.iter().copied().for_each(write),
        Stmt::LdMatrix { dst, .. } | Stmt::LoadGlobalVector { dst, .. } | Stmt::LoadSharedVector { dst, .. } => dst.iter().copied().for_each(write),
        // Both registers are read and written through memory by the shuffle.
        Stmt::ShuffleXor { dst, src, .. } => {
            write(*src);
            write(*dst);
        }
        _ => {}
    }
}

/// Which registers live in memory (the module header's rule), over the whole program.
pub(super) fn registers_in_memory(p: &Program) -> Vec<bool> {
    let mut state = Placement { vars: &p.vars, in_memory: vec![false; p.vars.len()], run_of: vec![None; p.vars.len()], runs: 0 };
    state.phases(&p.body);
    state.in_memory
}

struct Placement<'p> {
    vars: &'p [Ty],
    in_memory: Vec<bool>,
    /// The run that mentions each register, while only one does.
    run_of: Vec<Option<usize>>,
    runs: usize,
}

impl Placement<'_> {
    fn phases(&mut self, body: &[Stmt]) {
        for phase in split(body, self.vars) {
            let s = match phase {
                Phase::Run { .. } | Phase::Butterfly { .. } => {
                    self.run(phase.access(self.in_memory.len()));
                    continue;
                }
                Phase::Collective { statement, .. } => statement,
            };
            let (mut read, mut written) = (Vec::new(), Vec::new());
            leaf_registers(s, &mut |e| expr_registers(e, &mut |v| read.push(v)), &mut |v| written.push(v));
            for v in read.into_iter().chain(written) {
                self.in_memory[v.0 as usize] = true;
            }
            match s {
                Stmt::If { then_body, else_body, .. } => {
                    self.phases(then_body);
                    self.phases(else_body);
                }
                Stmt::For { body, .. } => self.phases(body),
                _ => {}
            }
        }
    }

    fn run(&mut self, access: RunAccess) {
        let id = self.runs;
        self.runs += 1;
        for v in &access.mentioned {
            let i = v.0 as usize;
            match self.run_of[i] {
                Some(other) if other != id => self.in_memory[i] = true,
                _ => self.run_of[i] = Some(id),
            }
            if access.exposed[i] {
                self.in_memory[i] = true;
            }
        }
    }
}
