//! Code generation of LIR statements: assignments, memory accesses, control flow, barriers,
//! warp instructions (`mma.sync`, `ldmatrix`, `shfl`), `cp.async` and `print` (through `vprintf`).

use super::*;
use inkwell::context::AsContextRef;
use inkwell::values::AsValueRef;

impl<'ctx, 'a> Codegen<'ctx, 'a> {
    pub(super) fn stmts(&mut self, body: &[Stmt]) -> Result<(), CodegenError> {
        body.iter().try_for_each(|s| self.stmt(s))
    }

    pub(super) fn stmt(&mut self, stmt: &Stmt) -> Result<(), CodegenError> {
        match stmt {
            Stmt::Assign(var, e) | Stmt::AssignUniform(var, e) => {
                let (ptr, ty) = self.var(*var)?;
                let value = self.expr_of(e, ty, &format!("the value assigned to r{}", var.0))?;
                self.builder.build_store(ptr, value.v)?;
            }
            Stmt::StoreGlobal { param, index, value } => {
                let (base, dtype) = self.global_param(*param)?;
                let index = self.expr_of(index, Ty::I64, "a global index")?;
                let value =
                    self.expr_of(value, Ty::of(dtype), "a value stored to global memory")?;
                let addr = self.element_address(base, dtype, index)?;
                self.store(addr, value)?;
            }
            Stmt::AtomicAddGlobal { param, index, value } => {
                let (base, dtype) = self.global_param(*param)?;
                if !tl_compiler::ir::ATOMIC_ADD_DTYPES.contains(&dtype) {
                    return Err(self.invalid(format!("an atomic addition into a {dtype} tensor")));
                }
                let index = self.expr_of(index, Ty::I64, "a global index")?;
                let value = self.expr_of(value, Ty::of(dtype), "a value added to global memory")?;
                let addr = self.element_address(base, dtype, index)?;
                // Relaxed order at device scope, result unused: NVPTX emits an atomic addition
                // in global memory (bf16 on sm_80, which has none, becomes a 32-bit
                // compare-and-swap loop).
                let op = if dtype.is_float() { AtomicRMWBinOp::FAdd } else { AtomicRMWBinOp::Add };
                let scope = c"device";
                // SAFETY: `scope` is a valid string of the given length; the builder is
                // positioned inside the kernel (as for every statement); `addr` points to an
                // element of the value's type (an integer or float of 16 to 64 bits); the
                // ordering is one an `atomicrmw` takes. (inkwell builds integer `atomicrmw`s of
                // the system scope only.)
                unsafe {
                    let context = self.context.as_ctx_ref();
                    let id = inkwell::llvm_sys::core::LLVMGetSyncScopeID(context, scope.as_ptr(), scope.count_bytes());
                    inkwell::llvm_sys::core::LLVMBuildAtomicRMWSyncScope(
                        self.builder.as_mut_ptr(),
                        op.into(),
                        addr.as_value_ref(),
                        value.v.as_value_ref(),
                        AtomicOrdering::Monotonic.into(),
                        id,
                    );
                }
            }
            Stmt::StoreGlobalBits { param, bit_index, bits, value } => {
                let (base, _) = self.global_param(*param)?;
                let bit_index = self.expr_of(bit_index, Ty::I64, "a global bit index")?;
                let value = self.expr_of(value, Ty::I32, "a packed value stored to global memory")?;
                self.store_bits(base, bit_index.v.into_int_value(), *bits, value.v.into_int_value())?;
            }
            Stmt::StoreShared { offset, value } => {
                let addr = self.shared_address(offset)?;
                let value = self.expr(value)?;
                self.store(addr, value)?;
            }
            Stmt::StoreSharedBits { bit_offset, bits, value } => {
                let (base, bit_index) = self.shared_bit(bit_offset)?;
                let value = self.expr_of(value, Ty::I32, "a packed value stored to shared memory")?;
                self.store_bits(base, bit_index, *bits, value.v.into_int_value())?;
            }
            Stmt::If { cond, then_body, else_body } => {
                let cond = self.expr_of(cond, Ty::I1, "an if condition")?;
                let then_block = self.context.append_basic_block(self.function, "then");
                let merge_block = self.context.append_basic_block(self.function, "endif");
                let else_block = if else_body.is_empty() {
                    merge_block
                } else {
                    self.context.append_basic_block(self.function, "else")
                };
                self.builder.build_conditional_branch(
                    cond.v.into_int_value(),
                    then_block,
                    else_block,
                )?;
                self.builder.position_at_end(then_block);
                self.stmts(then_body)?;
                self.builder.build_unconditional_branch(merge_block)?;
                if !else_body.is_empty() {
                    self.builder.position_at_end(else_block);
                    self.stmts(else_body)?;
                    self.builder.build_unconditional_branch(merge_block)?;
                }
                self.builder.position_at_end(merge_block);
            }
            Stmt::For { var, start, end, body } => self.for_loop(*var, start, end, body)?,
            Stmt::Source { .. } => {}
            // Checks for the CPU backends only generate nothing.
            Stmt::Check { device: false, .. } => {}
            Stmt::Check { cond, .. } => {
                let cond = self.expr_of(cond, Ty::I1, "a check")?;
                let fail_block = self.context.append_basic_block(self.function, "check_failed");
                let ok_block = self.context.append_basic_block(self.function, "check_ok");
                self.builder.build_conditional_branch(cond.v.into_int_value(), ok_block, fail_block)?;
                self.builder.position_at_end(fail_block);
                let trap = self.intrinsic("llvm.trap", &[])?;
                self.builder.build_call(trap, &[], "")?;
                self.builder.build_unreachable()?;
                self.builder.position_at_end(ok_block);
            }
            Stmt::CopyAsync { offset, param, byte_index, bytes, src_bytes } => {
                // 16-byte copies bypass L1 (`.cg`); smaller ones must go through it (`.ca`).
                let name = match bytes {
                    4 | 8 => format!("llvm.nvvm.cp.async.ca.shared.global.{bytes}.s"),
                    16 => "llvm.nvvm.cp.async.cg.shared.global.16.s".to_string(),
                    _ => return Err(self.invalid(format!("cp.async of {bytes} bytes"))),
                };
                let dst = self.shared_address(offset)?;
                let (base, _) = self.global_param(*param)?;
                let byte_index = self.expr_of(byte_index, Ty::I64, "a global byte index")?;
                let src = self.byte_address(base, byte_index.v.into_int_value())?;
                let src_bytes = self.expr_of(src_bytes, Ty::I32, "the bytes a cp.async reads")?;
                let function = self.intrinsic(&name, &[])?;
                self.builder.build_call(function, &[dst.into(), src.into(), src_bytes.v.into()], "")?;
            }
            Stmt::Print { label, coords, value, unsigned } => self.print(label, coords, value, *unsigned)?,
            Stmt::CommitGroup => {
                let function = self.intrinsic("llvm.nvvm.cp.async.commit.group", &[])?;
                self.builder.build_call(function, &[], "")?;
            }
            Stmt::WaitGroup(n) => {
                let function = self.intrinsic("llvm.nvvm.cp.async.wait.group", &[])?;
                let n = self.context.i32_type().const_int(*n as u64, false);
                self.builder.build_call(function, &[n.into()], "")?;
            }
            Stmt::Mma { kind, a, b, c } => self.mma(*kind, a, b, c)?,
            Stmt::LdMatrix { dst, row_offset, trans } => {
                let count = dst.len();
                if ![1, 2, 4].contains(&count) {
                    return Err(self.invalid(format!("ldmatrix of {count} matrices")));
                }
                let name = format!("llvm.nvvm.ldmatrix.sync.aligned.m8n8.x{count}{}.b16", if *trans { ".trans" } else { "" });
                let addr = self.shared_address(row_offset)?;
                // Newer LLVMs overload ldmatrix on the pointer type; older ones do not.
                let result = match self.call_intrinsic(&name, &[addr.get_type().into()], &[addr.into()]) {
                    Ok(r) => r,
                    Err(_) => self.call_intrinsic(&name, &[], &[addr.into()])?,
                };
                for (i, v) in dst.iter().enumerate() {
                    let (ptr, ty) = self.var(*v)?;
                    if ty != Ty::I32 {
                        return Err(self.invalid(format!("ldmatrix destination r{} is {}, not i32", v.0, ty.name())));
                    }
                    let value = if count == 1 {
                        result
                    } else {
                        self.builder.build_extract_value(result.into_struct_value(), i as u32, "ldm")?
                    };
                    self.builder.build_store(ptr, value)?;
                }
            }
            Stmt::ShuffleXor { dst, src, lane_mask } => {
                let (src_ptr, ty) = self.var(*src)?;
                let (dst_ptr, dst_ty) = self.var(*dst)?;
                let name = match (ty, dst_ty) {
                    (Ty::F32, Ty::F32) => "llvm.nvvm.shfl.sync.bfly.f32",
                    (Ty::I32, Ty::I32) => "llvm.nvvm.shfl.sync.bfly.i32",
                    _ => return Err(self.invalid(format!("shuffle of {} into {}", ty.name(), dst_ty.name()))),
                };
                let i32_type = self.context.i32_type();
                let value = self.builder.build_load(llvm_type(self.context, ty), src_ptr, "shfl_src")?;
                let args = [
                    i32_type.const_int(0xffff_ffff, false).into(),
                    value.into(),
                    i32_type.const_int(*lane_mask as u64, false).into(),
                    i32_type.const_int(0x1f, false).into(),
                ];
                let result = self.call_intrinsic(name, &[], &args)?;
                self.builder.build_store(dst_ptr, result)?;
            }
            Stmt::LoadSharedVector { dst, offset, ty } => {
                let (memory, vector, size) = self.vector_types(dst.len(), *ty)?;
                let addr = self.shared_address(offset)?;
                self.vector_load_into(addr, memory, vector, size, dst, *ty)?;
            }
            Stmt::LoadGlobalVector { dst, param, byte_offset, ty } => {
                let (addr, memory, vector, size) = self.vector_access(*param, byte_offset, dst.len(), *ty)?;
                self.vector_load_into(addr, memory, vector, size, dst, *ty)?;
            }
            Stmt::StoreGlobalVector { param, byte_offset, values, ty } => {
                let (addr, memory, vector, size) = self.vector_access(*param, byte_offset, values.len(), *ty)?;
                let mut packed = match vector {
                    BasicTypeEnum::VectorType(v) => Some(v.get_undef()),
                    _ => None,
                };
                let mut single = None;
                for (i, e) in values.iter().enumerate() {
                    let x = self.expr_of(e, *ty, "a value of a vector store")?;
                    match packed {
                        Some(p) => {
                            let lane = self.context.i32_type().const_int(i as u64, false);
                            packed = Some(self.builder.build_insert_element(p, x.v, lane, "vpack")?);
                        }
                        None => single = Some(x.v),
                    }
                }
                let whole: BasicValueEnum = match (packed, single) {
                    (Some(p), _) => p.into(),
                    (None, Some(x)) => x,
                    (None, None) => return Err(self.invalid("an empty vector store")),
                };
                let raw = self.builder.build_bit_cast(whole, memory, "vraw")?;
                let store = self.builder.build_store(addr, raw)?;
                store.set_alignment(size).map_err(|e| self.invalid(format!("vector store alignment: {e}")))?;
            }
            Stmt::Barrier => {
                // `barrier.sync.aligned 0` is printed as `bar.sync 0`. The aligned form is right
                // because LIR never puts a barrier under a thread-dependent `If`.
                let barrier = self.intrinsic("llvm.nvvm.barrier.cta.sync.aligned.all", &[])?;
                self.builder.build_call(
                    barrier,
                    &[self.context.i32_type().const_zero().into()],
                    "",
                )?;
            }
        }
        Ok(())
    }

    /// `mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32` through the NVVM
    /// intrinsic. The fragments arrive as i32 and are bitcast to whatever the intrinsic's
    /// parameters are (`<2 x half>` for f16, i32 for bf16).
    pub(super) fn mma(&mut self, kind: tl_compiler::lir::MmaKind, a: &[Expr; 4], b: &[Expr; 2], c: &[Var; 4]) -> Result<(), CodegenError> {
        let names: &[&str] = match kind {
            tl_compiler::lir::MmaKind::F16 => &["llvm.nvvm.mma.m16n8k16.row.col.f32.f32"],
            tl_compiler::lir::MmaKind::BF16 => &["llvm.nvvm.mma.m16n8k16.row.col.bf16"],
            tl_compiler::lir::MmaKind::S8 => &["llvm.nvvm.mma.m16n8k32.row.col.s8"],
        };
        let (acc_ty, acc_llvm): (Ty, BasicTypeEnum) = match kind {
            tl_compiler::lir::MmaKind::S8 => (Ty::I32, self.context.i32_type().into()),
            _ => (Ty::F32, self.context.f32_type().into()),
        };
        let function = names
            .iter()
            .find_map(|n| self.intrinsic(n, &[]).ok())
            .ok_or_else(|| BackendError::MissingIntrinsic(names.join(" or ")))?;
        let params = function.get_type().get_param_types();
        if params.len() != 10 {
            return Err(self.invalid(format!("mma intrinsic with {} parameters", params.len())));
        }
        let mut args: Vec<BasicMetadataValueEnum> = Vec::new();
        for (i, e) in a.iter().chain(b.iter()).enumerate() {
            let v = self.expr_of(e, Ty::I32, "an mma fragment")?;
            let target = BasicTypeEnum::try_from(params[i]).map_err(|_| self.invalid("mma parameter type"))?;
            args.push(self.builder.build_bit_cast(v.v, target, "frag")?.into());
        }
        let mut ptrs = Vec::new();
        for var in c {
            let (ptr, ty) = self.var(*var)?;
            if ty != acc_ty {
                return Err(self.invalid(format!("mma accumulator r{} is {}, not {}", var.0, ty.name(), acc_ty.name())));
            }
            let v = self.builder.build_load(acc_llvm, ptr, "acc")?;
            args.push(v.into());
            ptrs.push(ptr);
        }
        let call = self.builder.build_call(function, &args, "mma")?;
        let result = call
            .try_as_basic_value()
            .basic()
            .ok_or_else(|| BackendError::Builder("the mma intrinsic returns no value".into()))?
            .into_struct_value();
        for (i, ptr) in ptrs.into_iter().enumerate() {
            let d = self.builder.build_extract_value(result, i as u32, "d")?;
            self.builder.build_store(ptr, d)?;
        }
        Ok(())
    }

    /// `for var in start .. end`: the counter lives in its own alloca and is copied into `var` at
    /// the top of each iteration, so the body may assign `var` without changing the trip count.
    pub(super) fn for_loop(
        &mut self,
        var: Var,
        start: &Expr,
        end: &Expr,
        body: &[Stmt],
    ) -> Result<(), CodegenError> {
        let (var_ptr, var_ty) = self.var(var)?;
        if var_ty != Ty::I32 {
            return Err(self.invalid(format!(
                "loop variable r{} must be i32, not {}",
                var.0,
                var_ty.name()
            )));
        }
        let start = self.expr_of(start, Ty::I32, "a loop start")?.v.into_int_value();
        let end = self.expr_of(end, Ty::I32, "a loop end")?.v.into_int_value();
        let i32_type = self.context.i32_type();
        let counter = self.alloca_builder.build_alloca(i32_type, "counter")?;
        self.builder.build_store(counter, start)?;

        let header = self.context.append_basic_block(self.function, "loop");
        let body_block = self.context.append_basic_block(self.function, "loop_body");
        let exit = self.context.append_basic_block(self.function, "loop_exit");
        self.builder.build_unconditional_branch(header)?;

        self.builder.position_at_end(header);
        let i = self.builder.build_load(i32_type, counter, "i")?.into_int_value();
        let more = self.builder.build_int_compare(IntPredicate::SLT, i, end, "more")?;
        self.builder.build_conditional_branch(more, body_block, exit)?;

        self.builder.position_at_end(body_block);
        self.builder.build_store(var_ptr, i)?;
        self.stmts(body)?;
        // `i < end <= i32::MAX`, so the increment cannot overflow: `nsw` is sound.
        let next = self.builder.build_int_nsw_add(i, i32_type.const_int(1, false), "next")?;
        self.builder.build_store(counter, next)?;
        self.builder.build_unconditional_branch(header)?;

        self.builder.position_at_end(exit);
        Ok(())
    }

    /// `Stmt::Print` through CUDA's `vprintf(format, args)`: the format string is a global
    /// constant, the arguments a local struct laid out as C varargs (i32 block indices and
    /// coordinates, then the value as f64 or i64).
    pub(super) fn print(&mut self, label: &str, coords: &[Expr], value: &Expr, unsigned: bool) -> Result<(), CodegenError> {
        let value_ty = self.program.ty(value);
        let value_format = match value_ty {
            Ty::F64 => "%.8e",
            Ty::I64 if unsigned => "%llu",
            Ty::I64 => "%lld",
            t => return Err(self.invalid(format!("print of a {} value (f64 or i64 expected)", t.name()))),
        };
        let index = if coords.is_empty() { String::new() } else { format!("[{}]", vec!["%d"; coords.len()].join(", ")) };
        let format = format!("block (%d, %d, %d): {label}{index} = {value_format}\n");
        let generic = self.context.ptr_type(AddressSpace::default());
        let global = match self.print_formats.get(&format) {
            Some(g) => *g,
            None => {
                let text = self.context.const_string(format.as_bytes(), true);
                let g = self.module.add_global(text.get_type(), Some(AddressSpace::from(GLOBAL_SPACE)), "print_format");
                g.set_linkage(Linkage::Private);
                g.set_constant(true);
                g.set_initializer(&text);
                self.print_formats.insert(format.clone(), g);
                g
            }
        };
        let format_ptr = self.builder.build_address_space_cast(global.as_pointer_value(), generic, "format")?;

        let i32_type = self.context.i32_type();
        let mut fields: Vec<BasicValueEnum> = Vec::new();
        for axis in 0..3u8 {
            fields.push(self.expr_of(&Expr::BlockIdx(axis), Ty::I32, "a block index")?.v);
        }
        for c in coords {
            fields.push(self.expr_of(c, Ty::I32, "a printed coordinate")?.v);
        }
        fields.push(self.expr_of(value, value_ty, "a printed value")?.v);
        let field_types: Vec<BasicTypeEnum> = fields.iter().map(|f| f.get_type()).collect();
        let args_type = self.context.struct_type(&field_types, false);
        let slot = self.alloca_builder.build_alloca(args_type, "print_args")?;
        for (i, f) in fields.iter().enumerate() {
            let field = self.builder.build_struct_gep(args_type, slot, i as u32, "print_arg")?;
            self.builder.build_store(field, *f)?;
        }
        let args_ptr = if slot.get_type().get_address_space() == AddressSpace::default() {
            slot
        } else {
            self.builder.build_address_space_cast(slot, generic, "print_args_generic")?
        };
        let vprintf = match self.module.get_function("vprintf") {
            Some(f) => f,
            None => self.module.add_function("vprintf", i32_type.fn_type(&[generic.into(), generic.into()], false), None),
        };
        self.builder.build_call(vprintf, &[format_ptr.into(), args_ptr.into()], "")?;
        Ok(())
    }
}
