//! LIR → Cranelift IR for one block (see the crate's header for the execution model).
//!
//! Expects a verified LIR program without `print` (refused first, by [`unsupported`]). Guarantees: the generated function `fn(*mut Frame) -> i32` returns 0
//! after running every thread of the block, or 1 with the fault recorded in the frame; every
//! memory access it makes is inside a buffer (checked before the access); registers of type
//! `ty` are stored in their slots as `ty.bytes()` little-endian bytes.

use crate::frame_offsets as off;
use crate::helpers;
use crate::{CpuError, FaultKind, PrintStatement};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, AtomicRmwOp, StackSlotData, StackSlotKind, Block, FuncRef, InstBuilder, MemFlagsData, Signature, Type, Value};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};
use tl_compiler::diagnostics::Span;
use tl_compiler::lir::{Expr, Param, Program, Stmt, Ty, Var};

mod butterfly;
mod exponential;
mod expressions;
mod phases;
mod residency;
mod sixteen_bit;
mod tabulate;

pub(crate) struct Generated {
    pub id: FuncId,
    pub sources: Vec<(Span, String)>,
    pub messages: Vec<String>,
    pub prints: Vec<PrintStatement>,
    pub clif: String,
    /// Whether the machine code came from the caller's [`crate::CodeCache`].
    pub from_cache: bool,
}

/// A read-only table the code reads, as a data object of `module` named `name`, aligned to 16
/// bytes, and its address in `function`. Tables are data of the module, never addresses of
/// this process written into the code, so that the code is the same in every process and its
/// compiled form can be kept ([`crate::CodeCache`]).
pub(crate) fn read_only_table(module: &mut JITModule, function: &mut cranelift_codegen::ir::Function, name: &str, bytes: Vec<u8>) -> Result<cranelift_codegen::ir::GlobalValue, CpuError> {
    let codegen_error = |e: cranelift_module::ModuleError| CpuError::Codegen(e.to_string());
    let id = module.declare_data(name, Linkage::Local, false, false).map_err(codegen_error)?;
    let mut description = cranelift_module::DataDescription::new();
    description.define(bytes.into_boxed_slice());
    description.set_align(16);
    module.define_data(id, &description).map_err(codegen_error)?;
    // As `Module::declare_data_in_func` does, but not colocated: the code reaches the table by
    // an absolute address (a 64-bit relocation), since the JIT's data need not lie within the
    // ±2 GiB of a PC-relative one from the code.
    let user_name = function.declare_imported_user_function(cranelift_codegen::ir::UserExternalName { namespace: 1, index: id.as_u32() });
    Ok(function.create_global_value(cranelift_codegen::ir::GlobalValueData::Symbol {
        name: cranelift_codegen::ir::ExternalName::user(user_name),
        offset: cranelift_codegen::ir::immediates::Imm64::new(0),
        colocated: false,
        tls: false,
    }))
}

/// Whether `s`, or a statement under its control flow, is one `leaf` accepts.
fn holds(s: &Stmt, leaf: fn(&Stmt) -> bool) -> bool {
    match s {
        Stmt::If { then_body, else_body, .. } => then_body.iter().chain(else_body).any(|s| holds(s, leaf)),
        Stmt::For { body, .. } => body.iter().any(|s| holds(s, leaf)),
        _ => leaf(s),
    }
}

/// An instruction every lane of a warp takes part in.
fn warp_instruction(s: &Stmt) -> bool {
    matches!(s, Stmt::ShuffleXor { .. } | Stmt::Mma { .. } | Stmt::LdMatrix { .. })
}

/// Statements that involve other threads: they split the block's thread loops.
fn collective(s: &Stmt) -> bool {
    holds(s, |s| matches!(s, Stmt::Barrier) || warp_instruction(s))
}

/// `v = op(x); w = op(y)` with `op` f32 `exp` or `exp2` and `y` not reading `v`.
fn exponential_pair<'s>(p: &Program, first: &'s Stmt, second: &'s Stmt) -> Option<((Var, &'s Expr), tl_compiler::lir::UnaryOp, (Var, &'s Expr))> {
    use tl_compiler::lir::UnaryOp;
    let (Stmt::Assign(v, Expr::Unary(op, x)), Stmt::Assign(w, Expr::Unary(op2, y))) = (first, second) else { return None };
    let exponential = matches!(op, UnaryOp::Exp | UnaryOp::Exp2) && op == op2 && p.ty(x) == Ty::F32 && p.ty(y) == Ty::F32;
    let mut reads_v = false;
    residency::expr_registers(y, &mut |r| reads_v |= r == *v);
    (exponential && !reads_v).then_some(((*v, &**x), *op, (*w, &**y)))
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

/// Flags of a load of what stays the same while the function runs (scalar arguments, the
/// block index, buffer pointers and lengths): Cranelift may merge such loads and move them
/// out of the thread loops.
fn launch_constant() -> MemFlagsData {
    MemFlagsData::trusted().with_readonly().with_can_move()
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
    atomic_add: FuncRef,
    /// f64 → f16, bf16 (f32 ↔ 16 bits is inline).
    narrow_f64: [FuncRef; 2],
    /// The approximation math in f64, by index in `UnaryOp::ALL` (`helpers::MATH`).
    math: Vec<FuncRef>,
    mma: FuncRef,
    ldmatrix: FuncRef,
    print: FuncRef,
}

/// A packed sub-byte element in memory: the addresses of the first and last bytes holding it
/// (the same when it fits in one) and its lowest bit's position in the first (i32, 0..8).
struct PackedPlace {
    first: Value,
    last: Value,
    shift: Value,
}

struct Gen<'a, 'f> {
    p: &'a Program,
    /// Where the tables the code reads are defined (`table`).
    module: &'a mut JITModule,
    /// The tables defined so far, by name.
    tables: std::collections::HashMap<String, cranelift_codegen::ir::GlobalValue>,
    /// The first error of something other than the program (defining a table): generation
    /// goes on and reports it at the end.
    failure: Option<CpuError>,
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
    /// One Cranelift variable per register, used inside runs (`resident`).
    variables: Vec<Variable>,
    /// The registers kept in the register file between runs (`residency`).
    in_memory: Vec<bool>,
    /// Inside a run: registers are the variables, not the register file.
    resident: bool,
    /// The registers whose every value is the same in all threads (`lir::verify`).
    uniform: Vec<bool>,
    sources: Vec<(Span, String)>,
    messages: Vec<String>,
    prints: Vec<PrintStatement>,
    /// The f32 form of each 16-bit value `narrow16` made (`sixteen_bit`).
    widened16: std::collections::HashMap<Value, Value>,
    /// Chains of 16-bit float operations and their tables (`tabulate`).
    chains: tabulate::Chains,
}

pub(crate) fn generate(module: &mut JITModule, p: &Program, cache: Option<&dyn crate::CodeCache>) -> Result<Generated, CpuError> {
    if p.block_threads % 32 != 0 && p.body.iter().any(|s| holds(s, warp_instruction)) {
        return Err(CpuError::NotWholeWarps(p.block_threads));
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
        declare("tl_cpu_atomic_add", signature(&[ptr, ptr, i, i], &[]))?,
        declare("tl_cpu_f64_to_f16", signature(&[types::F64], &[i]))?,
        declare("tl_cpu_f64_to_bf16", signature(&[types::F64], &[i]))?,
        declare("tl_cpu_mma", signature(&[ptr, i, i, i, i, i, i, i, i, i, i, i, i, i], &[]))?,
        declare("tl_cpu_ldmatrix", signature(&[ptr, i, ptr, i, i, i, i, i, i, i, i, i], &[i]))?,
        declare("tl_cpu_print", signature(&[ptr, i, ptr, i, i], &[]))?,
    ];
    let math_ids = helpers::MATH.iter().map(|(name, _)| declare(name, signature(&[types::F64], &[types::F64]))).collect::<Result<Vec<_>, _>>()?;
    let mut ctx = module.make_context();
    ctx.func.signature = signature(&[ptr], &[types::I32]);
    let mut function_context = FunctionBuilderContext::new();
    let (sources, messages, prints) = {
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
            atomic_add: refs[7],
            narrow_f64: [refs[8], refs[9]],
            mma: refs[10],
            ldmatrix: refs[11],
            print: refs[12],
            math: math_ids.iter().map(|&id| module.declare_func_in_func(id, b.func)).collect(),
        };
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let frame = b.block_params(entry)[0];
        let load = |b: &mut FunctionBuilder, at: i32| b.ins().load(ptr, MemFlagsData::trusted(), frame, at);
        let (registers, buffers, scalars, shared) = (load(&mut b, off::REGISTERS), load(&mut b, off::BUFFERS), load(&mut b, off::SCALARS), load(&mut b, off::SHARED));
        let exit = b.create_block();
        let variables = p.vars.iter().map(|&t| b.declare_var(cl(t))).collect();
        let in_memory = residency::registers_in_memory(p);
        let mut g = Gen { p, module: &mut *module, tables: Default::default(), failure: None, b, ptr, frame, registers, buffers, scalars, shared, exit, helpers, thread: None, variables, in_memory, resident: false, uniform: tl_compiler::lir::verify::uniform_registers(p), sources: Vec::new(), messages: Vec::new(), prints: Vec::new(), widened16: Default::default(), chains: Default::default() };
        g.phases(&p.body)?;
        if let Some(failure) = g.failure.take() {
            return Err(failure);
        }
        let zero = g.b.ins().iconst(types::I32, 0);
        g.b.ins().return_(&[zero]);
        g.b.switch_to_block(exit);
        let one = g.b.ins().iconst(types::I32, 1);
        g.b.ins().return_(&[one]);
        g.b.seal_all_blocks();
        g.b.finalize(target);
        (g.sources, g.messages, g.prints)
    };
    let clif = ctx.func.display().to_string();
    let name = format!("tl_block_{}", p.name);
    let id = module.declare_function(&name, Linkage::Local, &ctx.func.signature).map_err(|e| CpuError::Codegen(e.to_string()))?;
    // `TL_CPU_DISASM=FILE` writes the machine code of the last program compiled (for
    // profiling the generated code; best effort).
    let disassembly = std::env::var_os("TL_CPU_DISASM");
    ctx.set_disasm(disassembly.is_some());
    // A disassembly needs a compilation: the cache is not asked then.
    let from_cache = define(module, id, &mut ctx, cache.filter(|_| disassembly.is_none()))?;
    if let Some(path) = disassembly {
        // The text, and the bytes beside it (`FILE.bin`, for `objdump -D -b binary -m i386:x86-64`
        // and offsets from a profile).
        let _ = std::fs::write(&path, ctx.compiled_code().and_then(|c| c.vcode.clone()).unwrap_or_default());
        let mut bytes_path = path.clone();
        bytes_path.push(".bin");
        let _ = std::fs::write(bytes_path, ctx.compiled_code().map(|c| c.code_buffer().to_vec()).unwrap_or_default());
    }
    module.clear_context(&mut ctx);
    Ok(Generated { id, sources, messages, prints, clif, from_cache })
}

/// Compiles the function of `ctx` and defines it as `id` in `module`, as
/// `Module::define_function` does, except that with a `cache` the machine code is looked up
/// there first (under Cranelift's key of the function and the ISA with its flags:
/// `incremental_cache::compute_cache_key`) and kept there after a compilation. Returns whether
/// it came from the cache.
fn define(module: &mut JITModule, id: FuncId, ctx: &mut cranelift_codegen::Context, cache: Option<&dyn crate::CodeCache>) -> Result<bool, CpuError> {
    let isa = module.isa();
    let mut control = cranelift_codegen::control::ControlPlane::default();
    let (compiled, from_cache) = match cache {
        Some(cache) => {
            let mut store = CacheStore(cache);
            ctx.compile_with_cache(isa, &mut store, &mut control).map_err(|e| CpuError::Codegen(format!("{:?}", e.inner)))?
        }
        None => (ctx.compile(isa, &mut control).map_err(|e| CpuError::Codegen(format!("{:?}", e.inner)))?, false),
    };
    let (bytes, alignment, relocations) = (compiled.code_buffer().to_vec(), u64::from(compiled.buffer.alignment), compiled.buffer.relocs().to_vec());
    let relocations: Vec<cranelift_module::ModuleReloc> = relocations.iter().map(|r| cranelift_module::ModuleReloc::from_mach_reloc(r, &ctx.func, id)).collect();
    module.define_function_bytes(id, alignment, &bytes, &relocations).map_err(|e| CpuError::Codegen(e.to_string()))?;
    Ok(from_cache)
}

/// Cranelift's view of a [`crate::CodeCache`].
struct CacheStore<'c>(&'c dyn crate::CodeCache);

impl cranelift_codegen::incremental_cache::CacheKvStore for CacheStore<'_> {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        self.0.get(key).map(std::borrow::Cow::Owned)
    }

    fn insert(&mut self, key: &[u8], value: Vec<u8>) {
        self.0.put(key, &value);
    }
}

impl Gen<'_, '_> {
    /// The address of the read-only table `name` (`read_only_table`), its bytes made by
    /// `bytes` when first asked for.
    fn table(&mut self, name: &str, bytes: impl FnOnce() -> Vec<u8>) -> Value {
        let global = match self.tables.get(name) {
            Some(&global) => global,
            None => match read_only_table(self.module, self.b.func, name, bytes()) {
                Ok(global) => *self.tables.entry(name.to_string()).or_insert(global),
                Err(e) => {
                    self.failure.get_or_insert(e);
                    return self.b.ins().iconst(self.ptr, 0);
                }
            },
        };
        self.b.ins().symbol_value(self.ptr, global)
    }

    // ---- Structure: thread loops between collective points. ----

    /// A statement list at block level: runs of ordinary statements become loops over the
    /// threads; collective statements and the uniform control flow around them stay outside.
    fn phases(&mut self, body: &[Stmt]) -> Result<(), CpuError> {
        for phase in phases::split(body, &self.p.vars) {
            let (s, staged) = match phase {
                phases::Phase::Run { .. } => {
                    self.thread_loop(&phase)?;
                    continue;
                }
                phases::Phase::Butterfly { .. } => {
                    self.butterfly(&phase)?;
                    continue;
                }
                phases::Phase::Collective { statement, staged } => (statement, staged),
            };
            // The operands that are not registers, in scratch slots from `first_staged` on:
            // put there by the run before, or now by a pass of their own.
            let staged_operands = phases::staged_operands(s);
            if staged.is_none() && !staged_operands.is_empty() {
                self.stage_in_scratch(&staged_operands)?;
            }
            let first_staged = self.p.vars.len() + staged.unwrap_or(0);
            match s {
                Stmt::Barrier => {}
                Stmt::ShuffleXor { dst, src, lane_mask } => self.shuffle(*dst, *src, *lane_mask)?,
                Stmt::Mma { kind, a, b, c } => {
                    // Each lane's fragments: registers read where they are, the other
                    // operands from their scratch slots; then the warps' products.
                    let mut next_staged = first_staged;
                    let mut slot_of = |e: &Expr| match e {
                        Expr::Var(v) => v.0 as usize,
                        _ => {
                            next_staged += 1;
                            next_staged - 1
                        }
                    };
                    let slots: Vec<usize> = a.iter().chain(b.iter()).map(&mut slot_of).collect();
                    let kind = match kind {
                        tl_compiler::lir::MmaKind::F16 => 0,
                        tl_compiler::lir::MmaKind::BF16 => 1,
                        tl_compiler::lir::MmaKind::S8 => 2,
                    };
                    let mut args = self.warp_arguments();
                    args.insert(2, self.b.ins().iconst(types::I64, kind));
                    for slot in slots.into_iter().chain(c.iter().map(|v| v.0 as usize)) {
                        args.push(self.b.ins().iconst(types::I64, slot as i64));
                    }
                    self.b.ins().call(self.helpers.mma, &args);
                }
                Stmt::LdMatrix { dst, trans, .. } => {
                    let mut args = self.warp_arguments();
                    let shared_len = self.b.ins().iconst(types::I64, self.p.shared_bytes as i64);
                    let count = self.b.ins().iconst(types::I64, dst.len() as i64);
                    let trans = self.b.ins().iconst(types::I64, i64::from(*trans));
                    let scratch = args.pop().expect("scratch");
                    let row_slot = self.b.ins().iconst(types::I64, first_staged as i64);
                    args.extend([self.shared, shared_len, count, trans, scratch, row_slot]);
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
                    self.b.seal_block(then_block);
                    self.b.seal_block(else_block);
                    self.b.switch_to_block(then_block);
                    self.phases(then_body)?;
                    self.b.ins().jump(after, &[]);
                    self.b.switch_to_block(else_block);
                    self.phases(else_body)?;
                    self.b.ins().jump(after, &[]);
                    self.b.seal_block(after);
                    self.b.switch_to_block(after);
                }
                Stmt::For { var, start, end, body } => {
                    let (start, end) = (self.uniform(|g| g.expr(start))?, self.uniform(|g| g.expr(end))?);
                    let var = *var;
                    self.counted_loop(start, end, |g, i| {
                        // Every thread's copy of the loop variable.
                        g.each_thread(|g, _| {
                            g.store_register(var, i);
                            Ok(())
                        })?;
                        g.phases(body)
                    })?;
                }
                other => return Err(CpuError::Unsupported(format!("{other:?}"))),
            }
        }
        Ok(())
    }

    /// `f` evaluated as thread 0 (its values are block-uniform).
    fn uniform<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let zero = self.b.ins().iconst(types::I32, 0);
        let saved = self.thread.replace(zero);
        let v = f(self);
        self.thread = saved;
        v
    }

    /// A run of ordinary statements for every thread (`phases::Phase::Run`): its registers in
    /// variables, those that live in memory loaded at the start and stored at the end
    /// (`residency`); a folded shuffle first, its source read from the partner lane's slot.
    fn thread_loop(&mut self, phase: &phases::Phase) -> Result<(), CpuError> {
        let phases::Phase::Run { shuffle, statements, staged } = phase else { unreachable!("a run") };
        let access = phase.access(self.p.vars.len());
        let (loads, stores) = (access.loads(&self.in_memory), access.stores(&self.in_memory));
        // A uniform register the run does not write is the same in every thread's slot: read
        // once, from thread 0's, before the loop (and what is computed from such values alone
        // can then leave the loop too).
        let (once, per_thread): (Vec<Var>, Vec<Var>) = loads.into_iter().partition(|v| self.uniform[v.0 as usize] && !access.written[v.0 as usize]);
        let preloaded: Vec<(Var, Value)> = self.uniform(|g| once.into_iter().map(|v| (v, g.load_register(v))).collect());
        self.each_thread(|g, t| {
            if let Some(shuffle) = shuffle {
                let from = g.partner_slot(t, shuffle.src.0 as usize, shuffle.lane_mask);
                let value = g.b.ins().load(cl(g.p.vars[shuffle.src.0 as usize]), MemFlagsData::trusted(), from, 0);
                g.b.def_var(g.variables[shuffle.dst.0 as usize], value);
            }
            for &(v, value) in &preloaded {
                g.b.def_var(g.variables[v.0 as usize], value);
            }
            for &v in &per_thread {
                let value = g.load_register(v);
                g.b.def_var(g.variables[v.0 as usize], value);
            }
            g.resident = true;
            // A chain read in a later run could read a register that run does not load.
            g.chains.forget();
            let result = g.statements(statements);
            g.chains.forget();
            // The operands of the collective statements after the run, to the scratch slots.
            let result = result.and_then(|()| g.store_in_scratch(t, staged));
            g.resident = false;
            result?;
            for &v in &stores {
                let value = g.b.use_var(g.variables[v.0 as usize]);
                g.store_register(v, value);
            }
            Ok(())
        })
    }

    /// `body` once for every thread of the block, in order, as that thread (`thread`).
    fn each_thread(&mut self, body: impl FnOnce(&mut Self, Value) -> Result<(), CpuError>) -> Result<(), CpuError> {
        let zero = self.b.ins().iconst(types::I32, 0);
        let threads = self.b.ins().iconst(types::I32, i64::from(self.p.block_threads));
        self.counted_loop(zero, threads, |g, t| {
            let saved = g.thread.replace(t);
            let result = body(g, t);
            g.thread = saved;
            result
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
        self.b.seal_block(inside);
        self.b.seal_block(after);
        self.b.switch_to_block(inside);
        body(self, i)?;
        let next = self.b.ins().iadd_imm_s(i, 1);
        self.b.ins().jump(header, &[next.into()]);
        self.b.seal_block(header);
        self.b.switch_to_block(after);
        Ok(())
    }

    /// Each thread's values of `operands` (32-bit registers) to its scratch slots 0, 1, ...
    fn stage_in_scratch(&mut self, operands: &[&Expr]) -> Result<(), CpuError> {
        self.each_thread(|g, t| g.store_in_scratch(t, operands))
    }

    /// Thread `t`'s values of `operands` to its scratch slots 0, 1, ...
    fn store_in_scratch(&mut self, t: Value, operands: &[&Expr]) -> Result<(), CpuError> {
        for (k, e) in operands.iter().enumerate() {
            let v = self.expr(e)?;
            let at = self.slot(t, self.p.vars.len() + k);
            self.b.ins().store(MemFlagsData::trusted(), v, at, 0);
        }
        Ok(())
    }

    /// The register file, the thread count and the first scratch slot (the leading arguments
    /// of the warp-instruction helpers, `helpers::Column`).
    fn warp_arguments(&mut self) -> Vec<Value> {
        let threads = self.b.ins().iconst(types::I64, i64::from(self.p.block_threads));
        let scratch = self.b.ins().iconst(types::I64, self.p.vars.len() as i64);
        vec![self.registers, threads, scratch]
    }

    /// `dst` of each thread becomes `src` of the thread `lane ^ mask` in its warp (when `dst`
    /// is `src`, all sources are copied to the scratch slots first).
    fn shuffle(&mut self, dst: Var, src: Var, lane_mask: u32) -> Result<(), CpuError> {
        if dst != src {
            // No thread's source changes during the pass: one pass, straight from the slots.
            return self.each_thread(|g, t| {
                let from = g.partner_slot(t, src.0 as usize, lane_mask);
                let v = g.b.ins().load(types::I64, MemFlagsData::trusted(), from, 0);
                let at = g.slot(t, dst.0 as usize);
                g.b.ins().store(MemFlagsData::trusted(), v, at, 0);
                Ok(())
            });
        }
        let scratch = self.p.vars.len();
        self.each_thread(|g, t| {
            let from = g.slot(t, src.0 as usize);
            let v = g.b.ins().load(types::I64, MemFlagsData::trusted(), from, 0);
            let at = g.slot(t, scratch);
            g.b.ins().store(MemFlagsData::trusted(), v, at, 0);
            Ok(())
        })?;
        self.each_thread(|g, t| {
            let from = g.partner_slot(t, scratch, lane_mask);
            let v = g.b.ins().load(types::I64, MemFlagsData::trusted(), from, 0);
            let at = g.slot(t, dst.0 as usize);
            g.b.ins().store(MemFlagsData::trusted(), v, at, 0);
            Ok(())
        })
    }

    // ---- Registers. ----

    /// The address of slot `v` of the thread `t ^ lane_mask` of `t`'s warp.
    fn partner_slot(&mut self, t: Value, v: usize, lane_mask: u32) -> Value {
        let partner = self.b.ins().bxor_imm_s(t, i64::from(lane_mask & 31));
        self.slot(partner, v)
    }

    /// The address of register `v` of thread `t` (`helpers::Column` says where).
    fn slot(&mut self, t: Value, v: usize) -> Value {
        let vars = self.p.vars.len();
        let (stride, start) = if v < vars { (vars, v) } else { (helpers::SCRATCH, self.p.block_threads as usize * vars + v - vars) };
        let t = self.b.ins().uextend(types::I64, t);
        let row = self.b.ins().imul_imm_s(t, stride as i64 * 8);
        let at = self.b.ins().iadd_imm_s(row, start as i64 * 8);
        self.b.ins().iadd(self.registers, at)
    }

    fn thread(&self) -> Value {
        self.thread.expect("inside a thread loop")
    }

    fn load_register(&mut self, v: Var) -> Value {
        if self.resident {
            return self.b.use_var(self.variables[v.0 as usize]);
        }
        let t = self.thread();
        let at = self.slot(t, v.0 as usize);
        self.b.ins().load(cl(self.p.vars[v.0 as usize]), MemFlagsData::trusted(), at, 0)
    }

    fn store_register(&mut self, v: Var, value: Value) {
        if self.resident {
            self.b.def_var(self.variables[v.0 as usize], value);
            return;
        }
        let t = self.thread();
        let at = self.slot(t, v.0 as usize);
        self.b.ins().store(MemFlagsData::trusted(), value, at, 0);
    }

    // ---- Faults. ----

    /// Continues when `ok` (an i8 0/1) holds; otherwise records the fault and leaves.
    fn guard(&mut self, ok: Value, kind: FaultKind, param: i64, index: Value, message: i32) {
        let (fail, go) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(ok, go, &[], fail, &[]);
        self.b.seal_block(go);
        self.b.seal_block(fail);
        self.b.set_cold_block(fail);
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
        let base = self.b.ins().load(self.ptr, launch_constant(), self.buffers, at);
        let len = self.b.ins().load(types::I64, launch_constant(), self.buffers, at + 8);
        (base, len)
    }

    /// The address of `size` bytes at byte `offset` (i64) of global `param`, checked (and
    /// aligned to `align` when it is more than 1).
    fn global_address(&mut self, param: usize, offset: Value, size: i64, align: i64) -> Value {
        let (base, len) = self.buffer(param);
        self.checked_address(base, len, offset, size, align, FaultKind::GlobalOutOfBounds, param as i64)
    }

    /// The address of `size` bytes at byte `offset` (i32) of the shared buffer, checked.
    fn shared_address(&mut self, offset: Value, size: i64, align: i64) -> Value {
        let offset = self.b.ins().sextend(types::I64, offset);
        self.shared_address_wide(offset, size, align)
    }

    /// `shared_address` of an i64 offset.
    fn shared_address_wide(&mut self, offset: Value, size: i64, align: i64) -> Value {
        let len = self.b.ins().iconst(types::I64, self.p.shared_bytes as i64);
        self.checked_address(self.shared, len, offset, size, align, FaultKind::SharedOutOfBounds, -1)
    }

    /// `base + offset` after checking that `size` bytes there lie inside the `len` bytes of the
    /// buffer (else fault `outside`, naming parameter `param`) and, when `align` is more than
    /// 1, that the offset is a multiple of it.
    #[allow(clippy::too_many_arguments)]
    fn checked_address(&mut self, base: Value, len: Value, offset: Value, size: i64, align: i64, outside: FaultKind, param: i64) -> Value {
        let ok = self.within(offset, size, len);
        self.guard(ok, outside, param, offset, -1);
        if align > 1 {
            let rest = self.b.ins().band_imm_s(offset, align - 1);
            let aligned = self.b.ins().icmp_imm_s(IntCC::Equal, rest, 0);
            self.guard(aligned, FaultKind::Misaligned, param, offset, -1);
        }
        self.b.ins().iadd(base, offset)
    }

    /// The address of element `index` (an i64 expression) of global `param`, checked, and the
    /// register type of its elements.
    fn element_address(&mut self, param: usize, index: &Expr) -> Result<(Value, Ty), CpuError> {
        let ty = self.param_ty(param)?;
        let index = self.expr(index)?;
        let offset = self.b.ins().imul_imm_s(index, ty.bytes() as i64);
        Ok((self.global_address(param, offset, ty.bytes() as i64, 1), ty))
    }

    fn param_ty(&self, param: usize) -> Result<Ty, CpuError> {
        match &self.p.params.get(param) {
            Some(Param::Global { dtype, .. }) => Ok(Ty::of(*dtype)),
            _ => Err(CpuError::Codegen(format!("parameter {param} is not a global tensor"))),
        }
    }

    // ---- Statements of one thread. ----

    /// A run's statements in order; two adjacent `exp` (or `exp2`) assignments of f32 values,
    /// the second not reading the first's register, computed side by side
    /// (`exponential_f32_pair`).
    fn statements(&mut self, list: &[&Stmt]) -> Result<(), CpuError> {
        let mut i = 0;
        while i < list.len() {
            if let Some(&next) = list.get(i + 1) {
                if let Some(((v, x), op, (w, y))) = exponential_pair(self.p, list[i], next) {
                    let (x, y) = (self.expr(x)?, self.expr(y)?);
                    let (first, second) = self.exponential_f32_pair(op, x, y);
                    // What `tabulate` knows about v and w is stale now.
                    self.chains.forget();
                    self.store_register(v, first);
                    self.store_register(w, second);
                    i += 2;
                    continue;
                }
            }
            self.stmt(list[i])?;
            i += 1;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> Result<(), CpuError> {
        // What writes registers other than by plain assignment ends every chain (`tabulate`).
        let plain = matches!(s, Stmt::Assign(..) | Stmt::AssignUniform(..) | Stmt::Source { .. } | Stmt::Check { .. } | Stmt::StoreGlobal { .. } | Stmt::StoreGlobalBits { .. } | Stmt::StoreGlobalVector { .. } | Stmt::StoreShared { .. } | Stmt::StoreSharedBits { .. });
        if !plain {
            self.chains.forget();
        }
        match s {
            Stmt::Assign(v, e) | Stmt::AssignUniform(v, e) => {
                let value = match self.tabulated(*v, e) {
                    Some(value) => value,
                    None => self.expr(e)?,
                };
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
                self.b.seal_block(then_block);
                self.b.seal_block(else_block);
                self.b.switch_to_block(then_block);
                // Chains hold along one path of plain assignments (`tabulate`).
                self.chains.forget();
                for s in then_body {
                    self.stmt(s)?;
                }
                self.b.ins().jump(after, &[]);
                self.b.switch_to_block(else_block);
                self.chains.forget();
                for s in else_body {
                    self.stmt(s)?;
                }
                self.chains.forget();
                self.b.ins().jump(after, &[]);
                self.b.seal_block(after);
                self.b.switch_to_block(after);
            }
            Stmt::For { var, start, end, body } => {
                let (start, end, var) = (self.expr(start)?, self.expr(end)?, *var);
                self.counted_loop(start, end, |g, i| {
                    g.chains.forget();
                    g.store_register(var, i);
                    for s in body {
                        g.stmt(s)?;
                    }
                    Ok(())
                })?;
                self.chains.forget();
            }
            Stmt::StoreGlobal { param, index, value } => {
                let (at, ty) = self.element_address(*param, index)?;
                let v = self.expr(value)?;
                // A bool is stored as 0 or 1.
                let v = if ty == Ty::I1 { self.b.ins().band_imm_s(v, 1) } else { v };
                self.b.ins().store(MemFlagsData::trusted(), v, at, 0);
            }
            Stmt::AtomicAddGlobal { param, index, value } => {
                let (at, ty) = self.element_address(*param, index)?;
                let v = self.expr(value)?;
                let bits = self.register_bits(v, ty);
                let code = self.b.ins().iconst(types::I64, helpers::ty_code(ty));
                self.b.ins().call(self.helpers.atomic_add, &[self.frame, at, code, bits]);
            }
            Stmt::StoreGlobalBits { param, bit_index, bits, value } => {
                let place = self.global_bits(*param, bit_index, *bits)?;
                let v = self.expr(value)?;
                self.write_packed(&place, *bits, v, true);
            }
            Stmt::StoreShared { offset, value } => {
                let v = self.expr(value)?;
                let ty = self.ty_of_value(value);
                let offset = self.expr(offset)?;
                let at = self.shared_address(offset, ty.bytes() as i64, 1);
                self.b.ins().store(MemFlagsData::trusted(), v, at, 0);
            }
            Stmt::StoreSharedBits { bit_offset, bits, value } => {
                let place = self.shared_bits(bit_offset, *bits)?;
                let v = self.expr(value)?;
                self.write_packed(&place, *bits, v, false);
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
                self.b.seal_block(read);
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
                self.b.seal_block(after);
                self.b.switch_to_block(after);
                let (base, _) = self.buffer(*param);
                let from = self.b.ins().iadd(base, src);
                // The whole copy from the source (the usual case) in words of up to 8 bytes;
                // a partial one byte by byte, zeros past `src_bytes`.
                let whole = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, count, size);
                let (words, bytewise, copied) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
                self.b.ins().brif(whole, words, &[], bytewise, &[]);
                self.b.seal_block(words);
                self.b.seal_block(bytewise);
                self.b.switch_to_block(words);
                let word = 1i64 << size.trailing_zeros().min(3);
                let word_type = Type::int_with_byte_size(word as u16).expect("a power of two up to 8");
                for k in (0..size).step_by(word as usize) {
                    let value = self.b.ins().load(word_type, MemFlagsData::trusted(), from, k as i32);
                    self.b.ins().store(MemFlagsData::trusted(), value, dst, k as i32);
                }
                self.b.ins().jump(copied, &[]);
                self.b.switch_to_block(bytewise);
                for k in 0..size {
                    let inside = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, count, k);
                    let (load, merge) = (self.b.create_block(), self.b.create_block());
                    self.b.append_block_param(merge, types::I8);
                    let zero = self.b.ins().iconst(types::I8, 0);
                    self.b.ins().brif(inside, load, &[], merge, &[zero.into()]);
                    self.b.seal_block(load);
                    self.b.switch_to_block(load);
                    let byte = self.b.ins().load(types::I8, MemFlagsData::trusted(), from, k as i32);
                    self.b.ins().jump(merge, &[byte.into()]);
                    self.b.seal_block(merge);
                    self.b.switch_to_block(merge);
                    let byte = self.b.block_params(merge)[0];
                    self.b.ins().store(MemFlagsData::trusted(), byte, dst, k as i32);
                }
                self.b.ins().jump(copied, &[]);
                self.b.seal_block(copied);
                self.b.switch_to_block(copied);
            }
            Stmt::Print { label, coords, value, unsigned } => {
                let id = self.prints.len() as i64;
                let ty = self.p.ty(value);
                self.prints.push(PrintStatement { label: label.clone(), float: ty.is_float(), unsigned: *unsigned });
                let slot = self.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 8 * coords.len().max(1) as u32, 3));
                for (k, c) in coords.iter().enumerate() {
                    let v = self.expr(c)?;
                    let v = self.b.ins().sextend(types::I64, v);
                    self.b.ins().stack_store(self.ptr, v, slot, 8 * k as i32);
                }
                let v = self.expr(value)?;
                let bits = self.register_bits(v, ty);
                let at = self.b.ins().stack_addr(self.ptr, slot, 0);
                let (id, count) = (self.b.ins().iconst(types::I64, id), self.b.ins().iconst(types::I64, coords.len() as i64));
                let printer = self.helpers.print;
                self.b.ins().call(printer, &[self.frame, id, at, count, bits]);
            }
            Stmt::CommitGroup | Stmt::WaitGroup(_) => {}
            other => return Err(CpuError::Unsupported(format!("{other:?}"))),
        }
        Ok(())
    }

    /// Where a packed element of global `param` lies: its first and last bytes are checked
    /// inside the buffer.
    fn global_bits(&mut self, param: usize, bit_index: &Expr, bits: u32) -> Result<PackedPlace, CpuError> {
        let bit = self.expr(bit_index)?;
        let (first, last) = self.bit_bytes(bit, bits);
        let first = self.global_address(param, first, 1, 1);
        let last = self.global_address(param, last, 1, 1);
        Ok(self.packed_place(first, last, bit))
    }

    /// Where a packed element of the shared buffer lies (its bit offset is an i32): its first
    /// and last bytes are checked inside the buffer.
    fn shared_bits(&mut self, bit_offset: &Expr, bits: u32) -> Result<PackedPlace, CpuError> {
        let bit = self.expr(bit_offset)?;
        let bit = self.b.ins().sextend(types::I64, bit);
        let (first, last) = self.bit_bytes(bit, bits);
        let first = self.shared_address_wide(first, 1, 1);
        let last = self.shared_address_wide(last, 1, 1);
        Ok(self.packed_place(first, last, bit))
    }

    fn packed_place(&mut self, first: Value, last: Value, bit: Value) -> PackedPlace {
        let shift = self.b.ins().ireduce(types::I32, bit);
        let shift = self.b.ins().band_imm_s(shift, 7);
        PackedPlace { first, last, shift }
    }

    /// The first and the last byte (i64) that bits `[bit, bit + bits)` touch.
    fn bit_bytes(&mut self, bit: Value, bits: u32) -> (Value, Value) {
        let first = self.b.ins().sshr_imm_s(bit, 3);
        let end = self.b.ins().iadd_imm_s(bit, i64::from(bits) - 1);
        let last = self.b.ins().sshr_imm_s(end, 3);
        (first, last)
    }

    /// The `bits` bits of a packed element, zero-extended to i32: the two bytes that may hold
    /// it as one 16-bit word (the same byte twice when it fits in one), shifted and masked.
    fn read_packed(&mut self, place: &PackedPlace, bits: u32) -> Value {
        let low = self.b.ins().uload8(types::I32, MemFlagsData::trusted(), place.first, 0);
        let high = self.b.ins().uload8(types::I32, MemFlagsData::trusted(), place.last, 0);
        let high = self.b.ins().ishl_imm_s(high, 8);
        let word = self.b.ins().bor(high, low);
        let value = self.b.ins().ushr(word, place.shift);
        self.b.ins().band_imm_s(value, (1i64 << bits) - 1)
    }

    /// Replaces the `bits` bits of a packed element with the low bits of `value` (i32),
    /// keeping the other bits of its bytes. With `atomic`, each byte changes by an atomic
    /// and/or (blocks running on other threads may write neighbours in the same bytes).
    fn write_packed(&mut self, place: &PackedPlace, bits: u32, value: Value, atomic: bool) {
        let mask = self.b.ins().iconst(types::I32, (1i64 << bits) - 1);
        let mask = self.b.ins().ishl(mask, place.shift);
        let moved = self.b.ins().ishl(value, place.shift);
        let moved = self.b.ins().band(moved, mask);
        // The last byte first: when it is the first byte too, its high parts are empty and the
        // first byte's update comes after.
        for (at, shift) in [(place.last, 8), (place.first, 0)] {
            let byte_mask = self.b.ins().ushr_imm_s(mask, shift);
            let byte_mask = self.b.ins().ireduce(types::I8, byte_mask);
            let byte_value = self.b.ins().ushr_imm_s(moved, shift);
            let byte_value = self.b.ins().ireduce(types::I8, byte_value);
            let keep = self.b.ins().bnot(byte_mask);
            if atomic {
                self.b.ins().atomic_rmw(types::I8, MemFlagsData::trusted(), AtomicRmwOp::And, at, keep);
                self.b.ins().atomic_rmw(types::I8, MemFlagsData::trusted(), AtomicRmwOp::Or, at, byte_value);
            } else {
                let old = self.b.ins().load(types::I8, MemFlagsData::trusted(), at, 0);
                let kept = self.b.ins().band(old, keep);
                let new = self.b.ins().bor(kept, byte_value);
                self.b.ins().store(MemFlagsData::trusted(), new, at, 0);
            }
        }
    }

    fn ty_of_value(&self, e: &Expr) -> Ty {
        self.p.ty(e)
    }
}
