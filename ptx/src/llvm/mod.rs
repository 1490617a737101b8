//! LIR → LLVM IR → PTX with LLVM 22's NVPTX back end (through inkwell).
//!
//! Expects a [`Program`] following the typing rules of `lir.rs`; every violation found while
//! generating code (mismatched operand types, a float where an integer is needed, an index out of
//! range, a shared access with `shared_bytes == 0`, …) becomes [`BackendError::InvalidProgram`].
//!
//! Guarantees about the PTX:
//! * one `.visible .entry` named `program.name`, parameters in `program.params` order: a global
//!   tensor is a 64-bit pointer, a scalar is passed by value (an `i1` scalar as one byte);
//! * `.maxntid block_threads`; shared memory is one `.shared .align 16` byte array, static up
//!   to `STATIC_SHARED_BYTES` and `.extern` (dynamic, sized by the launch) beyond, refused
//!   ([`BackendError::SharedMemory`]) beyond what the architecture gives a block;
//! * `bool` tensors hold one byte per element (0 or 1 on store, any non-zero reads as true);
//! * every arithmetic operation rounds on its own (no mul+add contraction), except `Fma`;
//! * casts follow the value semantics of `cast` (docs/language.md §7), rounding once (see [`Codegen::cast`]);
//! * `Exp`, `Exp2`, `Log`, `Log2`, `Tanh`, `Sin` and `Cos` are the f32 hardware
//!   approximations (`ex2.approx`, `lg2.approx`, `tanh.approx`, `sin.approx`, `cos.approx`)
//!   for every float type, f64 included (through f32); so is `Rsqrt` (`rsqrt.approx`) except
//!   on f64, where it is `1 / sqrt(x)`; `Sqrt` is correctly rounded for every type (the
//!   accurate math functions of the language arrive as sequences of exact operations);
//! * float `Min`/`Max` return the other operand when one is NaN (IEEE minNum, PTX `min`);
//! * integer `Div`/`Rem` by zero give an unspecified value (LLVM treats them as undefined);
//! * `LoadGlobalVector`/`StoreGlobalVector` are one access of their size (`<4 x i32>`,
//!   `<2 x i32>`, `i32`, `i16` or `i8` with the alignment of the size), which the NVPTX back end
//!   emits as `ld.global.v4.u32`, `ld.global.v2.u32`, ... (or the same with the element type).
//!
//! This file sets up the module, the kernel and its parameters; the code generation lives by
//! concern in `statements`, `expressions`, `casts`, `memory` (addresses and accesses) and
//! `intrinsics`.

use tl_compiler::backend::{Arch, BackendError, STATIC_SHARED_BYTES};
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

mod casts;
mod expressions;
mod intrinsics;
mod memory;
mod statements;

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

/// A kernel that needs more shared memory than `arch` gives a block cannot run there.
fn check_shared_memory(program: &Program, arch: Arch) -> Result<(), BackendError> {
    if program.shared_bytes > arch.max_shared_bytes() {
        return Err(BackendError::SharedMemory { kernel: program.name.clone(), bytes: program.shared_bytes, arch, limit: arch.max_shared_bytes() });
    }
    Ok(())
}

/// The optimized LLVM IR (text) of `program` for `arch`.
pub fn lir_to_llvm_ir(program: &Program, arch: Arch) -> Result<String, BackendError> {
    check_shared_memory(program, arch)?;
    let context = Context::create();
    let machine = target_machine(arch)?;
    let module = compile(&context, program, &machine).map_err(|e| e.0)?;
    Ok(module.print_to_string().to_string())
}

/// The PTX assembly of `program` for `arch`.
pub fn lir_to_ptx(program: &Program, arch: Arch) -> Result<String, BackendError> {
    check_shared_memory(program, arch)?;
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
    INIT.call_once(|| {
        Target::initialize_nvptx(&InitializationConfig::default());
        // 32-bit pointers for shared (and local and constant) memory, which is all a 32-bit
        // window can address: shared addresses then stay in 32-bit registers instead of being
        // widened for 64-bit arithmetic before every access (about 5% of the quantized
        // matmul's K loop). LLVM takes this as a process-wide option, once, before any target
        // machine computes its data layout.
        let args = [c"tl".as_ptr(), c"-nvptx-short-ptr".as_ptr()];
        // SAFETY: two NUL-terminated static strings; LLVM copies what it parses.
        unsafe { inkwell::llvm_sys::support::LLVMParseCommandLineOptions(2, args.as_ptr(), std::ptr::null()) };
    });
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
        } else if program.shared_bytes > STATIC_SHARED_BYTES {
            // Dynamic shared memory: `.extern .shared .align 16 .b8 smem[]`, sized by the
            // launch (which opts in to more than the static limit).
            let array = context.i8_type().array_type(0);
            let global = module.add_global(array, Some(AddressSpace::from(SHARED_SPACE)), "smem");
            global.set_linkage(Linkage::External);
            global.set_alignment(16);
            Some(global.as_pointer_value())
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

    // ---------------------------------------------------------------- memory

    // ---------------------------------------------------------------- expressions

    // ---------------------------------------------------------------- casts

    // ---------------------------------------------------------------- intrinsics

}

// ---------------------------------------------------------------- types

fn int_type(context: &Context, ty: Ty) -> IntType<'_> {
    match ty {
        Ty::I1 => context.bool_type(),
        Ty::I8 => context.i8_type(),
        Ty::I16 | Ty::F16 | Ty::BF16 => context.i16_type(),
        Ty::I32 | Ty::F32 | Ty::F16x2 | Ty::BF16x2 => context.i32_type(),
        Ty::I64 | Ty::F64 => context.i64_type(),
    }
}

/// The LLVM float type of a float `Ty` (callers check `is_float`; an integer `Ty` maps to the
/// float of the same width, which no caller relies on).
fn float_type(context: &Context, ty: Ty) -> FloatType<'_> {
    match ty {
        Ty::F16 | Ty::I16 | Ty::F16x2 => context.f16_type(),
        Ty::BF16 | Ty::BF16x2 => context.bf16_type(),
        Ty::F64 | Ty::I64 => context.f64_type(),
        Ty::F32 | Ty::I32 | Ty::I8 | Ty::I1 => context.f32_type(),
    }
}

fn llvm_type(context: &Context, ty: Ty) -> BasicTypeEnum<'_> {
    if ty.is_packed() {
        // `<2 x half>` / `<2 x bfloat>`: NVPTX selects the `.f16x2` / `.bf16x2` instructions.
        float_type(context, ty).vec_type(2).into()
    } else if ty.is_float() {
        float_type(context, ty).into()
    } else {
        int_type(context, ty).into()
    }
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
mod tests;
