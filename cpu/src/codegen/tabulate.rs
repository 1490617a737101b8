//! Chains of float operations on one 16-bit value, replaced by a table.
//!
//! An f16 or bf16 register whose value is a float expression of a single 16-bit float
//! register (`y = x * sigmoid(x)` on f16: five operations, each a widening, an f32 operation
//! and a rounding) takes one of 65536 values, one per bit pattern of that register. When such
//! a chain has at least `MIN_OPERATIONS` operations, its results for every operand are computed
//! at compile time with the simulator's own operations (`tl_vm::simt::registers`, so the same
//! bits by construction) and the chain becomes a table load.
//!
//! Expects statements in program order (`Gen::stmt`). Definitions are followed only through
//! plain assignments: the substitution map is emptied at every other statement that may
//! write a register (branches, loops, collective points), and a register's reassignment drops
//! every definition that reads it, so a substituted definition always describes the value
//! its register holds. Guarantees: the register gets the bits the chain would compute; at
//! most `MAX_TABLES` tables per program (compile time: a few milliseconds each).

use super::Gen;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use std::collections::HashMap;
use tl_compiler::lir::{BinaryOp, Expr, Program, Ty, Var};
use tl_vm::simt::registers;

/// Operations a chain needs before a table pays for its compile time and cache footprint.
const MIN_OPERATIONS: usize = 3;
/// The largest substituted expression followed (nodes).
const MAX_NODES: usize = 48;
/// Tables per program.
const MAX_TABLES: usize = 8;

/// What the substitution knows: for each register defined by a chain, the chain with earlier
/// definitions substituted in, and the one 16-bit register it reads.
#[derive(Default)]
pub(super) struct Chains {
    definitions: HashMap<Var, (Expr, Var)>,
    /// How many tables were made so far (data objects of the module: `Gen::table`).
    pub(super) tables: usize,
}

impl Chains {
    /// Forgets every definition (a statement that may write registers other than by plain
    /// assignment, or control flow).
    pub(super) fn forget(&mut self) {
        self.definitions.clear();
    }
}

impl Gen<'_, '_> {
    /// Register `v` is assigned `e`: records its chain when it has one, and gives the value
    /// from a table when the chain is long enough (`None`: generate `e` as usual).
    pub(super) fn tabulated(&mut self, v: Var, e: &Expr) -> Option<Value> {
        let substituted = substitute(e, &self.chains.definitions);
        // `v` changes: definitions that read it describe its old value.
        self.chains.definitions.retain(|&defined, (_, leaf)| defined != v && *leaf != v);
        let leaf = substituted.as_ref().and_then(|s| single_leaf(self.p, s))?;
        let expression = substituted.expect("a leaf implies an expression");
        let result_ty = self.p.ty(&expression);
        if leaf != v {
            self.chains.definitions.insert(v, (expression.clone(), leaf));
        }
        if !matches!(result_ty, Ty::F16 | Ty::BF16) || operations(&expression) < MIN_OPERATIONS || self.chains.tables >= MAX_TABLES {
            return None;
        }
        let leaf_ty = self.p.vars[leaf.0 as usize];
        let p = self.p;
        let table = self.table(&format!("tl_tabulated_{}", self.chains.tables), || (0..=u16::MAX).flat_map(|bits| (evaluate(p, &expression, leaf, leaf_ty, i64::from(bits)) as u16).to_ne_bytes()).collect());
        self.chains.tables += 1;
        let operand = self.load_register(leaf);
        let index = self.b.ins().uextend(types::I64, operand);
        let offset = self.b.ins().ishl_imm_s(index, 1);
        let at = self.b.ins().iadd(offset, table);
        Some(self.b.ins().load(types::I16, MemFlagsData::trusted().with_readonly(), at, 0))
    }
}

/// `e` with the registers that have chains replaced by them, if it is a float expression made
/// only of constants, registers and the operations `evaluate` knows (`None` otherwise or when
/// it grows past `MAX_NODES`).
fn substitute(e: &Expr, definitions: &HashMap<Var, (Expr, Var)>) -> Option<Expr> {
    let out = match e {
        Expr::Float(..) => e.clone(),
        Expr::Var(v) => definitions.get(v).map_or_else(|| e.clone(), |(chain, _)| chain.clone()),
        Expr::Unary(op, a) => Expr::Unary(*op, Box::new(substitute(a, definitions)?)),
        Expr::Binary(op @ (BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Min | BinaryOp::Max), a, b) => Expr::Binary(*op, Box::new(substitute(a, definitions)?), Box::new(substitute(b, definitions)?)),
        Expr::Fma(a, b, c) => Expr::Fma(Box::new(substitute(a, definitions)?), Box::new(substitute(b, definitions)?), Box::new(substitute(c, definitions)?)),
        Expr::Cast { to, value, from_unsigned: false, to_unsigned: false } if to.is_float() => Expr::Cast { to: *to, value: Box::new(substitute(value, definitions)?), from_unsigned: false, to_unsigned: false },
        _ => return None,
    };
    (nodes(&out) <= MAX_NODES).then_some(out)
}

fn nodes(e: &Expr) -> usize {
    let mut count = 1;
    e.for_each_operand(|operand| count += nodes(operand));
    count
}

fn operations(e: &Expr) -> usize {
    match e {
        Expr::Float(..) | Expr::Var(_) => 0,
        _ => {
            let mut count = 1;
            e.for_each_operand(|operand| count += operations(operand));
            count
        }
    }
}

/// The one register `e` reads, when there is exactly one, it is a 16-bit float, and every
/// value in `e` is a float (what `evaluate` computes).
fn single_leaf(p: &Program, e: &Expr) -> Option<Var> {
    fn walk(p: &Program, e: &Expr, leaf: &mut Option<Var>) -> bool {
        if !p.ty(e).is_float() {
            return false;
        }
        if let Expr::Var(v) = e {
            return match leaf {
                Some(seen) => seen == v,
                None => {
                    *leaf = Some(*v);
                    true
                }
            };
        }
        let mut ok = true;
        e.for_each_operand(|operand| ok &= walk(p, operand, leaf));
        ok
    }
    let mut leaf = None;
    let ok = walk(p, e, &mut leaf);
    leaf.filter(|v| ok && matches!(p.vars[v.0 as usize], Ty::F16 | Ty::BF16))
}

/// The bits `e` gives when register `leaf` (of type `leaf_ty`) holds `bits`, by the
/// simulator's operations on register bits.
fn evaluate(p: &Program, e: &Expr, leaf: Var, leaf_ty: Ty, bits: i64) -> i64 {
    let eval = |x: &Expr| evaluate(p, x, leaf, leaf_ty, bits);
    match e {
        Expr::Float(ty, v) => registers::cast(v.to_bits() as i64, Ty::F64, *ty, false, false),
        Expr::Var(v) => {
            debug_assert_eq!(*v, leaf);
            bits
        }
        Expr::Unary(op, a) => registers::unary(*op, p.ty(a), eval(a)),
        Expr::Binary(op, a, b) => registers::binary(*op, p.ty(a), eval(a), eval(b)).expect("float operations cannot fail"),
        Expr::Fma(a, b, c) => registers::fma(p.ty(a), eval(a), eval(b), eval(c)),
        Expr::Cast { to, value, .. } => registers::cast(eval(value), p.ty(value), *to, false, false),
        _ => unreachable!("`substitute` admits no other expression"),
    }
}
