//! Packed half pairs: two registers of a 16-bit float tile as one `f16x2` (or `bf16x2`)
//! register, so that elementwise arithmetic on the tile takes one instruction per pair and
//! the tensor cores take the pair as it is. Which registers pair up is a function of the
//! tile's layout alone ([`pairing_of_layout`]): registers `2j` and `2j + 1`, or, where those
//! are not rows `k` and `k + 1` of one column but every register has such a partner in its
//! thread, those row pairs (the pairs of a tensor-core B operand), so values of one layout
//! always pair alike.
//!
//! Expects the scalar registers of every value (`Lower::regs`), as everywhere in the
//! lowering. Guarantees: a value with a packed form (`Lower::packed`) has, for every pair
//! `(low, high)` of its pairing, a register whose halves are exactly its scalar registers
//! `low` (low half) and `high`; the scalar registers stay defined (as the halves of the
//! packed ones where an operation produced only those), so every consumer that does not know
//! pairs reads them as before. A pair is formed where the pairs already exist or are cheap:
//! * the fast dequantizing casts of integers (and of floats without special codes) build both
//!   halves in one register anyway, and correct them with one packed operation;
//! * `+`, `-`, `*` of two tiles run packed when one has pairs and the other has them too or is
//!   a broadcast in registers (packed there, each distinct pair of its registers once); each
//!   half is rounded as its own operation, exactly like the scalar instructions, so results
//!   are bit-identical;
//! * a cast to the same dtype keeps its operand's pairs;
//! * `codes - zero_points` where `codes` is a fast cast whose pairs end in one exact
//!   correction (`pattern · scale − offset`: the magic-number subtraction of integers, the
//!   scaling of placed floats) folds the zero point into that correction: one packed `fma`
//!   (or subtraction) per pair instead of two. It needs `offset + zero_point` exact: always
//!   for floats (offset 0), for integers when the zero points are integers (a cast, possibly
//!   broadcast, of an integer tile) within the pair type's exact range. The correction being
//!   exact, the one rounding of the sum is that of the subtraction: the same result.

use super::*;
use crate::lower_numerics::packed_constant_halves;

/// Which registers of a value make its packed pairs: `(low half, high half)` register
/// indices, every register once.
pub(super) type Pairing = Vec<(usize, usize)>;

/// Registers `2j` and `2j + 1` of `count` registers.
pub(super) fn adjacent_pairs(count: usize) -> Pairing {
    (0..count / 2).map(|j| (2 * j, 2 * j + 1)).collect()
}

/// The pairing of the registers of a tile of `layout` (module header): row pairs where every
/// register holding an even row `k` has the register holding row `k + 1` of its column as
/// partner (the same registers in every thread); registers `2j, 2j + 1` otherwise.
pub(super) fn pairing_of_layout(layout: &RegisterLayout) -> Pairing {
    // Row pairs come out ordered by their low register, so where registers `2j, 2j + 1` are
    // row pairs the two pairings are the same.
    row_pairs(layout).unwrap_or_else(|| adjacent_pairs(layout.local_size()))
}

fn row_pairs(layout: &RegisterLayout) -> Option<Pairing> {
    let locals = layout.local_size();
    if layout.rank() != 2 || !locals.is_multiple_of(2) {
        return None;
    }
    let mut pairs = Vec::with_capacity(locals / 2);
    for low in 0..locals {
        let coord = layout.coord(0, low)?;
        if coord[0] % 2 == 1 {
            continue;
        }
        let partner = [coord[0] + 1, coord[1]];
        let high = layout.local_of(&partner)?;
        if layout.coord(0, high).as_deref() != Some(&partner[..]) {
            return None;
        }
        pairs.push((low, high));
    }
    // A coordinate is the sum of a thread's part and a register's part
    // (`RegisterLayout::coord`), so partners found in thread 0 are partners in every thread.
    (pairs.len() * 2 == locals).then_some(pairs)
}

/// The result of a fast dequantizing cast (`casts.rs`).
pub(super) struct FastCast {
    /// The scalar registers, in order.
    pub regs: Vec<Var>,
    /// The packed pairs, where the cast built them.
    pub pairs: Option<Vec<Var>>,
    /// The pairs before their last correction, where the plan ends in one.
    pub raw: Option<RawPairs>,
}

/// A packed pair before its last, exact correction: each half's value is
/// `pattern · scale − offset`, with `pattern` (an i32) read as the pair type and the scale
/// and offset of that half (low, high).
#[derive(Clone, Copy, Debug)]
pub(super) struct RawPair {
    pub pattern: Var,
    pub scale: [f64; 2],
    pub offset: [f64; 2],
}

/// The uncorrected pairs of a fast cast, in the order of its pairing.
#[derive(Clone, Debug)]
pub(super) enum RawPairs {
    /// 16-bit patterns with a packed correction.
    Halves(Vec<RawPair>),
    /// bf16 pairs of 8-bit integer codes before their last, exact step
    /// (`cast_bytes_to_bf16`): each half's value is the f32 read from its pattern (an i32, low
    /// half first) minus `offset`, rounded to bf16 (exactly).
    F32 { patterns: Vec<[Var; 2]>, offset: f64 },
}

impl Lower<'_> {
    /// The packed pairs of `id`, if it has them.
    pub(super) fn packed_of(&self, id: ValueId) -> Option<&[Var]> {
        self.packed.get(&id).map(Vec::as_slice)
    }

    /// The pairing of the registers of tile `id` ([`pairing_of_layout`]).
    /// No pairs for a scalar.
    pub(super) fn pairing(&self, id: ValueId) -> Pairing {
        self.k.value(id).layout.as_ref().map_or_else(Vec::new, pairing_of_layout)
    }

    /// Records `pairs` (in the order of its pairing) as the packed form of `id` and defines
    /// its scalar registers as their halves.
    pub(super) fn define_from_pairs(&mut self, id: ValueId, pairs: Vec<Var>, body: &mut Vec<lir::Stmt>) {
        let pairing = self.pairing(id);
        let regs = self.halves_of(&pairs, &pairing, body);
        self.regs.insert(id, regs);
        self.packed.insert(id, pairs);
    }

    /// The halves of the packed registers `pairs` as scalar registers, each at its place in
    /// `pairing`.
    pub(super) fn halves_of(&mut self, pairs: &[Var], pairing: &[(usize, usize)], body: &mut Vec<lir::Stmt>) -> Vec<Var> {
        let lane = self.p.vars[pairs[0].0 as usize].lane();
        let mut regs: Vec<Option<Var>> = vec![None; pairs.len() * 2];
        for (&pair, &(low, high)) in pairs.iter().zip(pairing) {
            let word = self.assign(body, Ty::I32, Expr::Bitcast { to: Ty::I32, value: Box::new(var(pair)) });
            for (index, is_high) in [(low, false), (high, true)] {
                regs[index] = Some(self.assign(body, lane, crate::lower_numerics::half_of_word(var(word), is_high, lane)));
            }
        }
        regs.into_iter().map(|r| r.expect("a pairing covers every register")).collect()
    }

    /// The packed register of the 16-bit float registers `low` and `high` (of type `lane`).
    pub(super) fn pack_halves(&mut self, low: Var, high: Var, lane: Ty, body: &mut Vec<lir::Stmt>) -> Var {
        let word = crate::lower_numerics::word_of_halves(var(low), var(high));
        let packed = lane.packed().expect("a 16-bit float");
        self.assign(body, packed, Expr::Bitcast { to: packed, value: Box::new(word) })
    }

    /// The registers `regs` (of the 16-bit float type `lane`; they may repeat, as a
    /// broadcast's do) packed pair by pair of `pairing`, each distinct pair of source registers
    /// once, at this point of `body`.
    fn pack_registers(&mut self, regs: &[Var], pairing: &[(usize, usize)], lane: Ty, body: &mut Vec<lir::Stmt>) -> Vec<Var> {
        let mut made: HashMap<(Var, Var), Var> = HashMap::new();
        let mut pairs = Vec::with_capacity(regs.len() / 2);
        for &(low, high) in pairing {
            let pair = [regs[low], regs[high]];
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
        // Pairs of one pairing: the result's (the operands' layouts are the result's).
        let pairing = self.pairing(id);
        let packable = |s: &Self, v: ValueId| {
            let in_pairs = s.packed_of(v).is_some() && s.pairing(v) == pairing;
            in_pairs || (matches!(s.k.value(v).op, Op::Broadcast(_)) && s.k.value(v).strategy == Some(Strategy::InRegisters))
        };
        if !packable(self, a) || !packable(self, b) {
            return false;
        }
        let mut pairs_of = |s: &mut Self, v: ValueId| match s.packed_of(v) {
            Some(p) => p.to_vec(),
            None => {
                let regs = s.regs(v).to_vec();
                s.pack_registers(&regs, &pairing, lane, body)
            }
        };
        let (x, y) = (pairs_of(self, a), pairs_of(self, b));
        let operands: Vec<(Var, Var)> = x.into_iter().zip(y).collect();
        let pairs = operands.into_iter().map(|(x, y)| self.assign(body, packed_ty, bin(lir_op, var(x), var(y)))).collect();
        self.define_from_pairs(id, pairs, body);
        true
    }

    /// `a - b` as one packed operation per pair when `a` has raw pairs (each half
    /// `pattern · scale − offset`, exactly) and `offset + b` is exact: `fma(pattern, scale,
    /// −(offset + b))`, or `pattern − (offset + b)` for unscaled patterns. Exact addends: for
    /// floats (offset 0) the negation `−0 − b`, which keeps the sign of a zero as the
    /// subtraction does; for integers, `b` holding integers with `|offset + b|` within the
    /// pair type's exact-integer limit (2^11 for f16, 2^8 for bf16). The correction is exact,
    /// so the one rounding is that of the subtraction. `false`, with nothing emitted, where
    /// that is not proven or nothing would be saved.
    pub(super) fn folded_zero_point(&mut self, id: ValueId, op: BinaryOp, a: ValueId, b: ValueId, body: &mut Vec<lir::Stmt>) -> bool {
        if op != BinaryOp::Sub {
            return false;
        }
        let raw = match self.raw_pairs.get(&a).cloned() {
            Some(RawPairs::Halves(raw)) => raw,
            Some(RawPairs::F32 { patterns, offset }) => return self.folded_f32_zero_point(id, a, b, &patterns, offset, body),
            None => return false,
        };
        let lane = Ty::of(self.dtype(id));
        let Some(packed_ty) = lane.packed() else { return false };
        // Nothing to fold into a pattern that is its value.
        if raw.iter().all(|p| p.scale == [1.0; 2] && p.offset == [0.0; 2]) {
            return false;
        }
        let limit: i128 = if lane == Ty::F16 { 1 << 11 } else { 1 << 8 };
        let within = |x: i128| x.abs() <= limit;
        let addends_exact = raw.iter().all(|p| p.offset == [0.0; 2])
            || self.integer_values(b).is_some_and(|(low, high)| {
                within(low)
                    && within(high)
                    && raw.iter().flat_map(|p| p.offset).all(|o| o.fract() == 0.0 && within(o as i128 + low) && within(o as i128 + high))
            });
        let pairing = self.pairing(id);
        if !addends_exact || self.regs(b).len() != raw.len() * 2 || self.pairing(a) != pairing {
            return false;
        }
        let zero_pairs = match self.packed_of(b).filter(|_| self.pairing(b) == pairing) {
            Some(pairs) => pairs.to_vec(),
            None => {
                let regs = self.regs(b).to_vec();
                self.pack_registers(&regs, &pairing, lane, body)
            }
        };
        // The addend (or, unscaled, the subtrahend), once per distinct offset, scale and zero
        // pair.
        let mut corrections: HashMap<([u64; 2], [u64; 2], Var), Var> = HashMap::new();
        let mut pairs = Vec::with_capacity(raw.len());
        for (p, zero) in raw.iter().zip(zero_pairs) {
            let scaled = p.scale != [1.0; 2];
            let key = (p.scale.map(f64::to_bits), p.offset.map(f64::to_bits), zero);
            let correction = match corrections.get(&key) {
                Some(c) => *c,
                None => {
                    // −offset − b (−0 − b for floats); offset + b for an unscaled pattern.
                    let e = if scaled {
                        bin(lir::BinaryOp::Sub, packed_constant_halves(p.offset.map(|o| -o), lane).expect("f16 or bf16"), var(zero))
                    } else {
                        bin(lir::BinaryOp::Add, packed_constant_halves(p.offset, lane).expect("f16 or bf16"), var(zero))
                    };
                    let c = self.assign(body, packed_ty, e);
                    corrections.insert(key, c);
                    c
                }
            };
            let pattern = Expr::Bitcast { to: packed_ty, value: Box::new(var(p.pattern)) };
            let value = if scaled {
                Expr::Fma(Box::new(pattern), Box::new(packed_constant_halves(p.scale, lane).expect("f16 or bf16")), Box::new(var(correction)))
            } else {
                bin(lir::BinaryOp::Sub, pattern, var(correction))
            };
            pairs.push(self.assign(body, packed_ty, value));
        }
        self.define_from_pairs(id, pairs, body);
        true
    }

    /// [`Self::folded_zero_point`] for bf16 pairs of 8-bit integer codes (`RawPairs::F32`):
    /// `(pattern − offset) − z` is `pattern − (offset + z)`, one f32 subtraction per half,
    /// exact for integer zero points within bf16's exact range (their f32 sums stay below
    /// 2^24), so the one rounding into bf16 is that of the subtraction in bf16. The addends
    /// are made once per distinct zero-point register.
    fn folded_f32_zero_point(&mut self, id: ValueId, a: ValueId, b: ValueId, patterns: &[[Var; 2]], offset: f64, body: &mut Vec<lir::Stmt>) -> bool {
        use crate::dtype::DType;
        let lane = Ty::of(self.dtype(id));
        let pairing = self.pairing(id);
        let exact = self.integer_values(b).is_some_and(|(low, high)| low.abs() <= 1 << 8 && high.abs() <= 1 << 8);
        if lane != Ty::BF16 || !exact || self.regs(b).len() != patterns.len() * 2 || self.pairing(a) != pairing {
            return false;
        }
        let zeros = self.regs(b).to_vec();
        let mut addends: HashMap<Var, Var> = HashMap::new();
        let mut pairs = Vec::with_capacity(patterns.len());
        for (pair_patterns, &(low, high)) in patterns.iter().zip(pairing.iter()) {
            let halves = [(low, pair_patterns[0]), (high, pair_patterns[1])].map(|(register, pattern)| {
                let zero = zeros[register];
                let addend = match addends.get(&zero) {
                    Some(v) => *v,
                    None => {
                        let z = self.cast_expr(var(zero), DType::BF16, DType::F32);
                        let v = self.assign(body, Ty::F32, bin(lir::BinaryOp::Add, z, Expr::Float(Ty::F32, offset)));
                        addends.insert(zero, v);
                        v
                    }
                };
                self.bf16_of_f32_pattern(pattern, var(addend), body)
            });
            pairs.push(self.pack_halves(halves[0], halves[1], Ty::BF16, body));
        }
        self.define_from_pairs(id, pairs, body);
        true
    }

    /// The range of the integers a 16-bit float value holds when it is a cast of an integer
    /// tile, possibly broadcast; `None` otherwise.
    fn integer_values(&self, v: ValueId) -> Option<(i128, i128)> {
        match &self.k.value(v).op {
            Op::Cast(x) if self.dtype(*x).is_int() => self.dtype(*x).int_range(),
            Op::Broadcast(x) => self.integer_values(*x),
            _ => None,
        }
    }
}
