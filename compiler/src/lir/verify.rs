//! The LIR verifier: the rules of the thread-level IR (`lir/mod.rs`), checked on a whole
//! [`Program`].
//!
//! **Expects** any `Program`, however it was made (the lowering, a test, a future parser).
//! **Guarantees**: `Ok(())` only if every rule below holds, so a code generator or the
//! simulator given a verified program never meets an unknown register or parameter, an operand
//! of the wrong type, or a barrier some threads skip. Each violation is a [`LirError`]: its
//! [`LirErrorKind`] says what is wrong, and it carries the block-IR instruction (the last
//! `Source` marker before the statement) the faulty statement implements.
//!
//! The rules:
//! * **Types**: registers and parameters exist; every operand has the type its expression or
//!   statement requires (equal operand types, i1 conditions, i64 global indices, i32 shared
//!   offsets and loop bounds, float-only math, the widths of `prmt`, `lop3`, `mma`, ...).
//! * **Definitions before use**: a register is read only where every path from the start has
//!   assigned it (a `for` body may run zero times; an `if` assigns what both branches do).
//! * **Uniform control flow for barriers**: a `barrier` is never under a condition or inside
//!   a loop whose bounds may differ between threads (a value is thread-dependent when it
//!   comes from `threadIdx`, from memory, from a warp instruction, or from a register assigned
//!   such a value or under such control); the warp instructions (`mma`, `ldmatrix`,
//!   `shfl.bfly`) are never under an `if` at all.
//! * **Shared memory**: a program with shared accesses has a shared buffer, and an access at a
//!   constant offset lies inside it.
//! * **`cp.async` groups**: no path ends with copies that no `commit_group` closed (they would
//!   never land).

use super::{BinaryOp, CmpOp, Expr, MmaKind, Param, Program, Stmt, Ty, UnaryOp, Var};
use crate::diagnostics::Span;
use std::fmt;

/// What is wrong with a program.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LirErrorKind {
    #[error("register r{var} does not exist (the program has {count})")]
    UnknownRegister { var: u32, count: usize },
    #[error("parameter {index} does not exist (the program has {count})")]
    UnknownParameter { index: usize, count: usize },
    #[error("parameter {index} is {found}, but {what} needs {expected}")]
    ParameterKind { index: usize, what: &'static str, expected: &'static str, found: &'static str },
    #[error("{what}: expected {expected}, found {found}")]
    Type { what: &'static str, expected: String, found: Ty },
    #[error("{what}: the operands have different types, {left} and {right}")]
    OperandTypes { what: &'static str, left: Ty, right: Ty },
    #[error("{what} of {found}: {allowed}")]
    Operation { what: String, found: Ty, allowed: &'static str },
    #[error("{what}: {value} is not one of {allowed}")]
    Width { what: &'static str, value: u64, allowed: &'static str },
    #[error("register r{var} is read before every path has assigned it")]
    UseBeforeAssignment { var: u32 },
    #[error("a barrier under control flow that may differ between threads (a condition or loop bound derived from `threadIdx`, memory or a warp instruction): some threads would skip it")]
    DivergentBarrier,
    #[error("warp instruction `{0}` under an `if`: every thread of the block must execute it")]
    CollectiveUnderIf(&'static str),
    #[error("{what} at byte {offset} ({bytes} bytes) is outside the {shared_bytes}-byte shared buffer")]
    SharedOutOfBuffer { what: &'static str, offset: i64, bytes: u64, shared_bytes: usize },
    #[error("copies started by `cp.async` are not closed by a `cp.async.commit_group` on some path to the end: they never land")]
    UncommittedCopies,
}

/// A violation and where it is: the block-IR instruction its statement implements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LirError {
    pub kind: LirErrorKind,
    /// The last `Source` marker before the statement (its span and instruction), if any.
    pub source: Option<(Span, String)>,
}

impl fmt::Display for LirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some((span, what)) => write!(f, "{} (in `{what}` at {}..{})", self.kind, span.start, span.end),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for LirError {}

/// Checks every rule; returns all violations found (at most one per statement), in program
/// order.
pub fn verify(program: &Program) -> Result<(), Vec<LirError>> {
    let uniform = uniform_registers(program);
    let mut v = Verifier { program, uniform, errors: Vec::new(), source: None, assigned: vec![false; program.vars.len()], uncommitted: false };
    v.stmts(&program.body, Control { divergent: false, under_if: false });
    if v.uncommitted {
        v.error(LirErrorKind::UncommittedCopies);
    }
    if v.errors.is_empty() { Ok(()) } else { Err(v.errors) }
}

/// The control a statement runs under.
#[derive(Clone, Copy)]
struct Control {
    /// Some enclosing condition or loop bound may differ between threads.
    divergent: bool,
    /// Some enclosing statement is an `if`.
    under_if: bool,
}

struct Verifier<'p> {
    program: &'p Program,
    /// Per register: every value it is given is the same in all threads.
    uniform: Vec<bool>,
    errors: Vec<LirError>,
    source: Option<(Span, String)>,
    /// Per register: assigned on every path to the current statement.
    assigned: Vec<bool>,
    /// Some path to the current statement has copies no `commit_group` closed.
    uncommitted: bool,
}

type Check = Result<(), LirErrorKind>;

fn expect(what: &'static str, expected: Ty, found: Ty) -> Check {
    if expected == found { Ok(()) } else { Err(LirErrorKind::Type { what, expected: expected.name().into(), found }) }
}

fn width(what: &'static str, value: u64, allowed: &'static str, ok: bool) -> Check {
    if ok { Ok(()) } else { Err(LirErrorKind::Width { what, value, allowed }) }
}

impl Verifier<'_> {
    fn error(&mut self, kind: LirErrorKind) {
        self.errors.push(LirError { kind, source: self.source.clone() });
    }

    fn var(&self, v: Var) -> Result<Ty, LirErrorKind> {
        self.program.vars.get(v.0 as usize).copied().ok_or(LirErrorKind::UnknownRegister { var: v.0, count: self.program.vars.len() })
    }

    /// A register read: it exists and is assigned on every path here.
    fn read(&self, v: Var) -> Result<Ty, LirErrorKind> {
        let ty = self.var(v)?;
        if !self.assigned[v.0 as usize] {
            return Err(LirErrorKind::UseBeforeAssignment { var: v.0 });
        }
        Ok(ty)
    }

    fn param(&self, index: usize) -> Result<&Param, LirErrorKind> {
        self.program.params.get(index).ok_or(LirErrorKind::UnknownParameter { index, count: self.program.params.len() })
    }

    fn global(&self, index: usize, what: &'static str) -> Result<crate::dtype::DType, LirErrorKind> {
        match self.param(index)? {
            Param::Global { dtype, .. } => Ok(*dtype),
            Param::Scalar { .. } => Err(LirErrorKind::ParameterKind { index, what, expected: "a global tensor", found: "a scalar" }),
        }
    }

    /// The type of `e`, checking its operands.
    fn expr(&self, e: &Expr) -> Result<Ty, LirErrorKind> {
        Ok(match e {
            Expr::Int(t, _) if t.is_float() || t.is_packed() => return Err(LirErrorKind::Operation { what: "an integer constant".into(), found: *t, allowed: "integer types only" }),
            Expr::Float(t, _) if !t.is_float() => return Err(LirErrorKind::Operation { what: "a float constant".into(), found: *t, allowed: "float types only" }),
            Expr::Int(t, _) | Expr::Float(t, _) => *t,
            Expr::Var(v) => self.read(*v)?,
            Expr::Param(i) => match self.param(*i)? {
                Param::Scalar { ty, .. } => *ty,
                Param::Global { .. } => return Err(LirErrorKind::ParameterKind { index: *i, what: "a value", expected: "a scalar", found: "a global tensor" }),
            },
            Expr::ThreadIdx => Ty::I32,
            Expr::BlockIdx(axis) => {
                width("block index axis", *axis as u64, "0, 1, 2", *axis <= 2)?;
                Ty::I32
            }
            Expr::Unary(op, a) => {
                let t = self.expr(a)?;
                if t.is_packed() {
                    return Err(LirErrorKind::Operation { what: format!("{op:?}"), found: t, allowed: "scalar types only" });
                }
                let float_only = !matches!(op, UnaryOp::Neg | UnaryOp::Not | UnaryOp::Abs);
                if float_only && !t.is_float() {
                    return Err(LirErrorKind::Operation { what: format!("{op:?}"), found: t, allowed: "float types only" });
                }
                if *op == UnaryOp::Not && t.is_float() {
                    return Err(LirErrorKind::Operation { what: "Not".into(), found: t, allowed: "integer types only" });
                }
                t
            }
            Expr::Binary(op, a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                if x != y {
                    return Err(LirErrorKind::OperandTypes { what: "a binary operation", left: x, right: y });
                }
                let float_ok = matches!(op, BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem | BinaryOp::Min | BinaryOp::Max);
                if x.is_float() && !float_ok {
                    return Err(LirErrorKind::Operation { what: format!("{op:?}"), found: x, allowed: "integer types only" });
                }
                if x.is_packed() && !matches!(op, BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul) {
                    return Err(LirErrorKind::Operation { what: format!("{op:?}"), found: x, allowed: "scalar types only" });
                }
                x
            }
            Expr::Cmp(op, a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                if x != y {
                    return Err(LirErrorKind::OperandTypes { what: "a comparison", left: x, right: y });
                }
                if x.is_packed() {
                    return Err(LirErrorKind::Operation { what: format!("{op:?}"), found: x, allowed: "scalar types only" });
                }
                if x.is_float() && matches!(op, CmpOp::ULt | CmpOp::ULe | CmpOp::UGt | CmpOp::UGe) {
                    return Err(LirErrorKind::Operation { what: format!("{op:?}"), found: x, allowed: "integer types only" });
                }
                Ty::I1
            }
            Expr::Select(c, a, b) => {
                expect("a select condition", Ty::I1, self.expr(c)?)?;
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                if x != y {
                    return Err(LirErrorKind::OperandTypes { what: "a select", left: x, right: y });
                }
                x
            }
            Expr::Fma(a, b, c) => {
                let (x, y, z) = (self.expr(a)?, self.expr(b)?, self.expr(c)?);
                if x != y || x != z {
                    return Err(LirErrorKind::OperandTypes { what: "an fma", left: x, right: if x != y { y } else { z } });
                }
                if !x.is_float() && !x.is_packed() {
                    return Err(LirErrorKind::Operation { what: "Fma".into(), found: x, allowed: "float types only" });
                }
                x
            }
            Expr::Cast { to, value, .. } => {
                let from = self.expr(value)?;
                if from.is_packed() || to.is_packed() {
                    return Err(LirErrorKind::Operation { what: "a conversion".into(), found: if from.is_packed() { from } else { *to }, allowed: "scalar types only (a packed pair takes a bitcast)" });
                }
                *to
            }
            Expr::Bitcast { to, value } => {
                let from = self.expr(value)?;
                if from.bytes() != to.bytes() {
                    return Err(LirErrorKind::Type { what: "a bitcast's operand", expected: format!("a {}-byte type", to.bytes()), found: from });
                }
                // A packed pair is built and taken apart through its 32-bit integer.
                if (from.is_packed() || to.is_packed()) && ![from, *to].contains(&Ty::I32) {
                    return Err(LirErrorKind::Type { what: "a packed pair's bitcast", expected: "i32".into(), found: if from.is_packed() { *to } else { from } });
                }
                *to
            }
            Expr::LoadGlobal { param, index, ty } => {
                self.global(*param, "a global load")?;
                expect("a global load's index", Ty::I64, self.expr(index)?)?;
                *ty
            }
            Expr::LoadGlobalBits { param, bit_index, bits } => {
                self.global(*param, "a packed global load")?;
                expect("a packed global load's bit index", Ty::I64, self.expr(bit_index)?)?;
                width("a packed load's bits", *bits as u64, "1..=8", (1..=8).contains(bits))?;
                Ty::I32
            }
            Expr::LoadShared { offset, ty } => {
                expect("a shared load's offset", Ty::I32, self.expr(offset)?)?;
                self.shared_bounds("a shared load", offset, ty.bytes() as u64)?;
                *ty
            }
            Expr::LoadSharedBits { bit_offset, bits } => {
                expect("a packed shared load's bit offset", Ty::I32, self.expr(bit_offset)?)?;
                width("a packed load's bits", *bits as u64, "1..=8", (1..=8).contains(bits))?;
                if self.program.shared_bytes == 0 {
                    return Err(LirErrorKind::SharedOutOfBuffer { what: "a packed shared load", offset: 0, bytes: 1, shared_bytes: 0 });
                }
                Ty::I32
            }
            Expr::Prmt { a, b, selector } => {
                for operand in [a, b, selector] {
                    expect("a prmt operand", Ty::I32, self.expr(operand)?)?;
                }
                Ty::I32
            }
            Expr::Lop3 { a, b, c, .. } => {
                for operand in [a, b, c] {
                    expect("a lop3 operand", Ty::I32, self.expr(operand)?)?;
                }
                Ty::I32
            }
        })
    }

    /// Whether `e` has the same value in every thread (with registers as [`uniform_registers`]
    /// found them).
    fn is_uniform(&self, e: &Expr) -> bool {
        expr_is_uniform(e, &self.uniform)
    }

    fn shared_bounds(&self, what: &'static str, offset: &Expr, bytes: u64) -> Check {
        if self.program.shared_bytes == 0 {
            return Err(LirErrorKind::SharedOutOfBuffer { what, offset: constant(offset).unwrap_or(0), bytes, shared_bytes: 0 });
        }
        match constant(offset) {
            Some(o) if o < 0 || o as u64 + bytes > self.program.shared_bytes as u64 => {
                Err(LirErrorKind::SharedOutOfBuffer { what, offset: o, bytes, shared_bytes: self.program.shared_bytes })
            }
            _ => Ok(()),
        }
    }

    fn assign(&mut self, v: Var) {
        if let Some(slot) = self.assigned.get_mut(v.0 as usize) {
            *slot = true;
        }
    }

    fn stmts(&mut self, body: &[Stmt], control: Control) {
        for s in body {
            if let Err(kind) = self.stmt(s, control) {
                self.error(kind);
            }
        }
    }

    fn stmt(&mut self, s: &Stmt, control: Control) -> Check {
        match s {
            Stmt::Source { span, what } => self.source = Some((*span, what.clone())),
            Stmt::Assign(v, e) | Stmt::AssignUniform(v, e) => {
                let found = self.expr(e)?;
                expect("an assignment's value", self.var(*v)?, found)?;
                self.assign(*v);
            }
            Stmt::StoreGlobal { param, index, value } => {
                self.global(*param, "a global store")?;
                expect("a global store's index", Ty::I64, self.expr(index)?)?;
                self.expr(value)?;
            }
            Stmt::AtomicAddGlobal { param, index, value } => {
                self.global(*param, "an atomic addition")?;
                expect("an atomic addition's index", Ty::I64, self.expr(index)?)?;
                self.expr(value)?;
            }
            Stmt::StoreShared { offset, value } => {
                expect("a shared store's offset", Ty::I32, self.expr(offset)?)?;
                let t = self.expr(value)?;
                self.shared_bounds("a shared store", offset, t.bytes() as u64)?;
            }
            Stmt::StoreSharedBits { bit_offset, bits, value } => {
                expect("a packed shared store's bit offset", Ty::I32, self.expr(bit_offset)?)?;
                width("a packed store's bits", *bits as u64, "1..=8", (1..=8).contains(bits))?;
                expect("a packed shared store's value", Ty::I32, self.expr(value)?)?;
                if self.program.shared_bytes == 0 {
                    return Err(LirErrorKind::SharedOutOfBuffer { what: "a packed shared store", offset: 0, bytes: 1, shared_bytes: 0 });
                }
            }
            Stmt::StoreGlobalBits { param, bit_index, bits, value } => {
                self.global(*param, "a packed global store")?;
                expect("a packed global store's bit index", Ty::I64, self.expr(bit_index)?)?;
                width("a packed store's bits", *bits as u64, "1..=8", (1..=8).contains(bits))?;
                expect("a packed global store's value", Ty::I32, self.expr(value)?)?;
            }
            Stmt::If { cond, then_body, else_body } => {
                expect("an if condition", Ty::I1, self.expr(cond)?)?;
                let inner = Control { divergent: control.divergent || !self.is_uniform(cond), under_if: true };
                let (before, uncommitted) = (self.assigned.clone(), self.uncommitted);
                self.stmts(then_body, inner);
                let (after_then, uncommitted_then) = (std::mem::replace(&mut self.assigned, before), self.uncommitted);
                self.uncommitted = uncommitted;
                self.stmts(else_body, inner);
                for (a, t) in self.assigned.iter_mut().zip(after_then) {
                    *a &= t;
                }
                self.uncommitted |= uncommitted_then;
            }
            Stmt::For { var, start, end, body } => {
                expect("a loop variable", Ty::I32, self.var(*var)?)?;
                expect("a loop start", Ty::I32, self.expr(start)?)?;
                expect("a loop end", Ty::I32, self.expr(end)?)?;
                let divergent = control.divergent || !self.is_uniform(start) || !self.is_uniform(end);
                let before = self.assigned.clone();
                self.assign(*var);
                // Copies left uncommitted by one iteration may stay so after the loop; a
                // second pass sees what the first left behind.
                let uncommitted = self.uncommitted;
                self.stmts(body, Control { divergent, under_if: control.under_if });
                self.uncommitted |= uncommitted;
                // The body may run zero times: only what was assigned before counts.
                self.assigned = before;
            }
            Stmt::Barrier => {
                if control.divergent {
                    return Err(LirErrorKind::DivergentBarrier);
                }
            }
            Stmt::Mma { kind, a, b, c } => {
                if control.under_if {
                    return Err(LirErrorKind::CollectiveUnderIf("mma"));
                }
                for operand in a.iter().chain(b) {
                    expect("an mma operand", Ty::I32, self.expr(operand)?)?;
                }
                let accumulator = if *kind == MmaKind::S8 { Ty::I32 } else { Ty::F32 };
                for v in c {
                    expect("an mma accumulator", accumulator, self.read(*v)?)?;
                }
            }
            Stmt::LdMatrix { dst, row_offset, .. } => {
                if control.under_if {
                    return Err(LirErrorKind::CollectiveUnderIf("ldmatrix"));
                }
                width("ldmatrix matrices", dst.len() as u64, "1, 2, 4", matches!(dst.len(), 1 | 2 | 4))?;
                expect("an ldmatrix row offset", Ty::I32, self.expr(row_offset)?)?;
                self.shared_bounds("an ldmatrix row", row_offset, 16)?;
                for v in dst {
                    expect("an ldmatrix destination", Ty::I32, self.var(*v)?)?;
                }
                dst.iter().for_each(|v| self.assign(*v));
            }
            Stmt::ShuffleXor { dst, src, lane_mask } => {
                if control.under_if {
                    return Err(LirErrorKind::CollectiveUnderIf("shfl.bfly"));
                }
                let t = self.read(*src)?;
                if t != Ty::F32 && t != Ty::I32 {
                    return Err(LirErrorKind::Operation { what: "shfl.bfly".into(), found: t, allowed: "f32 and i32 only" });
                }
                expect("a shuffle destination", t, self.var(*dst)?)?;
                width("a shuffle lane mask", *lane_mask as u64, "0..32", *lane_mask < 32)?;
                self.assign(*dst);
            }
            Stmt::CopyAsync { offset, param, byte_index, bytes, src_bytes } => {
                expect("a cp.async destination offset", Ty::I32, self.expr(offset)?)?;
                self.global(*param, "cp.async")?;
                expect("a cp.async source byte index", Ty::I64, self.expr(byte_index)?)?;
                width("cp.async bytes", *bytes as u64, "4, 8, 16", matches!(bytes, 4 | 8 | 16))?;
                expect("a cp.async source size", Ty::I32, self.expr(src_bytes)?)?;
                self.shared_bounds("a cp.async destination", offset, *bytes as u64)?;
                self.uncommitted = true;
            }
            Stmt::CommitGroup => self.uncommitted = false,
            Stmt::WaitGroup(_) => {}
            Stmt::Print { coords, value, .. } => {
                for c in coords {
                    expect("a print coordinate", Ty::I32, self.expr(c)?)?;
                }
                let t = self.expr(value)?;
                if t != Ty::F64 && t != Ty::I64 {
                    return Err(LirErrorKind::Operation { what: "print".into(), found: t, allowed: "f64 and i64 only" });
                }
            }
            Stmt::LoadGlobalVector { dst, param, byte_offset, ty } => {
                self.global(*param, "a vector load")?;
                expect("a vector load's byte offset", Ty::I64, self.expr(byte_offset)?)?;
                vector_size("a vector load", dst.len(), *ty)?;
                for v in dst {
                    expect("a vector load destination", *ty, self.var(*v)?)?;
                }
                dst.iter().for_each(|v| self.assign(*v));
            }
            Stmt::LoadSharedVector { dst, offset, ty } => {
                expect("a shared vector load's offset", Ty::I32, self.expr(offset)?)?;
                vector_size("a shared vector load", dst.len(), *ty)?;
                let bytes = (dst.len() * ty.bytes()) as u64;
                self.shared_bounds("a shared vector load", offset, bytes)?;
                if let Some(o) = constant(offset) {
                    width("a shared vector load's offset (a multiple of its size)", o as u64, "aligned", o.rem_euclid(bytes as i64) == 0)?;
                }
                for v in dst {
                    expect("a vector load destination", *ty, self.var(*v)?)?;
                }
                dst.iter().for_each(|v| self.assign(*v));
            }
            Stmt::StoreGlobalVector { param, byte_offset, values, ty } => {
                self.global(*param, "a vector store")?;
                expect("a vector store's byte offset", Ty::I64, self.expr(byte_offset)?)?;
                vector_size("a vector store", values.len(), *ty)?;
                for value in values {
                    expect("a vector store value", *ty, self.expr(value)?)?;
                }
            }
            Stmt::Check { cond, .. } => {
                expect("a check condition", Ty::I1, self.expr(cond)?)?;
            }
        }
        Ok(())
    }
}

/// A vector access moves `count · ty.bytes()` bytes: a power of two from 1 to 16, not of i1.
fn vector_size(what: &'static str, count: usize, ty: Ty) -> Check {
    if ty == Ty::I1 {
        return Err(LirErrorKind::Operation { what: what.into(), found: ty, allowed: "every type but i1" });
    }
    let bytes = (count * ty.bytes()) as u64;
    width(what, bytes, "1, 2, 4, 8 or 16 bytes", bytes.is_power_of_two() && bytes <= 16)
}

/// The value of a constant integer expression.
fn constant(e: &Expr) -> Option<i64> {
    match e {
        Expr::Int(_, v) => Some(*v),
        _ => None,
    }
}

fn expr_is_uniform(e: &Expr, uniform: &[bool]) -> bool {
    let u = |x: &Expr| expr_is_uniform(x, uniform);
    match e {
        Expr::Int(..) | Expr::Float(..) | Expr::Param(_) | Expr::BlockIdx(_) => true,
        Expr::Var(v) => uniform.get(v.0 as usize).copied().unwrap_or(false),
        // Memory may differ between threads (another thread may have written it).
        Expr::ThreadIdx | Expr::LoadGlobal { .. } | Expr::LoadGlobalBits { .. } | Expr::LoadShared { .. } | Expr::LoadSharedBits { .. } => false,
        Expr::Unary(_, a) | Expr::Cast { value: a, .. } | Expr::Bitcast { value: a, .. } => u(a),
        Expr::Binary(_, a, b) | Expr::Cmp(_, a, b) => u(a) && u(b),
        Expr::Select(a, b, c) | Expr::Fma(a, b, c) | Expr::Prmt { a, b, selector: c } | Expr::Lop3 { a, b, c, .. } => u(a) && u(b) && u(c),
    }
}

/// Per register, whether every value it is given is the same in all threads: the largest
/// such set, found by removing registers until nothing changes (a register is thread-dependent
/// when one of its assignments is, or happens under thread-dependent control, or when a warp
/// instruction or a vector load writes it).
pub fn uniform_registers(program: &Program) -> Vec<bool> {
    let mut uniform = vec![true; program.vars.len()];
    loop {
        let mut changed = false;
        mark(&program.body, false, &mut uniform, &mut changed);
        if !changed {
            return uniform;
        }
    }
}

fn clear(v: &Var, uniform: &mut [bool], changed: &mut bool) {
    if let Some(slot) = uniform.get_mut(v.0 as usize)
        && *slot
    {
        *slot = false;
        *changed = true;
    }
}

fn mark(body: &[Stmt], divergent: bool, uniform: &mut [bool], changed: &mut bool) {
    for s in body {
        match s {
            Stmt::Assign(v, e) if divergent || !expr_is_uniform(e, uniform) => clear(v, uniform, changed),
            // The program guarantees the value (the simulator checks it), unless only some
            // threads assign it.
            Stmt::AssignUniform(v, _) if divergent => clear(v, uniform, changed),
            Stmt::If { cond, then_body, else_body } => {
                let inner = divergent || !expr_is_uniform(cond, uniform);
                mark(then_body, inner, uniform, changed);
                mark(else_body, inner, uniform, changed);
            }
            Stmt::For { var, start, end, body } => {
                let inner = divergent || !expr_is_uniform(start, uniform) || !expr_is_uniform(end, uniform);
                if inner {
                    clear(var, uniform, changed);
                }
                mark(body, inner, uniform, changed);
            }
            Stmt::Mma { c, .. } => c.iter().for_each(|v| clear(v, uniform, changed)),
            Stmt::LdMatrix { dst, .. } | Stmt::LoadGlobalVector { dst, .. } | Stmt::LoadSharedVector { dst, .. } => {
                dst.iter().for_each(|v| clear(v, uniform, changed))
            }
            Stmt::ShuffleXor { dst, .. } => clear(dst, uniform, changed),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    fn b(e: Expr) -> Box<Expr> {
        Box::new(e)
    }
    fn i32c(v: i64) -> Expr {
        Expr::Int(Ty::I32, v)
    }
    fn var(v: u32) -> Expr {
        Expr::Var(Var(v))
    }

    /// A program with registers r0: i32, r1: f32, r2: i1, r3: i32; a global f32 tensor and an
    /// i32 scalar; 64 bytes of shared memory.
    fn program(body: Vec<Stmt>) -> Program {
        Program {
            name: "k".into(),
            params: vec![Param::Global { name: "x".into(), dtype: DType::F32 }, Param::Scalar { name: "n".into(), ty: Ty::I32 }],
            block_threads: 64,
            shared_bytes: 64,
            vars: vec![Ty::I32, Ty::F32, Ty::I1, Ty::I32],
            body,
        }
    }

    fn kinds(body: Vec<Stmt>) -> Vec<LirErrorKind> {
        verify(&program(body)).err().unwrap_or_default().into_iter().map(|e| e.kind).collect()
    }

    /// A packed pair of f16 (the bits of 1.0 and 2.0).
    fn pair() -> Expr {
        Expr::Bitcast { to: Ty::F16x2, value: b(i32c(0x4000_3c00)) }
    }

    fn marker(what: &str) -> Stmt {
        Stmt::Source { span: Span { start: 3, end: 9 }, what: what.into() }
    }

    #[test]
    fn a_well_formed_program_verifies() {
        let body = vec![
            Stmt::Assign(Var(0), Expr::ThreadIdx),
            Stmt::Assign(Var(3), Expr::Param(1)),
            Stmt::If {
                cond: Expr::Cmp(CmpOp::Lt, b(var(0)), b(var(3))),
                then_body: vec![Stmt::Assign(Var(1), Expr::LoadGlobal { param: 0, index: b(Expr::Cast { to: Ty::I64, value: b(var(0)), from_unsigned: false, to_unsigned: false }), ty: Ty::F32 })],
                else_body: vec![Stmt::Assign(Var(1), Expr::Float(Ty::F32, 0.0))],
            },
            // r1 is assigned on both paths.
            Stmt::StoreShared { offset: Expr::Binary(BinaryOp::Mul, b(var(0)), b(i32c(0))), value: var(1) },
            // A barrier under a uniform condition is fine.
            Stmt::If { cond: Expr::Cmp(CmpOp::Gt, b(Expr::Param(1)), b(i32c(0))), then_body: vec![Stmt::Barrier], else_body: vec![] },
            Stmt::For { var: Var(3), start: i32c(0), end: Expr::Param(1), body: vec![Stmt::Barrier, Stmt::CopyAsync { offset: i32c(16), param: 0, byte_index: Expr::Int(Ty::I64, 0), bytes: 16, src_bytes: i32c(16) }, Stmt::CommitGroup, Stmt::WaitGroup(0)] },
        ];
        assert_eq!(verify(&program(body)), Ok(()));
    }

    #[test]
    fn unknown_registers_and_parameters_and_wrong_kinds() {
        assert_eq!(kinds(vec![Stmt::Assign(Var(9), i32c(1))]), vec![LirErrorKind::UnknownRegister { var: 9, count: 4 }]);
        assert_eq!(kinds(vec![Stmt::Assign(Var(0), Expr::Param(5))]), vec![LirErrorKind::UnknownParameter { index: 5, count: 2 }]);
        assert!(matches!(kinds(vec![Stmt::Assign(Var(0), Expr::Param(0))])[..], [LirErrorKind::ParameterKind { index: 0, .. }]));
        let store = Stmt::StoreGlobal { param: 1, index: Expr::Int(Ty::I64, 0), value: Expr::Float(Ty::F32, 1.0) };
        assert!(matches!(kinds(vec![store])[..], [LirErrorKind::ParameterKind { index: 1, .. }]));
    }

    #[test]
    fn operand_types_follow_the_rules() {
        let cases: Vec<(Stmt, &str)> = vec![
            (Stmt::Assign(Var(0), Expr::Float(Ty::F32, 1.0)), "an assignment's value: expected i32, found f32"),
            (Stmt::Assign(Var(0), Expr::Binary(BinaryOp::Add, b(i32c(1)), b(Expr::Int(Ty::I64, 1)))), "different types, i32 and i64"),
            (Stmt::Assign(Var(1), Expr::Binary(BinaryOp::Shl, b(Expr::Float(Ty::F32, 1.0)), b(Expr::Float(Ty::F32, 1.0)))), "Shl of f32"),
            (Stmt::Assign(Var(0), Expr::Unary(UnaryOp::Exp, b(i32c(1)))), "Exp of i32"),
            (Stmt::If { cond: i32c(1), then_body: vec![], else_body: vec![] }, "an if condition: expected i1, found i32"),
            (Stmt::StoreGlobal { param: 0, index: i32c(0), value: Expr::Float(Ty::F32, 1.0) }, "a global store's index: expected i64, found i32"),
            (Stmt::Assign(Var(0), Expr::Lop3 { a: b(i32c(1)), b: b(i32c(2)), c: b(Expr::Float(Ty::F32, 3.0)), lut: 0x96 }), "a lop3 operand: expected i32, found f32"),
            (Stmt::Assign(Var(0), Expr::Bitcast { to: Ty::I32, value: b(Expr::Int(Ty::I64, 1)) }), "a bitcast's operand: expected a 4-byte type, found i64"),
            (Stmt::For { var: Var(1), start: i32c(0), end: i32c(4), body: vec![] }, "a loop variable: expected i32, found f32"),
            (Stmt::Assign(Var(0), Expr::LoadGlobalBits { param: 0, bit_index: Expr::Int(Ty::I64, 0).into(), bits: 9 }), "9 is not one of 1..=8"),
            (Stmt::CopyAsync { offset: i32c(0), param: 0, byte_index: Expr::Int(Ty::I64, 0), bytes: 12, src_bytes: i32c(12) }, "cp.async bytes: 12"),
            (Stmt::Print { label: "x".into(), coords: vec![], value: i32c(1), unsigned: false }, "print of i32"),
            (Stmt::StoreGlobalVector { param: 0, byte_offset: Expr::Int(Ty::I64, 0), values: vec![i32c(1), i32c(2), i32c(3)], ty: Ty::I32 }, "a vector store: 12 is not one of 1, 2, 4, 8 or 16 bytes"),
            // Packed pairs: built and taken apart through i32, only `+ - *` and fma on them.
            (Stmt::Assign(Var(0), Expr::Bitcast { to: Ty::I32, value: b(Expr::Binary(BinaryOp::Div, b(pair()), b(pair()))) }), "Div of f16x2"),
            (Stmt::Assign(Var(1), Expr::Cast { to: Ty::F32, value: b(pair()), from_unsigned: false, to_unsigned: false }), "a conversion of f16x2"),
            (Stmt::Assign(Var(1), Expr::Bitcast { to: Ty::F32, value: b(pair()) }), "a packed pair's bitcast: expected i32, found f32"),
            (Stmt::Assign(Var(2), Expr::Cmp(CmpOp::Lt, b(pair()), b(pair()))), "Lt of f16x2"),
            (Stmt::LoadSharedVector { dst: vec![Var(0), Var(3)], offset: i32c(4), ty: Ty::I32 }, "a shared vector load's offset (a multiple of its size): 4"),
        ];
        for (stmt, expected) in cases {
            let errors = verify(&program(vec![stmt.clone()])).expect_err(expected);
            assert_eq!(errors.len(), 1, "{stmt:?}: {errors:?}");
            let text = errors[0].to_string();
            assert!(text.contains(expected), "`{text}` should contain `{expected}`");
        }
    }

    #[test]
    fn registers_are_assigned_on_every_path_before_they_are_read() {
        let read = || Stmt::StoreGlobal { param: 0, index: Expr::Int(Ty::I64, 0), value: var(1) };
        let unassigned = LirErrorKind::UseBeforeAssignment { var: 1 };
        assert_eq!(kinds(vec![read()]), vec![unassigned.clone()]);
        // Assigned in one branch only.
        let one_branch = Stmt::If { cond: Expr::Cmp(CmpOp::Eq, b(Expr::ThreadIdx), b(i32c(0))), then_body: vec![Stmt::Assign(Var(1), Expr::Float(Ty::F32, 1.0))], else_body: vec![] };
        assert_eq!(kinds(vec![one_branch, read()]), vec![unassigned.clone()]);
        // Assigned only in a loop body, which may run zero times.
        let in_loop = Stmt::For { var: Var(0), start: i32c(0), end: Expr::Param(1), body: vec![Stmt::Assign(Var(1), Expr::Float(Ty::F32, 1.0))] };
        assert_eq!(kinds(vec![in_loop, read()]), vec![unassigned]);
        // An mma reads its accumulators.
        let mma = Stmt::Mma { kind: MmaKind::F16, a: [i32c(0), i32c(0), i32c(0), i32c(0)], b: [i32c(0), i32c(0)], c: [Var(1), Var(1), Var(1), Var(1)] };
        assert!(kinds(vec![mma]).contains(&LirErrorKind::UseBeforeAssignment { var: 1 }));
    }

    #[test]
    fn barriers_stay_out_of_thread_dependent_control_flow() {
        let by_thread = Expr::Cmp(CmpOp::Lt, b(Expr::ThreadIdx), b(i32c(32)));
        assert_eq!(kinds(vec![Stmt::If { cond: by_thread.clone(), then_body: vec![Stmt::Barrier], else_body: vec![] }]), vec![LirErrorKind::DivergentBarrier]);
        // Through a register, through a register assigned under such a condition, and through
        // a loop bound read from memory.
        let through_register = vec![
            Stmt::Assign(Var(0), Expr::Binary(BinaryOp::Add, b(Expr::ThreadIdx), b(i32c(1)))),
            Stmt::Assign(Var(3), var(0)),
            Stmt::If { cond: Expr::Cmp(CmpOp::Eq, b(var(3)), b(i32c(0))), then_body: vec![], else_body: vec![Stmt::Barrier] },
        ];
        assert_eq!(kinds(through_register), vec![LirErrorKind::DivergentBarrier]);
        let assigned_under_condition = vec![
            Stmt::Assign(Var(3), i32c(0)),
            Stmt::If { cond: by_thread.clone(), then_body: vec![Stmt::Assign(Var(3), i32c(1))], else_body: vec![] },
            Stmt::For { var: Var(0), start: i32c(0), end: var(3), body: vec![Stmt::Barrier] },
        ];
        assert_eq!(kinds(assigned_under_condition), vec![LirErrorKind::DivergentBarrier]);
        let loaded_bound = vec![
            Stmt::Assign(Var(3), Expr::Cast { to: Ty::I32, value: b(Expr::LoadGlobal { param: 0, index: b(Expr::Int(Ty::I64, 0)), ty: Ty::F32 }), from_unsigned: false, to_unsigned: false }),
            Stmt::For { var: Var(0), start: i32c(0), end: var(3), body: vec![Stmt::Barrier] },
        ];
        assert_eq!(kinds(loaded_bound), vec![LirErrorKind::DivergentBarrier]);
        // Warp instructions are never under an `if`, even a uniform one.
        let uniform = Expr::Cmp(CmpOp::Gt, b(Expr::Param(1)), b(i32c(0)));
        let shuffle = vec![Stmt::Assign(Var(1), Expr::Float(Ty::F32, 1.0)), Stmt::If { cond: uniform, then_body: vec![Stmt::ShuffleXor { dst: Var(1), src: Var(1), lane_mask: 1 }], else_body: vec![] }];
        assert_eq!(kinds(shuffle), vec![LirErrorKind::CollectiveUnderIf("shfl.bfly")]);
    }

    #[test]
    fn shared_accesses_lie_inside_the_buffer_and_copies_are_committed() {
        let store = |offset| Stmt::StoreShared { offset: i32c(offset), value: Expr::Float(Ty::F32, 1.0) };
        assert_eq!(kinds(vec![store(60)]), vec![]);
        assert_eq!(kinds(vec![store(61)]), vec![LirErrorKind::SharedOutOfBuffer { what: "a shared store", offset: 61, bytes: 4, shared_bytes: 64 }]);
        let mut none = program(vec![Stmt::Assign(Var(1), Expr::LoadShared { offset: b(i32c(0)), ty: Ty::F32 }), store(0)]);
        none.shared_bytes = 0;
        assert_eq!(verify(&none).unwrap_err().len(), 2);
        let copy = || Stmt::CopyAsync { offset: i32c(0), param: 0, byte_index: Expr::Int(Ty::I64, 0), bytes: 16, src_bytes: i32c(16) };
        assert_eq!(kinds(vec![copy()]), vec![LirErrorKind::UncommittedCopies]);
        assert_eq!(kinds(vec![copy(), Stmt::CommitGroup]), vec![]);
        // Committed on one path only.
        let half = Stmt::If { cond: Expr::Cmp(CmpOp::Gt, b(Expr::Param(1)), b(i32c(0))), then_body: vec![Stmt::CommitGroup], else_body: vec![] };
        assert_eq!(kinds(vec![copy(), half]), vec![LirErrorKind::UncommittedCopies]);
    }

    #[test]
    fn lowered_kernels_verify_and_a_barrier_moved_under_a_thread_condition_does_not() {
        let source = "kernel k(x: global f32[64], y: global mut f32[64]) grid(1) warps(2) {\n    let s = shared<f32>([64]);\n    store(s, load(x, [0], [64]), [0]);\n    sync();\n    store(y, load(s, [0], [64]) * 2.0, [0]);\n}\n";
        let file = crate::driver::check(source).unwrap();
        let compiled = crate::driver::compile(&file, None, &[]).unwrap();
        assert_eq!(verify(&compiled.lir), Ok(()));
        // Wrap the barrier in `if threadIdx < 32`: half the block would skip it.
        let mut broken = compiled.lir.clone();
        let at = broken.body.iter().position(|s| *s == Stmt::Barrier).expect("the lowering keeps the sync");
        let cond = Expr::Cmp(CmpOp::Lt, b(Expr::ThreadIdx), b(i32c(32)));
        broken.body[at] = Stmt::If { cond, then_body: vec![Stmt::Barrier], else_body: vec![] };
        let errors = verify(&broken).unwrap_err();
        assert_eq!(errors.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(), vec![LirErrorKind::DivergentBarrier]);
        // Reported at the `sync()` (the source marker before it).
        let (span, what) = errors[0].source.clone().expect("a source marker");
        assert!(what.contains("sync") && source[span.start..span.end].contains("sync"), "{what} at {span:?}");
    }

    #[test]
    fn errors_name_the_source_instruction() {
        let errors = verify(&program(vec![marker("%4 = load x"), Stmt::Assign(Var(0), Expr::Float(Ty::F32, 1.0))])).unwrap_err();
        assert_eq!(errors[0].source, Some((Span { start: 3, end: 9 }, "%4 = load x".to_string())));
        assert!(errors[0].to_string().contains("in `%4 = load x` at 3..9"), "{}", errors[0]);
    }
}
