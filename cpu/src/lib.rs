//! The Cranelift CPU backend: a kernel's LIR (one thread's program) compiled to native code
//! that runs a whole block, bit-exact with the simulator (`tl_vm::simt`).
//!
//! Why the LIR and not the block IR: the LIR is where every decision is already made and
//! recorded (layouts, vector widths, instruction sequences, the accurate math), and the
//! simulator defines its semantics register by register; compiling it keeps one meaning for
//! the CPU backends and the GPU, and the simulator is the oracle the compiled code is checked
//! against.
//!
//! Execution model (`codegen`): one native function per program runs one block. The block's
//! threads run one after another between *collective* points — barriers and warp shuffles —
//! so a barrier is the boundary between two loops over the threads, and a shuffle reads the
//! other lanes' registers after every thread has computed them. Within such a run a thread's
//! registers are Cranelift variables; those whose values must outlive the run also have a slot
//! in a register file in memory (`threads × (registers + 8)` slots of 8 bytes; the extra slots
//! per thread are scratch of the warp instructions), which keeps every such value across a
//! barrier per thread (`codegen::residency` decides which). Control flow around collective
//! points is block-uniform (the LIR verifier guarantees it), so its condition or bounds are
//! taken from thread 0.
//!
//! Faults are diagnostics, not crashes: every global and shared access is bounds-checked in
//! the generated code (and vector accesses alignment-checked), integer division by zero and
//! failed `check`s stop the block; the launch reports the fault with the source instruction.
//!
//! Warp instructions (`mma`, `ldmatrix`) take each lane's operands from the register file and
//! run the simulator's fragment tables (`tl_vm::warp`) per warp. `print` formats its lines as
//! every backend does (`lir::format_print_line`), gathered per block and given in grid order.
//! Blocks run in parallel on all cores; float atomic additions land in the simulator's order
//! (blocks in grid order) so that the sums round the same way ([`FloatAtomics`]).
//!
//! Machine code can be kept between processes ([`compile_with_cache`], a [`CodeCache`]): the
//! code reads its tables as data objects of its module, never by an address of this process,
//! so the same program compiles to the same code in every process.
//!
//! `TL_CPU_DISASM=FILE` writes the machine code of the program compiled last (for profiling;
//! such a compilation does not use the cache).

mod codegen;
mod helpers;

use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::default_libcall_names;
use tl_compiler::diagnostics::Span;
use tl_compiler::lir::{Param, Program};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tl_vm::interp::Arg;

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("the cpu backend does not run {0} yet (use `--backend simt` or `vm`)")]
    Unsupported(String),
    #[error("a warp instruction (shfl, mma or ldmatrix) in a block of {0} threads, not a whole number of warps: every lane of a warp must take part")]
    NotWholeWarps(u32),
    #[error("cranelift: {0}")]
    Codegen(String),
    #[error("{message}")]
    Fault { message: String, block: [u32; 3], thread: u32, at: Option<(Span, String)> },
    #[error("bad launch: {0}")]
    Launch(String),
}

/// What compiled code reads and writes of its launch (`#[repr(C)]`: the generated code
/// addresses the fields by these offsets).
#[repr(C)]
pub(crate) struct Frame {
    pub block: [i32; 3],
    /// 0: none; see [`FaultKind`].
    pub fault: i32,
    pub fault_thread: i32,
    /// The `Source` statement in effect (its number), -1 before the first.
    pub source: i32,
    pub fault_param: i32,
    pub fault_message: i32,
    pub fault_index: i64,
    /// The division helper's flag.
    pub failed: i64,
    pub buffers: *const Buffer,
    pub scalars: *const i64,
    pub shared: *mut u8,
    pub registers: *mut u64,
    /// Where `print` puts its lines (`helpers::print`).
    pub printer: *mut Printer,
    /// Null, or where float atomic additions wait for the block's turn (`helpers::atomic_add`).
    pub deferred: *mut Vec<DeferredAdd>,
}

/// A float atomic addition recorded for later (`FloatAtomics::Deferred`).
pub(crate) struct DeferredAdd {
    pub element: *mut u8,
    pub ty: i64,
    pub value: i64,
}

/// How a program's float atomic additions keep the simulator's order (blocks in grid order,
/// each block's additions in its own order), which fixes the sums' rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FloatAtomics {
    None,
    /// Blocks run in parallel; each block's float additions are recorded and applied when
    /// every earlier block's have been: possible when nothing else touches the tensors added
    /// into, so that no block can observe when the additions happen.
    Deferred,
    /// Blocks run one after another (a tensor added into is also read or written otherwise).
    InOrder,
}

/// The `print` statements of a program (by number, in the generated code) and the lines of
/// the block running.
pub(crate) struct Printer {
    pub prints: *const PrintStatement,
    pub lines: Vec<String>,
}

/// One `print` statement: its label and how its value's bits read.
pub(crate) struct PrintStatement {
    pub label: String,
    pub float: bool,
    pub unsigned: bool,
}

pub(crate) mod frame_offsets {
    pub const BLOCK: i32 = 0;
    pub const FAULT: i32 = 12;
    pub const FAULT_THREAD: i32 = 16;
    pub const SOURCE: i32 = 20;
    pub const FAULT_PARAM: i32 = 24;
    pub const FAULT_MESSAGE: i32 = 28;
    pub const FAULT_INDEX: i32 = 32;
    pub const FAILED: i32 = 40;
    pub const BUFFERS: i32 = 48;
    pub const SCALARS: i32 = 56;
    pub const SHARED: i32 = 64;
    pub const REGISTERS: i32 = 72;
}

// The generated code's offsets are the struct's.
const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(Frame, block) == frame_offsets::BLOCK as usize);
    assert!(offset_of!(Frame, fault) == frame_offsets::FAULT as usize);
    assert!(offset_of!(Frame, fault_thread) == frame_offsets::FAULT_THREAD as usize);
    assert!(offset_of!(Frame, source) == frame_offsets::SOURCE as usize);
    assert!(offset_of!(Frame, fault_param) == frame_offsets::FAULT_PARAM as usize);
    assert!(offset_of!(Frame, fault_message) == frame_offsets::FAULT_MESSAGE as usize);
    assert!(offset_of!(Frame, fault_index) == frame_offsets::FAULT_INDEX as usize);
    assert!(offset_of!(Frame, failed) == frame_offsets::FAILED as usize);
    assert!(offset_of!(Frame, buffers) == frame_offsets::BUFFERS as usize);
    assert!(offset_of!(Frame, scalars) == frame_offsets::SCALARS as usize);
    assert!(offset_of!(Frame, shared) == frame_offsets::SHARED as usize);
    assert!(offset_of!(Frame, registers) == frame_offsets::REGISTERS as usize);
};

/// One global tensor's bytes.
#[repr(C)]
pub(crate) struct Buffer {
    pub ptr: *mut u8,
    pub len: i64,
}

/// Why compiled code stopped a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum FaultKind {
    GlobalOutOfBounds = 1,
    SharedOutOfBounds = 2,
    Misaligned = 3,
    DivisionByZero = 4,
    Check = 5,
}

/// A program compiled to native code, reusable across launches.
pub struct CompiledProgram {
    // Keeps the code alive; never touched again after finalization.
    _module: JITModule,
    from_cache: bool,
    entry: extern "C" fn(*mut Frame) -> i32,
    program: Program,
    float_atomics: FloatAtomics,
    sources: Vec<(Span, String)>,
    messages: Vec<String>,
    prints: Vec<PrintStatement>,
    clif: String,
}

// SAFETY: the finalized code is immutable and `entry` reads only its frame argument; the
// module is kept only so that the code stays mapped.
unsafe impl Send for CompiledProgram {}
unsafe impl Sync for CompiledProgram {}

impl std::fmt::Debug for CompiledProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledProgram").field("name", &self.program.name).finish()
    }
}

/// A JIT for this machine's ISA with the helpers' symbols defined.
pub(crate) fn jit_builder() -> Result<JITBuilder, CpuError> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| CpuError::Codegen(e.to_string()));
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "is_pic", "false")?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    let isa = cranelift_native::builder()
        .map_err(|e| CpuError::Codegen(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| CpuError::Codegen(e.to_string()))?;
    let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
    for (name, address) in helpers::symbols() {
        builder.symbol(name, address);
    }
    Ok(builder)
}

/// What names this backend's native code across processes: the crate's version and a digest of
/// the sources it was built from (`build.rs`). A kernel tuned on the cpu backend of one build
/// is dispatched only by that build (`tl_runtime::tune`).
pub fn identity() -> String {
    format!("tl-cpu {} sources {}", env!("CARGO_PKG_VERSION"), env!("TL_CPU_SOURCE_DIGEST"))
}

/// Where compiled machine code is kept between processes: a map from keys (Cranelift's digest
/// of a function and the ISA it is compiled for, flags included) to the serialized compiled
/// code. `get` must give what `put` was given for the key, or nothing: detecting damage is the
/// store's part (`tl_runtime::cache::DiskCache` checks a checksum), since Cranelift reads the
/// machine code back as it is. What Cranelift cannot read back at all (the form of another
/// Cranelift version) is compiled again and `put` anew.
pub trait CodeCache {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    fn put(&self, key: &[u8], value: &[u8]);
}

/// Compiles `program` for this machine.
pub fn compile(program: &Program) -> Result<CompiledProgram, CpuError> {
    compile_with_cache(program, None)
}

/// Compiles `program` for this machine, with its machine code from `cache` when that holds it
/// (and kept there when it did not): the code is the same in every process, since the tables
/// it reads are data of its module rather than addresses of this process. Generating the
/// Cranelift IR (and the tables) is done either way; what a hit saves is Cranelift's
/// compilation, most of the time for a large kernel. [`CompiledProgram::from_cache`] tells
/// which it was.
pub fn compile_with_cache(program: &Program, cache: Option<&dyn CodeCache>) -> Result<CompiledProgram, CpuError> {
    let builder = jit_builder()?;
    let mut module = JITModule::new(builder);
    let generated = codegen::generate(&mut module, program, cache)?;
    module.finalize_definitions().map_err(|e| CpuError::Codegen(e.to_string()))?;
    let code = module.get_finalized_function(generated.id);
    // SAFETY: the function was generated with this signature (`codegen::generate`).
    let entry = unsafe { std::mem::transmute::<*const u8, extern "C" fn(*mut Frame) -> i32>(code) };
    let float_atomics = float_atomics(program);
    Ok(CompiledProgram { _module: module, from_cache: generated.from_cache, entry, program: program.clone(), float_atomics, sources: generated.sources, messages: generated.messages, prints: generated.prints, clif: generated.clif })
}

fn float_atomics(p: &Program) -> FloatAtomics {
    use tl_compiler::lir::{Expr, Stmt};
    // Per parameter: whether floats are added into it atomically, and whether anything else
    // reads or writes it.
    let mut added = vec![false; p.params.len()];
    let mut touched = vec![false; p.params.len()];
    fn expr(e: &Expr, touched: &mut [bool]) {
        if let Expr::LoadGlobal { param, .. } | Expr::LoadGlobalBits { param, .. } = e {
            touched[*param] = true;
        }
        e.for_each_operand(|a| expr(a, touched));
    }
    fn stmts(p: &Program, body: &[Stmt], added: &mut [bool], touched: &mut [bool]) {
        for s in body {
            match s {
                Stmt::AtomicAddGlobal { param, value, .. } if p.ty(value).is_float() => added[*param] = true,
                Stmt::AtomicAddGlobal { param, .. }
                | Stmt::StoreGlobal { param, .. }
                | Stmt::StoreGlobalBits { param, .. }
                | Stmt::StoreGlobalVector { param, .. }
                | Stmt::LoadGlobalVector { param, .. }
                | Stmt::CopyAsync { param, .. } => touched[*param] = true,
                Stmt::If { then_body, else_body, .. } => {
                    stmts(p, then_body, added, touched);
                    stmts(p, else_body, added, touched);
                }
                Stmt::For { body, .. } => stmts(p, body, added, touched),
                _ => {}
            }
            s.for_each_expr(|e| expr(e, touched));
        }
    }
    stmts(p, &p.body, &mut added, &mut touched);
    if !added.contains(&true) {
        FloatAtomics::None
    } else if added.iter().zip(&touched).any(|(a, t)| *a && *t) {
        FloatAtomics::InOrder
    } else {
        FloatAtomics::Deferred
    }
}

/// The launch's buffers and scalars, read by every worker thread.
struct SharedInputs<'a> {
    buffers: &'a [Buffer],
    scalars: &'a [i64],
}

// SAFETY: the buffers point into the launch's tensors, which outlive the workers; blocks of a
// race-free program touch disjoint elements, and atomic additions take a lock
// (`helpers::atomic_add`).
unsafe impl Sync for SharedInputs<'_> {}

/// The Cranelift IR of `program` (`tlc compile --emit clif`).
pub fn clif(program: &Program) -> Result<String, CpuError> {
    Ok(compile(program)?.clif)
}

impl CompiledProgram {
    pub fn clif(&self) -> &str {
        &self.clif
    }

    /// Whether the machine code came from the [`CodeCache`] rather than from Cranelift.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// Runs the program over `grid`, updating the tensors of `args`. Blocks run in parallel on
    /// all cores (`TL_CPU_THREADS` caps the number of threads); float atomic additions land in
    /// the simulator's order (blocks in grid order: recorded per block and applied in turn, or,
    /// when the program also reads or writes a tensor it adds into, blocks one after another).
    /// A race-free program's results do not depend on the thread count; a fault is reported
    /// for the first faulting block in grid order.
    /// Lines that `print` statements produce go to standard output after the launch, the
    /// blocks' lines in grid order.
    pub fn launch(&self, grid: [u32; 3], args: &mut [Arg]) -> Result<(), CpuError> {
        self.launch_with_threads(grid, args, None)
    }

    /// [`Self::launch`] on at most `threads` threads (`None`: all cores, or `TL_CPU_THREADS`).
    pub fn launch_with_threads(&self, grid: [u32; 3], args: &mut [Arg], threads: Option<usize>) -> Result<(), CpuError> {
        let lines = self.launch_with_output(grid, args, threads)?;
        if !lines.is_empty() {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
        }
        Ok(())
    }

    /// [`Self::launch_with_threads`], returning the printed lines instead of printing them:
    /// the blocks in grid order, and within a block in the order its threads ran (each thread
    /// through the statements between two collective points, then the next thread), which is
    /// one of the orders a GPU may print in.
    pub fn launch_with_output(&self, grid: [u32; 3], args: &mut [Arg], threads: Option<usize>) -> Result<Vec<String>, CpuError> {
        let p = &self.program;
        if args.len() != p.params.len() {
            return Err(CpuError::Launch(format!("{} arguments for {} parameters", args.len(), p.params.len())));
        }
        let mut scalars = vec![0i64; p.params.len()];
        let mut buffers = Vec::with_capacity(p.params.len());
        for (i, (param, arg)) in p.params.iter().zip(args.iter_mut()).enumerate() {
            match (param, arg) {
                (Param::Global { .. }, Arg::Tensor(t)) => buffers.push(Buffer { ptr: t.data.as_mut_ptr(), len: t.data.len() as i64 }),
                (Param::Scalar { ty, .. }, Arg::Scalar(v)) => {
                    scalars[i] = tl_vm::simt::registers::scalar_argument(*ty, v);
                    buffers.push(Buffer { ptr: std::ptr::null_mut(), len: 0 });
                }
                _ => return Err(CpuError::Launch(format!("argument {i} does not match its parameter"))),
            }
        }
        let total = grid.iter().map(|&g| g as usize).product::<usize>();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cap = threads.or_else(|| std::env::var("TL_CPU_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok())).unwrap_or(cores).max(1);
        let workers = if self.float_atomics == FloatAtomics::InOrder { 1 } else { cap.min(total).max(1) };
        let deferring = self.float_atomics == FloatAtomics::Deferred;
        // With deferred float additions: the next block whose additions may be applied.
        let turn = (Mutex::new(0usize), std::sync::Condvar::new());
        let next = AtomicUsize::new(0);
        // The first faulting block in grid order (usize::MAX: none yet).
        let first_fault = AtomicUsize::new(usize::MAX);
        let faults: Mutex<Vec<(usize, CpuError)>> = Mutex::new(Vec::new());
        let printed: Mutex<Vec<(usize, Vec<String>)>> = Mutex::new(Vec::new());
        let shared_inputs = SharedInputs { buffers: &buffers, scalars: &scalars };
        // Progress of a long launch on standard error (see `tl_vm::progress`): blocks finished
        // are counted by every worker, and whichever finds the reporter free reports.
        let finished = AtomicUsize::new(0);
        let progress = Mutex::new(tl_vm::progress::Progress::new(format!("cpu `{}`", p.name), grid));
        let work = || {
            let inputs = &shared_inputs;
            let threads = p.block_threads as usize;
            let mut registers = vec![0u64; threads * (p.vars.len() + helpers::SCRATCH)];
            let mut shared = vec![0u8; p.shared_bytes.max(1)];
            let mut printer = Printer { prints: self.prints.as_ptr(), lines: Vec::new() };
            let mut deferred: Vec<DeferredAdd> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || i > first_fault.load(Ordering::Relaxed) {
                    break;
                }
                let x = i % grid[0] as usize;
                let y = (i / grid[0] as usize) % grid[1] as usize;
                let z = i / (grid[0] as usize * grid[1] as usize);
                let mut frame = Frame {
                    block: [x as i32, y as i32, z as i32],
                    fault: 0,
                    fault_thread: 0,
                    source: -1,
                    fault_param: -1,
                    fault_message: -1,
                    fault_index: 0,
                    failed: 0,
                    buffers: inputs.buffers.as_ptr(),
                    scalars: inputs.scalars.as_ptr(),
                    shared: shared.as_mut_ptr(),
                    registers: registers.as_mut_ptr(),
                    printer: &mut printer,
                    deferred: if deferring { &mut deferred } else { std::ptr::null_mut() },
                };
                if (self.entry)(&mut frame) != 0 {
                    first_fault.fetch_min(i, Ordering::Relaxed);
                    let error = self.fault(&frame, [x as u32, y as u32, z as u32]);
                    faults.lock().unwrap_or_else(|e| e.into_inner()).push((i, error));
                }
                if deferring {
                    // Wait until every earlier block's additions are in, then add this
                    // block's, in its order. A block after a faulting one gives up (the
                    // launch fails; the faulting block itself still takes its turn).
                    let (lock, changed) = &turn;
                    let mut next_turn = lock.lock().unwrap_or_else(|e| e.into_inner());
                    while *next_turn < i && first_fault.load(Ordering::Relaxed) >= i {
                        next_turn = changed.wait(next_turn).unwrap_or_else(|e| e.into_inner());
                    }
                    if *next_turn == i {
                        for add in deferred.drain(..) {
                            helpers::add_deferred(&add);
                        }
                        *next_turn = i + 1;
                    }
                    deferred.clear();
                    changed.notify_all();
                }
                let done = finished.fetch_add(1, Ordering::Relaxed) + 1;
                if let Ok(mut progress) = progress.try_lock() {
                    progress.block_done(done as u64);
                }
                if !printer.lines.is_empty() {
                    printed.lock().unwrap_or_else(|e| e.into_inner()).push((i, std::mem::take(&mut printer.lines)));
                }
            }
        };
        if workers == 1 {
            work();
        } else {
            std::thread::scope(|s| {
                for _ in 0..workers {
                    s.spawn(work);
                }
            });
        }
        let mut faults = faults.into_inner().unwrap_or_else(|e| e.into_inner());
        faults.sort_by_key(|(i, _)| *i);
        if let Some((_, error)) = faults.into_iter().next() {
            return Err(error);
        }
        let mut printed = printed.into_inner().unwrap_or_else(|e| e.into_inner());
        printed.sort_by_key(|(i, _)| *i);
        Ok(printed.into_iter().flat_map(|(_, lines)| lines).collect())
    }

    fn fault(&self, frame: &Frame, block: [u32; 3]) -> CpuError {
        let param = usize::try_from(frame.fault_param).ok().and_then(|i| self.program.params.get(i)).map(|p| match p {
            Param::Global { name, .. } | Param::Scalar { name, .. } => name.clone(),
        });
        let message = match frame.fault {
            1 => format!("out-of-bounds access of `{}` at element or byte {}", param.unwrap_or_default(), frame.fault_index),
            2 => format!("out-of-bounds shared-memory access at byte {} (the block has {} bytes)", frame.fault_index, self.program.shared_bytes),
            3 => format!("misaligned vector access at byte {}", frame.fault_index),
            4 => "integer division by zero".to_string(),
            _ => usize::try_from(frame.fault_message).ok().and_then(|i| self.messages.get(i)).cloned().unwrap_or_else(|| "a check failed".into()),
        };
        let at = usize::try_from(frame.source).ok().and_then(|i| self.sources.get(i)).cloned();
        CpuError::Fault { message, block, thread: frame.fault_thread as u32, at }
    }
}

#[cfg(test)]
mod tests {
    use super::{float_atomics, FloatAtomics};

    fn plan(body: &str) -> FloatAtomics {
        let text = format!("lir k(x: ptr f32, y: ptr f32, n: ptr i32) threads(32) shared(0) {{\n  reg r0: f32\n{body}}}\n");
        let program = tl_compiler::lir::parse::parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        float_atomics(&program)
    }

    /// Float additions are deferred only into tensors nothing else touches; integer additions
    /// need neither.
    #[test]
    fn float_atomics_are_deferred_only_when_unobservable() {
        assert_eq!(plan("  red.add.global p2[cast.i64(tid)] += 1:i32\n"), FloatAtomics::None);
        assert_eq!(plan("  r0 = ld.global.f32 p0[cast.i64(tid)]\n  red.add.global p1[cast.i64(tid)] += r0\n"), FloatAtomics::Deferred);
        assert_eq!(plan("  r0 = ld.global.f32 p1[cast.i64(tid)]\n  red.add.global p1[0:i64] += r0\n"), FloatAtomics::InOrder);
        assert_eq!(plan("  st.global p1[cast.i64(tid)] = 0.0:f32\n  red.add.global p1[0:i64] += 1.0:f32\n"), FloatAtomics::InOrder);
        assert_eq!(plan("  if lt(tid, 4:i32) {\n    red.add.global p1[0:i64] += ld.global.f32 p1[1:i64]\n  }\n"), FloatAtomics::InOrder);
    }
}
