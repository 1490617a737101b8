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
//! Blocks run in parallel on all cores (in order when the program adds floats atomically, for
//! reproducible sums).
//!
//! `TL_CPU_DISASM=FILE` writes the machine code of the program compiled last (for profiling).

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
    entry: extern "C" fn(*mut Frame) -> i32,
    program: Program,
    /// Whether the program adds floats atomically (its blocks then run in order).
    float_atomics: bool,
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

/// Compiles `program` for this machine.
pub fn compile(program: &Program) -> Result<CompiledProgram, CpuError> {
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
    let mut module = JITModule::new(builder);
    let generated = codegen::generate(&mut module, program)?;
    module.finalize_definitions().map_err(|e| CpuError::Codegen(e.to_string()))?;
    let code = module.get_finalized_function(generated.id);
    // SAFETY: the function was generated with this signature (`codegen::generate`).
    let entry = unsafe { std::mem::transmute::<*const u8, extern "C" fn(*mut Frame) -> i32>(code) };
    let float_atomics = adds_floats_atomically(program, &program.body);
    Ok(CompiledProgram { _module: module, entry, program: program.clone(), float_atomics, sources: generated.sources, messages: generated.messages, prints: generated.prints, clif: generated.clif })
}

fn adds_floats_atomically(p: &Program, body: &[tl_compiler::lir::Stmt]) -> bool {
    use tl_compiler::lir::Stmt;
    body.iter().any(|s| match s {
        Stmt::AtomicAddGlobal { value, .. } => p.ty(value).is_float(),
        Stmt::If { then_body, else_body, .. } => adds_floats_atomically(p, then_body) || adds_floats_atomically(p, else_body),
        Stmt::For { body, .. } => adds_floats_atomically(p, body),
        _ => false,
    })
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

    /// Runs the program over `grid`, updating the tensors of `args`. Blocks run in parallel on
    /// all cores (`TL_CPU_THREADS` caps the number of threads), except in a program that adds
    /// floats atomically, whose blocks run in order so that the sums are reproducible (the
    /// simulator's order). A race-free program's results do not depend on the thread count; a
    /// fault is reported for the first faulting block in grid order.
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
        let workers = if self.float_atomics { 1 } else { cap.min(total).max(1) };
        let next = AtomicUsize::new(0);
        // The first faulting block in grid order (usize::MAX: none yet).
        let first_fault = AtomicUsize::new(usize::MAX);
        let faults: Mutex<Vec<(usize, CpuError)>> = Mutex::new(Vec::new());
        let printed: Mutex<Vec<(usize, Vec<String>)>> = Mutex::new(Vec::new());
        let shared_inputs = SharedInputs { buffers: &buffers, scalars: &scalars };
        let work = || {
            let inputs = &shared_inputs;
            let threads = p.block_threads as usize;
            let mut registers = vec![0u64; threads * (p.vars.len() + helpers::SCRATCH)];
            let mut shared = vec![0u8; p.shared_bytes.max(1)];
            let mut printer = Printer { prints: self.prints.as_ptr(), lines: Vec::new() };
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
                };
                if (self.entry)(&mut frame) != 0 {
                    first_fault.fetch_min(i, Ordering::Relaxed);
                    let error = self.fault(&frame, [x as u32, y as u32, z as u32]);
                    faults.lock().unwrap_or_else(|e| e.into_inner()).push((i, error));
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
