//! Butterfly reductions a warp at a time, in vectors.
//!
//! A reduction across the lanes of a warp lowers to a chain of butterfly shuffles and
//! elementwise operations (`d = shfl.bfly s, 1; s2 = max(s, d); d2 = shfl.bfly s2, 2; ...`).
//! As ordinary phases, each step is a pass over the block's threads (a folded shuffle and one
//! operation per thread). Here the whole chain is one pass over the warps: a warp's 32 values
//! of a register are eight 4-lane vectors, a shuffle with lane mask `m` is a choice of vector
//! (`i ^ (m >> 2)`) and a fixed permutation inside it (`m & 3`), and each operation is one
//! vector instruction per vector, computing for each lane exactly the scalar operation of
//! that lane, with its operands in the same order (so the same bits).
//!
//! Expects a block whose thread count is a whole number of warps (`generate` refuses warp
//! instructions otherwise). Chains hold only 32-bit registers of one of two types: f32 with
//! `+ - * min max` (min and max as `min_max_number`) and i32 with `+ - * & | ^` and the four
//! minimums and maximums, operands being registers. Guarantees: every register the chain
//! writes and that lives in memory (`residency`, which sees a shuffle as `dst = src`) holds,
//! for every thread, the value the statements give one after another; the others are not
//! stored.

use super::phases::Phase;
use super::{CpuError, Gen};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value};
use tl_compiler::lir::{BinaryOp, Expr, Stmt, Ty, Var};

/// Lanes of a warp.
const WARP: usize = 32;
/// Lanes of a vector, and vectors of a warp.
const LANES: usize = 4;
const VECTORS: usize = WARP / LANES;

/// Whether `op` on registers of type `ty` has a vector form here.
fn vector_operation(op: BinaryOp, ty: Ty) -> bool {
    use BinaryOp as B;
    match ty {
        Ty::F32 => matches!(op, B::Add | B::Sub | B::Mul | B::Min | B::Max),
        Ty::I32 => matches!(op, B::Add | B::Sub | B::Mul | B::And | B::Or | B::Xor | B::Min | B::Max | B::UMin | B::UMax),
        _ => false,
    }
}

/// How many statements at the start of `body` form a chain computed in vectors: shuffles of
/// f32 or i32 registers, and operations (`vector_operation`) on registers that read a value
/// the chain computed; `None` unless the chain holds two shuffles or more (a single shuffle
/// is better folded into the run after it, `phases`).
pub(super) fn chain_length(body: &[Stmt], vars: &[Ty]) -> Option<usize> {
    let vector_type = |v: &Var| matches!(vars[v.0 as usize], Ty::F32 | Ty::I32);
    let mut computed = vec![false; vars.len()];
    let (mut length, mut shuffles) = (0, 0);
    for s in body {
        match s {
            Stmt::ShuffleXor { dst, src, .. } if vector_type(dst) && vars[dst.0 as usize] == vars[src.0 as usize] => {
                shuffles += 1;
                computed[dst.0 as usize] = true;
            }
            Stmt::Assign(v, Expr::Binary(op, x, y)) => {
                let (Expr::Var(x), Expr::Var(y)) = (&**x, &**y) else { break };
                let ty = vars[v.0 as usize];
                let typed = vector_operation(*op, ty) && vars[x.0 as usize] == ty && vars[y.0 as usize] == ty;
                if !typed || !(computed[x.0 as usize] || computed[y.0 as usize]) {
                    break;
                }
                computed[v.0 as usize] = true;
            }
            _ => break,
        }
        length += 1;
    }
    (shuffles >= 2).then_some(length)
}

impl Gen<'_, '_> {
    /// A `Phase::Butterfly`: for each warp, the registers the chain reads from memory as
    /// vectors, its statements on them, and the registers it writes that live in memory back.
    pub(super) fn butterfly(&mut self, phase: &Phase) -> Result<(), CpuError> {
        let Phase::Butterfly { statements } = phase else { unreachable!("a butterfly") };
        let access = phase.access(self.p.vars.len());
        let stores = access.stores(&self.in_memory);
        let zero = self.b.ins().iconst(types::I32, 0);
        let warps = self.b.ins().iconst(types::I32, i64::from(self.p.block_threads) / WARP as i64);
        self.counted_loop(zero, warps, |g, warp| {
            // The first slot of the warp's first thread.
            let first = g.b.ins().imul_imm_s(warp, WARP as i64);
            let base = g.slot(first, 0);
            let mut values: Vec<Option<[Value; VECTORS]>> = vec![None; g.p.vars.len()];
            for s in statements.iter() {
                match s {
                    Stmt::ShuffleXor { dst, src, lane_mask } => {
                        let source = g.warp_values(base, &mut values, *src);
                        let (across, within) = ((*lane_mask as usize % WARP) / LANES, *lane_mask as usize % LANES);
                        let shuffled = std::array::from_fn(|i| source[i ^ across]);
                        values[dst.0 as usize] = Some(shuffled.map(|v| g.permute(v, within)));
                    }
                    Stmt::Assign(v, Expr::Binary(op, x, y)) => {
                        let (Expr::Var(x), Expr::Var(y)) = (&**x, &**y) else { unreachable!("`chain_length` takes registers only") };
                        let (x, y) = (g.warp_values(base, &mut values, *x), g.warp_values(base, &mut values, *y));
                        let ty = g.p.vars[v.0 as usize];
                        values[v.0 as usize] = Some(std::array::from_fn(|i| g.vector_binary(*op, ty, x[i], y[i])));
                    }
                    other => unreachable!("`chain_length` takes shuffles and operations only, not {other:?}"),
                }
            }
            for v in stores {
                let vectors = values[v.0 as usize].expect("a register the chain writes");
                for (i, vector) in vectors.into_iter().enumerate() {
                    for k in 0..LANES {
                        let lane = g.b.ins().extractlane(vector, k as u8);
                        let at = g.warp_slot(base, i * LANES + k, v);
                        g.b.ins().store(MemFlagsData::trusted(), lane, at, 0);
                    }
                }
            }
            Ok(())
        })
    }

    /// The vectors of register `v` for the warp whose register rows start at `base`: computed
    /// by the chain, or read from the slots (it lives in memory: the chain reads it first).
    fn warp_values(&mut self, base: Value, values: &mut [Option<[Value; VECTORS]>], v: Var) -> [Value; VECTORS] {
        if let Some(vectors) = values[v.0 as usize] {
            return vectors;
        }
        let (scalar, vector) = lane_types(self.p.vars[v.0 as usize]);
        let vectors = std::array::from_fn(|i| {
            let mut gathered = None;
            for k in 0..LANES {
                let at = self.warp_slot(base, i * LANES + k, v);
                let lane = self.b.ins().load(scalar, MemFlagsData::trusted(), at, 0);
                gathered = Some(match gathered {
                    None => self.b.ins().scalar_to_vector(vector, lane),
                    Some(partial) => self.b.ins().insertlane(partial, lane, k as u8),
                });
            }
            gathered.expect("four lanes")
        });
        values[v.0 as usize] = Some(vectors);
        vectors
    }

    /// The address of register `v` of lane `lane` of the warp whose rows start at `base` (a
    /// thread's registers are a row of adjacent slots, `Gen::slot`).
    fn warp_slot(&mut self, base: Value, lane: usize, v: Var) -> Value {
        let offset = (lane * self.p.vars.len() + v.0 as usize) * 8;
        self.b.ins().iadd_imm_s(base, offset as i64)
    }

    /// Lane `k` of the result is lane `k ^ within` of `vector`.
    fn permute(&mut self, vector: Value, within: usize) -> Value {
        if within == 0 {
            return vector;
        }
        let ty = self.b.func.dfg.value_type(vector);
        let little = MemFlagsData::new().with_endianness(Endianness::Little);
        let bytes = self.b.ins().bitcast(types::I8X16, little, vector);
        let order: Vec<u8> = (0..16).map(|byte| (((byte / 4) ^ within) * 4 + byte % 4) as u8).collect();
        let order = self.b.func.dfg.immediates.push(ConstantData::from(order));
        let permuted = self.b.ins().shuffle(bytes, bytes, order);
        self.b.ins().bitcast(ty, little, permuted)
    }

    /// `op` on each lane of the f32x4 or i32x4 vectors `x` and `y`, as `binary` on scalars.
    fn vector_binary(&mut self, op: BinaryOp, ty: Ty, x: Value, y: Value) -> Value {
        use BinaryOp as B;
        let ins = self.b.ins();
        match (ty, op) {
            (Ty::F32, B::Add) => ins.fadd(x, y),
            (Ty::F32, B::Sub) => ins.fsub(x, y),
            (Ty::F32, B::Mul) => ins.fmul(x, y),
            (Ty::F32, B::Min | B::Max) => {
                // `min_max_number` lane by lane: a NaN operand gives the other one.
                let both = if op == B::Max { ins.fmax(x, y) } else { ins.fmin(x, y) };
                let x_nan = self.lane_mask(x);
                let pick = self.b.ins().bitselect(x_nan, y, both);
                let y_nan = self.lane_mask(y);
                self.b.ins().bitselect(y_nan, x, pick)
            }
            (Ty::I32, B::Add) => ins.iadd(x, y),
            (Ty::I32, B::Sub) => ins.isub(x, y),
            (Ty::I32, B::Mul) => ins.imul(x, y),
            (Ty::I32, B::And) => ins.band(x, y),
            (Ty::I32, B::Or) => ins.bor(x, y),
            (Ty::I32, B::Xor) => ins.bxor(x, y),
            (Ty::I32, B::Min) => ins.smin(x, y),
            (Ty::I32, B::Max) => ins.smax(x, y),
            (Ty::I32, B::UMin) => ins.umin(x, y),
            (Ty::I32, B::UMax) => ins.umax(x, y),
            _ => unreachable!("`vector_operation` admits {op:?} on {ty:?}"),
        }
    }

    /// All ones in the lanes of the f32x4 `x` that are NaN, as f32x4 (a `bitselect` mask).
    fn lane_mask(&mut self, x: Value) -> Value {
        let nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
        self.b.ins().bitcast(types::F32X4, MemFlagsData::new(), nan)
    }
}

/// The scalar and vector types of a register of `ty` (f32 or i32).
fn lane_types(ty: Ty) -> (Type, Type) {
    match ty {
        Ty::F32 => (types::F32, types::F32X4),
        Ty::I32 => (types::I32, types::I32X4),
        other => unreachable!("`chain_length` takes 32-bit registers only, not {other:?}"),
    }
}
