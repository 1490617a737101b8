//! `dot`: on tensor cores (`mma.sync`; the A operand by `ldmatrix`, in place or staged, the B
//! operand the same way or from its own registers when they are the fragments) or on CUDA
//! cores through staged operands, as the plan records.

use super::*;

impl Lower<'_> {
    pub(super) fn dot(&mut self, id: ValueId, a: ValueId, b: ValueId, c: ValueId, body: &mut Vec<lir::Stmt>) {
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

    /// `dot` on tensor cores (strategy `mma`, legal by `plan::mma_instruction`): the
    /// accumulator's layout is `Q * fragment * local(1, inner)` ([`MmaTiling`]: whole warps in
    /// `Q`), so each local index of `Q` and each `j < inner` is one 16×8 tile of one warp, and
    /// the k extent is walked in steps of the instruction's k, the A fragments of a step loaded
    /// once for the `inner` tiles that share them. Each operand is read by `ldmatrix`
    /// from its shared tensor in place or from the scratch space it is staged in (row-major,
    /// 16-byte aligned rows since K is a multiple of 16 and N of 8), or, for a B operand whose
    /// layout is the fragment layout, packed from its registers, as the strategy says.
    pub(super) fn dot_mma(&mut self, id: ValueId, operands: [(ValueId, OperandSource); 2], c: ValueId, instruction: MmaInstruction, body: &mut Vec<lir::Stmt>) {
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
        let tiling = MmaTiling::of(&layout).expect("plan::mma_instruction");
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
        let is_staged = |i: usize| operands[i].1 == OperandSource::Staged;
        let staged = is_staged(0) || is_staged(1);
        let staged_bases = if staged { self.stage(id, body) } else { Vec::new() };
        let mut next_base = staged_bases.into_iter();
        let bases: Vec<usize> = (0..2).map(|i| if is_staged(i) { next_base.next().expect("plan: one offset per staged operand") } else { 0 }).collect();
        // A B operand in registers: for the tile whose first accumulator register is `first`,
        // k-step `s`, k-half `h` and element `i`, the local index that holds it in every thread
        // (found through thread 0, whose fragment coordinates are the tile's origin).
        let b_in_registers = operands[1].1 == OperandSource::Registers;
        let b_pairing = if b_in_registers { self.pairing(b) } else { Vec::new() };
        let b_layout = self.layout(b).clone();
        let b_local = |first: usize, s: usize, h: usize, i: usize| -> usize {
            let origin_n = layout.coord(0, first).expect("thread 0 holds every tile's first register")[1];
            let k = s * 16 + h * 8 + i;
            let local = b_layout.local_of(&[k, origin_n]).expect("plan::reads_registers: the B layout holds the tile");
            debug_assert_eq!(b_layout.coord(0, local), Some(vec![k, origin_n]), "plan::reads_registers");
            local
        };
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
        for q in 0..tiling.quotient.local_size() {
            // The tiles' origins: register `tiling.register(q, 0, j)` holds (origin_m + group,
            // origin_n[j] + 2·tig); the `inner` tiles of `q` share their rows.
            let first = self.coords(&layout, tiling.register(q, 0, 0));
            let origin_m = self.assign(body, Ty::I32, bin(lir::BinaryOp::Sub, first[0].clone(), var(group)));
            let origin_n: Vec<Var> = (0..tiling.inner)
                .map(|j| {
                    let first = self.coords(&layout, tiling.register(q, 0, j));
                    self.assign(body, Ty::I32, bin(lir::BinaryOp::Sub, first[1].clone(), bin(lir::BinaryOp::Mul, var(tig), int(Ty::I32, 2))))
                })
                .collect();
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
                let a_regs: [Expr; 4] = a_regs.into_iter().map(var).collect::<Vec<_>>().try_into().expect("four");
                for (j, &origin_n) in origin_n.iter().enumerate() {
                    let b_regs: Vec<Expr> = if kind == lir::MmaKind::S8 {
                        // B of m16n8k32.s8: b_i at k = 4·tig + (i % 4) + 16·(i / 4), n =
                        // groupID, four bytes per register; ldmatrix cannot transpose bytes, so
                        // gather them.
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
                    } else if b_in_registers {
                        // Two 16-bit elements make one register, the lower k in the low half:
                        // a packed pair of the operand when it has one for these two elements.
                        let mut regs = Vec::new();
                        for h in 0..2 {
                            let tile = tiling.register(q, 0, j);
                            let (low, high) = (b_local(tile, step, h, 0), b_local(tile, step, h, 1));
                            let pair_index = b_pairing.iter().position(|&p| p == (low, high));
                            if let (Some(pairs), Some(index)) = (self.packed_of(b), pair_index) {
                                let pair = pairs[index];
                                regs.push(var(self.assign(body, Ty::I32, Expr::Bitcast { to: Ty::I32, value: Box::new(var(pair)) })));
                                continue;
                            }
                            let packed = crate::lower_numerics::word_of_halves(var(self.regs(b)[low]), var(self.regs(b)[high]));
                            regs.push(var(self.assign(body, Ty::I32, packed)));
                        }
                        regs
                    } else {
                        let b_regs: Vec<Var> = (0..2).map(|_| self.new_var(Ty::I32)).collect();
                        let b_row = bin(lir::BinaryOp::Add, int(Ty::I32, k0), bin(lir::BinaryOp::Rem, var(lane), int(Ty::I32, 16)));
                        let b_offset = operand_offset(self, 1, b_row, var(origin_n));
                        body.push(lir::Stmt::LdMatrix { dst: b_regs.clone(), row_offset: b_offset, trans: true });
                        b_regs.into_iter().map(var).collect()
                    };
                    let c_regs = [0, 1, 2, 3].map(|i| acc[tiling.register(q, i, j)]);
                    let b_regs: [Expr; 2] = b_regs.try_into().expect("two");
                    body.push(lir::Stmt::Mma { kind, a: a_regs.clone(), b: b_regs, c: c_regs });
                }
            }
        }
        // Scratch space is reused by the next staging: wait until every warp has read it.
        if staged {
            body.push(lir::Stmt::Barrier);
        }
        self.regs.insert(id, acc);
    }
}
