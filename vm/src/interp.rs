//! The reference interpreter of the block-level IR (DESIGN.md §4: "the VM is the definition").
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
//! * Every value is held as `f64` elements (a scalar is one element, a tensor is row-major with
//!   the static shape of its type) and every result is rounded to its dtype with
//!   [`DType::round`], so an `f16` add is the `f64` sum rounded once to `f16`. For `+ - * /`
//!   and `sqrt` on `f32`/`f16`/`bf16` this equals the correctly rounded operation, because
//!   `f64` has more than twice their precision plus two bits.
//! * Integer arithmetic is exact and must fit the result dtype: a result that would wrap on a
//!   GPU (or saturate) is a [`Fault::IntegerOverflow`] instead, because neither behaviour is
//!   defined by the language and silently picking one would hide bugs in index arithmetic.
//!   Only `cast` saturates. Integer division by zero is a [`Fault::DivisionByZero`].
//! * Integers are exact up to 2^53 in magnitude; `i64`/`u64` values beyond that lose low bits.

use std::fmt;

use thiserror::Error;
use tl_compiler::diagnostics::Span;
use tl_compiler::dtype::DType;
use tl_compiler::ir::print::sym_expr;
use tl_compiler::ir::verify::verify;
use tl_compiler::ir::{
    BinaryOp, Kernel, Op, ParamKind, ReduceOp, Stmt, Type, UnaryOp, ValueId, VarId,
};

use crate::tensor::HostTensor;

/// One kernel argument; `launch` takes one per kernel parameter, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// A runtime scalar, given as `f64` whatever the parameter's dtype.
    Scalar(f64),
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
/// Stores write into the tensors of `args`; on error, stores done so far stay written.
pub fn launch(kernel: &Kernel, args: &mut [Arg]) -> Result<(), VmError> {
    verify(kernel, false)
        .map_err(|errors| VmError::InvalidKernel { kernel: kernel.name.clone(), errors })?;
    let params = check_args(kernel, args)?;
    let grid = grid_from_params(kernel, &params)?;
    // Scalar arguments rounded to their dtype once; tensor slots are never read.
    let scalars: Vec<f64> = kernel
        .params
        .iter()
        .zip(args.iter())
        .map(|(p, a)| match (&p.kind, a) {
            (ParamKind::Scalar(d), Arg::Scalar(v)) => d.round(*v),
            _ => f64::NAN,
        })
        .collect();
    let mut machine = Machine {
        kernel,
        scalars: &scalars,
        args,
        block: [0; 3],
        env: vec![None; kernel.values.len()],
        vars: vec![None; kernel.vars.len()],
    };
    for z in 0..grid[2] {
        for y in 0..grid[1] {
            for x in 0..grid[0] {
                machine.run_block([x, y, z])?;
            }
        }
    }
    Ok(())
}

/// Checks `args` against the kernel's parameters (count, scalar or tensor, dtype, shape, that
/// each scalar fits its dtype) and returns the parameters' values for
/// [`SymExpr::eval`](tl_compiler::ir::SymExpr::eval):
/// `Some(v)` for integer and bool scalars, `None` for float scalars (they cannot size
/// anything) and for tensors.
pub fn check_args(kernel: &Kernel, args: &[Arg]) -> Result<Vec<Option<i64>>, VmError> {
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
        let Arg::Scalar(v) = *arg else {
            return Err(bad(i, format!("expected a {dtype} scalar, got a tensor")));
        };
        values[i] = check_scalar(dtype, v).map_err(|reason| bad(i, reason))?;
    }
    for (i, (param, arg)) in kernel.params.iter().zip(args).enumerate() {
        let ParamKind::Global { dtype, shape, .. } = &param.kind else { continue };
        let Arg::Tensor(t) = arg else {
            return Err(bad(i, format!("expected a {dtype} tensor, got a scalar")));
        };
        if t.dtype != *dtype {
            return Err(bad(i, format!("expected a {dtype} tensor, got a {} tensor", t.dtype)));
        }
        let mut want = Vec::with_capacity(shape.len());
        for (d, e) in shape.iter().enumerate() {
            let v = e.eval(&values).map_err(|m| bad(i, format!("shape dim {d}: {m}")))?;
            let v = usize::try_from(v).map_err(|_| {
                bad(i, format!("shape dim {d} ({}) evaluates to {v}", sym_expr(kernel, e)))
            })?;
            want.push(v);
        }
        if t.shape != want {
            let text: Vec<String> = shape.iter().map(|e| sym_expr(kernel, e)).collect();
            return Err(bad(
                i,
                format!("shape {:?} does not match [{}] = {want:?}", t.shape, text.join(", ")),
            ));
        }
        // `HostTensor` fields are public: make sure the buffer really holds the shape, so
        // element accesses cannot go out of the buffer.
        let bytes = t.shape.iter().try_fold(t.dtype.bytes(), |acc, &e| acc.checked_mul(e));
        if bytes != Some(t.data.len()) {
            return Err(bad(
                i,
                format!("buffer holds {} bytes, shape {:?} needs {bytes:?}", t.data.len(), t.shape),
            ));
        }
    }
    Ok(values)
}

/// Checks that a scalar argument fits `dtype`; returns its value for shape expressions.
/// Float arguments are rounded to the dtype (as a host-side cast), but a finite value that
/// would become infinite is refused as a likely mistake.
fn check_scalar(dtype: DType, v: f64) -> Result<Option<i64>, String> {
    if dtype.is_float() {
        if v.is_finite() && dtype.round(v).is_infinite() {
            return Err(format!("{v} overflows {dtype}"));
        }
        return Ok(None);
    }
    if !v.is_finite() || v.fract() != 0.0 {
        return Err(format!("{v} is not an integer, the parameter is {dtype}"));
    }
    let (lo, hi) = dtype.int_range().expect("integer or bool dtype");
    if v < lo as f64 || v > hi as f64 {
        return Err(format!("{v} is out of range for {dtype}"));
    }
    // u64 values beyond i64 cannot appear in shape expressions (they are i64).
    Ok((v >= i64::MIN as f64 && v < i64::MAX as f64).then_some(v as i64))
}

/// Checks the arguments and evaluates the grid extents (x, y, z).
pub fn eval_grid(kernel: &Kernel, args: &[Arg]) -> Result<[u32; 3], VmError> {
    let params = check_args(kernel, args)?;
    grid_from_params(kernel, &params)
}

/// Evaluates the grid extents with parameter values from [`check_args`]. Extents must be
/// non-negative and the block count at most 2^31 (device-specific limits, such as CUDA's
/// 65535 for y and z, are the backend's to check).
pub fn grid_from_params(kernel: &Kernel, params: &[Option<i64>]) -> Result<[u32; 3], VmError> {
    let err = |reason: String| VmError::Grid { kernel: kernel.name.clone(), reason };
    let mut grid = [0u32; 3];
    let mut total: i128 = 1;
    for (axis, e) in kernel.grid.iter().enumerate() {
        let name = ["x", "y", "z"][axis];
        let v = e.eval(params).map_err(|m| err(format!("{name}: {m}")))?;
        if v < 0 {
            return Err(err(format!("{name} = {} evaluates to {v}", sym_expr(kernel, e))));
        }
        if v > 1 << 31 {
            return Err(err(format!("{name} = {v} exceeds 2^31 blocks")));
        }
        grid[axis] = v as u32;
        total *= v as i128;
    }
    if total > 1 << 31 {
        return Err(err(format!("{grid:?} is {total} blocks, more than 2^31")));
    }
    Ok(grid)
}

/// The state of one block's execution. `env` holds the current value of every value id (a
/// value inside a loop body is overwritten each iteration); `vars` the mutable variables.
struct Machine<'k, 'a> {
    kernel: &'k Kernel,
    /// Scalar arguments rounded to their dtypes (unused slots for tensors).
    scalars: &'a [f64],
    args: &'a mut [Arg],
    block: [u32; 3],
    env: Vec<Option<Vec<f64>>>,
    vars: Vec<Option<Vec<f64>>>,
}

impl Machine<'_, '_> {
    fn run_block(&mut self, block: [u32; 3]) -> Result<(), VmError> {
        self.block = block;
        // Each block starts with no values and uninitialized variables.
        self.env.iter_mut().for_each(|v| *v = None);
        self.vars.iter_mut().for_each(|v| *v = None);
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
                    for i in bounds.0 as i64..bounds.1 as i64 {
                        self.env[index.index()] = Some(vec![i as f64]);
                        self.run_body(body)?;
                    }
                }
                Stmt::If { cond, then_body, else_body } => {
                    let c = get_scalar(&self.env, *cond)
                        .map_err(|f| self.stmt_error("if", *cond, f))?;
                    self.run_body(if c != 0.0 { then_body } else { else_body })?;
                }
            }
        }
        Ok(())
    }

    /// Computes value `id` (its elements, rounded to its dtype; none for a store).
    fn eval(&mut self, id: ValueId) -> Result<Vec<f64>, Fault> {
        let kernel = self.kernel;
        let data = &kernel.values[id.index()];
        let env = &self.env;
        let internal = |m: &str| Fault::Internal(m.to_string());
        let ty = &data.ty;
        let n = ty.num_elements();
        let dtype = || ty.dtype().ok_or_else(|| internal("the result has no dtype"));
        let out = match &data.op {
            Op::Const(v) => vec![dtype()?.round(*v)],
            Op::Param(i) => match kernel.params.get(*i).map(|p| &p.kind) {
                Some(ParamKind::Scalar(_)) => vec![dtype()?.round(self.scalars[*i])],
                _ => return Err(internal("`param` names a tensor parameter")),
            },
            Op::BlockIdx(axis) => {
                let c = self.block.get(*axis as usize).ok_or_else(|| internal("bad axis"))?;
                vec![dtype()?.round(*c as f64)]
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
                get(env, *a)?.iter().map(|&x| d.round(x)).collect()
            }
            Op::Splat(a) => vec![get_scalar(env, *a)?; n],
            Op::Broadcast(a) => broadcast(get(env, *a)?, value_shape(kernel, *a), shape_of(ty)),
            Op::Select { cond, a, b } => {
                let (c, x, y) = (get(env, *cond)?, get(env, *a)?, get(env, *b)?);
                c.iter().zip(x.iter().zip(y)).map(|(&c, (&x, &y))| if c != 0.0 { x } else { y }).collect()
            }
            Op::Load { param, offsets, pad } => {
                let offsets = offsets.iter().map(|o| get_scalar(env, *o).map(|v| v as i64));
                let offsets: Vec<i64> = offsets.collect::<Result<_, _>>()?;
                let tensor = self.args.get(*param).and_then(Arg::tensor);
                let tensor = tensor.ok_or_else(|| internal("`load` names a scalar parameter"))?;
                load(tensor, &offsets, shape_of(ty), dtype()?.round(*pad))?
            }
            Op::Store { param, value, offsets } => {
                let offsets = offsets.iter().map(|o| get_scalar(env, *o).map(|v| v as i64));
                let offsets: Vec<i64> = offsets.collect::<Result<_, _>>()?;
                let mutable = matches!(
                    kernel.params.get(*param).map(|p| &p.kind),
                    Some(ParamKind::Global { mutable: true, .. })
                );
                let tensor = match self.args.get_mut(*param) {
                    Some(Arg::Tensor(t)) if mutable => t,
                    _ => return Err(internal("`store` names no `mut` tensor parameter")),
                };
                store(tensor, &offsets, value_shape(kernel, *value), get(env, *value)?)?;
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

    fn read_var(&self, var: VarId) -> Result<Vec<f64>, Fault> {
        let slot = self.vars.get(var.index()).ok_or_else(|| Fault::Internal("bad var".into()))?;
        slot.clone().ok_or_else(|| Fault::UninitializedVariable {
            var: var.0,
            name: self.kernel.vars[var.index()].name.clone(),
        })
    }
}

/// The elements of an already computed value.
fn get(env: &[Option<Vec<f64>>], id: ValueId) -> Result<&[f64], Fault> {
    env.get(id.index())
        .and_then(|v| v.as_deref())
        .ok_or_else(|| Fault::Internal(format!("%{} is used before it is computed", id.0)))
}

fn get_scalar(env: &[Option<Vec<f64>>], id: ValueId) -> Result<f64, Fault> {
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
        Op::Broadcast(_) => "broadcast".into(),
        Op::Load { .. } => "load".into(),
        Op::Store { .. } => "store".into(),
        Op::Dot { .. } => "dot".into(),
        Op::Reduce { op, .. } => format!("reduce_{}", op.name()),
        Op::Select { .. } => "select".into(),
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

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// An exact integer result as a value of `d`, or an overflow fault.
fn fit_int(d: DType, r: i128) -> Result<f64, Fault> {
    let (lo, hi) = d.int_range().expect("integer dtype");
    if (lo..=hi).contains(&r) { Ok(r as f64) } else { Err(Fault::IntegerOverflow(d)) }
}

/// `x` if it is an integer of `d` (an out-of-range `f64` is an overflow).
fn check_int_f64(d: DType, x: f64) -> Result<f64, Fault> {
    let (lo, hi) = d.int_range().expect("integer dtype");
    if x >= lo as f64 && x <= hi as f64 { Ok(x) } else { Err(Fault::IntegerOverflow(d)) }
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
fn unary(op: UnaryOp, d: DType, x: f64) -> Result<f64, Fault> {
    match class(d) {
        Class::Float => {
            let r = match op {
                UnaryOp::Neg => -x,
                UnaryOp::Abs => x.abs(),
                UnaryOp::Exp => x.exp(),
                UnaryOp::Exp2 => x.exp2(),
                UnaryOp::Log => x.ln(),
                UnaryOp::Sqrt => x.sqrt(),
                UnaryOp::Rsqrt => 1.0 / x.sqrt(),
                UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
                UnaryOp::Tanh => x.tanh(),
                UnaryOp::Not => return Err(Fault::Unsupported(format!("`not` of a {d} value"))),
            };
            Ok(d.round(r))
        }
        Class::Int => {
            let v = x as i128;
            let r = match op {
                UnaryOp::Neg => -v,
                UnaryOp::Abs => v.abs(),
                // Two's complement for signed types; `max - v` is the same bit flip unsigned.
                UnaryOp::Not if d.is_signed_int() => !v,
                UnaryOp::Not => d.int_range().expect("integer dtype").1 - v,
                _ => return Err(Fault::Unsupported(format!("`{}` of a {d} value", op.name()))),
            };
            fit_int(d, r)
        }
        Class::Bool => match op {
            UnaryOp::Not => Ok(1.0 - x),
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
fn binary(op: BinaryOp, d: DType, x: f64, y: f64) -> Result<f64, Fault> {
    let cmp = match op {
        BinaryOp::Lt => Some(x < y),
        BinaryOp::Le => Some(x <= y),
        BinaryOp::Gt => Some(x > y),
        BinaryOp::Ge => Some(x >= y),
        BinaryOp::Eq => Some(x == y),
        BinaryOp::Ne => Some(x != y),
        _ => None,
    };
    if let Some(c) = cmp {
        return Ok(bool_value(c));
    }
    if class(d) == Class::Float {
        let r = match op {
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
            BinaryOp::Div => x / y,
            BinaryOp::Rem => x % y,
            BinaryOp::Max => max_num(x, y),
            BinaryOp::Min => min_num(x, y),
            _ => return Err(Fault::Unsupported(format!("`{}` of {d} values", op.name()))),
        };
        return Ok(d.round(r));
    }
    let (a, b) = (x as i128, y as i128);
    if matches!(op, BinaryOp::Div | BinaryOp::Rem) && b == 0 {
        return Err(Fault::DivisionByZero);
    }
    let r = match op {
        BinaryOp::Add => a.checked_add(b),
        BinaryOp::Sub => a.checked_sub(b),
        BinaryOp::Mul => a.checked_mul(b),
        BinaryOp::Div => a.checked_div(b),
        BinaryOp::Rem => a.checked_rem(b),
        BinaryOp::Max => Some(a.max(b)),
        BinaryOp::Min => Some(a.min(b)),
        BinaryOp::And => Some(a & b),
        BinaryOp::Or => Some(a | b),
        _ => unreachable!("comparisons are handled above"),
    };
    let r = r.ok_or(Fault::IntegerOverflow(d))?;
    if d == DType::Bool { Ok(bool_value(r != 0)) } else { fit_int(d, r) }
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
fn broadcast(x: &[f64], from: &[usize], to: &[usize]) -> Vec<f64> {
    let from_strides = strides(from);
    let mut out = Vec::with_capacity(to.iter().product());
    for_each_index(to, |idx| {
        let src: usize = (0..to.len())
            .map(|d| if from[d] == 1 { 0 } else { idx[d] * from_strides[d] })
            .sum();
        out.push(x[src]);
    });
    out
}

/// The flat index of tile element `idx` at `offsets` in a tensor of `shape`, if in bounds.
fn global_index(shape: &[usize], strides: &[usize], offsets: &[i64], idx: &[usize]) -> Option<usize> {
    let mut flat = 0;
    for d in 0..shape.len() {
        let g = offsets[d].checked_add(idx[d] as i64)?;
        if g < 0 || g >= shape[d] as i64 {
            return None;
        }
        flat += g as usize * strides[d];
    }
    Some(flat)
}

fn check_rank(t: &HostTensor, offsets: &[i64], tile: &[usize]) -> Result<(), Fault> {
    if t.shape.len() != offsets.len() || tile.len() != offsets.len() {
        return Err(Fault::Internal("tile, offsets and tensor ranks differ".into()));
    }
    Ok(())
}

/// A tile of shape `tile` at `offsets` (possibly negative); elements outside read `pad`.
fn load(t: &HostTensor, offsets: &[i64], tile: &[usize], pad: f64) -> Result<Vec<f64>, Fault> {
    check_rank(t, offsets, tile)?;
    let st = strides(&t.shape);
    let mut out = Vec::with_capacity(tile.iter().product());
    for_each_index(tile, |idx| {
        out.push(global_index(&t.shape, &st, offsets, idx).map_or(pad, |i| t.get(i)));
    });
    Ok(out)
}

/// Writes tile `x` of shape `tile` at `offsets`; elements outside the tensor are skipped.
fn store(t: &mut HostTensor, offsets: &[i64], tile: &[usize], x: &[f64]) -> Result<(), Fault> {
    check_rank(t, offsets, tile)?;
    let st = strides(&t.shape);
    let shape = t.shape.clone();
    let mut k = 0;
    for_each_index(tile, |idx| {
        if let Some(i) = global_index(&shape, &st, offsets, idx) {
            t.set(i, x[k]);
        }
        k += 1;
    });
    Ok(())
}

/// `c + a @ b` with `a: [m, k]`, `b: [k, n]`: each output starts from `c` and adds the
/// products in order of `k`, rounding to `c`'s dtype after every step (a chain of FMAs, as
/// an MMA accumulator does). Products of inputs up to 32 bits (`f32`, `f16`, `i16`, ...) are
/// exact in `f64`; for wider inputs `mul_add` keeps the step to one rounding. An integer
/// accumulator that leaves its range is an overflow.
fn dot(
    a: &[f64],
    b: &[f64],
    c: &[f64],
    [m, n, k]: [usize; 3],
    ab: DType,
    cd: DType,
) -> Result<Vec<f64>, Fault> {
    let exact_products = ab.bits() <= 16 || ab == DType::F32;
    let int_acc = class(cd) == Class::Int;
    let mut out = c.to_vec();
    for i in 0..m {
        for j in 0..n {
            let mut acc = c[i * n + j];
            for kk in 0..k {
                let (x, y) = (a[i * k + kk], b[kk * n + j]);
                let s = if exact_products { acc + x * y } else { x.mul_add(y, acc) };
                acc = if int_acc { check_int_f64(cd, s.round_ties_even())? } else { cd.round(s) };
            }
            out[i * n + j] = acc;
        }
    }
    Ok(out)
}

/// Reduces `x` (shape `shape`) over `dim`, keeping it with extent 1. A float `sum` adds in
/// index order in `f64` and rounds once to the dtype (the GPU adds in another order and at
/// lower precision, so comparisons need tolerances); integer sums are exact and must fit;
/// a bool `sum` is "any". `max`/`min` ignore NaNs like [`max_num`]/[`min_num`]. An empty
/// dim gives 0 for `sum` and NaN (0 for integers) for `max`/`min`.
fn reduce(op: ReduceOp, d: DType, x: &[f64], shape: &[usize], dim: usize) -> Result<Vec<f64>, Fault> {
    if dim >= shape.len() {
        return Err(Fault::Internal(format!("reduce dim {dim} of a rank-{} tile", shape.len())));
    }
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let len = shape[dim];
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let mut items = (0..len).map(|r| x[(o * len + r) * inner + i]);
            let v = match (op, class(d)) {
                (ReduceOp::Sum, Class::Int) => {
                    let s = items.try_fold(0i128, |s, v| s.checked_add(v as i128));
                    fit_int(d, s.ok_or(Fault::IntegerOverflow(d))?)?
                }
                (ReduceOp::Sum, _) => d.round(items.sum::<f64>()),
                (ReduceOp::Max, _) => d.round(items.fold(f64::NAN, max_num)),
                (ReduceOp::Min, _) => d.round(items.fold(f64::NAN, min_num)),
            };
            out.push(v);
        }
    }
    Ok(out)
}
