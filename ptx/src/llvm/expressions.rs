//! Code generation of LIR expressions: constants, registers, parameters, special registers,
//! unary, binary and comparison operations, and the float math functions.

use super::*;

impl<'ctx, 'a> Codegen<'ctx, 'a> {
    /// Generates `e` and checks that its type is `ty`; `what` names it in the error.
    pub(super) fn expr_of(&mut self, e: &Expr, ty: Ty, what: &str) -> Result<Val<'ctx>, CodegenError> {
        let value = self.expr(e)?;
        if value.ty != ty {
            return Err(self.invalid(format!(
                "{what} has type {}, expected {}",
                value.ty.name(),
                ty.name()
            )));
        }
        Ok(value)
    }

    pub(super) fn expr(&mut self, e: &Expr) -> Result<Val<'ctx>, CodegenError> {
        match e {
            Expr::Int(ty, value) => {
                if ty.is_float() {
                    return Err(
                        self.invalid(format!("integer constant of float type {}", ty.name()))
                    );
                }
                let bits = int_type(self.context, *ty).get_bit_width();
                // Keep only the low `bits` bits, so LLVM sees a value that fits the type.
                let raw = (*value as u64) & (u64::MAX >> (64 - bits));
                Ok(Val { v: int_type(self.context, *ty).const_int(raw, false).into(), ty: *ty })
            }
            Expr::Float(ty, value) => {
                if !ty.is_float() {
                    return Err(
                        self.invalid(format!("float constant of integer type {}", ty.name()))
                    );
                }
                // LLVM rounds the f64 to the type to nearest even, as DType::round does.
                Ok(Val { v: float_type(self.context, *ty).const_float(*value).into(), ty: *ty })
            }
            Expr::Var(var) => {
                let (ptr, ty) = self.var(*var)?;
                let v = self.builder.build_load(
                    llvm_type(self.context, ty),
                    ptr,
                    &format!("r{}", var.0),
                )?;
                Ok(Val { v, ty })
            }
            Expr::Param(index) => {
                let value = self.function.get_nth_param(*index as u32);
                match (self.program.params.get(*index), value) {
                    (Some(Param::Scalar { ty, .. }), Some(v)) => Ok(Val { v, ty: *ty }),
                    (Some(Param::Global { .. }), Some(BasicValueEnum::PointerValue(ptr))) => {
                        let v =
                            self.builder.build_ptr_to_int(ptr, self.context.i64_type(), "addr")?;
                        Ok(Val { v: v.into(), ty: Ty::I64 })
                    }
                    _ => Err(self.invalid(format!("there is no parameter {index}"))),
                }
            }
            Expr::ThreadIdx => self.special_register("llvm.nvvm.read.ptx.sreg.tid.x"),
            Expr::BlockIdx(axis) => match axis {
                0 => self.special_register("llvm.nvvm.read.ptx.sreg.ctaid.x"),
                1 => self.special_register("llvm.nvvm.read.ptx.sreg.ctaid.y"),
                2 => self.special_register("llvm.nvvm.read.ptx.sreg.ctaid.z"),
                _ => Err(self.invalid(format!("block index axis {axis} (must be 0, 1 or 2)"))),
            },
            Expr::Unary(op, a) => {
                let a = self.expr(a)?;
                self.unary(*op, a)
            }
            Expr::Binary(op, a, b) => {
                let (a, b) = self.operands(a, b, &format!("{op:?}"))?;
                self.binary(*op, a, b)
            }
            Expr::Cmp(op, a, b) => {
                let (a, b) = self.operands(a, b, &format!("{op:?}"))?;
                self.compare(*op, a, b)
            }
            Expr::Select(cond, a, b) => {
                let cond = self.expr_of(cond, Ty::I1, "a select condition")?;
                let (a, b) = self.operands(a, b, "Select")?;
                let v = self.builder.build_select(cond.v.into_int_value(), a.v, b.v, "sel")?;
                Ok(Val { v, ty: a.ty })
            }
            Expr::Fma(a, b, c) => {
                let (a, b) = self.operands(a, b, "Fma")?;
                let c = self.expr_of(c, a.ty, "the addend of Fma")?;
                if a.ty.is_float() || a.ty.is_packed() {
                    self.call_float_intrinsic("llvm.fma", a.ty, &[a.v, b.v, c.v])
                } else {
                    // Integer arithmetic is exact modulo 2^n, so fusing changes nothing.
                    let product = self.builder.build_int_mul(
                        a.v.into_int_value(),
                        b.v.into_int_value(),
                        "mul",
                    )?;
                    let sum = self.builder.build_int_add(product, c.v.into_int_value(), "add")?;
                    Ok(Val { v: sum.into(), ty: a.ty })
                }
            }
            Expr::Cast { to, value, from_unsigned, to_unsigned } => {
                let value = self.expr(value)?;
                self.cast(value, *to, *from_unsigned, *to_unsigned)
            }
            Expr::Bitcast { to, value } => {
                let value = self.expr(value)?;
                if value.ty.bytes() != to.bytes() || value.ty == Ty::I1 || *to == Ty::I1 {
                    return Err(self.invalid(format!("bitcast from {} to {}", value.ty.name(), to.name())));
                }
                let v = self.builder.build_bit_cast(value.v, llvm_type(self.context, *to), "bitcast")?;
                Ok(Val { v, ty: *to })
            }
            Expr::LoadGlobalBits { param, bit_index, bits } => {
                let (base, _) = self.global_param(*param)?;
                let bit_index = self.expr_of(bit_index, Ty::I64, "a global bit index")?;
                let v = self.load_bits(base, bit_index.v.into_int_value(), *bits)?;
                Ok(Val { v: v.into(), ty: Ty::I32 })
            }
            Expr::LoadGlobal { param, index, ty } => {
                let (base, dtype) = self.global_param(*param)?;
                let index = self.expr_of(index, Ty::I64, "a global index")?;
                let addr = self.element_address(base, dtype, index)?;
                self.load(addr, *ty)
            }
            Expr::LoadShared { offset, ty } => {
                let addr = self.shared_address(offset)?;
                self.load(addr, *ty)
            }
            Expr::LoadSharedBits { bit_offset, bits } => {
                let (base, bit_index) = self.shared_bit(bit_offset)?;
                let v = self.load_bits(base, bit_index, *bits)?;
                Ok(Val { v: v.into(), ty: Ty::I32 })
            }
            Expr::Prmt { a, b, selector } => {
                let a = self.expr_of(a, Ty::I32, "a prmt operand")?;
                let b = self.expr_of(b, Ty::I32, "a prmt operand")?;
                let selector = self.expr_of(selector, Ty::I32, "a prmt selector")?;
                let v = self.call_intrinsic("llvm.nvvm.prmt", &[], &[a.v.into(), b.v.into(), selector.v.into()])?;
                Ok(Val { v, ty: Ty::I32 })
            }
            Expr::Lop3 { a, b, c, lut } => {
                let a = self.expr_of(a, Ty::I32, "a lop3 operand")?;
                let b = self.expr_of(b, Ty::I32, "a lop3 operand")?;
                let c = self.expr_of(c, Ty::I32, "a lop3 operand")?;
                self.lop3(a.v.into_int_value(), b.v.into_int_value(), c.v.into_int_value(), *lut)
            }
        }
    }

    /// Generates two operands that must have the same type.
    pub(super) fn operands(
        &mut self,
        a: &Expr,
        b: &Expr,
        op: &str,
    ) -> Result<(Val<'ctx>, Val<'ctx>), CodegenError> {
        let a = self.expr(a)?;
        let b = self.expr(b)?;
        if a.ty != b.ty {
            return Err(self.invalid(format!(
                "operands of {op} have different types {} and {}",
                a.ty.name(),
                b.ty.name()
            )));
        }
        Ok((a, b))
    }

    pub(super) fn special_register(&self, name: &str) -> Result<Val<'ctx>, CodegenError> {
        Ok(Val { v: self.call_intrinsic(name, &[], &[])?, ty: Ty::I32 })
    }

    pub(super) fn unary(&self, op: UnaryOp, a: Val<'ctx>) -> Result<Val<'ctx>, CodegenError> {
        let b = &self.builder;
        let v: BasicValueEnum = match op {
            UnaryOp::Neg if a.ty.is_float() => {
                b.build_float_neg(a.v.into_float_value(), "neg")?.into()
            }
            UnaryOp::Neg => b.build_int_neg(a.v.into_int_value(), "neg")?.into(),
            UnaryOp::Not if a.ty.is_float() => return Err(self.invalid("Not applied to a float")),
            UnaryOp::Not => b.build_not(a.v.into_int_value(), "not")?.into(),
            UnaryOp::Abs if a.ty.is_float() => {
                return self.call_float_intrinsic("llvm.fabs", a.ty, &[a.v]);
            }
            UnaryOp::Abs => {
                let x = a.v.into_int_value();
                let negative =
                    b.build_int_compare(IntPredicate::SLT, x, x.get_type().const_zero(), "isneg")?;
                let negated = b.build_int_neg(x, "neg")?;
                b.build_select(negative, negated, x, "abs")?
            }
            UnaryOp::Exp
            | UnaryOp::Exp2
            | UnaryOp::Log
            | UnaryOp::Log2
            | UnaryOp::Sqrt
            | UnaryOp::Rsqrt
            | UnaryOp::Tanh
            | UnaryOp::Sin
            | UnaryOp::Cos => {
                if !a.ty.is_float() {
                    return Err(self.invalid(format!("{op:?} applied to {}", a.ty.name())));
                }
                return self.float_math(op, a);
            }
        };
        Ok(Val { v, ty: a.ty })
    }

    /// The transcendental unary operations. NVPTX has no libm, so these map to PTX's f32
    /// instructions; other float types are converted to f32 and back.
    pub(super) fn float_math(&self, op: UnaryOp, a: Val<'ctx>) -> Result<Val<'ctx>, CodegenError> {
        match (op, a.ty) {
            (UnaryOp::Sqrt, Ty::F32 | Ty::F64) => {
                self.call_float_intrinsic("llvm.sqrt", a.ty, &[a.v])
            }
            (UnaryOp::Rsqrt, Ty::F64) => {
                // PTX's only f64 reciprocal square root is a coarse approximation; two correctly
                // rounded steps are accurate to about one ulp.
                let root =
                    self.call_float_intrinsic("llvm.sqrt", a.ty, &[a.v])?.v.into_float_value();
                let one = root.get_type().const_float(1.0);
                Ok(Val { v: self.builder.build_float_div(one, root, "rsqrt")?.into(), ty: a.ty })
            }
            _ => {
                let f32_type = self.context.f32_type();
                let x = a.v.into_float_value();
                let x32 = match a.ty {
                    Ty::F32 => x,
                    Ty::F64 => self.builder.build_float_trunc(x, f32_type, "to_f32")?,
                    _ => self.builder.build_float_ext(x, f32_type, "to_f32")?,
                };
                let r32 = self.float_math_f32(op, x32)?;
                let r = match a.ty {
                    Ty::F32 => r32,
                    Ty::F64 => self.builder.build_float_ext(
                        r32,
                        float_type(self.context, a.ty),
                        "from_f32",
                    )?,
                    // Exact f32 results (sqrt of an f16/bf16 value) round correctly here: f32 has
                    // more than twice the precision plus two bits.
                    _ => self.builder.build_float_trunc(
                        r32,
                        float_type(self.context, a.ty),
                        "from_f32",
                    )?,
                };
                Ok(Val { v: r.into(), ty: a.ty })
            }
        }
    }

    pub(super) fn float_math_f32(
        &self,
        op: UnaryOp,
        x: FloatValue<'ctx>,
    ) -> Result<FloatValue<'ctx>, CodegenError> {
        let f32_type = self.context.f32_type();
        let call = |name: &str,
                    overloaded: bool,
                    arg: FloatValue<'ctx>|
         -> Result<FloatValue<'ctx>, CodegenError> {
            let overloads: &[BasicTypeEnum] =
                if overloaded { &[BasicTypeEnum::FloatType(f32_type)] } else { &[] };
            Ok(self.call_intrinsic(name, overloads, &[arg.into()])?.into_float_value())
        };
        Ok(match op {
            // exp(x) = 2^(x·log2 e), as CUDA's __expf.
            UnaryOp::Exp => {
                let log2e = f32_type.const_float(std::f64::consts::LOG2_E);
                call(
                    "llvm.nvvm.ex2.approx",
                    true,
                    self.builder.build_float_mul(x, log2e, "x_log2e")?,
                )?
            }
            UnaryOp::Exp2 => call("llvm.nvvm.ex2.approx", true, x)?,
            // ln(x) = log2(x)·ln 2, as CUDA's __logf.
            UnaryOp::Log => {
                let log2 = call("llvm.nvvm.lg2.approx.f", false, x)?;
                self.builder.build_float_mul(
                    log2,
                    f32_type.const_float(std::f64::consts::LN_2),
                    "ln",
                )?
            }
            UnaryOp::Log2 => call("llvm.nvvm.lg2.approx.f", false, x)?,
            UnaryOp::Sin => call("llvm.nvvm.sin.approx.f", false, x)?,
            UnaryOp::Cos => call("llvm.nvvm.cos.approx.f", false, x)?,
            UnaryOp::Rsqrt => call("llvm.nvvm.rsqrt.approx.f", false, x)?,
            UnaryOp::Sqrt => call("llvm.sqrt", true, x)?,
            UnaryOp::Tanh => {
                // NVPTX selects `tanh.approx.f32` for `llvm.tanh` when approximation is allowed.
                let r = call("llvm.tanh", true, x)?;
                if let Some(inst) = r.as_instruction() {
                    inst.set_fast_math_flags(FastMathFlags::ApproxFunc)
                        .map_err(|e| BackendError::Builder(e.to_string()))?;
                }
                r
            }
            UnaryOp::Neg | UnaryOp::Not | UnaryOp::Abs => {
                return Err(self.invalid(format!("{op:?} is not a transcendental operation")));
            }
        })
    }

    pub(super) fn binary(&self, op: BinaryOp, a: Val<'ctx>, b: Val<'ctx>) -> Result<Val<'ctx>, CodegenError> {
        let bld = &self.builder;
        let v: BasicValueEnum = if a.ty.is_packed() {
            // Each half rounded as its own operation (no contraction: the builder sets no
            // fast-math flags).
            let (x, y) = (a.v.into_vector_value(), b.v.into_vector_value());
            match op {
                BinaryOp::Add => bld.build_float_add(x, y, "add2")?.into(),
                BinaryOp::Sub => bld.build_float_sub(x, y, "sub2")?.into(),
                BinaryOp::Mul => bld.build_float_mul(x, y, "mul2")?.into(),
                _ => return Err(self.invalid(format!("{op:?} applied to {}", a.ty.name()))),
            }
        } else if a.ty.is_float() {
            let (x, y) = (a.v.into_float_value(), b.v.into_float_value());
            match op {
                BinaryOp::Add => bld.build_float_add(x, y, "add")?.into(),
                BinaryOp::Sub => bld.build_float_sub(x, y, "sub")?.into(),
                BinaryOp::Mul => bld.build_float_mul(x, y, "mul")?.into(),
                BinaryOp::Div => bld.build_float_div(x, y, "div")?.into(),
                BinaryOp::Rem => bld.build_float_rem(x, y, "rem")?.into(),
                // IEEE 754-2019 minimumNumber/maximumNumber (the VM's): a NaN operand yields the
                // other one, and -0 < +0.
                BinaryOp::Min => {
                    return self.call_float_intrinsic("llvm.minimumnum", a.ty, &[a.v, b.v]);
                }
                BinaryOp::Max => {
                    return self.call_float_intrinsic("llvm.maximumnum", a.ty, &[a.v, b.v]);
                }
                _ => {
                    return Err(self.invalid(format!("{op:?} applied to {}", a.ty.name())));
                }
            }
        } else {
            let (x, y) = (a.v.into_int_value(), b.v.into_int_value());
            match op {
                BinaryOp::Add => bld.build_int_add(x, y, "add")?.into(),
                BinaryOp::Sub => bld.build_int_sub(x, y, "sub")?.into(),
                BinaryOp::Mul => bld.build_int_mul(x, y, "mul")?.into(),
                BinaryOp::Div => bld.build_int_signed_div(x, y, "div")?.into(),
                BinaryOp::Rem => bld.build_int_signed_rem(x, y, "rem")?.into(),
                // On i1, false < true (min is `and`, max is `or`), so compare unsigned there.
                BinaryOp::Min if a.ty == Ty::I1 => self.int_intrinsic("llvm.umin", x, y)?.into(),
                BinaryOp::Max if a.ty == Ty::I1 => self.int_intrinsic("llvm.umax", x, y)?.into(),
                BinaryOp::Min => self.int_intrinsic("llvm.smin", x, y)?.into(),
                BinaryOp::Max => self.int_intrinsic("llvm.smax", x, y)?.into(),
                BinaryOp::And => bld.build_and(x, y, "and")?.into(),
                BinaryOp::Or => bld.build_or(x, y, "or")?.into(),
                BinaryOp::Xor => bld.build_xor(x, y, "xor")?.into(),
                BinaryOp::Shl => bld.build_left_shift(x, y, "shl")?.into(),
                BinaryOp::LShr => bld.build_right_shift(x, y, false, "lshr")?.into(),
                BinaryOp::AShr => bld.build_right_shift(x, y, true, "ashr")?.into(),
                BinaryOp::UDiv => bld.build_int_unsigned_div(x, y, "udiv")?.into(),
                BinaryOp::URem => bld.build_int_unsigned_rem(x, y, "urem")?.into(),
                BinaryOp::UMin => self.int_intrinsic("llvm.umin", x, y)?.into(),
                BinaryOp::UMax => self.int_intrinsic("llvm.umax", x, y)?.into(),
            }
        };
        Ok(Val { v, ty: a.ty })
    }

    /// Signed for integers (unsigned for i1, where false < true), ordered for floats.
    pub(super) fn compare(&self, op: CmpOp, a: Val<'ctx>, b: Val<'ctx>) -> Result<Val<'ctx>, CodegenError> {
        let v = if a.ty.is_float() {
            let predicate = match op {
                CmpOp::Lt => FloatPredicate::OLT,
                CmpOp::Le => FloatPredicate::OLE,
                CmpOp::Gt => FloatPredicate::OGT,
                CmpOp::Ge => FloatPredicate::OGE,
                CmpOp::Eq => FloatPredicate::OEQ,
                // IEEE `!=` (the VM's): true when either operand is NaN.
                CmpOp::Ne => FloatPredicate::UNE,
                CmpOp::ULt | CmpOp::ULe | CmpOp::UGt | CmpOp::UGe => {
                    return Err(self.invalid(format!("{op:?} applied to {}", a.ty.name())));
                }
            };
            self.builder.build_float_compare(
                predicate,
                a.v.into_float_value(),
                b.v.into_float_value(),
                "cmp",
            )?
        } else {
            let unsigned = a.ty == Ty::I1;
            let predicate = match op {
                CmpOp::Lt if unsigned => IntPredicate::ULT,
                CmpOp::Le if unsigned => IntPredicate::ULE,
                CmpOp::Gt if unsigned => IntPredicate::UGT,
                CmpOp::Ge if unsigned => IntPredicate::UGE,
                CmpOp::Lt => IntPredicate::SLT,
                CmpOp::Le => IntPredicate::SLE,
                CmpOp::Gt => IntPredicate::SGT,
                CmpOp::Ge => IntPredicate::SGE,
                CmpOp::Eq => IntPredicate::EQ,
                CmpOp::Ne => IntPredicate::NE,
                CmpOp::ULt => IntPredicate::ULT,
                CmpOp::ULe => IntPredicate::ULE,
                CmpOp::UGt => IntPredicate::UGT,
                CmpOp::UGe => IntPredicate::UGE,
            };
            self.builder.build_int_compare(
                predicate,
                a.v.into_int_value(),
                b.v.into_int_value(),
                "cmp",
            )?
        };
        Ok(Val { v: v.into(), ty: Ty::I1 })
    }
}
