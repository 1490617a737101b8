//! The thread-level IR (LIR): the program of one thread, with the thread index explicit.
//!
//! Everything is per thread: variables are registers (mutable, typed), expressions are trees,
//! control flow is structured and block-uniform except for `If`, whose condition may differ
//! between threads (it guards memory accesses; it never contains a `Barrier`). Global memory is
//! addressed by element index into a tensor parameter (by bit index for packed sub-byte
//! elements, by byte offset for vector accesses, whose offset is a multiple of their size);
//! shared memory by byte offset into one static, 16-byte aligned buffer of `shared_bytes` bytes.
//!
//! Types of expressions are determined bottom-up by [`Program::ty`]; operands of a binary
//! operation have equal types, indices of global accesses are i64, shared offsets and loop
//! bounds are i32, conditions are i1. [`verify::verify`] checks these rules and the others
//! stated here on a whole program; the driver runs it after every lowering in debug builds.

use crate::dtype::DType;
use std::fmt::{self, Write};

pub mod parse;
pub mod verify;

/// Register types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    I1,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
    /// Two f16 in one 32-bit register, element 0 in the low half: `add`, `sub`, `mul` and
    /// `fma` work on both halves at once (each half rounded as its own f16 operation);
    /// `bitcast` to and from `i32` moves the bits.
    F16x2,
    /// Two bf16 in one 32-bit register, like [`Ty::F16x2`].
    BF16x2,
}

impl Ty {
    pub const ALL: [Ty; 11] = [Ty::I1, Ty::I8, Ty::I16, Ty::I32, Ty::I64, Ty::F16, Ty::BF16, Ty::F32, Ty::F64, Ty::F16x2, Ty::BF16x2];

    /// Scalar floats (the packed pairs are not: see [`Ty::is_packed`]).
    pub fn is_float(self) -> bool {
        matches!(self, Ty::F16 | Ty::BF16 | Ty::F32 | Ty::F64)
    }

    /// A pair of 16-bit floats in one register.
    pub fn is_packed(self) -> bool {
        matches!(self, Ty::F16x2 | Ty::BF16x2)
    }

    /// The type of each half of a packed pair (`self` for the other types).
    pub fn lane(self) -> Ty {
        match self {
            Ty::F16x2 => Ty::F16,
            Ty::BF16x2 => Ty::BF16,
            t => t,
        }
    }

    /// The packed pair of a 16-bit float type.
    pub fn packed(self) -> Option<Ty> {
        match self {
            Ty::F16 => Some(Ty::F16x2),
            Ty::BF16 => Some(Ty::BF16x2),
            _ => None,
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            Ty::I1 | Ty::I8 => 1,
            Ty::I16 | Ty::F16 | Ty::BF16 => 2,
            Ty::I32 | Ty::F32 | Ty::F16x2 | Ty::BF16x2 => 4,
            Ty::I64 | Ty::F64 => 8,
        }
    }

    /// The register type that holds values of `dtype` (unsigned integers share the signed
    /// register of their width; their signedness lives in [`Expr::Cast`]'s `from_unsigned`).
    ///
    /// Low-precision dtypes live in an `i8` container: integers below 8 bits hold their value
    /// (sign- or zero-extended), every low-precision float holds its code in the low bits.
    pub fn of(dtype: DType) -> Ty {
        match dtype {
            DType::Bool => Ty::I1,
            DType::F16 => Ty::F16,
            DType::BF16 => Ty::BF16,
            DType::F32 => Ty::F32,
            DType::F64 => Ty::F64,
            d if d.bits() <= 8 => Ty::I8,
            d => match d.bits() {
                16 => Ty::I16,
                32 => Ty::I32,
                _ => Ty::I64,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Ty::I1 => "i1",
            Ty::I8 => "i8",
            Ty::I16 => "i16",
            Ty::I32 => "i32",
            Ty::I64 => "i64",
            Ty::F16 => "f16",
            Ty::BF16 => "bf16",
            Ty::F32 => "f32",
            Ty::F64 => "f64",
            Ty::F16x2 => "f16x2",
            Ty::BF16x2 => "bf16x2",
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Index of a variable (register) in [`Program::vars`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub u32);

#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// A pointer to a global tensor of `dtype` elements.
    Global { name: String, dtype: DType },
    /// A scalar passed by value.
    Scalar { name: String, ty: Ty },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    /// Logical not on i1, bitwise not on integers.
    Not,
    Abs,
    /// Correctly rounded square root (float only).
    Sqrt,
    /// The GPU's hardware approximations (float only; computed through f32): PTX
    /// `ex2.approx` (`Exp` multiplies by log2 e first), `lg2.approx` (`Log` multiplies by
    /// ln 2 after), `rsqrt.approx`, `tanh.approx`, `sin.approx`, `cos.approx`. The CPU
    /// backends compute the exact function, rounded once. The accurate math functions of the
    /// language are sequences of exact operations instead (`lower/math.rs`).
    Exp,
    Exp2,
    Log,
    Log2,
    Rsqrt,
    Tanh,
    Sin,
    Cos,
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 12] = [UnaryOp::Neg, UnaryOp::Not, UnaryOp::Abs, UnaryOp::Sqrt, UnaryOp::Exp, UnaryOp::Exp2, UnaryOp::Log, UnaryOp::Log2, UnaryOp::Rsqrt, UnaryOp::Tanh, UnaryOp::Sin, UnaryOp::Cos];

    /// The name in the text form (`neg`), which the parser reads back.
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }

    /// The operation on a float value, computed in f64 before rounding to the register type
    /// (the CPU backends' meaning: the hardware approximations are the exact functions;
    /// `Not` leaves a float as it is).
    pub fn float_f64(self, x: f64) -> f64 {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Not => x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Exp2 => x.exp2(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Log2 => x.log2(),
            UnaryOp::Rsqrt => 1.0 / x.sqrt(),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    /// Float division (IEEE, round to nearest) or signed integer division truncating to zero.
    Div,
    /// Signed integer remainder (sign of the dividend).
    Rem,
    Min,
    Max,
    /// Bitwise on integers, logical on i1.
    And,
    Or,
    Xor,
    /// Shifts; the amount has the operand's type and is below its bit width.
    Shl,
    /// Logical (zero-filling) right shift.
    LShr,
    /// Arithmetic (sign-filling) right shift.
    AShr,
    /// Unsigned integer division, remainder, minimum and maximum.
    UDiv,
    URem,
    UMin,
    UMax,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 17] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Rem, BinaryOp::Min, BinaryOp::Max, BinaryOp::And, BinaryOp::Or, BinaryOp::Xor, BinaryOp::Shl, BinaryOp::LShr, BinaryOp::AShr, BinaryOp::UDiv, BinaryOp::URem, BinaryOp::UMin, BinaryOp::UMax];

    /// The name in the text form (`add`), which the parser reads back.
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    /// Unsigned integer comparisons.
    ULt,
    ULe,
    UGt,
    UGe,
}

impl CmpOp {
    pub const ALL: [CmpOp; 10] = [CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge, CmpOp::Eq, CmpOp::Ne, CmpOp::ULt, CmpOp::ULe, CmpOp::UGt, CmpOp::UGe];

    /// The name in the text form (`lt`), which the parser reads back.
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Int(Ty, i64),
    Float(Ty, f64),
    Var(Var),
    /// The scalar parameter with this index in [`Program::params`].
    Param(usize),
    /// `threadIdx.x` as i32 (blocks are one-dimensional).
    ThreadIdx,
    /// `blockIdx.{x,y,z}` as i32.
    BlockIdx(u8),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// Signed comparison for integers; for floats ordered comparisons, except `Ne`, which is
    /// IEEE `!=` (true when either operand is NaN); gives i1.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `a * b + c` for floats, fused.
    Fma(Box<Expr>, Box<Expr>, Box<Expr>),
    /// Conversion with the semantics of `cast` (docs/language.md §7; the same as `DType::round`): the source
    /// is read as unsigned when `from_unsigned`, signed otherwise; float→float and int→float
    /// round to nearest even; float→int rounds to nearest even and saturates (NaN → 0);
    /// int→int clamps the source value into the target's range (unsigned when `to_unsigned`),
    /// so widening is an extension and narrowing saturates; anything→i1 is `!= 0`.
    Cast { to: Ty, value: Box<Expr>, from_unsigned: bool, to_unsigned: bool },
    /// Reinterprets the bits of `value` as `to` (same size).
    Bitcast { to: Ty, value: Box<Expr> },
    /// Element `index` (i64) of global tensor parameter `param`, read as `ty`.
    LoadGlobal { param: usize, index: Box<Expr>, ty: Ty },
    /// The `bits` (1..=8) bits starting at bit `bit_index` (i64) of global tensor parameter
    /// `param`'s buffer, counted LSB first from byte 0 (a packed sub-byte element; it may
    /// straddle two bytes, and only the bytes that hold it are read). Gives i32, zero-extended.
    LoadGlobalBits { param: usize, bit_index: Box<Expr>, bits: u32 },
    /// `ty` at byte `offset` (i32) of the shared buffer.
    LoadShared { offset: Box<Expr>, ty: Ty },
    /// The `bits` (1..=8) bits starting at bit `bit_offset` (i32) of the shared buffer, LSB
    /// first from byte 0 (a packed sub-byte element; only the bytes that hold it are read).
    /// Gives i32, zero-extended.
    LoadSharedBits { bit_offset: Box<Expr>, bits: u32 },
    /// PTX `prmt.b32` in its default mode (all operands and the result i32): the eight bytes
    /// `{b, a}` are numbered 0..=7, `a` giving bytes 0..=3 and `b` bytes 4..=7 (least
    /// significant first). Byte `i` of the result is chosen by nibble `i` of `selector` (only
    /// its low 16 bits are used): the nibble's low 3 bits name the source byte; when its bit 3
    /// is set, the result byte is that source byte's sign bit (bit 7) replicated 8 times.
    Prmt { a: Box<Expr>, b: Box<Expr>, selector: Box<Expr> },
    /// PTX `lop3.b32` (all operands and the result i32): any bitwise function of three inputs,
    /// given by its truth table `lut`: result bit k is bit `(a_k << 2) | (b_k << 1) | c_k` of
    /// `lut`. Equivalently, `lut` is the function applied to the constants `a = 0xF0`,
    /// `b = 0xCC`, `c = 0xAA`; so `(a & b) | c` is `0xEA` and `a ^ b ^ c` is `0x96`.
    Lop3 { a: Box<Expr>, b: Box<Expr>, c: Box<Expr>, lut: u8 },
}

impl Expr {
    /// Calls `f` on each direct operand of this expression, in order (not recursively).
    pub fn for_each_operand<'a>(&'a self, mut f: impl FnMut(&'a Expr)) {
        match self {
            Expr::Int(..) | Expr::Float(..) | Expr::Var(_) | Expr::Param(_) | Expr::ThreadIdx | Expr::BlockIdx(_) => {}
            Expr::Unary(_, a) | Expr::Cast { value: a, .. } | Expr::Bitcast { value: a, .. } => f(a),
            Expr::LoadGlobal { index: a, .. } | Expr::LoadGlobalBits { bit_index: a, .. } | Expr::LoadShared { offset: a, .. } | Expr::LoadSharedBits { bit_offset: a, .. } => f(a),
            Expr::Binary(_, a, b) | Expr::Cmp(_, a, b) => {
                f(a);
                f(b);
            }
            Expr::Select(a, b, c) | Expr::Fma(a, b, c) | Expr::Prmt { a, b, selector: c } | Expr::Lop3 { a, b, c, .. } => {
                f(a);
                f(b);
                f(c);
            }
        }
    }
}

impl Stmt {
    /// Calls `f` on each expression this statement evaluates itself, in order: an `If`'s
    /// condition and a `For`'s bounds, not the statements of their bodies.
    pub fn for_each_expr<'a>(&'a self, mut f: impl FnMut(&'a Expr)) {
        match self {
            Stmt::Assign(_, e) | Stmt::AssignUniform(_, e) | Stmt::Check { cond: e, .. } | Stmt::If { cond: e, .. } => f(e),
            Stmt::StoreGlobal { index: a, value: b, .. } | Stmt::AtomicAddGlobal { index: a, value: b, .. } => {
                f(a);
                f(b);
            }
            Stmt::StoreShared { offset: a, value: b } | Stmt::StoreSharedBits { bit_offset: a, value: b, .. } | Stmt::StoreGlobalBits { bit_index: a, value: b, .. } => {
                f(a);
                f(b);
            }
            Stmt::For { start, end, .. } => {
                f(start);
                f(end);
            }
            Stmt::Mma { a, b, .. } => a.iter().chain(b.iter()).for_each(f),
            Stmt::LdMatrix { row_offset: e, .. } | Stmt::LoadGlobalVector { byte_offset: e, .. } | Stmt::LoadSharedVector { offset: e, .. } => f(e),
            Stmt::CopyAsync { offset, byte_index, src_bytes, .. } => {
                f(offset);
                f(byte_index);
                f(src_bytes);
            }
            Stmt::Print { coords, value, .. } => {
                coords.iter().for_each(&mut f);
                f(value);
            }
            Stmt::StoreGlobalVector { byte_offset, values, .. } => {
                f(byte_offset);
                values.iter().for_each(f);
            }
            Stmt::Barrier | Stmt::ShuffleXor { .. } | Stmt::CommitGroup | Stmt::WaitGroup(_) | Stmt::Source { .. } => {}
        }
    }
}

/// The operand type of an `Mma`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmaKind {
    F16,
    BF16,
    /// `m16n8k32.s32.s8.s8.s32`: `a`/`b` hold four s8 per register, `c` is i32 (wrapping).
    S8,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Assign(Var, Expr),
    /// `dst = uniform value`: an assignment of a value the program guarantees to be the same
    /// in every thread of the block (the element of a one-element tile, which every thread
    /// holds), so `dst` may steer barriers and loops. The simulator checks the guarantee; the
    /// GPU assigns.
    AssignUniform(Var, Expr),
    /// Writes `value` (of the parameter's register type) to element `index` (i64).
    StoreGlobal { param: usize, index: Expr, value: Expr },
    /// Adds `value` (of the parameter's register type, one of `ir::ATOMIC_ADD_DTYPES`) to
    /// element `index` (i64) atomically: no other thread's access to the element comes between
    /// its read and its write. Integers wrap; floats round once.
    AtomicAddGlobal { param: usize, index: Expr, value: Expr },
    StoreShared { offset: Expr, value: Expr },
    /// Replaces the `bits` (1..=8) bits at bit `bit_offset` (i32) of the shared buffer with
    /// the low bits of `value` (i32), keeping the other bits of the bytes it touches (as
    /// `StoreGlobalBits`, atomically on the GPU).
    StoreSharedBits { bit_offset: Expr, bits: u32, value: Expr },
    /// Replaces the `bits` (1..=8) bits at bit `bit_index` (i64) of global parameter `param`'s
    /// buffer with the low bits of `value` (i32). Other bits of the bytes it touches are kept,
    /// also when other threads write neighbouring elements of the same bytes at the same time
    /// (the backend uses atomic and/or).
    StoreGlobalBits { param: usize, bit_index: Expr, bits: u32, value: Expr },
    If { cond: Expr, then_body: Vec<Stmt>, else_body: Vec<Stmt> },
    /// `for var in start .. end` over i32, step 1; bounds are evaluated once, block-uniform.
    For { var: Var, start: Expr, end: Expr, body: Vec<Stmt> },
    /// `bar.sync 0`: every thread of the block waits; shared-memory writes become visible.
    Barrier,
    /// Warp-wide `mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32`: in every
    /// warp each lane passes its fragments with the lane maps of the PTX ISA (`groupID` =
    /// lane / 4, `tig` = lane % 4): `a` is four i32, each two 16-bit values (low half first)
    /// of the 16×16 A tile, `b` two i32 of the 16×8 B tile, and `c` four f32 registers of the
    /// 16×8 accumulator, updated in place: C += A·B. Every thread of the block executes it
    /// (never under an `If`).
    Mma { kind: MmaKind, a: [Expr; 4], b: [Expr; 2], c: [Var; 4] },
    /// Warp-wide `ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}.shared.b16`: `dst.len()` (1, 2
    /// or 4) 8×8 matrices of 16-bit elements; lanes 8i..8i+7 give, in `row_offset` (i32 byte
    /// offset into the shared buffer, 16-byte aligned), the rows of matrix i. Lane l receives
    /// in `dst[i]` the elements (row l/4, columns 2·(l%4) and 2·(l%4)+1) of matrix i, or with
    /// `trans` those of its transpose; the lower column goes to the low half. Every thread of
    /// the block executes it (never under an `If`).
    LdMatrix { dst: Vec<Var>, row_offset: Expr, trans: bool },
    /// Warp-wide `shfl.sync.bfly` over all 32 lanes: `dst` of each thread becomes `src` of the
    /// thread whose lane is `lane ^ lane_mask` in the same warp. `src` and `dst` are f32 or
    /// i32. Every thread of the block executes it (never under an `If`).
    ShuffleXor { dst: Var, src: Var, lane_mask: u32 },
    /// `cp.async` of `bytes` (4, 8 or 16) bytes from byte `byte_index` (i64) of global tensor
    /// parameter `param`'s buffer to byte `offset` (i32) of the shared buffer; only the first
    /// `src_bytes` (i32, 0..=bytes) are read, the rest are written as zero. Both addresses are
    /// multiples of `bytes`. The copy joins the thread's group that the next `CommitGroup`
    /// closes and lands when a `WaitGroup` retires it; until then neither byte range may be
    /// touched. When `src_bytes` is 0 nothing is read, but `byte_index` is still a valid address.
    CopyAsync { offset: Expr, param: usize, byte_index: Expr, bytes: u32, src_bytes: Expr },
    /// `cp.async.commit_group`: closes this thread's group of copies started since the last one.
    CommitGroup,
    /// `cp.async.wait_group n`: waits until at most `n` of this thread's committed groups are
    /// unfinished; the copies of the others have landed (visible to this thread; other
    /// threads see them after a `Barrier`).
    WaitGroup(u32),
    /// Prints one line, `block (X, Y, Z): LABEL[C0, C1, ..] = VALUE` (no brackets when
    /// `coords` is empty), with the i32 `coords` in decimal and `value`, which is f64 or i64,
    /// formatted by [`format_print_value`] (C's `%.8e` and `%lld`, or `%llu` when `unsigned`:
    /// the i64 holds a `u64`). The order of lines from different threads is unspecified.
    Print { label: String, coords: Vec<Expr>, value: Expr, unsigned: bool },
    /// The statements that follow, up to the next `Source`, implement the block-IR
    /// instruction `what` written at `span` in the kernel source (for error messages of the
    /// simulator; code generation ignores it).
    Source { span: crate::diagnostics::Span, what: String },
    /// One vector load from global tensor parameter `param`'s buffer: `dst.len()` consecutive
    /// values of `ty` starting at byte `byte_offset` (i64), raw bits into `dst` in order (floats
    /// their encoding, integers their bits; packed sub-byte elements arrive as whole bytes or
    /// words, element k of a word in its bits `[k·n, (k+1)·n)`). The access is
    /// `dst.len() · ty.bytes()` bytes, a power of two from 1 to 16, and `byte_offset` must be a
    /// multiple of it (buffers start 256-byte aligned); `ty` is not `i1`.
    LoadGlobalVector { dst: Vec<Var>, param: usize, byte_offset: Expr, ty: Ty },
    /// One vector load from shared memory: `dst.len()` consecutive values of `ty` starting at
    /// byte `offset` (i32) of the shared buffer, raw bits into `dst` in order, with the size
    /// and alignment rules of `LoadGlobalVector` (the buffer starts 16-byte aligned).
    LoadSharedVector { dst: Vec<Var>, offset: Expr, ty: Ty },
    /// One vector store: `values` (each of type `ty`) to consecutive `ty`-sized slots starting at
    /// byte `byte_offset` (i64) of `param`'s buffer, with the size and alignment rules of
    /// `LoadGlobalVector`. Sub-byte elements are stored as whole bytes or words, so the thread
    /// must own every element they hold.
    StoreGlobalVector { param: usize, byte_offset: Expr, values: Vec<Expr>, ty: Ty },
    /// A condition the program relies on (an i1, evaluated by each thread): when it is false
    /// the launch is in error. The simulator reports `message` at the current source
    /// statement. With `device`, the GPU traps (`llvm.trap`), ending the launch with an error
    /// instead of computing garbage; without, the GPU does not test it (the check costs too
    /// much there, such as integer overflow, and the CPU backends are where kernels are
    /// debugged).
    Check { cond: Expr, message: String, device: bool },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub name: String,
    pub params: Vec<Param>,
    /// Threads per block (x dimension only).
    pub block_threads: u32,
    /// Bytes of the static shared buffer (0 for none).
    pub shared_bytes: usize,
    /// The type of every variable.
    pub vars: Vec<Ty>,
    pub body: Vec<Stmt>,
}

impl Program {
    pub fn new_var(&mut self, ty: Ty) -> Var {
        self.vars.push(ty);
        Var(self.vars.len() as u32 - 1)
    }

    /// The type of an expression.
    pub fn ty(&self, e: &Expr) -> Ty {
        match e {
            Expr::Int(t, _) | Expr::Float(t, _) => *t,
            Expr::Var(v) => self.vars[v.0 as usize],
            Expr::Param(i) => match &self.params[*i] {
                Param::Scalar { ty, .. } => *ty,
                Param::Global { .. } => Ty::I64,
            },
            Expr::ThreadIdx | Expr::BlockIdx(_) => Ty::I32,
            Expr::Unary(_, a) => self.ty(a),
            Expr::Binary(_, a, _) => self.ty(a),
            Expr::Cmp(..) => Ty::I1,
            Expr::Select(_, a, _) => self.ty(a),
            Expr::Fma(a, _, _) => self.ty(a),
            Expr::Cast { to, .. } | Expr::Bitcast { to, .. } => *to,
            Expr::LoadGlobalBits { .. } | Expr::LoadSharedBits { .. } | Expr::Prmt { .. } | Expr::Lop3 { .. } => Ty::I32,
            Expr::LoadGlobal { ty, .. } | Expr::LoadShared { ty, .. } => *ty,
        }
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| match p {
                Param::Global { name, dtype } => format!("{name}: ptr {dtype}"),
                Param::Scalar { name, ty } => format!("{name}: {}", ty.name()),
            })
            .collect();
        writeln!(
            f,
            "lir {}({}) threads({}) shared({}) {{",
            self.name,
            params.join(", "),
            self.block_threads,
            self.shared_bytes
        )?;
        let mut out = String::new();
        for (i, t) in self.vars.iter().enumerate() {
            let _ = writeln!(out, "  reg r{i}: {}", t.name());
        }
        print_stmts(&self.body, 1, &mut out);
        f.write_str(&out)?;
        writeln!(f, "}}")
    }
}

fn print_stmts(body: &[Stmt], depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    for s in body {
        match s {
            Stmt::Assign(v, e) => {
                let _ = writeln!(out, "{pad}r{} = {}", v.0, expr_str(e));
            }
            Stmt::AssignUniform(v, e) => {
                let _ = writeln!(out, "{pad}r{} = uniform {}", v.0, expr_str(e));
            }
            Stmt::StoreGlobal { param, index, value } => {
                let _ = writeln!(out, "{pad}st.global p{param}[{}] = {}", expr_str(index), expr_str(value));
            }
            Stmt::AtomicAddGlobal { param, index, value } => {
                let _ = writeln!(out, "{pad}red.add.global p{param}[{}] += {}", expr_str(index), expr_str(value));
            }
            Stmt::StoreGlobalBits { param, bit_index, bits, value } => {
                let _ = writeln!(out, "{pad}st.global.b{bits} p{param}[bit {}] = {}", expr_str(bit_index), expr_str(value));
            }
            Stmt::StoreShared { offset, value } => {
                let _ = writeln!(out, "{pad}st.shared [{}] = {}", expr_str(offset), expr_str(value));
            }
            Stmt::If { cond, then_body, else_body } => {
                let _ = writeln!(out, "{pad}if {} {{", expr_str(cond));
                print_stmts(then_body, depth + 1, out);
                if !else_body.is_empty() {
                    let _ = writeln!(out, "{pad}}} else {{");
                    print_stmts(else_body, depth + 1, out);
                }
                let _ = writeln!(out, "{pad}}}");
            }
            Stmt::For { var, start, end, body } => {
                let _ = writeln!(out, "{pad}for r{} in {} .. {} {{", var.0, expr_str(start), expr_str(end));
                print_stmts(body, depth + 1, out);
                let _ = writeln!(out, "{pad}}}");
            }
            Stmt::Barrier => {
                let _ = writeln!(out, "{pad}barrier");
            }
            Stmt::Mma { kind, a, b, c } => {
                let list = |v: &[Expr]| v.iter().map(expr_str).collect::<Vec<_>>().join(", ");
                let cs: Vec<String> = c.iter().map(|v| format!("r{}", v.0)).collect();
                let _ = writeln!(
                    out,
                    "{pad}mma.{} {{{}}} += {{{}}} * {{{}}}",
                    match kind {
                        MmaKind::F16 => "m16n8k16.f16",
                        MmaKind::BF16 => "m16n8k16.bf16",
                        MmaKind::S8 => "m16n8k32.s8",
                    },
                    cs.join(", "),
                    list(a),
                    list(b)
                );
            }
            Stmt::LdMatrix { dst, row_offset, trans } => {
                let ds: Vec<String> = dst.iter().map(|v| format!("r{}", v.0)).collect();
                let _ = writeln!(
                    out,
                    "{pad}{{{}}} = ldmatrix.x{}{} [{}]",
                    ds.join(", "),
                    dst.len(),
                    if *trans { ".trans" } else { "" },
                    expr_str(row_offset)
                );
            }
            Stmt::ShuffleXor { dst, src, lane_mask } => {
                let _ = writeln!(out, "{pad}r{} = shfl.bfly r{}, {lane_mask}", dst.0, src.0);
            }
            Stmt::CopyAsync { offset, param, byte_index, bytes, src_bytes } => {
                let _ = writeln!(
                    out,
                    "{pad}cp.async.{bytes} [{}], p{param}[byte {}], src_bytes {}",
                    expr_str(offset),
                    expr_str(byte_index),
                    expr_str(src_bytes)
                );
            }
            Stmt::Print { label, coords, value, unsigned } => {
                let cs: Vec<String> = coords.iter().map(expr_str).collect();
                let kind = if *unsigned { ".u64" } else { "" };
                let _ = writeln!(out, "{pad}print{kind} {label:?} [{}] = {}", cs.join(", "), expr_str(value));
            }
            Stmt::StoreSharedBits { bit_offset, bits, value } => {
                let _ = writeln!(out, "{pad}st.shared.b{bits} [bit {}] = {}", expr_str(bit_offset), expr_str(value));
            }
            Stmt::CommitGroup => {
                let _ = writeln!(out, "{pad}cp.async.commit_group");
            }
            Stmt::WaitGroup(n) => {
                let _ = writeln!(out, "{pad}cp.async.wait_group {n}");
            }
            Stmt::Source { span, what } => {
                let _ = writeln!(out, "{pad}// {}..{}: {what}", span.start, span.end);
            }
            Stmt::Check { cond, message, device } => {
                let name = if *device { "check" } else { "check.cpu" };
                let _ = writeln!(out, "{pad}{name} {} // {message}", expr_str(cond));
            }
            Stmt::LoadGlobalVector { dst, param, byte_offset, ty } => {
                let ds: Vec<String> = dst.iter().map(|v| format!("r{}", v.0)).collect();
                let _ = writeln!(
                    out,
                    "{pad}{{{}}} = ld.global.v{}.{} p{param}[byte {}]",
                    ds.join(", "),
                    dst.len(),
                    ty.name(),
                    expr_str(byte_offset)
                );
            }
            Stmt::LoadSharedVector { dst, offset, ty } => {
                let ds: Vec<String> = dst.iter().map(|v| format!("r{}", v.0)).collect();
                let _ = writeln!(out, "{pad}{{{}}} = ld.shared.v{}.{} [{}]", ds.join(", "), dst.len(), ty.name(), expr_str(offset));
            }
            Stmt::StoreGlobalVector { param, byte_offset, values, ty } => {
                let vs: Vec<String> = values.iter().map(expr_str).collect();
                let _ = writeln!(
                    out,
                    "{pad}st.global.v{}.{} p{param}[byte {}] = {{{}}}",
                    values.len(),
                    ty.name(),
                    expr_str(byte_offset),
                    vs.join(", ")
                );
            }
        }
    }
}

/// The text form of an expression.
pub fn expr_str(e: &Expr) -> String {
    match e {
        Expr::Int(t, v) => format!("{v}:{}", t.name()),
        Expr::Float(t, v) => format!("{v:?}:{}", t.name()),
        Expr::Var(v) => format!("r{}", v.0),
        Expr::Param(i) => format!("p{i}"),
        Expr::ThreadIdx => "tid".into(),
        Expr::BlockIdx(a) => format!("ctaid.{}", ["x", "y", "z"][(*a as usize).min(2)]),
        Expr::Unary(op, a) => format!("{}({})", op.name(), expr_str(a)),
        Expr::Binary(op, a, b) => {
            format!("{}({}, {})", op.name(), expr_str(a), expr_str(b))
        }
        Expr::Cmp(op, a, b) => {
            format!("{}({}, {})", op.name(), expr_str(a), expr_str(b))
        }
        Expr::Select(c, a, b) => format!("select({}, {}, {})", expr_str(c), expr_str(a), expr_str(b)),
        Expr::Fma(a, b, c) => format!("fma({}, {}, {})", expr_str(a), expr_str(b), expr_str(c)),
        Expr::Cast { to, value, from_unsigned, to_unsigned } => format!(
            "cast.{}{}{}({})",
            to.name(),
            if *from_unsigned { ".from_u" } else { "" },
            if *to_unsigned { ".to_u" } else { "" },
            expr_str(value)
        ),
        Expr::LoadGlobal { param, index, ty } => {
            format!("ld.global.{} p{param}[{}]", ty.name(), expr_str(index))
        }
        Expr::Bitcast { to, value } => format!("bitcast.{}({})", to.name(), expr_str(value)),
        Expr::LoadGlobalBits { param, bit_index, bits } => {
            format!("ld.global.b{bits} p{param}[bit {}]", expr_str(bit_index))
        }
        Expr::LoadShared { offset, ty } => format!("ld.shared.{} [{}]", ty.name(), expr_str(offset)),
        Expr::LoadSharedBits { bit_offset, bits } => format!("ld.shared.b{bits} [bit {}]", expr_str(bit_offset)),
        Expr::Prmt { a, b, selector } => format!("prmt({}, {}, {})", expr_str(a), expr_str(b), expr_str(selector)),
        Expr::Lop3 { a, b, c, lut } => format!("lop3.{lut:#04x}({}, {}, {})", expr_str(a), expr_str(b), expr_str(c)),
    }
}

/// A printed value as `Stmt::Print` shows it: floats like C's `printf("%.8e")` (nine
/// significant digits, enough to tell any two f32 apart; `inf`, `-inf`, `nan` for every NaN,
/// where the GPU's `printf` may write `-nan`), integers in
/// decimal. Every backend prints the same text for the same value.
pub fn format_print_value(value: PrintValue) -> String {
    match value {
        PrintValue::Int(i) => i.to_string(),
        // A NaN's sign is not part of any format's semantics (the VM does not keep it).
        PrintValue::Float(x) if x.is_nan() => "nan".into(),
        PrintValue::Float(x) if x.is_infinite() => if x < 0.0 { "-inf".into() } else { "inf".into() },
        PrintValue::Float(x) => {
            let text = format!("{x:.8e}");
            let (mantissa, exponent) = text.split_once('e').expect("exponent form");
            let exponent: i32 = exponent.parse().expect("an integer exponent");
            let sign = if exponent < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{:02}", exponent.abs())
        }
    }
}

/// A value for [`format_print_value`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PrintValue {
    /// An integer, exactly (`u64` values beyond `i64::MAX` included).
    Int(i128),
    Float(f64),
}

/// The line a `Stmt::Print` (and the VM's `print`) produces, without the newline.
pub fn format_print_line(block: [u32; 3], label: &str, coords: &[i64], value: PrintValue) -> String {
    let index = if coords.is_empty() {
        String::new()
    } else {
        format!("[{}]", coords.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "))
    };
    format!("block ({}, {}, {}): {label}{index} = {}", block[0], block[1], block[2], format_print_value(value))
}
