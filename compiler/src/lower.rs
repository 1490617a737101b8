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

use crate::dtype::DType;
use crate::number::Number;
use crate::ir::{self, BinaryOp, Kernel, Op, ParamKind, ReduceOp, Stmt, SymExpr, Type, UnaryOp, ValueId};
use crate::ir::plan::{self, MmaInstruction, OperandSource, Strategy};
use crate::layout::RegisterLayout;
use crate::lir::{self, CmpOp, Expr, Program, Ty, Var};
use crate::passes::divisibility::{self, Assumptions, Divisibility};
use std::collections::HashMap;

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

struct Lower<'k> {
    k: &'k Kernel,
    p: Program,
    /// Registers of every IR value computed so far.
    regs: HashMap<ValueId, Vec<Var>>,
    var_regs: HashMap<ir::VarId, Vec<Var>>,
    /// `(tid / stride) % extent`, computed once in the prologue.
    thread_parts: HashMap<(usize, usize), Var>,
    /// i64 extents and row-major strides of each global tensor parameter.
    extents: HashMap<usize, (Vec<Var>, Vec<Var>)>,
    /// What the variant knows about the divisibility of scalars and extents.
    div: Divisibility,
}

/// The LIR of a unary operation on one element (`ty` is the element's register type).
fn unary_expr(op: UnaryOp, x: Expr, ty: Ty) -> Expr {
    let u = |o| Expr::Unary(o, Box::new(x.clone()));
    match op {
        UnaryOp::Neg => u(lir::UnaryOp::Neg),
        UnaryOp::Not => u(lir::UnaryOp::Not),
        UnaryOp::Abs => u(lir::UnaryOp::Abs),
        UnaryOp::Exp => u(lir::UnaryOp::Exp),
        UnaryOp::Exp2 => u(lir::UnaryOp::Exp2),
        UnaryOp::Log => u(lir::UnaryOp::Log),
        UnaryOp::Sqrt => u(lir::UnaryOp::Sqrt),
        UnaryOp::Rsqrt => u(lir::UnaryOp::Rsqrt),
        UnaryOp::Tanh => u(lir::UnaryOp::Tanh),
        // 1 / (1 + exp(-x))
        UnaryOp::Sigmoid => bin(
            lir::BinaryOp::Div,
            Expr::Float(ty, 1.0),
            bin(
                lir::BinaryOp::Add,
                Expr::Float(ty, 1.0),
                Expr::Unary(lir::UnaryOp::Exp, Box::new(Expr::Unary(lir::UnaryOp::Neg, Box::new(x.clone())))),
            ),
        ),
    }
}

/// The LIR of a binary operation on one element of a signed or float dtype.
fn binary_expr(op: BinaryOp, x: Expr, y: Expr) -> Expr {
    use lir::BinaryOp as B;
    match op {
        BinaryOp::Add => bin(B::Add, x, y),
        BinaryOp::Sub => bin(B::Sub, x, y),
        BinaryOp::Mul => bin(B::Mul, x, y),
        BinaryOp::Div => bin(B::Div, x, y),
        BinaryOp::Rem => bin(B::Rem, x, y),
        BinaryOp::Max => bin(B::Max, x, y),
        BinaryOp::Min => bin(B::Min, x, y),
        BinaryOp::And => bin(B::And, x, y),
        BinaryOp::Or => bin(B::Or, x, y),
        BinaryOp::Lt => cmp(CmpOp::Lt, x, y),
        BinaryOp::Le => cmp(CmpOp::Le, x, y),
        BinaryOp::Gt => cmp(CmpOp::Gt, x, y),
        BinaryOp::Ge => cmp(CmpOp::Ge, x, y),
        BinaryOp::Eq => cmp(CmpOp::Eq, x, y),
        BinaryOp::Ne => cmp(CmpOp::Ne, x, y),
    }
}

/// The register holding the constant `value` of dtype `d`: low-precision floats hold the code
/// of the rounded value, everything else the value.
fn constant_register(d: DType, value: Number) -> Expr {
    match d.round_number(value) {
        Number::Float(f) if d.is_low_precision() => {
            crate::lower_numerics::code_to_container(int(Ty::I32, d.encode(f) as i64))
        }
        Number::Float(f) => Expr::Float(Ty::of(d), f),
        // An integer register holds the bit pattern: a u64 beyond i64::MAX wraps.
        Number::Int(v) => Expr::Int(Ty::of(d), v as i64),
    }
}

/// Element `index` of a packed sub-byte tensor, as the register of its dtype: integers are
/// sign- or zero-extended values, floats keep their code.
fn packed_load(param: usize, index: Expr, dtype: DType) -> Expr {
    let bits = dtype.bits();
    let bit_index = bin(lir::BinaryOp::Mul, index, int(Ty::I64, bits as i64));
    let code = Expr::LoadGlobalBits { param, bit_index: Box::new(bit_index), bits };
    let value = if dtype.is_signed_int() { crate::lower_numerics::sign_extend(code, bits) } else { code };
    Expr::Cast { to: Ty::I8, value: Box::new(value), from_unsigned: false, to_unsigned: false }
}

/// Stores a register of a packed sub-byte dtype as element `index`.
fn packed_store(param: usize, index: Expr, dtype: DType, register: Expr) -> lir::Stmt {
    let bits = dtype.bits();
    let bit_index = bin(lir::BinaryOp::Mul, index, int(Ty::I64, bits as i64));
    let code = crate::lower_numerics::container_to_code(register, dtype);
    lir::Stmt::StoreGlobalBits { param, bit_index, bits, value: code }
}

/// The operations whose LIR differs for unsigned integers; `None` for the others.
fn unsigned_binary(op: BinaryOp, x: Expr, y: Expr) -> Option<Expr> {
    use lir::BinaryOp as B;
    Some(match op {
        BinaryOp::Div => bin(B::UDiv, x, y),
        BinaryOp::Rem => bin(B::URem, x, y),
        BinaryOp::Max => bin(B::UMax, x, y),
        BinaryOp::Min => bin(B::UMin, x, y),
        BinaryOp::Lt => cmp(CmpOp::ULt, x, y),
        BinaryOp::Le => cmp(CmpOp::ULe, x, y),
        BinaryOp::Gt => cmp(CmpOp::UGt, x, y),
        BinaryOp::Ge => cmp(CmpOp::UGe, x, y),
        _ => return None,
    })
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
                let from_unsigned = matches!(self.k.params[*i].kind, ParamKind::Scalar(d) if !d.is_signed_int());
                Expr::Cast { to: Ty::I64, value: Box::new(Expr::Param(*i)), from_unsigned, to_unsigned: false }
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

    /// Defines the registers of `id` as `f(i)` for each local index.
    fn elementwise(&mut self, id: ValueId, body: &mut Vec<lir::Stmt>, f: impl Fn(&Self, usize) -> Expr) {
        let ty = Ty::of(self.dtype(id));
        let n = match &self.k.value(id).ty {
            Type::Tensor { .. } => self.layout(id).local_size(),
            _ => 1,
        };
        let regs: Vec<Var> = (0..n)
            .map(|i| {
                let e = f(self, i);
                self.assign(body, ty, e)
            })
            .collect();
        self.regs.insert(id, regs);
    }

    /// Unary and binary operations on low-precision operands: each operand is widened to its
    /// dtype's compute type (f32 or i32), the operation runs there, and the result is converted
    /// back with the cast rules (comparisons give bool directly).
    fn low_precision_elementwise(&mut self, id: ValueId, body: &mut Vec<lir::Stmt>) {
        let data = self.k.value(id).clone();
        let operands: Vec<ValueId> = match &data.op {
            Op::Unary(_, a) => vec![*a],
            Op::Binary(_, a, b) => vec![*a, *b],
            _ => unreachable!("called for unary and binary operations"),
        };
        let d = self.dtype(operands[0]);
        let compute = d.compute_type();
        let cty = Ty::of(compute);
        let result = data.ty.dtype().expect("typed");
        let n = match &data.ty {
            Type::Tensor { .. } => self.layout(id).local_size(),
            _ => 1,
        };
        let mut out = Vec::new();
        for i in 0..n {
            let wide: Vec<Expr> = operands
                .iter()
                .map(|&v| {
                    let r = if self.regs(v).len() == 1 { self.regs(v)[0] } else { self.regs(v)[i] };
                    self.cast_into(body, var(r), d, compute)
                })
                .map(var)
                .collect();
            let e = match &data.op {
                // `!` on unsigned integers flips the dtype's own bits (in i32 it would flip 32).
                Op::Unary(UnaryOp::Not, _) if d.is_unsigned_int() => {
                    bin(lir::BinaryOp::Xor, wide[0].clone(), int(Ty::I32, d.int_range().expect("integer").1 as i64))
                }
                Op::Unary(op, _) => unary_expr(*op, wide[0].clone(), cty),
                Op::Binary(op, _, _) => {
                    let (x, y) = (wide[0].clone(), wide[1].clone());
                    binary_expr(*op, x, y)
                }
                _ => unreachable!(),
            };
            let r = self.assign(body, Ty::of(if result == DType::Bool { DType::Bool } else { compute }), e);
            out.push(if result == DType::Bool { r } else { self.cast_into(body, var(r), compute, result) });
        }
        self.regs.insert(id, out);
    }

    /// Integer arithmetic of 8 bits and more whose exact result does not fit its dtype is an
    /// error of the kernel (docs/language.md §5; the VM computes exactly and faults). After
    /// `id = op(operands)` each element gets a [`lir::Stmt::Check`] for the CPU backends
    /// (the GPU wraps and pays nothing) that the exact result fits: through i64 for 8 to 32
    /// bits, from the wrapped result's signs (or an unsigned comparison) for 64 bits.
    fn overflow_checks(&mut self, id: ValueId, operands: &[ValueId], body: &mut Vec<lir::Stmt>) {
        let data = self.k.value(id);
        let Some(d) = data.ty.dtype() else { return };
        let Some((symbol, op)) = overflow_checked(&data.op, d) else { return };
        let message = format!("integer overflow: the exact result of `{symbol}` does not fit {d}");
        let count = self.regs(id).len();
        for i in 0..count {
            let pick = |s: &Self, v: ValueId| {
                let r = s.regs(v);
                var(if r.len() == 1 { r[0] } else { r[i] })
            };
            let x = pick(self, operands[0]);
            let y = operands.get(1).map(|&b| pick(self, b));
            let result = var(self.regs(id)[i]);
            let cond = no_overflow(d, op, x, y, result);
            body.push(lir::Stmt::Check { cond, message: message.clone(), device: false });
        }
    }

    /// `view<to>(a)`. When the two layouts keep every bit in the thread that holds it
    /// (`view_moves_no_data`, what inference prefers), each thread cuts its own bits anew: the
    /// codes of its registers of `a`, concatenated LSB first in local order, re-sliced into the
    /// registers of `id`, every destination element an OR of constant shifts of the (at most a
    /// few) source codes it overlaps. Otherwise the operand goes through shared memory and each
    /// result element gathers its bits from there.
    fn view(&mut self, id: ValueId, a: ValueId, body: &mut Vec<lir::Stmt>) {
        let (from, to) = (self.dtype(a), self.dtype(id));
        if self.k.value(id).strategy != Some(Strategy::InRegisters) {
            self.view_through_shared(id, a, body);
            return;
        }
        let b_dst = to.bits() as i64;
        // Which source bits make up each result element: the layout module's per-thread view,
        // legal because the plan says the view moves no data.
        let cut = crate::layout::view_bits(self.layout(a), from.bits(), self.layout(id), to.bits()).expect("plan::in_registers");
        let count = self.layout(id).local_size();
        let codes: Vec<Var> = self.regs(a).to_vec().into_iter().map(|r| self.code_of_register(body, var(r), from)).collect();
        let mut out = Vec::new();
        for j in 0..count {
            let mut code: Option<Expr> = None;
            for piece in cut.source_pieces(j).expect("a result element") {
                // A piece starts at bit 0 of its source element or at bit 0 of the result.
                let c = var(codes[piece.src_local]);
                let part = if piece.src_bit == 0 {
                    bin(lir::BinaryOp::Shl, c, int(Ty::I32, piece.dst_bit as i64))
                } else {
                    bin(lir::BinaryOp::LShr, c, int(Ty::I32, piece.src_bit as i64))
                };
                code = Some(match code {
                    None => part,
                    Some(prev) => bin(lir::BinaryOp::Or, prev, part),
                });
            }
            let code = code.unwrap_or(int(Ty::I32, 0));
            let masked = if b_dst < 32 { bin(lir::BinaryOp::And, code, int(Ty::I32, (1i64 << b_dst) - 1)) } else { code };
            let code = self.assign(body, Ty::I32, masked);
            out.push(self.register_of_code(body, code, to));
        }
        self.regs.insert(id, out);
    }

    /// `view` between layouts that do not keep the bits in place: the operand is staged in
    /// shared memory (one container per element, row-major), and result element `(.., c)`,
    /// bits `[c·b', (c + 1)·b')` of its row, is put together from the source elements of that
    /// row that hold them: column `p / b` onwards, `p = c·b'`, at most `q` of them, the first
    /// shifted right by `p mod b`, the next ones left by `k·b − p mod b`. Shifts are done in i64
    /// (every amount is below `b + b' ≤ 64`); source columns past the row are clamped, and what
    /// they contribute lies above bit `b'` and is masked off.
    fn view_through_shared(&mut self, id: ValueId, a: ValueId, body: &mut Vec<lir::Stmt>) {
        let (from, to) = (self.dtype(a), self.dtype(id));
        let (b_src, b_dst) = (from.bits() as i64, to.bits() as i64);
        let source_shape = self.k.value(a).ty.shape().expect("tensor").to_vec();
        let columns = *source_shape.last().expect("tiles have rank >= 1") as i64;
        let container = Ty::of(from);
        let base = self.stage(id, body)[0];
        let layout = self.layout(id).clone();
        // The most source elements one result element can span: its first bit sits at a
        // multiple of gcd(b, b') within a source element.
        let g = crate::layout::view::gcd(b_src as usize, b_dst as usize) as i64;
        let pieces = (b_src - g + b_dst + b_src - 1) / b_src;
        let mut out = Vec::new();
        for j in 0..layout.local_size() {
            let coords = self.coords(&layout, j);
            let rank = coords.len();
            let position = self.assign(body, Ty::I32, bin(lir::BinaryOp::Mul, coords[rank - 1].clone(), int(Ty::I32, b_dst)));
            let first = self.assign(body, Ty::I32, bin(lir::BinaryOp::Div, var(position), int(Ty::I32, b_src)));
            let skip = self.assign(body, Ty::I64, to_i64(bin(lir::BinaryOp::Rem, var(position), int(Ty::I32, b_src))));
            let mut code: Option<Expr> = None;
            for piece in 0..pieces {
                let column = bin(lir::BinaryOp::Add, var(first), int(Ty::I32, piece));
                let column = bin(lir::BinaryOp::Min, column, int(Ty::I32, columns - 1));
                let mut at = coords[..rank - 1].to_vec();
                at.push(column);
                let offset = self.shared_offset(base, &at, &source_shape, container.bytes() as i64, false);
                let loaded = self.assign(body, container, Expr::LoadShared { offset: Box::new(offset), ty: container });
                let source_code = self.code_of_register(body, var(loaded), from);
                let wide = Expr::Cast { to: Ty::I64, value: Box::new(var(source_code)), from_unsigned: true, to_unsigned: false };
                let part = if piece == 0 {
                    bin(lir::BinaryOp::LShr, wide, var(skip))
                } else {
                    bin(lir::BinaryOp::Shl, wide, bin(lir::BinaryOp::Sub, int(Ty::I64, piece * b_src), var(skip)))
                };
                code = Some(match code {
                    None => part,
                    Some(prev) => bin(lir::BinaryOp::Or, prev, part),
                });
            }
            let masked = bin(lir::BinaryOp::And, code.expect("at least one piece"), int(Ty::I64, (1i64 << b_dst) - 1));
            // The masked code fits 32 unsigned bits, so the saturating conversion keeps it.
            let narrow = Expr::Cast { to: Ty::I32, value: Box::new(masked), from_unsigned: true, to_unsigned: true };
            let code = self.assign(body, Ty::I32, narrow);
            out.push(self.register_of_code(body, code, to));
        }
        body.push(lir::Stmt::Barrier);
        self.regs.insert(id, out);
    }

    /// The code of a register of `dtype` as an i32 (bits above the width are zero).
    fn code_of_register(&mut self, body: &mut Vec<lir::Stmt>, register: Expr, dtype: DType) -> Var {
        use crate::lower_numerics::container_to_code;
        let e = match Ty::of(dtype) {
            Ty::I8 => container_to_code(register, dtype),
            Ty::I16 | Ty::F16 | Ty::BF16 => {
                let raw = if Ty::of(dtype) == Ty::I16 { register } else { Expr::Bitcast { to: Ty::I16, value: Box::new(register) } };
                Expr::Cast { to: Ty::I32, value: Box::new(raw), from_unsigned: true, to_unsigned: false }
            }
            Ty::F32 => Expr::Bitcast { to: Ty::I32, value: Box::new(register) },
            _ => register,
        };
        self.assign(body, Ty::I32, e)
    }

    /// A register of `dtype` holding `code` (an i32 variable with the code in its low bits and
    /// zeros above).
    fn register_of_code(&mut self, body: &mut Vec<lir::Stmt>, code: Var, dtype: DType) -> Var {
        use crate::lower_numerics::{narrow_code, sign_extend};
        let register = match Ty::of(dtype) {
            Ty::I8 if dtype.is_signed_int() => {
                let extended = sign_extend(var(code), dtype.bits());
                Expr::Cast { to: Ty::I8, value: Box::new(extended), from_unsigned: false, to_unsigned: false }
            }
            Ty::I8 => narrow_code(var(code), Ty::I8),
            Ty::I16 => narrow_code(var(code), Ty::I16),
            Ty::F16 | Ty::BF16 => Expr::Bitcast { to: Ty::of(dtype), value: Box::new(narrow_code(var(code), Ty::I16)) },
            Ty::F32 => Expr::Bitcast { to: Ty::F32, value: Box::new(var(code)) },
            _ => var(code),
        };
        self.assign(body, Ty::of(dtype), register)
    }

    /// Converts `e` (a register of `from`) to `to` with the cast semantics, through
    /// statements; returns the register holding the result. Handles low-precision formats:
    /// floats decode to f32 and encode from f32, integers below 8 bits widen to i32 and
    /// saturate back.
    fn cast_into(&mut self, body: &mut Vec<lir::Stmt>, e: Expr, from: DType, to: DType) -> Var {
        use crate::lower_numerics::{code_to_container, container_to_code, decode_float, encode_float};
        if from == to {
            return self.assign(body, Ty::of(to), e);
        }
        if crate::lower_numerics::fast_half_cast(from, to).is_some() {
            let r = self.assign(body, Ty::of(from), e);
            let out = self.cast_to_half_fast(body, &[r], from, to).expect("fast_half_cast applies");
            return out[0];
        }
        // Widen the source to a standard dtype.
        let (wide, wide_dtype) = match from.float_format() {
            Some(f) if from.is_low_precision() => {
                let code = self.assign(body, Ty::I32, container_to_code(e, from));
                (self.assign(body, Ty::F32, decode_float(var(code), f)), DType::F32)
            }
            _ if from.is_low_precision() => {
                let widened = Expr::Cast { to: Ty::I32, value: Box::new(e), from_unsigned: false, to_unsigned: false };
                (self.assign(body, Ty::I32, widened), DType::I32)
            }
            _ => (self.assign(body, Ty::of(from), e), from),
        };
        if !to.is_low_precision() {
            let converted = self.cast_expr(var(wide), wide_dtype, to);
            return self.assign(body, Ty::of(to), converted);
        }
        match to.float_format() {
            Some(f) => {
                let x = self.to_f32_for_encoding(body, wide, wide_dtype);
                let code = self.assign(body, Ty::I32, encode_float(var(x), f));
                self.assign(body, Ty::I8, code_to_container(var(code)))
            }
            None => {
                let as_i32 = self.cast_expr(var(wide), wide_dtype, DType::I32);
                let (lo, hi) = to.int_range().expect("integer");
                let clamped = bin(
                    lir::BinaryOp::Min,
                    bin(lir::BinaryOp::Max, as_i32, int(Ty::I32, lo as i64)),
                    int(Ty::I32, hi as i64),
                );
                let narrowed = Expr::Cast { to: Ty::I8, value: Box::new(clamped), from_unsigned: false, to_unsigned: false };
                self.assign(body, Ty::I8, narrowed)
            }
        }
    }

    /// Fast dequantizing casts to f16 or bf16 (`regs` are i8 containers of `from`): integers
    /// of at most 8 bits with the magic-number trick, floats of at most 8 bits by placing
    /// their bits under the destination's fields, special codes (infinity, NaN) replaced after
    /// ([`crate::lower_numerics::FastHalfCast`]). Consecutive registers are taken in pairs:
    /// one `prmt` packs both containers into bytes 0 and 2 of an i32, one `lop3` builds both
    /// 16-bit patterns, and each half is reinterpreted as f16/bf16 and corrected by one exact
    /// subtraction or multiplication (none when the scale is 1). A last, unpaired register takes the same steps alone
    /// (without the `prmt`). Returns the result registers in the order of `regs`,
    /// bit-identical to the generic conversion (every source value is exact in the
    /// destination); `None`, with nothing emitted, for the pairs without an exact plan (see
    /// `fast_half_cast`), which take the generic path.
    fn cast_to_half_fast(&mut self, body: &mut Vec<lir::Stmt>, regs: &[Var], from: DType, to: DType) -> Option<Vec<Var>> {
        use crate::lower_numerics::{fast_half_cast, pack_pair, widen_container};
        let plan = fast_half_cast(from, to)?;
        let ty = Ty::of(to);
        let mut out = Vec::with_capacity(regs.len());
        for pair in regs.chunks(2) {
            let packed = match pair {
                [low, high] => pack_pair(var(*low), var(*high)),
                [single] => widen_container(var(*single)),
                _ => unreachable!("chunks of one or two"),
            };
            let packed = self.assign(body, Ty::I32, packed);
            let patterns = self.assign(body, Ty::I32, plan.patterns(var(packed)));
            for high in [false, true].into_iter().take(pair.len()) {
                let mut value = self.assign(body, ty, plan.half(var(patterns), high, ty));
                if let Some(fixed) = plan.fix_specials(var(value), var(packed), high, ty) {
                    value = self.assign(body, ty, fixed);
                }
                out.push(value);
            }
        }
        Some(out)
    }

    /// `wide` (a register of `wide_dtype`) as an f32 that rounds into every low-precision
    /// format exactly like the value itself: exact conversions stay as they are; f64 (and
    /// integers, through f64) are narrowed by rounding to odd, which makes the later rounding
    /// into a format of at most 11 significand bits a single correct rounding.
    fn to_f32_for_encoding(&mut self, body: &mut Vec<lir::Stmt>, wide: Var, wide_dtype: DType) -> Var {
        let exact_in_f32 = wide_dtype == DType::F32
            || (wide_dtype.is_float() && wide_dtype.bits() <= 16)
            || (wide_dtype.is_int() && wide_dtype.bits() <= 16)
            || wide_dtype == DType::Bool;
        if exact_in_f32 {
            let e = self.cast_expr(var(wide), wide_dtype, DType::F32);
            return self.assign(body, Ty::F32, e);
        }
        let as_f64 = self.cast_expr(var(wide), wide_dtype, DType::F64);
        let x = self.assign(body, Ty::F64, as_f64);
        let nearest = Expr::Cast { to: Ty::F32, value: Box::new(var(x)), from_unsigned: false, to_unsigned: false };
        let t = self.assign(body, Ty::F32, nearest);
        let back = Expr::Cast { to: Ty::F64, value: Box::new(var(t)), from_unsigned: false, to_unsigned: false };
        let back = self.assign(body, Ty::F64, back);
        // Inexact: step to the f32 below in magnitude if nearest rounded away from zero, then
        // set the last bit (round to odd). NaN compares unequal and keeps its (odd or even) bits
        // harmlessly: every NaN encodes to the format's NaN.
        let bits = self.assign(body, Ty::I32, Expr::Bitcast { to: Ty::I32, value: Box::new(var(t)) });
        let away = cmp(
            CmpOp::Gt,
            Expr::Unary(lir::UnaryOp::Abs, Box::new(var(back))),
            Expr::Unary(lir::UnaryOp::Abs, Box::new(var(x))),
        );
        let toward_zero = Expr::Select(Box::new(away), Box::new(bin(lir::BinaryOp::Sub, var(bits), int(Ty::I32, 1))), Box::new(var(bits)));
        let odd = bin(lir::BinaryOp::Or, toward_zero, int(Ty::I32, 1));
        let exact = cmp(CmpOp::Eq, var(back), var(x));
        let chosen = Expr::Select(Box::new(exact), Box::new(var(bits)), Box::new(odd));
        self.assign(body, Ty::F32, Expr::Bitcast { to: Ty::F32, value: Box::new(chosen) })
    }

    fn cast_expr(&self, e: Expr, from: DType, to: DType) -> Expr {
        if from == to {
            return e;
        }
        if to == DType::Bool {
            let zero = float_or_int(Ty::of(from), 0.0);
            return cmp(CmpOp::Ne, e, zero);
        }
        Expr::Cast {
            to: Ty::of(to),
            value: Box::new(e),
            from_unsigned: from == DType::Bool || (from.is_int() && !from.is_signed_int()),
            to_unsigned: to.is_int() && !to.is_signed_int(),
        }
    }

    fn value(&mut self, id: ValueId, body: &mut Vec<lir::Stmt>) {
        let data = self.k.value(id);
        let dtype = data.ty.dtype();
        // Instructions that touch memory, move data between threads or divide integers say
        // where they come from, so the simulator can name the source of a fault or a race.
        let divides = matches!(data.op, Op::Binary(BinaryOp::Div | BinaryOp::Rem, ..)) && dtype.is_some_and(|d| d.is_int());
        let may_overflow = dtype.is_some_and(|d| overflow_checked(&data.op, d).is_some());
        if divides || may_overflow || matches!(data.op, Op::Load { .. } | Op::Store { .. } | Op::LoadShared { .. } | Op::StoreShared { .. } | Op::CopyAsync { .. } | Op::Commit | Op::Wait(_) | Op::Sync | Op::Dot { .. } | Op::Reduce { .. } | Op::Broadcast(_) | Op::View(_) | Op::Permute { .. } | Op::Reshape(_)) {
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
                self.elementwise(id, body, |_, _| Expr::Param(i));
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
                // `abs` of an unsigned integer is the value itself (the register is signed).
                let identity = op == UnaryOp::Abs && self.dtype(a).is_unsigned_int();
                self.elementwise(id, body, |s, i| if identity { var(s.regs(a)[i]) } else { unary_expr(op, var(s.regs(a)[i]), ty) });
                self.overflow_checks(id, &[a], body);
            }
            Op::Binary(op, a, b) => {
                let (op, a, b) = (*op, *a, *b);
                let unsigned = self.dtype(a).is_unsigned_int();
                self.elementwise(id, body, |s, i| {
                    let (x, y) = (var(s.regs(a)[i]), var(s.regs(b)[i]));
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
                if let Some(out) = self.cast_to_half_fast(body, &regs, from, to) {
                    self.regs.insert(id, out);
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
            Op::Load { param, offsets, pad } => self.load(id, *param, offsets, *pad, body),
            // Allocated by `plan_shared`.
            Op::SharedAlloc => {}
            Op::LoadShared { shared, offsets } => self.load_shared(id, *shared, offsets, body),
            Op::StoreShared { shared, value, offsets } => self.store_shared(*shared, *value, offsets, body),
            Op::CopyAsync { shared, dst_offsets, param, src_offsets } => {
                self.copy_async(id, *shared, dst_offsets, *param, src_offsets, body)
            }
            Op::Commit => body.push(lir::Stmt::CommitGroup),
            Op::Wait(n) => body.push(lir::Stmt::WaitGroup(*n)),
            Op::Sync => body.push(lir::Stmt::Barrier),
            Op::Print { value, label } => self.print(*value, label, body),
            Op::Store { param, value, offsets } => self.store(*param, *value, offsets, body),
            Op::Broadcast(a) => {
                let a = *a;
                let from = self.k.value(a).ty.shape().expect("tensor").to_vec();
                let base = self.stage(id, body)[0];
                let layout = self.layout(id).clone();
                let ty = Ty::of(dtype.expect("typed"));
                let bytes = ty.bytes() as i64;
                let mut regs = Vec::new();
                for i in 0..layout.local_size() {
                    let coords = self.coords(&layout, i);
                    let offset = self.shared_offset(base, &coords, &from, bytes, true);
                    regs.push(self.assign(body, ty, Expr::LoadShared { offset: Box::new(offset), ty }));
                }
                body.push(lir::Stmt::Barrier);
                self.regs.insert(id, regs);
            }
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

    /// `permute` (with `perm`) and `reshape` (without). When the result's layout is the
    /// operand's layout permuted or reshaped (what inference prefers), every thread already
    /// holds its elements at the same local indices and the registers are reused; otherwise
    /// the tile goes through shared memory (row-major, which a reshape leaves unchanged).
    fn rearrange(&mut self, id: ValueId, value: ValueId, perm: Option<&[usize]>, body: &mut Vec<lir::Stmt>) {
        let to = self.layout(id).clone();
        let shape = self.k.value(id).ty.shape().expect("tensor").to_vec();
        if self.k.value(id).strategy == Some(Strategy::InRegisters) {
            let regs = self.regs(value).to_vec();
            self.regs.insert(id, regs);
            return;
        }
        let source_shape = self.k.value(value).ty.shape().expect("tensor").to_vec();
        let base = self.stage(id, body)[0];
        let ty = Ty::of(self.dtype(id));
        let mut regs = Vec::new();
        for i in 0..to.local_size() {
            let coords = self.coords(&to, i);
            let offset = match perm {
                // Result dimension d is operand dimension perm[d].
                Some(p) => {
                    let mut source = vec![int(Ty::I32, 0); p.len()];
                    for (d, &q) in p.iter().enumerate() {
                        source[q] = coords[d].clone();
                    }
                    self.shared_offset(base, &source, &source_shape, ty.bytes() as i64, false)
                }
                None => self.shared_offset(base, &coords, &shape, ty.bytes() as i64, false),
            };
            regs.push(self.assign(body, ty, Expr::LoadShared { offset: Box::new(offset), ty }));
        }
        body.push(lir::Stmt::Barrier);
        self.regs.insert(id, regs);
    }

    /// Byte offset of element `coords` in a row-major staged tile of `shape` at `base`.
    /// With `clamp_broadcast`, dims of extent 1 read index 0 (broadcast).
    fn shared_offset(&self, base: usize, coords: &[Expr], shape: &[usize], bytes: i64, clamp_broadcast: bool) -> Expr {
        let mut flat: Option<Expr> = None;
        for (d, c) in coords.iter().enumerate() {
            let c = if clamp_broadcast && shape[d] == 1 { int(Ty::I32, 0) } else { c.clone() };
            flat = Some(match flat {
                None => c,
                Some(f) => bin(lir::BinaryOp::Add, bin(lir::BinaryOp::Mul, f, int(Ty::I32, shape[d] as i64)), c),
            });
        }
        let flat = flat.unwrap_or(int(Ty::I32, 0));
        bin(lir::BinaryOp::Add, int(Ty::I32, base as i64), bin(lir::BinaryOp::Mul, flat, int(Ty::I32, bytes)))
    }

    /// Byte offset (i32) in the shared buffer of the element at `offsets` (one per dim of
    /// shared tensor `shared`) plus `tile_coords` (over its trailing dims); for a format
    /// narrower than a byte, its bit offset.
    fn shared_element(&self, shared: ValueId, offsets: &[Expr], tile_coords: &[Expr]) -> Expr {
        let Type::Shared { dtype, shape } = &self.k.value(shared).ty else { unreachable!("verified: a shared tensor") };
        let lead = shape.len() - tile_coords.len();
        let coords: Vec<Expr> = (0..shape.len())
            .map(|d| match (d < lead, &offsets[d]) {
                (true, o) => o.clone(),
                (false, Expr::Int(_, 0)) => tile_coords[d - lead].clone(),
                (false, o) => bin(lir::BinaryOp::Add, o.clone(), tile_coords[d - lead].clone()),
            })
            .collect();
        let base = self.k.value(shared).shared_offsets[0];
        // Packed formats are addressed by the bit, the others by the byte.
        if dtype.bits() < 8 {
            self.shared_offset(base * 8, &coords, shape, dtype.bits() as i64, false)
        } else {
            self.shared_offset(base, &coords, shape, Ty::of(*dtype).bytes() as i64, false)
        }
    }

    /// A `Check` that the tile of `tile` extents at `offsets` (one per dim of the shared
    /// tensor; the tile covers the trailing dims) lies inside shared tensor `shared`: the
    /// language makes an access outside it an error, also where the bytes would still be in
    /// the shared buffer. Dims whose offset is a constant inside the tensor need no test.
    fn shared_bounds_check(&mut self, what: &str, shared: ValueId, offsets: &[ValueId], tile: &[usize], body: &mut Vec<lir::Stmt>) {
        let Type::Shared { shape, .. } = &self.k.value(shared).ty else { unreachable!("verified: a shared tensor") };
        let shape = shape.clone();
        let lead = shape.len() - tile.len();
        let mut conds = Vec::new();
        for (d, &o) in offsets.iter().enumerate() {
            let extent = if d < lead { 1 } else { tile[d - lead] } as i64;
            let limit = shape[d] as i64 - extent;
            if let Op::Const(Number::Int(c)) = self.k.value(o).op {
                if c >= 0 && c <= limit as i128 {
                    continue;
                }
            }
            let register = self.scalar(o);
            let ty = self.p.vars[register.0 as usize];
            conds.push(cmp(CmpOp::Ge, var(register), int(ty, 0)));
            conds.push(cmp(CmpOp::Le, var(register), int(ty, limit)));
        }
        if conds.is_empty() {
            return;
        }
        let message =
            format!("`{what}` of a {tile:?} tile reaches outside its shared tensor of shape {shape:?} (the offsets must keep the tile inside it)");
        body.push(lir::Stmt::Check { cond: and_all(conds), message, device: true });
    }

    fn load_shared(&mut self, id: ValueId, shared: ValueId, offsets: &[ValueId], body: &mut Vec<lir::Stmt>) {
        let tile = self.k.value(id).ty.shape().expect("tile").to_vec();
        self.shared_bounds_check("load", shared, offsets, &tile, body);
        let layout = self.layout(id).clone();
        let dtype = self.dtype(id);
        let ty = Ty::of(dtype);
        let offsets: Vec<Expr> = offsets.iter().map(|o| var(self.scalar(*o))).collect();
        let mut regs = Vec::new();
        for i in 0..layout.local_size() {
            let coords = self.coords(&layout, i);
            let offset = self.shared_element(shared, &offsets, &coords);
            let loaded = if dtype.bits() < 8 {
                // A packed code, into its i8 container (integers sign- or zero-extended).
                let bits = dtype.bits();
                let code = Expr::LoadSharedBits { bit_offset: Box::new(offset), bits };
                let value = if dtype.is_signed_int() { crate::lower_numerics::sign_extend(code, bits) } else { code };
                Expr::Cast { to: Ty::I8, value: Box::new(value), from_unsigned: false, to_unsigned: false }
            } else {
                Expr::LoadShared { offset: Box::new(offset), ty }
            };
            regs.push(self.assign(body, ty, loaded));
        }
        self.regs.insert(id, regs);
    }

    fn store_shared(&mut self, shared: ValueId, value: ValueId, offsets: &[ValueId], body: &mut Vec<lir::Stmt>) {
        let tile = self.k.value(value).ty.shape().expect("tile").to_vec();
        self.shared_bounds_check("store", shared, offsets, &tile, body);
        let layout = self.layout(value).clone();
        let offsets: Vec<Expr> = offsets.iter().map(|o| var(self.scalar(*o))).collect();
        let mut stores = Vec::new();
        for i in 0..layout.local_size() {
            let coords = self.coords(&layout, i);
            let offset = self.shared_element(shared, &offsets, &coords);
            stores.push(lir::Stmt::StoreShared { offset, value: var(self.regs(value)[i]) });
        }
        guarded(body, self.is_first_replica(&layout), stores);
    }

    /// `copy_async`: each thread (primary copies only) moves its runs of the tile (whole bytes).
    /// When a run is 4, 8 or 16 bytes and the source rows and offsets are aligned to it (proven
    /// by the divisibility analysis, or else tested at run time for the whole block), each run
    /// is one `cp.async` that zero-fills what lies outside the tensor; otherwise every element is loaded (zero outside the tensor) and stored to
    /// shared memory directly, which is already complete when the group's `wait` returns.
    fn copy_async(&mut self, id: ValueId, shared: ValueId, dst_offsets: &[ValueId], param: usize, src_offsets: &[ValueId], body: &mut Vec<lir::Stmt>) {
        let Some(Strategy::Copy { layout, run }) = self.k.value(id).strategy.clone() else {
            unreachable!("plan::verify_plan: every copy_async has a copy strategy")
        };
        let rank = src_offsets.len();
        {
            let Type::Shared { shape, .. } = &self.k.value(shared).ty else { unreachable!("verified: a shared tensor") };
            let tile = shape[shape.len() - rank..].to_vec();
            self.shared_bounds_check("copy_async", shared, dst_offsets, &tile, body);
        }
        let dtype = self.dtype(shared);
        let ty = Ty::of(dtype);
        let mut dst: Vec<Expr> = dst_offsets.iter().map(|o| var(self.scalar(*o))).collect();
        dst.extend((0..rank).map(|_| int(Ty::I32, 0)));
        let bits = dtype.bits() as i64;
        // The synchronous path, element by element (all bits zero outside the tensor, as
        // `cp.async` zero-fills). Packed codes go as they are: the copy layout gives each
        // thread whole bytes, so no two threads write one byte.
        let mut slow = Vec::new();
        for i in 0..layout.local_size() {
            let (inb, index) = self.global_access(param, &layout, src_offsets, i);
            let offset = self.shared_element(shared, &dst, &self.coords(&layout, i));
            if bits < 8 {
                let bit_index = bin(lir::BinaryOp::Mul, index, int(Ty::I64, bits));
                let code = Expr::LoadGlobalBits { param, bit_index: Box::new(bit_index), bits: bits as u32 };
                let r = self.new_var(Ty::I32);
                slow.push(lir::Stmt::If { cond: inb, then_body: vec![lir::Stmt::Assign(r, code)], else_body: vec![lir::Stmt::Assign(r, int(Ty::I32, 0))] });
                slow.push(lir::Stmt::StoreSharedBits { bit_offset: offset, bits: bits as u32, value: var(r) });
            } else {
                let loaded = Expr::LoadGlobal { param, index: Box::new(index), ty };
                let r = self.new_var(ty);
                let zero = if ty.is_float() { Expr::Float(ty, 0.0) } else { int(ty, 0) };
                slow.push(lir::Stmt::If { cond: inb, then_body: vec![lir::Stmt::Assign(r, loaded)], else_body: vec![lir::Stmt::Assign(r, zero)] });
                slow.push(lir::Stmt::StoreShared { offset, value: var(r) });
            }
        }
        // A run's bytes (whole bytes: for sub-byte formats the copy layout makes it so).
        let run_bits = run as i64 * if bits < 8 { bits } else { ty.bytes() as i64 * 8 };
        let run_bytes = run_bits / 8;
        let vector = run_bits % 8 == 0 && matches!(run_bytes, 4 | 8 | 16);
        let copies = if !vector {
            slow
        } else {
            let (extents, strides) = self.extents[&param].clone();
            let mut fast = Vec::new();
            for r in 0..layout.local_size() / run {
                let coords = self.coords(&layout, r * run);
                let mut lead_in_bounds = Vec::new();
                let mut index: Option<Expr> = None;
                let mut last_g = None;
                for (d, c) in coords.iter().enumerate() {
                    let g = self.assign(&mut fast, Ty::I64, to_i64(bin(lir::BinaryOp::Add, var(self.scalar(src_offsets[d])), c.clone())));
                    if d + 1 < rank {
                        lead_in_bounds.push(cmp(CmpOp::Ge, var(g), int(Ty::I64, 0)));
                        lead_in_bounds.push(cmp(CmpOp::Lt, var(g), var(extents[d])));
                    } else {
                        last_g = Some(g);
                    }
                    let term = bin(lir::BinaryOp::Mul, var(g), var(strides[d]));
                    index = Some(match index {
                        None => term,
                        Some(i) => bin(lir::BinaryOp::Add, i, term),
                    });
                }
                let last_g = last_g.expect("rank >= 1");
                // Elements of the run inside the tensor: clamp(extent - g, 0, run), or none
                // when g < 0 (runs are aligned, so a run never straddles 0) or a leading
                // coordinate is outside.
                let left = bin(lir::BinaryOp::Sub, var(extents[rank - 1]), var(last_g));
                let left = bin(lir::BinaryOp::Min, bin(lir::BinaryOp::Max, left, int(Ty::I64, 0)), int(Ty::I64, run as i64));
                lead_in_bounds.push(cmp(CmpOp::Ge, var(last_g), int(Ty::I64, 0)));
                let inside = self.assign(&mut fast, Ty::I1, and_all(lead_in_bounds));
                let count = Expr::Select(Box::new(var(inside)), Box::new(left), Box::new(int(Ty::I64, 0)));
                let count = Expr::Cast { to: Ty::I32, value: Box::new(count), from_unsigned: false, to_unsigned: false };
                // Runs are all or nothing inside the tensor (aligned offsets and rows), so
                // `count · bits` is whole bytes.
                let (scale, unit) = if bits < 8 { (bits, 8) } else { (ty.bytes() as i64, 1) };
                let src_bytes = self.assign(&mut fast, Ty::I32, bin(lir::BinaryOp::Div, bin(lir::BinaryOp::Mul, count, int(Ty::I32, scale)), int(Ty::I32, unit)));
                // A run with nothing to read still needs a valid address: the tensor's start.
                let byte_index = bin(
                    lir::BinaryOp::Div,
                    bin(lir::BinaryOp::Mul, index.expect("rank >= 1"), int(Ty::I64, scale)),
                    int(Ty::I64, unit),
                );
                let reads = cmp(CmpOp::Gt, var(src_bytes), int(Ty::I32, 0));
                let byte_index = Expr::Select(Box::new(reads), Box::new(byte_index), Box::new(int(Ty::I64, 0)));
                let element = self.shared_element(shared, &dst, &coords);
                let offset = if bits < 8 { bin(lir::BinaryOp::Div, element, int(Ty::I32, 8)) } else { element };
                fast.push(lir::Stmt::CopyAsync { offset, param, byte_index, bytes: run_bytes as u32, src_bytes: var(src_bytes) });
            }
            // Aligned when the source offset along the last dim and the row length (for
            // rank > 1) are multiples of the run: proven by the divisibility analysis, or
            // tested at run time. A run of a packed format must also lie wholly inside or
            // wholly outside the tensor (a partial byte would carry bits of elements past its
            // end), so for those the last extent is a multiple of the run at any rank.
            let ParamKind::Global { shape: global_shape, .. } = &self.k.params[param].kind else { unreachable!("a global tensor") };
            let log2_run = run.trailing_zeros();
            let extent_matters = rank > 1 || bits < 8;
            let proven = self.div.value(src_offsets[rank - 1]) >= log2_run && (!extent_matters || self.div.sym(&global_shape[rank - 1]) >= log2_run);
            if proven {
                fast
            } else {
                let mut aligned = vec![cmp(
                    CmpOp::Eq,
                    bin(lir::BinaryOp::Rem, to_i64(var(self.scalar(src_offsets[rank - 1]))), int(Ty::I64, run as i64)),
                    int(Ty::I64, 0),
                )];
                if extent_matters {
                    aligned.push(cmp(CmpOp::Eq, bin(lir::BinaryOp::Rem, var(extents[rank - 1]), int(Ty::I64, run as i64)), int(Ty::I64, 0)));
                }
                vec![lir::Stmt::If { cond: and_all(aligned), then_body: fast, else_body: slow }]
            }
        };
        guarded(body, self.is_first_replica(&layout), copies);
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

    /// Writes the operands that instruction `id`'s strategy stages (`plan::staged_operands`) to
    /// the scratch space the plan gives them (row-major, one container per element) and waits
    /// for every thread. Returns each operand's base offset.
    fn stage(&mut self, id: ValueId, body: &mut Vec<lir::Stmt>) -> Vec<usize> {
        let data = self.k.value(id);
        let values = data.strategy.as_ref().map(|s| plan::staged_operands(self.k, id, s)).unwrap_or_default();
        let bases = data.shared_offsets.clone();
        for (&v, &offset) in values.iter().zip(&bases) {
            let shape = self.k.value(v).ty.shape().expect("tensor").to_vec();
            let bytes = Ty::of(self.dtype(v)).bytes();
            let layout = self.layout(v).clone();
            let mut stores = Vec::new();
            for i in 0..layout.local_size() {
                let coords = self.coords(&layout, i);
                let off = self.shared_offset(offset, &coords, &shape, bytes as i64, false);
                stores.push(lir::Stmt::StoreShared { offset: off, value: var(self.regs(v)[i]) });
            }
            guarded(body, self.is_first_replica(&layout), stores);
        }
        body.push(lir::Stmt::Barrier);
        bases
    }

    /// Global coordinates (i64), the in-bounds predicate and the element index of register
    /// `local` of a tile at `offsets` in tensor `param`.
    fn global_access(&self, param: usize, layout: &RegisterLayout, offsets: &[ValueId], local: usize) -> (Expr, Expr) {
        let (extents, strides) = &self.extents[&param];
        let coords = self.coords(layout, local);
        let mut conds = Vec::new();
        let mut index: Option<Expr> = None;
        for (d, c) in coords.into_iter().enumerate() {
            let g = to_i64(bin(lir::BinaryOp::Add, var(self.scalar(offsets[d])), c));
            conds.push(cmp(CmpOp::Ge, g.clone(), int(Ty::I64, 0)));
            conds.push(cmp(CmpOp::Lt, g.clone(), var(extents[d])));
            let term = bin(lir::BinaryOp::Mul, g, var(strides[d]));
            index = Some(match index {
                None => term,
                Some(i) => bin(lir::BinaryOp::Add, i, term),
            });
        }
        (and_all(conds), index.unwrap_or(int(Ty::I64, 0)))
    }

    fn load(&mut self, id: ValueId, param: usize, offsets: &[ValueId], pad: Number, body: &mut Vec<lir::Stmt>) {
        let layout = self.layout(id).clone();
        let dtype = self.dtype(id);
        let ty = Ty::of(dtype);
        // The register of the pad: low-precision floats hold a code.
        let pad = constant_register(dtype, pad);
        let v = self.vector_width(param, &layout, offsets, dtype);
        if v > 1 {
            let mut regs = Vec::new();
            for group in 0..layout.local_size() / v {
                // One predicate for the group: it is wholly inside or wholly outside.
                let (inb, index) = self.global_access(param, &layout, offsets, group * v);
                let dst: Vec<Var> = (0..v).map(|_| self.new_var(ty)).collect();
                let then_body = self.vector_load(param, index, dtype, &dst);
                let else_body = dst.iter().map(|r| lir::Stmt::Assign(*r, pad.clone())).collect();
                body.push(lir::Stmt::If { cond: inb, then_body, else_body });
                regs.extend(dst);
            }
            self.regs.insert(id, regs);
            return;
        }
        let mut regs = Vec::new();
        for i in 0..layout.local_size() {
            let (inb, index) = self.global_access(param, &layout, offsets, i);
            let r = self.new_var(ty);
            let loaded = if dtype.bits() < 8 {
                packed_load(param, index, dtype)
            } else {
                Expr::LoadGlobal { param, index: Box::new(index), ty }
            };
            body.push(lir::Stmt::If {
                cond: inb,
                then_body: vec![lir::Stmt::Assign(r, loaded)],
                else_body: vec![lir::Stmt::Assign(r, pad.clone())],
            });
            regs.push(r);
        }
        self.regs.insert(id, regs);
    }

    fn store(&mut self, param: usize, value: ValueId, offsets: &[ValueId], body: &mut Vec<lir::Stmt>) {
        let layout = self.layout(value).clone();
        let dtype = self.dtype(value);
        let first = self.is_first_replica(&layout);
        let v = self.vector_width(param, &layout, offsets, dtype);
        if v > 1 {
            for group in 0..layout.local_size() / v {
                let (inb, index) = self.global_access(param, &layout, offsets, group * v);
                let sources: Vec<Var> = self.regs(value)[group * v..(group + 1) * v].to_vec();
                let then_body = self.vector_store(param, index, dtype, &sources);
                body.push(lir::Stmt::If { cond: bin(lir::BinaryOp::And, first.clone(), inb), then_body, else_body: Vec::new() });
            }
            return;
        }
        for i in 0..layout.local_size() {
            let (inb, index) = self.global_access(param, &layout, offsets, i);
            body.push(lir::Stmt::If {
                cond: bin(lir::BinaryOp::And, first.clone(), inb),
                then_body: vec![if dtype.bits() < 8 {
                    packed_store(param, index, dtype, var(self.regs(value)[i]))
                } else {
                    lir::Stmt::StoreGlobal { param, index, value: var(self.regs(value)[i]) }
                }],
                else_body: Vec::new(),
            });
        }
    }

    /// The number of elements `v` each vector access of a load or store of `layout` at
    /// `offsets` into global tensor `param` moves (1: per-element accesses). `v` qualifies when
    /// the layout analysis finds every group of `v` consecutive local indices to be `v`
    /// consecutive elements of one row starting at a multiple of `v`, a power-of-two number of
    /// whole bytes of at most 16 (`layout::analysis::row_tile_vector_width`), and the
    /// divisibility analysis proves the tile offset and the tensor's last extent (hence every
    /// row stride) multiples of `v`. Then each group starts at an element index that is a
    /// multiple of `v` (its byte address a multiple of its size), and, the extent being a
    /// multiple of `v`, its elements are all inside the bounds or all outside.
    fn vector_width(&self, param: usize, layout: &RegisterLayout, offsets: &[ValueId], dtype: DType) -> usize {
        let ParamKind::Global { shape, .. } = &self.k.params[param].kind else { return 1 };
        if dtype == DType::Bool || layout.rank() == 0 || shape.len() != layout.rank() || offsets.len() != layout.rank() {
            return 1;
        }
        let last = layout.rank() - 1;
        let bits = dtype.bits() as usize;
        let known = self.div.value(offsets[last]).min(self.div.sym(&shape[last]));
        let mut v = crate::layout::analysis::row_tile_vector_width(layout, dtype.bits(), 16).unwrap_or(1);
        // Narrower groups of a legal one are legal too, when they are a power-of-two number of
        // whole bytes.
        while v > 1 && (v.trailing_zeros() > known || !(v * bits).is_multiple_of(8) || !(v * bits / 8).is_power_of_two()) {
            v /= 2;
        }
        v
    }

    /// The register type and count of the words that carry `v` packed sub-byte elements of
    /// `bits` bits (`v · bits / 8` bytes, a power of two from 1 to 16).
    fn packed_words(v: usize, bits: u32) -> (Ty, usize) {
        match v * bits as usize / 8 {
            1 => (Ty::I8, 1),
            2 => (Ty::I16, 1),
            4 => (Ty::I32, 1),
            bytes => (Ty::I32, bytes / 4),
        }
    }

    /// The statements of a vector load of `dst.len()` elements of `dtype` from element `index`
    /// (a multiple of the vector, inside the bounds) into the registers `dst`.
    fn vector_load(&mut self, param: usize, index: Expr, dtype: DType, dst: &[Var]) -> Vec<lir::Stmt> {
        let bits = dtype.bits();
        if bits >= 8 {
            let byte_offset = bin(lir::BinaryOp::Mul, index, int(Ty::I64, (bits / 8) as i64));
            return vec![lir::Stmt::LoadGlobalVector { dst: dst.to_vec(), param, byte_offset, ty: Ty::of(dtype) }];
        }
        let (word_ty, count) = Self::packed_words(dst.len(), bits);
        let words: Vec<Var> = (0..count).map(|_| self.new_var(word_ty)).collect();
        let byte_offset = bin(lir::BinaryOp::Div, bin(lir::BinaryOp::Mul, index, int(Ty::I64, bits as i64)), int(Ty::I64, 8));
        let mut out = vec![lir::Stmt::LoadGlobalVector { dst: words.clone(), param, byte_offset, ty: word_ty }];
        let word_bits = word_ty.bytes() as u32 * 8;
        for (j, r) in dst.iter().enumerate() {
            let bit = j as u32 * bits;
            let word = var(words[(bit / word_bits) as usize]);
            let word = if word_ty == Ty::I32 { word } else { Expr::Cast { to: Ty::I32, value: Box::new(word), from_unsigned: true, to_unsigned: false } };
            let shifted = if bit.is_multiple_of(word_bits) { word } else { bin(lir::BinaryOp::LShr, word, int(Ty::I32, (bit % word_bits) as i64)) };
            let code = self.new_var(Ty::I32);
            out.push(lir::Stmt::Assign(code, bin(lir::BinaryOp::And, shifted, int(Ty::I32, (1i64 << bits) - 1))));
            let value = if dtype.is_signed_int() { crate::lower_numerics::sign_extend(var(code), bits) } else { var(code) };
            out.push(lir::Stmt::Assign(*r, Expr::Cast { to: Ty::I8, value: Box::new(value), from_unsigned: false, to_unsigned: false }));
        }
        out
    }

    /// The statements of a vector store of the registers `sources` (elements of `dtype`) to
    /// element `index` (a multiple of the vector, inside the bounds).
    fn vector_store(&mut self, param: usize, index: Expr, dtype: DType, sources: &[Var]) -> Vec<lir::Stmt> {
        let bits = dtype.bits();
        if bits >= 8 {
            let byte_offset = bin(lir::BinaryOp::Mul, index, int(Ty::I64, (bits / 8) as i64));
            let values = sources.iter().map(|r| var(*r)).collect();
            return vec![lir::Stmt::StoreGlobalVector { param, byte_offset, values, ty: Ty::of(dtype) }];
        }
        let (word_ty, count) = Self::packed_words(sources.len(), bits);
        let word_bits = word_ty.bytes() as u32 * 8;
        let per_word = (word_bits / bits) as usize;
        let mut out = Vec::new();
        let mut values = Vec::new();
        for w in 0..count {
            let mut packed: Option<Expr> = None;
            for (j, r) in sources.iter().enumerate().skip(w * per_word).take(per_word) {
                let code = crate::lower_numerics::container_to_code(var(*r), dtype);
                let shift = (j as u32 * bits) % word_bits;
                let part = if shift == 0 { code } else { bin(lir::BinaryOp::Shl, code, int(Ty::I32, shift as i64)) };
                packed = Some(match packed {
                    None => part,
                    Some(p) => bin(lir::BinaryOp::Or, p, part),
                });
            }
            let word32 = self.new_var(Ty::I32);
            out.push(lir::Stmt::Assign(word32, packed.unwrap_or(int(Ty::I32, 0))));
            values.push(if word_ty == Ty::I32 { var(word32) } else { crate::lower_numerics::narrow_code(var(word32), word_ty) });
        }
        let byte_offset = bin(lir::BinaryOp::Div, bin(lir::BinaryOp::Mul, index, int(Ty::I64, bits as i64)), int(Ty::I64, 8));
        out.push(lir::Stmt::StoreGlobalVector { param, byte_offset, values, ty: word_ty });
        out
    }

    /// The type a reduction or dot accumulates in: f32 for narrow floats, else the dtype.
    fn accumulator_ty(dtype: DType) -> Ty {
        match dtype {
            DType::F16 | DType::BF16 => Ty::F32,
            d => Ty::of(d),
        }
    }

    fn reduce(&mut self, id: ValueId, op: ReduceOp, value: ValueId, dim: usize, body: &mut Vec<lir::Stmt>) {
        if self.k.value(id).strategy == Some(Strategy::Shuffle) {
            self.reduce_in_warps(id, op, value, dim, body);
            return;
        }
        let shape = self.k.value(value).ty.shape().expect("tensor").to_vec();
        let dtype = self.dtype(value);
        let ty = Ty::of(dtype);
        let acc_ty = Self::accumulator_ty(dtype);
        let base = self.stage(id, body)[0];
        let layout = self.layout(id).clone();
        let mut regs = Vec::new();
        for i in 0..layout.local_size() {
            let mut coords = self.coords(&layout, i);
            let j = self.new_var(Ty::I32);
            coords[dim] = var(j);
            let offset = self.shared_offset(base, &coords, &shape, ty.bytes() as i64, false);
            let element = self.cast_expr(Expr::LoadShared { offset: Box::new(offset), ty }, dtype, acc_dtype(acc_ty, dtype));
            let init = match op {
                // -0 is the identity of float addition (+0 would turn a sum of -0s into +0).
                ReduceOp::Sum => float_or_int(acc_ty, -0.0),
                // NaN is the identity of maxNum/minNum (a NaN operand yields the other one), so
                // a row of NaN reduces to NaN, as in the VM; ±inf would turn it into ∓inf.
                ReduceOp::Max => float_or_int(acc_ty, if acc_ty.is_float() { f64::NAN } else { i64::MIN as f64 }),
                ReduceOp::Min => float_or_int(acc_ty, if acc_ty.is_float() { f64::NAN } else { i64::MAX as f64 }),
            };
            let init = match (op, acc_ty.is_float(), dtype.int_range()) {
                (ReduceOp::Max, false, Some((lo, _))) => int(acc_ty, lo as i64),
                (ReduceOp::Min, false, Some((_, hi))) => int(acc_ty, hi.min(i64::MAX as i128) as i64),
                _ => init,
            };
            let acc = self.assign(body, acc_ty, init);
            let combine = reduce_combine(op, dtype);
            body.push(lir::Stmt::For {
                var: j,
                start: int(Ty::I32, 0),
                end: int(Ty::I32, shape[dim] as i64),
                body: vec![lir::Stmt::Assign(acc, bin(combine, var(acc), element))],
            });
            let out = self.cast_expr(var(acc), acc_dtype(acc_ty, dtype), dtype);
            regs.push(self.assign(body, ty, out));
        }
        body.push(lir::Stmt::Barrier);
        self.regs.insert(id, regs);
    }

    fn dot(&mut self, id: ValueId, a: ValueId, b: ValueId, c: ValueId, body: &mut Vec<lir::Stmt>) {
        if let Some(Strategy::Mma { instruction, a: source_a, b: source_b }) = self.k.value(id).strategy {
            self.dot_mma(id, [(a, source_a), (b, source_b)], c, instruction, body);
            return;
        }
        let a_shape = self.k.value(a).ty.shape().expect("tensor").to_vec();
        let b_shape = self.k.value(b).ty.shape().expect("tensor").to_vec();
        let in_dtype = self.dtype(a);
        let c_dtype = self.dtype(c);
        let in_ty = Ty::of(in_dtype);
        let c_ty = Ty::of(c_dtype);
        let bases = self.stage(id, body);
        let layout = self.layout(id).clone();
        let mut regs = Vec::new();
        for i in 0..layout.local_size() {
            let coords = self.coords(&layout, i);
            let kk = self.new_var(Ty::I32);
            let a_off = self.shared_offset(bases[0], &[coords[0].clone(), var(kk)], &a_shape, in_ty.bytes() as i64, false);
            let b_off = self.shared_offset(bases[1], &[var(kk), coords[1].clone()], &b_shape, in_ty.bytes() as i64, false);
            let av = self.cast_expr(Expr::LoadShared { offset: Box::new(a_off), ty: in_ty }, in_dtype, c_dtype);
            let bv = self.cast_expr(Expr::LoadShared { offset: Box::new(b_off), ty: in_ty }, in_dtype, c_dtype);
            let acc = self.assign(body, c_ty, var(self.regs(c)[i]));
            let update = if c_ty.is_float() {
                Expr::Fma(Box::new(av), Box::new(bv), Box::new(var(acc)))
            } else {
                bin(lir::BinaryOp::Add, var(acc), bin(lir::BinaryOp::Mul, av, bv))
            };
            body.push(lir::Stmt::For {
                var: kk,
                start: int(Ty::I32, 0),
                end: int(Ty::I32, a_shape[1] as i64),
                body: vec![lir::Stmt::Assign(acc, update)],
            });
            regs.push(acc);
        }
        body.push(lir::Stmt::Barrier);
        self.regs.insert(id, regs);
    }
}

impl Lower<'_> {
    /// A reduction without shared memory (strategy `shuffle`, legal by
    /// `plan::shuffle_reduction_fits`): each thread first combines its own elements, then a
    /// butterfly of `shfl.bfly` over the lane bits of the reduced dimension leaves the result
    /// in every one of those threads.
    fn reduce_in_warps(&mut self, id: ValueId, op: ReduceOp, value: ValueId, dim: usize, body: &mut Vec<lir::Stmt>) {
        let dtype = self.dtype(value);
        let acc_ty = Self::accumulator_ty(dtype);
        let (input, output) = (self.layout(value).clone(), self.layout(id).clone());
        let terms: Vec<_> = input.thread_terms().into_iter().filter(|t| t.dim == dim).collect();
        let combine = reduce_combine(op, dtype);
        let wide = acc_dtype(acc_ty, dtype);
        // Each output register collects the input registers of its coordinates.
        let mut partial: Vec<Option<Var>> = vec![None; output.local_size()];
        for i in 0..input.local_size() {
            let mut c = input.local_coords(i);
            c[dim] = 0;
            let j = output.local_of(&c).expect("plan::shuffle_reduction_fits");
            let x = self.cast_expr(var(self.regs(value)[i]), dtype, wide);
            let next = match partial[j] {
                None => x,
                Some(acc) => bin(combine, var(acc), x),
            };
            partial[j] = Some(self.assign(body, acc_ty, next));
        }
        let mut regs = Vec::new();
        for acc in partial {
            let mut acc = acc.expect("plan::shuffle_reduction_fits");
            for t in &terms {
                let mut mask = t.stride;
                while mask < t.stride * t.extent {
                    let other = self.new_var(acc_ty);
                    body.push(lir::Stmt::ShuffleXor { dst: other, src: acc, lane_mask: mask as u32 });
                    acc = self.assign(body, acc_ty, bin(combine, var(acc), var(other)));
                    mask *= 2;
                }
            }
            let out = self.cast_expr(var(acc), wide, dtype);
            regs.push(self.assign(body, Ty::of(dtype), out));
        }
        self.regs.insert(id, regs);
    }

    /// `dot` on tensor cores (strategy `mma`, legal by `plan::mma_instruction`): the
    /// accumulator's layout is `Q * fragment` (the `mma.m16n8` accumulator fragment innermost,
    /// whole warps in `Q`), so each local index of `Q` is one 16×8 tile of one warp, and the k
    /// extent is walked in steps of the instruction's k. Each operand is read by `ldmatrix`
    /// from its shared tensor in place or from the scratch space it is staged in (row-major,
    /// 16-byte aligned rows since K is a multiple of 16 and N of 8), as the strategy says.
    fn dot_mma(&mut self, id: ValueId, operands: [(ValueId, OperandSource); 2], c: ValueId, instruction: MmaInstruction, body: &mut Vec<lir::Stmt>) {
        let [(a, _), (b, _)] = operands;
        let (kind, acc_ty) = match instruction {
            MmaInstruction::F16 => (lir::MmaKind::F16, Ty::F32),
            MmaInstruction::BF16 => (lir::MmaKind::BF16, Ty::F32),
            MmaInstruction::S8 => (lir::MmaKind::S8, Ty::I32),
        };
        let element_bytes = instruction.element_bytes() as i64;
        let k_step = instruction.k_step();
        let a_shape = self.k.value(a).ty.shape().expect("tensor").to_vec();
        let b_shape = self.k.value(b).ty.shape().expect("tensor").to_vec();
        let k_extent = a_shape[1];
        let layout = self.layout(id).clone();
        let quotient = layout.divide_right(&MmaInstruction::accumulator_fragment()).expect("plan::mma_instruction");
        // An operand read in place: its shared tensor and the offsets of the load.
        let direct: Vec<Option<(ValueId, Vec<Expr>)>> = operands
            .iter()
            .map(|&(x, source)| match (source, &self.k.value(x).op) {
                (OperandSource::InPlace, Op::LoadShared { shared, offsets }) => {
                    Some((*shared, offsets.iter().map(|o| var(self.scalar(*o))).collect()))
                }
                _ => None,
            })
            .collect();
        let staged = direct.iter().any(|d| d.is_none());
        let staged_bases = if staged { self.stage(id, body) } else { Vec::new() };
        let mut next_base = staged_bases.into_iter();
        let bases: Vec<usize> = direct.iter().map(|d| if d.is_none() { next_base.next().expect("plan: one offset per staged operand") } else { 0 }).collect();
        // The byte offset of operand `i`'s element (row, col).
        let operand_offset = |s: &Self, i: usize, row: Expr, col: Expr| -> Expr {
            match &direct[i] {
                Some((shared, offsets)) => s.shared_element(*shared, offsets, &[row, col]),
                None => s.shared_offset(bases[i], &[row, col], if i == 0 { &a_shape } else { &b_shape }, element_bytes, false),
            }
        };
        let lane = self.assign(body, Ty::I32, bin(lir::BinaryOp::Rem, Expr::ThreadIdx, int(Ty::I32, 32)));
        let group = self.assign(body, Ty::I32, bin(lir::BinaryOp::Div, var(lane), int(Ty::I32, 4)));
        let tig = self.assign(body, Ty::I32, bin(lir::BinaryOp::Rem, var(lane), int(Ty::I32, 4)));
        let acc: Vec<Var> = self.regs(c).to_vec().into_iter().map(|r| self.assign(body, acc_ty, var(r))).collect();
        for q in 0..quotient.local_size() {
            // The tile's origin: register q·4 holds (origin_m + group, origin_n + 2·tig).
            let first = self.coords(&layout, q * 4);
            let origin_m = self.assign(body, Ty::I32, bin(lir::BinaryOp::Sub, first[0].clone(), var(group)));
            let origin_n = self.assign(
                body,
                Ty::I32,
                bin(lir::BinaryOp::Sub, first[1].clone(), bin(lir::BinaryOp::Mul, var(tig), int(Ty::I32, 2))),
            );
            for step in 0..k_extent / k_step {
                let k0 = (step * k_step) as i64;
                // Fragments straight from shared memory with ldmatrix: A (row-major [M, K]) as
                // four 8×8 matrices, lane l giving row l % 8 of matrix l / 8 (matrices: rows
                // +0/+8, columns +0/+8, in the order of the A fragment registers); B (row-major
                // [K, N]) as two transposed 8×8 matrices of k rows +0..7 and +8..15.
                let a_regs: Vec<Var> = (0..4).map(|_| self.new_var(Ty::I32)).collect();
                let matrix = bin(lir::BinaryOp::Div, var(lane), int(Ty::I32, 8));
                let a_row = bin(
                    lir::BinaryOp::Add,
                    bin(lir::BinaryOp::Add, var(origin_m), bin(lir::BinaryOp::Rem, var(lane), int(Ty::I32, 8))),
                    bin(lir::BinaryOp::Mul, bin(lir::BinaryOp::Rem, matrix.clone(), int(Ty::I32, 2)), int(Ty::I32, 8)),
                );
                // A matrix row is 16 bytes: 8 elements of 16 bits, or 16 of s8 (whose fragment
                // is the same bytes, four per register).
                let a_col = bin(
                    lir::BinaryOp::Add,
                    int(Ty::I32, k0),
                    bin(lir::BinaryOp::Mul, bin(lir::BinaryOp::Div, matrix, int(Ty::I32, 2)), int(Ty::I32, 16 / element_bytes)),
                );
                let a_offset = operand_offset(self, 0, a_row, a_col);
                body.push(lir::Stmt::LdMatrix { dst: a_regs.clone(), row_offset: a_offset, trans: false });
                let b_regs: Vec<Expr> = if kind == lir::MmaKind::S8 {
                    // B of m16n8k32.s8: b_i at k = 4·tig + (i % 4) + 16·(i / 4), n = groupID,
                    // four bytes per register; ldmatrix cannot transpose bytes, so gather them.
                    let col = bin(lir::BinaryOp::Add, var(origin_n), var(group));
                    let mut regs = Vec::new();
                    for half in 0..2i64 {
                        let mut packed: Option<Expr> = None;
                        for byte in 0..4i64 {
                            let k = bin(
                                lir::BinaryOp::Add,
                                int(Ty::I32, k0 + 16 * half + byte),
                                bin(lir::BinaryOp::Mul, var(tig), int(Ty::I32, 4)),
                            );
                            let off = self.shared_offset(bases[1], &[k, col.clone()], &b_shape, 1, false);
                            let value = Expr::Cast { to: Ty::I32, value: Box::new(Expr::LoadShared { offset: Box::new(off), ty: Ty::I8 }), from_unsigned: true, to_unsigned: false };
                            let shifted = if byte == 0 { value } else { bin(lir::BinaryOp::Shl, value, int(Ty::I32, 8 * byte)) };
                            packed = Some(match packed {
                                None => shifted,
                                Some(p) => bin(lir::BinaryOp::Or, p, shifted),
                            });
                        }
                        regs.push(var(self.assign(body, Ty::I32, packed.expect("four bytes"))));
                    }
                    regs
                } else {
                    let b_regs: Vec<Var> = (0..2).map(|_| self.new_var(Ty::I32)).collect();
                    let b_row = bin(lir::BinaryOp::Add, int(Ty::I32, k0), bin(lir::BinaryOp::Rem, var(lane), int(Ty::I32, 16)));
                    let b_offset = operand_offset(self, 1, b_row, var(origin_n));
                    body.push(lir::Stmt::LdMatrix { dst: b_regs.clone(), row_offset: b_offset, trans: true });
                    b_regs.into_iter().map(var).collect()
                };
                let a_regs: Vec<Expr> = a_regs.into_iter().map(var).collect();
                let c_regs = [acc[q * 4], acc[q * 4 + 1], acc[q * 4 + 2], acc[q * 4 + 3]];
                let a_regs: [Expr; 4] = a_regs.try_into().expect("four");
                let b_regs: [Expr; 2] = b_regs.try_into().expect("two");
                body.push(lir::Stmt::Mma { kind, a: a_regs, b: b_regs, c: c_regs });
            }
        }
        // Scratch space is reused by the next staging: wait until every warp has read it.
        if staged {
            body.push(lir::Stmt::Barrier);
        }
        self.regs.insert(id, acc);
    }
}

/// The LIR operation that combines two partial results of a reduction of `dtype`.
fn reduce_combine(op: ReduceOp, dtype: DType) -> lir::BinaryOp {
    let unsigned = dtype.is_unsigned_int();
    match op {
        ReduceOp::Sum => lir::BinaryOp::Add,
        ReduceOp::Max if unsigned => lir::BinaryOp::UMax,
        ReduceOp::Min if unsigned => lir::BinaryOp::UMin,
        ReduceOp::Max => lir::BinaryOp::Max,
        ReduceOp::Min => lir::BinaryOp::Min,
    }
}

/// The dtype whose register type is `acc_ty` when accumulating `dtype` values.
fn acc_dtype(acc_ty: Ty, dtype: DType) -> DType {
    if acc_ty == Ty::F32 && dtype != DType::F32 { DType::F32 } else { dtype }
}

/// Appends `stmts`, under `guard` unless it is the constant true (a layout without replicas).
fn guarded(body: &mut Vec<lir::Stmt>, guard: Expr, stmts: Vec<lir::Stmt>) {
    if matches!(guard, Expr::Int(_, 1)) {
        body.extend(stmts);
    } else {
        body.push(lir::Stmt::If { cond: guard, then_body: stmts, else_body: Vec::new() });
    }
}

/// The integer operations whose result can overflow `d` and get a check for the CPU backends
/// (8 bits and more; below, arithmetic saturates): the operator as the message shows it, and
/// the binary operation (`None` for a unary minus or `abs`).
fn overflow_checked(op: &Op, d: DType) -> Option<(&'static str, Option<BinaryOp>)> {
    if !d.is_int() || d.is_low_precision() {
        return None;
    }
    Some(match op {
        Op::Binary(BinaryOp::Add, ..) => ("+", Some(BinaryOp::Add)),
        Op::Binary(BinaryOp::Sub, ..) => ("-", Some(BinaryOp::Sub)),
        Op::Binary(BinaryOp::Mul, ..) => ("*", Some(BinaryOp::Mul)),
        Op::Binary(BinaryOp::Div, ..) if d.is_signed_int() => ("/", Some(BinaryOp::Div)),
        Op::Unary(UnaryOp::Neg, _) if d.is_signed_int() => ("unary -", None),
        Op::Unary(UnaryOp::Abs, _) if d.is_signed_int() => ("abs", None),
        _ => return None,
    })
}

/// Whether the exact result of `op` (a unary minus or `abs` when `None`) on registers `x` (and
/// `y`) of integer dtype `d` fits `d`; `result` holds the wrapped result.
fn no_overflow(d: DType, op: Option<BinaryOp>, x: Expr, y: Option<Expr>, result: Expr) -> Expr {
    use lir::BinaryOp as B;
    let (lo, hi) = d.int_range().expect("integer dtype");
    let signed = d.is_signed_int();
    let ty = Ty::of(d);
    let Some(op) = op else {
        // Unary minus and `abs` overflow only on the most negative value.
        return cmp(CmpOp::Ne, x, int(ty, lo as i64));
    };
    let y = y.expect("binary");
    if op == BinaryOp::Div {
        // Signed division overflows only for MIN / -1 (division by zero is its own error).
        return Expr::Unary(lir::UnaryOp::Not, Box::new(and_all(vec![cmp(CmpOp::Eq, x, int(ty, lo as i64)), cmp(CmpOp::Eq, y, int(ty, -1))])));
    }
    if d.bits() <= 32 {
        let wide = |e: Expr| Expr::Cast { to: Ty::I64, value: Box::new(e), from_unsigned: !signed, to_unsigned: false };
        let (wx, wy) = (wide(x), wide(y));
        if op == BinaryOp::Mul && !signed {
            // x·y ≤ hi ⟺ y = 0 or x ≤ hi / y (the product itself may not fit an i64).
            let safe_y = Expr::Select(Box::new(cmp(CmpOp::Eq, wy.clone(), int(Ty::I64, 0))), Box::new(int(Ty::I64, 1)), Box::new(wy.clone()));
            return Expr::Select(
                Box::new(cmp(CmpOp::Eq, wy, int(Ty::I64, 0))),
                Box::new(int(Ty::I1, 1)),
                Box::new(cmp(CmpOp::Le, wx, bin(B::Div, int(Ty::I64, hi as i64), safe_y))),
            );
        }
        let exact = match op {
            BinaryOp::Add => bin(B::Add, wx, wy),
            BinaryOp::Sub => bin(B::Sub, wx, wy),
            _ => bin(B::Mul, wx, wy),
        };
        return and_all(vec![cmp(CmpOp::Ge, exact.clone(), int(Ty::I64, lo as i64)), cmp(CmpOp::Le, exact, int(Ty::I64, hi as i64))]);
    }
    // 64 bits: from the wrapped result.
    let zero = int(Ty::I64, 0);
    let xor = |a: Expr, b: Expr| bin(B::Xor, a, b);
    match (op, signed) {
        // Signed: overflow iff both operands' signs differ from the result's.
        (BinaryOp::Add, true) => cmp(CmpOp::Ge, bin(B::And, xor(x.clone(), result.clone()), xor(y, result)), zero),
        (BinaryOp::Sub, true) => cmp(CmpOp::Ge, bin(B::And, xor(x.clone(), y), xor(x, result)), zero),
        (BinaryOp::Add, false) => cmp(CmpOp::UGe, result, x),
        (BinaryOp::Sub, false) => cmp(CmpOp::UGe, x, y),
        (_, false) => {
            let y_is_zero = cmp(CmpOp::Eq, y.clone(), zero.clone());
            let safe_y = Expr::Select(Box::new(y_is_zero.clone()), Box::new(int(Ty::I64, 1)), Box::new(y));
            Expr::Select(Box::new(y_is_zero), Box::new(int(Ty::I1, 1)), Box::new(cmp(CmpOp::ULe, x, bin(B::UDiv, int(Ty::I64, -1), safe_y))))
        }
        (_, true) => {
            // x = 0 fits; x = -1 fits unless y = MIN; otherwise the wrapped product divided by
            // x gives y back exactly when nothing was lost.
            let x_is_zero = cmp(CmpOp::Eq, x.clone(), zero);
            let x_is_minus_one = cmp(CmpOp::Eq, x.clone(), int(Ty::I64, -1));
            let safe_x = Expr::Select(
                Box::new(Expr::Binary(B::Or, Box::new(x_is_zero.clone()), Box::new(x_is_minus_one.clone()))),
                Box::new(int(Ty::I64, 1)),
                Box::new(x),
            );
            let divides_back = cmp(CmpOp::Eq, bin(B::Div, result, safe_x), y.clone());
            Expr::Select(
                Box::new(x_is_zero),
                Box::new(int(Ty::I1, 1)),
                Box::new(Expr::Select(Box::new(x_is_minus_one), Box::new(cmp(CmpOp::Ne, y, int(Ty::I64, i64::MIN))), Box::new(divides_back))),
            )
        }
    }
}
