//! The thread-level simulator: runs a LIR program for every thread of every block, the threads
//! of a block in lockstep, with byte-accurate shared memory and bounds-checked global memory.
//!
//! Expects a LIR program from `tl_compiler::lower` and arguments already checked against the
//! kernel's signature (see `interp::check_args`). Guarantees that any access outside a global
//! tensor or the shared buffer, a division by zero, loop bounds that differ between threads,
//! a barrier reached by only some threads, a shared-memory race and a vector access whose byte
//! offset is not a multiple of its size are reported as [`SimtError`]s, never panics. Global
//! buffers are modelled as starting 256-byte aligned (as device allocations do), so a vector
//! access is aligned exactly when its byte offset in the buffer is a multiple of its size.
//!
//! Every error raised by an instruction carries its [`Location`]: the span and text of the
//! block-IR instruction named by the last [`Stmt::Source`] executed before it (threads run in
//! lockstep, so this is the same for the whole block).
//!
//! Shared-memory races: between two barriers, a thread reading a byte that another thread
//! wrote, a thread writing a byte that another thread read, or two threads writing the same
//! byte, is a race (the order in which this simulator happens to run the threads is one of
//! many the hardware may choose). The first race is reported with both threads, the byte and
//! the locations of both accesses. A thread reading back its own write is fine.
//!
//! Arithmetic follows the LIR's register types: integers wrap at their width, float results
//! are rounded to their type (transcendentals are computed exactly in f64 and then rounded,
//! where the GPU uses approximations: compare floats with a tolerance); `prmt` and `lop3`
//! follow the PTX ISA's definitions. This simulator is written from the LIR's definition,
//! not from the lowering, so that it checks the lowering.

use crate::interp::Arg;
use crate::tensor::HostTensor;
use std::collections::HashMap;
use std::fmt;
use tl_compiler::diagnostics::Span;
use tl_compiler::dtype::DType;
use tl_compiler::number::Number;
use tl_compiler::lir::{BinaryOp, CmpOp, Expr, Param, Program, Stmt, Ty, UnaryOp};

/// Where an instruction comes from: the span of the block-IR instruction in the kernel source
/// and its IR text (from the last [`Stmt::Source`] before it); `None` before the first one.
pub type Location = Option<(Span, String)>;

/// What a thread did to a shared byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    Read,
    Write,
}

/// One side of a shared-memory race.
#[derive(Clone, Debug, PartialEq)]
pub struct Access {
    pub thread: usize,
    pub kind: AccessKind,
    pub at: Location,
}

#[derive(Debug, PartialEq)]
pub enum SimtError {
    GlobalOutOfBounds { block: [u32; 3], thread: usize, what: &'static str, param: String, index: i64, len: usize, at: Location },
    SharedOutOfBounds { block: [u32; 3], thread: usize, offset: i64, size: usize, bytes: usize, at: Location },
    DivisionByZero { block: [u32; 3], thread: usize, at: Location },
    DivergentLoop { block: [u32; 3], at: Location },
    DivergentBarrier { block: [u32; 3], at: Location },
    /// A warp-wide instruction (`mma.sync`, `shfl.sync`) not executed by every thread, or in a
    /// block whose size is not a multiple of the warp.
    DivergentWarpInstruction { block: [u32; 3], what: &'static str, at: Location },
    /// `second` touched shared byte `byte` after `first` did, with no barrier between them,
    /// from another thread, and at least one of the two wrote it.
    SharedRace { block: [u32; 3], byte: usize, first: Access, second: Access },
    /// A shared byte accessed while a `cp.async` started by `copier` (and not yet retired by
    /// its `cp.async.wait_group`) will still write it.
    CopyInFlight { block: [u32; 3], thread: usize, byte: usize, copier: usize, at: Location },
    /// A shared byte read that nothing in this block wrote (on a GPU it holds whatever the
    /// previous block on the SM left there).
    SharedUninitialized { block: [u32; 3], thread: usize, byte: usize, at: Location },
    /// A `check` statement of the program (a condition the lowering relies on, such as a tile
    /// lying inside its shared tensor) was false.
    CheckFailed { block: [u32; 3], message: String, at: Location },
    /// A `cp.async` whose size is not 4, 8 or 16 bytes, whose addresses are not multiples of
    /// it, or whose source-size is outside `0..=size`.
    BadCopy { block: [u32; 3], thread: usize, message: String, at: Location },
    /// A LIR statement the simulator does not implement yet.
    Unsupported { block: [u32; 3], what: String, at: Location },
    BadArgument { index: usize, name: String, message: String },
    /// A vector access whose byte offset is not a multiple of its size (buffers are modelled
    /// as starting 256-byte aligned, like device allocations, so the offset decides).
    GlobalMisaligned { block: [u32; 3], thread: usize, what: &'static str, param: String, byte_offset: i64, size: usize, at: Location },
    /// A shared vector access whose byte offset is not a multiple of its size.
    SharedMisaligned { block: [u32; 3], thread: usize, offset: i64, size: usize, at: Location },
}

impl SimtError {
    /// The message without the location.
    pub fn message(&self) -> String {
        match self {
            SimtError::GlobalOutOfBounds { block, thread, what, param, index, len, .. } => {
                format!("{what} index {index} is outside `{param}` ({len} elements) in block {block:?}, thread {thread}")
            }
            SimtError::SharedOutOfBounds { block, thread, offset, size, bytes, .. } => format!(
                "shared-memory access at byte {offset} (+{size}) is outside the {bytes}-byte buffer in block {block:?}, thread {thread}"
            ),
            SimtError::DivisionByZero { block, thread, .. } => {
                format!("integer division by zero in block {block:?}, thread {thread}")
            }
            SimtError::DivergentLoop { block, .. } => format!("loop bounds differ between the threads of block {block:?}"),
            SimtError::DivergentBarrier { block, .. } => {
                format!("a barrier is reached by only some threads of block {block:?}")
            }
            SimtError::DivergentWarpInstruction { block, what, .. } => {
                format!("the warp-wide `{what}` is executed by only some threads of block {block:?} (or the block is not whole warps)")
            }
            SimtError::SharedRace { block, byte, first, second } => {
                let (verb, past) = match (second.kind, first.kind) {
                    (AccessKind::Read, _) => ("reads", "wrote"),
                    (AccessKind::Write, AccessKind::Read) => ("writes", "read"),
                    (AccessKind::Write, AccessKind::Write) => ("writes", "wrote"),
                };
                format!(
                    "shared-memory race: thread {} {verb} byte {byte} that thread {} {past} since the last barrier (block {block:?})",
                    second.thread, first.thread
                )
            }
            SimtError::CopyInFlight { block, thread, byte, copier, .. } => format!(
                "thread {thread} accesses shared byte {byte} while a cp.async of thread {copier} into it is still in flight (block {block:?}): wait for its group first"
            ),
            SimtError::SharedUninitialized { block, thread, byte, .. } => format!(
                "thread {thread} reads shared byte {byte}, which nothing in block {block:?} wrote: shared memory starts undefined"
            ),
            SimtError::CheckFailed { block, message, .. } => format!("{message} (block {block:?})"),
            SimtError::BadCopy { block, thread, message, .. } => format!("cp.async in block {block:?}, thread {thread}: {message}"),
            SimtError::Unsupported { block, what, .. } => format!("the simulator does not implement `{what}` yet (block {block:?})"),
            SimtError::BadArgument { index, name, message } => format!("argument {index} (`{name}`): {message}"),
            SimtError::GlobalMisaligned { block, thread, what, param, byte_offset, size, .. } => format!(
                "misaligned {what} of {size} bytes at byte {byte_offset} of `{param}` (not a multiple of {size}) in block {block:?}, thread {thread}"
            ),
            SimtError::SharedMisaligned { block, thread, offset, size, .. } => format!(
                "misaligned shared vector load of {size} bytes at shared byte {offset} (not a multiple of {size}) in block {block:?}, thread {thread}"
            ),
        }
    }

    /// The location of the faulting instruction (for a race, the later access).
    pub fn location(&self) -> Option<&(Span, String)> {
        match self {
            SimtError::GlobalOutOfBounds { at, .. }
            | SimtError::SharedOutOfBounds { at, .. }
            | SimtError::DivisionByZero { at, .. }
            | SimtError::DivergentLoop { at, .. }
            | SimtError::DivergentBarrier { at, .. }
            | SimtError::DivergentWarpInstruction { at, .. }
            | SimtError::CopyInFlight { at, .. }
            | SimtError::SharedUninitialized { at, .. }
            | SimtError::CheckFailed { at, .. }
            | SimtError::BadCopy { at, .. }
            | SimtError::Unsupported { at, .. }
            | SimtError::GlobalMisaligned { at, .. }
            | SimtError::SharedMisaligned { at, .. } => at.as_ref(),
            SimtError::SharedRace { second, .. } => second.at.as_ref(),
            SimtError::BadArgument { .. } => None,
        }
    }
}

impl fmt::Display for SimtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())?;
        let place = |a: &Location| match a {
            Some((span, what)) => format!("`{what}` (source bytes {}..{})", span.start, span.end),
            None => "an unknown instruction".to_string(),
        };
        match self {
            SimtError::SharedRace { first, second, .. } => {
                write!(f, ", at {}; the other access at {}", place(&second.at), place(&first.at))
            }
            e => match e.location() {
                Some(_) => write!(f, ", at {}", place(&e.location().cloned())),
                None => Ok(()),
            },
        }
    }
}

impl std::error::Error for SimtError {}

/// What a launch executed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// LIR statements executed, summed over threads (a statement run by 128 active threads
    /// counts 128; `Source` markers do not count).
    pub thread_instructions: u64,
    /// Barriers executed (per block).
    pub barriers: u64,
    /// `cp.async` copies started, summed over threads.
    pub async_copies: u64,
    pub blocks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum V {
    I(i64),
    F(f64),
}

impl V {
    fn i(self) -> i64 {
        match self {
            V::I(v) => v,
            V::F(f) => f as i64,
        }
    }
    fn f(self) -> f64 {
        match self {
            V::F(f) => f,
            V::I(v) => v as f64,
        }
    }

    /// The same value bit for bit (so a NaN equals itself, and -0 differs from +0).
    fn same_bits(self, other: V) -> bool {
        match (self, other) {
            (V::I(a), V::I(b)) => a == b,
            (V::F(a), V::F(b)) => a.to_bits() == b.to_bits(),
            _ => false,
        }
    }
}

fn bits(ty: Ty) -> u32 {
    match ty {
        Ty::I1 => 1,
        Ty::I8 => 8,
        Ty::I16 | Ty::F16 | Ty::BF16 => 16,
        Ty::I32 | Ty::F32 | Ty::F16x2 | Ty::BF16x2 => 32,
        Ty::I64 | Ty::F64 => 64,
    }
}

/// `f` applied to each half of the packed pairs `xs` (raw 32-bit registers of `ty`), each
/// result rounded to the half's type: the packed instructions round each half as its own
/// operation.
fn packed_lanes(ty: Ty, xs: &[i64], f: impl Fn(&[f64]) -> f64) -> V {
    let lane = ty.lane();
    let mut out = 0u32;
    for half in 0..2 {
        let values: Vec<f64> = xs.iter().map(|x| decode(lane, &(((*x as u32) >> (16 * half)) as u16).to_le_bytes()).f()).collect();
        let mut bytes = [0u8; 2];
        encode(lane, V::F(round_float(lane, f(&values))), &mut bytes);
        out |= (u16::from_le_bytes(bytes) as u32) << (16 * half);
    }
    V::I(out as i32 as i64)
}

/// Wraps an integer to the signed range of `ty` (i1 is 0 or 1).
fn wrap(ty: Ty, v: i64) -> i64 {
    match ty {
        Ty::I1 => v & 1,
        Ty::I64 => v,
        t => {
            let b = bits(t);
            (v << (64 - b)) >> (64 - b)
        }
    }
}

/// The dtype a float register type holds (f64 for the others, which hold no float).
fn float_dtype(ty: Ty) -> DType {
    match ty {
        Ty::F16 => DType::F16,
        Ty::BF16 => DType::BF16,
        Ty::F32 => DType::F32,
        _ => DType::F64,
    }
}

fn round_float(ty: Ty, v: f64) -> f64 {
    float_dtype(ty).round(v)
}

fn unsigned_of(ty: Ty, v: i64) -> i64 {
    match ty {
        Ty::I1 => v & 1,
        Ty::I64 => v,
        t => v & ((1i64 << bits(t)) - 1),
    }
}

/// Errors inside the simulator are boxed: every `eval` returns a `Result`, which stays small.
type Fault = Box<SimtError>;

/// No thread.
const NONE: u32 = u32::MAX;

/// What happened to one shared byte since the last barrier: accesses stamped with an older
/// epoch than the block's current one are forgotten (so a barrier costs nothing per byte).
/// One writer is enough (a second one is a race), and two distinct readers (any writer then
/// differs from at least one of them). `*_loc` are location ids (0: none).
#[derive(Clone, Copy, Default)]
struct ByteState {
    write_epoch: u32,
    writer: u32,
    write_loc: u32,
    read_epoch: u32,
    reader: u32,
    read_loc: u32,
    reader2: u32,
    read_loc2: u32,
}

struct Block<'a> {
    program: &'a Program,
    block: [u32; 3],
    threads: usize,
    regs: Vec<Vec<V>>,
    shared: Vec<u8>,
    args: &'a mut [Arg],
    /// Race-detection state of every shared byte.
    shadow: Vec<ByteState>,
    /// Whether anything in this block wrote each shared byte (reading one that nothing wrote
    /// is an error).
    written: Vec<bool>,
    /// Advances at every barrier and every block.
    epoch: u32,
    /// The id of the current location (0: none yet in this block).
    cur: u32,
    /// Location ids of the `Source` statements, by address; `locs[id - 1]` is the location.
    source_ids: HashMap<*const Stmt, u32>,
    locs: Vec<(Span, &'a str)>,
    stats: Stats,
    /// Per thread: copies started since its last commit, and its committed groups, oldest
    /// first.
    copies: Vec<ThreadCopies>,
    /// Per shared byte: the thread + 1 of an unfinished copy into it (0: none).
    in_flight: Vec<u32>,
    /// Lines printed so far (threads in order within each `Print`).
    output: Vec<String>,
}

/// One `cp.async`: the bytes it read from global memory when it started, and where they go.
struct PendingCopy {
    offset: usize,
    data: Vec<u8>,
    /// The location id of the `cp.async`.
    loc: u32,
}

#[derive(Default)]
struct ThreadCopies {
    open: Vec<PendingCopy>,
    groups: std::collections::VecDeque<Vec<PendingCopy>>,
}

/// Runs `program` over the whole grid.
pub fn launch(program: &Program, grid: [u32; 3], args: &mut [Arg]) -> Result<(), SimtError> {
    launch_counted(program, grid, args).map(|_| ())
}

/// Runs `program` over the whole grid and says how much it executed; printed lines go to
/// standard output.
pub fn launch_counted(program: &Program, grid: [u32; 3], args: &mut [Arg]) -> Result<Stats, SimtError> {
    let (stats, output) = launch_with_output(program, grid, args)?;
    if !output.is_empty() {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for line in output {
            let _ = writeln!(out, "{line}");
        }
    }
    Ok(stats)
}

/// [`launch_counted`], returning the printed lines (in the order the threads ran) instead of
/// printing them.
pub fn launch_with_output(program: &Program, grid: [u32; 3], args: &mut [Arg]) -> Result<(Stats, Vec<String>), SimtError> {
    if args.len() != program.params.len() {
        return Err(SimtError::BadArgument {
            index: args.len(),
            name: String::new(),
            message: format!("expected {} arguments, found {}", program.params.len(), args.len()),
        });
    }
    for (i, (p, a)) in program.params.iter().zip(args.iter()).enumerate() {
        let ok = match (p, a) {
            (Param::Global { dtype, .. }, Arg::Tensor(t)) => t.dtype == *dtype,
            (Param::Scalar { .. }, Arg::Scalar(_)) => true,
            _ => false,
        };
        if !ok {
            let name = match p {
                Param::Global { name, .. } | Param::Scalar { name, .. } => name.clone(),
            };
            return Err(SimtError::BadArgument { index: i, name, message: "wrong kind or dtype".into() });
        }
    }
    let threads = program.block_threads as usize;
    let mut b = Block {
        program,
        block: [0; 3],
        threads,
        regs: vec![vec![V::I(0); program.vars.len()]; threads],
        shared: vec![0; program.shared_bytes],
        args,
        shadow: vec![ByteState::default(); program.shared_bytes],
        written: vec![false; program.shared_bytes],
        epoch: 0,
        cur: 0,
        source_ids: HashMap::new(),
        locs: Vec::new(),
        stats: Stats::default(),
        copies: (0..threads).map(|_| ThreadCopies::default()).collect(),
        in_flight: vec![0; program.shared_bytes],
        output: Vec::new(),
    };
    b.collect_sources(&program.body);
    let mask = vec![true; threads];
    let mut progress = crate::progress::Progress::new(format!("simt `{}`", program.name), grid);
    for z in 0..grid[2] {
        for y in 0..grid[1] {
            for x in 0..grid[0] {
                b.block = [x, y, z];
                if x | y | z != 0 {
                    b.regs.iter_mut().for_each(|r| r.fill(V::I(0)));
                    b.shared.fill(0);
                    b.written.fill(false);
                    // Copies a block leaves unfinished are dropped with it.
                    b.copies.iter_mut().for_each(|c| *c = ThreadCopies::default());
                    b.in_flight.fill(0);
                }
                b.cur = 0;
                b.next_epoch();
                b.stats.blocks += 1;
                b.exec(&program.body, &mask, threads as u64).map_err(|e| *e)?;
                progress.block_done(b.stats.blocks);
            }
        }
    }
    Ok((b.stats, b.output))
}

impl<'a> Block<'a> {
    fn collect_sources(&mut self, body: &'a [Stmt]) {
        for s in body {
            match s {
                Stmt::Source { span, what } => {
                    self.locs.push((*span, what.as_str()));
                    self.source_ids.insert(s as *const Stmt, self.locs.len() as u32);
                }
                Stmt::If { then_body, else_body, .. } => {
                    self.collect_sources(then_body);
                    self.collect_sources(else_body);
                }
                Stmt::For { body, .. } => self.collect_sources(body),
                _ => {}
            }
        }
    }

    /// Forgets every shared access (a barrier, or a new block).
    fn next_epoch(&mut self) {
        if self.epoch == u32::MAX {
            self.shadow.fill(ByteState::default());
            self.epoch = 0;
        }
        self.epoch += 1;
    }

    fn location(&self, id: u32) -> Location {
        (id > 0).then(|| {
            let (span, what) = self.locs[id as usize - 1];
            (span, what.to_string())
        })
    }

    /// The location of the instruction being executed.
    fn at(&self) -> Location {
        self.location(self.cur)
    }

    fn race(&self, byte: usize, first: (u32, AccessKind, u32), second: (usize, AccessKind)) -> SimtError {
        SimtError::SharedRace {
            block: self.block,
            byte,
            first: Access { thread: first.0 as usize, kind: first.1, at: self.location(first.2) },
            second: Access { thread: second.0, kind: second.1, at: self.at() },
        }
    }

    /// Records thread `t` reading `range` of shared memory; a race if another thread wrote
    /// a byte of it since the last barrier.
    fn shared_read(&mut self, range: std::ops::Range<usize>, t: usize) -> Result<(), Fault> {
        self.check_not_in_flight(range.clone(), t)?;
        let (epoch, loc, me) = (self.epoch, self.cur, t as u32);
        for b in range {
            if !self.written[b] {
                return Err(Box::new(SimtError::SharedUninitialized { block: self.block, thread: t, byte: b, at: self.at() }));
            }
            let mut s = self.shadow[b];
            if s.write_epoch == epoch && s.writer != me {
                return Err(Box::new(self.race(b, (s.writer, AccessKind::Write, s.write_loc), (t, AccessKind::Read))));
            }
            if s.read_epoch != epoch {
                s.read_epoch = epoch;
                s.reader = me;
                s.read_loc = loc;
                s.reader2 = NONE;
            } else if s.reader != me && s.reader2 == NONE {
                s.reader2 = me;
                s.read_loc2 = loc;
            }
            self.shadow[b] = s;
        }
        Ok(())
    }

    /// Records thread `t` writing `range` of shared memory; a race if another thread read or
    /// wrote a byte of it since the last barrier.
    fn shared_write(&mut self, range: std::ops::Range<usize>, t: usize) -> Result<(), Fault> {
        self.check_not_in_flight(range.clone(), t)?;
        self.record_write(range, t)
    }

    /// An error if an unfinished `cp.async` will still write a byte of `range`.
    fn check_not_in_flight(&self, range: std::ops::Range<usize>, t: usize) -> Result<(), Fault> {
        match range.clone().find(|&b| self.in_flight[b] != 0) {
            Some(byte) => Err(Box::new(SimtError::CopyInFlight {
                block: self.block,
                thread: t,
                byte,
                copier: self.in_flight[byte] as usize - 1,
                at: self.at(),
            })),
            None => Ok(()),
        }
    }

    /// Race detection for thread `t` writing `range` (a store, or a copy landing).
    fn record_write(&mut self, range: std::ops::Range<usize>, t: usize) -> Result<(), Fault> {
        let (epoch, loc, me) = (self.epoch, self.cur, t as u32);
        for b in range {
            let mut s = self.shadow[b];
            if s.write_epoch == epoch && s.writer != me {
                return Err(Box::new(self.race(b, (s.writer, AccessKind::Write, s.write_loc), (t, AccessKind::Write))));
            }
            if s.read_epoch == epoch {
                if s.reader != me {
                    return Err(Box::new(self.race(b, (s.reader, AccessKind::Read, s.read_loc), (t, AccessKind::Write))));
                }
                if s.reader2 != NONE {
                    return Err(Box::new(self.race(b, (s.reader2, AccessKind::Read, s.read_loc2), (t, AccessKind::Write))));
                }
            }
            s.write_epoch = epoch;
            s.writer = me;
            s.write_loc = loc;
            self.shadow[b] = s;
            self.written[b] = true;
        }
        Ok(())
    }

    fn exec(&mut self, body: &'a [Stmt], mask: &[bool], active: u64) -> Result<(), Fault> {
        for s in body {
            if !matches!(s, Stmt::Source { .. }) {
                self.stats.thread_instructions += active;
            }
            match s {
                Stmt::Assign(v, e) => {
                    for t in 0..self.threads {
                        if mask[t] {
                            let x = self.eval(e, t)?;
                            self.regs[t][v.0 as usize] = x;
                        }
                    }
                }
                Stmt::AssignUniform(v, e) => {
                    let mut first: Option<(usize, V)> = None;
                    for t in 0..self.threads {
                        if mask[t] {
                            let x = self.eval(e, t)?;
                            match first {
                                None => first = Some((t, x)),
                                // Bitwise: a NaN is the same NaN everywhere.
                                Some((t0, x0)) if !x0.same_bits(x) => {
                                    let show = |v: V| match v {
                                        V::I(n) => n.to_string(),
                                        V::F(f) => format!("{f:e}"),
                                    };
                                    let message = format!("a value the block relies on being the same in every thread differs: thread {t0} has {}, thread {t} has {}", show(x0), show(x));
                                    return Err(Box::new(SimtError::CheckFailed { block: self.block, message, at: self.at() }));
                                }
                                Some(_) => {}
                            }
                            self.regs[t][v.0 as usize] = x;
                        }
                    }
                }
                Stmt::StoreGlobal { param, index, value } => {
                    for t in 0..self.threads {
                        if mask[t] {
                            let i = self.eval(index, t)?.i();
                            let x = self.eval(value, t)?;
                            let ty = self.program.ty(value);
                            let tensor = self.tensor(*param, i, t, "store")?;
                            // Registers of integer type hold the code (low-precision floats in
                            // i8 containers included); floats hold values.
                            match x {
                                V::F(f) => tensor.set(i as usize, f),
                                V::I(n) if tensor.dtype == DType::Bool => tensor.set(i as usize, (n != 0) as u8 as f64),
                                V::I(n) => tensor.set_code(i as usize, unsigned_of(ty, n) as u64),
                            }
                        }
                    }
                }
                Stmt::AtomicAddGlobal { param, index, value } => {
                    // Thread by thread in index order: one of the orders the GPU may take.
                    for t in 0..self.threads {
                        if mask[t] {
                            let i = self.eval(index, t)?.i();
                            let x = self.eval(value, t)?;
                            let ty = self.program.ty(value);
                            let tensor = self.tensor(*param, i, t, "atomic addition")?;
                            let i = i as usize;
                            match x {
                                // The sum of two values of at most 32 bits is rounded once by
                                // `set` (f64 holds it closely enough for one correct rounding).
                                V::F(f) => tensor.set(i, tensor.get(i) + f),
                                V::I(n) => {
                                    let mask = tl_compiler::dtype::mask(tensor.dtype.bits());
                                    let sum = tensor.code(i).wrapping_add(unsigned_of(ty, n) as u64) & mask;
                                    tensor.set_code(i, sum);
                                }
                            }
                        }
                    }
                }
                Stmt::StoreGlobalBits { param, bit_index, bits, value } => {
                    for t in 0..self.threads {
                        if mask[t] {
                            let bit = self.eval(bit_index, t)?.i();
                            let code = self.eval(value, t)?.i() as u64;
                            let buffer = self.packed_buffer(*param, bit, *bits, t, "store")?;
                            write_packed_at(buffer, bit as usize, *bits, code);
                        }
                    }
                }
                Stmt::StoreShared { offset, value } => {
                    let ty = self.program.ty(value);
                    for t in 0..self.threads {
                        if mask[t] {
                            let off = self.eval(offset, t)?.i();
                            let x = self.eval(value, t)?;
                            let range = self.shared_range(off, ty, t)?;
                            self.shared_write(range.clone(), t)?;
                            encode(ty, x, &mut self.shared[range]);
                        }
                    }
                }
                Stmt::If { cond, then_body, else_body } => {
                    let mut then_mask = vec![false; self.threads];
                    let mut else_mask = vec![false; self.threads];
                    let (mut then_active, mut else_active) = (0u64, 0u64);
                    for t in 0..self.threads {
                        if mask[t] {
                            if self.eval(cond, t)?.i() != 0 {
                                then_mask[t] = true;
                                then_active += 1;
                            } else {
                                else_mask[t] = true;
                                else_active += 1;
                            }
                        }
                    }
                    if then_active > 0 {
                        self.exec(then_body, &then_mask, then_active)?;
                    }
                    if else_active > 0 {
                        self.exec(else_body, &else_mask, else_active)?;
                    }
                }
                Stmt::For { var, start, end, body } => {
                    let mut bounds = None;
                    for t in 0..self.threads {
                        if mask[t] {
                            let b = (self.eval(start, t)?.i(), self.eval(end, t)?.i());
                            if bounds.is_some_and(|x| x != b) {
                                return Err(Box::new(SimtError::DivergentLoop { block: self.block, at: self.at() }));
                            }
                            bounds = Some(b);
                        }
                    }
                    let Some((lo, hi)) = bounds else { continue };
                    for i in lo..hi {
                        for t in 0..self.threads {
                            if mask[t] {
                                self.regs[t][var.0 as usize] = V::I(wrap(Ty::I32, i));
                            }
                        }
                        self.exec(body, mask, active)?;
                    }
                }
                Stmt::Source { .. } => {
                    self.cur = self.source_ids.get(&(s as *const Stmt)).copied().unwrap_or(0);
                }
                Stmt::Mma { kind, a, b, c } => self.mma(*kind, a, b, c, mask)?,
                Stmt::ShuffleXor { dst, src, lane_mask } => self.shuffle_xor(*dst, *src, *lane_mask, mask)?,
                Stmt::LdMatrix { dst, row_offset, trans } => self.ldmatrix(dst, row_offset, *trans, mask)?,
                Stmt::CopyAsync { offset, param, byte_index, bytes, src_bytes } => {
                    for t in 0..self.threads {
                        if mask[t] {
                            self.copy_async(t, offset, *param, byte_index, *bytes, src_bytes)?;
                            self.stats.async_copies += 1;
                        }
                    }
                }
                Stmt::Print { label, coords, value, unsigned } => {
                    use tl_compiler::lir::{format_print_line, PrintValue};
                    for t in 0..self.threads {
                        if mask[t] {
                            let mut cs = Vec::with_capacity(coords.len());
                            for c in coords {
                                cs.push(self.eval(c, t)?.i());
                            }
                            let v = match self.eval(value, t)? {
                                V::F(x) => PrintValue::Float(x),
                                V::I(i) if *unsigned => PrintValue::Int(i as u64 as i128),
                                V::I(i) => PrintValue::Int(i as i128),
                            };
                            self.output.push(format_print_line(self.block, label, &cs, v));
                        }
                    }
                }
                Stmt::StoreSharedBits { bit_offset, bits, value } => {
                    for t in 0..self.threads {
                        if mask[t] {
                            let bit = self.eval(bit_offset, t)?.i();
                            let code = self.eval(value, t)?.i() as u64;
                            let range = self.shared_bits_range(bit, *bits, t)?;
                            self.shared_write(range, t)?;
                            write_packed_at(&mut self.shared, bit as usize, *bits, code);
                        }
                    }
                }
                Stmt::CommitGroup => {
                    for t in 0..self.threads {
                        if mask[t] {
                            let open = std::mem::take(&mut self.copies[t].open);
                            self.copies[t].groups.push_back(open);
                        }
                    }
                }
                Stmt::WaitGroup(n) => {
                    for t in 0..self.threads {
                        if mask[t] {
                            while self.copies[t].groups.len() > *n as usize {
                                let group = self.copies[t].groups.pop_front().expect("non-empty");
                                for copy in group {
                                    self.land(t, copy)?;
                                }
                            }
                        }
                    }
                }
                Stmt::LoadGlobalVector { dst, param, byte_offset, ty } => {
                    let width = ty.bytes();
                    for t in 0..self.threads {
                        if mask[t] {
                            let off = self.eval(byte_offset, t)?.i();
                            let range = self.vector_range(*param, off, dst.len() * width, t, "vector load")?;
                            let buffer = self.buffer(*param)?;
                            let values: Vec<V> =
                                buffer[range].chunks(width).map(|b| decode(*ty, b)).collect();
                            for (v, x) in dst.iter().zip(values) {
                                self.regs[t][v.0 as usize] = x;
                            }
                        }
                    }
                }
                Stmt::LoadSharedVector { dst, offset, ty } => {
                    let width = ty.bytes();
                    let size = dst.len() * width;
                    if !(1..=16).contains(&size) || !size.is_power_of_two() {
                        return Err(Box::new(SimtError::Unsupported { block: self.block, what: format!("shared vector load of {size} bytes"), at: self.at() }));
                    }
                    for t in 0..self.threads {
                        if mask[t] {
                            let off = self.eval(offset, t)?.i();
                            if off.rem_euclid(size as i64) != 0 {
                                return Err(Box::new(SimtError::SharedMisaligned { block: self.block, thread: t, offset: off, size, at: self.at() }));
                            }
                            let range = self.shared_bytes_range(off, size, t)?;
                            self.shared_read(range.clone(), t)?;
                            let values: Vec<V> = self.shared[range].chunks(width).map(|b| decode(*ty, b)).collect();
                            for (v, x) in dst.iter().zip(values) {
                                self.regs[t][v.0 as usize] = x;
                            }
                        }
                    }
                }
                Stmt::StoreGlobalVector { param, byte_offset, values, ty } => {
                    let width = ty.bytes();
                    for t in 0..self.threads {
                        if mask[t] {
                            let off = self.eval(byte_offset, t)?.i();
                            let xs = values.iter().map(|e| self.eval(e, t)).collect::<Result<Vec<V>, Fault>>()?;
                            let range = self.vector_range(*param, off, values.len() * width, t, "vector store")?;
                            let buffer = self.buffer(*param)?;
                            for (chunk, x) in buffer[range].chunks_mut(width).zip(xs) {
                                encode(*ty, x, chunk);
                            }
                        }
                    }
                }
                Stmt::Check { cond, message, .. } => {
                    for t in 0..self.threads {
                        if mask[t] && self.eval(cond, t)?.i() == 0 {
                            return Err(Box::new(SimtError::CheckFailed { block: self.block, message: message.clone(), at: self.at() }));
                        }
                    }
                }
                Stmt::Barrier => {
                    if active != self.threads as u64 {
                        return Err(Box::new(SimtError::DivergentBarrier { block: self.block, at: self.at() }));
                    }
                    self.stats.barriers += 1;
                    self.next_epoch();
                }
                // Statements added to the LIR after this simulator was written.
                #[allow(unreachable_patterns)]
                other => {
                    let what = format!("{other:?}");
                    let what = what.split([' ', '{', '(']).next().unwrap_or("").to_string();
                    return Err(Box::new(SimtError::Unsupported { block: self.block, what, at: self.at() }));
                }
            }
        }
        Ok(())
    }

    /// Thread `t` starts a `cp.async`: reads its source now (`src_bytes` bytes, zeros after
    /// them) and marks its destination bytes in flight until a `cp.async.wait_group` lands it.
    fn copy_async(&mut self, t: usize, offset: &Expr, param: usize, byte_index: &Expr, bytes: u32, src_bytes: &Expr) -> Result<(), Fault> {
        let off = self.eval(offset, t)?.i();
        let index = self.eval(byte_index, t)?.i();
        let read = self.eval(src_bytes, t)?.i();
        let bad = |s: &Self, message: String| Box::new(SimtError::BadCopy { block: s.block, thread: t, message, at: s.at() });
        if !matches!(bytes, 4 | 8 | 16) {
            return Err(bad(self, format!("a copy of {bytes} bytes (4, 8 or 16 are allowed)")));
        }
        let size = bytes as i64;
        if off.rem_euclid(size) != 0 || index.rem_euclid(size) != 0 {
            return Err(bad(self, format!("shared byte {off} or global byte {index} is not a multiple of the copy size {bytes}")));
        }
        if !(0..=size).contains(&read) {
            return Err(bad(self, format!("source size {read} is outside 0..={bytes}")));
        }
        let mut data = vec![0u8; bytes as usize];
        if read > 0 {
            let len = self.buffer(param)?.len();
            if index < 0 || (index + read) as usize > len {
                return Err(Box::new(self.out_of_bounds(param, index, len, t, "cp.async byte")));
            }
            data[..read as usize].copy_from_slice(&self.buffer(param)?[index as usize..(index + read) as usize]);
        }
        if off < 0 || (off + size) as usize > self.shared.len() {
            return Err(Box::new(SimtError::SharedOutOfBounds { block: self.block, thread: t, offset: off, size: bytes as usize, bytes: self.shared.len(), at: self.at() }));
        }
        let range = off as usize..(off + size) as usize;
        // Another access or copy to these bytes before the copy lands is a bug either way. The
        // bytes may be written at any moment from now until the copy lands: a write now, for
        // race detection, and another when it lands.
        self.check_not_in_flight(range.clone(), t)?;
        self.record_write(range.clone(), t)?;
        for b in range {
            self.in_flight[b] = t as u32 + 1;
        }
        let loc = self.cur;
        self.copies[t].open.push(PendingCopy { offset: off as usize, data, loc });
        Ok(())
    }

    /// A copy of thread `t` lands: its bytes become a write by `t` (visible to other threads
    /// after the next barrier), attributed to the `cp.async` that started it.
    fn land(&mut self, t: usize, copy: PendingCopy) -> Result<(), Fault> {
        let range = copy.offset..copy.offset + copy.data.len();
        for b in range.clone() {
            self.in_flight[b] = 0;
        }
        let wait_loc = std::mem::replace(&mut self.cur, copy.loc);
        let recorded = self.record_write(range.clone(), t);
        self.cur = wait_loc;
        recorded?;
        self.shared[range].copy_from_slice(&copy.data);
        Ok(())
    }

    fn not_a_tensor(&self, param: usize) -> SimtError {
        let name = match &self.program.params[param] {
            Param::Global { name, .. } | Param::Scalar { name, .. } => name.clone(),
        };
        SimtError::BadArgument { index: param, name, message: "not a tensor".into() }
    }

    fn out_of_bounds(&self, param: usize, index: i64, len: usize, thread: usize, what: &'static str) -> SimtError {
        let name = match &self.program.params[param] {
            Param::Global { name, .. } | Param::Scalar { name, .. } => name.clone(),
        };
        SimtError::GlobalOutOfBounds { block: self.block, thread, what, param: name, index, len, at: self.at() }
    }

    fn tensor(&mut self, param: usize, index: i64, thread: usize, what: &'static str) -> Result<&mut HostTensor, Fault> {
        let len = match &self.args[param] {
            Arg::Tensor(t) => t.len(),
            Arg::Scalar(_) => return Err(Box::new(self.not_a_tensor(param))),
        };
        if index < 0 || index as usize >= len {
            return Err(Box::new(self.out_of_bounds(param, index, len, thread, what)));
        }
        match &mut self.args[param] {
            Arg::Tensor(t) => Ok(t),
            Arg::Scalar(_) => Err(Box::new(SimtError::BadArgument { index: param, name: String::new(), message: "not a tensor".into() })),
        }
    }

    /// The byte buffer of tensor `param`, after checking that bits `[bit, bit + bits)` lie in
    /// it (a packed access is out of bounds when any of its bits is).
    fn packed_buffer(&mut self, param: usize, bit: i64, bits: u32, thread: usize, what: &'static str) -> Result<&mut Vec<u8>, Fault> {
        let (len, dtype_bits) = match &self.args[param] {
            Arg::Tensor(t) => (t.len(), t.dtype.bits() as usize),
            Arg::Scalar(_) => return Err(Box::new(self.not_a_tensor(param))),
        };
        if !(1..=8).contains(&bits) || bit < 0 || bit as usize + bits as usize > len * dtype_bits {
            let index = bit.div_euclid(dtype_bits as i64);
            return Err(Box::new(self.out_of_bounds(param, index, len, thread, what)));
        }
        match &mut self.args[param] {
            Arg::Tensor(t) => Ok(&mut t.data),
            Arg::Scalar(_) => Err(Box::new(SimtError::BadArgument { index: param, name: String::new(), message: "not a tensor".into() })),
        }
    }

    /// The byte buffer of tensor `param`.
    fn buffer(&mut self, param: usize) -> Result<&mut Vec<u8>, Fault> {
        if let Arg::Scalar(_) = &self.args[param] {
            return Err(Box::new(self.not_a_tensor(param)));
        }
        match &mut self.args[param] {
            Arg::Tensor(t) => Ok(&mut t.data),
            Arg::Scalar(_) => Err(Box::new(SimtError::BadArgument { index: param, name: String::new(), message: "not a tensor".into() })),
        }
    }

    /// Checks a vector access of `size` bytes at byte `offset` of tensor `param`: the size is
    /// a power of two up to 16, the offset a multiple of it (misaligned otherwise) and the bytes
    /// inside the buffer (out of bounds otherwise, reported at the first element's index).
    fn vector_range(&mut self, param: usize, offset: i64, size: usize, thread: usize, what: &'static str) -> Result<std::ops::Range<usize>, Fault> {
        let (bytes, len, bits) = match &self.args[param] {
            Arg::Tensor(t) => (t.data.len(), t.len(), t.dtype.bits() as i64),
            Arg::Scalar(_) => return Err(Box::new(self.not_a_tensor(param))),
        };
        if !(1..=16).contains(&size) || !size.is_power_of_two() {
            return Err(Box::new(SimtError::Unsupported { block: self.block, what: format!("{what} of {size} bytes"), at: self.at() }));
        }
        if offset.rem_euclid(size as i64) != 0 {
            let name = match &self.program.params[param] {
                Param::Global { name, .. } | Param::Scalar { name, .. } => name.clone(),
            };
            return Err(Box::new(SimtError::GlobalMisaligned { block: self.block, thread, what, param: name, byte_offset: offset, size, at: self.at() }));
        }
        if offset < 0 || offset as usize + size > bytes {
            let index = (offset * 8).div_euclid(bits.max(1));
            return Err(Box::new(self.out_of_bounds(param, index, len, thread, what)));
        }
        Ok(offset as usize..offset as usize + size)
    }

    /// The bytes holding bits `[bit, bit + bits)` of the shared buffer, checked.
    fn shared_bits_range(&self, bit: i64, bits: u32, thread: usize) -> Result<std::ops::Range<usize>, Fault> {
        let end_bit = bit.saturating_add(bits as i64);
        if !(1..=8).contains(&bits) || bit < 0 || end_bit as usize > self.shared.len() * 8 {
            let offset = bit.div_euclid(8);
            return Err(Box::new(SimtError::SharedOutOfBounds { block: self.block, thread, offset, size: 1, bytes: self.shared.len(), at: self.at() }));
        }
        Ok(bit as usize / 8..(end_bit as usize).div_ceil(8))
    }

    fn shared_range(&self, offset: i64, ty: Ty, thread: usize) -> Result<std::ops::Range<usize>, Fault> {
        self.shared_bytes_range(offset, ty.bytes(), thread)
    }

    /// The `size` bytes at `offset` of the shared buffer, or the fault of an access outside it.
    fn shared_bytes_range(&self, offset: i64, size: usize, thread: usize) -> Result<std::ops::Range<usize>, Fault> {
        if offset < 0 || offset as usize + size > self.shared.len() {
            return Err(Box::new(SimtError::SharedOutOfBounds { block: self.block, thread, offset, size, bytes: self.shared.len(), at: self.at() }));
        }
        Ok(offset as usize..offset as usize + size)
    }
    /// `mma.sync` for every warp of the block ([`crate::warp::mma_m16n8k16`]); all threads
    /// must take part.
    fn mma(&mut self, kind: tl_compiler::lir::MmaKind, a: &[Expr; 4], b: &[Expr; 2], c: &[tl_compiler::lir::Var; 4], mask: &[bool]) -> Result<(), Fault> {
        use crate::warp::{mma_m16n8k16, WARP};
        self.whole_warps(mask, "mma.sync")?;
        let integer = kind == tl_compiler::lir::MmaKind::S8;
        for warp in 0..self.threads / WARP {
            let (mut fa, mut fb) = ([[0u32; 4]; WARP], [[0u32; 2]; WARP]);
            let (mut fc, mut ic) = ([[0f32; 4]; WARP], [[0i32; 4]; WARP]);
            for lane in 0..WARP {
                let t = warp * WARP + lane;
                for (i, e) in a.iter().enumerate() {
                    fa[lane][i] = self.eval(e, t)?.i() as u32;
                }
                for (i, e) in b.iter().enumerate() {
                    fb[lane][i] = self.eval(e, t)?.i() as u32;
                }
                for (i, v) in c.iter().enumerate() {
                    let r = self.regs[t][v.0 as usize];
                    if integer {
                        ic[lane][i] = r.i() as i32;
                    } else {
                        fc[lane][i] = r.f() as f32;
                    }
                }
            }
            if integer {
                crate::warp::mma_m16n8k32_s8(&fa, &fb, &mut ic);
            } else {
                mma_m16n8k16(kind, &fa, &fb, &mut fc);
            }
            for lane in 0..WARP {
                for (i, v) in c.iter().enumerate() {
                    self.regs[warp * WARP + lane][v.0 as usize] = if integer { V::I(ic[lane][i] as i64) } else { V::F(fc[lane][i] as f64) };
                }
            }
        }
        Ok(())
    }

    /// `shfl.sync.bfly` over all 32 lanes of every warp: each thread's `dst` becomes `src` of
    /// lane `lane ^ lane_mask` (all reads happen before any write); all threads must take part.
    /// `ldmatrix` for every warp ([`crate::warp::ldmatrix`]): each lane that gives a row reads
    /// its 16 bytes of shared memory (bounds- and race-checked like any shared read).
    fn ldmatrix(&mut self, dst: &[tl_compiler::lir::Var], row_offset: &Expr, trans: bool, mask: &[bool]) -> Result<(), Fault> {
        use crate::warp::{ldmatrix, WARP};
        self.whole_warps(mask, "ldmatrix")?;
        let count = dst.len();
        for warp in (0..self.threads).step_by(WARP) {
            let mut rows = [[0u16; 8]; WARP];
            for (lane, row) in rows.iter_mut().enumerate().take(8 * count) {
                let t = warp + lane;
                let offset = self.eval(row_offset, t)?.i();
                // A 16-byte row, 16-byte aligned (the hardware requires it).
                let range = self.shared_range(offset, Ty::I64, t)?;
                let range = range.start..range.start + 16;
                if offset % 16 != 0 || range.end > self.shared.len() {
                    return Err(Box::new(SimtError::SharedOutOfBounds { block: self.block, thread: t, offset, size: 16, bytes: self.shared.len(), at: self.at() }));
                }
                self.shared_read(range.clone(), t)?;
                for (c, x) in row.iter_mut().enumerate() {
                    *x = u16::from_le_bytes([self.shared[range.start + 2 * c], self.shared[range.start + 2 * c + 1]]);
                }
            }
            let regs = ldmatrix(count, trans, &rows);
            for lane in 0..WARP {
                for (i, v) in dst.iter().enumerate() {
                    self.regs[warp + lane][v.0 as usize] = V::I(regs[lane][i] as i32 as i64);
                }
            }
        }
        Ok(())
    }

    /// Warp instructions need every thread of the block, in whole warps.
    fn whole_warps(&self, mask: &[bool], what: &'static str) -> Result<(), Fault> {
        if !mask.iter().all(|m| *m) || self.threads % crate::warp::WARP != 0 {
            return Err(Box::new(SimtError::DivergentWarpInstruction { block: self.block, what, at: self.at() }));
        }
        Ok(())
    }

    fn shuffle_xor(&mut self, dst: tl_compiler::lir::Var, src: tl_compiler::lir::Var, lane_mask: u32, mask: &[bool]) -> Result<(), Fault> {
        use crate::warp::WARP;
        self.whole_warps(mask, "shfl.sync")?;
        let (dst, src, lane_mask) = (dst.0 as usize, src.0 as usize, lane_mask as usize % WARP);
        for warp in (0..self.threads).step_by(WARP) {
            let values: Vec<V> = (0..WARP).map(|lane| self.regs[warp + (lane ^ lane_mask)][src]).collect();
            for (lane, v) in values.into_iter().enumerate() {
                self.regs[warp + lane][dst] = v;
            }
        }
        Ok(())
    }

    fn eval(&mut self, e: &Expr, t: usize) -> Result<V, Fault> {
        let p = self.program;
        Ok(match e {
            Expr::Int(ty, v) => V::I(wrap(*ty, *v)),
            Expr::Float(ty, v) => V::F(round_float(*ty, *v)),
            Expr::Var(v) => self.regs[t][v.0 as usize],
            Expr::Param(i) => match (&self.args[*i], &p.params[*i]) {
                (Arg::Scalar(v), Param::Scalar { ty, .. }) => match v {
                    _ if ty.is_float() => V::F(round_float(*ty, v.to_f64())),
                    // The register's bit pattern: a u64 beyond i64::MAX wraps.
                    Number::Int(i) => V::I(wrap(*ty, *i as i64)),
                    Number::Float(f) => V::I(wrap(*ty, *f as i64)),
                },
                _ => V::I(0),
            },
            Expr::ThreadIdx => V::I(t as i64),
            Expr::BlockIdx(a) => V::I(self.block[(*a as usize).min(2)] as i64),
            Expr::Unary(op, a) => {
                let ty = p.ty(a);
                let x = self.eval(a, t)?;
                unary_value(*op, ty, x)
            }
            Expr::Binary(op, a, b) => {
                let ty = p.ty(a);
                let (x, y) = (self.eval(a, t)?, self.eval(b, t)?);
                binary_value(*op, ty, x, y).ok_or_else(|| Box::new(SimtError::DivisionByZero { block: self.block, thread: t, at: self.at() }))?
            }
            Expr::Cmp(op, a, b) => {
                let ty = p.ty(a);
                let (x, y) = (self.eval(a, t)?, self.eval(b, t)?);
                cmp_value(*op, ty, x, y)
            }
            Expr::Select(c, a, b) => {
                let c = self.eval(c, t)?.i();
                let (x, y) = (self.eval(a, t)?, self.eval(b, t)?);
                if c != 0 { x } else { y }
            }
            Expr::Fma(a, b, c) => {
                let ty = p.ty(a);
                let (x, y, z) = (self.eval(a, t)?, self.eval(b, t)?, self.eval(c, t)?);
                fma_value(ty, x, y, z)
            }
            Expr::Cast { to, value, from_unsigned, to_unsigned } => {
                let from = p.ty(value);
                let x = self.eval(value, t)?;
                cast(x, from, *to, *from_unsigned, *to_unsigned)
            }
            Expr::Bitcast { to, value } => {
                let from = p.ty(value);
                let x = self.eval(value, t)?;
                bitcast(x, from, *to)
            }
            Expr::LoadGlobal { param, index, ty } => {
                let i = self.eval(index, t)?.i();
                let tensor = self.tensor(*param, i, t, "load")?;
                if ty.is_float() {
                    V::F(round_float(*ty, tensor.get(i as usize)))
                } else if tensor.dtype == DType::Bool {
                    V::I((tensor.get(i as usize) != 0.0) as i64)
                } else {
                    // Integer registers hold codes (also of low-precision floats).
                    V::I(wrap(*ty, tensor.code(i as usize) as i64))
                }
            }
            Expr::LoadGlobalBits { param, bit_index, bits } => {
                let bit = self.eval(bit_index, t)?.i();
                let buffer = self.packed_buffer(*param, bit, *bits, t, "load")?;
                V::I(read_packed_at(buffer, bit as usize, *bits) as i64)
            }
            Expr::LoadSharedBits { bit_offset, bits } => {
                let bit = self.eval(bit_offset, t)?.i();
                let range = self.shared_bits_range(bit, *bits, t)?;
                self.shared_read(range, t)?;
                V::I(read_packed_at(&self.shared, bit as usize, *bits) as i64)
            }
            Expr::LoadShared { offset, ty } => {
                let off = self.eval(offset, t)?.i();
                let range = self.shared_range(off, *ty, t)?;
                self.shared_read(range.clone(), t)?;
                decode(*ty, &self.shared[range])
            }
            Expr::Prmt { a, b, selector } => {
                let (a, b) = (self.eval(a, t)?.i() as u32, self.eval(b, t)?.i() as u32);
                let selector = self.eval(selector, t)?.i() as u32;
                V::I(prmt(a, b, selector) as i32 as i64)
            }
            Expr::Lop3 { a, b, c, lut } => {
                let (a, b, c) = (self.eval(a, t)?.i() as u32, self.eval(b, t)?.i() as u32, self.eval(c, t)?.i() as u32);
                V::I(lop3(a, b, c, *lut) as i32 as i64)
            }
        })
    }
}

/// `prmt.b32` in the default mode, from the PTX ISA's definition: the source is the 64-bit
/// `{b, a}` (bytes 0-3 from `a`, 4-7 from `b`); nibble `i` of the selector's low 16 bits gives
/// result byte `i`: its low 3 bits pick a source byte, its top bit asks for that byte's sign
/// bit replicated over all 8 bits instead of the byte itself.
/// One unary operation on a register of type `ty`.
fn unary_value(op: UnaryOp, ty: Ty, x: V) -> V {
    if ty.is_float() {
        // The hardware approximations as the exact function, rounded once (the GPU differs by
        // the bounds of PTX's `.approx` instructions).
        V::F(round_float(ty, op.float_f64(x.f())))
    } else {
        let n = x.i();
        V::I(wrap(ty, match op {
            UnaryOp::Neg => n.wrapping_neg(),
            UnaryOp::Not => !n,
            UnaryOp::Abs => n.wrapping_abs(),
            _ => n,
        }))
    }
}

/// One binary operation on registers of type `ty`; `None` for an integer division or
/// remainder by zero.
fn binary_value(op: BinaryOp, ty: Ty, x: V, y: V) -> Option<V> {
    Some(if ty.is_packed() {
        packed_lanes(ty, &[x.i(), y.i()], |v| match op {
            BinaryOp::Add => v[0] + v[1],
            BinaryOp::Sub => v[0] - v[1],
            BinaryOp::Mul => v[0] * v[1],
            _ => f64::NAN,
        })
    } else if ty.is_float() {
        let (x, y) = (x.f(), y.f());
        let r = match op {
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
            BinaryOp::Div => x / y,
            BinaryOp::Rem => x % y,
            BinaryOp::Min => minimum_number(x, y),
            BinaryOp::Max => maximum_number(x, y),
            _ => f64::NAN,
        };
        V::F(round_float(ty, r))
    } else {
        let (x, y) = (x.i(), y.i());
        if matches!(op, BinaryOp::Div | BinaryOp::Rem | BinaryOp::UDiv | BinaryOp::URem) && y == 0 {
            return None;
        }
        V::I(wrap(ty, match op {
            BinaryOp::Add => x.wrapping_add(y),
            BinaryOp::Sub => x.wrapping_sub(y),
            BinaryOp::Mul => x.wrapping_mul(y),
            BinaryOp::Div => x.wrapping_div(y),
            BinaryOp::Rem => x.wrapping_rem(y),
            BinaryOp::Min => x.min(y),
            BinaryOp::Max => x.max(y),
            BinaryOp::And => x & y,
            BinaryOp::Or => x | y,
            BinaryOp::Xor => x ^ y,
            BinaryOp::Shl => x.wrapping_shl(unsigned_of(ty, y) as u32),
            BinaryOp::LShr => ((unsigned_of(ty, x) as u64) >> (unsigned_of(ty, y) as u32 & 63)) as i64,
            BinaryOp::AShr => x >> (unsigned_of(ty, y) as u32 & 63),
            BinaryOp::UDiv => ((unsigned_of(ty, x) as u64) / (unsigned_of(ty, y) as u64)) as i64,
            BinaryOp::URem => ((unsigned_of(ty, x) as u64) % (unsigned_of(ty, y) as u64)) as i64,
            BinaryOp::UMin => (unsigned_of(ty, x) as u64).min(unsigned_of(ty, y) as u64) as i64,
            BinaryOp::UMax => (unsigned_of(ty, x) as u64).max(unsigned_of(ty, y) as u64) as i64,
        }))
    })
}

/// A comparison of registers of type `ty` (i1: 0 or 1).
fn cmp_value(op: CmpOp, ty: Ty, x: V, y: V) -> V {
    let r = match op {
        CmpOp::ULt | CmpOp::ULe | CmpOp::UGt | CmpOp::UGe => {
            let (x, y) = (unsigned_of(ty, x.i()) as u64, unsigned_of(ty, y.i()) as u64);
            match op {
                CmpOp::ULt => x < y,
                CmpOp::ULe => x <= y,
                CmpOp::UGt => x > y,
                _ => x >= y,
            }
        }
        _ if ty.is_float() => ordered(op, x.f(), y.f()),
        _ => ordered(op, x.i(), y.i()),
    };
    V::I(r as i64)
}

/// `x · y + z` rounded once, on registers of float type `ty` (each half of a packed pair on
/// its own).
fn fma_value(ty: Ty, x: V, y: V, z: V) -> V {
    if ty.is_packed() {
        packed_lanes(ty, &[x.i(), y.i(), z.i()], |v| v[0].mul_add(v[1], v[2]))
    } else if ty == Ty::F32 {
        // f32's own fma: an f64 fma rounded again to f32 could round twice.
        V::F(f64::from((x.f() as f32).mul_add(y.f() as f32, z.f() as f32)))
    } else {
        V::F(round_float(ty, x.f().mul_add(y.f(), z.f())))
    }
}

/// The LIR's operations on raw register bits, for backends that compile the LIR (the
/// Cranelift backend calls these for what it does not generate inline), so that they compute
/// what the simulator computes bit for bit. A register of type `ty` is its `ty.bytes()` bytes
/// little-endian in the low bytes of the `i64` (the rest ignored on input, zero or sign on
/// output as `wrap` leaves them).
pub mod registers {
    use super::*;

    fn value(ty: Ty, bits: i64) -> V {
        decode(ty, &bits.to_le_bytes()[..ty.bytes().max(1)])
    }

    fn bits_of(ty: Ty, v: V) -> i64 {
        let mut out = [0u8; 8];
        encode(ty, v, &mut out[..ty.bytes().max(1)]);
        let raw = i64::from_le_bytes(out);
        if ty.is_float() || ty.is_packed() { raw } else { wrap(ty, raw) }
    }

    pub fn unary(op: UnaryOp, ty: Ty, x: i64) -> i64 {
        bits_of(ty, unary_value(op, ty, value(ty, x)))
    }

    /// `None`: an integer division or remainder by zero.
    pub fn binary(op: BinaryOp, ty: Ty, x: i64, y: i64) -> Option<i64> {
        binary_value(op, ty, value(ty, x), value(ty, y)).map(|v| bits_of(ty, v))
    }

    /// 0 or 1.
    pub fn compare(op: CmpOp, ty: Ty, x: i64, y: i64) -> i64 {
        cmp_value(op, ty, value(ty, x), value(ty, y)).i()
    }

    pub fn fma(ty: Ty, x: i64, y: i64, z: i64) -> i64 {
        bits_of(ty, fma_value(ty, value(ty, x), value(ty, y), value(ty, z)))
    }

    pub fn cast(x: i64, from: Ty, to: Ty, from_unsigned: bool, to_unsigned: bool) -> i64 {
        bits_of(to, super::cast(value(from, x), from, to, from_unsigned, to_unsigned))
    }

    /// The register a scalar argument `v` gives a parameter of type `ty` (as the simulator's
    /// `Expr::Param`: floats rounded once, integers wrapped to the register).
    pub fn scalar_argument(ty: Ty, v: &Number) -> i64 {
        let value = match v {
            _ if ty.is_float() => V::F(round_float(ty, v.to_f64())),
            Number::Int(i) => V::I(wrap(ty, *i as i64)),
            Number::Float(f) => V::I(wrap(ty, *f as i64)),
        };
        bits_of(ty, value)
    }

    pub fn prmt(a: u32, b: u32, selector: u32) -> u32 {
        super::prmt(a, b, selector)
    }

    pub fn lop3(a: u32, b: u32, c: u32, lut: u8) -> u32 {
        super::lop3(a, b, c, lut)
    }
}

fn prmt(a: u32, b: u32, selector: u32) -> u32 {
    let source = ((b as u64) << 32) | a as u64;
    let mut result = 0u32;
    for i in 0..4 {
        let control = (selector >> (4 * i)) & 0xf;
        let byte = ((source >> (8 * (control & 7))) & 0xff) as u32;
        let chosen = if control & 8 != 0 {
            if byte & 0x80 != 0 { 0xff } else { 0 }
        } else {
            byte
        };
        result |= chosen << (8 * i);
    }
    result
}

/// `lop3.b32` from the PTX ISA's definition: bit k of the result is the truth table `lut`
/// looked up at index `(a_k << 2) | (b_k << 1) | c_k`.
fn lop3(a: u32, b: u32, c: u32, lut: u8) -> u32 {
    (0..32).fold(0u32, |acc, k| {
        let index = (((a >> k) & 1) << 2) | (((b >> k) & 1) << 1) | ((c >> k) & 1);
        acc | ((((lut >> index) & 1) as u32) << k)
    })
}

/// An ordered comparison: false whenever an operand is NaN, `Ne` included.
fn ordered<T: PartialOrd>(op: CmpOp, x: T, y: T) -> bool {
    match op {
        CmpOp::Lt => x < y,
        CmpOp::Le => x <= y,
        CmpOp::Gt => x > y,
        CmpOp::Ge => x >= y,
        CmpOp::Eq => x == y,
        // IEEE `!=`: true when either operand is NaN (the generated code uses `fcmp une`).
        CmpOp::Ne => x != y,
        // Unsigned comparisons never get here: `eval` compares them as u64.
        CmpOp::ULt | CmpOp::ULe | CmpOp::UGt | CmpOp::UGe => unreachable!("unsigned comparison"),
    }
}

fn cast(x: V, from: Ty, to: Ty, from_unsigned: bool, to_unsigned: bool) -> V {
    if !from.is_float() && to.is_float() {
        // One rounding from the exact integer, as `cvt.rn` does: through an f64 first, a
        // 64-bit value beyond 2^53 could round twice.
        let exact = if from_unsigned { unsigned_of(from, x.i()) as u64 as i128 } else { x.i() as i128 };
        return V::F(float_dtype(to).round_number(Number::Int(exact)).to_f64());
    }
    let value = if from.is_float() {
        x.f()
    } else if from_unsigned {
        unsigned_of(from, x.i()) as f64
    } else {
        x.i() as f64
    };
    if to == Ty::I1 {
        return V::I((value != 0.0) as i64);
    }
    if to.is_float() {
        return V::F(round_float(to, value));
    }
    // To an integer: round to nearest even, saturate to the target range, NaN → 0.
    let b = bits(to);
    // (The largest values round up to a power of two for 64 bits; the conversions below
    // saturate there.)
    let (lo, hi) = if to_unsigned {
        (0f64, (u64::MAX >> (64 - b)) as f64)
    } else {
        (-((1u64 << (b - 1)) as f64), (i64::MAX >> (64 - b)) as f64)
    };
    let r = if value.is_nan() { 0.0 } else { value.round_ties_even().clamp(lo, hi) };
    // Exact integer path for 64-bit values that f64 cannot hold, saturating between signed
    // and unsigned: a negative i64 becomes 0 in u64, a u64 of 2^63 or more i64::MAX.
    let n = if !from.is_float() && bits(from) == 64 && b == 64 {
        let v = x.i();
        match (from_unsigned, to_unsigned) {
            (false, true) => v.max(0),
            (true, false) if v < 0 => i64::MAX,
            _ => v,
        }
    } else if to_unsigned && b == 64 {
        r as u64 as i64
    } else {
        r as i64
    };
    V::I(wrap(to, n))
}

/// IEEE 754-2019 `maximumNumber`: a NaN operand yields the other one; +0 is above -0.
fn maximum_number(x: f64, y: f64) -> f64 {
    if x.is_nan() || y > x || (x == y && x.is_sign_negative()) { y } else { x }
}

/// IEEE 754-2019 `minimumNumber`: a NaN operand yields the other one; -0 is below +0.
fn minimum_number(x: f64, y: f64) -> f64 {
    if x.is_nan() || y < x || (x == y && y.is_sign_negative()) { y } else { x }
}

/// Bits `[bit, bit + bits)` of a byte buffer, LSB first (written here from the definition, not
/// through the dtype module, so the simulator checks the packing of the compiler's output).
fn read_packed_at(buffer: &[u8], bit: usize, bits: u32) -> u64 {
    (0..bits as usize).fold(0u64, |acc, k| {
        let b = bit + k;
        acc | ((((buffer[b / 8] >> (b % 8)) & 1) as u64) << k)
    })
}

fn write_packed_at(buffer: &mut [u8], bit: usize, bits: u32, code: u64) {
    for k in 0..bits as usize {
        let b = bit + k;
        let one = ((code >> k) & 1) as u8;
        buffer[b / 8] = (buffer[b / 8] & !(1 << (b % 8))) | (one << (b % 8));
    }
}

/// Reinterprets register bits; the caller guarantees equal sizes.
fn bitcast(x: V, from: Ty, to: Ty) -> V {
    let mut bytes = vec![0u8; from.bytes()];
    encode(from, x, &mut bytes);
    decode(to, &bytes)
}

fn encode(ty: Ty, x: V, out: &mut [u8]) {
    match ty {
        Ty::F16 => out.copy_from_slice(&half::f16::from_f64(x.f()).to_bits().to_le_bytes()),
        Ty::BF16 => out.copy_from_slice(&half::bf16::from_f64(x.f()).to_bits().to_le_bytes()),
        Ty::F32 => out.copy_from_slice(&(x.f() as f32).to_le_bytes()),
        Ty::F64 => out.copy_from_slice(&x.f().to_le_bytes()),
        _ => {
            let n = x.i().to_le_bytes();
            out.copy_from_slice(&n[..ty.bytes()]);
        }
    }
}

fn decode(ty: Ty, b: &[u8]) -> V {
    match ty {
        Ty::F16 => V::F(half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f64()),
        Ty::BF16 => V::F(half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f64()),
        Ty::F32 => V::F(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        Ty::F64 => V::F(f64::from_le_bytes(b[..8].try_into().expect("8 bytes"))),
        _ => {
            let mut n = [0u8; 8];
            n[..b.len()].copy_from_slice(b);
            V::I(wrap(ty, i64::from_le_bytes(n)))
        }
    }
}

#[cfg(test)]
mod tests {
    //! `prmt` and `lop3` against examples worked out by hand from the PTX ISA text.
    use super::{lop3, prmt};

    #[test]
    fn prmt_picks_bytes_of_b_a() {
        let (a, b) = (0x0302_0100, 0x0706_0504);
        assert_eq!(prmt(a, b, 0x3210), a);
        assert_eq!(prmt(a, b, 0x7654), b);
        assert_eq!(prmt(a, b, 0x7531), 0x0705_0301);
        assert_eq!(prmt(a, b, 0x0123), 0x0001_0203);
        assert_eq!(prmt(0x1122_3344, 0, 0x0000), 0x4444_4444);
        // Only the low 16 bits of the selector count in the default mode.
        assert_eq!(prmt(a, b, 0xffff_3210), a);
        // Bytes 0x64 from b between the two low bytes of a: f16 patterns 0x64XX.
        assert_eq!(prmt(0x0000_cdab, 0x64, 0x4140), 0x64cd_64ab);
        assert_eq!(prmt(0x0000_00ab, 0x0000_00cd, 0x5410), 0x00cd_00ab);
    }

    #[test]
    fn prmt_replicates_sign_bits() {
        // Bytes of a: 0x01, 0x7f, 0xff, 0x80.
        let a = 0x80ff_7f01;
        assert_eq!(prmt(a, 0, 0x8a98), 0x00ff_0000);
        assert_eq!(prmt(a, 0, 0xba32), 0xffff_80ff);
        // Sign of a byte of b (byte 4 = 0x90, byte 5 = 0x10).
        assert_eq!(prmt(a, 0x0000_1090, 0xdc4c), 0x00ff_90ff);
    }

    #[test]
    fn lop3_follows_the_truth_table() {
        let (a, b, c) = (0x1234_5678, 0x0f0f_0f0f, 0x6400_6400);
        assert_eq!(lop3(a, b, c, 0xea), 0x6604_6608); // (a & b) | c
        assert_eq!(lop3(0xff00_ff00, 0x0ff0_0ff0, 0x1234_5678, 0x96), 0xe2c4_a688); // a ^ b ^ c
        assert_eq!(lop3(0xabcd_1234, 0x00ff_00ff, 0x6480_6480, 0x6a), 0x644d_64b4); // (a & b) ^ c
        assert_eq!(lop3(0xf0f0_ffff, 0xff00_ff00, 0xcccc_0f0f, 0x80), 0xc000_0f00); // a & b & c
        assert_eq!(lop3(0xf000_0000, 0x0f00_0000, 0x0000_0001, 0xfe), 0xff00_0001); // a | b | c
        assert_eq!(lop3(a, b, c, 0xf0), a);
        assert_eq!(lop3(a, b, c, 0xcc), b);
        assert_eq!(lop3(a, b, c, 0xaa), c);
        assert_eq!(lop3(a, b, c, 0x00), 0);
        assert_eq!(lop3(a, b, c, 0xff), u32::MAX);
        assert_eq!(lop3(a, b, c, 0x0f), !a);
        // The ISA computes immLut by applying the function to 0xF0, 0xCC and 0xAA (the bits
        // above those bytes are the function of three zeros).
        for lut in 0..=255u8 {
            assert_eq!(lop3(0xf0, 0xcc, 0xaa, lut) & 0xff, lut as u32);
        }
    }
}
