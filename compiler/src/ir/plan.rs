//! The decisions the planning passes record on the block IR, and the rules that make each legal.
//!
//! Two passes decide how the kernel uses the machine, and record it on the values they decide:
//!
//! * `passes::select_instructions` chooses, for every instruction that moves data between
//!   threads, how it does it ([`Strategy`] in [`ValueData::strategy`]): a `dot` on tensor cores
//!   (which `mma`, each operand read by `ldmatrix` in place from its shared tensor or staged) or
//!   on CUDA cores; a reduction by warp shuffles or through shared memory; a `view`, `permute`
//!   or `reshape` in registers or through shared memory; the thread distribution of every
//!   `copy_async`.
//! * `passes::plan_shared_memory` places every piece of shared memory: each shared tensor, and
//!   the scratch space every staged operand passes through ([`ValueData::shared_offsets`]), with
//!   the kernel's total ([`Kernel::shared_bytes`]), and reports a kernel that needs more than
//!   [`MAX_SHARED_BYTES`] at the statement that needs the most.
//!
//! The lowering reads both and re-derives neither. [`verify_plan`] checks a plan with the same
//! legality rules the selection applies (they live here, once), so a hand-written or parsed
//! plan that the lowering could not honour is refused before lowering.
//!
//! Text form (`--emit ir`, `ir::parse`): a strategy follows the layout as `via NAME`
//! (`via mma.m16n8k16.f16(a: in_place, b: staged)`, `via copy(LAYOUT, run 8)`), the offsets as
//! `shared [0, 2048]`, and the total as `shared_bytes(N)` after `warps(..)` in the header.

use super::{Kernel, Op, Stmt, Type, ValueId};
use crate::dtype::DType;
use crate::layout::{view_moves_no_data, RegisterLayout};
use crate::number::Number;

/// The most shared memory a kernel may use (bytes): what one block may have on the
/// architecture with the most (`Arch::max_shared_bytes`, 227 KB on sm_90a). Beyond
/// `backend::STATIC_SHARED_BYTES` the buffer is dynamic shared memory; the code generator for
/// an architecture with less refuses a kernel that needs more than it has.
pub const MAX_SHARED_BYTES: usize = 227 * 1024;

/// A tensor-core instruction for `dot`: `mma.sync.aligned.m16n8k16` with f16 or bf16 operands
/// into f32, or `m16n8k32` with s8 operands into s32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmaInstruction {
    F16,
    BF16,
    S8,
}

impl MmaInstruction {
    pub const ALL: [MmaInstruction; 3] = [MmaInstruction::F16, MmaInstruction::BF16, MmaInstruction::S8];

    pub fn name(self) -> &'static str {
        match self {
            MmaInstruction::F16 => "mma.m16n8k16.f16",
            MmaInstruction::BF16 => "mma.m16n8k16.bf16",
            MmaInstruction::S8 => "mma.m16n8k32.s8",
        }
    }

    /// The instruction for operands of `operand` and an accumulator of `accumulator`, if any.
    pub fn for_dtypes(operand: DType, accumulator: DType) -> Option<MmaInstruction> {
        match (operand, accumulator) {
            (DType::F16, DType::F32) => Some(MmaInstruction::F16),
            (DType::BF16, DType::F32) => Some(MmaInstruction::BF16),
            (DType::I8, DType::I32) => Some(MmaInstruction::S8),
            _ => None,
        }
    }

    /// Whether operands of `dtype` can go to a tensor core at all (layout inference prefers the
    /// accumulator fragment layout for such a `dot`).
    pub fn takes_operands_of(dtype: DType) -> bool {
        matches!(dtype, DType::F16 | DType::BF16 | DType::I8)
    }

    /// Bytes of one operand element.
    pub fn element_bytes(self) -> usize {
        match self {
            MmaInstruction::S8 => 1,
            _ => 2,
        }
    }

    /// The k extent of one instruction: 16 for 16-bit operands, 32 for s8.
    pub fn k_step(self) -> usize {
        32 / self.element_bytes()
    }

    /// The accumulator fragment of one warp for one 16×8 tile:
    /// `local(2, 1) * spatial(8, 4) * local(1, 2)`.
    pub fn accumulator_fragment() -> RegisterLayout {
        RegisterLayout::local(&[2, 1])
            .and_then(|l| l.with_spatial(&[8, 4]))
            .and_then(|l| l.with_local(&[1, 2]))
            .expect("a valid fixed layout")
    }

    /// The B fragment of one warp for one 16×8 (k × n) tile of 16-bit operands: lane
    /// `4·g + t` holds k = 2t, 2t + 1 (register 0) and 2t + 8, 2t + 9 (register 1) of column
    /// n = g, `local(2, 1) * column_spatial(4, 8) * local(2, 1)`.
    pub fn b_fragment() -> RegisterLayout {
        RegisterLayout::local(&[2, 1])
            .and_then(|l| l.with_column_spatial(&[4, 8]))
            .and_then(|l| l.with_local(&[2, 1]))
            .expect("a valid fixed layout")
    }
}

/// How an accumulator layout splits into `mma.m16n8` tiles: `Q * fragment * local(1, inner)`
/// ([`MmaInstruction::accumulator_fragment`]). Each local index `q` of `Q` and each `j <
/// inner` is one 16×8 tile of one warp: with `inner` > 1 the tile's 8 columns are every
/// `inner`-th column of a strip of `8 · inner`, so that a thread holds `2 · inner` consecutive
/// columns of the result, and the B fragments the `inner` consecutive columns of a row that a
/// packed tile of narrow codes keeps in one 16-bit piece.
#[derive(Clone, Debug, PartialEq)]
pub struct MmaTiling {
    pub quotient: RegisterLayout,
    pub inner: usize,
}

impl MmaTiling {
    /// The tiling of `layout`, if it has one (`inner` a power of two; the smallest that works,
    /// which makes it unique).
    pub fn of(layout: &RegisterLayout) -> Option<MmaTiling> {
        let columns = *layout.shape().get(1)?;
        let mut inner = 1;
        while inner * 8 <= columns {
            let outer = if inner == 1 { Some(layout.clone()) } else { layout.divide_right(&RegisterLayout::local(&[1, inner]).ok()?) };
            if let Some(quotient) = outer.and_then(|l| l.divide_right(&MmaInstruction::accumulator_fragment())) {
                return Some(MmaTiling { quotient, inner });
            }
            inner *= 2;
        }
        None
    }

    /// The accumulator layout of `quotient` tiles with `inner` columns interleaved.
    pub fn layout(quotient: &RegisterLayout, inner: usize) -> Option<RegisterLayout> {
        quotient.product(&MmaInstruction::accumulator_fragment()).and_then(|l| l.with_local(&[1, inner])).ok()
    }

    /// The local index of fragment register `i` (0..4) of tile `(q, j)`: locals of a product
    /// ravel outer first.
    pub fn register(&self, q: usize, i: usize, j: usize) -> usize {
        (q * 4 + i) * self.inner + j
    }
}

/// The layout of a [K, N] B operand whose registers are the `mma` fragments of an accumulator
/// of layout `accumulator` (`Q * accumulator_fragment * local(1, inner)`, [`MmaTiling`]):
/// `local(K / 16, 1) * Q' * b_fragment * local(1, inner)`, where `Q'` is `Q` without its m
/// dimension (warps that share columns of the result hold the same fragments: replication), so
/// the thread that holds accumulator tile `(m, n)` holds the B fragments of column tile `n` for
/// every k-step. `None` when the accumulator has no tiling or K is not a multiple of 16.
pub fn mma_b_operand_layout(accumulator: &RegisterLayout, k_extent: usize) -> Option<RegisterLayout> {
    if k_extent == 0 || !k_extent.is_multiple_of(16) {
        return None;
    }
    let tiling = MmaTiling::of(accumulator)?;
    let columns = tiling.quotient.reduce_keep_dims(&[0]).ok()?;
    RegisterLayout::local(&[k_extent / 16, 1])
        .ok()?
        .product(&columns)
        .ok()?
        .product(&MmaInstruction::b_fragment())
        .ok()?
        .with_local(&[1, tiling.inner])
        .ok()
}

/// Whether tensor-core `dot` can take its B operand from the operand's registers: a 16-bit
/// float `mma` whose B operand's layout is [`mma_b_operand_layout`] of the accumulator's. (An
/// A operand always comes through `ldmatrix`.)
pub fn reads_registers(kernel: &Kernel, dot: ValueId, instruction: MmaInstruction) -> bool {
    let Op::Dot { b, .. } = kernel.value(dot).op else { return false };
    if instruction == MmaInstruction::S8 {
        return false;
    }
    let (Some(layout), Some(acc)) = (layout_of(kernel, b), layout_of(kernel, dot)) else { return false };
    let Some(&k) = kernel.value(b).ty.shape().and_then(|s| s.first()) else { return false };
    mma_b_operand_layout(acc, k).is_some_and(|fragment| same_up_to_register_order(layout, &fragment))
}

/// Whether `layout` gives every thread the same elements as `fragment`, with its registers
/// in an order of their own that is the same in every thread (a renaming of registers, which
/// costs nothing: the lowering finds each fragment register through `local_of`). A weight
/// order that interleaves codes within a thread's run (`qmatmul_fragment`) gives such a
/// layout.
fn same_up_to_register_order(layout: &RegisterLayout, fragment: &RegisterLayout) -> bool {
    if layout == fragment {
        return true;
    }
    if layout.shape() != fragment.shape() || layout.num_threads() != fragment.num_threads() || layout.local_size() != fragment.local_size() {
        return false;
    }
    // The renaming, from thread 0. A coordinate is the sum of a thread's part and a register's
    // part (`RegisterLayout::coord`), so once the registers of thread 0 agree, every thread
    // agrees if its first register does.
    let Some(renaming) = (0..fragment.local_size()).map(|l| fragment.coord(0, l).and_then(|c| layout.local_of(&c))).collect::<Option<Vec<usize>>>() else {
        return false;
    };
    let agree = |t: usize, l: usize| {
        let mine = layout.coord(t, renaming[l]);
        mine.is_some() && mine == fragment.coord(t, l)
    };
    (0..fragment.local_size()).all(|l| agree(0, l)) && (1..fragment.num_threads()).all(|t| agree(t, 0))
}

/// Where the fragments of an operand of a tensor-core `dot` come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperandSource {
    /// `ldmatrix` from the shared tensor the operand was loaded from (see [`reads_in_place`]).
    InPlace,
    /// `ldmatrix` from scratch space the operand is first written to, row-major.
    Staged,
    /// The operand's own registers: its layout is the fragment layout
    /// ([`mma_b_operand_layout`]), so each thread already holds its fragments and two 16-bit
    /// elements make one register (B operands of f16/bf16 `mma` only).
    Registers,
}

impl OperandSource {
    pub const ALL: [OperandSource; 3] = [OperandSource::InPlace, OperandSource::Staged, OperandSource::Registers];

    pub fn name(self) -> &'static str {
        match self {
            OperandSource::InPlace => "in_place",
            OperandSource::Staged => "staged",
            OperandSource::Registers => "registers",
        }
    }
}

/// How an instruction that moves data between threads does it.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// `view`, `permute`, `reshape`: every thread already holds its result elements' bits.
    InRegisters,
    /// A reduction: each thread combines its own elements, then `shfl.bfly` butterflies inside
    /// warps (see [`shuffle_reduction_fits`]).
    Shuffle,
    /// The operands are written to scratch space in shared memory (row-major, one container per
    /// element) between two barriers and read back by the threads that need them; a `dot`
    /// staged this way runs on CUDA cores.
    Staged,
    /// `dot` on tensor cores.
    Mma { instruction: MmaInstruction, a: OperandSource, b: OperandSource },
    /// `copy_async`: the tile distributed over the threads by `layout`, each thread copying runs
    /// of `run` consecutive elements of the last dimension (see [`copy_fits`]).
    Copy { layout: RegisterLayout, run: usize },
}

impl Strategy {
    /// The name in the text form (`via NAME`), without arguments.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::InRegisters => "registers",
            Strategy::Shuffle => "shuffle",
            Strategy::Staged => "staged",
            Strategy::Mma { instruction, .. } => instruction.name(),
            Strategy::Copy { .. } => "copy",
        }
    }
}

/// The bytes of scratch space a staged tile of `value` takes: one register container per
/// element (`lir::Ty::of`: sub-byte formats one byte each), in a 16-byte aligned piece.
pub fn staged_bytes(kernel: &Kernel, value: ValueId) -> usize {
    let ty = &kernel.value(value).ty;
    let container = ty.dtype().map_or(4, |d| crate::lir::Ty::of(d).bytes());
    super::shared_piece_bytes(ty.num_elements().saturating_mul(container))
}

/// The operands that `strategy` stages through scratch space for instruction `id`, in the order
/// of their offsets.
pub fn staged_operands(kernel: &Kernel, id: ValueId, strategy: &Strategy) -> Vec<ValueId> {
    match (&kernel.value(id).op, strategy) {
        (Op::Dot { a, b, .. }, Strategy::Staged) => vec![*a, *b],
        (Op::Dot { a, b, .. }, Strategy::Mma { a: sa, b: sb, .. }) => {
            [(*a, *sa), (*b, *sb)].into_iter().filter(|(_, s)| *s == OperandSource::Staged).map(|(v, _)| v).collect()
        }
        (
            Op::Broadcast(x) | Op::View(x) | Op::Reshape(x) | Op::Permute { value: x, .. } | Op::Reduce { value: x, .. },
            Strategy::Staged,
        ) => vec![*x],
        _ => Vec::new(),
    }
}

fn layout_of(kernel: &Kernel, id: ValueId) -> Option<&RegisterLayout> {
    kernel.value(id).layout.as_ref()
}

/// The tensor-core instruction `dot` `id` can run on: its operand and accumulator dtypes have
/// one, the k extent is a multiple of the instruction's, the accumulator and the result share a
/// layout, and that layout has an [`MmaTiling`] whose `Q` uses whole warps without
/// replication, so that each tile is one 16×8 tile of one warp; with interleaved column tiles
/// (`inner` > 1) the B operand must come from its registers ([`reads_registers`]).
pub fn mma_instruction(kernel: &Kernel, id: ValueId) -> Option<MmaInstruction> {
    let Op::Dot { a, c, .. } = kernel.value(id).op else { return None };
    let instruction = MmaInstruction::for_dtypes(kernel.value(a).ty.dtype()?, kernel.value(c).ty.dtype()?)?;
    let k_extent = *kernel.value(a).ty.shape()?.get(1)?;
    let layout = layout_of(kernel, id)?;
    if k_extent % instruction.k_step() != 0 || layout_of(kernel, c) != Some(layout) {
        return None;
    }
    let tiling = MmaTiling::of(layout)?;
    let quotient = &tiling.quotient;
    if quotient.replication() != 1 || quotient.num_threads() * 32 != kernel.num_threads() {
        return None;
    }
    // Interleaved column tiles take their B fragments from registers only: `ldmatrix` and the
    // s8 gather read 8 consecutive columns.
    (tiling.inner == 1 || reads_registers(kernel, id, instruction)).then_some(instruction)
}

/// Whether `ldmatrix` can read `operand` of tensor-core `dot` in place: it is a 2-D `load` from
/// a shared tensor whose rows are a multiple of 16 bytes, at a constant column offset that is a
/// multiple of 16 bytes, nothing between the load and the `dot` (in one statement list) can
/// change the tensor (a store or copy into it, or any `wait`), and the instruction is not the
/// s8 one (whose B fragment `ldmatrix` cannot transpose).
pub fn reads_in_place(kernel: &Kernel, operand: ValueId, dot: ValueId, instruction: MmaInstruction) -> bool {
    if instruction == MmaInstruction::S8 {
        return false;
    }
    let Op::LoadShared { shared, offsets } = &kernel.value(operand).op else { return false };
    let Type::Shared { shape, .. } = &kernel.value(*shared).ty else { return false };
    let element_bytes = instruction.element_bytes() as i128;
    let Some(&row) = shape.last() else { return false };
    let Some(column) = offsets.last().and_then(|o| match kernel.value(*o).op {
        Op::Const(Number::Int(c)) => Some(c),
        _ => None,
    }) else {
        return false;
    };
    (row as i128 * element_bytes) % 16 == 0
        && (column * element_bytes) % 16 == 0
        && kernel.value(operand).ty.shape().is_some_and(|s| s.len() == 2)
        && unchanged_between(&kernel.body, operand, dot, *shared, kernel)
}

/// Whether `from` and `to` are evaluated in the same statement list, `from` first, with no
/// statement between them (nested ones included) that can change shared tensor `shared`.
fn unchanged_between(body: &[Stmt], from: ValueId, to: ValueId, shared: ValueId, kernel: &Kernel) -> bool {
    let position = |v: ValueId| body.iter().position(|s| matches!(s, Stmt::Eval(x) if *x == v));
    if let (Some(i), Some(j)) = (position(from), position(to)) {
        return i < j && body[i + 1..j].iter().all(|s| !may_change(s, shared, kernel));
    }
    body.iter().any(|s| match s {
        Stmt::For { body, .. } => unchanged_between(body, from, to, shared, kernel),
        Stmt::If { then_body, else_body, .. } => {
            unchanged_between(then_body, from, to, shared, kernel) || unchanged_between(else_body, from, to, shared, kernel)
        }
        _ => false,
    })
}

fn may_change(stmt: &Stmt, shared: ValueId, kernel: &Kernel) -> bool {
    match stmt {
        Stmt::Eval(v) => match &kernel.value(*v).op {
            Op::StoreShared { shared: s, .. } | Op::CopyAsync { shared: s, .. } => *s == shared,
            Op::Wait(_) => true,
            _ => false,
        },
        Stmt::Assign(..) => false,
        Stmt::For { body, .. } => body.iter().any(|s| may_change(s, shared, kernel)),
        Stmt::If { then_body, else_body, .. } => then_body.iter().chain(else_body).any(|s| may_change(s, shared, kernel)),
    }
}

/// Whether reduction `id` can run without shared memory: a signed or float operand whose
/// partial results are held in f32 or i32 registers, the result's layout is the operand's with the reduced
/// dimension's modes removed (what inference prefers), every result register collects at least
/// one operand register of its own thread, and the threads that share a result lie in one warp
/// (the reduced dimension's thread terms are powers of two within 32 lanes).
pub fn shuffle_reduction_fits(kernel: &Kernel, id: ValueId) -> bool {
    let Op::Reduce { value, dim, .. } = kernel.value(id).op else { return false };
    let Some(dtype) = kernel.value(value).ty.dtype() else { return false };
    let partial = match dtype {
        DType::F16 | DType::BF16 => crate::lir::Ty::F32,
        d => crate::lir::Ty::of(d),
    };
    if !matches!(partial, crate::lir::Ty::F32 | crate::lir::Ty::I32) || dtype.is_unsigned_int() {
        return false;
    }
    let (Some(input), Some(output)) = (layout_of(kernel, value), layout_of(kernel, id)) else { return false };
    if input.reduce_keep_dims(&[dim]).ok().as_ref() != Some(output) {
        return false;
    }
    let in_warp = |t: &crate::layout::ThreadTerm| t.extent.is_power_of_two() && t.stride.is_power_of_two() && t.stride * t.extent <= 32;
    if !input.thread_terms().iter().filter(|t| t.dim == dim).all(in_warp) {
        return false;
    }
    let mut collected = vec![false; output.local_size()];
    for i in 0..input.local_size() {
        let mut c = input.local_coords(i);
        c[dim] = 0;
        match output.local_of(&c) {
            Some(j) => collected[j] = true,
            None => return false,
        }
    }
    collected.into_iter().all(|c| c)
}

/// The dims a `broadcast` repeats: those of extent 1 in the operand and more in the result.
pub fn broadcast_dims(kernel: &Kernel, id: ValueId) -> Vec<usize> {
    let Op::Broadcast(a) = kernel.value(id).op else { return Vec::new() };
    match (kernel.value(a).ty.shape(), kernel.value(id).ty.shape()) {
        (Some(from), Some(to)) if from.len() == to.len() => (0..to.len()).filter(|&d| from[d] == 1 && to[d] != 1).collect(),
        _ => Vec::new(),
    }
}

/// The layout a `broadcast` operand needs for the broadcast to move no data: the result's
/// layout with the repeated dims reduced (`reduce_keep_dims`: their local modes dropped, their
/// spatial modes made replication), so every thread holds the operand elements its result
/// elements repeat.
pub fn broadcast_operand_layout(result: &RegisterLayout, dims: &[usize]) -> Option<RegisterLayout> {
    result.reduce_keep_dims(dims).ok()
}

/// Whether `view`, `permute`, `reshape` or `broadcast` `id` moves no data between threads: for `view`,
/// [`view_moves_no_data`] holds for the two layouts; for `permute`/`reshape`, the result's
/// layout is the operand's permuted/reshaped (each thread keeps its elements at the same local
/// indices); for `broadcast`, the operand's layout is [`broadcast_operand_layout`] of the
/// result's.
pub fn in_registers(kernel: &Kernel, id: ValueId) -> bool {
    let data = kernel.value(id);
    let (Some(to), Some(shape)) = (data.layout.as_ref(), data.ty.shape()) else { return false };
    match &data.op {
        Op::View(a) => {
            let (Some(from), Some(from_dtype), Some(to_dtype)) = (layout_of(kernel, *a), kernel.value(*a).ty.dtype(), data.ty.dtype()) else {
                return false;
            };
            view_moves_no_data(from, from_dtype.bits(), to, to_dtype.bits())
        }
        Op::Permute { value, perm } => layout_of(kernel, *value).and_then(|l| l.permute(perm).ok()).as_ref() == Some(to),
        Op::Reshape(value) => layout_of(kernel, *value).and_then(|l| l.reshape(shape).ok()).as_ref() == Some(to),
        Op::Broadcast(value) => {
            layout_of(kernel, *value).is_some_and(|from| broadcast_operand_layout(to, &broadcast_dims(kernel, id)).as_ref() == Some(from))
        }
        _ => false,
    }
}

/// The tile a `copy_async` copies: the trailing dims of its shared tensor, as many as the
/// global tensor has, and the element width in bits.
pub fn copy_tile(kernel: &Kernel, id: ValueId) -> Option<(Vec<usize>, usize)> {
    let Op::CopyAsync { shared, param, .. } = kernel.value(id).op else { return None };
    let Type::Shared { dtype, shape } = &kernel.value(shared).ty else { return None };
    let super::ParamKind::Global { shape: global_shape, .. } = &kernel.get_param(param)?.kind else { return None };
    let rank = global_shape.len();
    (rank <= shape.len() && rank >= 1).then(|| (shape[shape.len() - rank..].to_vec(), dtype.bits() as usize))
}

/// Whether a `copy_async` of a tile of `tile` elements of `bits` bits can be distributed by
/// `layout` in runs of `run`: the layout covers the tile with the block's threads, every thread
/// holds its elements in runs of `run` ([`holds_runs`]), and a run is whole bytes or a whole
/// row (so no two threads write parts of one byte).
pub fn copy_fits(tile: &[usize], bits: usize, threads: usize, layout: &RegisterLayout, run: usize) -> bool {
    let Some(&last) = tile.last() else { return false };
    layout.shape() == tile
        && layout.num_threads() == threads
        && run >= 1
        && holds_runs(layout, run)
        && (run.checked_mul(bits).is_some_and(|b| b % 8 == 0) || run == last)
}

/// Whether every thread holds its elements in runs of `run` consecutive local indices that are
/// `run` consecutive elements of the last dimension starting at a multiple of `run` (for every
/// thread: the thread terms of that dimension step by multiples of `run`).
pub fn holds_runs(layout: &RegisterLayout, run: usize) -> bool {
    let Some(last) = layout.rank().checked_sub(1) else { return false };
    let local = layout.local_size();
    let threads_aligned = layout.thread_terms().iter().all(|t| t.dim != last || t.multiplier.is_multiple_of(run));
    run >= 1
        && threads_aligned
        && local.is_multiple_of(run)
        && (0..local / run).all(|r| {
            let first = layout.local_coords(r * run);
            first[last].is_multiple_of(run)
                && (1..run).all(|j| {
                    let c = layout.local_coords(r * run + j);
                    c[last] == first[last] + j && (0..last).all(|d| c[d] == first[d])
                })
        })
}

/// The number of consecutive local elements that every thread holds at consecutive positions
/// of the last dimension, starting at a multiple of that number (1 when the layout has no such
/// runs).
pub fn contiguous_run(layout: &RegisterLayout) -> usize {
    let mut run = layout.local_size().min(layout.shape().last().copied().unwrap_or(1)).max(1);
    while run > 1 && !holds_runs(layout, run) {
        run /= 2;
    }
    run
}

/// Checks the plan of a kernel with layouts: every instruction that moves data between threads
/// has a strategy, and a legal one (the rules above); every shared tensor has one 16-byte
/// aligned offset, and the tensors do not overlap; every staged operand has a 16-byte aligned
/// offset in the scratch space after the tensors; everything lies within
/// `Kernel::shared_bytes`, which is at most [`MAX_SHARED_BYTES`]. Errors name the value.
/// Expects a kernel that passes `ir::verify` with layouts (the lowering runs both).
pub fn verify_plan(kernel: &Kernel) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let Some(total) = kernel.shared_bytes else {
        return Err(vec!["the kernel has no shared-memory plan (`shared_bytes`)".into()]);
    };
    if total > MAX_SHARED_BYTES {
        errors.push(format!("the plan uses {total} bytes of shared memory, more than {MAX_SHARED_BYTES}"));
    }
    let mut tensors: Vec<(usize, usize, ValueId)> = Vec::new();
    for (i, data) in kernel.values.iter().enumerate() {
        let id = ValueId(i as u32);
        if let (Op::SharedAlloc, Type::Shared { dtype, shape }) = (&data.op, &data.ty) {
            match (data.shared_offsets.as_slice(), super::shared_tensor_bytes(*dtype, shape)) {
                ([offset], Some(bytes)) => tensors.push((*offset, bytes, id)),
                _ => errors.push(format!("%{i}: a shared tensor needs exactly one offset")),
            }
        }
    }
    tensors.sort();
    let scratch_start = tensors.iter().map(|(o, b, _)| o.saturating_add(*b)).max().unwrap_or(0);
    for pair in tensors.windows(2) {
        if pair[0].0.saturating_add(pair[0].1) > pair[1].0 {
            errors.push(format!("shared tensors %{} and %{} overlap", pair[0].2 .0, pair[1].2 .0));
        }
    }
    let inside = |what: String, offset: usize, bytes: usize, errors: &mut Vec<String>| {
        if !offset.is_multiple_of(16) {
            errors.push(format!("{what}: offset {offset} is not a multiple of 16"));
        }
        if offset.saturating_add(bytes) > total {
            errors.push(format!("{what}: bytes {offset}..{} lie beyond the plan's {total} bytes", offset.saturating_add(bytes)));
        }
    };
    for &(offset, bytes, id) in &tensors {
        inside(format!("%{}", id.0), offset, bytes, &mut errors);
    }
    for (i, data) in kernel.values.iter().enumerate() {
        let id = ValueId(i as u32);
        let needs_strategy = matches!(
            data.op,
            Op::Dot { .. } | Op::Reduce { .. } | Op::Broadcast(_) | Op::View(_) | Op::Permute { .. } | Op::Reshape(_) | Op::CopyAsync { .. }
        );
        let Some(strategy) = &data.strategy else {
            if needs_strategy {
                errors.push(format!("%{i}: no strategy was selected for `{}`", super::print::op_str(kernel, &data.op)));
            }
            continue;
        };
        if let Err(e) = check_strategy(kernel, id, strategy) {
            errors.push(format!("%{i}: `via {}` {e}", strategy.name()));
            continue;
        }
        let staged = staged_operands(kernel, id, strategy);
        if staged.len() != data.shared_offsets.len() {
            errors.push(format!("%{i}: {} staged operand(s) need {} offset(s), found {}", staged.len(), staged.len(), data.shared_offsets.len()));
            continue;
        }
        for (operand, &offset) in staged.iter().zip(&data.shared_offsets) {
            if offset < scratch_start {
                errors.push(format!("%{i}: the scratch space at {offset} overlaps the shared tensors (which end at {scratch_start})"));
            }
            inside(format!("%{i}"), offset, staged_bytes(kernel, *operand), &mut errors);
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Why `strategy` is not legal for value `id` (the rules above), if it is not.
fn check_strategy(kernel: &Kernel, id: ValueId, strategy: &Strategy) -> Result<(), String> {
    let op = &kernel.value(id).op;
    match (strategy, op) {
        (Strategy::Staged, Op::Dot { .. } | Op::Reduce { .. } | Op::Broadcast(_) | Op::View(_) | Op::Permute { .. } | Op::Reshape(_)) => Ok(()),
        (Strategy::InRegisters, Op::View(_) | Op::Permute { .. } | Op::Reshape(_) | Op::Broadcast(_)) => {
            if in_registers(kernel, id) { Ok(()) } else { Err("needs data to move between threads with these layouts".into()) }
        }
        (Strategy::Shuffle, Op::Reduce { .. }) => {
            if shuffle_reduction_fits(kernel, id) { Ok(()) } else { Err("does not fit this reduction's dtype or layouts".into()) }
        }
        (Strategy::Mma { instruction, a: source_a, b: source_b }, Op::Dot { a, b, .. }) => {
            if mma_instruction(kernel, id) != Some(*instruction) {
                return Err("does not fit this dot's dtypes, k extent or accumulator layout".into());
            }
            for (name, operand, source) in [("a", *a, *source_a), ("b", *b, *source_b)] {
                if source == OperandSource::InPlace && !reads_in_place(kernel, operand, id, *instruction) {
                    return Err(format!("cannot read operand {name} in place"));
                }
                if source == OperandSource::Registers && (name == "a" || !reads_registers(kernel, id, *instruction)) {
                    return Err(format!("cannot take operand {name} from its registers (only a B operand whose layout is the fragment layout)"));
                }
            }
            Ok(())
        }
        (Strategy::Copy { layout, run }, Op::CopyAsync { .. }) => {
            let Some((tile, bits)) = copy_tile(kernel, id) else { return Err("has no tile".into()) };
            if copy_fits(&tile, bits, kernel.num_threads(), layout, *run) {
                Ok(())
            } else {
                Err(format!("does not distribute the {tile:?} tile over {} threads in runs of {run}", kernel.num_threads()))
            }
        }
        _ => Err("does not apply to this instruction".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::parse::parse;

    const MATMUL: &str = "kernel mm(a: global f16[64, 64], b: global f16[64, 64], c: global mut f32[64, 64]) grid(1) warps(4) {
    let s = shared<f16>([32, 32]);
    copy_async(s, [], a, [0, 0]);
    commit();
    wait(0);
    sync();
    let ta = load(s, [0, 0], [32, 32]);
    let tb = load(b, [0, 0], [32, 32]);
    let acc = dot(ta, tb, zeros<f32>([32, 32]));
    store(c, acc, [0, 0]);
    let m = max(acc, dim = 1);
    store(c, acc - m, [32, 0]);
}";

    fn compiled(source: &str) -> Kernel {
        let file = crate::driver::check(source).expect("checks");
        crate::driver::compile(&file, None, &[]).expect("compiles").kernel
    }

    fn find(kernel: &Kernel, matches: impl Fn(&Op) -> bool) -> usize {
        kernel.values.iter().position(|v| matches(&v.op)).expect("the instruction is there")
    }

    fn errors(kernel: &Kernel) -> String {
        verify_plan(kernel).expect_err("the plan must be refused").join("\n")
    }

    #[test]
    fn the_compiler_records_a_plan_that_verifies_and_survives_the_text_form() {
        let kernel = compiled(MATMUL);
        verify_plan(&kernel).unwrap();
        let dot = &kernel.values[find(&kernel, |o| matches!(o, Op::Dot { .. }))];
        assert_eq!(
            dot.strategy,
            Some(Strategy::Mma { instruction: MmaInstruction::F16, a: OperandSource::InPlace, b: OperandSource::Staged })
        );
        // The shared tensor takes the first 2048 bytes; b's 32×32 f16 tile is staged after it.
        assert_eq!(kernel.values[find(&kernel, |o| matches!(o, Op::SharedAlloc))].shared_offsets, vec![0]);
        assert_eq!(dot.shared_offsets, vec![2048]);
        let text = crate::ir::print::kernel_to_string(&kernel);
        let parsed = parse(&text).unwrap();
        assert_eq!(crate::ir::print::kernel_to_string(&parsed), text);
        verify_plan(&parsed).unwrap();
    }

    #[test]
    fn an_illegal_or_missing_decision_is_refused_by_name() {
        let kernel = compiled(MATMUL);
        let dot = find(&kernel, |o| matches!(o, Op::Dot { .. }));
        let reduce = find(&kernel, |o| matches!(o, Op::Reduce { .. }));
        let alloc = find(&kernel, |o| matches!(o, Op::SharedAlloc));

        let mut k = kernel.clone();
        k.values[dot].strategy = Some(Strategy::Mma { instruction: MmaInstruction::F16, a: OperandSource::InPlace, b: OperandSource::InPlace });
        assert!(errors(&k).contains("cannot read operand b in place"), "{}", errors(&k));

        let mut k = kernel.clone();
        k.values[dot].strategy = Some(Strategy::Mma { instruction: MmaInstruction::BF16, a: OperandSource::Staged, b: OperandSource::Staged });
        assert!(errors(&k).contains("does not fit this dot"), "{}", errors(&k));

        let mut k = kernel.clone();
        k.values[reduce].strategy = Some(Strategy::InRegisters);
        assert!(errors(&k).contains("does not apply to this instruction"), "{}", errors(&k));

        let mut k = kernel.clone();
        k.values[reduce].strategy = None;
        assert!(errors(&k).contains("no strategy was selected"), "{}", errors(&k));

        // The broadcast of the row maxima stays in registers (the maxima follow the rows'
        // layout, reduced); with another layout for its operand it could not.
        let broadcast = find(&kernel, |o| matches!(o, Op::Broadcast(_)));
        assert_eq!(kernel.values[broadcast].strategy, Some(Strategy::InRegisters));
        let mut k = kernel.clone();
        let Op::Broadcast(operand) = k.values[broadcast].op else { unreachable!() };
        k.values[operand.index()].layout = Some(RegisterLayout::replicate(&[32, 1], 128).unwrap());
        assert!(errors(&k).contains("`via registers` needs data to move between threads"), "{}", errors(&k));

        // Scratch space inside the shared tensor, a misaligned offset, a plan over the limit.
        let mut k = kernel.clone();
        k.values[dot].shared_offsets = vec![1024];
        assert!(errors(&k).contains("overlaps the shared tensors"), "{}", errors(&k));
        let mut k = kernel.clone();
        k.values[alloc].shared_offsets = vec![8];
        assert!(errors(&k).contains("not a multiple of 16"), "{}", errors(&k));
        let mut k = kernel.clone();
        k.shared_bytes = Some(MAX_SHARED_BYTES + 16);
        assert!(errors(&k).contains("more than 232448"), "{}", errors(&k));
        assert_eq!(MAX_SHARED_BYTES, crate::backend::Arch::ALL.map(|a| a.max_shared_bytes()).into_iter().max().unwrap());
        let mut k = kernel.clone();
        k.shared_bytes = Some(2048);
        assert!(errors(&k).contains("beyond the plan's 2048 bytes"), "{}", errors(&k));
        let mut k = kernel.clone();
        k.shared_bytes = None;
        assert!(errors(&k).contains("no shared-memory plan"));
        // The lowering refuses what the verifier refuses, with an error rather than a panic.
        assert!(matches!(crate::lower::lower(&k), Err(crate::lower::LowerError::Internal { .. })));
    }

    #[test]
    fn the_b_fragment_is_the_one_of_the_ptx_isa() {
        // m16n8k16 with 16-bit B: lane 4g + t holds (k, n) = (2t + i + 8h, g) in register h,
        // element i (the lower k in the low half).
        let fragment = MmaInstruction::b_fragment();
        for lane in 0..32 {
            let (g, t) = (lane / 4, lane % 4);
            for local in 0..4 {
                let (h, i) = (local / 2, local % 2);
                assert_eq!(fragment.coord(lane, local), Some(vec![2 * t + i + 8 * h, g]), "lane {lane} local {local}");
            }
        }
    }

    #[test]
    fn interleaved_mma_tiles_take_every_inner_th_column() {
        // Two warps over a 16 × 64 accumulator: each warp 4 column tiles, interleaved by
        // `inner`. Tile (q, j) of a thread holds, in fragment register i = 2·r0 + r1, row
        // g + 8·r0 and column n0 + inner·(2t + r1) + j of the ISA's fragment (lane 4g + t).
        let quotient = RegisterLayout::spatial(&[1, 2]).unwrap();
        for inner in [1, 2, 4] {
            let outer = RegisterLayout::local(&[1, 4 / inner]).unwrap().product(&quotient).unwrap();
            let layout = MmaTiling::layout(&outer, inner).unwrap();
            let tiling = MmaTiling::of(&layout).unwrap_or_else(|| panic!("inner {inner}"));
            assert_eq!((tiling.inner, tiling.quotient.local_size() * inner), (inner, 4), "inner {inner}");
            for thread in 0..64 {
                let (warp, lane) = (thread / 32, thread % 32);
                let (g, t) = (lane / 4, lane % 4);
                for q in 0..4 / inner {
                    for j in 0..inner {
                        // `local` outside `spatial`: the warps' strips of 8·inner columns alternate.
                        let n0 = q * 16 * inner + warp * 8 * inner;
                        for i in 0..4 {
                            let (r0, r1) = (i / 2, i % 2);
                            let want = vec![g + 8 * r0, n0 + inner * (2 * t + r1) + j];
                            assert_eq!(layout.coord(thread, tiling.register(q, i, j)), Some(want), "inner {inner} thread {thread} tile ({q}, {j}) register {i}");
                        }
                    }
                }
            }
            // The B operand's fragments: column g of tile j is n0 + inner·g + j, row k = 2t + i
            // (+ 8h), in lane 4g + t; (k, n) = (2, inner + 1) is g = (inner + 1) / inner, t = 1.
            let b = mma_b_operand_layout(&layout, 32).unwrap();
            let owner = 4 * ((inner + 1) / inner) + 1;
            assert_eq!(b.owners(&[2, inner + 1]).first().map(|o| o.0), Some(owner), "inner {inner}");
            let local = b.local_of(&[2, inner + 1]).unwrap();
            assert_eq!(b.coord(owner, local), Some(vec![2, inner + 1]));
        }
        // A layout that is not of this form has no tiling.
        assert_eq!(MmaTiling::of(&RegisterLayout::spatial(&[16, 8]).unwrap().with_local(&[1, 4]).unwrap()), None);
    }

    #[test]
    fn a_shuffle_reduction_needs_its_threads_in_one_warp() {
        // Each row's 64 elements over 64 threads (two warps): shuffles cannot combine them.
        let source = "kernel k(x: global f32[4, 64], y: global mut f32[4, 1]) grid(1) warps(8) {
    let t: reg f32[4, 64] @ spatial(4, 64) = load(x, [0, 0], [4, 64]);
    store(y, sum(t, dim = 1), [0, 0]);
}";
        let mut kernel = compiled(source);
        let reduce = find(&kernel, |o| matches!(o, Op::Reduce { .. }));
        assert_eq!(kernel.values[reduce].strategy, Some(Strategy::Staged));
        kernel.values[reduce].strategy = Some(Strategy::Shuffle);
        kernel.values[reduce].shared_offsets.clear();
        assert!(errors(&kernel).contains("`via shuffle` does not fit"), "{}", errors(&kernel));
    }

    #[test]
    fn malformed_plans_in_text_are_errors_at_their_place() {
        let text = crate::ir::print::kernel_to_string(&compiled(MATMUL));
        for (from, to, expected) in [
            ("via staged", "via teleport", "unknown strategy `teleport`"),
            ("(a: in_place, b: staged)", "(a: in_place, b: nowhere)", "expected `in_place`, `staged` or `registers`"),
            ("run 8)", "run x)", "run length"),
        ] {
            assert!(text.contains(from), "{from} in\n{text}");
            let error = parse(&text.replacen(from, to, 1)).expect_err(to).to_string();
            assert!(error.contains(expected), "{to}: {error}");
        }
    }
}
