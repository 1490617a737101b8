//! Loads and stores of global tensors: bounds-predicated per element, or vector accesses of
//! 2–16 bytes where the layout analysis and the divisibility analysis allow them; sub-byte
//! formats as packed words. An offset may be an index tile (gathers and scatters): each
//! register then takes its index along that dimension from the index tile's register of the
//! same number (layout inference gave both the same layout).

use super::*;

impl Lower<'_> {
    /// Global coordinates (i64), the in-bounds predicate and the element index of register
    /// `local` of a tile at `offsets` in tensor `param`.
    pub(super) fn global_access(&self, param: usize, layout: &RegisterLayout, offsets: &[ValueId], local: usize) -> (Expr, Expr) {
        let (extents, strides) = &self.extents[&param];
        let coords = self.coords(layout, local);
        let mut conds = Vec::new();
        let mut index: Option<Expr> = None;
        for (d, c) in coords.into_iter().enumerate() {
            // An index tile (joined with the tile's layout) holds the element's index itself.
            let g = if self.k.value(offsets[d]).ty.shape().is_some() {
                to_i64(var(self.regs(offsets[d])[local]))
            } else {
                to_i64(bin(lir::BinaryOp::Add, var(self.scalar(offsets[d])), c))
            };
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

    pub(super) fn load(&mut self, id: ValueId, param: usize, offsets: &[ValueId], pad: Number, body: &mut Vec<lir::Stmt>) {
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

    pub(super) fn store(&mut self, param: usize, value: ValueId, offsets: &[ValueId], body: &mut Vec<lir::Stmt>) {
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
        self.write_each_element(param, value, offsets, body, |index, element| {
            if dtype.bits() < 8 { packed_store(param, index, dtype, element) } else { lir::Stmt::StoreGlobal { param, index, value: element } }
        });
    }

    /// `atomic_add`: each element in bounds added once, by the thread that holds its primary
    /// copy (a replicated tile adds once, as it stores once), element by element.
    pub(super) fn atomic_add(&mut self, param: usize, value: ValueId, offsets: &[ValueId], body: &mut Vec<lir::Stmt>) {
        self.write_each_element(param, value, offsets, body, |index, element| lir::Stmt::AtomicAddGlobal { param, index, value: element });
    }

    /// For each register of tile `value` written at `offsets` into global tensor `param`, the
    /// statement `write(index, element)`, run when the element is inside the tensor and the
    /// thread holds its primary copy (so a replicated tile writes each element once).
    fn write_each_element(&mut self, param: usize, value: ValueId, offsets: &[ValueId], body: &mut Vec<lir::Stmt>, write: impl Fn(Expr, Expr) -> lir::Stmt) {
        let layout = self.layout(value).clone();
        let first = self.is_first_replica(&layout);
        for i in 0..layout.local_size() {
            let (inb, index) = self.global_access(param, &layout, offsets, i);
            body.push(lir::Stmt::If {
                cond: bin(lir::BinaryOp::And, first.clone(), inb),
                then_body: vec![write(index, var(self.regs(value)[i]))],
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
    pub(super) fn vector_width(&self, param: usize, layout: &RegisterLayout, offsets: &[ValueId], dtype: DType) -> usize {
        let ParamKind::Global { shape, .. } = &self.k.params[param].kind else { return 1 };
        if dtype == DType::Bool || layout.rank() == 0 || shape.len() != layout.rank() || offsets.len() != layout.rank() {
            return 1;
        }
        let last = layout.rank() - 1;
        // Index tiles: a vector runs along the last dimension, so its elements must share
        // their indices: an index tile broadcast along the last dimension (one index per row)
        // does; one on the last dimension, or one that varies along it, does not.
        for (d, &o) in offsets.iter().enumerate() {
            if self.k.value(o).ty.shape().is_none() {
                continue;
            }
            let constant_along_rows = match self.k.value(o).op {
                Op::Broadcast(source) => self.k.value(source).ty.shape().and_then(|s| s.last()) == Some(&1),
                _ => false,
            };
            if d == last || !constant_along_rows {
                return 1;
            }
        }
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
    pub(super) fn packed_words(v: usize, bits: u32) -> (Ty, usize) {
        match v * bits as usize / 8 {
            1 => (Ty::I8, 1),
            2 => (Ty::I16, 1),
            4 => (Ty::I32, 1),
            bytes => (Ty::I32, bytes / 4),
        }
    }

    /// The statements of a vector load of `dst.len()` elements of `dtype` from element `index`
    /// (a multiple of the vector, inside the bounds) into the registers `dst`.
    pub(super) fn vector_load(&mut self, param: usize, index: Expr, dtype: DType, dst: &[Var]) -> Vec<lir::Stmt> {
        let bits = dtype.bits();
        if bits >= 8 {
            let byte_offset = bin(lir::BinaryOp::Mul, index, int(Ty::I64, (bits / 8) as i64));
            return vec![lir::Stmt::LoadGlobalVector { dst: dst.to_vec(), param, byte_offset, ty: Ty::of(dtype) }];
        }
        let (word_ty, count) = Self::packed_words(dst.len(), bits);
        let words: Vec<Var> = (0..count).map(|_| self.new_var(word_ty)).collect();
        let byte_offset = bin(lir::BinaryOp::Div, bin(lir::BinaryOp::Mul, index, int(Ty::I64, bits as i64)), int(Ty::I64, 8));
        let mut out = vec![lir::Stmt::LoadGlobalVector { dst: words.clone(), param, byte_offset, ty: word_ty }];
        // Under a bounds predicate (the registers take the pad outside): no code sources.
        out.extend(self.unpack_words(&words, word_ty, dtype, dst, false));
        out
    }

    /// The statements that cut the packed words `words` (of `word_ty`, element k of a word in
    /// its bits `[k·n, (k+1)·n)`) into the registers `dst` of sub-byte `dtype` (integers sign-
    /// or zero-extended, floats their code). With `unconditional` (the statements run
    /// wherever the registers are read), records where each code lies (`code_sources`), so
    /// that the fast casts can take the codes from the words.
    pub(super) fn unpack_words(&mut self, words: &[Var], word_ty: Ty, dtype: DType, dst: &[Var], unconditional: bool) -> Vec<lir::Stmt> {
        let bits = dtype.bits();
        let mut out = Vec::new();
        let word_bits = word_ty.bytes() as u32 * 8;
        // Each word zero-extended to an i32 variable once.
        let words32: Vec<Var> = words
            .iter()
            .map(|w| {
                if word_ty == Ty::I32 {
                    return *w;
                }
                let wide = self.new_var(Ty::I32);
                out.push(lir::Stmt::Assign(wide, Expr::Cast { to: Ty::I32, value: Box::new(var(*w)), from_unsigned: true, to_unsigned: false }));
                wide
            })
            .collect();
        let run = self.code_runs.len();
        if unconditional {
            self.code_runs.push((words32.clone(), word_bits));
        }
        for (j, r) in dst.iter().enumerate() {
            let bit = j as u32 * bits;
            let word32 = words32[(bit / word_bits) as usize];
            if unconditional {
                self.code_sources.insert(*r, super::CodeSource { run, bit });
            }
            let word = var(word32);
            let offset = bit % word_bits;
            let mut shifted = if offset == 0 { word } else { bin(lir::BinaryOp::LShr, word, int(Ty::I32, offset as i64)) };
            if offset + bits > word_bits {
                // A code of 3, 5, 6 or 7 bits across two words: its high bits from the next.
                let next = var(words32[(bit / word_bits) as usize + 1]);
                shifted = bin(lir::BinaryOp::Or, shifted, bin(lir::BinaryOp::Shl, next, int(Ty::I32, (word_bits - offset) as i64)));
            }
            let code = self.new_var(Ty::I32);
            out.push(lir::Stmt::Assign(code, bin(lir::BinaryOp::And, shifted, int(Ty::I32, (1i64 << bits) - 1))));
            // Signed codes sign-extended; a whole byte too, whatever its dtype, so that its bits
            // fit the i8 container unchanged (narrowing saturates).
            let value = if dtype.is_signed_int() || bits == 8 { crate::lower_numerics::sign_extend(var(code), bits) } else { var(code) };
            out.push(lir::Stmt::Assign(*r, Expr::Cast { to: Ty::I8, value: Box::new(value), from_unsigned: false, to_unsigned: false }));
        }
        out
    }

    /// The statements of a vector store of the registers `sources` (elements of `dtype`) to
    /// element `index` (a multiple of the vector, inside the bounds).
    pub(super) fn vector_store(&mut self, param: usize, index: Expr, dtype: DType, sources: &[Var]) -> Vec<lir::Stmt> {
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
}

/// Element `index` of a packed sub-byte tensor, as the register of its dtype: integers are
/// sign- or zero-extended values, floats keep their code.
pub(super) fn packed_load(param: usize, index: Expr, dtype: DType) -> Expr {
    let bits = dtype.bits();
    let bit_index = bin(lir::BinaryOp::Mul, index, int(Ty::I64, bits as i64));
    let code = Expr::LoadGlobalBits { param, bit_index: Box::new(bit_index), bits };
    let value = if dtype.is_signed_int() { crate::lower_numerics::sign_extend(code, bits) } else { code };
    Expr::Cast { to: Ty::I8, value: Box::new(value), from_unsigned: false, to_unsigned: false }
}

/// Stores a register of a packed sub-byte dtype as element `index`.
pub(super) fn packed_store(param: usize, index: Expr, dtype: DType, register: Expr) -> lir::Stmt {
    let bits = dtype.bits();
    let bit_index = bin(lir::BinaryOp::Mul, index, int(Ty::I64, bits as i64));
    let code = crate::lower_numerics::container_to_code(register, dtype);
    lir::Stmt::StoreGlobalBits { param, bit_index, bits, value: code }
}
