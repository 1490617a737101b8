//! LIR → Cranelift IR for one block (see the crate's header for the execution model).
//!
//! Expects a verified LIR program without `print` (refused first, by [`unsupported`]). Guarantees: the generated function `fn(*mut Frame) -> i32` returns 0
//! after running every thread of the block, or 1 with the fault recorded in the frame; every
//! memory access it makes is inside a buffer (checked before the access); registers of type
//! `ty` are stored in their slots as `ty.bytes()` little-endian bytes.

use crate::frame_offsets as off;
use crate::helpers;
use crate::{CpuError, FaultKind};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, AbiParam, Block, FuncRef, InstBuilder, MemFlagsData, Signature, Type, Value};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};
use tl_compiler::diagnostics::Span;
use tl_compiler::lir::{BinaryOp, CmpOp, Expr, Param, Program, Stmt, Ty, UnaryOp, Var};

pub(crate) struct Generated {
    pub id: FuncId,
    pub sources: Vec<(Span, String)>,
    pub messages: Vec<String>,
    pub clif: String,
}

/// The first statement the backend does not compile yet, by name.
fn unsupported(body: &[Stmt]) -> Option<&'static str> {
    body.iter().find_map(|s| match s {
        Stmt::Print { .. } => Some("`print`"),
        Stmt::If { then_body, else_body, .. } => unsupported(then_body).or_else(|| unsupported(else_body)),
        Stmt::For { body, .. } => unsupported(body),
        _ => None,
    })
}

/// Statements that involve other threads: they split the block's thread loops.
fn collective(s: &Stmt) -> bool {
    match s {
        Stmt::Barrier | Stmt::ShuffleXor { .. } | Stmt::Mma { .. } | Stmt::LdMatrix { .. } => true,
        Stmt::If { then_body, else_body, .. } => then_body.iter().chain(else_body).any(collective),
        Stmt::For { body, .. } => body.iter().any(collective),
        _ => false,
    }
}

/// The Cranelift type holding a register of `ty` (16-bit floats as their bits, packed pairs
/// as i32, i1 as an i8 of 0 or 1).
fn cl(ty: Ty) -> Type {
    match ty {
        Ty::I1 | Ty::I8 => types::I8,
        Ty::I16 | Ty::F16 | Ty::BF16 => types::I16,
        Ty::I32 | Ty::F16x2 | Ty::BF16x2 => types::I32,
        Ty::I64 => types::I64,
        Ty::F32 => types::F32,
        Ty::F64 => types::F64,
    }
}

fn native_int(ty: Ty) -> bool {
    matches!(ty, Ty::I8 | Ty::I16 | Ty::I32 | Ty::I64)
}

fn native_float(ty: Ty) -> bool {
    matches!(ty, Ty::F32 | Ty::F64)
}

struct Helpers {
    unary: FuncRef,
    binary: FuncRef,
    compare: FuncRef,
    fma: FuncRef,
    cast: FuncRef,
    prmt: FuncRef,
    lop3: FuncRef,
    read_bits: FuncRef,
    write_bits: FuncRef,
    atomic_add: FuncRef,
    /// f16, bf16 → f32; f32 → f16, bf16; f64 → f16, bf16.
    widen: [FuncRef; 2],
    narrow: [FuncRef; 2],
    narrow_f64: [FuncRef; 2],
    /// The approximation math on f32 and on f64.
    math: [FuncRef; 2],
    mma: FuncRef,
    ldmatrix: FuncRef,
}

struct Gen<'a, 'f> {
    p: &'a Program,
    b: FunctionBuilder<'f>,
    ptr: Type,
    frame: Value,
    registers: Value,
    buffers: Value,
    scalars: Value,
    shared: Value,
    exit: Block,
    helpers: Helpers,
    /// The current thread (i32) inside a thread loop.
    thread: Option<Value>,
    sources: Vec<(Span, String)>,
    messages: Vec<String>,
}

pub(crate) fn generate(module: &mut JITModule, p: &Program) -> Result<Generated, CpuError> {
    if let Some(what) = unsupported(&p.body) {
        return Err(CpuError::Unsupported(what.to_string()));
    }
    let target = module.target_config();
    let ptr = target.pointer_type();
    let call_conv = module.target_config().default_call_conv;
    let signature = |params: &[Type], returns: &[Type]| {
        let mut s = Signature::new(call_conv);
        s.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        s.returns.extend(returns.iter().map(|&t| AbiParam::new(t)));
        s
    };
    let i = types::I64;
    let mut declare = |name: &str, s: Signature| module.declare_function(name, Linkage::Import, &s).map_err(|e| CpuError::Codegen(e.to_string()));
    let ids = [
        declare("tl_cpu_unary", signature(&[i, i, i], &[i]))?,
        declare("tl_cpu_binary", signature(&[i, i, i, i, ptr], &[i]))?,
        declare("tl_cpu_compare", signature(&[i, i, i, i], &[i]))?,
        declare("tl_cpu_fma", signature(&[i, i, i, i], &[i]))?,
        declare("tl_cpu_cast", signature(&[i, i, i, i], &[i]))?,
        declare("tl_cpu_prmt", signature(&[i, i, i], &[i]))?,
        declare("tl_cpu_lop3", signature(&[i, i, i, i], &[i]))?,
        declare("tl_cpu_read_bits", signature(&[ptr, i, i], &[i]))?,
        declare("tl_cpu_write_bits", signature(&[ptr, i, i, i], &[]))?,
        declare("tl_cpu_atomic_add", signature(&[ptr, i, i], &[]))?,
        declare("tl_cpu_f16_to_f32", signature(&[i], &[types::F32]))?,
        declare("tl_cpu_bf16_to_f32", signature(&[i], &[types::F32]))?,
        declare("tl_cpu_f32_to_f16", signature(&[types::F32], &[i]))?,
        declare("tl_cpu_f32_to_bf16", signature(&[types::F32], &[i]))?,
        declare("tl_cpu_f64_to_f16", signature(&[types::F64], &[i]))?,
        declare("tl_cpu_f64_to_bf16", signature(&[types::F64], &[i]))?,
        declare("tl_cpu_math_f32", signature(&[i, types::F32], &[types::F32]))?,
        declare("tl_cpu_math_f64", signature(&[i, types::F64], &[types::F64]))?,
        declare("tl_cpu_mma", signature(&[ptr, i, i, i, i, i, i, i, i], &[]))?,
        declare("tl_cpu_ldmatrix", signature(&[ptr, i, i, ptr, i, i, i, i, i, i, i, i], &[i]))?,
    ];
    let mut ctx = module.make_context();
    ctx.func.signature = signature(&[ptr], &[types::I32]);
    let mut function_context = FunctionBuilderContext::new();
    let (sources, messages) = {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut function_context);
        let refs: Vec<FuncRef> = ids.iter().map(|&id| module.declare_func_in_func(id, b.func)).collect();
        let helpers = Helpers {
            unary: refs[0],
            binary: refs[1],
            compare: refs[2],
            fma: refs[3],
            cast: refs[4],
            prmt: refs[5],
            lop3: refs[6],
            read_bits: refs[7],
            write_bits: refs[8],
            atomic_add: refs[9],
            widen: [refs[10], refs[11]],
            narrow: [refs[12], refs[13]],
            narrow_f64: [refs[14], refs[15]],
            math: [refs[16], refs[17]],
            mma: refs[18],
            ldmatrix: refs[19],
        };
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let frame = b.block_params(entry)[0];
        let load = |b: &mut FunctionBuilder, at: i32| b.ins().load(ptr, MemFlagsData::trusted(), frame, at);
        let (registers, buffers, scalars, shared) = (load(&mut b, off::REGISTERS), load(&mut b, off::BUFFERS), load(&mut b, off::SCALARS), load(&mut b, off::SHARED));
        let exit = b.create_block();
        let mut g = Gen { p, b, ptr, frame, registers, buffers, scalars, shared, exit, helpers, thread: None, sources: Vec::new(), messages: Vec::new() };
        g.phases(&p.body)?;
        let zero = g.b.ins().iconst(types::I32, 0);
        g.b.ins().return_(&[zero]);
        g.b.switch_to_block(exit);
        let one = g.b.ins().iconst(types::I32, 1);
        g.b.ins().return_(&[one]);
        g.b.seal_all_blocks();
        g.b.finalize(target);
        (g.sources, g.messages)
    };
    let clif = ctx.func.display().to_string();
    let name = format!("tl_block_{}", p.name);
    let id = module.declare_function(&name, Linkage::Local, &ctx.func.signature).map_err(|e| CpuError::Codegen(e.to_string()))?;
    module.define_function(id, &mut ctx).map_err(|e| CpuError::Codegen(format!("{e:?}")))?;
    module.clear_context(&mut ctx);
    Ok(Generated { id, sources, messages, clif })
}

impl Gen<'_, '_> {
    // ---- Structure: thread loops between collective points. ----

    /// A statement list at block level: runs of ordinary statements become loops over the
    /// threads; collective statements and the uniform control flow around them stay outside.
    fn phases(&mut self, body: &[Stmt]) -> Result<(), CpuError> {
        let mut run: Vec<&Stmt> = Vec::new();
        for s in body {
            if !collective(s) {
                run.push(s);
                continue;
            }
            self.thread_loop(&run)?;
            run.clear();
            match s {
                Stmt::Barrier => {}
                Stmt::ShuffleXor { dst, src, lane_mask } => self.shuffle(*dst, *src, *lane_mask),
                Stmt::Mma { kind, a, b, c } => {
                    // Every lane's fragments to its scratch slots, then the warps' products.
                    let operands: Vec<&Expr> = a.iter().chain(b.iter()).collect();
                    self.to_scratch(&operands)?;
                    let kind = match kind {
                        tl_compiler::lir::MmaKind::F16 => 0,
                        tl_compiler::lir::MmaKind::BF16 => 1,
                        tl_compiler::lir::MmaKind::S8 => 2,
                    };
                    let mut args = self.warp_arguments();
                    args.insert(3, self.b.ins().iconst(types::I64, kind));
                    for v in c {
                        args.push(self.b.ins().iconst(types::I64, i64::from(v.0)));
                    }
                    self.b.ins().call(self.helpers.mma, &args);
                }
                Stmt::LdMatrix { dst, row_offset, trans } => {
                    self.to_scratch(&[row_offset])?;
                    let mut args = self.warp_arguments();
                    let shared_len = self.b.ins().iconst(types::I64, self.p.shared_bytes as i64);
                    let count = self.b.ins().iconst(types::I64, dst.len() as i64);
                    let trans = self.b.ins().iconst(types::I64, i64::from(*trans));
                    let scratch = args.pop().expect("scratch");
                    args.extend([self.shared, shared_len, count, trans, scratch]);
                    for i in 0..4 {
                        args.push(self.b.ins().iconst(types::I64, dst.get(i).map_or(0, |v| i64::from(v.0))));
                    }
                    let bad = self.call(self.helpers.ldmatrix, &args);
                    let ok = self.b.ins().icmp_imm_s(IntCC::Equal, bad, -1);
                    let zero = self.b.ins().iconst(types::I64, 0);
                    self.guard(ok, FaultKind::SharedOutOfBounds, -1, zero, -1);
                }
                Stmt::If { cond, then_body, else_body } => {
                    let c = self.uniform(|g| g.expr(cond))?;
                    let (then_block, else_block, after) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
                    self.b.ins().brif(c, then_block, &[], else_block, &[]);
                    self.b.switch_to_block(then_block);
                    self.phases(then_body)?;
                    self.b.ins().jump(after, &[]);
                    self.b.switch_to_block(else_block);
                    self.phases(else_body)?;
                    self.b.ins().jump(after, &[]);
                    self.b.switch_to_block(after);
                }
                Stmt::For { var, start, end, body } => {
                    let (start, end) = (self.uniform(|g| g.expr(start))?, self.uniform(|g| g.expr(end))?);
                    let var = *var;
                    self.counted_loop(start, end, |g, i| {
                        // Every thread's copy of the loop variable.
                        let threads = g.b.ins().iconst(types::I32, i64::from(g.p.block_threads));
                        let zero = g.b.ins().iconst(types::I32, 0);
                        g.counted_loop(zero, threads, |g, t| {
                            g.store_register_of(t, var, i);
                            Ok(())
                        })?;
                        g.phases(body)
                    })?;
                }
                other => return Err(CpuError::Unsupported(format!("{other:?}"))),
            }
        }
        self.thread_loop(&run)
    }

    /// `f` evaluated as thread 0 (the value is block-uniform).
    fn uniform(&mut self, f: impl FnOnce(&mut Self) -> Result<Value, CpuError>) -> Result<Value, CpuError> {
        let zero = self.b.ins().iconst(types::I32, 0);
        let saved = self.thread.replace(zero);
        let v = f(self);
        self.thread = saved;
        v
    }

    fn thread_loop(&mut self, run: &[&Stmt]) -> Result<(), CpuError> {
        if run.is_empty() {
            return Ok(());
        }
        let zero = self.b.ins().iconst(types::I32, 0);
        let threads = self.b.ins().iconst(types::I32, i64::from(self.p.block_threads));
        self.counted_loop(zero, threads, |g, t| {
            let saved = g.thread.replace(t);
            for s in run {
                g.stmt(s)?;
            }
            g.thread = saved;
            Ok(())
        })
    }

    /// `for i in start .. end` (i32) around `body`.
    fn counted_loop(&mut self, start: Value, end: Value, body: impl FnOnce(&mut Self, Value) -> Result<(), CpuError>) -> Result<(), CpuError> {
        let header = self.b.create_block();
        self.b.append_block_param(header, types::I32);
        let (inside, after) = (self.b.create_block(), self.b.create_block());
        self.b.ins().jump(header, &[start.into()]);
        self.b.switch_to_block(header);
        let i = self.b.block_params(header)[0];
        let go = self.b.ins().icmp(IntCC::SignedLessThan, i, end);
        self.b.ins().brif(go, inside, &[], after, &[]);
        self.b.switch_to_block(inside);
        body(self, i)?;
        let next = self.b.ins().iadd_imm_s(i, 1);
        self.b.ins().jump(header, &[next.into()]);
        self.b.switch_to_block(after);
        Ok(())
    }

    /// Each thread's values of `operands` (32-bit registers) to its scratch slots 0, 1, ...
    fn to_scratch(&mut self, operands: &[&Expr]) -> Result<(), CpuError> {
        let zero = self.b.ins().iconst(types::I32, 0);
        let threads = self.b.ins().iconst(types::I32, i64::from(self.p.block_threads));
        let first = self.p.vars.len();
        self.counted_loop(zero, threads, |g, t| {
            let saved = g.thread.replace(t);
            for (k, e) in operands.iter().enumerate() {
                let v = g.expr(e)?;
                let at = g.slot(t, first + k);
                g.b.ins().store(MemFlagsData::trusted(), v, at, 0);
            }
            g.thread = saved;
            Ok(())
        })
    }

    /// The register file, its slots per thread, the thread count and the first scratch slot
    /// (the leading arguments of the warp-instruction helpers).
    fn warp_arguments(&mut self) -> Vec<Value> {
        let stride = self.b.ins().iconst(types::I64, (self.p.vars.len() + helpers::SCRATCH) as i64);
        let threads = self.b.ins().iconst(types::I64, i64::from(self.p.block_threads));
        let scratch = self.b.ins().iconst(types::I64, self.p.vars.len() as i64);
        vec![self.registers, stride, threads, scratch]
    }

    /// `dst` of each thread becomes `src` of the thread `lane ^ mask` in its warp: all
    /// sources are copied to the scratch slots first.
    fn shuffle(&mut self, dst: Var, src: Var, lane_mask: u32) {
        let scratch = self.p.vars.len();
        let zero = self.b.ins().iconst(types::I32, 0);
        let threads = self.b.ins().iconst(types::I32, i64::from(self.p.block_threads));
        let _ = self.counted_loop(zero, threads, |g, t| {
            let from = g.slot(t, src.0 as usize);
            let v = g.b.ins().load(types::I64, MemFlagsData::trusted(), from, 0);
            let at = g.slot(t, scratch);
            g.b.ins().store(MemFlagsData::trusted(), v, at, 0);
            Ok(())
        });
        let zero = self.b.ins().iconst(types::I32, 0);
        let threads = self.b.ins().iconst(types::I32, i64::from(self.p.block_threads));
        let _ = self.counted_loop(zero, threads, |g, t| {
            let partner = g.b.ins().bxor_imm_s(t, i64::from(lane_mask & 31));
            let from = g.slot(partner, scratch);
            let v = g.b.ins().load(types::I64, MemFlagsData::trusted(), from, 0);
            let at = g.slot(t, dst.0 as usize);
            g.b.ins().store(MemFlagsData::trusted(), v, at, 0);
            Ok(())
        });
    }

    // ---- Registers. ----

    /// The address of register `v` of thread `t`.
    fn slot(&mut self, t: Value, v: usize) -> Value {
        let stride = (self.p.vars.len() + helpers::SCRATCH) as i64 * 8;
        let t = self.b.ins().uextend(types::I64, t);
        let row = self.b.ins().imul_imm_s(t, stride);
        let at = self.b.ins().iadd_imm_s(row, v as i64 * 8);
        self.b.ins().iadd(self.registers, at)
    }

    fn thread(&self) -> Value {
        self.thread.expect("inside a thread loop")
    }

    fn load_register(&mut self, v: Var) -> Value {
        let t = self.thread();
        let at = self.slot(t, v.0 as usize);
        self.b.ins().load(cl(self.p.vars[v.0 as usize]), MemFlagsData::trusted(), at, 0)
    }

    fn store_register_of(&mut self, t: Value, v: Var, value: Value) {
        let at = self.slot(t, v.0 as usize);
        self.b.ins().store(MemFlagsData::trusted(), value, at, 0);
    }

    fn store_register(&mut self, v: Var, value: Value) {
        let t = self.thread();
        self.store_register_of(t, v, value);
    }

    // ---- Faults. ----

    /// Continues when `ok` (an i8 0/1) holds; otherwise records the fault and leaves.
    fn guard(&mut self, ok: Value, kind: FaultKind, param: i64, index: Value, message: i32) {
        let (fail, go) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(ok, go, &[], fail, &[]);
        self.b.switch_to_block(fail);
        let flags = MemFlagsData::trusted();
        let k = self.b.ins().iconst(types::I32, kind as i64);
        self.b.ins().store(flags, k, self.frame, off::FAULT);
        let t = self.thread.unwrap_or_else(|| self.b.ins().iconst(types::I32, 0));
        self.b.ins().store(flags, t, self.frame, off::FAULT_THREAD);
        let p = self.b.ins().iconst(types::I32, param);
        self.b.ins().store(flags, p, self.frame, off::FAULT_PARAM);
        let m = self.b.ins().iconst(types::I32, i64::from(message));
        self.b.ins().store(flags, m, self.frame, off::FAULT_MESSAGE);
        self.b.ins().store(flags, index, self.frame, off::FAULT_INDEX);
        self.b.ins().jump(self.exit, &[]);
        self.b.switch_to_block(go);
    }

    /// `0 <= start` and `start + size <= len` (i64), as i8.
    fn within(&mut self, start: Value, size: i64, len: Value) -> Value {
        let nonnegative = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, start, 0);
        let end = self.b.ins().iadd_imm_s(start, size);
        let fits = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, end, len);
        self.b.ins().band(nonnegative, fits)
    }

    /// The buffer of global parameter `param`: (base pointer, length in bytes).
    fn buffer(&mut self, param: usize) -> (Value, Value) {
        let at = param as i32 * 16;
        let base = self.b.ins().load(self.ptr, MemFlagsData::trusted(), self.buffers, at);
        let len = self.b.ins().load(types::I64, MemFlagsData::trusted(), self.buffers, at + 8);
        (base, len)
    }

    /// The address of `size` bytes at byte `offset` (i64) of global `param`, checked (and
    /// aligned to `align` when it is more than 1).
    fn global_address(&mut self, param: usize, offset: Value, size: i64, align: i64) -> Value {
        let (base, len) = self.buffer(param);
        let ok = self.within(offset, size, len);
        self.guard(ok, FaultKind::GlobalOutOfBounds, param as i64, offset, -1);
        if align > 1 {
            let rest = self.b.ins().band_imm_s(offset, align - 1);
            let aligned = self.b.ins().icmp_imm_s(IntCC::Equal, rest, 0);
            self.guard(aligned, FaultKind::Misaligned, param as i64, offset, -1);
        }
        self.b.ins().iadd(base, offset)
    }

    /// The address of `size` bytes at byte `offset` (i32) of the shared buffer, checked.
    fn shared_address(&mut self, offset: Value, size: i64, align: i64) -> Value {
        let offset = self.b.ins().sextend(types::I64, offset);
        let len = self.b.ins().iconst(types::I64, self.p.shared_bytes as i64);
        let ok = self.within(offset, size, len);
        self.guard(ok, FaultKind::SharedOutOfBounds, -1, offset, -1);
        if align > 1 {
            let rest = self.b.ins().band_imm_s(offset, align - 1);
            let aligned = self.b.ins().icmp_imm_s(IntCC::Equal, rest, 0);
            self.guard(aligned, FaultKind::Misaligned, -1, offset, -1);
        }
        self.b.ins().iadd(self.shared, offset)
    }

    fn param_ty(&self, param: usize) -> Result<Ty, CpuError> {
        match &self.p.params.get(param) {
            Some(Param::Global { dtype, .. }) => Ok(Ty::of(*dtype)),
            _ => Err(CpuError::Codegen(format!("parameter {param} is not a global tensor"))),
        }
    }

    // ---- Statements of one thread. ----

    fn stmt(&mut self, s: &Stmt) -> Result<(), CpuError> {
        match s {
            Stmt::Assign(v, e) | Stmt::AssignUniform(v, e) => {
                let value = self.expr(e)?;
                self.store_register(*v, value);
            }
            Stmt::Source { span, what } => {
                self.sources.push((*span, what.clone()));
                let n = self.b.ins().iconst(types::I32, self.sources.len() as i64 - 1);
                self.b.ins().store(MemFlagsData::trusted(), n, self.frame, off::SOURCE);
            }
            Stmt::Check { cond, message, .. } => {
                let ok = self.expr(cond)?;
                self.messages.push(message.clone());
                let zero = self.b.ins().iconst(types::I64, 0);
                self.guard(ok, FaultKind::Check, -1, zero, self.messages.len() as i32 - 1);
            }
            Stmt::If { cond, then_body, else_body } => {
                let c = self.expr(cond)?;
                let (then_block, else_block, after) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
                self.b.ins().brif(c, then_block, &[], else_block, &[]);
                self.b.switch_to_block(then_block);
                for s in then_body {
                    self.stmt(s)?;
                }
                self.b.ins().jump(after, &[]);
                self.b.switch_to_block(else_block);
                for s in else_body {
                    self.stmt(s)?;
                }
                self.b.ins().jump(after, &[]);
                self.b.switch_to_block(after);
            }
            Stmt::For { var, start, end, body } => {
                let (start, end, var) = (self.expr(start)?, self.expr(end)?, *var);
                self.counted_loop(start, end, |g, i| {
                    g.store_register(var, i);
                    for s in body {
                        g.stmt(s)?;
                    }
                    Ok(())
                })?;
            }
            Stmt::StoreGlobal { param, index, value } => {
                let ty = self.param_ty(*param)?;
                let index = self.expr(index)?;
                let offset = self.b.ins().imul_imm_s(index, ty.bytes() as i64);
                let at = self.global_address(*param, offset, ty.bytes() as i64, 1);
                let v = self.expr(value)?;
                // A bool is stored as 0 or 1.
                let v = if ty == Ty::I1 { self.b.ins().band_imm_s(v, 1) } else { v };
                self.b.ins().store(MemFlagsData::trusted(), v, at, 0);
            }
            Stmt::AtomicAddGlobal { param, index, value } => {
                let ty = self.param_ty(*param)?;
                let index = self.expr(index)?;
                let offset = self.b.ins().imul_imm_s(index, ty.bytes() as i64);
                let at = self.global_address(*param, offset, ty.bytes() as i64, 1);
                let v = self.expr(value)?;
                let bits = self.to_bits(v, ty);
                let code = self.b.ins().iconst(types::I64, helpers::ty_code(ty));
                self.b.ins().call(self.helpers.atomic_add, &[at, code, bits]);
            }
            Stmt::StoreGlobalBits { param, bit_index, bits, value } => {
                let bit = self.expr(bit_index)?;
                let (first, size) = self.bit_bytes(bit, *bits);
                let (base, _) = self.buffer(*param);
                self.global_address(*param, first, 1, 1);
                let last = self.b.ins().iadd(first, size);
                let last = self.b.ins().iadd_imm_s(last, -1);
                self.global_address(*param, last, 1, 1);
                let v = self.expr(value)?;
                let v = self.b.ins().sextend(types::I64, v);
                let n = self.b.ins().iconst(types::I64, i64::from(*bits));
                self.b.ins().call(self.helpers.write_bits, &[base, bit, n, v]);
            }
            Stmt::StoreShared { offset, value } => {
                let v = self.expr(value)?;
                let ty = self.ty_of_value(value);
                let offset = self.expr(offset)?;
                let at = self.shared_address(offset, ty.bytes() as i64, 1);
                self.b.ins().store(MemFlagsData::trusted(), v, at, 0);
            }
            Stmt::StoreSharedBits { bit_offset, bits, value } => {
                let bit = self.expr(bit_offset)?;
                let bit = self.b.ins().sextend(types::I64, bit);
                let (first, size) = self.bit_bytes(bit, *bits);
                let first32 = self.b.ins().ireduce(types::I32, first);
                let size = self.b.ins().ireduce(types::I32, size);
                let end = self.b.ins().iadd(first32, size);
                let last = self.b.ins().iadd_imm_s(end, -1);
                self.shared_address(first32, 1, 1);
                self.shared_address(last, 1, 1);
                let v = self.expr(value)?;
                let v = self.b.ins().sextend(types::I64, v);
                let n = self.b.ins().iconst(types::I64, i64::from(*bits));
                self.b.ins().call(self.helpers.write_bits, &[self.shared, bit, n, v]);
            }
            Stmt::LoadGlobalVector { dst, param, byte_offset, ty } => {
                let offset = self.expr(byte_offset)?;
                let size = (dst.len() * ty.bytes()) as i64;
                let at = self.global_address(*param, offset, size, size);
                for (k, d) in dst.iter().enumerate() {
                    let v = self.b.ins().load(cl(*ty), MemFlagsData::trusted(), at, (k * ty.bytes()) as i32);
                    self.store_register(*d, v);
                }
            }
            Stmt::StoreGlobalVector { values, param, byte_offset, ty } => {
                let offset = self.expr(byte_offset)?;
                let size = (values.len() * ty.bytes()) as i64;
                let at = self.global_address(*param, offset, size, size);
                for (k, e) in values.iter().enumerate() {
                    let v = self.expr(e)?;
                    self.b.ins().store(MemFlagsData::trusted(), v, at, (k * ty.bytes()) as i32);
                }
            }
            Stmt::LoadSharedVector { dst, offset, ty } => {
                let offset = self.expr(offset)?;
                let size = (dst.len() * ty.bytes()) as i64;
                let at = self.shared_address(offset, size, size);
                for (k, d) in dst.iter().enumerate() {
                    let v = self.b.ins().load(cl(*ty), MemFlagsData::trusted(), at, (k * ty.bytes()) as i32);
                    self.store_register(*d, v);
                }
            }
            Stmt::CopyAsync { offset, param, byte_index, bytes, src_bytes } => {
                // A copy that lands at once (the program waits for it before reading, and
                // nothing touches its bytes meanwhile): `src_bytes` bytes, then zeros.
                let size = i64::from(*bytes);
                let dst = self.expr(offset)?;
                let dst = self.shared_address(dst, size, size);
                let src = self.expr(byte_index)?;
                let count = self.expr(src_bytes)?;
                let count = self.b.ins().sextend(types::I64, count);
                let any = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, count, 0);
                let (read, after) = (self.b.create_block(), self.b.create_block());
                self.b.ins().brif(any, read, &[], after, &[]);
                self.b.switch_to_block(read);
                // Only the `src_bytes` bytes read must lie inside the tensor; the address is
                // aligned to the whole copy.
                let (_, len) = self.buffer(*param);
                let nonnegative = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, src, 0);
                let end = self.b.ins().iadd(src, count);
                let fits = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, end, len);
                let inside = self.b.ins().band(nonnegative, fits);
                self.guard(inside, FaultKind::GlobalOutOfBounds, *param as i64, src, -1);
                let rest = self.b.ins().band_imm_s(src, size - 1);
                let aligned = self.b.ins().icmp_imm_s(IntCC::Equal, rest, 0);
                self.guard(aligned, FaultKind::Misaligned, *param as i64, src, -1);
                self.b.ins().jump(after, &[]);
                self.b.switch_to_block(after);
                let (base, _) = self.buffer(*param);
                let from = self.b.ins().iadd(base, src);
                for k in 0..size {
                    let inside = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, count, k);
                    let (load, merge) = (self.b.create_block(), self.b.create_block());
                    self.b.append_block_param(merge, types::I8);
                    let zero = self.b.ins().iconst(types::I8, 0);
                    self.b.ins().brif(inside, load, &[], merge, &[zero.into()]);
                    self.b.switch_to_block(load);
                    let byte = self.b.ins().load(types::I8, MemFlagsData::trusted(), from, k as i32);
                    self.b.ins().jump(merge, &[byte.into()]);
                    self.b.switch_to_block(merge);
                    let byte = self.b.block_params(merge)[0];
                    self.b.ins().store(MemFlagsData::trusted(), byte, dst, k as i32);
                }
            }
            Stmt::CommitGroup | Stmt::WaitGroup(_) => {}
            other => return Err(CpuError::Unsupported(format!("{other:?}"))),
        }
        Ok(())
    }

    /// The first byte (i64) and the number of bytes that bits `[bit, bit + bits)` touch.
    fn bit_bytes(&mut self, bit: Value, bits: u32) -> (Value, Value) {
        let first = self.b.ins().sshr_imm_s(bit, 3);
        let end = self.b.ins().iadd_imm_s(bit, i64::from(bits) + 7);
        let end = self.b.ins().sshr_imm_s(end, 3);
        let size = self.b.ins().isub(end, first);
        (first, size)
    }

    fn ty_of_value(&self, e: &Expr) -> Ty {
        self.p.ty(e)
    }

    // ---- Expressions. ----

    /// A register value as the i64 of its bits (helpers take and give these).
    fn to_bits(&mut self, v: Value, ty: Ty) -> Value {
        match ty {
            Ty::F32 => {
                let i = self.b.ins().bitcast(types::I32, MemFlagsData::new(), v);
                self.b.ins().uextend(types::I64, i)
            }
            Ty::F64 => self.b.ins().bitcast(types::I64, MemFlagsData::new(), v),
            Ty::I64 => v,
            _ => self.b.ins().sextend(types::I64, v),
        }
    }

    fn from_bits(&mut self, v: Value, ty: Ty) -> Value {
        match ty {
            Ty::F32 => {
                let i = self.b.ins().ireduce(types::I32, v);
                self.b.ins().bitcast(types::F32, MemFlagsData::new(), i)
            }
            Ty::F64 => self.b.ins().bitcast(types::F64, MemFlagsData::new(), v),
            Ty::I64 => v,
            t => self.b.ins().ireduce(cl(t), v),
        }
    }

    fn call(&mut self, f: FuncRef, args: &[Value]) -> Value {
        let inst = self.b.ins().call(f, args);
        self.b.inst_results(inst)[0]
    }

    fn expr(&mut self, e: &Expr) -> Result<Value, CpuError> {
        let ty = self.p.ty(e);
        Ok(match e {
            Expr::Int(t, v) => match t {
                Ty::F32 => self.b.ins().f32const(*v as f32),
                Ty::F64 => self.b.ins().f64const(*v as f64),
                t => self.b.ins().iconst(cl(*t), if *t == Ty::I1 { *v & 1 } else { *v }),
            },
            Expr::Float(t, v) => match t {
                Ty::F32 => self.b.ins().f32const(*v as f32),
                Ty::F64 => self.b.ins().f64const(*v),
                Ty::F16 => self.b.ins().iconst(types::I16, i64::from(tl_compiler::dtype::DType::F16.encode(*v) as u16 as i16)),
                Ty::BF16 => self.b.ins().iconst(types::I16, i64::from(tl_compiler::dtype::DType::BF16.encode(*v) as u16 as i16)),
                t => self.b.ins().iconst(cl(*t), *v as i64),
            },
            Expr::Var(v) => self.load_register(*v),
            Expr::Param(i) => {
                let bits = self.b.ins().load(types::I64, MemFlagsData::trusted(), self.scalars, *i as i32 * 8);
                self.from_bits(bits, ty)
            }
            Expr::ThreadIdx => self.thread(),
            Expr::BlockIdx(a) => self.b.ins().load(types::I32, MemFlagsData::trusted(), self.frame, off::BLOCK + 4 * i32::from((*a).min(2))),
            Expr::Unary(op, a) => {
                let x = self.expr(a)?;
                self.unary(*op, ty, x)
            }
            Expr::Binary(op, a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                self.binary(*op, self.p.ty(a), x, y)
            }
            Expr::Cmp(op, a, b) => {
                let operand = self.p.ty(a);
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                self.compare(*op, operand, x, y)
            }
            Expr::Select(c, a, b) => {
                let (c, x, y) = (self.expr(c)?, self.expr(a)?, self.expr(b)?);
                self.b.ins().select(c, x, y)
            }
            Expr::Fma(a, b, c) => {
                let (x, y, z) = (self.expr(a)?, self.expr(b)?, self.expr(c)?);
                if native_float(ty) {
                    self.b.ins().fma(x, y, z)
                } else {
                    let (x, y, z) = (self.to_bits(x, ty), self.to_bits(y, ty), self.to_bits(z, ty));
                    let code = self.b.ins().iconst(types::I64, helpers::ty_code(ty));
                    let r = self.call(self.helpers.fma, &[code, x, y, z]);
                    self.from_bits(r, ty)
                }
            }
            Expr::Cast { to, value, from_unsigned, to_unsigned } => {
                let from = self.p.ty(value);
                let x = self.expr(value)?;
                // The same register reads the same value (a change of signedness saturates).
                if from == *to && (from.is_float() || from_unsigned == to_unsigned) {
                    x
                } else if let Some(v) = self.native_cast(x, from, *to, *from_unsigned, *to_unsigned) {
                    v
                } else {
                    let bits = self.to_bits(x, from);
                    let (f, t) = (self.b.ins().iconst(types::I64, helpers::ty_code(from)), self.b.ins().iconst(types::I64, helpers::ty_code(*to)));
                    let flags = self.b.ins().iconst(types::I64, i64::from(*from_unsigned) | (i64::from(*to_unsigned) << 1));
                    let r = self.call(self.helpers.cast, &[bits, f, t, flags]);
                    self.from_bits(r, *to)
                }
            }
            Expr::Bitcast { to, value } => {
                let from = self.p.ty(value);
                let x = self.expr(value)?;
                if cl(from) == cl(*to) {
                    x
                } else {
                    self.b.ins().bitcast(cl(*to), MemFlagsData::new(), x)
                }
            }
            Expr::LoadGlobal { param, index, ty } => {
                let memory = self.param_ty(*param)?;
                let index = self.expr(index)?;
                let offset = self.b.ins().imul_imm_s(index, memory.bytes() as i64);
                let at = self.global_address(*param, offset, memory.bytes() as i64, 1);
                let v = self.b.ins().load(cl(*ty), MemFlagsData::trusted(), at, 0);
                if *ty == Ty::I1 {
                    // Any non-zero byte reads as true.
                    self.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0)
                } else {
                    v
                }
            }
            Expr::LoadGlobalBits { param, bit_index, bits } => {
                let bit = self.expr(bit_index)?;
                let (first, size) = self.bit_bytes(bit, *bits);
                let (base, _) = self.buffer(*param);
                self.global_address(*param, first, 1, 1);
                let end = self.b.ins().iadd(first, size);
                let last = self.b.ins().iadd_imm_s(end, -1);
                self.global_address(*param, last, 1, 1);
                let n = self.b.ins().iconst(types::I64, i64::from(*bits));
                let r = self.call(self.helpers.read_bits, &[base, bit, n]);
                self.b.ins().ireduce(types::I32, r)
            }
            Expr::LoadShared { offset, ty } => {
                let offset = self.expr(offset)?;
                let at = self.shared_address(offset, ty.bytes() as i64, 1);
                let v = self.b.ins().load(cl(*ty), MemFlagsData::trusted(), at, 0);
                if *ty == Ty::I1 { self.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0) } else { v }
            }
            Expr::LoadSharedBits { bit_offset, bits } => {
                let bit = self.expr(bit_offset)?;
                let bit = self.b.ins().sextend(types::I64, bit);
                let (first, size) = self.bit_bytes(bit, *bits);
                let first32 = self.b.ins().ireduce(types::I32, first);
                let size = self.b.ins().ireduce(types::I32, size);
                let end = self.b.ins().iadd(first32, size);
                let last = self.b.ins().iadd_imm_s(end, -1);
                self.shared_address(first32, 1, 1);
                self.shared_address(last, 1, 1);
                let n = self.b.ins().iconst(types::I64, i64::from(*bits));
                let r = self.call(self.helpers.read_bits, &[self.shared, bit, n]);
                self.b.ins().ireduce(types::I32, r)
            }
            Expr::Prmt { a, b, selector } => {
                let (x, y, s) = (self.expr(a)?, self.expr(b)?, self.expr(selector)?);
                let (x, y, s) = (self.to_bits(x, Ty::I32), self.to_bits(y, Ty::I32), self.to_bits(s, Ty::I32));
                let r = self.call(self.helpers.prmt, &[x, y, s]);
                self.b.ins().ireduce(types::I32, r)
            }
            Expr::Lop3 { a, b, c, lut } => {
                let (x, y, z) = (self.expr(a)?, self.expr(b)?, self.expr(c)?);
                let (x, y, z) = (self.to_bits(x, Ty::I32), self.to_bits(y, Ty::I32), self.to_bits(z, Ty::I32));
                let l = self.b.ins().iconst(types::I64, i64::from(*lut));
                let r = self.call(self.helpers.lop3, &[x, y, z, l]);
                self.b.ins().ireduce(types::I32, r)
            }
        })
    }

    /// The conversions `Expr::Cast` defines, inline where the machine has them with the same
    /// rounding (`None`: the helper does it): integers widen by extension and narrow by
    /// saturation; integer → float and f64 → f32 round to nearest even once; float → integer
    /// rounds to nearest even and saturates, NaN → 0; anything → i1 is `!= 0`.
    fn native_cast(&mut self, x: Value, from: Ty, to: Ty, from_unsigned: bool, to_unsigned: bool) -> Option<Value> {
        // 16-bit floats: through f32 (exact widening; one rounding narrowing from f32 or f64).
        let half = |t: Ty| matches!(t, Ty::F16 | Ty::BF16);
        if half(from) && (native_float(to) || native_int(to) || half(to)) {
            let wide = self.widen16(x, from);
            return if to == Ty::F32 {
                Some(wide)
            } else if half(to) {
                Some(self.narrow16(wide, Ty::F32, to))
            } else if to == Ty::F64 {
                Some(self.b.ins().fpromote(types::F64, wide))
            } else {
                self.native_cast(wide, Ty::F32, to, false, to_unsigned)
            };
        }
        if native_float(from) && half(to) {
            return Some(self.narrow16(x, from, to));
        }
        let ins = self.b.ins();
        if to == Ty::I1 {
            return if native_int(from) {
                Some(ins.icmp_imm_s(IntCC::NotEqual, x, 0))
            } else if native_float(from) {
                let zero = if from == Ty::F32 { ins.f32const(0.0) } else { self.b.ins().f64const(0.0) };
                Some(self.b.ins().fcmp(FloatCC::NotEqual, x, zero))
            } else {
                None
            };
        }
        match (native_int(from) || from == Ty::I1, native_int(to), native_float(from), native_float(to)) {
            // Integer to integer.
            (true, true, _, _) => {
                // Exact in i64 (an i1 is 0 or 1; an unsigned source zero-extended).
                let wide = match from {
                    Ty::I64 => x,
                    _ if from_unsigned || from == Ty::I1 => self.b.ins().uextend(types::I64, x),
                    _ => self.b.ins().sextend(types::I64, x),
                };
                if from == Ty::I64 && to == Ty::I64 {
                    // Between the signed and unsigned readings: a negative i64 is 0 as a u64,
                    // a u64 from 2^63 up is i64::MAX.
                    return Some(match (from_unsigned, to_unsigned) {
                        (false, true) => {
                            let zero = self.b.ins().iconst(types::I64, 0);
                            self.b.ins().smax(wide, zero)
                        }
                        (true, false) => {
                            let negative = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, wide, 0);
                            let max = self.b.ins().iconst(types::I64, i64::MAX);
                            self.b.ins().select(negative, max, wide)
                        }
                        _ => wide,
                    });
                }
                let bits = to.bytes() as u32 * 8;
                let (lo, hi) = if to_unsigned { (0i64, if bits == 64 { i64::MAX } else { (1i64 << bits) - 1 }) } else { (if bits == 64 { i64::MIN } else { -(1i64 << (bits - 1)) }, if bits == 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 }) };
                // An unsigned 64-bit source from 2^63 up is beyond every target: the maximum.
                let huge = if from == Ty::I64 && from_unsigned { Some(self.b.ins().icmp_imm_s(IntCC::SignedLessThan, wide, 0)) } else { None };
                let (lo_v, hi_v) = (self.b.ins().iconst(types::I64, lo), self.b.ins().iconst(types::I64, hi));
                let clamped = self.b.ins().smax(wide, lo_v);
                let clamped = self.b.ins().smin(clamped, hi_v);
                let clamped = match huge {
                    Some(h) => self.b.ins().select(h, hi_v, clamped),
                    None => clamped,
                };
                Some(if to == Ty::I64 { clamped } else { self.b.ins().ireduce(cl(to), clamped) })
            }
            // Integer to f32/f64: one rounding from the exact value.
            (true, false, _, true) => {
                let wide = match from {
                    Ty::I64 | Ty::I32 => x,
                    _ if from_unsigned || from == Ty::I1 => self.b.ins().uextend(types::I32, x),
                    _ => self.b.ins().sextend(types::I32, x),
                };
                Some(if from_unsigned && from != Ty::I1 { self.b.ins().fcvt_from_uint(cl(to), wide) } else { self.b.ins().fcvt_from_sint(cl(to), wide) })
            }
            // Between f32 and f64.
            (_, _, true, true) => Some(if to == Ty::F64 { self.b.ins().fpromote(types::F64, x) } else { self.b.ins().fdemote(types::F32, x) }),
            // Float to integer: nearest even, then saturation (NaN → 0).
            (_, true, true, _) => {
                let rounded = self.b.ins().nearest(x);
                let wide = if to_unsigned { self.b.ins().fcvt_to_uint_sat(types::I64, rounded) } else { self.b.ins().fcvt_to_sint_sat(types::I64, rounded) };
                if to == Ty::I64 {
                    return Some(wide);
                }
                let bits = to.bytes() as u32 * 8;
                let (lo, hi) = if to_unsigned { (0i64, (1i64 << bits) - 1) } else { (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1) };
                let (lo_v, hi_v) = (self.b.ins().iconst(types::I64, lo), self.b.ins().iconst(types::I64, hi));
                let clamped = if to_unsigned {
                    self.b.ins().umin(wide, hi_v)
                } else {
                    let above = self.b.ins().smax(wide, lo_v);
                    self.b.ins().smin(above, hi_v)
                };
                Some(self.b.ins().ireduce(cl(to), clamped))
            }
            _ => None,
        }
    }

    /// Integer division and remainder (signed or not) and shifts on an integer register,
    /// computed in i64 as the simulator does (`None`: not one of them).
    fn native_integer_binary(&mut self, op: BinaryOp, ty: Ty, x: Value, y: Value) -> Option<Value> {
        use BinaryOp as B;
        if !native_int(ty) || !matches!(op, B::Div | B::Rem | B::UDiv | B::URem | B::Shl | B::LShr | B::AShr) {
            return None;
        }
        let signed = |g: &mut Self, v: Value| if ty == Ty::I64 { v } else { g.b.ins().sextend(types::I64, v) };
        let unsigned = |g: &mut Self, v: Value| if ty == Ty::I64 { v } else { g.b.ins().uextend(types::I64, v) };
        let result = match op {
            B::Shl | B::LShr | B::AShr => {
                let amount = unsigned(self, y);
                let amount = self.b.ins().band_imm_s(amount, 63);
                match op {
                    B::Shl => {
                        let v = signed(self, x);
                        self.b.ins().ishl(v, amount)
                    }
                    B::LShr => {
                        let v = unsigned(self, x);
                        self.b.ins().ushr(v, amount)
                    }
                    _ => {
                        let v = signed(self, x);
                        self.b.ins().sshr(v, amount)
                    }
                }
            }
            _ => {
                let is_unsigned = matches!(op, B::UDiv | B::URem);
                let (a, d) = if is_unsigned { (unsigned(self, x), unsigned(self, y)) } else { (signed(self, x), signed(self, y)) };
                let nonzero = self.b.ins().icmp_imm_s(IntCC::NotEqual, d, 0);
                let zero = self.b.ins().iconst(types::I64, 0);
                self.guard(nonzero, FaultKind::DivisionByZero, -1, zero, -1);
                match op {
                    B::UDiv => self.b.ins().udiv(a, d),
                    B::URem => self.b.ins().urem(a, d),
                    _ => {
                        // x / -1 wraps (i64::MIN / -1 is i64::MIN): no division there.
                        let minus_one = self.b.ins().icmp_imm_s(IntCC::Equal, d, -1);
                        let one = self.b.ins().iconst(types::I64, 1);
                        let safe = self.b.ins().select(minus_one, one, d);
                        if op == B::Div {
                            let q = self.b.ins().sdiv(a, safe);
                            let negated = self.b.ins().ineg(a);
                            self.b.ins().select(minus_one, negated, q)
                        } else {
                            let r = self.b.ins().srem(a, safe);
                            self.b.ins().select(minus_one, zero, r)
                        }
                    }
                }
            }
        };
        Some(if ty == Ty::I64 { result } else { self.b.ins().ireduce(cl(ty), result) })
    }

    /// A 16-bit float register as the f32 of its value (exact).
    fn widen16(&mut self, x: Value, ty: Ty) -> Value {
        let bits = self.b.ins().sextend(types::I64, x);
        let f = self.helpers.widen[usize::from(ty == Ty::BF16)];
        self.call(f, &[bits])
    }

    /// An f32 (or f64) rounded once to the 16-bit float `ty`.
    fn narrow16(&mut self, x: Value, from: Ty, ty: Ty) -> Value {
        let f = if from == Ty::F64 { self.helpers.narrow_f64[usize::from(ty == Ty::BF16)] } else { self.helpers.narrow[usize::from(ty == Ty::BF16)] };
        let r = self.call(f, &[x]);
        self.b.ins().ireduce(types::I16, r)
    }

    fn unary(&mut self, op: UnaryOp, ty: Ty, x: Value) -> Value {
        match (op, ty) {
            (UnaryOp::Neg, Ty::F16 | Ty::BF16) => self.b.ins().bxor_imm_s(x, -0x8000),
            (UnaryOp::Abs, Ty::F16 | Ty::BF16) => self.b.ins().band_imm_s(x, 0x7fff),
            (UnaryOp::Neg, t) if native_int(t) => self.b.ins().ineg(x),
            (UnaryOp::Abs, t) if native_int(t) => self.b.ins().iabs(x),
            (UnaryOp::Not, t) if native_int(t) => self.b.ins().bnot(x),
            (UnaryOp::Not, Ty::I1) => self.b.ins().bxor_imm_s(x, 1),
            (UnaryOp::Neg, t) if native_float(t) => self.b.ins().fneg(x),
            (UnaryOp::Abs, t) if native_float(t) => self.b.ins().fabs(x),
            (UnaryOp::Sqrt, t) if native_float(t) => self.b.ins().sqrt(x),
            (UnaryOp::Exp | UnaryOp::Exp2 | UnaryOp::Log | UnaryOp::Log2 | UnaryOp::Rsqrt | UnaryOp::Tanh | UnaryOp::Sin | UnaryOp::Cos, t) if native_float(t) => {
                let code = self.b.ins().iconst(types::I64, helpers::unary_code(op));
                let f = self.helpers.math[usize::from(t == Ty::F64)];
                self.call(f, &[code, x])
            }
            _ => {
                let bits = self.to_bits(x, ty);
                let (o, t) = (self.b.ins().iconst(types::I64, helpers::unary_code(op)), self.b.ins().iconst(types::I64, helpers::ty_code(ty)));
                let r = self.call(self.helpers.unary, &[o, t, bits]);
                self.from_bits(r, ty)
            }
        }
    }

    fn binary(&mut self, op: BinaryOp, ty: Ty, x: Value, y: Value) -> Value {
        use BinaryOp as B;
        let ins = self.b.ins();
        if native_int(ty) || ty == Ty::I1 {
            match op {
                B::Add if ty != Ty::I1 => return ins.iadd(x, y),
                B::Sub if ty != Ty::I1 => return ins.isub(x, y),
                B::Mul if ty != Ty::I1 => return ins.imul(x, y),
                B::And => return ins.band(x, y),
                B::Or => return ins.bor(x, y),
                B::Xor => return ins.bxor(x, y),
                B::Min if ty != Ty::I1 => return ins.smin(x, y),
                B::Max if ty != Ty::I1 => return ins.smax(x, y),
                B::UMin if ty != Ty::I1 => return ins.umin(x, y),
                B::UMax if ty != Ty::I1 => return ins.umax(x, y),
                _ => {}
            }
        } else if native_float(ty) {
            match op {
                B::Add => return ins.fadd(x, y),
                B::Sub => return ins.fsub(x, y),
                B::Mul => return ins.fmul(x, y),
                B::Div => return ins.fdiv(x, y),
                B::Min | B::Max => return self.min_max_number(op == B::Max, ty, x, y),
                _ => {}
            }
        }
        if let Some(v) = self.native_integer_binary(op, ty, x, y) {
            return v;
        }
        // 16-bit floats: in f32, rounded once more (the same result, see `helpers`).
        if matches!(ty, Ty::F16 | Ty::BF16) && matches!(op, B::Add | B::Sub | B::Mul | B::Div | B::Min | B::Max) {
            let (a, b) = (self.widen16(x, ty), self.widen16(y, ty));
            let r = self.binary(op, Ty::F32, a, b);
            return self.narrow16(r, Ty::F32, ty);
        }
        let (xb, yb) = (self.to_bits(x, ty), self.to_bits(y, ty));
        let (o, t) = (self.b.ins().iconst(types::I64, helpers::binary_code(op)), self.b.ins().iconst(types::I64, helpers::ty_code(ty)));
        let failed = self.b.ins().iadd_imm_s(self.frame, i64::from(off::FAILED));
        let r = self.call(self.helpers.binary, &[o, t, xb, yb, failed]);
        if matches!(op, B::Div | B::Rem | B::UDiv | B::URem) && !ty.is_float() {
            let flag = self.b.ins().load(types::I64, MemFlagsData::trusted(), self.frame, off::FAILED);
            let ok = self.b.ins().icmp_imm_s(IntCC::Equal, flag, 0);
            let zero = self.b.ins().iconst(types::I64, 0);
            self.guard(ok, FaultKind::DivisionByZero, -1, zero, -1);
        }
        self.from_bits(r, ty)
    }

    /// IEEE 754-2019 `maximumNumber`/`minimumNumber` (the simulator's): a NaN operand gives
    /// the other one, and +0 is above −0.
    fn min_max_number(&mut self, max: bool, ty: Ty, x: Value, y: Value) -> Value {
        let better = if max { FloatCC::GreaterThan } else { FloatCC::LessThan };
        let y_better = self.b.ins().fcmp(better, y, x);
        let pick = self.b.ins().select(y_better, y, x);
        let x_nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
        let pick = self.b.ins().select(x_nan, y, pick);
        // Equal zeros of two signs: max takes y when x is −0, min when y is −0.
        let equal = self.b.ins().fcmp(FloatCC::Equal, x, y);
        let negative_of = if max { x } else { y };
        let int = if ty == Ty::F32 { types::I32 } else { types::I64 };
        let bits = self.b.ins().bitcast(int, MemFlagsData::new(), negative_of);
        let negative = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, bits, 0);
        let take_y = self.b.ins().band(equal, negative);
        self.b.ins().select(take_y, y, pick)
    }

    fn compare(&mut self, op: CmpOp, ty: Ty, x: Value, y: Value) -> Value {
        if native_int(ty) {
            let cc = match op {
                CmpOp::Lt => IntCC::SignedLessThan,
                CmpOp::Le => IntCC::SignedLessThanOrEqual,
                CmpOp::Gt => IntCC::SignedGreaterThan,
                CmpOp::Ge => IntCC::SignedGreaterThanOrEqual,
                CmpOp::Eq => IntCC::Equal,
                CmpOp::Ne => IntCC::NotEqual,
                CmpOp::ULt => IntCC::UnsignedLessThan,
                CmpOp::ULe => IntCC::UnsignedLessThanOrEqual,
                CmpOp::UGt => IntCC::UnsignedGreaterThan,
                CmpOp::UGe => IntCC::UnsignedGreaterThanOrEqual,
            };
            return self.b.ins().icmp(cc, x, y);
        }
        if matches!(ty, Ty::F16 | Ty::BF16) && !matches!(op, CmpOp::ULt | CmpOp::ULe | CmpOp::UGt | CmpOp::UGe) {
            let (a, b) = (self.widen16(x, ty), self.widen16(y, ty));
            return self.compare(op, Ty::F32, a, b);
        }
        if native_float(ty) && !matches!(op, CmpOp::ULt | CmpOp::ULe | CmpOp::UGt | CmpOp::UGe) {
            let cc = match op {
                CmpOp::Lt => FloatCC::LessThan,
                CmpOp::Le => FloatCC::LessThanOrEqual,
                CmpOp::Gt => FloatCC::GreaterThan,
                CmpOp::Ge => FloatCC::GreaterThanOrEqual,
                CmpOp::Eq => FloatCC::Equal,
                _ => FloatCC::NotEqual,
            };
            return self.b.ins().fcmp(cc, x, y);
        }
        let (xb, yb) = (self.to_bits(x, ty), self.to_bits(y, ty));
        let (o, t) = (self.b.ins().iconst(types::I64, helpers::cmp_code(op)), self.b.ins().iconst(types::I64, helpers::ty_code(ty)));
        let r = self.call(self.helpers.compare, &[o, t, xb, yb]);
        self.b.ins().ireduce(types::I8, r)
    }
}
