//! The abstract syntax tree of a `.tl` file. Every node carries the span of the source it came
//! from, so that sema can point at the exact text of a problem.

use crate::diagnostics::Span;
use crate::dtype::DType;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Kernel(Kernel),
    /// `layout NAME = LAYOUT;` at the top level: usable by every kernel of the file.
    Layout(LayoutDef),
    Reference(Reference),
}

/// `kernel name<CONST = default, ...>(params) grid(x, y, z) warps(n) { body }`
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: Ident,
    pub const_params: Vec<ConstParam>,
    pub params: Vec<Param>,
    pub grid: Vec<Expr>,
    pub grid_span: Span,
    pub warps: Expr,
    pub body: Block,
    pub span: Span,
}

/// A compile-time parameter with its default value: an integer (`BM = 16`) or a dtype
/// (`W: dtype = u4`).
#[derive(Clone, Debug, PartialEq)]
pub struct ConstParam {
    pub name: Ident,
    pub default: ConstDefault,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConstDefault {
    Int(Expr),
    /// `NAME: kind = dtype`; `kind` must be the word `dtype` (sema checks it).
    DType { kind: Ident, default: DTypeRef },
}

/// A dtype written in the source: a dtype name, or the name of a dtype parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum DTypeRef {
    Known(DType, Span),
    Named(Ident),
}

impl DTypeRef {
    pub fn span(&self) -> Span {
        match self {
            DTypeRef::Known(_, span) => *span,
            DTypeRef::Named(ident) => ident.span,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub ty: TypeExpr,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TypeExpr {
    /// A runtime scalar: `n: i32`.
    Scalar { dtype: DTypeRef, span: Span },
    /// A tensor in global memory: `a: global mut f16[m, k]`.
    Global { dtype: DTypeRef, shape: Vec<Expr>, mutable: bool, span: Span },
}

impl TypeExpr {
    pub fn span(&self) -> Span {
        match self {
            TypeExpr::Scalar { span, .. } | TypeExpr::Global { span, .. } => *span,
        }
    }
}

/// `reference kernel_name { out = expr; ... }`: the whole-tensor host reference of a kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    pub kernel: Ident,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

/// `layout NAME = LAYOUT;`
#[derive(Clone, Debug, PartialEq)]
pub struct LayoutDef {
    pub name: Ident,
    pub value: LayoutExpr,
    pub span: Span,
}

/// A register layout written in the source: `local(2, 1) * spatial(8, 4) * NAME`.
#[derive(Clone, Debug, PartialEq)]
pub enum LayoutExpr {
    /// A constructor (`local`, `spatial`, `column_local`, `column_spatial`, `replicate`) with
    /// compile-time integer arguments.
    Call { func: Ident, args: Vec<Expr>, span: Span },
    /// A named layout.
    Named(Ident),
    /// The product `outer * inner`.
    Product(Box<LayoutExpr>, Box<LayoutExpr>, Span),
}

impl LayoutExpr {
    pub fn span(&self) -> Span {
        match self {
            LayoutExpr::Call { span, .. } | LayoutExpr::Product(_, _, span) => *span,
            LayoutExpr::Named(name) => name.span,
        }
    }
}

/// `reg DTYPE[d0, ...] @ LAYOUT` on a `let`: the tile's type, and optionally its layout.
#[derive(Clone, Debug, PartialEq)]
pub struct TileAnnotation {
    pub dtype: DTypeRef,
    pub shape: Vec<Expr>,
    pub layout: Option<LayoutExpr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    Let { name: Ident, annotation: Option<TileAnnotation>, value: Expr },
    /// `layout NAME = LAYOUT;` inside a kernel (it may use compile-time parameters).
    Layout(LayoutDef),
    Assign { name: Ident, value: Expr },
    For { var: Ident, start: Expr, end: Expr, body: Block },
    If { cond: Expr, then_block: Block, else_block: Option<Block> },
    Expr(Expr),
    /// A statement the parser could not read; its error was already reported.
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    /// `&&`, `||`: logical, on bools.
    And,
    Or,
    /// `&`, `|`, `^`: bitwise on integers (on bools: logical, both sides evaluated).
    BitAnd,
    BitOr,
    BitXor,
    /// `<<`, `>>` (arithmetic on signed integers, logical on unsigned).
    Shl,
    Shr,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "&&",
            BinOp::Or => "||",
            BinOp::BitAnd => "&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne)
    }

    /// `& | ^ << >>`: on integers only, on the dtype's own bits.
    pub fn is_bit_operation(self) -> bool {
        matches!(self, BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor | BinOp::Shl | BinOp::Shr)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    /// `!`: logical not of a bool.
    Not,
    /// `~`: the complement of an integer's bits.
    BitNot,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// `Some` for a named argument such as `dim = 1`.
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Name(String),
    /// `block.x`
    Field(Box<Expr>, Ident),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `name(args)` or `name<dtype>(args)`.
    Call { callee: Ident, dtype: Option<DTypeRef>, args: Vec<Arg> },
    /// `[a, b, c]`: offsets and shapes.
    List(Vec<Expr>),
    /// An expression the parser could not read; its error was already reported.
    Error,
}

/// Builds a binary expression spanning `l..r` (used by the grammar's actions).
pub fn binary(op: BinOp, a: Expr, b: Expr, l: usize, r: usize) -> Expr {
    Expr { kind: ExprKind::Binary(op, Box::new(a), Box::new(b)), span: Span::new(l, r) }
}
