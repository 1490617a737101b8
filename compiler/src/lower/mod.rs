//! Lowering: block IR (layouts assigned) → LIR, the program of one thread.
//!
//! Expects a kernel that passes `ir::verify` with layouts and `ir::plan::verify_plan` (after
//! the planning passes): it follows the recorded strategy of every instruction that moves data
//! between threads and the recorded shared-memory offsets, and re-derives neither (a kernel
//! without a valid plan is an internal error, not a panic). Guarantees a LIR program whose
//! every thread computes the elements its layouts give it:
//!
//! * a scalar IR value becomes one register (the same in every thread);
//! * a tensor value with layout `L` becomes `L.local_size()` registers; register `i` of thread
//!   `t` holds element `L.coord(t, i)`. Operands of elementwise instructions share the result's
//!   layout (`passes::infer_layouts` guarantees it), so they work register by register;
//! * loads and stores are predicated per element on the tensor bounds (out-of-bounds loads
//!   give the pad value); only the primary copy of a replicated layout stores;
//! * vectorization: when each thread's consecutive local indices come in groups of `v`
//!   consecutive elements of the last (contiguous) dimension, starting at multiples of `v`, and
//!   the divisibility analysis (`passes::divisibility`, under the variant's assumptions about
//!   the runtime scalars) proves that the tile offset and the tensor's last extent are
//!   multiples of `v`, each group is one `LoadGlobalVector`/`StoreGlobalVector` of `v`
//!   elements (2 to 16 bytes; sub-byte elements as whole bytes or words) under one bounds
//!   predicate: the group is then aligned to its size and either wholly inside the tensor or
//!   wholly outside. Otherwise the per-element path stays;
//! * `view` re-slices each thread's register bits (equal bits per thread, checked by
//!   inference); low-precision values live in i8 containers (see `lir::Ty::of`);
//! * instructions whose strategy is `staged` write their operands to the scratch space the
//!   plan gives them, row-major, with a barrier after writing and another after reading so
//!   that the next one can reuse the space; `mma` reads an `in_place` operand from its shared
//!   tensor with `ldmatrix`; `shuffle` reductions use `shfl.bfly`;
//! * shared tensors live at their planned offsets; `copy_async` follows its planned thread
//!   layout, as `cp.async` runs where alignment allows and element copies otherwise;
//!   `commit`/`wait`/`sync` map to `cp.async.commit_group`/`cp.async.wait_group`/`bar.sync`.
//!
//! This file holds the walk over the kernel (prologue, statements, the dispatch of each
//! instruction, `print`); the instructions live by concern in `elementwise`, `casts`,
//! `global_memory`, `shared_memory`, `exchanges` (data between threads) and `mma` (`dot`).

use crate::dtype::DType;
use crate::number::Number;
use crate::ir::{self, BinaryOp, Kernel, Op, ParamKind, ReduceOp, Stmt, SymExpr, Type, UnaryOp, ValueId};
use crate::ir::plan::{self, MmaInstruction, MmaTiling, OperandSource, Strategy};
use crate::layout::RegisterLayout;
use crate::lir::{self, CmpOp, Expr, Program, Ty, Var};
use crate::passes::divisibility::{self, Assumptions, Divisibility};
use std::collections::HashMap;

mod casts;
mod elementwise;
mod exchanges;
mod global_memory;
mod math;
mod mma;
mod packed;
mod shared_memory;

use packed::{adjacent_pairs, FastCast, RawPair, RawPairs};

use elementwise::{binary_expr, constant_register, overflow_checked, shift_expr, unary_expr, unsigned_binary};

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error("internal compiler error while lowering `{kernel}`: {message}")]
    Internal { kernel: String, message: String },
}

impl LowerError {
    /// The error as a diagnostic.
    pub fn to_diagnostic(&self) -> crate::diagnostics::Diagnostic {
        crate::diagnostics::Diagnostic::error_nowhere(self.to_string())
    }
}

/// Lowers a kernel whose layouts are assigned, assuming nothing about its runtime scalars.
pub fn lower(kernel: &Kernel) -> Result<Program, LowerError> {
    lower_with(kernel, &Assumptions::none(kernel))
}

/// Lowers a kernel whose layouts are assigned into the variant that may rely on `assumptions`
/// about its runtime integer scalars (it must only be launched with values satisfying them).
pub fn lower_with(kernel: &Kernel, assumptions: &Assumptions) -> Result<Program, LowerError> {
    if assumptions.log2.len() != kernel.params.len() {
        return Err(LowerError::Internal {
            kernel: kernel.name.clone(),
            message: format!("{} assumptions for {} parameters", assumptions.log2.len(), kernel.params.len()),
        });
    }
    if let Err(errors) = ir::verify::verify(kernel, true) {
        return Err(LowerError::Internal { kernel: kernel.name.clone(), message: errors.join("; ") });
    }
    // The planning passes' decisions are followed, never re-derived: they must be there and
    // legal.
    if let Err(errors) = plan::verify_plan(kernel) {
        return Err(LowerError::Internal { kernel: kernel.name.clone(), message: format!("invalid plan: {}", errors.join("; ")) });
    }
    let params = kernel
        .params
        .iter()
        .map(|p| match &p.kind {
            ParamKind::Scalar(d) => lir::Param::Scalar { name: p.name.clone(), ty: Ty::of(*d) },
            ParamKind::Global { dtype, .. } => lir::Param::Global { name: p.name.clone(), dtype: *dtype },
        })
        .collect();
    let mut cx = Lower {
        k: kernel,
        p: Program {
            name: kernel.name.clone(),
            params,
            block_threads: kernel.num_threads() as u32,
            shared_bytes: kernel.shared_bytes.unwrap_or(0),
            vars: Vec::new(),
            body: Vec::new(),
        },
        regs: HashMap::new(),
        packed: HashMap::new(),
        raw_pairs: HashMap::new(),
        code_sources: HashMap::new(),
        code_runs: Vec::new(),
        var_regs: HashMap::new(),
        thread_parts: HashMap::new(),
        extents: HashMap::new(),
        div: divisibility::analyze(kernel, assumptions),
    };
    let mut body = Vec::new();
    cx.prologue(&mut body);
    cx.block(&kernel.body, &mut body);
    cx.p.body = body;
    Ok(cx.p)
}

/// Where a code cut from loaded words lies: bit `bit` of run `run` of `Lower::code_runs`,
/// whose words' bits follow one another (bit `b` is bit `b % w` of word `b / w`, `w` the bits
/// of a word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CodeSource {
    pub run: usize,
    pub bit: u32,
}

struct Lower<'k> {
    k: &'k Kernel,
    p: Program,
    /// Registers of every IR value computed so far.
    regs: HashMap<ValueId, Vec<Var>>,
    /// Packed half pairs of some 16-bit float values (`packed.rs`).
    packed: HashMap<ValueId, Vec<Var>>,
    /// The pairs of some fast casts before their last correction (`packed.rs`).
    raw_pairs: HashMap<ValueId, RawPairs>,
    /// For registers holding a code cut from loaded words: where it lies in them.
    code_sources: HashMap<Var, CodeSource>,
    /// The words that codes were cut from, one run per load (`CodeSource::run`): their i32
    /// variables and how many bits of each the load filled (8, 16 or 32).
    code_runs: Vec<(Vec<Var>, u32)>,
    var_regs: HashMap<ir::VarId, Vec<Var>>,
    /// `(tid / stride) % extent`, computed once in the prologue.
    thread_parts: HashMap<(usize, usize), Var>,
    /// i64 extents and row-major strides of each global tensor parameter.
    extents: HashMap<usize, (Vec<Var>, Vec<Var>)>,
    /// What the variant knows about the divisibility of scalars and extents.
    div: Divisibility,
}

fn int(ty: Ty, v: i64) -> Expr {
    Expr::Int(ty, v)
}

fn bin(op: lir::BinaryOp, a: Expr, b: Expr) -> Expr {
    Expr::Binary(op, Box::new(a), Box::new(b))
}

fn cmp(op: CmpOp, a: Expr, b: Expr) -> Expr {
    Expr::Cmp(op, Box::new(a), Box::new(b))
}

fn var(v: Var) -> Expr {
    Expr::Var(v)
}

fn to_i64(e: Expr) -> Expr {
    Expr::Cast { to: Ty::I64, value: Box::new(e), from_unsigned: false, to_unsigned: false }
}

fn and_all(conds: Vec<Expr>) -> Expr {
    conds.into_iter().reduce(|a, b| bin(lir::BinaryOp::And, a, b)).unwrap_or(int(Ty::I1, 1))
}

fn float_or_int(ty: Ty, v: f64) -> Expr {
    if ty.is_float() { Expr::Float(ty, v) } else { Expr::Int(ty, v as i64) }
}

impl Lower<'_> {
    fn new_var(&mut self, ty: Ty) -> Var {
        self.p.new_var(ty)
    }

    fn assign(&mut self, body: &mut Vec<lir::Stmt>, ty: Ty, e: Expr) -> Var {
        let v = self.new_var(ty);
        body.push(lir::Stmt::Assign(v, e));
        v
    }

    fn layout(&self, v: ValueId) -> &RegisterLayout {
        self.k.value(v).layout.as_ref().expect("verified: tensors have layouts")
    }

    fn regs(&self, v: ValueId) -> &[Var] {
        &self.regs[&v]
    }

    fn scalar(&self, v: ValueId) -> Var {
        self.regs[&v][0]
    }

    fn dtype(&self, v: ValueId) -> DType {
        self.k.value(v).ty.dtype().expect("typed value")
    }

    fn prologue(&mut self, body: &mut Vec<lir::Stmt>) {
        let mut parts = Vec::new();
        // Every thread digit a layout uses, for coordinates and for the primary-copy test.
        let layouts = self
            .k
            .values
            .iter()
            .filter_map(|v| v.layout.as_ref())
            .chain(self.k.vars.iter().filter_map(|v| v.layout.as_ref()))
            .chain(self.k.values.iter().filter_map(|v| match &v.strategy {
                Some(Strategy::Copy { layout, .. }) => Some(layout),
                _ => None,
            }));
        for l in layouts {
            parts.extend(l.thread_terms().into_iter().map(|t| (t.stride, t.extent)));
            parts.extend(l.replication_digits());
        }
        parts.sort();
        parts.dedup();
        for (stride, extent) in parts {
            let e = bin(
                lir::BinaryOp::Rem,
                bin(lir::BinaryOp::Div, Expr::ThreadIdx, int(Ty::I32, stride as i64)),
                int(Ty::I32, extent as i64),
            );
            let v = self.assign(body, Ty::I32, e);
            self.thread_parts.insert((stride, extent), v);
        }
        for (i, p) in self.k.params.iter().enumerate() {
            let ParamKind::Global { shape, .. } = &p.kind else { continue };
            let extents: Vec<Var> = shape
                .iter()
                .map(|s| {
                    let e = self.sym_expr(s);
                    self.assign(body, Ty::I64, e)
                })
                .collect();
            let mut strides = vec![None; shape.len()];
            let mut acc: Option<Var> = None;
            for d in (0..shape.len()).rev() {
                let stride = match acc {
                    None => self.assign(body, Ty::I64, int(Ty::I64, 1)),
                    Some(a) => {
                        let e = bin(lir::BinaryOp::Mul, var(a), var(extents[d + 1]));
                        self.assign(body, Ty::I64, e)
                    }
                };
                strides[d] = Some(stride);
                acc = Some(stride);
            }
            self.extents.insert(i, (extents, strides.into_iter().map(|s| s.expect("set")).collect()));
        }
    }

    fn sym_expr(&self, e: &SymExpr) -> Expr {
        use lir::BinaryOp as B;
        let b = |op, x: &SymExpr, y: &SymExpr| bin(op, self.sym_expr(x), self.sym_expr(y));
        match e {
            SymExpr::Const(v) => int(Ty::I64, *v),
            SymExpr::Param(i) => {
                let from_unsigned = matches!(self.k.param(*i).kind, ParamKind::Scalar(d) if !d.is_signed_int());
                Expr::Cast { to: Ty::I64, value: Box::new(Expr::Param(i.index())), from_unsigned, to_unsigned: false }
            }
            SymExpr::Add(x, y) => b(B::Add, x, y),
            SymExpr::Sub(x, y) => b(B::Sub, x, y),
            SymExpr::Mul(x, y) => b(B::Mul, x, y),
            SymExpr::Div(x, y) => b(B::Div, x, y),
            SymExpr::Rem(x, y) => b(B::Rem, x, y),
            SymExpr::Min(x, y) => b(B::Min, x, y),
            SymExpr::Max(x, y) => b(B::Max, x, y),
            SymExpr::CeilDiv(x, y) => bin(
                B::Div,
                bin(B::Sub, bin(B::Add, self.sym_expr(x), self.sym_expr(y)), int(Ty::I64, 1)),
                self.sym_expr(y),
            ),
        }
    }

    /// The i32 coordinates held by register `local` of the current thread under `layout`.
    fn coords(&self, layout: &RegisterLayout, local: usize) -> Vec<Expr> {
        let base = layout.local_coords(local);
        let mut coords: Vec<Expr> = base.iter().map(|c| int(Ty::I32, *c as i64)).collect();
        for t in layout.thread_terms() {
            let part = var(self.thread_parts[&(t.stride, t.extent)]);
            let term = if t.multiplier == 1 { part } else { bin(lir::BinaryOp::Mul, part, int(Ty::I32, t.multiplier as i64)) };
            let c = std::mem::replace(&mut coords[t.dim], int(Ty::I32, 0));
            coords[t.dim] = match c {
                Expr::Int(_, 0) => term,
                c => bin(lir::BinaryOp::Add, c, term),
            };
        }
        coords
    }

    /// Whether the thread holds the primary copy of its elements (all replication digits of
    /// its index are zero): only that copy stores.
    fn is_first_replica(&self, layout: &RegisterLayout) -> Expr {
        let conds: Vec<Expr> = layout
            .replication_digits()
            .into_iter()
            .map(|digit| cmp(CmpOp::Eq, var(self.thread_parts[&digit]), int(Ty::I32, 0)))
            .collect();
        if conds.is_empty() { int(Ty::I1, 1) } else { and_all(conds) }
    }

    fn block(&mut self, stmts: &[Stmt], body: &mut Vec<lir::Stmt>) {
        for s in stmts {
            match s {
                Stmt::Eval(v) => self.value(*v, body),
                Stmt::Assign(dst, src) => {
                    let ty = Ty::of(self.k.var(*dst).ty.dtype().expect("typed var"));
                    let n = self.regs(*src).len();
                    if !self.var_regs.contains_key(dst) {
                        let regs: Vec<Var> = (0..n).map(|_| self.new_var(ty)).collect();
                        self.var_regs.insert(*dst, regs);
                    }
                    for i in 0..n {
                        body.push(lir::Stmt::Assign(self.var_regs[dst][i], var(self.regs(*src)[i])));
                    }
                }
                Stmt::For { index, start, end, body: inner } => {
                    let iv = self.new_var(Ty::I32);
                    self.regs.insert(*index, vec![iv]);
                    let mut lbody = Vec::new();
                    self.block(inner, &mut lbody);
                    body.push(lir::Stmt::For {
                        var: iv,
                        start: var(self.scalar(*start)),
                        end: var(self.scalar(*end)),
                        body: lbody,
                    });
                }
                Stmt::If { cond, then_body, else_body } => {
                    let mut t = Vec::new();
                    self.block(then_body, &mut t);
                    let mut e = Vec::new();
                    self.block(else_body, &mut e);
                    body.push(lir::Stmt::If { cond: var(self.scalar(*cond)), then_body: t, else_body: e });
                }
            }
        }
    }

    fn value(&mut self, id: ValueId, body: &mut Vec<lir::Stmt>) {
        let data = self.k.value(id);
        let dtype = data.ty.dtype();
        // Instructions that touch memory, move data between threads or divide integers say
        // where they come from, so the simulator can name the source of a fault or a race.
        let divides = matches!(data.op, Op::Binary(BinaryOp::Div | BinaryOp::Rem, ..)) && dtype.is_some_and(|d| d.is_int());
        let may_overflow = dtype.is_some_and(|d| overflow_checked(&data.op, d).is_some());
        if divides || may_overflow || matches!(data.op, Op::Load { .. } | Op::Store { .. } | Op::AtomicAdd { .. } | Op::ToScalar(_) | Op::LoadShared { .. } | Op::StoreShared { .. } | Op::CopyAsync { .. } | Op::Commit | Op::Wait(_) | Op::Sync | Op::Dot { .. } | Op::Reduce { .. } | Op::Broadcast(_) | Op::View(_) | Op::Permute { .. } | Op::Reshape(_)) {
            let what = crate::ir::print::op_str(self.k, &data.op);
            body.push(lir::Stmt::Source { span: data.span, what });
        }
        if let Op::Unary(_, a) | Op::Binary(_, a, _) = &data.op {
            if self.dtype(*a).is_low_precision() {
                self.low_precision_elementwise(id, body);
                return;
            }
        }
        match &data.op {
            Op::Const(c) => {
                let c = *c;
                let d = dtype.expect("typed");
                let constant = constant_register(d, c);
                self.elementwise(id, body, |_, _| constant.clone());
            }
            Op::Param(i) => {
                let i = *i;
                self.elementwise(id, body, |_, _| Expr::Param(i.index()));
            }
            Op::ToScalar(a) => {
                // Every thread holds the one element (a layout maps each of its registers to
                // a coordinate, and a one-element tile has only one): take the first register.
                let a = *a;
                let ty = Ty::of(dtype.expect("typed"));
                let v = self.new_var(ty);
                body.push(lir::Stmt::AssignUniform(v, var(self.regs(a)[0])));
                self.regs.insert(id, vec![v]);
            }
            Op::Iota { dim } => {
                // Each register's coordinate along `dim`, from the layout, converted once.
                let (dim, d) = (*dim, dtype.expect("typed"));
                let layout = self.layout(id).clone();
                let regs: Vec<Var> = (0..layout.local_size())
                    .map(|i| {
                        let index = self.coords(&layout, i).swap_remove(dim);
                        self.cast_into(body, index, DType::I32, d)
                    })
                    .collect();
                self.regs.insert(id, regs);
            }
            Op::BlockIdx(a) => {
                let a = *a;
                self.elementwise(id, body, |_, _| Expr::BlockIdx(a));
            }
            Op::LoopIndex => unreachable!("verified: loop indices are defined by `for`"),
            Op::ReadVar(v) => {
                let src = self.var_regs.get(v).cloned().unwrap_or_default();
                if src.is_empty() {
                    // Read before any assignment lowered so far (the verifier cannot see this).
                    let ty = Ty::of(dtype.expect("typed"));
                    self.elementwise(id, body, |_, _| float_or_int(ty, 0.0));
                } else {
                    self.elementwise(id, body, |_, i| var(src[i]));
                }
            }
            Op::Unary(op, a) => {
                let (op, a) = (*op, *a);
                let ty = Ty::of(dtype.expect("typed"));
                if math::has_sequence(op) {
                    let regs: Vec<Var> = self.regs(a).to_vec();
                    let out = regs.into_iter().map(|r| self.math_unary(body, op, var(r), ty)).collect();
                    self.regs.insert(id, out);
                    return;
                }
                // `abs` of an unsigned integer is the value itself (the register is signed).
                let identity = op == UnaryOp::Abs && self.dtype(a).is_unsigned_int();
                self.elementwise(id, body, |s, i| if identity { var(s.regs(a)[i]) } else { unary_expr(op, var(s.regs(a)[i]), ty) });
                self.overflow_checks(id, &[a], body);
            }
            Op::Binary(op, a, b) => {
                let (op, a, b) = (*op, *a, *b);
                if self.folded_zero_point(id, op, a, b, body) || self.packed_binary(id, op, a, b, body) {
                    return;
                }
                let operand_dtype = self.dtype(a);
                if op == BinaryOp::Pow {
                    let ty = Ty::of(operand_dtype);
                    let pairs: Vec<(Var, Var)> = self.regs(a).iter().copied().zip(self.regs(b).iter().copied()).collect();
                    let out = pairs.into_iter().map(|(x, y)| self.math_pow(body, var(x), var(y), ty)).collect();
                    self.regs.insert(id, out);
                    return;
                }
                let unsigned = operand_dtype.is_unsigned_int();
                self.elementwise(id, body, |s, i| {
                    let (x, y) = (var(s.regs(a)[i]), var(s.regs(b)[i]));
                    if matches!(op, BinaryOp::Shl | BinaryOp::Shr) {
                        return shift_expr(op, x, y, operand_dtype, Ty::of(operand_dtype));
                    }
                    if unsigned {
                        if let Some(e) = unsigned_binary(op, x.clone(), y.clone()) {
                            return e;
                        }
                    }
                    binary_expr(op, x, y)
                });
                self.overflow_checks(id, &[a, b], body);
            }
            Op::Cast(a) => {
                let a = *a;
                let (from, to) = (self.dtype(a), dtype.expect("typed"));
                let regs: Vec<Var> = self.regs(a).to_vec();
                if from == to {
                    // The same registers (and pairs).
                    self.regs.insert(id, regs);
                    if let Some(pairs) = self.packed.get(&a).cloned() {
                        self.packed.insert(id, pairs);
                    }
                } else if let Some(cast) = {
                    let pairing = self.pairing(id);
                    self.cast_to_half_fast_packed(body, &regs, &pairing, from, to)
                } {
                    self.regs.insert(id, cast.regs);
                    if let Some(pairs) = cast.pairs {
                        self.packed.insert(id, pairs);
                    }
                    if let Some(raw) = cast.raw {
                        self.raw_pairs.insert(id, raw);
                    }
                } else if from.is_low_precision() || to.is_low_precision() {
                    let out = regs.into_iter().map(|r| self.cast_into(body, var(r), from, to)).collect();
                    self.regs.insert(id, out);
                } else {
                    self.elementwise(id, body, |s, i| s.cast_expr(var(s.regs(a)[i]), from, to));
                }
            }
            Op::Splat(a) => {
                let a = *a;
                self.elementwise(id, body, |s, _| var(s.scalar(a)));
            }
            Op::View(a) => {
                let a = *a;
                self.view(id, a, body);
            }
            Op::Select { cond, a, b } => {
                let (c, a, b) = (*cond, *a, *b);
                self.elementwise(id, body, |s, i| {
                    let pick = |v: ValueId| if s.regs(v).len() == 1 { s.regs(v)[0] } else { s.regs(v)[i] };
                    Expr::Select(Box::new(var(pick(c))), Box::new(var(pick(a))), Box::new(var(pick(b))))
                });
            }
            Op::Load { param, offsets, pad } => self.load(id, param.index(), offsets, *pad, body),
            // Placed by the plan (`passes::plan_shared_memory`).
            Op::SharedAlloc => {}
            Op::LoadShared { shared, offsets } => self.load_shared(id, *shared, offsets, body),
            Op::StoreShared { shared, value, offsets } => self.store_shared(*shared, *value, offsets, body),
            Op::CopyAsync { shared, dst_offsets, param, src_offsets } => {
                self.copy_async(id, *shared, dst_offsets, param.index(), src_offsets, body)
            }
            Op::Commit => body.push(lir::Stmt::CommitGroup),
            Op::Wait(n) => body.push(lir::Stmt::WaitGroup(*n)),
            Op::Sync => body.push(lir::Stmt::Barrier),
            Op::Print { value, label } => self.print(*value, label, body),
            Op::Store { param, value, offsets } => self.store(param.index(), *value, offsets, body),
            Op::AtomicAdd { param, value, offsets } => self.atomic_add(param.index(), *value, offsets, body),
            Op::Broadcast(a) => self.broadcast(id, *a, body),
            Op::Reduce { op, value, dim } => self.reduce(id, *op, *value, *dim, body),
            Op::Dot { a, b, c } => self.dot(id, *a, *b, *c, body),
            Op::Permute { value, perm } => {
                let (value, perm) = (*value, perm.clone());
                self.rearrange(id, value, Some(&perm), body);
            }
            Op::Reshape(value) => {
                let value = *value;
                self.rearrange(id, value, None, body);
            }
        }
    }

    /// `print`: each element once, from the thread that holds its primary copy (a scalar from
    /// thread 0), as an f64 (floats, low-precision codes decoded) or an i64 (integers, bool;
    /// a u64 as its bits, printed unsigned).
    fn print(&mut self, value: ValueId, label: &str, body: &mut Vec<lir::Stmt>) {
        let dtype = self.dtype(value);
        // The printed value: an f64 or a 64-bit integer, by the cast semantics (exact for every
        // dtype: a u64 stays a u64, its i64 register printed unsigned).
        let unsigned = dtype == DType::U64;
        let target = if dtype.is_float() { DType::F64 } else if unsigned { DType::U64 } else { DType::I64 };
        let printed = |s: &mut Self, out: &mut Vec<lir::Stmt>, register: Var| -> Expr { var(s.cast_into(out, var(register), dtype, target)) };
        let mut lines = Vec::new();
        let guard = if self.k.value(value).ty.is_scalar() {
            let register = self.scalar(value);
            let v = printed(self, &mut lines, register);
            lines.push(lir::Stmt::Print { label: label.to_string(), coords: Vec::new(), value: v, unsigned });
            cmp(CmpOp::Eq, Expr::ThreadIdx, int(Ty::I32, 0))
        } else {
            let layout = self.layout(value).clone();
            for i in 0..layout.local_size() {
                let coords = self.coords(&layout, i);
                let register = self.regs(value)[i];
                let v = printed(self, &mut lines, register);
                lines.push(lir::Stmt::Print { label: label.to_string(), coords, value: v, unsigned });
            }
            self.is_first_replica(&layout)
        };
        guarded(body, guard, lines);
    }
}

/// Appends `stmts`, under `guard` unless it is the constant true (a layout without replicas).
fn guarded(body: &mut Vec<lir::Stmt>, guard: Expr, stmts: Vec<lir::Stmt>) {
    if matches!(guard, Expr::Int(_, 1)) {
        body.extend(stmts);
    } else {
        body.push(lir::Stmt::If { cond: guard, then_body: stmts, else_body: Vec::new() });
    }
}
