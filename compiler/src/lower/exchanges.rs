//! Instructions that move data between threads, each by the strategy the plan records:
//! `broadcast`, `permute`/`reshape`, `view` (in registers or staged) and reductions (warp
//! shuffles or staged).

use super::*;

impl Lower<'_> {
    /// `broadcast`: in registers when the operand's layout is the result's with the repeated
    /// dims reduced; otherwise (staged) the operand goes to its scratch space, and every result
    /// element reads the operand element it repeats (index 0 along the broadcast dims).
    pub(super) fn broadcast(&mut self, id: ValueId, a: ValueId, body: &mut Vec<lir::Stmt>) {
        if self.k.value(id).strategy == Some(Strategy::InRegisters) {
            // Every thread holds the operand elements its result elements repeat
            // (`plan::broadcast_operand_layout`): copy registers.
            let dims = plan::broadcast_dims(self.k, id);
            let (to, from) = (self.layout(id).clone(), self.layout(a).clone());
            let regs = (0..to.local_size())
                .map(|i| {
                    let mut c = to.local_coords(i);
                    for &d in &dims {
                        c[d] = 0;
                    }
                    self.regs(a)[from.local_of(&c).expect("plan::in_registers: the operand holds it")]
                })
                .collect();
            self.regs.insert(id, regs);
            return;
        }
        let from = self.k.value(a).ty.shape().expect("tensor").to_vec();
        let base = self.stage(id, body)[0];
        let layout = self.layout(id).clone();
        let ty = Ty::of(self.dtype(id));
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

    /// `permute` (with `perm`) and `reshape` (without). When the result's layout is the
    /// operand's layout permuted or reshaped (what inference prefers), every thread already
    /// holds its elements at the same local indices and the registers are reused; otherwise
    /// the tile goes through shared memory (row-major, which a reshape leaves unchanged).
    pub(super) fn rearrange(&mut self, id: ValueId, value: ValueId, perm: Option<&[usize]>, body: &mut Vec<lir::Stmt>) {
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

    /// `view<to>(a)`. When the two layouts keep every bit in the thread that holds it
    /// (`view_moves_no_data`, what inference prefers), each thread cuts its own bits anew: the
    /// codes of its registers of `a`, concatenated LSB first in local order, re-sliced into the
    /// registers of `id`, every destination element an OR of constant shifts of the (at most a
    /// few) source codes it overlaps. Otherwise the operand goes through shared memory and each
    /// result element gathers its bits from there.
    pub(super) fn view(&mut self, id: ValueId, a: ValueId, body: &mut Vec<lir::Stmt>) {
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
    pub(super) fn view_through_shared(&mut self, id: ValueId, a: ValueId, body: &mut Vec<lir::Stmt>) {
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

    /// The type a reduction or dot accumulates in: f32 for narrow floats, else the dtype.
    pub(super) fn accumulator_ty(dtype: DType) -> Ty {
        match dtype {
            DType::F16 | DType::BF16 => Ty::F32,
            d => Ty::of(d),
        }
    }

    pub(super) fn reduce(&mut self, id: ValueId, op: ReduceOp, value: ValueId, dim: usize, body: &mut Vec<lir::Stmt>) {
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

    /// A reduction without shared memory (strategy `shuffle`, legal by
    /// `plan::shuffle_reduction_fits`): each thread first combines its own elements, then a
    /// butterfly of `shfl.bfly` over the lane bits of the reduced dimension leaves the result
    /// in every one of those threads.
    pub(super) fn reduce_in_warps(&mut self, id: ValueId, op: ReduceOp, value: ValueId, dim: usize, body: &mut Vec<lir::Stmt>) {
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
}

/// The LIR operation that combines two partial results of a reduction of `dtype`.
pub(super) fn reduce_combine(op: ReduceOp, dtype: DType) -> lir::BinaryOp {
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
pub(super) fn acc_dtype(acc_ty: Ty, dtype: DType) -> DType {
    if acc_ty == Ty::F32 && dtype != DType::F32 { DType::F32 } else { dtype }
}
