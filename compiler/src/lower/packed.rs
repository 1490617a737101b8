//! Packed half pairs: registers `2j` and `2j + 1` of a 16-bit float tile as one `f16x2` (or
//! `bf16x2`) register, so that elementwise arithmetic on the tile takes one instruction per
//! pair and the tensor cores take the pair as it is.
//!
//! Expects the scalar registers of every value (`Lower::regs`), as everywhere in the
//! lowering. Guarantees: a value with a packed form (`Lower::packed`) has, for every pair,
//! a register whose halves are exactly its scalar registers `2j` (low half) and `2j + 1`
//! (high); the scalar registers stay defined (as the halves of the packed ones where an
//! operation produced only those), so every consumer that does not know pairs reads them as
//! before. A pair is formed where the pairs already exist or are cheap:
//! * the fast dequantizing casts of integers (and of floats without special codes) build both
//!   halves in one register anyway, and correct them with one packed operation;
//! * `+`, `-`, `*` of two tiles run packed when one has pairs and the other has them too or is
//!   a broadcast in registers (packed there, each distinct pair of its registers once); each
//!   half is rounded as its own operation, exactly like the scalar instructions, so results
//!   are bit-identical;
//! * a cast to the same dtype keeps its operand's pairs.

use super::*;

impl Lower<'_> {
    /// The packed pairs of `id`, if it has them.
    pub(super) fn packed_of(&self, id: ValueId) -> Option<&[Var]> {
        self.packed.get(&id).map(Vec::as_slice)
    }

    /// Records `pairs` as the packed form of `id` and defines its scalar registers as their
    /// halves.
    pub(super) fn define_from_pairs(&mut self, id: ValueId, pairs: Vec<Var>, body: &mut Vec<lir::Stmt>) {
        let regs = self.halves_of(&pairs, body);
        self.regs.insert(id, regs);
        self.packed.insert(id, pairs);
    }

    /// The halves of the packed registers `pairs` as scalar registers, in order.
    pub(super) fn halves_of(&mut self, pairs: &[Var], body: &mut Vec<lir::Stmt>) -> Vec<Var> {
        let lane = self.p.vars[pairs[0].0 as usize].lane();
        let mut regs = Vec::with_capacity(pairs.len() * 2);
        for &pair in pairs {
            let word = self.assign(body, Ty::I32, Expr::Bitcast { to: Ty::I32, value: Box::new(var(pair)) });
            for high in [false, true] {
                regs.push(self.assign(body, lane, crate::lower_numerics::half_of_word(var(word), high, lane)));
            }
        }
        regs
    }

    /// The packed register of the 16-bit float registers `low` and `high` (of type `lane`).
    pub(super) fn pack_halves(&mut self, low: Var, high: Var, lane: Ty, body: &mut Vec<lir::Stmt>) -> Var {
        let word = crate::lower_numerics::word_of_halves(var(low), var(high));
        let packed = lane.packed().expect("a 16-bit float");
        self.assign(body, packed, Expr::Bitcast { to: packed, value: Box::new(word) })
    }

    /// The registers `regs` (of the 16-bit float type `lane`; they may repeat, as a
    /// broadcast's do) packed pair by pair, each distinct pair of source registers once, at
    /// this point of `body`.
    fn pack_registers(&mut self, regs: &[Var], lane: Ty, body: &mut Vec<lir::Stmt>) -> Vec<Var> {
        let mut made: HashMap<(Var, Var), Var> = HashMap::new();
        let mut pairs = Vec::with_capacity(regs.len() / 2);
        for pair in regs.chunks(2) {
            let key = (pair[0], pair[1]);
            let packed = match made.get(&key) {
                Some(p) => *p,
                None => {
                    let p = self.pack_halves(pair[0], pair[1], lane, body);
                    made.insert(key, p);
                    p
                }
            };
            pairs.push(packed);
        }
        pairs
    }

    /// `a op b` on packed pairs when the result is a 16-bit float tile, the operation one of
    /// `+ - *`, and both operands have packed forms; `false` (nothing emitted) otherwise.
    pub(super) fn packed_binary(&mut self, id: ValueId, op: BinaryOp, a: ValueId, b: ValueId, body: &mut Vec<lir::Stmt>) -> bool {
        let lir_op = match op {
            BinaryOp::Add => lir::BinaryOp::Add,
            BinaryOp::Sub => lir::BinaryOp::Sub,
            BinaryOp::Mul => lir::BinaryOp::Mul,
            _ => return false,
        };
        let lane = Ty::of(self.dtype(id));
        let Some(packed_ty) = lane.packed() else { return false };
        let count = self.regs(a).len();
        // At least one operand already in pairs; the other in pairs too, or a broadcast in
        // registers, which is packed here (its few distinct pairs once each).
        if self.regs(b).len() != count || !count.is_multiple_of(2) || (self.packed_of(a).is_none() && self.packed_of(b).is_none()) {
            return false;
        }
        let packable = |s: &Self, v: ValueId| {
            s.packed_of(v).is_some() || (matches!(s.k.value(v).op, Op::Broadcast(_)) && s.k.value(v).strategy == Some(Strategy::InRegisters))
        };
        if !packable(self, a) || !packable(self, b) {
            return false;
        }
        let mut pairs_of = |s: &mut Self, v: ValueId| match s.packed_of(v) {
            Some(p) => p.to_vec(),
            None => {
                let regs = s.regs(v).to_vec();
                s.pack_registers(&regs, lane, body)
            }
        };
        let (x, y) = (pairs_of(self, a), pairs_of(self, b));
        let operands: Vec<(Var, Var)> = x.into_iter().zip(y).collect();
        let pairs = operands.into_iter().map(|(x, y)| self.assign(body, packed_ty, bin(lir_op, var(x), var(y)))).collect();
        self.define_from_pairs(id, pairs, body);
        true
    }
}
