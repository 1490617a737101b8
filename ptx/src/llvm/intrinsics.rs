//! Calls of LLVM and NVVM intrinsics, and `lop3.b32` as inline PTX.

use super::*;

impl<'ctx, 'a> Codegen<'ctx, 'a> {
    /// `lop3.b32` as inline PTX (NVVM has no intrinsic for it); the truth table is an
    /// immediate. The asm has no side effects, so LLVM may combine or move it.
    pub(super) fn lop3(&self, a: IntValue<'ctx>, b: IntValue<'ctx>, c: IntValue<'ctx>, lut: u8) -> Result<Val<'ctx>, CodegenError> {
        let i32_type = self.context.i32_type();
        let function_type = i32_type.fn_type(&[i32_type.into(), i32_type.into(), i32_type.into()], false);
        let asm = self.context.create_inline_asm(
            function_type,
            format!("lop3.b32 $0, $1, $2, $3, {lut:#04x};"),
            "=r,r,r,r".to_string(),
            false,
            false,
            None,
            false,
        );
        let call = self.builder.build_indirect_call(function_type, asm, &[a.into(), b.into(), c.into()], "lop3")?;
        let v = call
            .try_as_basic_value()
            .basic()
            .ok_or_else(|| BackendError::Builder("the lop3 asm returns no value".into()))?;
        Ok(Val { v, ty: Ty::I32 })
    }

    /// The declaration of intrinsic `name`; `overloads` picks the overload of an overloaded one.
    pub(super) fn intrinsic(
        &self,
        name: &str,
        overloads: &[BasicTypeEnum<'ctx>],
    ) -> Result<FunctionValue<'ctx>, CodegenError> {
        inkwell::intrinsics::Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, overloads))
            .ok_or_else(|| CodegenError(BackendError::MissingIntrinsic(name.to_string())))
    }

    /// Calls a value-returning intrinsic.
    pub(super) fn call_intrinsic(
        &self,
        name: &str,
        overloads: &[BasicTypeEnum<'ctx>],
        args: &[BasicMetadataValueEnum<'ctx>],
    ) -> Result<BasicValueEnum<'ctx>, CodegenError> {
        let call = self.builder.build_call(self.intrinsic(name, overloads)?, args, "")?;
        call.try_as_basic_value()
            .basic()
            .ok_or_else(|| CodegenError(BackendError::Builder(format!("intrinsic `{name}` returns no value"))))
    }

    /// An overloaded float intrinsic whose result has the operand type `ty`.
    pub(super) fn call_float_intrinsic(
        &self,
        name: &str,
        ty: Ty,
        args: &[BasicValueEnum<'ctx>],
    ) -> Result<Val<'ctx>, CodegenError> {
        let args: Vec<BasicMetadataValueEnum> = args.iter().map(|a| (*a).into()).collect();
        Ok(Val { v: self.call_intrinsic(name, &[llvm_type(self.context, ty)], &args)?, ty })
    }

    /// An overloaded two-operand integer intrinsic (`llvm.smin` and friends).
    pub(super) fn int_intrinsic(
        &self,
        name: &str,
        x: IntValue<'ctx>,
        y: IntValue<'ctx>,
    ) -> Result<IntValue<'ctx>, CodegenError> {
        Ok(self
            .call_intrinsic(name, &[x.get_type().into()], &[x.into(), y.into()])?
            .into_int_value())
    }
}
