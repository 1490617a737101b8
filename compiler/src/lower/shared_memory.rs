//! Shared tensors and scratch space: addressing at the planned offsets, bounds checks of
//! tiles, loads and stores, `copy_async` over its planned layout, and staging operands for
//! instructions that move data between threads.

use super::*;

impl Lower<'_> {
    /// Byte offset of element `coords` in a row-major staged tile of `shape` at `base`.
    /// With `clamp_broadcast`, dims of extent 1 read index 0 (broadcast).
    pub(super) fn shared_offset(&self, base: usize, coords: &[Expr], shape: &[usize], bytes: i64, clamp_broadcast: bool) -> Expr {
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
    pub(super) fn shared_element(&self, shared: ValueId, offsets: &[Expr], tile_coords: &[Expr]) -> Expr {
        let Type::Shared { dtype, shape } = &self.k.value(shared).ty else { unreachable!("verified: a shared tensor") };
        let coords = Self::tensor_coords(offsets, tile_coords);
        let base = self.k.value(shared).shared_offsets[0];
        // Packed formats are addressed by the bit, the others by the byte.
        if dtype.bits() < 8 {
            self.shared_offset(base * 8, &coords, shape, dtype.bits() as i64, false)
        } else {
            self.shared_offset(base, &coords, shape, Ty::of(*dtype).bytes() as i64, false)
        }
    }

    /// Byte offset (i32) in the shared buffer of a run of sub-byte codes that starts on a byte
    /// (`shared_vector_width`: rows of whole runs, runs of whole bytes), at `offsets` plus
    /// `tile_coords` as in [`Self::shared_element`]: the leading dims times their rows' bytes
    /// plus the last coordinate's bit divided by 8, so that only the column part, which the
    /// runs of different rows share, is divided.
    fn shared_run_byte(&self, shared: ValueId, offsets: &[Expr], tile_coords: &[Expr]) -> Expr {
        let Type::Shared { dtype, shape } = &self.k.value(shared).ty else { unreachable!("verified: a shared tensor") };
        let mut coords = Self::tensor_coords(offsets, tile_coords);
        let column = coords.pop().expect("a shared tensor has a dimension");
        let last = shape.len() - 1;
        let row_bytes = (shape[last] * dtype.bits() as usize / 8) as i64;
        let rows = self.shared_offset(0, &coords, &shape[..last], row_bytes, false);
        let column = bin(lir::BinaryOp::Div, bin(lir::BinaryOp::Mul, column, int(Ty::I32, dtype.bits() as i64)), int(Ty::I32, 8));
        let base = self.k.value(shared).shared_offsets[0] as i64;
        bin(lir::BinaryOp::Add, bin(lir::BinaryOp::Add, int(Ty::I32, base), rows), column)
    }

    /// The coordinates in a shared tensor of the element at `offsets` (one per dim) plus
    /// `tile_coords` (over its trailing dims).
    fn tensor_coords(offsets: &[Expr], tile_coords: &[Expr]) -> Vec<Expr> {
        let lead = offsets.len() - tile_coords.len();
        offsets
            .iter()
            .enumerate()
            .map(|(d, o)| match (d < lead, o) {
                (true, o) => o.clone(),
                (false, Expr::Int(_, 0)) => tile_coords[d - lead].clone(),
                (false, o) => bin(lir::BinaryOp::Add, o.clone(), tile_coords[d - lead].clone()),
            })
            .collect()
    }

    /// A `Check` that the tile of `tile` extents at `offsets` (one per dim of the shared
    /// tensor; the tile covers the trailing dims) lies inside shared tensor `shared`: the
    /// language makes an access outside it an error, also where the bytes would still be in
    /// the shared buffer. Dims whose offset is a constant inside the tensor need no test.
    pub(super) fn shared_bounds_check(&mut self, what: &str, shared: ValueId, offsets: &[ValueId], tile: &[usize], body: &mut Vec<lir::Stmt>) {
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

    pub(super) fn load_shared(&mut self, id: ValueId, shared: ValueId, offsets: &[ValueId], body: &mut Vec<lir::Stmt>) {
        let tile = self.k.value(id).ty.shape().expect("tile").to_vec();
        self.shared_bounds_check("load", shared, offsets, &tile, body);
        let layout = self.layout(id).clone();
        let dtype = self.dtype(id);
        let ty = Ty::of(dtype);
        let v = self.shared_vector_width(shared, &layout, offsets, dtype);
        let offsets_ids = offsets;
        let offsets: Vec<Expr> = offsets.iter().map(|o| var(self.scalar(*o))).collect();
        let mut regs = Vec::new();
        if v > 1 {
            for group in 0..layout.local_size() / v {
                let tile_coords = self.coords(&layout, group * v);
                // Sub-byte runs start on a byte: their byte offset, the rows' part a multiple of
                // whole rows so that its constants fold into the loads.
                let offset = if dtype.bits() < 8 { self.shared_run_byte(shared, &offsets, &tile_coords) } else { self.shared_element(shared, &offsets, &tile_coords) };
                let dst: Vec<Var> = (0..v).map(|_| self.new_var(ty)).collect();
                // Codes below 8 bits, and bytes in whole words: loaded as words and cut, so
                // that the fast casts can take the codes straight from the words
                // (`code_sources`).
                if dtype.bits() < 8 || (dtype.bits() == 8 && (v * 8).is_multiple_of(32)) {
                    let (word_ty, count) = Self::packed_words(v, dtype.bits());
                    let words: Vec<Var> = (0..count).map(|_| self.new_var(word_ty)).collect();
                    body.push(lir::Stmt::LoadSharedVector { dst: words.clone(), offset, ty: word_ty });
                    let unpack = self.unpack_words(&words, word_ty, dtype, &dst, true);
                    body.extend(unpack);
                } else {
                    body.push(lir::Stmt::LoadSharedVector { dst: dst.clone(), offset, ty });
                }
                regs.extend(dst);
            }
            self.regs.insert(id, regs);
            return;
        }
        if let Some((run, piece_bytes)) = self.shared_word_runs(shared, &layout, offsets_ids, dtype) {
            // Codes of 3, 5, 6 or 7 bits: each run of whole words in loads of `piece_bytes`.
            let bits = dtype.bits() as usize;
            for group in 0..layout.local_size() / run {
                let element = self.shared_element(shared, &offsets, &self.coords(&layout, group * run));
                let byte = self.assign(body, Ty::I32, bin(lir::BinaryOp::Div, element, int(Ty::I32, 8)));
                let mut words = Vec::new();
                for piece in 0..run * bits / 8 / piece_bytes {
                    let dst: Vec<Var> = (0..piece_bytes / 4).map(|_| self.new_var(Ty::I32)).collect();
                    let offset = bin(lir::BinaryOp::Add, var(byte), int(Ty::I32, (piece * piece_bytes) as i64));
                    body.push(lir::Stmt::LoadSharedVector { dst: dst.clone(), offset, ty: Ty::I32 });
                    words.extend(dst);
                }
                let dst: Vec<Var> = (0..run).map(|_| self.new_var(ty)).collect();
                let unpack = self.unpack_words(&words, Ty::I32, dtype, &dst, true);
                body.extend(unpack);
                regs.extend(dst);
            }
            self.regs.insert(id, regs);
            return;
        }
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

    /// The number of elements `v` each vector access of a load of `layout` at `offsets` from
    /// shared tensor `shared` moves (1: per-element accesses). As for global tensors
    /// ([`Lower::vector_width`]), every group of `v` consecutive local indices must be `v`
    /// consecutive elements of a row starting at a multiple of `v` in the tile
    /// (`layout::analysis::row_tile_vector_width`), a power-of-two number of whole bytes of at
    /// most 16; and the group's address must be a multiple of its size
    /// ([`Self::shared_run_aligned`]).
    fn shared_vector_width(&self, shared: ValueId, layout: &RegisterLayout, offsets: &[ValueId], dtype: DType) -> usize {
        if dtype == DType::Bool || layout.rank() == 0 {
            return 1;
        }
        let bits = dtype.bits() as usize;
        let mut v = crate::layout::analysis::row_tile_vector_width(layout, dtype.bits(), 16).unwrap_or(1);
        while v > 1 && (!self.shared_run_aligned(shared, offsets, v) || !(v * bits).is_multiple_of(8) || !(v * bits / 8).is_power_of_two()) {
            v /= 2;
        }
        v
    }

    /// Whether runs of `run` elements (a power of two) that start at multiples of `run` in a
    /// tile of shared tensor `shared` at `offsets` start at multiples of `run` in the tensor
    /// too, hence at addresses aligned to the run's bytes: the tensor starts 16-byte aligned
    /// (the plan's rule), its rows are whole multiples of the run, and the tile's offset in
    /// the last dimension is a proven multiple of it.
    fn shared_run_aligned(&self, shared: ValueId, offsets: &[ValueId], run: usize) -> bool {
        let Type::Shared { shape, .. } = &self.k.value(shared).ty else { return false };
        let (Some(&row), Some(&last)) = (shape.last(), offsets.last()) else { return false };
        self.k.value(shared).shared_offsets[0].is_multiple_of(16) && row.is_multiple_of(run) && run.trailing_zeros() <= self.div.value(last)
    }

    /// For codes of 3, 5, 6 or 7 bits, which never fill a power-of-two number of bytes: the
    /// run `run` of consecutive codes every thread holds (`plan::holds_runs`; a power of two,
    /// so runs start at multiples of it) when it fills whole 32-bit words, with the size of
    /// the aligned loads that read it (`piece_bytes`, the largest power of two up to 16
    /// dividing the run's bytes), when the run is aligned ([`Self::shared_run_aligned`]).
    fn shared_word_runs(&self, shared: ValueId, layout: &RegisterLayout, offsets: &[ValueId], dtype: DType) -> Option<(usize, usize)> {
        let bits = dtype.bits() as usize;
        if bits >= 8 || bits.is_power_of_two() || layout.rank() == 0 {
            return None;
        }
        let run = plan::contiguous_run(layout);
        if run < 2 || !(run * bits).is_multiple_of(32) || !self.shared_run_aligned(shared, offsets, run) {
            return None;
        }
        let bytes = run * bits / 8;
        Some((run, (1usize << bytes.trailing_zeros()).min(16)))
    }

    pub(super) fn store_shared(&mut self, shared: ValueId, value: ValueId, offsets: &[ValueId], body: &mut Vec<lir::Stmt>) {
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
    /// When a run is 4, 8 or 16 bytes (or a power of two elements in whole 16-byte pieces, one
    /// `cp.async` each) and the source rows and offsets are aligned to it (proven
    /// by the divisibility analysis, or else tested at run time for the whole block), each run
    /// is one `cp.async` that zero-fills what lies outside the tensor; otherwise every element is loaded (zero outside the tensor) and stored to
    /// shared memory directly, which is already complete when the group's `wait` returns.
    pub(super) fn copy_async(&mut self, id: ValueId, shared: ValueId, dst_offsets: &[ValueId], param: usize, src_offsets: &[ValueId], body: &mut Vec<lir::Stmt>) {
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
        // One `cp.async` of 4, 8 or 16 bytes, or 16-byte pieces of a longer run of a power of
        // two elements (aligned like the run).
        let pieces = ((run_bytes + 15) / 16).max(1);
        let vector = run_bits % 8 == 0 && (matches!(run_bytes, 4 | 8 | 16) || (run_bytes % 16 == 0 && run.is_power_of_two()));
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
                let element = self.shared_element(shared, &dst, &coords);
                let offset = if bits < 8 { bin(lir::BinaryOp::Div, element, int(Ty::I32, 8)) } else { element };
                if pieces == 1 {
                    let reads = cmp(CmpOp::Gt, var(src_bytes), int(Ty::I32, 0));
                    let byte_index = Expr::Select(Box::new(reads), Box::new(byte_index), Box::new(int(Ty::I64, 0)));
                    fast.push(lir::Stmt::CopyAsync { offset, param, byte_index, bytes: run_bytes as u32, src_bytes: var(src_bytes) });
                    continue;
                }
                let byte_index = self.assign(&mut fast, Ty::I64, byte_index);
                let offset = self.assign(&mut fast, Ty::I32, offset);
                for piece in 0..pieces {
                    // The piece's bytes inside the tensor: clamp(src_bytes - 16 · piece, 0, 16).
                    let left = bin(lir::BinaryOp::Sub, var(src_bytes), int(Ty::I32, 16 * piece));
                    let piece_bytes = self.assign(&mut fast, Ty::I32, bin(lir::BinaryOp::Min, bin(lir::BinaryOp::Max, left, int(Ty::I32, 0)), int(Ty::I32, 16)));
                    let reads = cmp(CmpOp::Gt, var(piece_bytes), int(Ty::I32, 0));
                    let at = bin(lir::BinaryOp::Add, var(byte_index), int(Ty::I64, 16 * piece));
                    fast.push(lir::Stmt::CopyAsync {
                        offset: bin(lir::BinaryOp::Add, var(offset), int(Ty::I32, 16 * piece)),
                        param,
                        byte_index: Expr::Select(Box::new(reads), Box::new(at), Box::new(int(Ty::I64, 0))),
                        bytes: 16,
                        src_bytes: var(piece_bytes),
                    });
                }
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

    /// Writes the operands that instruction `id`'s strategy stages (`plan::staged_operands`) to
    /// the scratch space the plan gives them (row-major, one container per element) and waits
    /// for every thread. Returns each operand's base offset.
    pub(super) fn stage(&mut self, id: ValueId, body: &mut Vec<lir::Stmt>) -> Vec<usize> {
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
}
