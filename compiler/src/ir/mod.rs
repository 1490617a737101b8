//! The block-level IR: one thread block's program over whole tiles.
//!
//! A [`Kernel`] holds its parameters, grid and warp count, an arena of [`ValueData`] indexed by
//! [`ValueId`], an arena of mutable variables indexed by [`VarId`], and a body of structured
//! statements. Every value is defined by exactly one `Stmt::Eval` (or is a `for` loop's index)
//! and is used only after its definition, in the same or an enclosing block.
//!
//! Semantics (docs/language.md, implemented by `tl_vm::interp`): every instruction executes for the
//! whole block; loads read zero (or `pad`) outside the tensor's bounds; stores skip elements
//! outside the bounds; `dot(a, b, c)` is `c + a @ b` accumulated in `c`'s dtype; reductions keep
//! the reduced dim with extent 1.

pub mod parse;
pub mod plan;
pub mod print;
pub mod verify;

use crate::diagnostics::Span;
use crate::dtype::DType;
use crate::number::Number;
use crate::layout::RegisterLayout;

/// Index of a value in [`Kernel::values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Index of a mutable variable in [`Kernel::vars`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(pub u32);

/// Index of a parameter in [`Kernel::params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub u32);

impl ParamId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for ParamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl VarId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The type of a value or variable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// A block-uniform scalar.
    Scalar(DType),
    /// A register tile with a static shape.
    Tensor { dtype: DType, shape: Vec<usize> },
    /// A tensor in shared memory with a static shape, allocated once per block (`shared<f16>([2, 16, 32])`).
    /// Only `load`, `store` and `copy_async` use it.
    Shared { dtype: DType, shape: Vec<usize> },
    /// The result of an instruction that produces nothing (`store`).
    Unit,
}

impl Type {
    pub fn dtype(&self) -> Option<DType> {
        match self {
            Type::Scalar(d) | Type::Tensor { dtype: d, .. } | Type::Shared { dtype: d, .. } => Some(*d),
            Type::Unit => None,
        }
    }

    pub fn shape(&self) -> Option<&[usize]> {
        match self {
            Type::Tensor { shape, .. } => Some(shape),
            _ => None,
        }
    }

    pub fn is_scalar(&self) -> bool {
        matches!(self, Type::Scalar(_))
    }

    pub fn num_elements(&self) -> usize {
        match self {
            Type::Tensor { shape, .. } => shape.iter().product(),
            Type::Scalar(_) => 1,
            Type::Shared { .. } | Type::Unit => 0,
        }
    }
}

/// A shape or grid expression over the kernel's runtime scalar parameters, evaluated at launch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SymExpr {
    Const(i64),
    /// A runtime scalar parameter.
    Param(ParamId),
    Add(Box<SymExpr>, Box<SymExpr>),
    Sub(Box<SymExpr>, Box<SymExpr>),
    Mul(Box<SymExpr>, Box<SymExpr>),
    /// Floor division; division by zero evaluates to an error at launch.
    Div(Box<SymExpr>, Box<SymExpr>),
    /// Ceiling division `cdiv(a, b)`.
    CeilDiv(Box<SymExpr>, Box<SymExpr>),
    Rem(Box<SymExpr>, Box<SymExpr>),
    Min(Box<SymExpr>, Box<SymExpr>),
    Max(Box<SymExpr>, Box<SymExpr>),
}

impl SymExpr {
    /// Evaluates with the values of the kernel's parameters (`None` for tensor parameters).
    pub fn eval(&self, params: &[Option<i64>]) -> Result<i64, String> {
        let bin = |a: &SymExpr, b: &SymExpr| -> Result<(i64, i64), String> {
            Ok((a.eval(params)?, b.eval(params)?))
        };
        let overflow = || "integer overflow in a shape or grid expression".to_string();
        Ok(match self {
            SymExpr::Const(v) => *v,
            SymExpr::Param(i) => params
                .get(i.index())
                .copied()
                .flatten()
                .ok_or_else(|| format!("parameter {} is not a scalar", i.0))?,
            SymExpr::Add(a, b) => {
                let (a, b) = bin(a, b)?;
                a.checked_add(b).ok_or_else(overflow)?
            }
            SymExpr::Sub(a, b) => {
                let (a, b) = bin(a, b)?;
                a.checked_sub(b).ok_or_else(overflow)?
            }
            SymExpr::Mul(a, b) => {
                let (a, b) = bin(a, b)?;
                a.checked_mul(b).ok_or_else(overflow)?
            }
            SymExpr::Div(a, b) | SymExpr::CeilDiv(a, b) | SymExpr::Rem(a, b) => {
                let (x, y) = bin(a, b)?;
                if y == 0 {
                    return Err("division by zero in a shape or grid expression".into());
                }
                match self {
                    SymExpr::Div(..) => x.div_euclid(y),
                    SymExpr::Rem(..) => x.rem_euclid(y),
                    _ => x.checked_add(y - 1).ok_or_else(overflow)?.div_euclid(y),
                }
            }
            SymExpr::Min(a, b) => {
                let (a, b) = bin(a, b)?;
                a.min(b)
            }
            SymExpr::Max(a, b) => {
                let (a, b) = bin(a, b)?;
                a.max(b)
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ParamKind {
    /// A runtime scalar.
    Scalar(DType),
    /// A tensor in global memory, row-major, with a symbolic shape.
    Global { dtype: DType, shape: Vec<SymExpr>, mutable: bool },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub kind: ParamKind,
    pub span: Span,
}

/// Elementwise operations of one operand. The math functions (`exp` .. `erf`) are accurate
/// to a few ulps on every backend (docs/language.md §5 gives the measured bounds); their
/// `*Approx` twins (`exp(x, approx = true)`) are the GPU's hardware approximations (PTX
/// `.approx` instructions), which the CPU backends compute exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Not,
    Abs,
    Exp,
    Exp2,
    Log,
    Log2,
    Sqrt,
    Rsqrt,
    Sigmoid,
    Tanh,
    Sin,
    Cos,
    Erf,
    ExpApprox,
    Exp2Approx,
    LogApprox,
    Log2Approx,
    RsqrtApprox,
    SigmoidApprox,
    TanhApprox,
    SinApprox,
    CosApprox,
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 23] = [
        UnaryOp::Neg,
        UnaryOp::Not,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Exp2,
        UnaryOp::Log,
        UnaryOp::Log2,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Erf,
        UnaryOp::ExpApprox,
        UnaryOp::Exp2Approx,
        UnaryOp::LogApprox,
        UnaryOp::Log2Approx,
        UnaryOp::RsqrtApprox,
        UnaryOp::SigmoidApprox,
        UnaryOp::TanhApprox,
        UnaryOp::SinApprox,
        UnaryOp::CosApprox,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Not => "not",
            UnaryOp::Abs => "abs",
            UnaryOp::Exp => "exp",
            UnaryOp::Exp2 => "exp2",
            UnaryOp::Log => "log",
            UnaryOp::Log2 => "log2",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Erf => "erf",
            UnaryOp::ExpApprox => "exp.approx",
            UnaryOp::Exp2Approx => "exp2.approx",
            UnaryOp::LogApprox => "log.approx",
            UnaryOp::Log2Approx => "log2.approx",
            UnaryOp::RsqrtApprox => "rsqrt.approx",
            UnaryOp::SigmoidApprox => "sigmoid.approx",
            UnaryOp::TanhApprox => "tanh.approx",
            UnaryOp::SinApprox => "sin.approx",
            UnaryOp::CosApprox => "cos.approx",
        }
    }

    /// The math function called `name` in the language (`exp`, ..., `abs`).
    pub fn math_function(name: &str) -> Option<UnaryOp> {
        Self::ALL.into_iter().find(|u| u.name() == name && !matches!(u, UnaryOp::Neg | UnaryOp::Not))
    }

    /// The hardware approximation of this function (`approx = true`), where the GPU has one.
    pub fn approximate(self) -> Option<UnaryOp> {
        Some(match self {
            UnaryOp::Exp => UnaryOp::ExpApprox,
            UnaryOp::Exp2 => UnaryOp::Exp2Approx,
            UnaryOp::Log => UnaryOp::LogApprox,
            UnaryOp::Log2 => UnaryOp::Log2Approx,
            UnaryOp::Rsqrt => UnaryOp::RsqrtApprox,
            UnaryOp::Sigmoid => UnaryOp::SigmoidApprox,
            UnaryOp::Tanh => UnaryOp::TanhApprox,
            UnaryOp::Sin => UnaryOp::SinApprox,
            UnaryOp::Cos => UnaryOp::CosApprox,
            _ => return None,
        })
    }

    /// The exact function an approximation stands for (the identity for the others): what
    /// the CPU backends compute.
    pub fn exact(self) -> UnaryOp {
        Self::ALL.into_iter().find(|u| u.approximate() == Some(self)).unwrap_or(self)
    }

    /// Math functions that need a float operand.
    pub fn needs_float(self) -> bool {
        !matches!(self, UnaryOp::Neg | UnaryOp::Not | UnaryOp::Abs)
    }

    /// The exact value of the float function (`Not` is no float function: NaN), in f64: what
    /// the VM and the reference blocks compute before rounding once to the dtype, and the
    /// simulator for the hardware approximations. `erf` is libm's.
    pub fn exact_f64(self, x: f64) -> f64 {
        match self.exact() {
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Exp2 => x.exp2(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Log2 => x.log2(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Rsqrt => 1.0 / x.sqrt(),
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
            UnaryOp::Erf => libm::erf(x),
            _ => f64::NAN,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    /// Float division, or integer division truncating toward zero.
    Div,
    /// Integer remainder with the sign of the dividend (as in C and PTX `rem`).
    Rem,
    Max,
    Min,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    /// Logical on bool, bitwise on integers (on the dtype's own bits).
    And,
    Or,
    Xor,
    /// `a << b`: the bits of `a` moved up by `b`, those beyond the dtype's width dropped; an
    /// amount outside `0 .. width` gives 0.
    Shl,
    /// `a >> b`: arithmetic on signed integers, logical on unsigned; an amount outside
    /// `0 .. width` gives the sign fill (signed: 0 or -1) or 0 (unsigned).
    Shr,
    /// `pow(a, b)` on floats (C's `pow`, accurate to a few ulps); `PowApprox` is
    /// `exp2(b · log2(a))` through the GPU's hardware approximations, for `a > 0`.
    Pow,
    PowApprox,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 20] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Xor,
        BinaryOp::Shl,
        BinaryOp::Shr,
        BinaryOp::Pow,
        BinaryOp::PowApprox,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Rem => "rem",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Xor => "xor",
            BinaryOp::Shl => "shl",
            BinaryOp::Shr => "shr",
            BinaryOp::Pow => "pow",
            BinaryOp::PowApprox => "pow.approx",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq | BinaryOp::Ne
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
}

impl ReduceOp {
    pub const ALL: [ReduceOp; 3] = [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min];

    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }
}

/// What computes a value. Operand types are fixed by the verifier's rules (see `verify.rs`).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A scalar constant of the value's dtype, exactly (an integer as an integer).
    Const(Number),
    /// A runtime scalar parameter.
    Param(ParamId),
    /// `block.x` (0), `block.y` (1), `block.z` (2).
    BlockIdx(u8),
    /// The index of the `for` loop that defines this value.
    LoopIndex,
    /// The current value of a variable.
    ReadVar(VarId),
    /// Elementwise on a tensor, or on a scalar.
    Unary(UnaryOp, ValueId),
    /// Elementwise on two tensors of the same shape, or on two scalars; operands share a dtype.
    Binary(BinaryOp, ValueId, ValueId),
    /// Elementwise conversion to the value's dtype (the rounding and saturation of `cast`, docs/language.md §7).
    Cast(ValueId),
    /// A scalar repeated over the value's shape.
    Splat(ValueId),
    /// The element of a one-element tile (every extent 1), as a scalar: the same value in
    /// every thread, so it can steer control flow and offsets.
    ToScalar(ValueId),
    /// The tile of the value's shape whose element at `[i0, i1, ...]` is `i_dim`, in the
    /// value's dtype (rounded once for a float dtype).
    Iota { dim: usize },
    /// A tensor whose extent-1 dims are repeated to the value's shape (same rank).
    Broadcast(ValueId),
    /// Tile of the value's shape from global tensor parameter `param`, starting at `offsets`
    /// (one i32 scalar per dim); elements outside the tensor read as `pad`.
    Load { param: ParamId, offsets: Vec<ValueId>, pad: Number },
    /// Writes a tile into global tensor parameter `param` at `offsets`; elements outside the
    /// tensor are skipped. Produces `Type::Unit`.
    Store { param: ParamId, value: ValueId, offsets: Vec<ValueId> },
    /// Adds a tile into global tensor parameter `param` at `offsets`, each element atomically
    /// (one read-modify-write that no other thread or block interleaves with); elements outside
    /// the tensor are skipped. Integers wrap, floats round once per addition; the order of
    /// additions from different threads and blocks is unspecified. Dtypes:
    /// [`ATOMIC_ADD_DTYPES`]. Produces `Type::Unit`.
    AtomicAdd { param: ParamId, value: ValueId, offsets: Vec<ValueId> },
    /// `c + a @ b` for `a: [M, K]`, `b: [K, N]`, `c: [M, N]`; products and sums in `c`'s dtype.
    Dot { a: ValueId, b: ValueId, c: ValueId },
    /// A shared tensor of the value's type (`Type::Shared`), allocated for the whole block; its
    /// elements are undefined until written.
    SharedAlloc,
    /// A tile of the value's shape from shared tensor `shared`: `offsets` has one i32 scalar
    /// per dim of the shared tensor, the tile spans its trailing dims (leading dims are fixed
    /// at their offsets). Every element must lie inside the shared tensor.
    LoadShared { shared: ValueId, offsets: Vec<ValueId> },
    /// Writes a tile into shared tensor `shared` at `offsets` (as `LoadShared`). Produces
    /// `Type::Unit`.
    StoreShared { shared: ValueId, value: ValueId, offsets: Vec<ValueId> },
    /// Starts an asynchronous copy of a tile from global tensor parameter `param` at
    /// `src_offsets` into shared tensor `shared`. The tile is the trailing dims of the shared
    /// tensor, as many as the global tensor has, whole; `dst_offsets` (i32 scalars) select the
    /// leading dims. Elements outside the global tensor are written as zero. The copy belongs
    /// to the group the next `Commit` closes and lands when a `Wait` retires that group.
    /// Produces `Type::Unit`.
    CopyAsync { shared: ValueId, dst_offsets: Vec<ValueId>, param: ParamId, src_offsets: Vec<ValueId> },
    /// Closes the group of copies started since the previous `Commit`.
    Commit,
    /// Waits until at most `n` committed groups are still in flight.
    Wait(u32),
    /// Block-wide barrier: shared-memory writes before it are visible to every thread after it.
    Sync,
    /// Prints every element of a tile (or a scalar) with its index, one line each:
    /// `block (x, y, z): LABEL[i, j] = VALUE`. Produces `Type::Unit`.
    Print { value: ValueId, label: String },
    /// Reduction over `dim`, which stays with extent 1.
    Reduce { op: ReduceOp, value: ValueId, dim: usize },
    /// Elementwise `cond ? a : b` (`cond` is bool, same shape).
    Select { cond: ValueId, a: ValueId, b: ValueId },
    /// Reinterprets the tile's bits as the value's dtype, on the logical tile: each row's
    /// codes, concatenated LSB first, are cut into codes of the new dtype (the row length in
    /// bits is a multiple of the new width). Layouts do not change the meaning; the lowering
    /// moves data between threads when the two layouts need it.
    View(ValueId),
    /// The tile with its dimensions permuted: result dimension `i` is operand dimension
    /// `perm[i]`.
    Permute { value: ValueId, perm: Vec<usize> },
    /// The tile's elements, in row-major order, in the value's shape (same element count).
    Reshape(ValueId),
}

/// A constructor of a register layout written in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayoutFunc {
    Local,
    Spatial,
    ColumnLocal,
    ColumnSpatial,
    /// `replicate(n)`: n copies of the layout over n times the threads.
    Replicate,
}

impl LayoutFunc {
    pub fn from_name(name: &str) -> Option<LayoutFunc> {
        Some(match name {
            "local" => LayoutFunc::Local,
            "spatial" => LayoutFunc::Spatial,
            "column_local" => LayoutFunc::ColumnLocal,
            "column_spatial" => LayoutFunc::ColumnSpatial,
            "replicate" => LayoutFunc::Replicate,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            LayoutFunc::Local => "local",
            LayoutFunc::Spatial => "spatial",
            LayoutFunc::ColumnLocal => "column_local",
            LayoutFunc::ColumnSpatial => "column_spatial",
            LayoutFunc::Replicate => "replicate",
        }
    }
}

/// A user's layout annotation with its compile-time arguments evaluated: the product of
/// `factors`, outermost first (named layouts are expanded).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LayoutAnnotation {
    pub factors: Vec<(LayoutFunc, Vec<usize>)>,
    /// The annotation in the source.
    pub span: Span,
}

impl std::fmt::Display for LayoutAnnotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .factors
            .iter()
            .map(|(func, args)| format!("{}({})", func.name(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")))
            .collect();
        f.write_str(&parts.join(" * "))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ValueData {
    pub ty: Type,
    pub op: Op,
    /// The register layout of a tensor value; `None` until layout assignment.
    pub layout: Option<RegisterLayout>,
    /// The layout the user wrote for this value (`let t: reg f16[..] @ L = ...`).
    pub annotation: Option<LayoutAnnotation>,
    /// How an instruction that moves data between threads does it; `None` until
    /// `passes::select_instructions` (see `plan`).
    pub strategy: Option<plan::Strategy>,
    /// Byte offsets in the shared buffer, from `passes::plan_shared_memory`: a shared tensor's
    /// place, or the scratch space of each operand its strategy stages (see `plan`).
    pub shared_offsets: Vec<usize>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VarData {
    pub name: String,
    pub ty: Type,
    pub layout: Option<RegisterLayout>,
    /// The layout the user wrote for this variable.
    pub annotation: Option<LayoutAnnotation>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// Computes a value (in program order).
    Eval(ValueId),
    /// Sets a variable. The value's type equals the variable's.
    Assign(VarId, ValueId),
    /// `for index in start .. end { body }` with i32 bounds, step 1, block-uniform.
    For { index: ValueId, start: ValueId, end: ValueId, body: Vec<Stmt> },
    /// Block-uniform branch on a bool scalar.
    If { cond: ValueId, then_body: Vec<Stmt>, else_body: Vec<Stmt> },
}

/// The value of a compile-time parameter override (`-D NAME=VALUE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstValue {
    Int(i64),
    DType(DType),
}

impl ConstValue {
    /// Parses `16`, `-3`, `0x10` as an integer and a dtype name as a dtype.
    pub fn parse(text: &str) -> Option<ConstValue> {
        let t = text.trim();
        if let Some(d) = DType::from_name(t) {
            return Some(ConstValue::DType(d));
        }
        let (negative, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let magnitude = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
            Some(hex) => i64::from_str_radix(hex, 16).ok()?,
            None => digits.parse::<i64>().ok()?,
        };
        Some(ConstValue::Int(if negative { -magnitude } else { magnitude }))
    }
}

impl From<i64> for ConstValue {
    fn from(v: i64) -> Self {
        ConstValue::Int(v)
    }
}

impl From<DType> for ConstValue {
    fn from(d: DType) -> Self {
        ConstValue::DType(d)
    }
}

impl std::fmt::Display for ConstValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConstValue::Int(v) => write!(f, "{v}"),
            ConstValue::DType(d) => write!(f, "{d}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    /// Compile-time integer parameters with the values this kernel was specialized for.
    pub const_params: Vec<(String, i64)>,
    /// Compile-time dtype parameters (`W: dtype = u4`) with the dtypes chosen.
    pub dtype_params: Vec<(String, DType)>,
    pub params: Vec<Param>,
    /// Grid extents (x, y, z).
    pub grid: [SymExpr; 3],
    pub warps: u32,
    /// The bytes of shared memory the block uses, once `passes::plan_shared_memory` has placed
    /// every piece (`None` before).
    pub shared_bytes: Option<usize>,
    pub values: Vec<ValueData>,
    pub vars: Vec<VarData>,
    pub body: Vec<Stmt>,
}

impl Kernel {
    pub fn value(&self, id: ValueId) -> &ValueData {
        &self.values[id.index()]
    }

    pub fn param(&self, id: ParamId) -> &Param {
        &self.params[id.index()]
    }

    /// The parameter `id`, or `None` when there is no such parameter (unverified IR).
    pub fn get_param(&self, id: ParamId) -> Option<&Param> {
        self.params.get(id.index())
    }

    pub fn var(&self, id: VarId) -> &VarData {
        &self.vars[id.index()]
    }

    pub fn num_threads(&self) -> usize {
        self.warps as usize * 32
    }

    /// Appends a value to the arena (it still needs a `Stmt::Eval` to be computed).
    pub fn add_value(&mut self, ty: Type, op: Op, span: Span) -> ValueId {
        self.values.push(ValueData { ty, op, layout: None, annotation: None, strategy: None, shared_offsets: Vec::new(), span });
        ValueId(self.values.len() as u32 - 1)
    }
}

/// Shared memory is planned in pieces aligned to 16 bytes (the widest access, a 16-byte
/// `cp.async` or vector access, needs it): the bytes a piece of `bytes` takes.
pub fn shared_piece_bytes(bytes: usize) -> usize {
    bytes.div_ceil(16).saturating_mul(16)
}

/// The bytes a shared tensor of `dtype` and `shape` takes in the shared buffer: dense, packed
/// for formats narrower than a byte, in a 16-byte aligned piece. `None` on overflow. Sema
/// checks the kernel's total against the limit with it and the lowering places the tensors
/// with it: one formula for both.
pub fn shared_tensor_bytes(dtype: DType, shape: &[usize]) -> Option<usize> {
    let elements = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    crate::dtype::packed_bytes(elements, dtype.bits()).map(shared_piece_bytes)
}

/// The dtypes `atomic_add` adds into: those with an atomic addition on the GPU (bf16 on
/// sm_80 through a compare-and-swap loop).
pub const ATOMIC_ADD_DTYPES: [DType; 8] = [DType::I32, DType::U32, DType::I64, DType::U64, DType::F16, DType::BF16, DType::F32, DType::F64];

/// Operands of an op, in order.
pub fn operands(op: &Op) -> Vec<ValueId> {
    match op {
        Op::Const(_) | Op::Param(_) | Op::BlockIdx(_) | Op::LoopIndex | Op::ReadVar(_) => vec![],
        Op::SharedAlloc | Op::Commit | Op::Wait(_) | Op::Sync | Op::Iota { .. } => vec![],
        Op::LoadShared { shared, offsets } => std::iter::once(*shared).chain(offsets.iter().copied()).collect(),
        Op::StoreShared { shared, value, offsets } => [*shared, *value].into_iter().chain(offsets.iter().copied()).collect(),
        Op::CopyAsync { shared, dst_offsets, src_offsets, .. } => {
            std::iter::once(*shared).chain(dst_offsets.iter().copied()).chain(src_offsets.iter().copied()).collect()
        }
        Op::Unary(_, a) | Op::Cast(a) | Op::Splat(a) | Op::ToScalar(a) | Op::Broadcast(a) | Op::View(a) | Op::Reshape(a) => vec![*a],
        Op::Permute { value, .. } | Op::Print { value, .. } => vec![*value],
        Op::Reduce { value, .. } => vec![*value],
        Op::Binary(_, a, b) => vec![*a, *b],
        Op::Load { offsets, .. } => offsets.clone(),
        Op::Store { value, offsets, .. } | Op::AtomicAdd { value, offsets, .. } => {
            let mut v = vec![*value];
            v.extend(offsets);
            v
        }
        Op::Dot { a, b, c } => vec![*a, *b, *c],
        Op::Select { cond, a, b } => vec![*cond, *a, *b],
    }
}
