//! Layout inference: gives every register tensor value and variable a layout.
//!
//! Expects a verified kernel without layouts; values and variables may carry the user's layout
//! annotations (`let t: reg f16[16, 64] @ local(2, 2) * spatial(8, 4) = ...`).
//!
//! Rules:
//! 1. **Same-layout constraints.** An undirected graph (petgraph) has a node per tensor value
//!    and per tensor variable, and an edge between two nodes that must share a layout, because
//!    the lowering pairs their registers one to one without moving data between threads:
//!    elementwise operations (`unary`, `binary`, `cast`, `select`) join their result with each
//!    tensor operand; `dot` joins its result with its accumulator; a global load, store or
//!    `atomic_add` joins the tile with its index tiles (offsets that are tiles: gathers and
//!    scatters); `Assign(var, v)` joins
//!    `var` and `v`; a read of `var` joins the result with `var`. Loads, stores, broadcasts,
//!    reductions, `dot`'s operands and `view` accept any layouts on their two sides (the
//!    lowering addresses memory through each side's own layout).
//! 2. **User annotations win.** Every connected component takes the layout annotated on one of
//!    its nodes. Two different annotations in one component are a conflict: the diagnostic names
//!    both places. An annotation must cover the tile and use exactly the block's threads.
//! 3. **Preferences** decide a component without an annotation, first match wins:
//!    * it holds a reduction's result: the operand's layout with the reduced dimension's modes
//!      removed (`reduce_keep_dims`; its spatial modes become replication), decided after the
//!      operand's component; likewise a `permute`/`reshape` result takes its operand's layout
//!      permuted/reshaped, and a `view` result the layout `view_result_layout` derives from
//!      its operand's (free: no data moves);
//!    * it holds the accumulator of a `dot` with f16/bf16/i8 operands, M a multiple of 16 and N of
//!      8: the tensor-core layout — the `mma.m16n8` accumulator fragment
//!      `local(2, 1) * spatial(8, 4) * local(1, 2)` for each warp, warps spread over the tile
//!      (`spatial(wm, wn)`), and `local(..)` repeats outside; when the B operand is computed
//!      from a shared tile of codes narrower than 16 bits (a quantized matmul's weights), up to
//!      `codes_per_piece` of a warp's column tiles are interleaved (`local(1, inner)`
//!      innermost, `plan::MmaTiling`), so that the B fragments of a thread are consecutive
//!      columns of a row, read as one piece of the packed tile;
//!    * it holds the operand of a `broadcast`: the result's layout with the repeated dims
//!      reduced (`plan::broadcast_operand_layout`), decided after the result's component, so
//!      the broadcast moves no data;
//!    * it holds the B operand of such a `dot` with f16/bf16 operands, computed in registers (no
//!      global load or `dot` result in the component, not a shared load `ldmatrix` reads in
//!      place): the B fragment layout that matches the accumulator's
//!      (`plan::mma_b_operand_layout`), decided after the accumulator's component, so that the
//!      `dot` takes its fragments from the registers;
//!    * it holds a loaded tile or a stored value: each thread holds `v` consecutive elements of
//!      the last dimension, `v` the largest power of two with `v · bits ≤ 128` (one 16-byte
//!      access) dividing that extent and leaving work for every thread; the rest is spread as
//!      `auto_local_spatial`;
//!    * otherwise `auto_local_spatial(shape, threads)`.
//! 4. **`view`** is defined on the logical tile, so any two layouts are legal on its sides;
//!    the lowering moves bits between threads when the pair does not keep them in place.
//!
//! Guarantees: every tensor value and variable has a layout covering its shape with exactly the
//! block's thread count (checked by `ir::verify` with `require_layouts`), and the nodes of one
//! component have equal layouts.

use crate::diagnostics::Diagnostic;
use crate::ir::plan::{self, MmaInstruction};
use crate::ir::{Kernel, LayoutAnnotation, LayoutFunc, Op, Stmt, ValueId, VarId};
use crate::layout::{view_result_layout, LayoutError, RegisterLayout};
use petgraph::graph::{NodeIndex, UnGraph};
use std::collections::HashMap;

/// A node of the constraint graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Node {
    Value(ValueId),
    Var(VarId),
}

pub fn infer_layouts(kernel: &mut Kernel) -> Vec<Diagnostic> {
    let threads = kernel.num_threads();
    let mut graph: UnGraph<Node, ()> = UnGraph::new_undirected();
    let mut index: HashMap<Node, NodeIndex> = HashMap::new();
    for (i, v) in kernel.values.iter().enumerate() {
        if v.ty.shape().is_some() {
            let n = Node::Value(ValueId(i as u32));
            index.insert(n, graph.add_node(n));
        }
    }
    for (i, v) in kernel.vars.iter().enumerate() {
        if v.ty.shape().is_some() {
            let n = Node::Var(VarId(i as u32));
            index.insert(n, graph.add_node(n));
        }
    }
    let join = |graph: &mut UnGraph<Node, ()>, a: Node, b: Node| {
        if let (Some(&x), Some(&y)) = (index.get(&a), index.get(&b)) {
            graph.add_edge(x, y, ());
        }
    };
    for (i, v) in kernel.values.iter().enumerate() {
        let me = Node::Value(ValueId(i as u32));
        match &v.op {
            Op::Unary(_, a) | Op::Cast(a) => join(&mut graph, me, Node::Value(*a)),
            Op::Binary(_, a, b) => {
                join(&mut graph, me, Node::Value(*a));
                join(&mut graph, me, Node::Value(*b));
            }
            Op::Select { cond, a, b } => {
                for o in [cond, a, b] {
                    join(&mut graph, me, Node::Value(*o));
                }
            }
            Op::ReadVar(var) => join(&mut graph, me, Node::Var(*var)),
            // The accumulator and the result of `dot` pair their registers.
            Op::Dot { c, .. } => join(&mut graph, me, Node::Value(*c)),
            // Index tiles (gathers, scatters) give each register of the tile its index.
            Op::Load { offsets, .. } => {
                for o in offsets {
                    join(&mut graph, me, Node::Value(*o));
                }
            }
            Op::Store { value, offsets, .. } | Op::AtomicAdd { value, offsets, .. } => {
                for o in offsets {
                    join(&mut graph, Node::Value(*value), Node::Value(*o));
                }
            }
            _ => {}
        }
    }
    fn assigns(body: &[Stmt], out: &mut Vec<(VarId, ValueId)>) {
        for s in body {
            match s {
                Stmt::Assign(var, v) => out.push((*var, *v)),
                Stmt::For { body, .. } => assigns(body, out),
                Stmt::If { then_body, else_body, .. } => {
                    assigns(then_body, out);
                    assigns(else_body, out);
                }
                Stmt::Eval(_) => {}
            }
        }
    }
    let mut pairs = Vec::new();
    assigns(&kernel.body, &mut pairs);
    for (var, v) in pairs {
        join(&mut graph, Node::Var(var), Node::Value(v));
    }

    // Components, each with the annotation that decides it.
    let mut diagnostics = Vec::new();
    let mut component_of: HashMap<NodeIndex, usize> = HashMap::new();
    let mut components: Vec<Vec<Node>> = Vec::new();
    for start in graph.node_indices() {
        if component_of.contains_key(&start) {
            continue;
        }
        let id = components.len();
        let mut members = Vec::new();
        let mut stack = vec![start];
        component_of.insert(start, id);
        while let Some(n) = stack.pop() {
            members.push(graph[n]);
            for m in graph.neighbors(n) {
                if let std::collections::hash_map::Entry::Vacant(e) = component_of.entry(m) {
                    e.insert(id);
                    stack.push(m);
                }
            }
        }
        components.push(members);
    }
    // Components are decided in rounds: one holding a reduction's result waits until the
    // reduction's operand has its layout (it prefers that layout, reduced), unless nothing
    // else can progress.
    let users = Users::of(kernel);
    let mut pending: Vec<Vec<Node>> = components;
    let mut force = false;
    while !pending.is_empty() {
        let mut progressed = false;
        let mut waiting = Vec::new();
        for members in std::mem::take(&mut pending) {
            match decide(kernel, &users, &members, threads, force, &mut diagnostics) {
                Decision::Wait => waiting.push(members),
                Decision::Done => progressed = true,
            }
        }
        force = !progressed;
        pending = waiting;
    }
    if diagnostics.is_empty() {
        diagnostics.extend(check_elements_per_thread(kernel));
    }
    diagnostics
}

/// The most elements of one tile a thread may hold. A GPU thread has at most 255 32-bit
/// registers, so this many cannot all stay in registers anyway (packed sub-byte elements and
/// replicated tiles need this much room), and code generation, which gives every element its
/// own register, grows faster than linearly beyond it: casting a 65536-element tile on one
/// warp (2048 elements a thread) took 39 s in LLVM, 8.5 s at 1024, 0.5 s at 256.
pub const MAX_ELEMENTS_PER_THREAD: usize = 512;

/// A tile whose layout gives a thread more than [`MAX_ELEMENTS_PER_THREAD`] elements is
/// refused at the first place it appears, with the numbers and the way out.
fn check_elements_per_thread(kernel: &Kernel) -> Vec<Diagnostic> {
    let mut seen = std::collections::HashSet::new();
    let mut diagnostics = Vec::new();
    for v in &kernel.values {
        let (Some(layout), Some(shape)) = (&v.layout, v.ty.shape()) else { continue };
        // One report per tile shape: the values computed from a tile share its layout.
        if layout.local_size() > MAX_ELEMENTS_PER_THREAD && seen.insert((shape.to_vec(), layout.local_size())) {
            diagnostics.push(
                Diagnostic::error(
                    format!(
                        "this {shape:?} tile puts {} elements in each of the block's {} threads; at most {MAX_ELEMENTS_PER_THREAD} are allowed (a GPU thread has 255 registers)",
                        layout.local_size(),
                        layout.num_threads()
                    ),
                    v.span,
                )
                .with_note("use more warps (`warps(N)`, up to 32) or a smaller tile"),
            );
        }
    }
    diagnostics
}


enum Decision {
    Wait,
    Done,
}

/// Decides the layout of one component (rules 2 and 3); waits while a reduction's operand it
/// prefers to follow has no layout yet (unless `force`).
fn decide(kernel: &mut Kernel, users: &Users, members: &[Node], threads: usize, force: bool, diagnostics: &mut Vec<Diagnostic>) -> Decision {
    let annotation_of = |n: &Node| match n {
        Node::Value(v) => kernel.values[v.index()].annotation.clone(),
        Node::Var(v) => kernel.vars[v.index()].annotation.clone(),
    };
    let mut chosen: Option<LayoutAnnotation> = None;
    for n in members {
        let Some(a) = annotation_of(n) else { continue };
        match &chosen {
            None => chosen = Some(a),
            Some(prev) if prev.factors != a.factors => diagnostics.push(
                Diagnostic::error(format!("conflicting layouts: `{a}` is required here"), a.span)
                    .with_label(prev.span, format!("but `{prev}` here, for a tile that shares its registers"))
                    .with_note("elementwise operations and assignments keep one layout; convert explicitly where they must differ"),
            ),
            Some(_) => {}
        }
    }
    let shape = match members[0] {
        Node::Value(v) => kernel.values[v.index()].ty.shape().map(|s| s.to_vec()),
        Node::Var(v) => kernel.vars[v.index()].ty.shape().map(|s| s.to_vec()),
    }
    .expect("tensor nodes only");
    let layout = match chosen {
        Some(a) => match from_annotation(&a, threads) {
            Ok(l) => Some(l),
            Err(d) => {
                diagnostics.push(d);
                None
            }
        },
        None => {
            // The first rule that applies decides; one whose other side is undecided waits.
            let rules: [&dyn Fn() -> FollowOperand; 3] = [
                &|| operand_layout_to_follow(kernel, members),
                &|| fragment_layout_to_follow(kernel, users, members),
                &|| broadcast_layout_to_follow(kernel, users, members),
            ];
            let followed = rules
                .into_iter()
                .map(|rule| rule())
                .find(|f| match f {
                    FollowOperand::None => false,
                    FollowOperand::Wait => !force,
                    FollowOperand::Follow(_) => true,
                });
            match followed {
                Some(FollowOperand::Wait) => return Decision::Wait,
                Some(FollowOperand::Follow(l)) => Some(l),
                _ => preferred(kernel, members, &shape, threads),
            }
        }
    };
    let layout = match layout.map_or_else(|| RegisterLayout::auto_local_spatial(&shape, threads), Ok) {
        Ok(l) => l,
        Err(e) => {
            let span = match members[0] {
                Node::Value(v) => kernel.values[v.index()].span,
                Node::Var(v) => kernel.vars[v.index()].span,
            };
            diagnostics.push(Diagnostic::error(format!("no register layout for a {shape:?} tile on {threads} threads: {e}"), span));
            return Decision::Done;
        }
    };
    for n in members {
        match *n {
            Node::Value(v) => kernel.values[v.index()].layout = Some(layout.clone()),
            Node::Var(v) => kernel.vars[v.index()].layout = Some(layout.clone()),
        }
    }
    Decision::Done
}

enum FollowOperand {
    /// No result of a reduction, permute or reshape in the component.
    None,
    /// Such a result's operand has no layout yet.
    Wait,
    /// The operand's layout transformed like the data (for a reduction: the reduced
    /// dimension's modes removed, spatial ones becoming replication), so every thread keeps
    /// the elements it held and the lowering moves none between threads.
    Follow(RegisterLayout),
}

/// A component holding the result of a reduction, a permute or a reshape follows its
/// operand's layout, transformed the same way, so the lowering moves no data for it.
fn operand_layout_to_follow(kernel: &Kernel, members: &[Node]) -> FollowOperand {
    for n in members {
        let Node::Value(v) = *n else { continue };
        let data = &kernel.values[v.index()];
        let (value, transform): (ValueId, Box<dyn Fn(&RegisterLayout) -> Result<RegisterLayout, LayoutError>>) = match &data.op {
            Op::Reduce { value, dim, .. } => {
                let dim = *dim;
                (*value, Box::new(move |l| l.reduce_keep_dims(&[dim])))
            }
            Op::Permute { value, perm } => {
                let perm = perm.clone();
                (*value, Box::new(move |l| l.permute(&perm)))
            }
            Op::Reshape(value) => {
                let shape = data.ty.shape().map(|s| s.to_vec()).unwrap_or_default();
                (*value, Box::new(move |l| l.reshape(&shape)))
            }
            Op::View(value) => {
                let bits = |v: ValueId| kernel.values[v.index()].ty.dtype().map_or(0, |d| d.bits());
                let (src_bits, dst_bits) = (bits(*value), data.ty.dtype().map_or(0, |d| d.bits()));
                (
                    *value,
                    Box::new(move |l| {
                        view_result_layout(l, src_bits, dst_bits)
                            .ok_or_else(|| LayoutError::InvalidAccess("no view layout that moves no data".into()))
                    }),
                )
            }
            _ => continue,
        };
        return match &kernel.values[value.index()].layout {
            None => FollowOperand::Wait,
            Some(l) => match transform(l) {
                Ok(r) => FollowOperand::Follow(r),
                Err(_) => FollowOperand::None,
            },
        };
    }
    FollowOperand::None
}

/// A component holding the B operand of a tensor-core `dot` (16-bit floats) that is computed in
/// registers (no global load or `dot` result in the component, and not a shared load
/// `ldmatrix` can read in place) takes the `mma` B fragment layout that matches the accumulator's
/// (`plan::mma_b_operand_layout`), decided after the accumulator's component: its registers
/// then are the fragments, and nothing goes through shared memory.
fn fragment_layout_to_follow(kernel: &Kernel, users: &Users, members: &[Node]) -> FollowOperand {
    // A global load prefers 16-byte vectors, and an accumulator its own fragment layout.
    let blocked = members.iter().any(|n| matches!(n, Node::Value(v) if matches!(kernel.values[v.index()].op, Op::Load { .. } | Op::Dot { .. })));
    if blocked {
        return FollowOperand::None;
    }
    for n in members {
        let Node::Value(operand) = *n else { continue };
        for &dot in users.dots_of_b.get(&operand).map_or(&[][..], Vec::as_slice) {
            let data = &kernel.values[dot.index()];
            let Op::Dot { a, b, c } = data.op else { continue };
            let dtypes = (kernel.values[a.index()].ty.dtype(), kernel.values[c.index()].ty.dtype());
            let Some(instruction) = (match dtypes {
                (Some(x), Some(y)) => MmaInstruction::for_dtypes(x, y),
                _ => None,
            }) else {
                continue;
            };
            if instruction == MmaInstruction::S8 || plan::reads_in_place(kernel, b, dot, instruction) {
                continue;
            }
            let Some(k) = kernel.values[b.index()].ty.shape().and_then(|s| s.first().copied()) else { continue };
            return match &data.layout {
                None => FollowOperand::Wait,
                Some(acc) => plan::mma_b_operand_layout(acc, k).map_or(FollowOperand::None, FollowOperand::Follow),
            };
        }
    }
    FollowOperand::None
}

/// A component holding the operand of a `broadcast` takes the broadcast result's layout with
/// the repeated dims reduced (`plan::broadcast_operand_layout`), decided after the result's
/// component: every thread then holds the elements it repeats, and the broadcast moves no data.
fn broadcast_layout_to_follow(kernel: &Kernel, users: &Users, members: &[Node]) -> FollowOperand {
    for n in members {
        let Node::Value(operand) = *n else { continue };
        let Some(&broadcast) = users.broadcast_of.get(&operand) else { continue };
        return match &kernel.values[broadcast.index()].layout {
            None => FollowOperand::Wait,
            Some(result) => plan::broadcast_operand_layout(result, &plan::broadcast_dims(kernel, broadcast))
                .map_or(FollowOperand::None, FollowOperand::Follow),
        };
    }
    FollowOperand::None
}

/// The instructions whose operands the preference rules look up, found once per kernel: the
/// `dot`s (in arena order) using a value as their B operand, and the first `broadcast` using
/// it as its operand.
struct Users {
    dots_of_b: HashMap<ValueId, Vec<ValueId>>,
    broadcast_of: HashMap<ValueId, ValueId>,
}

impl Users {
    fn of(kernel: &Kernel) -> Users {
        let mut users = Users { dots_of_b: HashMap::new(), broadcast_of: HashMap::new() };
        for (i, data) in kernel.values.iter().enumerate() {
            let id = ValueId(i as u32);
            match data.op {
                Op::Dot { b, .. } => users.dots_of_b.entry(b).or_default().push(id),
                Op::Broadcast(a) => {
                    users.broadcast_of.entry(a).or_insert(id);
                }
                _ => {}
            }
        }
        users
    }
}

/// The layout an annotation stands for, on `threads` threads.
fn from_annotation(a: &LayoutAnnotation, threads: usize) -> Result<RegisterLayout, Diagnostic> {
    let rank = a.factors.iter().find(|(f, _)| *f != LayoutFunc::Replicate).map_or(1, |(_, args)| args.len());
    let build = || -> Result<RegisterLayout, LayoutError> {
        let mut layout = RegisterLayout::unit(rank);
        for (func, args) in &a.factors {
            layout = match func {
                LayoutFunc::Local => layout.with_local(args)?,
                LayoutFunc::Spatial => layout.with_spatial(args)?,
                LayoutFunc::ColumnLocal => layout.with_column_local(args)?,
                LayoutFunc::ColumnSpatial => layout.with_column_spatial(args)?,
                LayoutFunc::Replicate => layout.product(&RegisterLayout::replicate(&vec![1; rank], args[0])?)?,
            };
        }
        Ok(layout)
    };
    let layout = build().map_err(|e| Diagnostic::error(format!("the layout `{a}` is not valid: {e}"), a.span))?;
    if layout.num_threads() != threads {
        return Err(Diagnostic::error(
            format!("the layout `{a}` spreads the tile over {} threads, but the block has {threads}", layout.num_threads()),
            a.span,
        )
        .with_note("the thread count is 32 × warps; add `spatial` factors or `replicate(n)` to use every thread"));
    }
    Ok(layout)
}

/// The layout a component without an annotation prefers (rule 3), if any applies.
fn preferred(kernel: &Kernel, members: &[Node], shape: &[usize], threads: usize) -> Option<RegisterLayout> {
    let values = || members.iter().filter_map(|n| if let Node::Value(v) = n { Some(*v) } else { None });
    for v in values() {
        if let Op::Dot { a, b, c } = kernel.values[v.index()].op {
            let operand = kernel.values[a.index()].ty.dtype();
            if operand.is_some_and(MmaInstruction::takes_operands_of) {
                let s8 = operand.zip(kernel.values[c.index()].ty.dtype()).and_then(|(x, y)| MmaInstruction::for_dtypes(x, y)) == Some(MmaInstruction::S8);
                let inner = if s8 { 1 } else { interleaved_columns(kernel, b) };
                if let Some(l) = mma_accumulator(shape, threads, inner) {
                    return Some(l);
                }
            }
        }
    }
    let stored: Vec<ValueId> = kernel
        .values
        .iter()
        .filter_map(|d| match d.op {
            Op::Store { value, .. } | Op::AtomicAdd { value, .. } | Op::StoreShared { value, .. } => Some(value),
            _ => None,
        })
        .collect();
    for v in values() {
        let data = &kernel.values[v.index()];
        if matches!(data.op, Op::Load { .. } | Op::LoadShared { .. }) || stored.contains(&v) {
            let bits = data.ty.dtype().map_or(32, |d| d.bits() as usize);
            if let Some(l) = vectorized(shape, threads, bits) {
                return Some(l);
            }
        }
    }
    None
}

/// How many `mma` column tiles to interleave ([`plan::MmaTiling`]) for a 16-bit float `dot`
/// whose B operand is `b`: when `b` is computed elementwise from a shared tile of codes
/// narrower than 16 bits (the packed weights of a quantized matmul), [`codes_per_piece`], so
/// that the B fragments take consecutive columns of a row, one piece of the packed tile,
/// instead of one code each from scattered bytes; 1 otherwise, and 1 when a
/// global load feeds `b` (its component then prefers 16-byte vectors to the fragment layout,
/// and interleaved tiles need the fragments in registers: `plan::mma_instruction`).
fn interleaved_columns(kernel: &Kernel, b: ValueId) -> usize {
    let shape = kernel.values[b.index()].ty.shape();
    let mut pending = vec![b];
    let (mut seen, mut found) = (0, 1);
    while let Some(v) = pending.pop() {
        seen += 1;
        if seen > 64 {
            break;
        }
        let data = &kernel.values[v.index()];
        if data.ty.shape() != shape {
            continue;
        }
        match data.op {
            Op::Load { .. } => return 1,
            Op::LoadShared { .. } => {
                let bits = data.ty.dtype().map_or(16, |d| d.bits() as usize);
                if bits < 16 {
                    found = found.max(codes_per_piece(bits));
                }
            }
            Op::Cast(x) | Op::Unary(_, x) => pending.push(x),
            Op::Binary(_, x, y) => pending.extend([x, y]),
            _ => {}
        }
    }
    found
}

/// How many consecutive codes of `bits` bits (fewer than 16) a thread's B fragments take from
/// one row: the most (a power of two) that fit in 16 bits, or in 32 when they make whole bytes
/// (a run that ends inside a byte beyond 16 bits costs more to cut than it saves: u5 and u7
/// take 2, u6 and 8-bit codes 4, measured on the quantized matmul's K loop).
fn codes_per_piece(bits: usize) -> usize {
    let mut codes = 32;
    while codes > 1 && !(codes * bits <= 16 || (codes * bits <= 32 && (codes * bits) % 8 == 0)) {
        codes /= 2;
    }
    codes
}

/// The `mma.m16n8` accumulator layout of an [M, N] tile (M % 16 == 0, N % 8 == 0) over the
/// block's warps, with up to `inner` (a power of two) column tiles interleaved
/// ([`plan::MmaTiling`]: as many as a warp's column tiles allow), or `None` when the tile does
/// not fit it.
fn mma_accumulator(shape: &[usize], threads: usize, inner: usize) -> Option<RegisterLayout> {
    let [m, n] = shape else { return None };
    let warps = threads / 32;
    if threads % 32 != 0 || m % 16 != 0 || n % 8 != 0 {
        return None;
    }
    let (tiles_m, tiles_n) = (m / 16, n / 8);
    // Spread the warps over the tile, as square as the tile allows.
    let mut best: Option<(usize, usize)> = None;
    for wm in 1..=warps {
        let wn = warps / wm;
        if wm * wn != warps || tiles_m % wm != 0 || tiles_n % wn != 0 {
            continue;
        }
        let balance = (tiles_m / wm).abs_diff(tiles_n / wn);
        if best.is_none_or(|(bm, bn)| balance < (tiles_m / bm).abs_diff(tiles_n / bn)) {
            best = Some((wm, wn));
        }
    }
    let (wm, wn) = best?;
    // As many interleaved tiles as asked for and a warp has.
    let mut inner = inner.max(1);
    while (tiles_n / wn) % inner != 0 {
        inner /= 2;
    }
    let quotient = RegisterLayout::local(&[tiles_m / wm, tiles_n / wn / inner]).and_then(|l| l.with_spatial(&[wm, wn])).ok()?;
    plan::MmaTiling::layout(&quotient, inner)
}

/// Each thread holds `v` consecutive elements of the last dimension (one access of at most 16
/// bytes), the rest spread as `auto_local_spatial`; `None` when no `v > 1` fits.
fn vectorized(shape: &[usize], threads: usize, bits: usize) -> Option<RegisterLayout> {
    let total: usize = shape.iter().product();
    let v = widest_run(shape, bits, |v| total / v >= threads);
    if v <= 1 {
        return None;
    }
    runs_of(shape, threads, v)
}

/// The largest power of two `v` with `v · bits ≤ 128` that divides the last extent and passes
/// `also` (1 when none above 1 does).
pub(crate) fn widest_run(shape: &[usize], bits: usize, also: impl Fn(usize) -> bool) -> usize {
    let last = shape.last().copied().unwrap_or(1);
    let cap = (128 / bits.max(1)).max(1);
    let mut v = 1usize << (usize::BITS - 1 - cap.leading_zeros());
    while v > 1 && (last % v != 0 || !also(v)) {
        v /= 2;
    }
    v
}

/// Runs of `v` consecutive elements of the last dimension per thread (`v` divides it), the
/// runs spread as `auto_local_spatial`.
pub(crate) fn runs_of(shape: &[usize], threads: usize, v: usize) -> Option<RegisterLayout> {
    let mut outer = shape.to_vec();
    *outer.last_mut()? /= v;
    let mut inner = vec![1; shape.len()];
    *inner.last_mut()? = v;
    RegisterLayout::auto_local_spatial(&outer, threads).and_then(|o| o.with_local(&inner)).ok()
}

#[cfg(test)]
mod tests {
    use super::codes_per_piece;

    #[test]
    fn runs_of_codes_fit_a_piece() {
        // bits → codes: 16 bits at most, or 32 in whole bytes.
        let want = [(1, 32), (2, 16), (3, 8), (4, 8), (5, 2), (6, 4), (7, 2), (8, 4), (12, 2), (15, 1)];
        for (bits, codes) in want {
            assert_eq!(codes_per_piece(bits), codes, "{bits} bits");
        }
    }
}
