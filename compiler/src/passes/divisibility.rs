//! Divisibility analysis of block-uniform integer scalars and tensor shapes.
//!
//! Expects a kernel that passes `ir::verify` (layouts are not needed) and [`Assumptions`] about
//! its runtime integer scalar parameters (`n % 8 == 0`, given as log2 of a power of two).
//! Guarantees, for every integer scalar value `v`, that `2^value(v)` divides the value `v` takes
//! in every launch whose arguments satisfy the assumptions (0 means nothing is known; a zero
//! constant divides by everything and gets [`MAX_LOG2`]), and the same for the extents of the
//! global tensor parameters ([`Divisibility::sym`]). The facts come from constants, products
//! (`block.x * BM`, `kb * BK`: exponents add), sums and differences (the smaller exponent),
//! remainders, divisions by powers of two, casts between integer types, `min`/`max`/`select`,
//! mutable variables (the smallest exponent over every assignment, found by iterating to a fixed
//! point) and the assumptions. Loop indices, block indices and float values know nothing.
//!
//! The lowering reads the result to prove vector accesses aligned and bounds checks
//! all-or-nothing (see `lower.rs`); the runtime derives the assumptions from the launch
//! arguments ([`Assumptions::from_values`]) and compiles one variant per signature.

use crate::ir::{BinaryOp, Kernel, Op, ParamKind, Stmt, SymExpr, Type, UnaryOp, ValueId};
use crate::number::Number;
use std::fmt;

/// The largest exponent tracked (2^30 fits every i32 extent of interest).
pub const MAX_LOG2: u32 = 30;

/// The largest power of two the runtime specializes on by default: 128 elements, a 16-byte
/// run of the narrowest (1-bit) format, so that every format can prove its 16-byte runs
/// (`cp.async` of shared tiles and vector accesses) aligned.
pub const DEFAULT_CAP_LOG2: u32 = 7;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssumptionError {
    #[error("`{0}` is not an assumption; write NAME%K with K a power of two, e.g. `n%8`")]
    Syntax(String),
    #[error("kernel `{kernel}` has no integer scalar parameter `{name}`")]
    UnknownParam { kernel: String, name: String },
    #[error("`{0}`: the divisor must be a power of two between 1 and 2^30")]
    NotPowerOfTwo(String),
}

/// What a kernel variant may assume about its runtime integer scalar parameters: for parameter
/// `i`, `2^log2[i]` divides its value (0 for tensor, float and unconstrained parameters).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Assumptions {
    pub log2: Vec<u32>,
}

impl Assumptions {
    /// Assume nothing about any parameter of `kernel`.
    pub fn none(kernel: &Kernel) -> Assumptions {
        Assumptions { log2: vec![0; kernel.params.len()] }
    }

    /// True when nothing is assumed.
    pub fn is_none(&self) -> bool {
        self.log2.iter().all(|&l| l == 0)
    }

    /// The exponent assumed for parameter `i`.
    pub fn of(&self, i: usize) -> u32 {
        self.log2.get(i).copied().unwrap_or(0)
    }

    /// The signature of a launch: for each integer scalar parameter, the largest power of two
    /// dividing its value, at most `2^cap_log2` (so a handful of variants cover every launch);
    /// `values[i]` is `None` for tensor parameters. Zero divides by everything and gets the cap.
    pub fn from_values(kernel: &Kernel, values: &[Option<i64>], cap_log2: u32) -> Assumptions {
        let cap = cap_log2.min(MAX_LOG2);
        let log2 = kernel
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| match (&p.kind, values.get(i).copied().flatten()) {
                (ParamKind::Scalar(d), Some(v)) if d.is_int() => log2_of(v).min(cap),
                _ => 0,
            })
            .collect();
        Assumptions { log2 }
    }

    /// Parses assumptions written `NAME%K` (K a power of two), several separated by commas or
    /// given one by one, e.g. `["n%8", "k%16,m%2"]`.
    pub fn parse(kernel: &Kernel, items: &[String]) -> Result<Assumptions, AssumptionError> {
        let mut a = Assumptions::none(kernel);
        for item in items.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
            let (name, k) = item.split_once('%').ok_or_else(|| AssumptionError::Syntax(item.to_string()))?;
            let (name, k) = (name.trim(), k.trim());
            let k: u64 = k.parse().map_err(|_| AssumptionError::Syntax(item.to_string()))?;
            if !k.is_power_of_two() || k.trailing_zeros() > MAX_LOG2 {
                return Err(AssumptionError::NotPowerOfTwo(item.to_string()));
            }
            let index = kernel
                .params
                .iter()
                .position(|p| p.name == name && matches!(p.kind, ParamKind::Scalar(d) if d.is_int()))
                .ok_or_else(|| AssumptionError::UnknownParam { kernel: kernel.name.clone(), name: name.to_string() })?;
            a.log2[index] = a.log2[index].max(k.trailing_zeros());
        }
        Ok(a)
    }

    /// The assumptions as text, `n%8,k%16` (empty when nothing is assumed).
    pub fn describe(&self, kernel: &Kernel) -> String {
        kernel
            .params
            .iter()
            .enumerate()
            .filter(|(i, _)| self.of(*i) > 0)
            .map(|(i, p)| format!("{}%{}", p.name, 1u64 << self.of(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether a launch with these parameter values satisfies the assumptions.
    pub fn holds_for(&self, values: &[Option<i64>]) -> bool {
        self.log2.iter().enumerate().all(|(i, &l)| l == 0 || values.get(i).copied().flatten().is_some_and(|v| log2_of(v) >= l))
    }
}

impl fmt::Display for Assumptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.log2.iter().map(|l| l.to_string()).collect();
        write!(f, "[{}]", parts.join(","))
    }
}

/// The exponent of the largest power of two dividing `v` (at most [`MAX_LOG2`]; zero gets it).
pub fn log2_of(v: i64) -> u32 {
    if v == 0 { MAX_LOG2 } else { v.unsigned_abs().trailing_zeros().min(MAX_LOG2) }
}

/// The facts found for one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divisibility {
    /// Per value: the exponent of a power of two that divides it (0 for tensors and unknowns).
    pub values: Vec<u32>,
    assumptions: Assumptions,
}

impl Divisibility {
    /// The exponent known for scalar value `v`.
    pub fn value(&self, v: ValueId) -> u32 {
        self.values.get(v.index()).copied().unwrap_or(0)
    }

    /// The exponent known for a shape expression.
    pub fn sym(&self, e: &SymExpr) -> u32 {
        match e {
            SymExpr::Const(c) => log2_of(*c),
            SymExpr::Param(i) => self.assumptions.of(i.index()),
            SymExpr::Add(a, b) | SymExpr::Sub(a, b) | SymExpr::Rem(a, b) | SymExpr::Min(a, b) | SymExpr::Max(a, b) => {
                self.sym(a).min(self.sym(b))
            }
            SymExpr::Mul(a, b) => (self.sym(a) + self.sym(b)).min(MAX_LOG2),
            SymExpr::Div(a, b) => match **b {
                // Floor division by 2^k of a multiple of 2^(k + j) is a multiple of 2^j.
                SymExpr::Const(c) if c > 0 && (c as u64).is_power_of_two() => self.sym(a).saturating_sub(c.trailing_zeros()),
                _ => 0,
            },
            SymExpr::CeilDiv(..) => 0,
        }
    }
}

/// Runs the analysis.
pub fn analyze(kernel: &Kernel, assumptions: &Assumptions) -> Divisibility {
    let mut d = Divisibility { values: vec![MAX_LOG2; kernel.values.len()], assumptions: assumptions.clone() };
    let mut vars = vec![MAX_LOG2; kernel.vars.len()];
    let mut assigned: Vec<Vec<ValueId>> = vec![Vec::new(); kernel.vars.len()];
    collect_assignments(&kernel.body, &mut assigned);
    let mut loop_indices = Vec::new();
    collect_loop_indices(&kernel.body, &mut loop_indices);
    // Exponents only decrease, and each is at most MAX_LOG2: the iteration ends.
    loop {
        for (i, data) in kernel.values.iter().enumerate() {
            let id = ValueId(i as u32);
            let is_int_scalar = matches!(data.ty, Type::Scalar(t) if t.is_int());
            d.values[i] = if !is_int_scalar || loop_indices.contains(&id) { 0 } else { value_log2(kernel, &d, &vars, &data.op) };
        }
        let mut changed = false;
        for (v, sources) in assigned.iter().enumerate() {
            let next = sources.iter().map(|s| d.value(*s)).min().unwrap_or(MAX_LOG2);
            if next < vars[v] {
                vars[v] = next;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    d
}

fn value_log2(kernel: &Kernel, d: &Divisibility, vars: &[u32], op: &Op) -> u32 {
    let of = |v: &ValueId| d.value(*v);
    match op {
        Op::Const(Number::Int(c)) => i64::try_from(*c).map_or(0, log2_of),
        Op::Param(i) => d.assumptions.of(i.index()),
        Op::BlockIdx(_) | Op::LoopIndex => 0,
        Op::ReadVar(v) => vars.get(v.index()).copied().unwrap_or(0),
        Op::Unary(UnaryOp::Neg | UnaryOp::Abs, a) => of(a),
        Op::Cast(a) => match kernel.value(*a).ty {
            Type::Scalar(t) if t.is_int() => of(a),
            _ => 0,
        },
        Op::Binary(op, a, b) => match op {
            BinaryOp::Mul => (of(a) + of(b)).min(MAX_LOG2),
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Rem | BinaryOp::Max | BinaryOp::Min => of(a).min(of(b)),
            BinaryOp::Div => match kernel.value(*b).op {
                Op::Const(Number::Int(c)) if c > 0 && (c as u128).is_power_of_two() => {
                    // Truncating division of a multiple of 2^(k + j) by 2^k is exact.
                    of(a).saturating_sub((c as u128).trailing_zeros())
                }
                _ => 0,
            },
            _ => 0,
        },
        Op::Select { a, b, .. } => of(a).min(of(b)),
        _ => 0,
    }
}

fn collect_assignments(body: &[Stmt], out: &mut [Vec<ValueId>]) {
    for s in body {
        match s {
            Stmt::Assign(v, src) => {
                if let Some(list) = out.get_mut(v.index()) {
                    list.push(*src);
                }
            }
            Stmt::For { body, .. } => collect_assignments(body, out),
            Stmt::If { then_body, else_body, .. } => {
                collect_assignments(then_body, out);
                collect_assignments(else_body, out);
            }
            Stmt::Eval(_) => {}
        }
    }
}

fn collect_loop_indices(body: &[Stmt], out: &mut Vec<ValueId>) {
    for s in body {
        match s {
            Stmt::For { index, body, .. } => {
                out.push(*index);
                collect_loop_indices(body, out);
            }
            Stmt::If { then_body, else_body, .. } => {
                collect_loop_indices(then_body, out);
                collect_loop_indices(else_body, out);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_of_values() {
        assert_eq!(log2_of(1), 0);
        assert_eq!(log2_of(24), 3);
        assert_eq!(log2_of(-16), 4);
        assert_eq!(log2_of(0), MAX_LOG2);
    }
}
