//! Addresses and accesses: registers' stack slots, global elements, shared bytes and bits,
//! vector accesses, packed sub-byte fields.

use super::*;

impl<'ctx, 'a> Codegen<'ctx, 'a> {
    pub(super) fn var(&self, var: Var) -> Result<(PointerValue<'ctx>, Ty), CodegenError> {
        let i = var.0 as usize;
        match (self.vars.get(i), self.program.vars.get(i)) {
            (Some(ptr), Some(ty)) => Ok((*ptr, *ty)),
            _ => Err(self.invalid(format!("r{i} is not a variable of the program"))),
        }
    }

    /// The pointer and element type of global tensor parameter `index`.
    pub(super) fn global_param(&self, index: usize) -> Result<(PointerValue<'ctx>, DType), CodegenError> {
        match (self.program.params.get(index), self.function.get_nth_param(index as u32)) {
            (Some(Param::Global { dtype, .. }), Some(BasicValueEnum::PointerValue(ptr))) => {
                Ok((ptr, *dtype))
            }
            _ => Err(self.invalid(format!("parameter {index} is not a global tensor"))),
        }
    }

    /// The address of element `index` (i64) of a global tensor of `dtype`.
    pub(super) fn element_address(
        &self,
        base: PointerValue<'ctx>,
        dtype: DType,
        index: Val<'ctx>,
    ) -> Result<PointerValue<'ctx>, CodegenError> {
        let element = memory_type(self.context, Ty::of(dtype));
        // SAFETY (inkwell's `unsafe`): the index is an i64 of the right type; an element outside
        // the tensor yields poison only if dereferenced, which LIR guards against with `If`.
        Ok(unsafe {
            self.builder.build_in_bounds_gep(element, base, &[index.v.into_int_value()], "elem")?
        })
    }

    /// The address of byte `offset` (an i32 expression) of the shared buffer.
    pub(super) fn shared_address(&mut self, offset: &Expr) -> Result<PointerValue<'ctx>, CodegenError> {
        let Some(base) = self.shared else {
            return Err(self.invalid("shared memory access, but shared_bytes is 0"));
        };
        let offset = self.expr_of(offset, Ty::I32, "a shared offset")?.v.into_int_value();
        // SAFETY (inkwell's `unsafe`): a byte offset into a byte array, in bounds by LIR's rules.
        Ok(unsafe {
            self.builder.build_in_bounds_gep(self.context.i8_type(), base, &[offset], "smem_at")?
        })
    }

    /// The shared buffer and bit `bit_offset` (an i32 expression) of it as an i64 bit index.
    pub(super) fn shared_bit(&mut self, bit_offset: &Expr) -> Result<(PointerValue<'ctx>, IntValue<'ctx>), CodegenError> {
        let Some(base) = self.shared else {
            return Err(self.invalid("shared memory access, but shared_bytes is 0"));
        };
        let bit = self.expr_of(bit_offset, Ty::I32, "a shared bit offset")?.v.into_int_value();
        let bit = self.builder.build_int_s_extend(bit, self.context.i64_type(), "shared_bit")?;
        Ok((base, bit))
    }

    /// Stores a register value; i1 goes to memory as one byte, 0 or 1.
    /// Address of byte `byte_index` (i64) of a global buffer.
    pub(super) fn byte_address(
        &self,
        base: PointerValue<'ctx>,
        byte_index: IntValue<'ctx>,
    ) -> Result<PointerValue<'ctx>, CodegenError> {
        // SAFETY (inkwell's `unsafe`): an i64 index into an i8 buffer; LIR guards every access.
        Ok(unsafe {
            self.builder.build_in_bounds_gep(self.context.i8_type(), base, &[byte_index], "byte")?
        })
    }

    /// The address, memory type (one integer or integer vector of the access's size), lane
    /// type (`<count x ty>`, or `ty` for one lane) and size in bytes of a vector access of
    /// `count` values of `ty` at byte `byte_offset` of global parameter `param`.
    pub(super) fn vector_access(
        &mut self,
        param: usize,
        byte_offset: &Expr,
        count: usize,
        ty: Ty,
    ) -> Result<(PointerValue<'ctx>, BasicTypeEnum<'ctx>, BasicTypeEnum<'ctx>, u32), CodegenError> {
        let (memory, lanes, size) = self.vector_types(count, ty)?;
        let (base, _) = self.global_param(param)?;
        let offset = self.expr_of(byte_offset, Ty::I64, "a vector byte offset")?;
        let addr = self.byte_address(base, offset.v.into_int_value())?;
        Ok((addr, memory, lanes, size))
    }

    /// The memory type (an integer or a vector of i32) of a vector access of `count` × `ty`,
    /// the vector of its lanes, and its size in bytes (1 to 16, a power of two).
    pub(super) fn vector_types(&self, count: usize, ty: Ty) -> Result<(BasicTypeEnum<'ctx>, BasicTypeEnum<'ctx>, u32), CodegenError> {
        let size = count * ty.bytes();
        if count == 0 || ty == Ty::I1 || !size.is_power_of_two() || size > 16 {
            return Err(self.invalid(format!("a vector access of {count} × {} ({size} bytes; 1 to 16, a power of two)", ty.name())));
        }
        let (i8t, i16t, i32t) = (self.context.i8_type(), self.context.i16_type(), self.context.i32_type());
        let memory: BasicTypeEnum = match size {
            1 => i8t.into(),
            2 => i16t.into(),
            4 => i32t.into(),
            _ => i32t.vec_type((size / 4) as u32).into(),
        };
        let lanes: BasicTypeEnum = if count == 1 {
            llvm_type(self.context, ty)
        } else if ty.is_float() {
            float_type(self.context, ty).vec_type(count as u32).into()
        } else {
            int_type(self.context, ty).vec_type(count as u32).into()
        };
        Ok((memory, lanes, size as u32))
    }

    /// One load of `memory` at `addr` (aligned to its `size`), its lanes into the registers
    /// `dst` of type `ty`.
    pub(super) fn vector_load_into(
        &mut self,
        addr: PointerValue<'ctx>,
        memory: BasicTypeEnum<'ctx>,
        vector: BasicTypeEnum<'ctx>,
        size: u32,
        dst: &[Var],
        ty: Ty,
    ) -> Result<(), CodegenError> {
        let raw = self.builder.build_load(memory, addr, "vld")?;
        if let Some(i) = raw.as_instruction_value() {
            i.set_alignment(size).map_err(|e| self.invalid(format!("vector load alignment: {e}")))?;
        }
        let elements = self.builder.build_bit_cast(raw, vector, "vlanes")?;
        for (i, v) in dst.iter().enumerate() {
            let (ptr, reg_ty) = self.var(*v)?;
            if reg_ty != ty {
                return Err(self.invalid(format!("vector load into r{} of type {}, not {}", v.0, reg_ty.name(), ty.name())));
            }
            let value = if dst.len() == 1 {
                elements
            } else {
                let lane = self.context.i32_type().const_int(i as u64, false);
                self.builder.build_extract_element(elements.into_vector_value(), lane, "vlane")?
            };
            self.builder.build_store(ptr, value)?;
        }
        Ok(())
    }

    /// The byte (i64) and the bit within it (i32) of bit `bit_index` of a packed buffer.
    pub(super) fn bit_position(&self, bit_index: IntValue<'ctx>) -> Result<(IntValue<'ctx>, IntValue<'ctx>), CodegenError> {
        let (i32t, i64t) = (self.context.i32_type(), self.context.i64_type());
        let byte_index = self.builder.build_right_shift(bit_index, i64t.const_int(3, false), false, "byte_index")?;
        let shift64 = self.builder.build_and(bit_index, i64t.const_int(7, false), "bit_shift")?;
        Ok((byte_index, self.builder.build_int_truncate(shift64, i32t, "shift")?))
    }

    /// `bits` bits at `bit_index` of a packed buffer, zero-extended to i32. The second byte is
    /// read only when the element straddles into it, so no byte past the element is touched.
    pub(super) fn load_bits(
        &mut self,
        base: PointerValue<'ctx>,
        bit_index: IntValue<'ctx>,
        bits: u32,
    ) -> Result<IntValue<'ctx>, CodegenError> {
        if !(1..=8).contains(&bits) {
            return Err(self.invalid(format!("a packed load of {bits} bits (1 to 8 are allowed)")));
        }
        let (i32t, i64t) = (self.context.i32_type(), self.context.i64_type());
        let (byte_index, shift) = self.bit_position(bit_index)?;
        let first_ptr = self.byte_address(base, byte_index)?;
        let first = self.builder.build_load(self.context.i8_type(), first_ptr, "b0")?.into_int_value();
        let mut word = self.builder.build_int_z_extend(first, i32t, "w0")?;
        if 8 % bits != 0 {
            // Straddles when shift + bits > 8.
            let end = self.builder.build_int_add(shift, i32t.const_int(bits as u64, false), "end")?;
            let straddles = self.builder.build_int_compare(IntPredicate::UGT, end, i32t.const_int(8, false), "straddles")?;
            let entry = self.builder.get_insert_block().expect("inside a function");
            let second_block = self.context.append_basic_block(self.function, "second_byte");
            let join = self.context.append_basic_block(self.function, "bits_join");
            self.builder.build_conditional_branch(straddles, second_block, join)?;
            self.builder.position_at_end(second_block);
            let next = self.builder.build_int_add(byte_index, i64t.const_int(1, false), "next_byte")?;
            let second_ptr = self.byte_address(base, next)?;
            let second = self.builder.build_load(self.context.i8_type(), second_ptr, "b1")?.into_int_value();
            let second = self.builder.build_int_z_extend(second, i32t, "w1")?;
            let high = self.builder.build_left_shift(second, i32t.const_int(8, false), "w1s")?;
            let both = self.builder.build_or(word, high, "w01")?;
            self.builder.build_unconditional_branch(join)?;
            self.builder.position_at_end(join);
            let phi = self.builder.build_phi(i32t, "word")?;
            phi.add_incoming(&[(&word, entry), (&both, second_block)]);
            word = phi.as_basic_value().into_int_value();
        }
        let shifted = self.builder.build_right_shift(word, shift, false, "field")?;
        Ok(self.builder.build_and(shifted, i32t.const_int((1u64 << bits) - 1, false), "code")?)
    }

    /// Replaces `bits` bits at `bit_index` with the low bits of `value`, with atomic `and` then
    /// `or` on each byte touched, so threads writing neighbouring elements do not race.
    pub(super) fn store_bits(
        &mut self,
        base: PointerValue<'ctx>,
        bit_index: IntValue<'ctx>,
        bits: u32,
        value: IntValue<'ctx>,
    ) -> Result<(), CodegenError> {
        if !(1..=8).contains(&bits) {
            return Err(self.invalid(format!("a packed store of {bits} bits (1 to 8 are allowed)")));
        }
        let (i8t, i32t, i64t) = (self.context.i8_type(), self.context.i32_type(), self.context.i64_type());
        let (byte_index, shift) = self.bit_position(bit_index)?;
        let field_mask = i32t.const_int((1u64 << bits) - 1, false);
        let code = self.builder.build_and(value, field_mask, "code")?;
        // 16-bit window of the (at most two) bytes holding the element.
        let mask16 = self.builder.build_left_shift(field_mask, shift, "mask16")?;
        let bits16 = self.builder.build_left_shift(code, shift, "bits16")?;
        for (byte, offset) in [(0u64, 0u64), (1, 8)] {
            if byte == 1 && 8 % bits == 0 {
                break; // never straddles
            }
            let sh = i32t.const_int(offset, false);
            let m = self.builder.build_right_shift(mask16, sh, false, "mask_byte")?;
            let m8 = self.builder.build_int_truncate(m, i8t, "mask8")?;
            let v = self.builder.build_right_shift(bits16, sh, false, "bits_byte")?;
            let v8 = self.builder.build_int_truncate(v, i8t, "bits8")?;
            let touched = self.builder.build_int_compare(IntPredicate::NE, m8, i8t.const_zero(), "touched")?;
            let write_block = self.context.append_basic_block(self.function, "write_byte");
            let join = self.context.append_basic_block(self.function, "write_join");
            self.builder.build_conditional_branch(touched, write_block, join)?;
            self.builder.position_at_end(write_block);
            let index = self.builder.build_int_add(byte_index, i64t.const_int(byte, false), "idx")?;
            let ptr = self.byte_address(base, index)?;
            let keep = self.builder.build_not(m8, "keep")?;
            self.builder.build_atomicrmw(AtomicRMWBinOp::And, ptr, keep, AtomicOrdering::Monotonic)?;
            self.builder.build_atomicrmw(AtomicRMWBinOp::Or, ptr, v8, AtomicOrdering::Monotonic)?;
            self.builder.build_unconditional_branch(join)?;
            self.builder.position_at_end(join);
        }
        Ok(())
    }

    pub(super) fn store(&self, addr: PointerValue<'ctx>, value: Val<'ctx>) -> Result<(), CodegenError> {
        let stored = if value.ty == Ty::I1 {
            self.builder
                .build_int_z_extend(value.v.into_int_value(), self.context.i8_type(), "byte")?
                .into()
        } else {
            value.v
        };
        self.builder.build_store(addr, stored)?;
        Ok(())
    }

    /// Loads a `ty`; an i1 comes from one byte, true when non-zero.
    pub(super) fn load(&self, addr: PointerValue<'ctx>, ty: Ty) -> Result<Val<'ctx>, CodegenError> {
        let raw = self.builder.build_load(memory_type(self.context, ty), addr, "ld")?;
        let v = if ty == Ty::I1 {
            let byte = raw.into_int_value();
            self.builder
                .build_int_compare(IntPredicate::NE, byte, byte.get_type().const_zero(), "bool")?
                .into()
        } else {
            raw
        };
        Ok(Val { v, ty })
    }
}
