//! LIR → LLVM IR → PTX with LLVM 22's NVPTX back end (through inkwell).
//!
//! Expects a [`Program`] following the typing rules of `lir.rs`; every violation found while
//! generating code (mismatched operand types, a float where an integer is needed, an index out of
//! range, a shared access with `shared_bytes == 0`, …) becomes [`BackendError::InvalidProgram`].
//!
//! Guarantees about the PTX:
//! * one `.visible .entry` named `program.name`, parameters in `program.params` order: a global
//!   tensor is a 64-bit pointer, a scalar is passed by value (an `i1` scalar as one byte);
//! * `.maxntid block_threads`; shared memory is one `.shared .align 16` byte array;
//! * `bool` tensors hold one byte per element (0 or 1 on store, any non-zero reads as true);
//! * every arithmetic operation rounds on its own (no mul+add contraction), except `Fma`;
//! * casts follow the value semantics of `cast` (docs/language.md §7), rounding once (see [`Codegen::cast`]);
//! * `Exp`, `Exp2`, `Log` and `Tanh` use the f32 hardware approximations (`ex2.approx`,
//!   `lg2.approx`, `tanh.approx`) for every float type, f64 included (through f32); so does
//!   `Rsqrt` (`rsqrt.approx`) except on f64, where it is `1 / sqrt(x)`; `Sqrt` is correctly
//!   rounded for every type;
//! * float `Min`/`Max` return the other operand when one is NaN (IEEE minNum, PTX `min`);
//! * integer `Div`/`Rem` by zero give an unspecified value (LLVM treats them as undefined);
//! * `LoadGlobalVector`/`StoreGlobalVector` are one access of their size (`<4 x i32>`,
//!   `<2 x i32>`, `i32`, `i16` or `i8` with the alignment of the size), which the NVPTX back end
//!   emits as `ld.global.v4.u32`, `ld.global.v2.u32`, ... (or the same with the element type).

use tl_compiler::backend::{Arch, BackendError};
use tl_compiler::dtype::DType;
use tl_compiler::lir::{BinaryOp, CmpOp, Expr, Param, Program, Stmt, Ty, UnaryOp, Var};
use inkwell::attributes::AttributeLoc;
use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple,
};
use inkwell::types::{BasicMetadataTypeEnum, BasicTypeEnum, FloatType, IntType};
use inkwell::values::{
    BasicMetadataValueEnum, BasicValue, BasicValueEnum, FastMathFlags, FloatValue, FunctionValue, IntValue,
    PointerValue,
};
use inkwell::{AddressSpace, AtomicOrdering, AtomicRMWBinOp, FloatPredicate, IntPredicate, OptimizationLevel};
use std::sync::Once;

/// The error of code generation inside this module: a [`BackendError`], into which LLVM
/// builder failures convert with `?` (a newtype, because a `From` between two foreign types
/// cannot be written here).
struct CodegenError(BackendError);

impl From<BackendError> for CodegenError {
    fn from(e: BackendError) -> Self {
        CodegenError(e)
    }
}

impl From<inkwell::builder::BuilderError> for CodegenError {
    fn from(e: inkwell::builder::BuilderError) -> Self {
        CodegenError(BackendError::Builder(e.to_string()))
    }
}

const TRIPLE: &str = "nvptx64-nvidia-cuda";
/// PTX ISA 8.0: enough for every instruction used here, and accepted by ptxas for both arches.
const PTX_FEATURES: &str = "+ptx80";
/// LLVM's `CallingConv::PTX_Kernel`. LLVM 22 ignores `nvvm.annotations` kernel metadata; the
/// calling convention is what makes a function a `.entry`.
const PTX_KERNEL_CC: u32 = 71;
const GLOBAL_SPACE: u16 = 1;
const SHARED_SPACE: u16 = 3;
/// Largest block the hardware launches (also the largest `.maxntid` ptxas accepts).
const MAX_BLOCK_THREADS: u32 = 1024;

/// The optimized LLVM IR (text) of `program` for `arch`.
pub fn lir_to_llvm_ir(program: &Program, arch: Arch) -> Result<String, BackendError> {
    let context = Context::create();
    let machine = target_machine(arch)?;
    let module = compile(&context, program, &machine).map_err(|e| e.0)?;
    Ok(module.print_to_string().to_string())
}

/// The PTX assembly of `program` for `arch`.
pub fn lir_to_ptx(program: &Program, arch: Arch) -> Result<String, BackendError> {
    let context = Context::create();
    let machine = target_machine(arch)?;
    let module = compile(&context, program, &machine).map_err(|e| e.0)?;
    let emission_error =
        |message: String| BackendError::Emission { kernel: program.name.clone(), arch, message };
    let buffer = machine
        .write_to_memory_buffer(&module, FileType::Assembly)
        .map_err(|e| emission_error(e.to_string()))?;
    String::from_utf8(buffer.as_slice().to_vec())
        .map_err(|_| emission_error("LLVM produced PTX that is not UTF-8".into()))
}

fn target_machine(arch: Arch) -> Result<TargetMachine, BackendError> {
    static INIT: Once = Once::new();
    INIT.call_once(|| Target::initialize_nvptx(&InitializationConfig::default()));
    let triple = TargetTriple::create(TRIPLE);
    let target = Target::from_triple(&triple)
        .map_err(|e| BackendError::Target { arch, message: e.to_string() })?;
    target
        .create_target_machine(
            &triple,
            arch.name(),
            PTX_FEATURES,
            OptimizationLevel::Aggressive,
            RelocMode::Default,
            CodeModel::Default,
        )
        .ok_or_else(|| BackendError::Target {
            arch,
            message: format!("LLVM could not create a target machine for CPU {}", arch.name()),
        })
}

/// Builds, verifies and optimizes (`default<O3>`) the module of `program`.
fn compile<'ctx>(
    context: &'ctx Context,
    program: &Program,
    machine: &TargetMachine,
) -> Result<Module<'ctx>, CodegenError> {
    let module = context.create_module(&program.name);
    module.set_triple(&machine.get_triple());
    module.set_data_layout(&machine.get_target_data().get_data_layout());
    Codegen::new(context, &module, program)?.emit()?;
    module.verify().map_err(|e| BackendError::Verification {
        kernel: program.name.clone(),
        message: e.to_string(),
    })?;
    // Variables start as allocas; SROA/mem2reg in this pipeline turn them into SSA registers.
    module.run_passes("default<O3>", machine, PassBuilderOptions::create()).map_err(|e| {
        BackendError::Optimization { kernel: program.name.clone(), message: e.to_string() }
    })?;
    Ok(module)
}

/// A generated value with its LIR type (the LLVM type always matches it).
#[derive(Clone, Copy)]
struct Val<'ctx> {
    v: BasicValueEnum<'ctx>,
    ty: Ty,
}

struct Codegen<'ctx, 'a> {
    context: &'ctx Context,
    module: &'a Module<'ctx>,
    program: &'a Program,
    function: FunctionValue<'ctx>,
    builder: Builder<'ctx>,
    /// Stays at the end of the entry block, which holds only allocas until [`Codegen::emit`]
    /// closes it, so that every alloca is in the entry block (where mem2reg promotes them).
    alloca_builder: Builder<'ctx>,
    /// Where the code of `program.body` starts.
    body_block: BasicBlock<'ctx>,
    vars: Vec<PointerValue<'ctx>>,
    shared: Option<PointerValue<'ctx>>,
    /// The `vprintf` format strings emitted so far, one global each.
    print_formats: std::collections::HashMap<String, inkwell::values::GlobalValue<'ctx>>,
}

impl<'ctx, 'a> Codegen<'ctx, 'a> {
    fn new(
        context: &'ctx Context,
        module: &'a Module<'ctx>,
        program: &'a Program,
    ) -> Result<Self, CodegenError> {
        let invalid = |message: String| CodegenError(BackendError::InvalidProgram {
            kernel: program.name.clone(),
            message,
        });
        if !is_ptx_identifier(&program.name) {
            return Err(invalid(format!(
                "kernel name `{}` is not a PTX identifier (letters, digits and `_`, not starting \
                 with a digit)",
                program.name
            )));
        }
        if !(1..=MAX_BLOCK_THREADS).contains(&program.block_threads) {
            return Err(invalid(format!(
                "block_threads is {}, must be between 1 and {MAX_BLOCK_THREADS}",
                program.block_threads
            )));
        }

        let param_types: Vec<BasicMetadataTypeEnum> = program
            .params
            .iter()
            .map(|p| match p {
                Param::Global { .. } => context.ptr_type(AddressSpace::from(GLOBAL_SPACE)).into(),
                Param::Scalar { ty, .. } => llvm_type(context, *ty).into(),
            })
            .collect();
        let function = module.add_function(
            &program.name,
            context.void_type().fn_type(&param_types, false),
            None,
        );
        function.set_call_conventions(PTX_KERNEL_CC);
        function.add_attribute(
            AttributeLoc::Function,
            context.create_string_attribute("nvvm.maxntid", &program.block_threads.to_string()),
        );
        for (value, param) in function.get_param_iter().zip(&program.params) {
            let (Param::Global { name, .. } | Param::Scalar { name, .. }) = param;
            value.set_name(name);
        }

        let entry = context.append_basic_block(function, "entry");
        let body_block = context.append_basic_block(function, "body");
        let alloca_builder = context.create_builder();
        alloca_builder.position_at_end(entry);
        let builder = context.create_builder();
        builder.position_at_end(body_block);

        let vars = program
            .vars
            .iter()
            .enumerate()
            .map(|(i, ty)| alloca_builder.build_alloca(llvm_type(context, *ty), &format!("r{i}")))
            .collect::<Result<Vec<_>, _>>()?;

        let shared = if program.shared_bytes == 0 {
            None
        } else {
            let bytes = u32::try_from(program.shared_bytes).map_err(|_| {
                invalid(format!("shared_bytes {} is too large", program.shared_bytes))
            })?;
            let array = context.i8_type().array_type(bytes);
            let global = module.add_global(array, Some(AddressSpace::from(SHARED_SPACE)), "smem");
            global.set_linkage(Linkage::Internal);
            // Shared memory cannot be initialized; `undef` is what NVPTX requires.
            global.set_initializer(&array.get_undef());
            global.set_alignment(16);
            Some(global.as_pointer_value())
        };

        Ok(Codegen {
            context,
            module,
            program,
            function,
            builder,
            alloca_builder,
            body_block,
            vars,
            shared,
            print_formats: std::collections::HashMap::new(),
        })
    }

    /// Generates the whole kernel body.
    fn emit(&mut self) -> Result<(), CodegenError> {
        self.stmts(&self.program.body)?;
        self.builder.build_return(None)?;
        self.alloca_builder.build_unconditional_branch(self.body_block)?;
        Ok(())
    }

    fn invalid(&self, message: impl Into<String>) -> CodegenError {
        CodegenError(BackendError::InvalidProgram { kernel: self.program.name.clone(), message: message.into() })
    }

    // ---------------------------------------------------------------- statements

    fn stmts(&mut self, body: &[Stmt]) -> Result<(), CodegenError> {
        body.iter().try_for_each(|s| self.stmt(s))
    }

    fn stmt(&mut self, stmt: &Stmt) -> Result<(), CodegenError> {
        match stmt {
            Stmt::Assign(var, e) => {
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
            Stmt::LoadGlobalVector { dst, param, byte_offset, ty } => {
                let (addr, memory, vector, size) = self.vector_access(*param, byte_offset, dst.len(), *ty)?;
                let raw = self.builder.build_load(memory, addr, "vld")?;
                if let Some(i) = raw.as_instruction_value() {
                    i.set_alignment(size).map_err(|e| self.invalid(format!("vector load alignment: {e}")))?;
                }
                let elements = self.builder.build_bit_cast(raw, vector, "vlanes")?;
                for (i, v) in dst.iter().enumerate() {
                    let (ptr, reg_ty) = self.var(*v)?;
                    if reg_ty != *ty {
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
    fn mma(&mut self, kind: tl_compiler::lir::MmaKind, a: &[Expr; 4], b: &[Expr; 2], c: &[Var; 4]) -> Result<(), CodegenError> {
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
    fn for_loop(
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

    // ---------------------------------------------------------------- memory

    fn var(&self, var: Var) -> Result<(PointerValue<'ctx>, Ty), CodegenError> {
        let i = var.0 as usize;
        match (self.vars.get(i), self.program.vars.get(i)) {
            (Some(ptr), Some(ty)) => Ok((*ptr, *ty)),
            _ => Err(self.invalid(format!("r{i} is not a variable of the program"))),
        }
    }

    /// The pointer and element type of global tensor parameter `index`.
    fn global_param(&self, index: usize) -> Result<(PointerValue<'ctx>, DType), CodegenError> {
        match (self.program.params.get(index), self.function.get_nth_param(index as u32)) {
            (Some(Param::Global { dtype, .. }), Some(BasicValueEnum::PointerValue(ptr))) => {
                Ok((ptr, *dtype))
            }
            _ => Err(self.invalid(format!("parameter {index} is not a global tensor"))),
        }
    }

    /// The address of element `index` (i64) of a global tensor of `dtype`.
    fn element_address(
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
    fn shared_address(&mut self, offset: &Expr) -> Result<PointerValue<'ctx>, CodegenError> {
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
    fn shared_bit(&mut self, bit_offset: &Expr) -> Result<(PointerValue<'ctx>, IntValue<'ctx>), CodegenError> {
        let Some(base) = self.shared else {
            return Err(self.invalid("shared memory access, but shared_bytes is 0"));
        };
        let bit = self.expr_of(bit_offset, Ty::I32, "a shared bit offset")?.v.into_int_value();
        let bit = self.builder.build_int_s_extend(bit, self.context.i64_type(), "shared_bit")?;
        Ok((base, bit))
    }

    /// Stores a register value; i1 goes to memory as one byte, 0 or 1.
    /// Address of byte `byte_index` (i64) of a global buffer.
    fn byte_address(
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
    fn vector_access(
        &mut self,
        param: usize,
        byte_offset: &Expr,
        count: usize,
        ty: Ty,
    ) -> Result<(PointerValue<'ctx>, BasicTypeEnum<'ctx>, BasicTypeEnum<'ctx>, u32), CodegenError> {
        let size = count * ty.bytes();
        if count == 0 || ty == Ty::I1 || !size.is_power_of_two() || size > 16 {
            return Err(self.invalid(format!("a vector access of {count} × {} ({size} bytes; 1 to 16, a power of two)", ty.name())));
        }
        let (base, _) = self.global_param(param)?;
        let offset = self.expr_of(byte_offset, Ty::I64, "a vector byte offset")?;
        let addr = self.byte_address(base, offset.v.into_int_value())?;
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
        Ok((addr, memory, lanes, size as u32))
    }

    /// The byte (i64) and the bit within it (i32) of bit `bit_index` of a packed buffer.
    fn bit_position(&self, bit_index: IntValue<'ctx>) -> Result<(IntValue<'ctx>, IntValue<'ctx>), CodegenError> {
        let (i32t, i64t) = (self.context.i32_type(), self.context.i64_type());
        let byte_index = self.builder.build_right_shift(bit_index, i64t.const_int(3, false), false, "byte_index")?;
        let shift64 = self.builder.build_and(bit_index, i64t.const_int(7, false), "bit_shift")?;
        Ok((byte_index, self.builder.build_int_truncate(shift64, i32t, "shift")?))
    }

    /// `bits` bits at `bit_index` of a packed buffer, zero-extended to i32. The second byte is
    /// read only when the element straddles into it, so no byte past the element is touched.
    fn load_bits(
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
    fn store_bits(
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

    fn store(&self, addr: PointerValue<'ctx>, value: Val<'ctx>) -> Result<(), CodegenError> {
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
    fn load(&self, addr: PointerValue<'ctx>, ty: Ty) -> Result<Val<'ctx>, CodegenError> {
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

    // ---------------------------------------------------------------- expressions

    /// Generates `e` and checks that its type is `ty`; `what` names it in the error.
    fn expr_of(&mut self, e: &Expr, ty: Ty, what: &str) -> Result<Val<'ctx>, CodegenError> {
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

    fn expr(&mut self, e: &Expr) -> Result<Val<'ctx>, CodegenError> {
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
                if a.ty.is_float() {
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

    /// `lop3.b32` as inline PTX (NVVM has no intrinsic for it); the truth table is an
    /// immediate. The asm has no side effects, so LLVM may combine or move it.
    fn lop3(&self, a: IntValue<'ctx>, b: IntValue<'ctx>, c: IntValue<'ctx>, lut: u8) -> Result<Val<'ctx>, CodegenError> {
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

    /// Generates two operands that must have the same type.
    fn operands(
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

    fn special_register(&self, name: &str) -> Result<Val<'ctx>, CodegenError> {
        Ok(Val { v: self.call_intrinsic(name, &[], &[])?, ty: Ty::I32 })
    }

    fn unary(&self, op: UnaryOp, a: Val<'ctx>) -> Result<Val<'ctx>, CodegenError> {
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
            | UnaryOp::Sqrt
            | UnaryOp::Rsqrt
            | UnaryOp::Tanh => {
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
    fn float_math(&self, op: UnaryOp, a: Val<'ctx>) -> Result<Val<'ctx>, CodegenError> {
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

    fn float_math_f32(
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

    fn binary(&self, op: BinaryOp, a: Val<'ctx>, b: Val<'ctx>) -> Result<Val<'ctx>, CodegenError> {
        let bld = &self.builder;
        let v: BasicValueEnum = if a.ty.is_float() {
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
    fn compare(&self, op: CmpOp, a: Val<'ctx>, b: Val<'ctx>) -> Result<Val<'ctx>, CodegenError> {
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

    // ---------------------------------------------------------------- casts

    /// Converts with the value semantics of `cast` (docs/language.md §7; what `DType::round` computes):
    /// * to i1: `!= 0` (IEEE: a float NaN gives true); from i1: 0 or 1;
    /// * float→float: round to nearest even;
    /// * float→int: round to nearest even, then saturate to the target range, NaN → 0;
    /// * int→float: round to nearest even;
    /// * int→int: the source value (unsigned if `from_unsigned`) clamped to the target range
    ///   (unsigned if `to_unsigned`); without clamping this is sign/zero extension or identity.
    fn cast(
        &self,
        a: Val<'ctx>,
        to: Ty,
        from_unsigned: bool,
        to_unsigned: bool,
    ) -> Result<Val<'ctx>, CodegenError> {
        let from = a.ty;
        let bld = &self.builder;
        let v: BasicValueEnum = if to == Ty::I1 {
            if from.is_float() {
                let x = a.v.into_float_value();
                bld.build_float_compare(
                    FloatPredicate::UNE,
                    x,
                    x.get_type().const_zero(),
                    "nonzero",
                )?
                .into()
            } else {
                let x = a.v.into_int_value();
                bld.build_int_compare(IntPredicate::NE, x, x.get_type().const_zero(), "nonzero")?
                    .into()
            }
        } else if from == Ty::I1 {
            let x = a.v.into_int_value();
            if to.is_float() {
                bld.build_unsigned_int_to_float(x, float_type(self.context, to), "bool_to_float")?
                    .into()
            } else {
                bld.build_int_z_extend(x, int_type(self.context, to), "bool_to_int")?.into()
            }
        } else {
            match (from.is_float(), to.is_float()) {
                (true, true) => self.float_to_float(a.v.into_float_value(), from, to)?.into(),
                (true, false) => {
                    let name = if to_unsigned { "llvm.fptoui.sat" } else { "llvm.fptosi.sat" };
                    let rounded = self.call_float_intrinsic("llvm.roundeven", from, &[a.v])?;
                    let overloads = [llvm_type(self.context, to), llvm_type(self.context, from)];
                    self.call_intrinsic(name, &overloads, &[rounded.v.into()])?
                }
                (false, true) => self.int_to_float(a.v.into_int_value(), from_unsigned, to)?.into(),
                (false, false) => self
                    .int_to_int(a.v.into_int_value(), from, to, from_unsigned, to_unsigned)?
                    .into(),
            }
        };
        Ok(Val { v, ty: to })
    }

    fn float_to_float(
        &self,
        x: FloatValue<'ctx>,
        from: Ty,
        to: Ty,
    ) -> Result<FloatValue<'ctx>, CodegenError> {
        let target = float_type(self.context, to);
        Ok(match from.bytes().cmp(&to.bytes()) {
            std::cmp::Ordering::Less => self.builder.build_float_ext(x, target, "fpext")?,
            std::cmp::Ordering::Greater => self.builder.build_float_trunc(x, target, "fptrunc")?,
            // f16 ↔ bf16 (or identity): widening to f32 is exact, so this rounds once.
            std::cmp::Ordering::Equal if from == to => x,
            std::cmp::Ordering::Equal => {
                let wide = self.builder.build_float_ext(x, self.context.f32_type(), "fpext")?;
                self.builder.build_float_trunc(wide, target, "fptrunc")?
            }
        })
    }

    fn int_to_float(
        &self,
        x: IntValue<'ctx>,
        unsigned: bool,
        to: Ty,
    ) -> Result<FloatValue<'ctx>, CodegenError> {
        let convert = |target: FloatType<'ctx>| {
            if unsigned {
                self.builder.build_unsigned_int_to_float(x, target, "itof")
            } else {
                self.builder.build_signed_int_to_float(x, target, "itof")
            }
        };
        if to == Ty::BF16 {
            // NVPTX on sm_80 converts int→bf16 through f32 with two roundings, and InstCombine
            // folds a plain int→f64→bf16 back into that. So: int→f64 (exact up to 32 bits; for
            // i64 beyond 2^53 this rounds, like a conversion through f64 does), f64→f32 rounded
            // to odd, then f32→bf16 to nearest even, which is then rounded once: f32 keeps more
            // than bf16's 8 bits plus 2.
            let wide = convert(self.context.f64_type())?;
            let odd = self.f64_to_f32_round_to_odd(wide)?;
            Ok(self.builder.build_float_trunc(odd, float_type(self.context, to), "to_bf16")?)
        } else {
            Ok(convert(float_type(self.context, to))?)
        }
    }

    /// f64→f32 rounding to odd: truncate toward zero, and set the last bit when inexact.
    fn f64_to_f32_round_to_odd(
        &self,
        x: FloatValue<'ctx>,
    ) -> Result<FloatValue<'ctx>, CodegenError> {
        let bld = &self.builder;
        let (f32_type, i32_type) = (self.context.f32_type(), self.context.i32_type());
        let nearest = bld.build_float_trunc(x, f32_type, "nearest")?;
        let back = bld.build_float_ext(nearest, x.get_type(), "back")?;
        let inexact = bld.build_float_compare(FloatPredicate::ONE, x, back, "inexact")?;
        let magnitude = |v: FloatValue<'ctx>| -> Result<FloatValue<'ctx>, CodegenError> {
            Ok(self.call_float_intrinsic("llvm.fabs", Ty::F64, &[v.into()])?.v.into_float_value())
        };
        let rounded_away =
            bld.build_float_compare(FloatPredicate::OGT, magnitude(back)?, magnitude(x)?, "away")?;
        // A non-zero float's bit pattern minus one is the next float toward zero.
        let bits = bld.build_bit_cast(nearest, i32_type, "bits")?.into_int_value();
        let toward_zero =
            bld.build_int_sub(bits, bld.build_int_z_extend(rounded_away, i32_type, "away")?, "rz")?;
        let odd =
            bld.build_or(toward_zero, bld.build_int_z_extend(inexact, i32_type, "sticky")?, "odd")?;
        Ok(bld.build_bit_cast(odd, f32_type, "round_to_odd")?.into_float_value())
    }

    fn int_to_int(
        &self,
        x: IntValue<'ctx>,
        from: Ty,
        to: Ty,
        from_unsigned: bool,
        to_unsigned: bool,
    ) -> Result<IntValue<'ctx>, CodegenError> {
        let source_bits = int_type(self.context, from).get_bit_width();
        let target = int_type(self.context, to);
        let (source_min, source_max) = int_range(source_bits, from_unsigned);
        let (target_min, target_max) = int_range(target.get_bit_width(), to_unsigned);
        // Both bounds, when needed, fit in the source type: they lie inside its range.
        let constant = |value: i128| x.get_type().const_int(value as u64, false);
        let mut v = x;
        if target_min > source_min {
            v = self.int_intrinsic("llvm.smax", v, constant(target_min))?;
        }
        if target_max < source_max {
            let min = if from_unsigned { "llvm.umin" } else { "llvm.smin" };
            v = self.int_intrinsic(min, v, constant(target_max))?;
        }
        Ok(match target.get_bit_width().cmp(&source_bits) {
            std::cmp::Ordering::Greater if from_unsigned => {
                self.builder.build_int_z_extend(v, target, "zext")?
            }
            // After clamping, a negative value remains only if the target is signed.
            std::cmp::Ordering::Greater => self.builder.build_int_s_extend(v, target, "sext")?,
            std::cmp::Ordering::Less => self.builder.build_int_truncate(v, target, "trunc")?,
            std::cmp::Ordering::Equal => v,
        })
    }

    /// `Stmt::Print` through CUDA's `vprintf(format, args)`: the format string is a global
    /// constant, the arguments a local struct laid out as C varargs (i32 block indices and
    /// coordinates, then the value as f64 or i64).
    fn print(&mut self, label: &str, coords: &[Expr], value: &Expr, unsigned: bool) -> Result<(), CodegenError> {
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

    // ---------------------------------------------------------------- intrinsics

    /// The declaration of intrinsic `name`; `overloads` picks the overload of an overloaded one.
    fn intrinsic(
        &self,
        name: &str,
        overloads: &[BasicTypeEnum<'ctx>],
    ) -> Result<FunctionValue<'ctx>, CodegenError> {
        inkwell::intrinsics::Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, overloads))
            .ok_or_else(|| CodegenError(BackendError::MissingIntrinsic(name.to_string())))
    }

    /// Calls a value-returning intrinsic.
    fn call_intrinsic(
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
    fn call_float_intrinsic(
        &self,
        name: &str,
        ty: Ty,
        args: &[BasicValueEnum<'ctx>],
    ) -> Result<Val<'ctx>, CodegenError> {
        let args: Vec<BasicMetadataValueEnum> = args.iter().map(|a| (*a).into()).collect();
        Ok(Val { v: self.call_intrinsic(name, &[llvm_type(self.context, ty)], &args)?, ty })
    }

    /// An overloaded two-operand integer intrinsic (`llvm.smin` and friends).
    fn int_intrinsic(
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

// ---------------------------------------------------------------- types

fn int_type(context: &Context, ty: Ty) -> IntType<'_> {
    match ty {
        Ty::I1 => context.bool_type(),
        Ty::I8 => context.i8_type(),
        Ty::I16 | Ty::F16 | Ty::BF16 => context.i16_type(),
        Ty::I32 | Ty::F32 => context.i32_type(),
        Ty::I64 | Ty::F64 => context.i64_type(),
    }
}

/// The LLVM float type of a float `Ty` (callers check `is_float`; an integer `Ty` maps to the
/// float of the same width, which no caller relies on).
fn float_type(context: &Context, ty: Ty) -> FloatType<'_> {
    match ty {
        Ty::F16 | Ty::I16 => context.f16_type(),
        Ty::BF16 => context.bf16_type(),
        Ty::F64 | Ty::I64 => context.f64_type(),
        Ty::F32 | Ty::I32 | Ty::I8 | Ty::I1 => context.f32_type(),
    }
}

fn llvm_type(context: &Context, ty: Ty) -> BasicTypeEnum<'_> {
    if ty.is_float() { float_type(context, ty).into() } else { int_type(context, ty).into() }
}

/// How a register type is laid out in memory: i1 takes a byte (the `bool` dtype).
fn memory_type(context: &Context, ty: Ty) -> BasicTypeEnum<'_> {
    if ty == Ty::I1 { context.i8_type().into() } else { llvm_type(context, ty) }
}

/// The range of a `bits`-wide integer, signed or unsigned.
fn int_range(bits: u32, unsigned: bool) -> (i128, i128) {
    if unsigned {
        (0, (1i128 << bits) - 1)
    } else {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    }
}

/// Whether `name` can be a PTX `.entry` name as is (LLVM would otherwise rename it, and the
/// runtime could not find the kernel by name).
fn is_ptx_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use tl_compiler::backend::ptxas::{assemble, find_ptxas};

    // ------------------------------------------------------------ builders for hand-written LIR

    fn b(e: Expr) -> Box<Expr> {
        Box::new(e)
    }
    fn int(ty: Ty, v: i64) -> Expr {
        Expr::Int(ty, v)
    }
    fn float(ty: Ty, v: f64) -> Expr {
        Expr::Float(ty, v)
    }
    fn var(v: Var) -> Expr {
        Expr::Var(v)
    }
    fn bin(op: BinaryOp, x: Expr, y: Expr) -> Expr {
        Expr::Binary(op, b(x), b(y))
    }
    fn un(op: UnaryOp, x: Expr) -> Expr {
        Expr::Unary(op, b(x))
    }
    fn cmp(op: CmpOp, x: Expr, y: Expr) -> Expr {
        Expr::Cmp(op, b(x), b(y))
    }
    fn cast(to: Ty, x: Expr) -> Expr {
        Expr::Cast { to, value: b(x), from_unsigned: false, to_unsigned: false }
    }
    fn load(param: usize, index: Expr, ty: Ty) -> Expr {
        Expr::LoadGlobal { param, index: b(index), ty }
    }
    fn global(name: &str, dtype: DType) -> Param {
        Param::Global { name: name.into(), dtype }
    }
    fn kernel(name: &str, params: Vec<Param>, block_threads: u32, shared_bytes: usize) -> Program {
        Program {
            name: name.into(),
            params,
            block_threads,
            shared_bytes,
            vars: vec![],
            body: vec![],
        }
    }

    /// Appends `i = (ctaid.x * block_threads + tid.x) as i64` and returns `i`.
    fn global_thread_index(p: &mut Program) -> Var {
        let i = p.new_var(Ty::I64);
        let threads = int(Ty::I32, p.block_threads as i64);
        let linear =
            bin(BinaryOp::Add, bin(BinaryOp::Mul, Expr::BlockIdx(0), threads), Expr::ThreadIdx);
        p.body.push(Stmt::Assign(i, cast(Ty::I64, linear)));
        i
    }

    /// Compiles `p` for every arch, checks the PTX has `.entry` and every marker, assembles it
    /// with ptxas when available, and returns the PTX per arch.
    fn compile_everywhere(p: &Program, markers: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for arch in Arch::ALL {
            let ptx = lir_to_ptx(p, arch).unwrap_or_else(|e| panic!("{e}\n{p}"));
            // LLVM separates operands with tabs; markers are written with single spaces.
            let flat = ptx.split_whitespace().collect::<Vec<_>>().join(" ");
            let entry = format!(".entry {}(", p.name);
            for marker in std::iter::once(entry.as_str()).chain(markers.iter().copied()) {
                assert!(flat.contains(marker), "{arch}: `{marker}` missing from\n{ptx}");
            }
            assert!(ptx.contains(&format!(".target {}", arch.name())));
            match find_ptxas() {
                Some(_) => {
                    if let Err(e) = assemble(&ptx, arch) {
                        panic!("{e}\n{ptx}");
                    }
                }
                None => println!("skipping ptxas check: ptxas not found"),
            }
            out.push(ptx);
        }
        out
    }

    // ------------------------------------------------------------ kernels

    fn vector_add() -> Program {
        let mut p = kernel(
            "vadd",
            vec![
                global("a", DType::F32),
                global("b", DType::F32),
                global("c", DType::F32),
                Param::Scalar { name: "n".into(), ty: Ty::I32 },
            ],
            256,
            0,
        );
        let i = global_thread_index(&mut p);
        let sum = bin(BinaryOp::Add, load(0, var(i), Ty::F32), load(1, var(i), Ty::F32));
        p.body.push(Stmt::If {
            cond: cmp(CmpOp::Lt, var(i), cast(Ty::I64, Expr::Param(3))),
            then_body: vec![Stmt::StoreGlobal { param: 2, index: var(i), value: sum }],
            else_body: vec![],
        });
        p
    }

    #[test]
    fn vector_add_f32() {
        compile_everywhere(
            &vector_add(),
            &["ld.global", "st.global", "add.rn.f32", ".maxntid 256", "%tid.x"],
        );
    }

    /// `y[i] = lop3(prmt(x[i], x[i] >> 8, 0x5410), 0x00ff00ff, 0x64806480, 0x6a)`: the byte
    /// permute through the NVVM intrinsic, the truth table as inline PTX.
    #[test]
    fn prmt_and_lop3() {
        let mut p = kernel("bits", vec![global("x", DType::I32), global("y", DType::I32)], 128, 0);
        let i = global_thread_index(&mut p);
        let x = p.new_var(Ty::I32);
        p.body.push(Stmt::Assign(x, load(0, var(i), Ty::I32)));
        let packed = Expr::Prmt {
            a: b(var(x)),
            b: b(bin(BinaryOp::LShr, var(x), int(Ty::I32, 8))),
            selector: b(int(Ty::I32, 0x5410)),
        };
        let value = Expr::Lop3 { a: b(packed), b: b(int(Ty::I32, 0x00ff_00ff)), c: b(int(Ty::I32, 0x6480_6480)), lut: 0x6a };
        p.body.push(Stmt::StoreGlobal { param: 1, index: var(i), value });
        compile_everywhere(&p, &["prmt.b32", "lop3.b32", ", 0x6a;"]);
        let ir = lir_to_llvm_ir(&p, Arch::Sm80).unwrap();
        assert!(ir.contains("@llvm.nvvm.prmt("), "{ir}");
    }

    #[test]
    fn llvm_ir_is_an_optimized_ptx_kernel() {
        let ir = lir_to_llvm_ir(&vector_add(), Arch::Sm80).unwrap();
        assert!(ir.contains("define ptx_kernel void @vadd("), "{ir}");
        assert!(ir.contains("\"nvvm.maxntid\"=\"256\""), "{ir}");
        assert!(!ir.contains("alloca"), "mem2reg left allocas:\n{ir}");
    }

    #[test]
    fn mul_add_is_not_contracted() {
        // The VM rounds after each operation; only an explicit Fma may fuse.
        let mut p = kernel("muladd", vec![global("x", DType::F32)], 32, 0);
        let x = load(0, cast(Ty::I64, Expr::ThreadIdx), Ty::F32);
        let value =
            bin(BinaryOp::Add, bin(BinaryOp::Mul, x.clone(), x.clone()), float(Ty::F32, 0.5));
        p.body.push(Stmt::StoreGlobal { param: 0, index: cast(Ty::I64, Expr::ThreadIdx), value });
        for ptx in compile_everywhere(&p, &["mul.rn.f32", "add.rn.f32"]) {
            assert!(!ptx.contains("fma"), "{ptx}");
        }
    }

    #[test]
    fn f16_math() {
        let mut p =
            kernel("f16_math", vec![global("x", DType::F16), global("y", DType::F16)], 128, 0);
        let i = global_thread_index(&mut p);
        let x = p.new_var(Ty::F16);
        let t = p.new_var(Ty::F16);
        p.body.push(Stmt::Assign(x, load(0, var(i), Ty::F16)));
        let e = un(UnaryOp::Exp, var(x));
        let q = bin(BinaryOp::Div, var(x), float(Ty::F16, 3.0));
        p.body.push(Stmt::Assign(t, Expr::Fma(b(e), b(q), b(float(Ty::F16, 0.25)))));
        // Every transcendental, each via f32, plus a round trip through f32 and bf16.
        let mut acc = var(t);
        for op in [
            UnaryOp::Exp2,
            UnaryOp::Log,
            UnaryOp::Sqrt,
            UnaryOp::Rsqrt,
            UnaryOp::Tanh,
            UnaryOp::Abs,
            UnaryOp::Neg,
        ] {
            acc = bin(BinaryOp::Add, acc, un(op, var(x)));
        }
        let through_f32 =
            cast(Ty::F16, bin(BinaryOp::Mul, cast(Ty::F32, acc), float(Ty::F32, 2.0)));
        let through_bf16 =
            cast(Ty::F16, bin(BinaryOp::Max, cast(Ty::BF16, through_f32), float(Ty::BF16, -1.0)));
        p.body.push(Stmt::StoreGlobal { param: 1, index: var(i), value: through_bf16 });
        compile_everywhere(
            &p,
            &[
                "ld.global.b16",
                "st.global.b16",
                "fma.rn.f16",
                "ex2.approx",
                "lg2.approx",
                "rsqrt.approx",
                "tanh.approx.f32",
                "sqrt.rn.f32",
                "div.rn.f32",
            ],
        );
    }

    #[test]
    fn f64_and_bf16_math() {
        let mut p =
            kernel("wide_math", vec![global("x", DType::F64), global("y", DType::BF16)], 64, 0);
        let i = global_thread_index(&mut p);
        let x = load(0, var(i), Ty::F64);
        let mut acc = x.clone();
        for op in [UnaryOp::Exp, UnaryOp::Sqrt, UnaryOp::Rsqrt, UnaryOp::Tanh] {
            acc = bin(BinaryOp::Add, acc, un(op, x.clone()));
        }
        let h = cast(Ty::BF16, acc);
        let mut bf = Expr::Fma(b(h.clone()), b(h.clone()), b(float(Ty::BF16, 1.0)));
        for op in [BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Min] {
            bf = bin(op, bf, h.clone());
        }
        bf = bin(BinaryOp::Add, bf, un(UnaryOp::Exp, h));
        p.body.push(Stmt::StoreGlobal { param: 1, index: var(i), value: bf });
        compile_everywhere(&p, &["sqrt.rn.f64", "rcp.rn.f64", "ex2.approx", "tanh.approx.f32"]);
    }

    #[test]
    fn shared_memory_loop_with_barriers() {
        let threads = 128;
        let mut p =
            kernel("smem_loop", vec![global("out", DType::F32)], threads, threads as usize * 4);
        let k = p.new_var(Ty::I32);
        let acc = p.new_var(Ty::F32);
        p.body.push(Stmt::Assign(acc, float(Ty::F32, 0.0)));
        let mine = bin(BinaryOp::Mul, Expr::ThreadIdx, int(Ty::I32, 4));
        let neighbour = bin(
            BinaryOp::Mul,
            bin(
                BinaryOp::Rem,
                bin(BinaryOp::Add, Expr::ThreadIdx, int(Ty::I32, 1)),
                int(Ty::I32, threads as i64),
            ),
            int(Ty::I32, 4),
        );
        p.body.push(Stmt::For {
            var: k,
            start: int(Ty::I32, 0),
            end: int(Ty::I32, 4),
            body: vec![
                Stmt::StoreShared {
                    offset: mine.clone(),
                    value: cast(Ty::F32, bin(BinaryOp::Add, var(k), Expr::ThreadIdx)),
                },
                Stmt::Barrier,
                Stmt::Assign(
                    acc,
                    bin(
                        BinaryOp::Add,
                        var(acc),
                        Expr::LoadShared { offset: b(neighbour), ty: Ty::F32 },
                    ),
                ),
                Stmt::Barrier,
            ],
        });
        p.body.push(Stmt::StoreGlobal {
            param: 0,
            index: cast(Ty::I64, Expr::ThreadIdx),
            value: var(acc),
        });
        compile_everywhere(
            &p,
            &["bar.sync 0", ".shared .align 16 .b8 smem[512]", "st.shared.b32", "ld.shared.b32"],
        );
    }

    #[test]
    fn loop_with_runtime_bounds_and_assigned_variable() {
        let mut p = kernel(
            "count",
            vec![global("out", DType::I32), Param::Scalar { name: "n".into(), ty: Ty::I32 }],
            32,
            0,
        );
        let k = p.new_var(Ty::I32);
        let total = p.new_var(Ty::I32);
        p.body.push(Stmt::Assign(total, int(Ty::I32, 0)));
        p.body.push(Stmt::For {
            var: k,
            start: Expr::ThreadIdx,
            end: Expr::Param(1),
            body: vec![
                Stmt::Assign(total, bin(BinaryOp::Add, var(total), var(k))),
                // Does not change the trip count.
                Stmt::Assign(k, int(Ty::I32, 1000)),
            ],
        });
        p.body.push(Stmt::StoreGlobal {
            param: 0,
            index: cast(Ty::I64, Expr::ThreadIdx),
            value: var(total),
        });
        compile_everywhere(&p, &["st.global.b32"]);
    }

    const ALL_TYS: [Ty; 9] =
        [Ty::I1, Ty::I8, Ty::I16, Ty::I32, Ty::I64, Ty::F16, Ty::BF16, Ty::F32, Ty::F64];

    fn dtype_of(ty: Ty) -> DType {
        match ty {
            Ty::I1 => DType::Bool,
            Ty::I8 => DType::I8,
            Ty::I16 => DType::I16,
            Ty::I32 => DType::I32,
            Ty::I64 => DType::I64,
            Ty::F16 => DType::F16,
            Ty::BF16 => DType::BF16,
            Ty::F32 => DType::F32,
            Ty::F64 => DType::F64,
        }
    }

    #[test]
    fn casts_between_every_pair_of_types() {
        // Inputs 0..9 and outputs 9..18, one tensor per type; each (from, to, signedness) case
        // writes its own element so that none is optimized away.
        let mut params: Vec<Param> =
            ALL_TYS.iter().map(|t| global(&format!("in_{}", t.name()), dtype_of(*t))).collect();
        params.extend(ALL_TYS.iter().map(|t| global(&format!("out_{}", t.name()), dtype_of(*t))));
        let mut p = kernel("casts", params, 32, 0);
        let tid = cast(Ty::I64, Expr::ThreadIdx);
        let mut slot = [0i64; 9];
        for (fi, from) in ALL_TYS.iter().enumerate() {
            for (ti, to) in ALL_TYS.iter().enumerate() {
                for from_unsigned in [false, true] {
                    for to_unsigned in [false, true] {
                        let value = Expr::Cast {
                            to: *to,
                            value: b(load(fi, tid.clone(), *from)),
                            from_unsigned,
                            to_unsigned,
                        };
                        let index = bin(
                            BinaryOp::Add,
                            bin(BinaryOp::Mul, tid.clone(), int(Ty::I64, 1000)),
                            int(Ty::I64, slot[ti]),
                        );
                        slot[ti] += 1;
                        p.body.push(Stmt::StoreGlobal { param: 9 + ti, index, value });
                    }
                }
            }
        }
        compile_everywhere(&p, &["cvt.rni", "cvt.rn.f16.f64", "cvt.rn.f32.s64"]);
    }

    #[test]
    fn float_to_small_int_casts_saturate() {
        let params = vec![
            global("x", DType::F32),
            global("i", DType::I8),
            global("u", DType::U8),
            global("n", DType::I32),
        ];
        let mut p = kernel("saturate", params, 32, 0);
        let tid = cast(Ty::I64, Expr::ThreadIdx);
        let x = load(0, tid.clone(), Ty::F32);
        let to = |to, to_unsigned, value| Expr::Cast {
            to,
            value: b(value),
            from_unsigned: false,
            to_unsigned,
        };
        p.body.push(Stmt::StoreGlobal {
            param: 1,
            index: tid.clone(),
            value: to(Ty::I8, false, x.clone()),
        });
        p.body.push(Stmt::StoreGlobal { param: 2, index: tid.clone(), value: to(Ty::I8, true, x) });
        let n = load(3, tid.clone(), Ty::I32);
        let doubled = bin(BinaryOp::Add, tid.clone(), tid.clone());
        p.body.push(Stmt::StoreGlobal { param: 1, index: doubled, value: to(Ty::I8, false, n) });
        // 127.0 and 255.0 as PTX float literals: the clamps of float→i8 and float→u8;
        // NaN tests select 0; the i32→i8 clamp shows up as min/max with 127 and -128.
        compile_everywhere(
            &p,
            &["cvt.rni.f32.f32", "0f42FE0000", "0f437F0000", "0fC3000000", "127", "-128"],
        );
    }

    #[test]
    fn bool_logic_and_select() {
        let params = vec![
            global("flags", DType::Bool),
            global("x", DType::F32),
            global("out", DType::F32),
            global("out_flags", DType::Bool),
            Param::Scalar { name: "invert".into(), ty: Ty::I1 },
        ];
        let mut p = kernel("bools", params, 64, 0);
        let i = global_thread_index(&mut p);
        let flag = p.new_var(Ty::I1);
        p.body.push(Stmt::Assign(flag, load(0, var(i), Ty::I1)));
        let positive = cmp(CmpOp::Gt, load(1, var(i), Ty::F32), float(Ty::F32, 0.0));
        let mixed = bin(
            BinaryOp::Or,
            bin(BinaryOp::And, var(flag), un(UnaryOp::Not, positive.clone())),
            cmp(CmpOp::Ne, Expr::Param(4), bin(BinaryOp::Max, var(flag), positive)),
        );
        p.body.push(Stmt::Assign(flag, mixed));
        let chosen =
            Expr::Select(b(var(flag)), b(load(1, var(i), Ty::F32)), b(float(Ty::F32, -1.0)));
        p.body.push(Stmt::If {
            cond: cmp(CmpOp::Lt, var(i), int(Ty::I64, 1 << 20)),
            then_body: vec![Stmt::StoreGlobal { param: 2, index: var(i), value: chosen }],
            else_body: vec![Stmt::StoreGlobal { param: 3, index: var(i), value: var(flag) }],
        });
        compile_everywhere(&p, &["ld.global.b8", "st.global.b8", "selp", "setp"]);
    }

    #[test]
    fn block_index_axes() {
        let mut p = kernel("grid3d", vec![global("out", DType::I32)], 32, 0);
        let flat = bin(
            BinaryOp::Add,
            Expr::BlockIdx(0),
            bin(
                BinaryOp::Mul,
                int(Ty::I32, 64),
                bin(
                    BinaryOp::Add,
                    Expr::BlockIdx(1),
                    bin(BinaryOp::Mul, int(Ty::I32, 64), Expr::BlockIdx(2)),
                ),
            ),
        );
        let value = bin(
            BinaryOp::Min,
            Expr::ThreadIdx,
            un(UnaryOp::Abs, bin(BinaryOp::Sub, Expr::BlockIdx(2), Expr::BlockIdx(1))),
        );
        p.body.push(Stmt::StoreGlobal { param: 0, index: cast(Ty::I64, flat), value });
        compile_everywhere(&p, &["%ctaid.x", "%ctaid.y", "%ctaid.z"]);
    }

    #[test]
    fn invalid_programs_are_errors_not_panics() {
        let good = vector_add();
        let mut cases: Vec<(Program, &str)> = Vec::new();

        let mut p = good.clone();
        p.name = "1bad-name".into();
        cases.push((p, "not a PTX identifier"));

        let mut p = good.clone();
        p.block_threads = 0;
        cases.push((p, "block_threads"));

        let mut p = good.clone();
        p.body.push(Stmt::Assign(Var(0), float(Ty::F32, 1.0)));
        cases.push((p, "expected i64"));

        let mut p = good.clone();
        p.body.push(Stmt::Assign(Var(7), int(Ty::I64, 1)));
        cases.push((p, "r7"));

        let mut p = good.clone();
        p.body.push(Stmt::StoreShared { offset: int(Ty::I32, 0), value: int(Ty::I32, 0) });
        cases.push((p, "shared_bytes is 0"));

        let mut p = good.clone();
        p.body.push(Stmt::StoreGlobal { param: 3, index: int(Ty::I64, 0), value: int(Ty::I32, 0) });
        cases.push((p, "not a global tensor"));

        let mut p = good.clone();
        p.body.push(Stmt::Assign(Var(0), bin(BinaryOp::Add, int(Ty::I64, 1), int(Ty::I32, 1))));
        cases.push((p, "different types"));

        let mut p = good.clone();
        p.body.push(Stmt::Assign(Var(0), cast(Ty::I64, un(UnaryOp::Exp, int(Ty::I32, 1)))));
        cases.push((p, "Exp applied to i32"));

        let mut p = good.clone();
        p.body.push(Stmt::Assign(Var(0), cast(Ty::I64, Expr::BlockIdx(3))));
        cases.push((p, "axis 3"));

        let mut p = good.clone();
        let prmt = Expr::Prmt { a: b(int(Ty::I64, 1)), b: b(int(Ty::I32, 2)), selector: b(int(Ty::I32, 0x3210)) };
        p.body.push(Stmt::Assign(Var(0), cast(Ty::I64, prmt)));
        cases.push((p, "a prmt operand has type i64"));

        let mut p = good;
        let lop3 = Expr::Lop3 { a: b(int(Ty::I32, 1)), b: b(int(Ty::I32, 2)), c: b(float(Ty::F32, 3.0)), lut: 0x96 };
        p.body.push(Stmt::Assign(Var(0), cast(Ty::I64, lop3)));
        cases.push((p, "a lop3 operand has type f32"));

        for (p, expected) in cases {
            let err = lir_to_ptx(&p, Arch::Sm80).expect_err(expected).to_string();
            assert!(err.contains(expected), "`{err}` should mention `{expected}`");
            assert!(matches!(
                lir_to_llvm_ir(&p, Arch::Sm90a),
                Err(BackendError::InvalidProgram { .. })
            ));
        }
    }
}
