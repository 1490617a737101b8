//! The reference interpreter of the block-level IR: the definition of what a kernel means
//! (docs/language.md states it; where the two differ, that is a bug in one of them).
//!
//! [`launch`] runs a [`Kernel`] on host arguments: it checks the arguments against the kernel's
//! parameters ([`check_args`]), evaluates the grid ([`eval_grid`]), then runs every block
//! sequentially (x fastest, then y, then z), each executing the whole body on whole tiles.
//!
//! **Expects** a kernel that passes `tl_compiler::ir::verify::verify(kernel, false)`; `launch`
//! runs the verifier itself and returns [`VmError::InvalidKernel`] otherwise, so that the
//! interpreter can rely on the type rules (operand shapes, scopes, parameter kinds) without
//! re-checking them per element. Layouts are ignored: they do not change the meaning of a
//! block-level program.
//!
//! **Guarantees**: no panic on any arguments; every failure is a [`VmError`] naming the
//! argument or the instruction (and the block) at fault. Only `mut` tensor parameters are
//! written, and only by stores, element by element in program order.
//!
//! Numeric model (the choices the IR leaves open are fixed here and documented per helper):
//! * Every value is held as [`Number`] elements (a scalar is one element, a tensor is row-major
//!   with the static shape of its type): integers and bools exactly, at every width, floats as
//!   `f64`. Every result is rounded to its dtype with [`DType::round_number`], so an `f16` add is
//!   the `f64` sum rounded once to `f16`. For `+ - * /`
//!   and `sqrt` on `f32`/`f16`/`bf16` this equals the correctly rounded operation, because
//!   `f64` has more than twice their precision plus two bits.
//! * Integer arithmetic is exact and must fit the result dtype: a result that would wrap on a
//!   GPU (or saturate) is a [`Fault::IntegerOverflow`] instead, because neither behaviour is
//!   defined by the language and silently picking one would hide bugs in index arithmetic.
//!   Only `cast` saturates. Integer division by zero is a [`Fault::DivisionByZero`].
//! * Integers are exact at every magnitude: `i64` and `u64` values are computed in `i128`.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use thiserror::Error;
use tl_compiler::diagnostics::Span;
use tl_compiler::dtype::DType;
use tl_compiler::number::Number;
use tl_compiler::ir::print::sym_expr;
use tl_compiler::ir::verify::verify;
use tl_compiler::ir::{
    BinaryOp, Kernel, Op, ParamKind, ReduceOp, Stmt, Type, UnaryOp, ValueId, VarId,
};

use crate::tensor::HostTensor;

/// One kernel argument; `launch` takes one per kernel parameter, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// A runtime scalar: [`Number::Int`] holds an integer exactly (the way to pass `i64`/`u64`
    /// values beyond 2^53), [`Number::Float`] any value, rounded to the parameter's dtype.
    Scalar(Number),
    /// A global tensor.
    Tensor(HostTensor),
}

impl Arg {
    /// The tensor, if this is a tensor argument.
    pub fn tensor(&self) -> Option<&HostTensor> {
        match self {
            Arg::Tensor(t) => Some(t),
            Arg::Scalar(_) => None,
        }
    }
}

impl Arg {
    /// A scalar argument: `Arg::scalar(3)` (exact, any integer width) or `Arg::scalar(0.5)`.
    pub fn scalar(value: impl Into<Number>) -> Arg {
        Arg::Scalar(value.into())
    }
}

impl From<HostTensor> for Arg {
    fn from(t: HostTensor) -> Arg {
        Arg::Tensor(t)
    }
}

/// The coordinates of a thread block, displayed as `(x, y, z)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCoord(pub [u32; 3]);

impl fmt::Display for BlockCoord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [x, y, z] = self.0;
        write!(f, "({x}, {y}, {z})")
    }
}

/// What went wrong inside a block, at one instruction.
#[derive(Error, Clone, Debug, PartialEq)]
pub enum Fault {
    #[error("integer overflow: the exact result does not fit {0}")]
    IntegerOverflow(DType),
    #[error("integer division by zero")]
    DivisionByZero,
    #[error("variable `{name}` (${var}) is read before it is assigned")]
    UninitializedVariable { var: u32, name: String },
    /// An operation the verifier admits but that has no meaning (e.g. `not` of a float).
    #[error("{0}")]
    Unsupported(String),
    /// A shared-memory access outside the shared tensor.
    #[error("element {index:?} is outside shared tensor %{shared} of shape {shape:?}")]
    SharedOutOfBounds { shared: u32, index: Vec<i64>, shape: Vec<usize> },
    /// A read of a shared element that nothing has written yet in this block.
    #[error("element {index:?} of shared tensor %{shared} is read before anything writes it")]
    SharedUninitialized { shared: u32, index: Vec<usize> },
    /// An access to a shared element that an unfinished `copy_async` will still write.
    #[error("element {index:?} of shared tensor %{shared} is {access} while a `copy_async` into it is still in flight (`commit` the copy and `wait` for its group first)")]
    CopyInFlight { shared: u32, index: Vec<usize>, access: &'static str },
    /// Two statements touched one shared element, at least one writing it (a `store`, or a
    /// `copy_async` landing), with no `sync()` between them: on the GPU their threads may
    /// differ, whatever the layouts, so the result is a race.
    #[error("element {index:?} of shared tensor %{shared} is {access} here, but `{earlier}` {earlier_access} it with no `sync()` in between (add one between the two)")]
    MissingSync { shared: u32, index: Vec<usize>, access: &'static str, earlier: String, earlier_access: &'static str, earlier_span: Span },
    /// An inconsistency that a verified kernel cannot have.
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Error, Debug)]
pub enum VmError {
    #[error("kernel `{kernel}` does not verify: {}", .errors.join("; "))]
    InvalidKernel { kernel: String, errors: Vec<String> },
    #[error("kernel `{kernel}` takes {expected} arguments, {got} were given")]
    ArgCount { kernel: String, expected: usize, got: usize },
    #[error("argument {index} (`{param}`): {reason}")]
    BadArg { index: usize, param: String, reason: String },
    #[error("grid of kernel `{kernel}`: {reason}")]
    Grid { kernel: String, reason: String },
    /// A fault while executing `instr` (e.g. `%7 = div`, at `span` in the source) in `block`.
    #[error("block {block}, {instr}: {fault}")]
    Exec { block: BlockCoord, instr: String, span: Span, fault: Fault },
}

/// Runs `kernel` on `args` (one per parameter, in order) with the reference semantics.
/// Stores write into the tensors of `args`; on error, stores done so far stay written. The
/// lines of `print` go to standard output.
pub fn launch(kernel: &Kernel, args: &mut [Arg]) -> Result<(), VmError> {
    let output = launch_with_output(kernel, args)?;
    if !output.is_empty() {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for line in output {
            let _ = writeln!(out, "{line}");
        }
    }
    Ok(())
}

/// [`launch`], returning the lines `print` produced (blocks in launch order, each block's
/// lines in program order, a tile's elements in row-major order) instead of printing them.
pub fn launch_with_output(kernel: &Kernel, args: &mut [Arg]) -> Result<Vec<String>, VmError> {
    verify(kernel, false)
        .map_err(|errors| VmError::InvalidKernel { kernel: kernel.name.clone(), errors })?;
    let params = check_args(kernel, args)?;
    let grid = grid_from_params(kernel, &params)?;
    // Scalar arguments rounded to their dtype once; tensor slots are never read.
    let scalars: Vec<Number> = kernel
        .params
        .iter()
        .zip(args.iter())
        .map(|(p, a)| match (&p.kind, a) {
            (ParamKind::Scalar(d), Arg::Scalar(v)) => d.round_number(*v),
            _ => Number::Float(f64::NAN),
        })
        .collect();
    let mut machine = Machine {
        kernel,
        scalars: &scalars,
        args,
        block: [0; 3],
        env: vec![None; kernel.values.len()],
        vars: vec![None; kernel.vars.len()],
        shared: HashMap::new(),
        uncommitted: Vec::new(),
        groups: VecDeque::new(),
        output: Vec::new(),
        epoch: 0,
    };
    let mut progress = crate::progress::Progress::new(format!("vm `{}`", kernel.name), grid);
    let mut done = 0u64;
    for z in 0..grid[2] {
        for y in 0..grid[1] {
            for x in 0..grid[0] {
                machine.run_block([x, y, z])?;
                done += 1;
                progress.block_done(done);
            }
        }
    }
    Ok(machine.output)
}

/// Checks `args` against the kernel's parameters (count, scalar or tensor, dtype, shape, that
/// each scalar fits its dtype) and returns the parameters' values for
/// [`SymExpr::eval`](tl_compiler::ir::SymExpr::eval):
/// `Some(v)` for integer and bool scalars, `None` for float scalars (they cannot size
/// anything) and for tensors.
pub fn check_args(kernel: &Kernel, args: &[Arg]) -> Result<Vec<Option<i64>>, VmError> {
    let shapes: Vec<ArgShape> = args
        .iter()
        .map(|a| match a {
            Arg::Scalar(v) => ArgShape::Scalar(*v),
            Arg::Tensor(t) => ArgShape::Tensor { dtype: t.dtype, shape: &t.shape, bytes: t.data.len() },
        })
        .collect();
    check_arg_shapes(kernel, &shapes)
}

/// What checking a launch needs of an argument: a scalar's value, or a tensor's dtype, shape
/// and the bytes of its buffer (on the host or on a device).
#[derive(Clone, Copy, Debug)]
pub enum ArgShape<'a> {
    Scalar(Number),
    Tensor { dtype: DType, shape: &'a [usize], bytes: usize },
}

/// [`check_args`] for arguments described by their shapes (a device buffer has no host data).
pub fn check_arg_shapes(kernel: &Kernel, args: &[ArgShape]) -> Result<Vec<Option<i64>>, VmError> {
    if args.len() != kernel.params.len() {
        return Err(VmError::ArgCount {
            kernel: kernel.name.clone(),
            expected: kernel.params.len(),
            got: args.len(),
        });
    }
    let bad = |index: usize, reason: String| VmError::BadArg {
        index,
        param: kernel.params[index].name.clone(),
        reason,
    };
    // Scalars first: tensor shapes are expressions over them.
    let mut values = vec![None; args.len()];
    for (i, (param, arg)) in kernel.params.iter().zip(args).enumerate() {
        let ParamKind::Scalar(dtype) = param.kind else { continue };
        let ArgShape::Scalar(v) = *arg else {
            return Err(bad(i, format!("expected a {dtype} scalar, got a tensor")));
        };
        values[i] = check_scalar(dtype, v).map_err(|reason| bad(i, reason))?;
    }
    for (i, (param, arg)) in kernel.params.iter().zip(args).enumerate() {
        let ParamKind::Global { dtype, shape, .. } = &param.kind else { continue };
        let ArgShape::Tensor { dtype: given, shape: given_shape, bytes: held } = *arg else {
            return Err(bad(i, format!("expected a {dtype} tensor, got a scalar")));
        };
        if given != *dtype {
            return Err(bad(i, format!("expected a {dtype} tensor, got a {given} tensor")));
        }
        let mut want = Vec::with_capacity(shape.len());
        for (d, e) in shape.iter().enumerate() {
            let v = e.eval(&values).map_err(|m| bad(i, format!("shape dim {d}: {m}")))?;
            let v = usize::try_from(v).map_err(|_| {
                bad(i, format!("shape dim {d} ({}) evaluates to {v}", sym_expr(kernel, e)))
            })?;
            want.push(v);
        }
        if given_shape != want.as_slice() {
            let text: Vec<String> = shape.iter().map(|e| sym_expr(kernel, e)).collect();
            return Err(bad(
                i,
                format!("shape {given_shape:?} does not match [{}] = {want:?}", text.join(", ")),
            ));
        }
        // `HostTensor` fields are public: make sure the buffer really holds the shape, so
        // element accesses cannot go out of the buffer.
        let bytes = HostTensor::byte_len(given, given_shape);
        if bytes != Some(held) {
            return Err(bad(
                i,
                format!("buffer holds {held} bytes, shape {given_shape:?} needs {bytes:?}"),
            ));
        }
    }
    Ok(values)
}

/// Checks that a scalar argument fits `dtype`; returns its value for shape expressions.
/// Float arguments are rounded to the dtype (as a host-side cast), but a finite value that
/// would become infinite is refused as a likely mistake. An integer parameter takes a
/// [`Number::Int`] exactly at every width, or a [`Number::Float`] holding an integer of at most
/// 2^53 in magnitude: beyond that an `f64` may already have been rounded (2^53 + 1 arrives as
/// 2^53), so it is refused rather than used.
fn check_scalar(dtype: DType, v: Number) -> Result<Option<i64>, String> {
    if dtype.is_float() {
        let f = v.to_f64();
        if f.is_finite() && dtype.round(f).is_infinite() {
            return Err(format!("{v} overflows {dtype}"));
        }
        return Ok(None);
    }
    let integer = match v {
        Number::Int(i) => i,
        Number::Float(f) if !f.is_finite() || f.fract() != 0.0 => {
            return Err(format!("{f} is not an integer, the parameter is {dtype}"));
        }
        Number::Float(f) if f.abs() > MAX_EXACT_F64_INTEGER => {
            return Err(format!(
                "{f} is beyond ±2^53 as a float, where it may already have been rounded: pass an integer scalar (`Number::Int`) to keep it exact"
            ));
        }
        Number::Float(f) => f as i128,
    };
    let (lo, hi) = dtype.int_range().expect("integer or bool dtype");
    if !(lo..=hi).contains(&integer) {
        return Err(format!("{integer} is out of range for {dtype}"));
    }
    // u64 values beyond i64 cannot appear in shape expressions (they are i64).
    Ok(i64::try_from(integer).ok())
}

/// The largest magnitude up to which every integer is an `f64`.
const MAX_EXACT_F64_INTEGER: f64 = (1u64 << 53) as f64;

/// Checks the arguments and evaluates the grid extents (x, y, z).
pub fn eval_grid(kernel: &Kernel, args: &[Arg]) -> Result<[u32; 3], VmError> {
    let params = check_args(kernel, args)?;
    grid_from_params(kernel, &params)
}

/// The largest grid extents the hardware launches (x, y, z): the same limits on every backend,
/// so that a launch the GPU would refuse is refused on the CPU too.
pub const MAX_GRID: [i64; 3] = [(1 << 31) - 1, 65535, 65535];

/// Evaluates the grid extents with parameter values from [`check_args`]. Extents must be
/// non-negative and within [`MAX_GRID`].
pub fn grid_from_params(kernel: &Kernel, params: &[Option<i64>]) -> Result<[u32; 3], VmError> {
    let err = |reason: String| VmError::Grid { kernel: kernel.name.clone(), reason };
    let mut grid = [0u32; 3];
    for (axis, e) in kernel.grid.iter().enumerate() {
        let name = ["x", "y", "z"][axis];
        let v = e.eval(params).map_err(|m| err(format!("{name}: {m}")))?;
        if v < 0 {
            return Err(err(format!("{name} = {} evaluates to {v}", sym_expr(kernel, e))));
        }
        if v > MAX_GRID[axis] {
            return Err(err(format!(
                "{name} = {} evaluates to {v} blocks, more than the {} the hardware launches in {name}",
                sym_expr(kernel, e),
                MAX_GRID[axis]
            )));
        }
        grid[axis] = v as u32;
    }
    Ok(grid)
}

/// The state of one block's execution. `env` holds the current value of every value id (a
/// value inside a loop body is overwritten each iteration); `vars` the mutable variables.
struct Machine<'k, 'a> {
    kernel: &'k Kernel,
    /// Scalar arguments rounded to their dtypes (unused slots for tensors).
    scalars: &'a [Number],
    args: &'a mut [Arg],
    block: [u32; 3],
    env: Vec<Option<Vec<Number>>>,
    vars: Vec<Option<Vec<Number>>>,
    /// The contents of each shared tensor of the block (`None`: not written yet) and how many
    /// unfinished copies target each element.
    shared: HashMap<ValueId, SharedTensor>,
    /// Copies started since the last `commit`.
    uncommitted: Vec<PendingCopy>,
    /// Committed groups of copies, oldest first, not yet retired by a `wait`.
    groups: VecDeque<Vec<PendingCopy>>,
    /// Lines printed so far.
    output: Vec<String>,
    /// How many `sync()`s the block has passed: accesses in one epoch are unordered.
    epoch: u64,
}

struct SharedTensor {
    shape: Vec<usize>,
    data: Vec<Option<Number>>,
    in_flight: Vec<u32>,
    /// Per element, the barrier epoch and statement of the last write (a store, or a copy
    /// landing) and of the last read.
    last_write: Vec<Option<(u64, ValueId)>>,
    last_read: Vec<Option<(u64, ValueId)>>,
}

/// How an earlier access to a shared element reads in a [`Fault::MissingSync`].
fn access_of(kernel: &Kernel, statement: ValueId, write: bool) -> (String, &'static str, Span) {
    let data = kernel.value(statement);
    let what = match data.op {
        Op::CopyAsync { .. } => "copy_async",
        Op::StoreShared { .. } => "store",
        _ => "load",
    };
    let access = match (write, what) {
        (true, "copy_async") => "wrote (the copy landed at a `wait`)",
        (true, _) => "wrote",
        (false, _) => "read",
    };
    (what.to_string(), access, data.span)
}

impl SharedTensor {
    /// The block-level rule for an access by `statement` in barrier epoch `epoch`: an element
    /// another statement wrote, or (for a write) read, since the last `sync()` is an error.
    fn check_sync(&self, kernel: &Kernel, shared: ValueId, index: usize, epoch: u64, statement: ValueId, write: bool) -> Result<(), Fault> {
        let conflict = match (self.last_write[index], self.last_read[index]) {
            (Some((e, w)), _) if e == epoch && w != statement => Some((w, true)),
            (_, Some((e, r))) if write && e == epoch && r != statement => Some((r, false)),
            _ => None,
        };
        match conflict {
            None => Ok(()),
            Some((earlier, earlier_write)) => {
                let (earlier, earlier_access, earlier_span) = access_of(kernel, earlier, earlier_write);
                Err(Fault::MissingSync {
                    shared: shared.0,
                    index: self.unflatten(index),
                    access: if write { "written" } else { "read" },
                    earlier,
                    earlier_access,
                    earlier_span,
                })
            }
        }
    }
}

/// One element of a `copy_async`: its source is read when the copy starts, and lands in the
/// shared tensor when a `wait` retires its group.
struct PendingCopy {
    shared: ValueId,
    index: usize,
    value: Number,
    /// The `copy_async` statement.
    statement: ValueId,
}

impl SharedTensor {
    /// The flat index of `offsets + tile_index` (tile over the trailing dims), checked.
    fn flat(&self, id: ValueId, offsets: &[i64], tile_index: &[usize]) -> Result<usize, Fault> {
        let lead = self.shape.len() - tile_index.len();
        let mut flat = 0usize;
        let mut coords = Vec::with_capacity(self.shape.len());
        for d in 0..self.shape.len() {
            let t = if d < lead { 0 } else { tile_index[d - lead] as i64 };
            coords.push(offsets[d].saturating_add(t));
        }
        for (d, &c) in coords.iter().enumerate() {
            if c < 0 || c >= self.shape[d] as i64 {
                return Err(Fault::SharedOutOfBounds { shared: id.0, index: coords, shape: self.shape.clone() });
            }
            flat = flat * self.shape[d] + c as usize;
        }
        Ok(flat)
    }

    /// The flat indices of a `tile` at `offsets` (row-major over the tile), checked; the
    /// first element outside the tensor is the error.
    fn tile_indices(&self, id: ValueId, offsets: &[i64], tile: &[usize]) -> Result<Vec<usize>, Fault> {
        let mut indices = Vec::with_capacity(tile.iter().product());
        let mut fault = None;
        for_each_index(tile, |idx| {
            if fault.is_none() {
                match self.flat(id, offsets, idx) {
                    Ok(i) => indices.push(i),
                    Err(f) => fault = Some(f),
                }
            }
        });
        fault.map_or(Ok(indices), Err)
    }

    fn unflatten(&self, mut flat: usize) -> Vec<usize> {
        let mut index = vec![0; self.shape.len()];
        for d in (0..self.shape.len()).rev() {
            index[d] = flat % self.shape[d];
            flat /= self.shape[d];
        }
        index
    }
}

impl Machine<'_, '_> {
    fn run_block(&mut self, block: [u32; 3]) -> Result<(), VmError> {
        self.block = block;
        // Each block starts with no values, uninitialized variables, no shared memory and no
        // copies in flight.
        self.env.iter_mut().for_each(|v| *v = None);
        self.vars.iter_mut().for_each(|v| *v = None);
        self.shared.clear();
        self.uncommitted.clear();
        self.groups.clear();
        let kernel = self.kernel;
        self.run_body(&kernel.body)
    }

    fn error(&self, instr: String, span: Span, fault: Fault) -> VmError {
        VmError::Exec { block: BlockCoord(self.block), instr, span, fault }
    }

    /// Reports a fault of the statement headed by value `id` (`for`, `if`, assignment).
    fn stmt_error(&self, what: &str, id: ValueId, fault: Fault) -> VmError {
        let span = self.kernel.values.get(id.index()).map(|v| v.span).unwrap_or_default();
        self.error(format!("{what} %{}", id.0), span, fault)
    }

    fn run_body(&mut self, body: &[Stmt]) -> Result<(), VmError> {
        let kernel = self.kernel;
        for stmt in body {
            match stmt {
                Stmt::Eval(id) => {
                    let data = &kernel.values[id.index()];
                    let value = self.eval(*id).map_err(|fault| {
                        self.error(format!("%{} = {}", id.0, op_name(&data.op)), data.span, fault)
                    })?;
                    self.env[id.index()] = Some(value);
                }
                Stmt::Assign(var, value) => {
                    let v = get(&self.env, *value)
                        .map_err(|f| self.stmt_error(&format!("${} =", var.0), *value, f))?;
                    self.vars[var.index()] = Some(v.to_vec());
                }
                Stmt::For { index, start, end, body } => {
                    // Bounds are evaluated once, before the first iteration.
                    let bounds = get_scalar(&self.env, *start)
                        .and_then(|s| Ok((s, get_scalar(&self.env, *end)?)))
                        .map_err(|f| self.stmt_error("for", *index, f))?;
                    for i in index_value(bounds.0)..index_value(bounds.1) {
                        self.env[index.index()] = Some(vec![Number::Int(i as i128)]);
                        self.run_body(body)?;
                    }
                }
                Stmt::If { cond, then_body, else_body } => {
                    let c = get_scalar(&self.env, *cond)
                        .map_err(|f| self.stmt_error("if", *cond, f))?;
                    self.run_body(if c.is_nonzero() { then_body } else { else_body })?;
                }
            }
        }
        Ok(())
    }

    /// Computes value `id` (its elements, rounded to its dtype; none for a store).
    fn eval(&mut self, id: ValueId) -> Result<Vec<Number>, Fault> {
        let kernel = self.kernel;
        let data = &kernel.values[id.index()];
        let env = &self.env;
        let internal = |m: &str| Fault::Internal(m.to_string());
        let ty = &data.ty;
        let n = ty.num_elements();
        let dtype = || ty.dtype().ok_or_else(|| internal("the result has no dtype"));
        let out = match &data.op {
            Op::Const(v) => vec![dtype()?.round_number(*v)],
            Op::Param(i) => match kernel.get_param(*i).map(|p| &p.kind) {
                Some(ParamKind::Scalar(_)) => vec![dtype()?.round_number(self.scalars[i.index()])],
                _ => return Err(internal("`param` names a tensor parameter")),
            },
            Op::BlockIdx(axis) => {
                let c = self.block.get(*axis as usize).ok_or_else(|| internal("bad axis"))?;
                vec![dtype()?.round_number(Number::Int(*c as i128))]
            }
            Op::LoopIndex => return Err(internal("a loop index is set by its `for`")),
            Op::ReadVar(var) => self.read_var(*var)?,
            Op::Unary(op, a) => {
                let d = dtype()?;
                get(env, *a)?.iter().map(|&x| unary(*op, d, x)).collect::<Result<_, _>>()?
            }
            Op::Binary(op, a, b) => {
                let d = value_dtype(kernel, *a)?;
                let (x, y) = (get(env, *a)?, get(env, *b)?);
                x.iter().zip(y).map(|(&x, &y)| binary(*op, d, x, y)).collect::<Result<_, _>>()?
            }
            Op::Cast(a) => {
                let d = dtype()?;
                get(env, *a)?.iter().map(|&x| convert(d, x)).collect()
            }
            Op::Splat(a) => vec![get_scalar(env, *a)?; n],
            Op::ToScalar(a) => vec![get(env, *a)?[0]],
            Op::Iota { dim } => {
                // Row-major: the index along `dim` of flat element `f` is f / stride % extent.
                let (d, shape) = (dtype()?, shape_of(ty));
                let stride: usize = shape[dim + 1..].iter().product();
                (0..n).map(|f| d.round_number(Number::Int((f / stride % shape[*dim]) as i128))).collect()
            }
            Op::Broadcast(a) => broadcast(get(env, *a)?, value_shape(kernel, *a), shape_of(ty)),
            Op::Reshape(a) => get(env, *a)?.to_vec(),
            Op::Permute { value, perm } => {
                let (x, from) = (get(env, *value)?, value_shape(kernel, *value));
                let to = shape_of(ty);
                let from_strides = strides(from);
                let mut out = Vec::with_capacity(n);
                for_each_index(to, |idx| {
                    // Result index idx is operand index idx' with idx'[perm[d]] = idx[d].
                    let flat: usize = perm.iter().enumerate().map(|(d, &p)| idx[d] * from_strides[p]).sum();
                    out.push(x[flat]);
                });
                out
            }
            Op::View(a) => {
                let from = kernel.values[a.index()].ty.dtype().ok_or_else(|| internal("view of an untyped value"))?;
                view(get(env, *a)?, from, dtype()?)
            }
            Op::Select { cond, a, b } => {
                let (c, x, y) = (get(env, *cond)?, get(env, *a)?, get(env, *b)?);
                c.iter()
                    .zip(x.iter().zip(y))
                    .map(|(&c, (&x, &y))| if c.is_nonzero() { x } else { y })
                    .collect()
            }
            Op::Load { param, offsets, pad } => {
                let offsets = tile_offsets(kernel, env, offsets)?;
                let tensor = self.args.get(param.index()).and_then(Arg::tensor);
                let tensor = tensor.ok_or_else(|| internal("`load` names a scalar parameter"))?;
                load(tensor, &offsets, shape_of(ty), dtype()?.round_number(*pad))?
            }
            Op::Store { param, value, offsets } | Op::AtomicAdd { param, value, offsets } => {
                let adds = matches!(data.op, Op::AtomicAdd { .. });
                let offsets = tile_offsets(kernel, env, offsets)?;
                let mutable = matches!(
                    kernel.get_param(*param).map(|p| &p.kind),
                    Some(ParamKind::Global { mutable: true, .. })
                );
                let tensor = match self.args.get_mut(param.index()) {
                    Some(Arg::Tensor(t)) if mutable => t,
                    _ => return Err(internal(&format!("`{}` names no `mut` tensor parameter", if adds { "atomic_add" } else { "store" }))),
                };
                let (tile, x) = (value_shape(kernel, *value), get(env, *value)?);
                if adds { atomic_add(tensor, &offsets, tile, x)? } else { store(tensor, &offsets, tile, x)? }
                Vec::new()
            }
            Op::SharedAlloc => {
                let Type::Shared { shape, .. } = ty else { return Err(internal("shared_alloc of a non-shared type")) };
                let n: usize = shape.iter().product();
                self.shared.insert(
                    id,
                    SharedTensor {
                        shape: shape.clone(),
                        data: vec![None; n],
                        in_flight: vec![0; n],
                        last_write: vec![None; n],
                        last_read: vec![None; n],
                    },
                );
                Vec::new()
            }
            Op::LoadShared { shared, offsets } => {
                let offsets = scalars_of(env, offsets)?;
                let epoch = self.epoch;
                let tensor = self.shared.get_mut(shared).ok_or_else(|| internal("shared tensor not allocated"))?;
                let indices = tensor.tile_indices(*shared, &offsets, shape_of(ty))?;
                let mut values = Vec::with_capacity(indices.len());
                for &i in &indices {
                    if tensor.in_flight[i] > 0 {
                        return Err(Fault::CopyInFlight { shared: shared.0, index: tensor.unflatten(i), access: "read" });
                    }
                    let value = tensor.data[i].ok_or_else(|| Fault::SharedUninitialized { shared: shared.0, index: tensor.unflatten(i) })?;
                    tensor.check_sync(kernel, *shared, i, epoch, id, false)?;
                    tensor.last_read[i] = Some((epoch, id));
                    values.push(value);
                }
                values
            }
            Op::StoreShared { shared, value, offsets } => {
                let offsets = scalars_of(env, offsets)?;
                let x = get(env, *value)?;
                let tile = value_shape(kernel, *value);
                let epoch = self.epoch;
                let tensor = self.shared.get_mut(shared).ok_or_else(|| internal("shared tensor not allocated"))?;
                let targets = tensor.tile_indices(*shared, &offsets, tile)?;
                if let Some(&i) = targets.iter().find(|&&i| tensor.in_flight[i] > 0) {
                    return Err(Fault::CopyInFlight { shared: shared.0, index: tensor.unflatten(i), access: "written" });
                }
                for &i in &targets {
                    tensor.check_sync(kernel, *shared, i, epoch, id, true)?;
                }
                for (&i, &v) in targets.iter().zip(x) {
                    tensor.data[i] = Some(v);
                    tensor.last_write[i] = Some((epoch, id));
                }
                Vec::new()
            }
            Op::CopyAsync { shared, dst_offsets, param, src_offsets } => {
                let dst_offsets = scalars_of(env, dst_offsets)?;
                let src_offsets = scalars_of(env, src_offsets)?;
                let source = self.args.get(param.index()).and_then(Arg::tensor);
                let source = source.ok_or_else(|| internal("`copy_async` names a scalar parameter"))?;
                let tensor = self.shared.get_mut(shared).ok_or_else(|| internal("shared tensor not allocated"))?;
                // The tile: the trailing dims of the shared tensor, whole; the destination
                // offsets select the leading dims.
                let rank = source.shape.len();
                let lead = tensor.shape.len() - rank;
                let tile = tensor.shape[lead..].to_vec();
                // Outside the tensor: all bits zero, as `cp.async` fills (0 in every format but
                // e8m0, whose code 0 is 2^-127).
                let corner: Vec<Offset> = src_offsets.iter().map(|&o| Offset::At(o)).collect();
                let values = load(source, &corner, &tile, source.dtype.decode_number(0))?;
                let mut at = dst_offsets;
                at.resize(tensor.shape.len(), 0);
                let targets = tensor.tile_indices(*shared, &at, &tile)?;
                // The copy may write any time from now until its group's `wait`: what another
                // statement read or wrote since the last `sync()` must not be overwritten.
                for &i in &targets {
                    tensor.check_sync(kernel, *shared, i, self.epoch, id, true)?;
                }
                let copies: Vec<PendingCopy> = targets
                    .into_iter()
                    .zip(values)
                    .map(|(index, value)| PendingCopy { shared: *shared, index, value, statement: id })
                    .collect();
                for c in &copies {
                    tensor.in_flight[c.index] += 1;
                }
                self.uncommitted.extend(copies);
                Vec::new()
            }
            Op::Commit => {
                let group = std::mem::take(&mut self.uncommitted);
                self.groups.push_back(group);
                Vec::new()
            }
            Op::Wait(keep) => {
                while self.groups.len() > *keep as usize {
                    let group = self.groups.pop_front().expect("non-empty");
                    for c in group {
                        let tensor = self.shared.get_mut(&c.shared).ok_or_else(|| internal("shared tensor not allocated"))?;
                        tensor.data[c.index] = Some(c.value);
                        tensor.in_flight[c.index] -= 1;
                        // Landed: a write by the copy, visible to the other threads only after
                        // the next `sync()`.
                        tensor.last_write[c.index] = Some((self.epoch, c.statement));
                    }
                }
                Vec::new()
            }
            // The VM executes every instruction for the whole block at once; a barrier orders
            // the shared accesses before it against those after it (block-level rule, checked
            // at each access whatever the layouts).
            Op::Sync => {
                self.epoch += 1;
                Vec::new()
            }
            Op::Print { value, label } => {
                use tl_compiler::lir::{format_print_line, PrintValue};
                let d = value_dtype(kernel, *value)?;
                let x = get(env, *value)?;
                let shape = value_shape(kernel, *value).to_vec();
                let print_value = |v: Number| match v {
                    Number::Int(i) if !d.is_float() => PrintValue::Int(i),
                    v => PrintValue::Float(v.to_f64()),
                };
                if kernel.values[value.index()].ty.is_scalar() {
                    self.output.push(format_print_line(self.block, label, &[], print_value(x[0])));
                } else {
                    let mut k = 0;
                    for_each_index(&shape, |idx| {
                        let coords: Vec<i64> = idx.iter().map(|&c| c as i64).collect();
                        self.output.push(format_print_line(self.block, label, &coords, print_value(x[k])));
                        k += 1;
                    });
                }
                Vec::new()
            }
            Op::Dot { a, b, c } => {
                let (a_shape, b_shape) = (value_shape(kernel, *a), value_shape(kernel, *b));
                let &[m, k] = a_shape else { return Err(internal("dot operand is not 2-d")) };
                let &[_, n_] = b_shape else { return Err(internal("dot operand is not 2-d")) };
                let ab_dtype = value_dtype(kernel, *a)?;
                let (a, b, c) = (get(env, *a)?, get(env, *b)?, get(env, *c)?);
                dot(a, b, c, [m, n_, k], ab_dtype, dtype()?)?
            }
            Op::Reduce { op, value, dim } => {
                reduce(*op, dtype()?, get(env, *value)?, value_shape(kernel, *value), *dim)?
            }
        };
        // Every value's element count matches its type; later ops index by the types' shapes.
        if out.len() != n {
            return Err(Fault::Internal(format!("{} elements for type {ty:?}", out.len())));
        }
        Ok(out)
    }

    fn read_var(&self, var: VarId) -> Result<Vec<Number>, Fault> {
        let slot = self.vars.get(var.index()).ok_or_else(|| Fault::Internal("bad var".into()))?;
        slot.clone().ok_or_else(|| Fault::UninitializedVariable {
            var: var.0,
            name: self.kernel.vars[var.index()].name.clone(),
        })
    }
}

/// The elements of an already computed value.
/// The values of scalar offsets, as integers.
fn scalars_of(env: &[Option<Vec<Number>>], ids: &[ValueId]) -> Result<Vec<i64>, Fault> {
    ids.iter().map(|o| get_scalar(env, *o).map(index_value)).collect()
}

/// Where a global access puts a tile along one dimension: at a corner (`At(o)`: element `i`
/// goes to index `o + i`), or at the indices of an index tile (`Each`: element `k`, counted
/// row-major over the tile, goes to index `indices[k]`; a gather or a scatter).
enum Offset {
    At(i64),
    Each(Vec<i64>),
}

/// The offsets of a global access: scalars or index tiles (of the tile's shape).
fn tile_offsets(kernel: &Kernel, env: &[Option<Vec<Number>>], ids: &[ValueId]) -> Result<Vec<Offset>, Fault> {
    ids.iter()
        .map(|&o| {
            if kernel.values[o.index()].ty.shape().is_some() {
                Ok(Offset::Each(get(env, o)?.iter().map(|&n| index_value(n)).collect()))
            } else {
                get_scalar(env, o).map(|n| Offset::At(index_value(n)))
            }
        })
        .collect()
}

/// An offset or a loop bound as an `i64` (saturating: a value beyond `i64` is out of every
/// tensor anyway).
fn index_value(n: Number) -> i64 {
    match n {
        Number::Int(v) => v.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        Number::Float(f) => f as i64,
    }
}

/// The integer of an integer or bool element (held exactly; a float is truncated, which a
/// verified kernel never needs).
fn int(n: Number) -> i128 {
    match n {
        Number::Int(v) => v,
        Number::Float(f) => f as i128,
    }
}

fn get(env: &[Option<Vec<Number>>], id: ValueId) -> Result<&[Number], Fault> {
    env.get(id.index())
        .and_then(|v| v.as_deref())
        .ok_or_else(|| Fault::Internal(format!("%{} is used before it is computed", id.0)))
}

fn get_scalar(env: &[Option<Vec<Number>>], id: ValueId) -> Result<Number, Fault> {
    match get(env, id)? {
        [v] => Ok(*v),
        _ => Err(Fault::Internal(format!("%{} is not a scalar", id.0))),
    }
}

fn value_dtype(kernel: &Kernel, id: ValueId) -> Result<DType, Fault> {
    kernel.value(id).ty.dtype().ok_or_else(|| Fault::Internal(format!("%{} has no dtype", id.0)))
}

/// The shape of a value's type; a scalar is a tile of rank 0.
fn value_shape(kernel: &Kernel, id: ValueId) -> &[usize] {
    shape_of(&kernel.value(id).ty)
}

fn shape_of(ty: &Type) -> &[usize] {
    ty.shape().unwrap_or(&[])
}

/// A short name of an op for error messages (the mnemonic of the IR's text form).
fn op_name(op: &Op) -> String {
    match op {
        Op::Const(_) => "const".into(),
        Op::Param(_) => "param".into(),
        Op::BlockIdx(_) => "block_idx".into(),
        Op::LoopIndex => "loop_index".into(),
        Op::ReadVar(v) => format!("read ${}", v.0),
        Op::Unary(u, _) => u.name().into(),
        Op::Binary(b, _, _) => b.name().into(),
        Op::Cast(_) => "cast".into(),
        Op::Splat(_) => "splat".into(),
        Op::ToScalar(_) => "to_scalar".into(),
        Op::Iota { .. } => "iota".into(),
        Op::Broadcast(_) => "broadcast".into(),
        Op::Load { .. } => "load".into(),
        Op::Store { .. } => "store".into(),
        Op::AtomicAdd { .. } => "atomic_add".into(),
        Op::Dot { .. } => "dot".into(),
        Op::Reduce { op, .. } => format!("reduce_{}", op.name()),
        Op::Select { .. } => "select".into(),
        Op::SharedAlloc => "shared".into(),
        Op::LoadShared { .. } => "load (shared)".into(),
        Op::StoreShared { .. } => "store (shared)".into(),
        Op::CopyAsync { .. } => "copy_async".into(),
        Op::Commit => "commit".into(),
        Op::Wait(_) => "wait".into(),
        Op::Sync => "sync".into(),
        Op::Print { .. } => "print".into(),
        Op::View(_) => "view".into(),
        Op::Permute { .. } => "permute".into(),
        Op::Reshape(_) => "reshape".into(),
    }
}

/// How a dtype computes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Float,
    Int,
    Bool,
}

fn class(d: DType) -> Class {
    if d.is_float() {
        Class::Float
    } else if d == DType::Bool {
        Class::Bool
    } else {
        Class::Int
    }
}

/// A value converted to `d` as `cast` does: one correct rounding (docs/language.md §7, `cast`).
fn convert(d: DType, x: Number) -> Number {
    d.round_number(x)
}

/// The result of float arithmetic on `d` from its exact value: low-precision floats compute
/// in f32 (the result is rounded to f32, then into `d`); the others round once.
fn arithmetic_result(d: DType, r: f64) -> Number {
    if d.is_low_precision() {
        Number::Float(d.round(DType::F32.round(r)))
    } else {
        Number::Float(d.round(r))
    }
}

fn bool_value(b: bool) -> Number {
    Number::Int(b as i128)
}

/// An exact integer result as a value of `d`, or an overflow fault.
fn fit_int(d: DType, r: i128) -> Result<Number, Fault> {
    let (lo, hi) = d.int_range().expect("integer dtype");
    if (lo..=hi).contains(&r) { Ok(Number::Int(r)) } else { Err(Fault::IntegerOverflow(d)) }
}

/// IEEE 754-2019 `maximumNumber`: a NaN operand yields the other operand (NaN only if both
/// are), and `+0` is larger than `-0` so the result does not depend on the operand order.
fn max_num(a: f64, b: f64) -> f64 {
    if a.is_nan() || b > a || (b == a && a.is_sign_negative()) { b } else { a }
}

/// IEEE 754-2019 `minimumNumber`: like [`max_num`], with `-0` smaller than `+0`.
fn min_num(a: f64, b: f64) -> f64 {
    if a.is_nan() || b < a || (b == a && b.is_sign_negative()) { b } else { a }
}

/// One element of a unary op on dtype `d`. Float math is computed in `f64` and rounded once
/// (so it is at least as accurate as the GPU's, and tests compare with tolerances). On
/// integers `not` is bitwise, on bool logical; `neg`/`abs` of a bool are the identity.
fn unary(op: UnaryOp, d: DType, x: Number) -> Result<Number, Fault> {
    match class(d) {
        Class::Float => {
            let x = x.to_f64();
            // The approximations compute the exact function too (the GPU's differ by the
            // hardware's error bounds).
            let r = match op {
                UnaryOp::Not => return Err(Fault::Unsupported(format!("`not` of a {d} value"))),
                _ => op.exact_f64(x),
            };
            Ok(arithmetic_result(d, r))
        }
        Class::Int => {
            let v = int(x);
            let r = match op {
                UnaryOp::Neg => -v,
                UnaryOp::Abs => v.abs(),
                // Two's complement for signed types; `max - v` is the same bit flip unsigned.
                UnaryOp::Not if d.is_signed_int() => !v,
                UnaryOp::Not => d.int_range().expect("integer dtype").1 - v,
                _ => return Err(Fault::Unsupported(format!("`{}` of a {d} value", op.name()))),
            };
            // Below 8 bits: computed in i32 and saturated back.
            if d.is_low_precision() { Ok(d.round_number(Number::Int(r))) } else { fit_int(d, r) }
        }
        Class::Bool => match op {
            UnaryOp::Not => Ok(Number::Int(1 - int(x))),
            UnaryOp::Neg | UnaryOp::Abs => Ok(x),
            _ => Err(Fault::Unsupported(format!("`{}` of a bool value", op.name()))),
        },
    }
}

/// One element of a binary op whose operands have dtype `d`. Comparisons give bool (IEEE:
/// anything compared with NaN is false except `ne`). Floats: computed in `f64`, rounded once;
/// `div` is IEEE, `rem` is `fmod` (sign of the dividend), `max`/`min` are [`max_num`] and
/// [`min_num`]; `and`/`or` are refused. Integers: exact, `div` truncates toward zero, `rem`
/// has the dividend's sign, `and`/`or` are bitwise (two's complement). Bools compute as the
/// integers 0 and 1 and convert back with `!= 0` (so `and`/`or` are logical).
fn binary(op: BinaryOp, d: DType, x: Number, y: Number) -> Result<Number, Fault> {
    if class(d) == Class::Float {
        let (x, y) = (x.to_f64(), y.to_f64());
        let r = match op {
            BinaryOp::Lt => return Ok(bool_value(x < y)),
            BinaryOp::Le => return Ok(bool_value(x <= y)),
            BinaryOp::Gt => return Ok(bool_value(x > y)),
            BinaryOp::Ge => return Ok(bool_value(x >= y)),
            BinaryOp::Eq => return Ok(bool_value(x == y)),
            BinaryOp::Ne => return Ok(bool_value(x != y)),
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
            BinaryOp::Div => x / y,
            BinaryOp::Rem => x % y,
            BinaryOp::Max => max_num(x, y),
            BinaryOp::Min => min_num(x, y),
            // C's pow (special cases included); the approximation computes it too.
            BinaryOp::Pow | BinaryOp::PowApprox => x.powf(y),
            _ => return Err(Fault::Unsupported(format!("`{}` of {d} values", op.name()))),
        };
        return Ok(arithmetic_result(d, r));
    }
    let (a, b) = (int(x), int(y));
    let cmp = match op {
        BinaryOp::Lt => Some(a < b),
        BinaryOp::Le => Some(a <= b),
        BinaryOp::Gt => Some(a > b),
        BinaryOp::Ge => Some(a >= b),
        BinaryOp::Eq => Some(a == b),
        BinaryOp::Ne => Some(a != b),
        _ => None,
    };
    if let Some(c) = cmp {
        return Ok(bool_value(c));
    }
    if matches!(op, BinaryOp::Div | BinaryOp::Rem) && b == 0 {
        return Err(Fault::DivisionByZero);
    }
    if matches!(op, BinaryOp::Shl | BinaryOp::Shr) {
        return Ok(Number::Int(shift(op, d, a, b)));
    }
    let r = match op {
        BinaryOp::Add => a.checked_add(b),
        BinaryOp::Sub => a.checked_sub(b),
        BinaryOp::Mul => a.checked_mul(b),
        BinaryOp::Div => a.checked_div(b),
        BinaryOp::Rem => a.checked_rem(b),
        BinaryOp::Max => Some(a.max(b)),
        BinaryOp::Min => Some(a.min(b)),
        // Bitwise on two's complement values: the result of two values of `d` is one.
        BinaryOp::And => Some(a & b),
        BinaryOp::Or => Some(a | b),
        BinaryOp::Xor => Some(a ^ b),
        _ => unreachable!("comparisons and shifts are handled above"),
    };
    let r = r.ok_or(Fault::IntegerOverflow(d))?;
    if d.is_low_precision() {
        // Computed in i32 and saturated back (i32 cannot overflow on values of at most 7 bits,
        // except a product of two i7 extremes, which still fits).
        return Ok(d.round_number(Number::Int(r)));
    }
    if d == DType::Bool { Ok(bool_value(r != 0)) } else { fit_int(d, r) }
}

/// `a << b` or `a >> b` on integer dtype `d`, on the dtype's own bits (docs/language.md §5):
/// bits shifted beyond the width are dropped, `>>` fills with the sign on signed dtypes and
/// with zeros on unsigned ones, and an amount outside `0 .. width` (a negative one included)
/// shifts everything out.
fn shift(op: BinaryOp, d: DType, a: i128, b: i128) -> i128 {
    let width = d.bits();
    let signed = d.is_signed_int();
    let modulus = 1i128 << width;
    let in_range = (0..i128::from(width)).contains(&b);
    match op {
        BinaryOp::Shl => {
            if !in_range {
                return 0;
            }
            // The low `width` bits of the shifted pattern, read back in the dtype.
            // (In u128: a 64-bit pattern shifted by up to 63 bits fits.)
            let bits = (((a.rem_euclid(modulus) as u128) << b) % modulus as u128) as i128;
            if signed && bits >= modulus / 2 { bits - modulus } else { bits }
        }
        _ => match (signed, in_range) {
            // `>>` on an i128 is arithmetic: the sign fill of a signed value.
            (true, true) => a >> b,
            (true, false) => if a < 0 { -1 } else { 0 },
            (false, true) => a >> b,
            (false, false) => 0,
        },
    }
}

/// `view` on the logical tile (docs/language.md): every row's codes, concatenated LSB first,
/// cut into codes of `to`. A row holds a whole number of `to` codes (checked by sema), so the
/// rows of the row-major tile line up and the whole tile is one bit string.
fn view(x: &[Number], from: DType, to: DType) -> Vec<Number> {
    let (b_src, b_dst) = (from.bits(), to.bits());
    let total_bits = x.len() * b_src as usize;
    let mut bits = vec![0u8; total_bits.div_ceil(8)];
    for (i, &value) in x.iter().enumerate() {
        tl_compiler::dtype::write_packed(&mut bits, b_src, i, from.encode_number(value));
    }
    (0..total_bits / b_dst as usize).map(|j| to.decode_number(tl_compiler::dtype::read_packed(&bits, b_dst, j))).collect()
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Calls `f` with every multi-index of `shape` in row-major order (once for rank 0).
fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0; shape.len()];
    loop {
        f(&idx);
        let mut d = shape.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// Repeats the extent-1 dims of `x` (shape `from`) to shape `to` (same rank).
fn broadcast(x: &[Number], from: &[usize], to: &[usize]) -> Vec<Number> {
    let from_strides = strides(from);
    let mut out = Vec::with_capacity(to.iter().product());
    for_each_index(to, |idx| {
        let src: usize =
            (0..to.len()).map(|d| if from[d] == 1 { 0 } else { idx[d] * from_strides[d] }).sum();
        out.push(x[src]);
    });
    out
}

/// The flat index of tile element `idx` (number `k` in row-major order) at `offsets` in a
/// tensor of `shape`, if in bounds.
fn global_index(
    shape: &[usize],
    strides: &[usize],
    offsets: &[Offset],
    idx: &[usize],
    k: usize,
) -> Option<usize> {
    let mut flat = 0;
    for d in 0..shape.len() {
        let g = match &offsets[d] {
            Offset::At(o) => o.checked_add(idx[d] as i64)?,
            Offset::Each(indices) => *indices.get(k)?,
        };
        if g < 0 || g >= shape[d] as i64 {
            return None;
        }
        flat += g as usize * strides[d];
    }
    Some(flat)
}

fn check_rank(t: &HostTensor, offsets: &[Offset], tile: &[usize]) -> Result<(), Fault> {
    let count: usize = tile.iter().product();
    let tiles_fit = offsets.iter().all(|o| match o {
        Offset::At(_) => true,
        Offset::Each(indices) => indices.len() == count,
    });
    if t.shape.len() != offsets.len() || tile.len() != offsets.len() || !tiles_fit {
        return Err(Fault::Internal("tile, offsets and tensor ranks differ".into()));
    }
    Ok(())
}

/// A tile of shape `tile` at `offsets` (possibly negative); elements outside read `pad`.
fn load(t: &HostTensor, offsets: &[Offset], tile: &[usize], pad: Number) -> Result<Vec<Number>, Fault> {
    check_rank(t, offsets, tile)?;
    let st = strides(&t.shape);
    let mut out = Vec::with_capacity(tile.iter().product());
    for_each_index(tile, |idx| {
        let k = out.len();
        out.push(global_index(&t.shape, &st, offsets, idx, k).map_or(t.dtype.round_number(pad), |i| t.get_number(i)));
    });
    Ok(out)
}

/// Writes tile `x` of shape `tile` at `offsets` in row-major order (a scatter to one index
/// twice keeps the later element); elements outside the tensor are skipped.
fn store(t: &mut HostTensor, offsets: &[Offset], tile: &[usize], x: &[Number]) -> Result<(), Fault> {
    check_rank(t, offsets, tile)?;
    let st = strides(&t.shape);
    let shape = t.shape.clone();
    let mut k = 0;
    for_each_index(tile, |idx| {
        if let Some(i) = global_index(&shape, &st, offsets, idx, k) {
            t.set_number(i, x[k]);
        }
        k += 1;
    });
    Ok(())
}

/// `atomic_add`: adds the tile into `t` element by element in row-major order (one order of
/// the many the GPU may take); integers wrap around, floats round once per addition.
fn atomic_add(t: &mut HostTensor, offsets: &[Offset], tile: &[usize], x: &[Number]) -> Result<(), Fault> {
    check_rank(t, offsets, tile)?;
    let st = strides(&t.shape);
    let shape = t.shape.clone();
    let d = t.dtype;
    let mut k = 0;
    for_each_index(tile, |idx| {
        if let Some(i) = global_index(&shape, &st, offsets, idx, k) {
            let sum = match (t.get_number(i), x[k]) {
                (Number::Int(a), Number::Int(b)) => {
                    // Two's complement wrap-around to the dtype's width.
                    let (lo, hi) = d.int_range().expect("integer dtype");
                    let modulus = hi - lo + 1;
                    Number::Int((a + b - lo).rem_euclid(modulus) + lo)
                }
                (a, b) => d.round_number(Number::Float(a.to_f64() + b.to_f64())),
            };
            t.set_number(i, sum);
        }
        k += 1;
    });
    Ok(())
}

/// `c + a @ b` with `a: [m, k]`, `b: [k, n]`: each output starts from `c` and adds the
/// products in order of `k`, rounding to `c`'s dtype after every step (a chain of FMAs, as
/// an MMA accumulator does). Products of inputs up to 32 bits (`f32`, `f16`, `i16`, ...) are
/// exact in `f64`; for wider inputs `mul_add` keeps the step to one rounding. An integer
/// accumulator computes exactly and must stay in its range after every step (else an
/// overflow).
fn dot(
    a: &[Number],
    b: &[Number],
    c: &[Number],
    [m, n, k]: [usize; 3],
    ab: DType,
    cd: DType,
) -> Result<Vec<Number>, Fault> {
    let mut out = c.to_vec();
    if class(cd) == Class::Int {
        for i in 0..m {
            for j in 0..n {
                let mut acc = int(c[i * n + j]);
                for kk in 0..k {
                    let product = int(a[i * k + kk]).checked_mul(int(b[kk * n + j]));
                    let sum = product.and_then(|p| acc.checked_add(p)).ok_or(Fault::IntegerOverflow(cd))?;
                    acc = int(fit_int(cd, sum)?);
                }
                out[i * n + j] = Number::Int(acc);
            }
        }
        return Ok(out);
    }
    let exact_products = ab.bits() <= 16 || ab == DType::F32;
    for i in 0..m {
        for j in 0..n {
            let mut acc = c[i * n + j].to_f64();
            for kk in 0..k {
                let (x, y) = (a[i * k + kk].to_f64(), b[kk * n + j].to_f64());
                let s = if exact_products { acc + x * y } else { x.mul_add(y, acc) };
                acc = cd.round(s);
            }
            out[i * n + j] = Number::Float(acc);
        }
    }
    Ok(out)
}

/// Reduces `x` (shape `shape`) over `dim`, keeping it with extent 1. A float `sum` adds in
/// index order in `f64` and rounds once to the dtype (the GPU adds in another order and at
/// lower precision, so comparisons need tolerances); integer sums are exact and must fit;
/// a bool `sum` is "any". `max`/`min` ignore NaNs like [`max_num`]/[`min_num`]. An empty
/// dim gives 0 for `sum` and NaN (0 for integers) for `max`/`min`.
fn reduce(
    op: ReduceOp,
    d: DType,
    x: &[Number],
    shape: &[usize],
    dim: usize,
) -> Result<Vec<Number>, Fault> {
    if dim >= shape.len() {
        return Err(Fault::Internal(format!("reduce dim {dim} of a rank-{} tile", shape.len())));
    }
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let len = shape[dim];
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let items = (0..len).map(|r| x[(o * len + r) * inner + i]);
            let v = match (op, class(d)) {
                (ReduceOp::Sum, Class::Int) => {
                    let s = items.map(int).try_fold(0i128, |s, v| s.checked_add(v));
                    fit_int(d, s.ok_or(Fault::IntegerOverflow(d))?)?
                }
                (ReduceOp::Sum, Class::Bool) => bool_value(items.map(int).any(|v| v != 0)),
                (ReduceOp::Max, Class::Int | Class::Bool) => Number::Int(items.map(int).max().unwrap_or(0)),
                (ReduceOp::Min, Class::Int | Class::Bool) => Number::Int(items.map(int).min().unwrap_or(0)),
                (ReduceOp::Sum, Class::Float) => Number::Float(d.round(items.map(Number::to_f64).sum::<f64>())),
                (ReduceOp::Max, Class::Float) => Number::Float(d.round(items.map(Number::to_f64).fold(f64::NAN, max_num))),
                (ReduceOp::Min, Class::Float) => Number::Float(d.round(items.map(Number::to_f64).fold(f64::NAN, min_num))),
            };
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tl_compiler::ir::{Param, ParamId, SymExpr, VarData};

    /// A tiny xorshift generator: inputs are random (never all zeros) but reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// Uniform in [-1, 1).
        fn f64(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }

        fn tensor(&mut self, dtype: DType, shape: &[usize]) -> HostTensor {
            let n = shape.iter().product();
            let values: Vec<f64> = (0..n).map(|_| self.f64() * 4.0).collect();
            HostTensor::from_f64(dtype, shape, &values)
        }
    }

    fn scalar_param(name: &str, dtype: DType) -> Param {
        Param { name: name.into(), kind: ParamKind::Scalar(dtype), span: Span::default() }
    }

    fn global(name: &str, dtype: DType, shape: Vec<SymExpr>, mutable: bool) -> Param {
        let kind = ParamKind::Global { dtype, shape, mutable };
        Param { name: name.into(), kind, span: Span::default() }
    }

    fn new_kernel(name: &str, params: Vec<Param>, grid: [SymExpr; 3]) -> Kernel {
        Kernel {
            name: name.into(),
            const_params: vec![],
            dtype_params: vec![],
            params,
            grid,
            warps: 4,
            shared_bytes: None,
            values: vec![],
            vars: vec![],
            body: vec![],
        }
    }

    /// Appends a value to the arena and its `Stmt::Eval` to `body`.
    fn emit(k: &mut Kernel, body: &mut Vec<Stmt>, ty: Type, op: Op) -> ValueId {
        let id = k.add_value(ty, op, Span::default());
        body.push(Stmt::Eval(id));
        id
    }

    fn sc(d: DType) -> Type {
        Type::Scalar(d)
    }

    fn tt(d: DType, shape: &[usize]) -> Type {
        Type::Tensor { dtype: d, shape: shape.to_vec() }
    }

    fn c(v: i64) -> SymExpr {
        SymExpr::Const(v)
    }

    fn p(i: u32) -> SymExpr {
        SymExpr::Param(ParamId(i))
    }

    fn cdiv(a: SymExpr, b: SymExpr) -> SymExpr {
        SymExpr::CeilDiv(Box::new(a), Box::new(b))
    }

    fn i32c(k: &mut Kernel, body: &mut Vec<Stmt>, v: i64) -> ValueId {
        emit(k, body, sc(DType::I32), Op::Const(Number::Int(v as i128)))
    }

    fn verified(k: Kernel) -> Kernel {
        if let Err(e) = verify(&k, false) {
            panic!("hand-built kernel `{}` does not verify: {e:?}", k.name);
        }
        k
    }

    fn tensor_arg(args: &[Arg], i: usize) -> &HostTensor {
        args[i].tensor().expect("tensor argument")
    }

    /// Bitwise-equal, NaN equal to NaN.
    fn same(a: f64, b: f64) -> bool {
        a == b || (a.is_nan() && b.is_nan())
    }

    const BLOCK: usize = 128;

    /// `out[i] = x[i] + y[i]` for `n` elements, one 128-element tile per block.
    fn vector_add(dtype: DType) -> Kernel {
        let params = vec![
            scalar_param("n", DType::I32),
            global("x", dtype, vec![p(0)], false),
            global("y", dtype, vec![p(0)], false),
            global("out", dtype, vec![p(0)], true),
        ];
        let mut k = new_kernel("vector_add", params, [cdiv(p(0), c(BLOCK as i64)), c(1), c(1)]);
        let mut b = vec![];
        let bx = emit(&mut k, &mut b, sc(DType::I32), Op::BlockIdx(0));
        let size = i32c(&mut k, &mut b, BLOCK as i64);
        let off = emit(&mut k, &mut b, sc(DType::I32), Op::Binary(BinaryOp::Mul, bx, size));
        let tile = tt(dtype, &[BLOCK]);
        let x =
            emit(&mut k, &mut b, tile.clone(), Op::Load { param: ParamId(1), offsets: vec![off], pad: Number::Float(0.0) });
        let y =
            emit(&mut k, &mut b, tile.clone(), Op::Load { param: ParamId(2), offsets: vec![off], pad: Number::Float(0.0) });
        let s = emit(&mut k, &mut b, tile, Op::Binary(BinaryOp::Add, x, y));
        emit(&mut k, &mut b, Type::Unit, Op::Store { param: ParamId(3), value: s, offsets: vec![off] });
        k.body = b;
        verified(k)
    }

    fn vector_add_args(rng: &mut Rng, dtype: DType, n: usize) -> Vec<Arg> {
        vec![
            Arg::scalar(n as f64),
            rng.tensor(dtype, &[n]).into(),
            rng.tensor(dtype, &[n]).into(),
            HostTensor::filled(dtype, &[n], f64::NAN).into(),
        ]
    }

    #[test]
    fn vector_add_over_ragged_size_with_many_blocks() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for dtype in [DType::F32, DType::F16, DType::BF16, DType::F64] {
            let k = vector_add(dtype);
            let n = 1000; // 8 blocks, the last one ragged
            let mut args = vector_add_args(&mut rng, dtype, n);
            assert_eq!(eval_grid(&k, &args).unwrap(), [8, 1, 1]);
            launch(&k, &mut args).unwrap();
            let (x, y) = (tensor_arg(&args, 1).to_f64(), tensor_arg(&args, 2).to_f64());
            let out = tensor_arg(&args, 3).to_f64();
            for i in 0..n {
                // One rounding of the exact sum to the dtype.
                assert_eq!(out[i], dtype.round(x[i] + y[i]), "{dtype} element {i}");
            }
        }
    }

    #[test]
    fn load_pads_outside_and_store_skips_outside() {
        let (d, pad) = (DType::F32, -1.5);
        let params = vec![
            global("src", d, vec![c(5), c(7)], false),
            global("out", d, vec![c(4), c(4)], true),
            global("dst", d, vec![c(5), c(7)], true),
        ];
        let mut k = new_kernel("pad", params, [c(1), c(1), c(1)]);
        let mut b = vec![];
        let (m2, p5) = (i32c(&mut k, &mut b, -2), i32c(&mut k, &mut b, 5));
        let (z, p3, m1) =
            (i32c(&mut k, &mut b, 0), i32c(&mut k, &mut b, 3), i32c(&mut k, &mut b, -1));
        let t =
            emit(&mut k, &mut b, tt(d, &[4, 4]), Op::Load { param: ParamId(0), offsets: vec![m2, p5], pad: Number::Float(pad) });
        emit(&mut k, &mut b, Type::Unit, Op::Store { param: ParamId(1), value: t, offsets: vec![z, z] });
        emit(&mut k, &mut b, Type::Unit, Op::Store { param: ParamId(2), value: t, offsets: vec![p3, m1] });
        k.body = b;
        let k = verified(k);

        let mut rng = Rng(7);
        let mut args: Vec<Arg> = vec![
            rng.tensor(d, &[5, 7]).into(),
            HostTensor::filled(d, &[4, 4], f64::NAN).into(),
            HostTensor::filled(d, &[5, 7], f64::NAN).into(),
        ];
        launch(&k, &mut args).unwrap();
        let src = tensor_arg(&args, 0).to_f64();
        let out = tensor_arg(&args, 1).to_f64();
        let dst = tensor_arg(&args, 2).to_f64();
        let tile = |i: i64, j: i64| {
            let (r, c) = (i - 2, j + 5);
            if (0..5).contains(&r) && (0..7).contains(&c) { src[(r * 7 + c) as usize] } else { pad }
        };
        for i in 0..4 {
            for j in 0..4 {
                assert_eq!(out[(i * 4 + j) as usize], tile(i, j), "out[{i}][{j}]");
            }
        }
        for r in 0..5i64 {
            for c in 0..7i64 {
                // dst[r][c] = tile[r - 3][c + 1] where that tile element exists.
                let (i, j) = (r - 3, c + 1);
                let want =
                    if (0..4).contains(&i) && (0..4).contains(&j) { tile(i, j) } else { f64::NAN };
                assert!(same(dst[(r * 7 + c) as usize], want), "dst[{r}][{c}]");
            }
        }
    }

    const BM: usize = 16;
    const BN: usize = 8;
    const BK: usize = 8;

    /// `c = a @ b` tiled: a 2-d grid, a `for` over K tiles (trip count computed in the IR) and
    /// an f32 accumulator variable fed by `dot` on f16 tiles.
    fn matmul() -> Kernel {
        let (h, f) = (DType::F16, DType::F32);
        let params = vec![
            scalar_param("M", DType::I32),
            scalar_param("N", DType::I32),
            scalar_param("K", DType::I32),
            global("a", h, vec![p(0), p(2)], false),
            global("b", h, vec![p(2), p(1)], false),
            global("c", f, vec![p(0), p(1)], true),
        ];
        let grid = [cdiv(p(1), c(BN as i64)), cdiv(p(0), c(BM as i64)), c(1)];
        let mut k = new_kernel("matmul", params, grid);
        k.vars.push(VarData {
            name: "acc".into(),
            ty: tt(f, &[BM, BN]),
            layout: None,
            annotation: None,
            span: Span::default(),
        });
        let acc = VarId(0);
        let i32t = sc(DType::I32);
        let bin = |op, x, y| Op::Binary(op, x, y);
        let mut b = vec![];
        let bx = emit(&mut k, &mut b, i32t.clone(), Op::BlockIdx(0));
        let by = emit(&mut k, &mut b, i32t.clone(), Op::BlockIdx(1));
        let (cbm, cbn, cbk) = (
            i32c(&mut k, &mut b, BM as i64),
            i32c(&mut k, &mut b, BN as i64),
            i32c(&mut k, &mut b, BK as i64),
        );
        let (zero, one) = (i32c(&mut k, &mut b, 0), i32c(&mut k, &mut b, 1));
        let row = emit(&mut k, &mut b, i32t.clone(), bin(BinaryOp::Mul, by, cbm));
        let col = emit(&mut k, &mut b, i32t.clone(), bin(BinaryOp::Mul, bx, cbn));
        let zf = emit(&mut k, &mut b, sc(f), Op::Const(Number::Float(0.0)));
        let zt = emit(&mut k, &mut b, tt(f, &[BM, BN]), Op::Splat(zf));
        b.push(Stmt::Assign(acc, zt));
        let kk_ = emit(&mut k, &mut b, i32t.clone(), Op::Param(ParamId(2)));
        let t1 = emit(&mut k, &mut b, i32t.clone(), bin(BinaryOp::Add, kk_, cbk));
        let t2 = emit(&mut k, &mut b, i32t.clone(), bin(BinaryOp::Sub, t1, one));
        let tiles = emit(&mut k, &mut b, i32t.clone(), bin(BinaryOp::Div, t2, cbk));
        let index = k.add_value(i32t.clone(), Op::LoopIndex, Span::default());
        let mut lb = vec![];
        let kof = emit(&mut k, &mut lb, i32t.clone(), bin(BinaryOp::Mul, index, cbk));
        let at = emit(
            &mut k,
            &mut lb,
            tt(h, &[BM, BK]),
            Op::Load { param: ParamId(3), offsets: vec![row, kof], pad: Number::Float(0.0) },
        );
        let bt = emit(
            &mut k,
            &mut lb,
            tt(h, &[BK, BN]),
            Op::Load { param: ParamId(4), offsets: vec![kof, col], pad: Number::Float(0.0) },
        );
        let cur = emit(&mut k, &mut lb, tt(f, &[BM, BN]), Op::ReadVar(acc));
        let d = emit(&mut k, &mut lb, tt(f, &[BM, BN]), Op::Dot { a: at, b: bt, c: cur });
        lb.push(Stmt::Assign(acc, d));
        b.push(Stmt::For { index, start: zero, end: tiles, body: lb });
        let fin = emit(&mut k, &mut b, tt(f, &[BM, BN]), Op::ReadVar(acc));
        emit(
            &mut k,
            &mut b,
            Type::Unit,
            Op::Store { param: ParamId(5), value: fin, offsets: vec![row, col] },
        );
        k.body = b;
        verified(k)
    }

    #[test]
    fn tiled_matmul_matches_host() {
        let k = matmul();
        let (m, n, kd) = (37, 29, 45);
        let mut rng = Rng(12345);
        let mut args: Vec<Arg> = vec![
            Arg::scalar(m as f64),
            Arg::scalar(n as f64),
            Arg::scalar(kd as f64),
            rng.tensor(DType::F16, &[m, kd]).into(),
            rng.tensor(DType::F16, &[kd, n]).into(),
            HostTensor::filled(DType::F32, &[m, n], f64::NAN).into(),
        ];
        assert_eq!(eval_grid(&k, &args).unwrap(), [4, 3, 1]);
        launch(&k, &mut args).unwrap();
        let a = tensor_arg(&args, 3).to_f64();
        let b = tensor_arg(&args, 4).to_f64();
        let out = tensor_arg(&args, 5).to_f64();
        for i in 0..m {
            for j in 0..n {
                // Same order and per-step f32 rounding: bit-exact.
                let mut acc = 0.0;
                let mut exact = 0.0;
                for l in 0..kd {
                    acc = DType::F32.round(acc + a[i * kd + l] * b[l * n + j]);
                    exact += a[i * kd + l] * b[l * n + j];
                }
                let got = out[i * n + j];
                assert_eq!(got, acc, "c[{i}][{j}]");
                assert!((got - exact).abs() <= 1e-5 * (1.0 + exact.abs()), "c[{i}][{j}]");
            }
        }
    }

    #[test]
    fn reductions_keep_the_dim_and_skip_nans_for_max_min() {
        let d = DType::F32;
        let params = vec![
            global("x", d, vec![c(4), c(6)], false),
            global("sum", d, vec![c(4), c(1)], true),
            global("max", d, vec![c(1), c(6)], true),
            global("min", d, vec![c(4), c(1)], true),
        ];
        let mut k = new_kernel("reduce", params, [c(1), c(1), c(1)]);
        let mut b = vec![];
        let z = i32c(&mut k, &mut b, 0);
        let x = emit(
            &mut k,
            &mut b,
            tt(d, &[4, 6]),
            Op::Load { param: ParamId(0), offsets: vec![z, z], pad: Number::Float(0.0) },
        );
        let s = emit(
            &mut k,
            &mut b,
            tt(d, &[4, 1]),
            Op::Reduce { op: ReduceOp::Sum, value: x, dim: 1 },
        );
        let mx = emit(
            &mut k,
            &mut b,
            tt(d, &[1, 6]),
            Op::Reduce { op: ReduceOp::Max, value: x, dim: 0 },
        );
        let mn = emit(
            &mut k,
            &mut b,
            tt(d, &[4, 1]),
            Op::Reduce { op: ReduceOp::Min, value: x, dim: 1 },
        );
        for (param, v) in [(ParamId(1), s), (ParamId(2), mx), (ParamId(3), mn)] {
            emit(&mut k, &mut b, Type::Unit, Op::Store { param, value: v, offsets: vec![z, z] });
        }
        k.body = b;
        let k = verified(k);

        let mut rng = Rng(99);
        let mut x = rng.tensor(d, &[4, 6]);
        x.set(2 * 6 + 3, f64::NAN); // row 2, column 3
        let mut args: Vec<Arg> = vec![
            x.into(),
            HostTensor::filled(d, &[4, 1], f64::NAN).into(),
            HostTensor::filled(d, &[1, 6], f64::NAN).into(),
            HostTensor::filled(d, &[4, 1], f64::NAN).into(),
        ];
        launch(&k, &mut args).unwrap();
        let x = tensor_arg(&args, 0).to_f64();
        let (sum, max, min) = (
            tensor_arg(&args, 1).to_f64(),
            tensor_arg(&args, 2).to_f64(),
            tensor_arg(&args, 3).to_f64(),
        );
        let real = |v: &f64| !v.is_nan();
        for r in 0..4 {
            let row = &x[r * 6..r * 6 + 6];
            assert!(same(sum[r], d.round(row.iter().sum())), "sum row {r}");
            let want = row.iter().copied().filter(real).fold(f64::INFINITY, f64::min);
            assert_eq!(min[r], want, "min row {r}");
        }
        assert!(sum[2].is_nan());
        for col in 0..6 {
            let column = (0..4).map(|r| x[r * 6 + col]);
            let want = column.filter(real).fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(max[col], want, "max column {col}");
        }
    }

    /// Block 0 writes `where(v > t, v, -v)` cast to i32, other blocks write `v` broadcast;
    /// each block fills its own row of `out`.
    #[test]
    fn if_broadcast_select_and_cast() {
        let (f, i) = (DType::F32, DType::I32);
        let params = vec![
            scalar_param("t", f),
            global("v", f, vec![c(1), c(1), c(5)], false),
            global("out", i, vec![c(3), c(2), c(5)], true),
        ];
        let mut k = new_kernel("branchy", params, [c(3), c(1), c(1)]);
        let mut b = vec![];
        let bx = emit(&mut k, &mut b, sc(i), Op::BlockIdx(0));
        let z = i32c(&mut k, &mut b, 0);
        let v = emit(
            &mut k,
            &mut b,
            tt(f, &[1, 1, 5]),
            Op::Load { param: ParamId(1), offsets: vec![z, z, z], pad: Number::Float(0.0) },
        );
        let vb = emit(&mut k, &mut b, tt(f, &[1, 2, 5]), Op::Broadcast(v));
        let first = emit(&mut k, &mut b, sc(DType::Bool), Op::Binary(BinaryOp::Eq, bx, z));
        let (mut then_b, mut else_b) = (vec![], vec![]);
        let t = emit(&mut k, &mut then_b, sc(f), Op::Param(ParamId(0)));
        let tb = emit(&mut k, &mut then_b, tt(f, &[1, 2, 5]), Op::Splat(t));
        let gt = emit(
            &mut k,
            &mut then_b,
            tt(DType::Bool, &[1, 2, 5]),
            Op::Binary(BinaryOp::Gt, vb, tb),
        );
        let neg = emit(&mut k, &mut then_b, tt(f, &[1, 2, 5]), Op::Unary(UnaryOp::Neg, vb));
        let sel =
            emit(&mut k, &mut then_b, tt(f, &[1, 2, 5]), Op::Select { cond: gt, a: vb, b: neg });
        let ci = emit(&mut k, &mut then_b, tt(i, &[1, 2, 5]), Op::Cast(sel));
        emit(
            &mut k,
            &mut then_b,
            Type::Unit,
            Op::Store { param: ParamId(2), value: ci, offsets: vec![bx, z, z] },
        );
        let ce = emit(&mut k, &mut else_b, tt(i, &[1, 2, 5]), Op::Cast(vb));
        emit(
            &mut k,
            &mut else_b,
            Type::Unit,
            Op::Store { param: ParamId(2), value: ce, offsets: vec![bx, z, z] },
        );
        b.push(Stmt::If { cond: first, then_body: then_b, else_body: else_b });
        k.body = b;
        let k = verified(k);

        let vals = [-7.6, 2.5, 3.5, 100.2, -0.4];
        let mut args: Vec<Arg> = vec![
            Arg::scalar(1.0),
            HostTensor::from_f64(f, &[1, 1, 5], &vals).into(),
            HostTensor::filled(i, &[3, 2, 5], -99.0).into(),
        ];
        launch(&k, &mut args).unwrap();
        let out = tensor_arg(&args, 2).to_f64();
        for blk in 0..3 {
            for r in 0..2 {
                for (j, &x) in vals.iter().enumerate() {
                    let x = f.round(x);
                    let want = if blk == 0 && x <= 1.0 { -x } else { x };
                    assert_eq!(
                        out[blk * 10 + r * 5 + j],
                        want.round_ties_even(),
                        "[{blk}][{r}][{j}]"
                    );
                }
            }
        }
    }

    #[test]
    fn integer_and_float_element_semantics() {
        let (n, x) = (Number::Int, Number::Float);
        let i = DType::I32;
        let bin = |op, a, b| binary(op, i, n(a), n(b));
        assert_eq!(bin(BinaryOp::Div, -7, 2), Ok(n(-3))); // truncates toward zero
        assert_eq!(bin(BinaryOp::Rem, -7, 2), Ok(n(-1))); // sign of the dividend
        assert_eq!(bin(BinaryOp::Rem, 7, -2), Ok(n(1)));
        assert_eq!(bin(BinaryOp::Div, 1, 0), Err(Fault::DivisionByZero));
        assert_eq!(bin(BinaryOp::Add, 2147483647, 1), Err(Fault::IntegerOverflow(i)));
        assert_eq!(bin(BinaryOp::Div, -2147483648, -1), Err(Fault::IntegerOverflow(i)));
        assert_eq!(bin(BinaryOp::And, -4, 7), Ok(n(4)));
        assert_eq!(bin(BinaryOp::Or, -8, 3), Ok(n(-5)));
        assert_eq!(bin(BinaryOp::Lt, -1, 0), Ok(n(1)));
        assert_eq!(binary(BinaryOp::Sub, DType::U8, n(3), n(5)), Err(Fault::IntegerOverflow(DType::U8)));
        assert_eq!(unary(UnaryOp::Not, i, n(5)), Ok(n(-6)));
        assert_eq!(unary(UnaryOp::Not, DType::U8, n(5)), Ok(n(250)));
        assert_eq!(unary(UnaryOp::Neg, DType::I8, n(-128)), Err(Fault::IntegerOverflow(DType::I8)));
        assert_eq!(unary(UnaryOp::Not, DType::Bool, n(1)), Ok(n(0)));
        assert_eq!(binary(BinaryOp::And, DType::Bool, n(1), n(0)), Ok(n(0)));
        assert_eq!(binary(BinaryOp::Or, DType::Bool, n(1), n(0)), Ok(n(1)));
        assert!(matches!(unary(UnaryOp::Not, DType::F32, x(1.0)), Err(Fault::Unsupported(_))));
        // 64-bit integers are exact beyond 2^53, and overflow exactly at the ends of the range.
        let big = (1i128 << 53) + 1;
        assert_eq!(binary(BinaryOp::Add, DType::I64, n(big), n(2)), Ok(n(big + 2)));
        assert_eq!(binary(BinaryOp::Eq, DType::I64, n(big), n(big - 1)), Ok(n(0)));
        assert_eq!(binary(BinaryOp::Add, DType::I64, n(i64::MAX as i128 - 1), n(1)), Ok(n(i64::MAX as i128)));
        assert_eq!(binary(BinaryOp::Add, DType::I64, n(i64::MAX as i128), n(1)), Err(Fault::IntegerOverflow(DType::I64)));
        assert_eq!(binary(BinaryOp::Mul, DType::U64, n(1 << 32), n((1 << 32) - 1)), Ok(n((1 << 64) - (1 << 32))));
        assert_eq!(unary(UnaryOp::Not, DType::U64, n(0)), Ok(n(u64::MAX as i128)));

        let f = DType::F32;
        let fb = |op, d, a, b| binary(op, d, x(a), x(b)).map(Number::to_f64);
        assert_eq!(fb(BinaryOp::Max, f, f64::NAN, 2.0), Ok(2.0));
        assert_eq!(fb(BinaryOp::Min, f, 2.0, f64::NAN), Ok(2.0));
        assert!(fb(BinaryOp::Max, f, f64::NAN, f64::NAN).unwrap().is_nan());
        assert!(fb(BinaryOp::Max, f, -0.0, 0.0).unwrap().is_sign_positive());
        assert!(fb(BinaryOp::Min, f, 0.0, -0.0).unwrap().is_sign_negative());
        assert_eq!(fb(BinaryOp::Div, f, 1.0, 0.0), Ok(f64::INFINITY));
        assert_eq!(binary(BinaryOp::Ne, f, x(f64::NAN), x(f64::NAN)), Ok(n(1)));
        assert_eq!(binary(BinaryOp::Eq, f, x(f64::NAN), x(f64::NAN)), Ok(n(0)));
        assert_eq!(fb(BinaryOp::Rem, f, -7.5, 2.0), Ok(-1.5));
        // An f16 add is the exact sum rounded once: 2048 + 1 is a tie, to even.
        assert_eq!(fb(BinaryOp::Add, DType::F16, 2048.0, 1.0), Ok(2048.0));
        let fu = |op, d, a| unary(op, d, x(a)).map(Number::to_f64);
        assert_eq!(fu(UnaryOp::Sigmoid, f, 0.0), Ok(0.5));
        assert_eq!(fu(UnaryOp::Rsqrt, f, 4.0), Ok(0.5));
        assert_eq!(fu(UnaryOp::Sigmoid, f, f64::NEG_INFINITY), Ok(0.0));
        assert_eq!(fu(UnaryOp::Exp2, DType::F16, 3.0), Ok(8.0));
        let e = fu(UnaryOp::Exp, f, 1.0).unwrap();
        assert_eq!(e, std::f64::consts::E as f32 as f64);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let k = vector_add(DType::F32);
        let mut rng = Rng(3);
        let good = vector_add_args(&mut rng, DType::F32, 300);
        assert!(check_args(&k, &good).is_ok());
        let bad_arg = |args: &mut [Arg], index: usize, needle: &str| match launch(&k, args) {
            Err(e @ VmError::BadArg { index: i, .. }) if i == index => {
                assert!(e.to_string().contains(needle), "{e}");
            }
            other => panic!("expected a BadArg {index} error, got {other:?}"),
        };

        let mut args = good.clone();
        args.pop();
        let e = launch(&k, &mut args).unwrap_err();
        assert!(matches!(e, VmError::ArgCount { expected: 4, got: 3, .. }), "{e}");

        let mut args = good.clone();
        args[1] = Arg::scalar(1.0);
        bad_arg(&mut args, 1, "got a scalar");

        let mut args = good.clone();
        args[0] = tensor_arg(&good, 1).clone().into();
        bad_arg(&mut args, 0, "got a tensor");

        let mut args = good.clone();
        args[2] = rng.tensor(DType::F16, &[300]).into();
        bad_arg(&mut args, 2, "f16");

        let mut args = good.clone();
        args[3] = HostTensor::zeros(DType::F32, &[301]).into();
        bad_arg(&mut args, 3, "[301]");

        let mut args = good.clone();
        if let Arg::Tensor(t) = &mut args[1] {
            t.data.pop(); // a buffer too short for its shape
        }
        bad_arg(&mut args, 1, "bytes");

        let mut args = good.clone();
        args[0] = Arg::scalar(300.5);
        bad_arg(&mut args, 0, "not an integer");

        let mut args = good.clone();
        args[0] = Arg::scalar(1e12);
        bad_arg(&mut args, 0, "out of range");

        // A negative size makes the tensor shapes negative.
        let mut args = good.clone();
        args[0] = Arg::scalar(-5.0);
        bad_arg(&mut args, 1, "-5");

        // The outputs were never touched by the failed launches.
        assert!(tensor_arg(&good, 3).to_f64().iter().all(|v| v.is_nan()));
    }

    fn empty_kernel(grid: [SymExpr; 3]) -> Kernel {
        verified(new_kernel("empty", vec![], grid))
    }

    #[test]
    fn grid_limits() {
        assert_eq!(eval_grid(&empty_kernel([c(3), c(2), c(0)]), &[]).unwrap(), [3, 2, 0]);
        // The hardware's limits: 2^31 − 1 in x, 65535 in y and z.
        assert_eq!(
            eval_grid(&empty_kernel([c((1 << 31) - 1), c(65535), c(65535)]), &[]).unwrap(),
            [(1 << 31) - 1, 65535, 65535]
        );
        let cases = [
            [c(-1), c(1), c(1)],
            [c(1 << 31), c(1), c(1)],
            [c(1), c(65536), c(1)],
            [c(1), c(1), c(65536)],
            [c(0), c(1 << 40), c(1)],
        ];
        for grid in cases {
            let e = launch(&empty_kernel(grid), &mut []).unwrap_err();
            assert!(matches!(e, VmError::Grid { .. }), "{e}");
        }
        let div0 = [SymExpr::Div(Box::new(c(1)), Box::new(c(0))), c(1), c(1)];
        let e = eval_grid(&empty_kernel(div0), &[]).unwrap_err();
        assert!(e.to_string().contains("division by zero"), "{e}");
    }

    /// `out[0] = 7 <op> d` for a scalar argument `d`.
    fn scalar_op_kernel(op: BinaryOp) -> Kernel {
        let i = DType::I32;
        let params = vec![scalar_param("d", i), global("out", i, vec![c(1)], true)];
        let mut k = new_kernel("scalar_op", params, [c(2), c(1), c(1)]);
        let mut b = vec![];
        let seven = i32c(&mut k, &mut b, 7);
        let d = emit(&mut k, &mut b, sc(i), Op::Param(ParamId(0)));
        let q = emit(&mut k, &mut b, sc(i), Op::Binary(op, seven, d));
        let qt = emit(&mut k, &mut b, tt(i, &[1]), Op::Splat(q));
        let z = i32c(&mut k, &mut b, 0);
        emit(&mut k, &mut b, Type::Unit, Op::Store { param: ParamId(1), value: qt, offsets: vec![z] });
        k.body = b;
        verified(k)
    }

    #[test]
    fn execution_faults_name_the_block_and_instruction() {
        let out = || Arg::Tensor(HostTensor::zeros(DType::I32, &[1]));
        let k = scalar_op_kernel(BinaryOp::Div);
        let mut args = vec![Arg::scalar(-2.0), out()];
        launch(&k, &mut args).unwrap();
        assert_eq!(tensor_arg(&args, 1).get(0), -3.0);

        let mut args = vec![Arg::scalar(0.0), out()];
        let e = launch(&k, &mut args).unwrap_err();
        assert!(matches!(e, VmError::Exec { fault: Fault::DivisionByZero, .. }), "{e}");
        assert_eq!(e.to_string(), "block (0, 0, 0), %2 = div: integer division by zero");

        let k = scalar_op_kernel(BinaryOp::Mul);
        let mut args = vec![Arg::scalar(1e9), out()];
        let e = launch(&k, &mut args).unwrap_err();
        assert!(
            matches!(e, VmError::Exec { fault: Fault::IntegerOverflow(DType::I32), .. }),
            "{e}"
        );
    }

    /// A variable assigned only in block 0 is uninitialized again in block 1.
    #[test]
    fn variables_start_uninitialized_in_every_block() {
        let i = DType::I32;
        let params = vec![global("out", i, vec![c(2)], true)];
        let mut k = new_kernel("uninit", params, [c(2), c(1), c(1)]);
        k.vars.push(VarData { name: "acc".into(), ty: sc(i), layout: None, annotation: None, span: Span::default() });
        let mut b = vec![];
        let bx = emit(&mut k, &mut b, sc(i), Op::BlockIdx(0));
        let z = i32c(&mut k, &mut b, 0);
        let first = emit(&mut k, &mut b, sc(DType::Bool), Op::Binary(BinaryOp::Eq, bx, z));
        let mut then_b = vec![];
        let five = i32c(&mut k, &mut then_b, 5);
        then_b.push(Stmt::Assign(VarId(0), five));
        b.push(Stmt::If { cond: first, then_body: then_b, else_body: vec![] });
        let r = emit(&mut k, &mut b, sc(i), Op::ReadVar(VarId(0)));
        let rt = emit(&mut k, &mut b, tt(i, &[1]), Op::Splat(r));
        emit(&mut k, &mut b, Type::Unit, Op::Store { param: ParamId(0), value: rt, offsets: vec![bx] });
        k.body = b;
        let k = verified(k);

        let mut args = vec![Arg::Tensor(HostTensor::filled(i, &[2], -1.0))];
        let e = launch(&k, &mut args).unwrap_err();
        match &e {
            VmError::Exec { block, fault: Fault::UninitializedVariable { name, .. }, .. } => {
                assert_eq!(*block, BlockCoord([1, 0, 0]));
                assert_eq!(name, "acc");
            }
            other => panic!("expected an uninitialized variable, got {other}"),
        }
        assert!(e.to_string().contains("`acc`"), "{e}");
        // Block 0 completed its store before block 1 failed.
        assert_eq!(tensor_arg(&args, 0).to_f64(), vec![5.0, -1.0]);
    }

    #[test]
    fn loop_with_an_accumulator_runs_start_to_end() {
        // acc = 0; for i in s .. e { acc = acc + i }; out[0] = acc
        let i = DType::I32;
        let params =
            vec![scalar_param("s", i), scalar_param("e", i), global("out", i, vec![c(1)], true)];
        let mut k = new_kernel("loop", params, [c(1), c(1), c(1)]);
        k.vars.push(VarData { name: "acc".into(), ty: sc(i), layout: None, annotation: None, span: Span::default() });
        let mut b = vec![];
        let z = i32c(&mut k, &mut b, 0);
        b.push(Stmt::Assign(VarId(0), z));
        let s = emit(&mut k, &mut b, sc(i), Op::Param(ParamId(0)));
        let e = emit(&mut k, &mut b, sc(i), Op::Param(ParamId(1)));
        let index = k.add_value(sc(i), Op::LoopIndex, Span::default());
        let mut lb = vec![];
        let cur = emit(&mut k, &mut lb, sc(i), Op::ReadVar(VarId(0)));
        let next = emit(&mut k, &mut lb, sc(i), Op::Binary(BinaryOp::Add, cur, index));
        lb.push(Stmt::Assign(VarId(0), next));
        b.push(Stmt::For { index, start: s, end: e, body: lb });
        let r = emit(&mut k, &mut b, sc(i), Op::ReadVar(VarId(0)));
        let rt = emit(&mut k, &mut b, tt(i, &[1]), Op::Splat(r));
        emit(&mut k, &mut b, Type::Unit, Op::Store { param: ParamId(2), value: rt, offsets: vec![z] });
        k.body = b;
        let k = verified(k);
        for (s, e, want) in [(-3, 5, 4.0), (2, 2, 0.0), (5, 1, 0.0), (0, 100, 4950.0)] {
            let mut args = vec![
                Arg::scalar(s as f64),
                Arg::scalar(e as f64),
                HostTensor::zeros(i, &[1]).into(),
            ];
            launch(&k, &mut args).unwrap();
            assert_eq!(tensor_arg(&args, 2).get(0), want, "{s}..{e}");
        }
    }

    #[test]
    fn kernels_that_do_not_verify_are_refused() {
        let mut k = new_kernel("bad", vec![], [c(1), c(1), c(1)]);
        let mut b = vec![];
        let late = k.add_value(sc(DType::I32), Op::Const(Number::Float(1.0)), Span::default());
        emit(&mut k, &mut b, sc(DType::I32), Op::Binary(BinaryOp::Add, late, late));
        b.push(Stmt::Eval(late));
        k.body = b;
        let e = launch(&k, &mut []).unwrap_err();
        assert!(matches!(e, VmError::InvalidKernel { .. }), "{e}");
        assert!(e.to_string().contains("before its definition"), "{e}");
    }
}
