//! Semantic analysis: AST → block IR.
//!
//! Expects a parsed file (possibly with `Error` nodes, which are skipped silently because the
//! parser already reported them). Guarantees, when it returns `Ok`: names resolve, dtypes agree
//! (no implicit conversions except untyped literals taking the dtype of the other operand),
//! shapes agree (equal-rank broadcasting of extent-1 dims and of scalars is explicit in the IR),
//! compile-time parameters are folded into constants, and the kernel passes `ir::verify`.
//! Every problem becomes a `Diagnostic` at the span of the offending text; analysis continues
//! after an error so that one run reports as many independent errors as it can.

use crate::builtins;
use crate::ir::ATOMIC_ADD_DTYPES;
use crate::diagnostics::{Diagnostic, Span};
use crate::dtype::DType;
use crate::number::Number;
use crate::ir::{
    self, BinaryOp, Kernel, Op, ParamId, ParamKind, ReduceOp, Stmt, SymExpr, Type, UnaryOp, ValueId, VarId,
};
use crate::syntax::ast::{self, BinOp, ExprKind, StmtKind, UnOp};
use std::collections::{HashMap, HashSet};

/// Largest tile (elements) a single register tensor may have.
pub const MAX_TILE_ELEMENTS: usize = 1 << 16;

/// Warps per block allowed by `warps(n)`.
pub const MAX_WARPS: i64 = 32;
/// Static shared memory a kernel may declare (the limit without opting in to more).
pub use crate::ir::plan::MAX_SHARED_BYTES;

/// Finds a kernel by name (or the only/first one when `name` is `None`).
pub fn find_kernel<'f>(file: &'f ast::File, name: Option<&str>) -> Result<&'f ast::Kernel, Diagnostic> {
    let kernels: Vec<&ast::Kernel> = file
        .items
        .iter()
        .filter_map(|i| if let ast::Item::Kernel(k) = i { Some(k) } else { None })
        .collect();
    match name {
        Some(n) => kernels.into_iter().find(|k| k.name.name == n).ok_or_else(|| {
            Diagnostic::error_nowhere(format!("no kernel named `{n}` in this file"))
        }),
        None => kernels
            .first()
            .copied()
            .ok_or_else(|| Diagnostic::error_nowhere("this file defines no kernel")),
    }
}

/// Checks every kernel of a file with its default compile-time parameters, and every
/// `reference` against the kernel it names (`check_reference`).
pub fn check_file(file: &ast::File) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for item in &file.items {
        match item {
            ast::Item::Kernel(k) => {
                if let Some(prev) = seen.insert(&k.name.name, k.name.span) {
                    diags.push(
                        Diagnostic::error(format!("kernel `{}` is defined twice", k.name.name), k.name.span)
                            .with_label(prev, "first defined here"),
                    );
                }
                if let Err(mut e) = lower_kernel_in(file, k, &[]) {
                    diags.append(&mut e);
                }
            }
            ast::Item::Layout(def) => {
                let first = file.items.iter().find_map(|i| match i {
                    ast::Item::Layout(d) if d.name.name == def.name.name => Some(d.name.span),
                    _ => None,
                });
                if let Some(first) = first.filter(|s| *s != def.name.span) {
                    diags.push(
                        Diagnostic::error(format!("layout `{}` is defined twice", def.name.name), def.name.span)
                            .with_label(first, "first defined here"),
                    );
                }
            }
            ast::Item::Reference(r) => {
                let kernel = file.items.iter().find_map(|i| match i {
                    ast::Item::Kernel(k) if k.name.name == r.kernel.name => Some(k),
                    _ => None,
                });
                match kernel {
                    Some(k) => diags.extend(crate::check_reference::check_reference(r, k)),
                    None => diags.push(Diagnostic::error(
                        format!("`reference` names `{}`, which is not a kernel of this file", r.kernel.name),
                        r.kernel.span,
                    )),
                }
            }
        }
    }
    diags
}

/// Lowers one kernel of `file` to block IR: as [`lower_kernel`], with the file's top-level
/// `layout` definitions in scope.
pub fn lower_kernel_in(file: &ast::File, kernel: &ast::Kernel, overrides: &[(String, ir::ConstValue)]) -> Result<Kernel, Vec<Diagnostic>> {
    let layouts: Vec<ast::LayoutDef> = file
        .items
        .iter()
        .filter_map(|i| if let ast::Item::Layout(d) = i { Some(d.clone()) } else { None })
        .collect();
    lower_kernel_with_layouts(kernel, &layouts, overrides)
}

/// Lowers one kernel to block IR, with `overrides` replacing compile-time parameter defaults.
pub fn lower_kernel(kernel: &ast::Kernel, overrides: &[(String, ir::ConstValue)]) -> Result<Kernel, Vec<Diagnostic>> {
    lower_kernel_with_layouts(kernel, &[], overrides)
}

fn lower_kernel_with_layouts(
    kernel: &ast::Kernel,
    layouts: &[ast::LayoutDef],
    overrides: &[(String, ir::ConstValue)],
) -> Result<Kernel, Vec<Diagnostic>> {
    let mut cx = Sema {
        k: Kernel {
            name: kernel.name.name.clone(),
            const_params: Vec::new(),
            dtype_params: Vec::new(),
            params: Vec::new(),
            grid: [SymExpr::Const(1), SymExpr::Const(1), SymExpr::Const(1)],
            warps: 1,
            shared_bytes: None,
            values: Vec::new(),
            vars: Vec::new(),
            body: Vec::new(),
        },
        scopes: vec![HashMap::new()],
        diags: Vec::new(),
        assigned: HashSet::new(),
        kernel_scope_depth: 0,
        shared_bytes: 0,
        statement_call: false,
    };
    // Top-level layouts are expanded where they are used, so they may name the kernel's
    // compile-time parameters.
    for def in layouts {
        cx.bind(&def.name, Binding::Layout(def.value.clone()));
    }
    cx.kernel(kernel, overrides);
    if cx.diags.is_empty() {
        if let Err(errors) = ir::verify::verify(&cx.k, false) {
            // A verifier failure after clean sema is a compiler bug; report it, never panic.
            return Err(vec![Diagnostic::error(
                format!("internal compiler error: the IR of this kernel is invalid: {}", errors.join("; ")),
                kernel.name.span,
            )]);
        }
        Ok(cx.k)
    } else {
        Err(cx.diags)
    }
}

#[derive(Clone, Debug)]
enum Binding {
    Const(i64),
    /// A named layout (expanded where it is used).
    Layout(ast::LayoutExpr),
    /// A compile-time dtype parameter.
    DType(DType),
    ScalarParam(ParamId),
    TensorParam(ParamId),
    Value(ValueId),
    Var(VarId),
    /// A name whose definition had an error (already reported): uses stay silent.
    Poisoned,
}

/// The result of analysing an expression.
#[derive(Clone, Debug)]
enum Operand {
    /// A compile-time integer, not yet given a dtype.
    Int(i64),
    /// A float literal, not yet given a dtype.
    Float(f64),
    Bool(bool),
    Value(ValueId),
    Tensor(ParamId),
    /// A shared tensor (a value of `Type::Shared`): only `load`, `store` and `copy_async` take it.
    Shared(ValueId),
    List(Vec<(Operand, Span)>),
    /// Already reported.
    Error,
}

struct Sema {
    k: Kernel,
    scopes: Vec<HashMap<String, Binding>>,
    diags: Vec<Diagnostic>,
    /// Names that some statement assigns to: their `let`s become variables.
    assigned: HashSet<String>,
    /// The scope depth of the kernel body's top level (shared tensors are allocated only there).
    kernel_scope_depth: usize,
    /// Bytes of shared memory the kernel's shared tensors need so far.
    shared_bytes: usize,
    /// Set while analysing the call that an expression statement consists of: only there may
    /// a call that produces no value appear.
    statement_call: bool,
}

fn collect_assigned(stmts: &[ast::Stmt], out: &mut HashSet<String>) {
    for s in stmts {
        match &s.kind {
            StmtKind::Assign { name, .. } => {
                out.insert(name.name.clone());
            }
            StmtKind::For { body, .. } => collect_assigned(&body.stmts, out),
            StmtKind::If { then_block, else_block, .. } => {
                collect_assigned(&then_block.stmts, out);
                if let Some(b) = else_block {
                    collect_assigned(&b.stmts, out);
                }
            }
            _ => {}
        }
    }
}

impl Sema {
    fn error(&mut self, message: impl Into<String>, span: Span) {
        self.diags.push(Diagnostic::error(message, span));
    }

    fn lookup(&self, name: &str) -> Option<&Binding> {
        self.scopes.iter().rev().find_map(|s| s.get(name))
    }

    fn bind(&mut self, name: &ast::Ident, b: Binding) {
        self.scopes.last_mut().expect("scope").insert(name.name.clone(), b);
    }

    fn emit(&mut self, body: &mut Vec<Stmt>, ty: Type, op: Op, span: Span) -> ValueId {
        let id = self.k.add_value(ty, op, span);
        body.push(Stmt::Eval(id));
        id
    }

    fn ty(&self, v: ValueId) -> &Type {
        &self.k.value(v).ty
    }

    // ----- the kernel signature -------------------------------------------------------------

    /// Checks `let name: reg DTYPE[shape] @ LAYOUT = value`: the value must be a tile of that
    /// dtype and shape; returns the evaluated layout, if one is written.
    fn check_annotation(&mut self, a: &ast::TileAnnotation, v: ValueId) -> Result<Option<ir::LayoutAnnotation>, ()> {
        let dtype = self.resolve_dtype(&a.dtype).ok_or(())?;
        let mut shape = Vec::new();
        for d in &a.shape {
            match self.const_int(d) {
                Some(x) if x > 0 => shape.push(x as usize),
                Some(x) => {
                    self.error(format!("a tile extent must be positive, not {x}"), d.span);
                    return Err(());
                }
                None => return Err(()),
            }
        }
        let want = Type::Tensor { dtype, shape: shape.clone() };
        let have = self.ty(v).clone();
        if have != want {
            self.diags.push(
                Diagnostic::error(format!("the annotation says {}, but the value is {}", crate::ir::print::type_str(&want), crate::ir::print::type_str(&have)), a.span)
                    .with_label(self.k.value(v).span, "the value is computed here"),
            );
            return Err(());
        }
        let Some(layout) = &a.layout else { return Ok(None) };
        let layout = self.layout_annotation(layout).ok_or(())?;
        // The layout must cover the tile exactly.
        let mut covered = vec![1usize; shape.len()];
        for (func, args) in &layout.factors {
            if *func == ir::LayoutFunc::Replicate {
                continue;
            }
            if args.len() != shape.len() {
                self.error(
                    format!("`{}` has {} extents but the tile has rank {}", func.name(), args.len(), shape.len()),
                    layout.span,
                );
                return Err(());
            }
            for (c, x) in covered.iter_mut().zip(args) {
                *c *= x;
            }
        }
        if covered != shape {
            self.error(format!("the layout `{layout}` covers a {covered:?} tile, not {shape:?}"), layout.span);
            return Err(());
        }
        Ok(Some(layout))
    }

    /// Records a user layout on a value; a different layout already required there is a
    /// conflict reported at both places.
    fn annotate_value(&mut self, v: ValueId, layout: ir::LayoutAnnotation) {
        match self.k.values[v.index()].annotation.clone() {
            Some(prev) if prev.factors != layout.factors => {
                self.diags.push(
                    Diagnostic::error(format!("conflicting layouts for one tile: `{layout}` here"), layout.span)
                        .with_label(prev.span, format!("and `{prev}` here")),
                );
            }
            _ => self.k.values[v.index()].annotation = Some(layout),
        }
    }

    /// Evaluates a layout expression: constructors with compile-time integer arguments,
    /// named layouts and products.
    fn layout_annotation(&mut self, e: &ast::LayoutExpr) -> Option<ir::LayoutAnnotation> {
        let mut factors = Vec::new();
        self.layout_factors(e, &mut factors, 0)?;
        Some(ir::LayoutAnnotation { factors, span: e.span() })
    }

    fn layout_factors(&mut self, e: &ast::LayoutExpr, out: &mut Vec<(ir::LayoutFunc, Vec<usize>)>, depth: usize) -> Option<()> {
        if depth > 32 {
            self.error("named layouts refer to each other too deeply (is one defined through itself?)", e.span());
            return None;
        }
        match e {
            ast::LayoutExpr::Product(a, b, _) => {
                self.layout_factors(a, out, depth)?;
                self.layout_factors(b, out, depth)
            }
            ast::LayoutExpr::Named(name) => match self.lookup(&name.name).cloned() {
                Some(Binding::Layout(def)) => self.layout_factors(&def, out, depth + 1),
                Some(_) => {
                    self.error(format!("`{}` is not a layout", name.name), name.span);
                    None
                }
                None => {
                    self.error(format!("unknown layout `{}`", name.name), name.span);
                    None
                }
            },
            ast::LayoutExpr::Call { func, args, span } => {
                let Some(f) = ir::LayoutFunc::from_name(&func.name) else {
                    self.error(
                        format!("unknown layout constructor `{}` (local, spatial, column_local, column_spatial, replicate)", func.name),
                        func.span,
                    );
                    return None;
                };
                if args.is_empty() || (f == ir::LayoutFunc::Replicate && args.len() != 1) {
                    self.error(format!("`{}` takes {}", f.name(), if f == ir::LayoutFunc::Replicate { "one count" } else { "one extent per dimension" }), *span);
                    return None;
                }
                let mut values = Vec::new();
                for a in args {
                    match self.const_int(a) {
                        Some(x) if (1..=1 << 20).contains(&x) => values.push(x as usize),
                        Some(x) => {
                            self.error(format!("a layout extent must be between 1 and 2^20, not {x}"), a.span);
                            return None;
                        }
                        None => return None,
                    }
                }
                out.push((f, values));
                Some(())
            }
        }
    }

    /// The dtype a source dtype stands for; a name must be a dtype parameter.
    fn resolve_dtype(&mut self, d: &ast::DTypeRef) -> Option<DType> {
        match d {
            ast::DTypeRef::Known(d, _) => Some(*d),
            ast::DTypeRef::Named(name) => match self.lookup(&name.name) {
                Some(Binding::DType(d)) => Some(*d),
                Some(Binding::Poisoned) => None,
                Some(_) => {
                    self.error(format!("`{}` is not a dtype", name.name), name.span);
                    None
                }
                None => {
                    self.error(format!("unknown dtype `{}`", name.name), name.span);
                    None
                }
            },
        }
    }

    fn kernel(&mut self, kernel: &ast::Kernel, overrides: &[(String, ir::ConstValue)]) {
        for (name, _) in overrides {
            if !kernel.const_params.iter().any(|c| &c.name.name == name) {
                let known: Vec<&str> = kernel.const_params.iter().map(|c| c.name.name.as_str()).collect();
                self.diags.push(
                    Diagnostic::error_nowhere(format!(
                        "kernel `{}` has no compile-time parameter `{name}`",
                        kernel.name.name
                    ))
                    .with_note(format!("its compile-time parameters are: {}", if known.is_empty() { "none".into() } else { known.join(", ") })),
                );
            }
        }
        for cp in &kernel.const_params {
            if self.lookup(&cp.name.name).is_some() {
                self.error(format!("`{}` is declared twice", cp.name.name), cp.name.span);
                continue;
            }
            let given = overrides.iter().find(|(n, _)| *n == cp.name.name).map(|(_, v)| *v);
            match &cp.default {
                ast::ConstDefault::Int(default) => {
                    let value = match given {
                        Some(ir::ConstValue::Int(v)) => Some(v),
                        Some(ir::ConstValue::DType(d)) => {
                            self.diags.push(Diagnostic::error_nowhere(format!(
                                "compile-time parameter `{}` is an integer, but the override gives the dtype {d}",
                                cp.name.name
                            )));
                            None
                        }
                        None => self.const_int(default),
                    };
                    if let Some(v) = value {
                        self.k.const_params.push((cp.name.name.clone(), v));
                        self.bind(&cp.name, Binding::Const(v));
                    } else {
                        self.bind(&cp.name, Binding::Poisoned);
                    }
                }
                ast::ConstDefault::DType { kind, default } => {
                    if kind.name != "dtype" {
                        self.error(format!("unknown kind of compile-time parameter `{}` (write `{}: dtype = u4`)", kind.name, cp.name.name), kind.span);
                    }
                    let value = match given {
                        Some(ir::ConstValue::DType(d)) => Some(d),
                        Some(ir::ConstValue::Int(v)) => {
                            self.diags.push(Diagnostic::error_nowhere(format!(
                                "compile-time parameter `{}` is a dtype, but the override gives the integer {v}",
                                cp.name.name
                            )));
                            None
                        }
                        None => self.resolve_dtype(default),
                    };
                    if let Some(d) = value {
                        self.k.dtype_params.push((cp.name.name.clone(), d));
                        self.bind(&cp.name, Binding::DType(d));
                    } else {
                        self.bind(&cp.name, Binding::Poisoned);
                    }
                }
            }
        }
        let mut declared: HashMap<&str, Span> = HashMap::new();
        for p in &kernel.params {
            if let Some(prev) = declared.insert(&p.name.name, p.name.span) {
                self.diags.push(
                    Diagnostic::error(format!("parameter `{}` is declared twice", p.name.name), p.name.span)
                        .with_label(prev, "first declared here"),
                );
            } else if self.lookup(&p.name.name).is_some() {
                self.error(
                    format!("parameter `{}` has the name of a compile-time parameter", p.name.name),
                    p.name.span,
                );
            }
        }
        // Bind every parameter before reading tensor shapes, so that a shape may name a scalar
        // declared after the tensor.
        for (i, p) in kernel.params.iter().enumerate() {
            let kind = match &p.ty {
                ast::TypeExpr::Scalar { dtype, .. } => {
                    self.bind(&p.name, Binding::ScalarParam(ParamId(i as u32)));
                    let dtype = self.resolve_dtype(dtype).unwrap_or(DType::I32);
                    if dtype.is_low_precision() {
                        self.error(format!("a runtime scalar cannot be {dtype} (use an 8-bit or wider type)"), p.ty.span());
                    }
                    ParamKind::Scalar(dtype)
                }
                ast::TypeExpr::Global { dtype, mutable, .. } => {
                    self.bind(&p.name, Binding::TensorParam(ParamId(i as u32)));
                    let dtype = self.resolve_dtype(dtype).unwrap_or(DType::F32);
                    ParamKind::Global { dtype, shape: Vec::new(), mutable: *mutable }
                }
            };
            self.k.params.push(ir::Param { name: p.name.name.clone(), kind, span: p.name.span });
        }
        for (i, p) in kernel.params.iter().enumerate() {
            if let ast::TypeExpr::Global { shape, span, .. } = &p.ty {
                if shape.is_empty() {
                    self.error("a global tensor needs at least one dimension", *span);
                }
                let dims: Vec<SymExpr> = shape.iter().filter_map(|d| self.sym_expr(d)).collect();
                if let ParamKind::Global { shape, .. } = &mut self.k.params[i].kind {
                    *shape = dims;
                }
            }
        }
        if kernel.grid.is_empty() || kernel.grid.len() > 3 {
            self.error("`grid` takes one to three extents", kernel.grid_span);
        }
        for (axis, g) in kernel.grid.iter().take(3).enumerate() {
            if let Some(e) = self.sym_expr(g) {
                self.k.grid[axis] = e;
            }
        }
        if let Some(w) = self.const_int(&kernel.warps) {
            if !(1..=MAX_WARPS).contains(&w) {
                self.error(format!("`warps` must be between 1 and {MAX_WARPS}, not {w}"), kernel.warps.span);
            } else {
                self.k.warps = w as u32;
            }
        }
        collect_assigned(&kernel.body.stmts, &mut self.assigned);
        self.kernel_scope_depth = self.scopes.len();
        let mut body = Vec::new();
        self.block(&kernel.body.stmts, &mut body);
        self.k.body = body;
    }

    /// A compile-time integer expression (compile-time parameters and literals only).
    fn const_int(&mut self, e: &ast::Expr) -> Option<i64> {
        let mut scratch = Vec::new();
        match self.expr(e, &mut scratch) {
            Operand::Int(v) => Some(v),
            Operand::Error => None,
            _ => {
                self.error("expected a compile-time integer (literals and compile-time parameters)", e.span);
                None
            }
        }
    }

    /// A shape or grid expression over runtime integer scalars and compile-time integers.
    fn sym_expr(&mut self, e: &ast::Expr) -> Option<SymExpr> {
        let bin = |s: &mut Self, a: &ast::Expr, b: &ast::Expr| Some((Box::new(s.sym_expr(a)?), Box::new(s.sym_expr(b)?)));
        match &e.kind {
            ExprKind::Int(v) => Some(SymExpr::Const(*v)),
            ExprKind::Name(n) => match self.lookup(n).cloned() {
                Some(Binding::Const(v)) => Some(SymExpr::Const(v)),
                Some(Binding::ScalarParam(i)) => match &self.k.param(i).kind {
                    ParamKind::Scalar(d) if d.is_int() => Some(SymExpr::Param(i)),
                    _ => {
                        self.error(format!("`{n}` is not an integer scalar, so it cannot size a shape or grid"), e.span);
                        None
                    }
                },
                Some(_) => {
                    self.error(format!("`{n}` cannot appear in a shape or grid expression"), e.span);
                    None
                }
                None => {
                    self.error(format!("unknown name `{n}`"), e.span);
                    None
                }
            },
            ExprKind::Binary(op, a, b) => {
                let (x, y) = bin(self, a, b)?;
                Some(match op {
                    BinOp::Add => SymExpr::Add(x, y),
                    BinOp::Sub => SymExpr::Sub(x, y),
                    BinOp::Mul => SymExpr::Mul(x, y),
                    BinOp::Div => SymExpr::Div(x, y),
                    BinOp::Rem => SymExpr::Rem(x, y),
                    _ => {
                        self.error(format!("`{}` cannot appear in a shape or grid expression", op.symbol()), e.span);
                        return None;
                    }
                })
            }
            ExprKind::Call { callee, dtype: Some(d), args } if callee.name == "bits" && args.is_empty() => {
                Some(SymExpr::Const(i64::from(self.resolve_dtype(d)?.bits())))
            }
            ExprKind::Call { callee, dtype: None, args } if ["cdiv", "min", "max"].contains(&callee.name.as_str()) && args.len() == 2 && args.iter().all(|a| a.name.is_none()) => {
                let (x, y) = bin(self, &args[0].value, &args[1].value)?;
                Some(match callee.name.as_str() {
                    "cdiv" => SymExpr::CeilDiv(x, y),
                    "min" => SymExpr::Min(x, y),
                    _ => SymExpr::Max(x, y),
                })
            }
            ExprKind::Call { callee, dtype: None, args } if callee.name == "clamp" && args.len() == 3 && args.iter().all(|a| a.name.is_none()) => {
                let (x, lo) = bin(self, &args[0].value, &args[1].value)?;
                Some(SymExpr::Min(Box::new(SymExpr::Max(x, lo)), Box::new(self.sym_expr(&args[2].value)?)))
            }
            ExprKind::Error => None,
            _ => {
                self.error("expected an integer expression of scalar parameters and compile-time values", e.span);
                None
            }
        }
    }

    // ----- statements -----------------------------------------------------------------------

    fn block(&mut self, stmts: &[ast::Stmt], body: &mut Vec<Stmt>) {
        for s in stmts {
            self.stmt(s, body);
        }
    }

    fn stmt(&mut self, s: &ast::Stmt, body: &mut Vec<Stmt>) {
        match &s.kind {
            StmtKind::Error => {}
            StmtKind::Layout(def) => {
                if self.lookup(&def.name.name).is_some_and(|b| !matches!(b, Binding::Layout(_))) {
                    self.error(format!("`{}` is already defined", def.name.name), def.name.span);
                    return;
                }
                // Check it now (errors are reported where it is defined), expand it at each use.
                self.layout_annotation(&def.value);
                self.bind(&def.name, Binding::Layout(def.value.clone()));
            }
            StmtKind::Let { name, annotation, value } => {
                let op = self.expr(value, body);
                if name.name == "block" {
                    self.error("`block` is reserved for the block index", name.span);
                    return;
                }
                let binding = match op {
                    Operand::Error => Binding::Poisoned,
                    Operand::Shared(v) => {
                        if annotation.is_some() {
                            self.error("a shared tensor has no register layout to annotate", name.span);
                            Binding::Poisoned
                        } else if self.assigned.contains(&name.name) {
                            self.error(format!("`{}` names a shared tensor, which cannot be reassigned", name.name), name.span);
                            Binding::Poisoned
                        } else {
                            Binding::Value(v)
                        }
                    }
                    Operand::Int(v) if !self.assigned.contains(&name.name) && annotation.is_none() => Binding::Const(v),
                    other => {
                        let Some(v) = self.materialize_default(other, value.span, body) else {
                            self.bind(name, Binding::Poisoned);
                            return;
                        };
                        let layout = match annotation {
                            Some(a) => match self.check_annotation(a, v) {
                                Ok(layout) => layout,
                                Err(()) => {
                                    self.bind(name, Binding::Poisoned);
                                    return;
                                }
                            },
                            None => None,
                        };
                        if self.assigned.contains(&name.name) {
                            let ty = self.ty(v).clone();
                            self.k.vars.push(ir::VarData { name: name.name.clone(), ty, layout: None, annotation: layout, span: name.span });
                            let var = VarId(self.k.vars.len() as u32 - 1);
                            body.push(Stmt::Assign(var, v));
                            Binding::Var(var)
                        } else {
                            if let Some(layout) = layout {
                                self.annotate_value(v, layout);
                            }
                            Binding::Value(v)
                        }
                    }
                };
                self.bind(name, binding);
            }
            StmtKind::Assign { name, value } => {
                let op = self.expr(value, body);
                match self.lookup(&name.name).cloned() {
                    Some(Binding::Var(var)) => {
                        let want = self.k.var(var).ty.clone();
                        if let Some(v) = self.coerce_to(op, &want, value.span, body) {
                            body.push(Stmt::Assign(var, v));
                        }
                    }
                    Some(Binding::Poisoned) => {}
                    Some(_) => self.error(format!("`{}` cannot be assigned: only `let` variables can", name.name), name.span),
                    None => self.error(format!("unknown name `{}`", name.name), name.span),
                }
            }
            StmtKind::For { var, start, end, body: loop_body } => {
                let s0 = self.expr(start, body);
                let e0 = self.expr(end, body);
                let start_v = self.coerce_to(s0, &Type::Scalar(DType::I32), start.span, body);
                let end_v = self.coerce_to(e0, &Type::Scalar(DType::I32), end.span, body);
                let index = self.k.add_value(Type::Scalar(DType::I32), Op::LoopIndex, var.span);
                self.scopes.push(HashMap::new());
                self.bind(var, Binding::Value(index));
                let mut inner = Vec::new();
                self.block(&loop_body.stmts, &mut inner);
                self.scopes.pop();
                if let (Some(start), Some(end)) = (start_v, end_v) {
                    body.push(Stmt::For { index, start, end, body: inner });
                }
            }
            StmtKind::If { cond, then_block, else_block } => {
                let c = self.expr(cond, body);
                let c = self.coerce_to(c, &Type::Scalar(DType::Bool), cond.span, body);
                self.scopes.push(HashMap::new());
                let mut then_body = Vec::new();
                self.block(&then_block.stmts, &mut then_body);
                self.scopes.pop();
                self.scopes.push(HashMap::new());
                let mut else_body = Vec::new();
                if let Some(b) = else_block {
                    self.block(&b.stmts, &mut else_body);
                }
                self.scopes.pop();
                if let Some(cond) = c {
                    body.push(Stmt::If { cond, then_body, else_body });
                }
            }
            StmtKind::Expr(e) => {
                let stands_alone = matches!(&e.kind, ExprKind::Call { callee, .. }
                    if builtins::lookup(&callee.name, builtins::Context::Kernel).is_some_and(|b| b.statement));
                self.statement_call = stands_alone;
                let op = self.expr(e, body);
                self.statement_call = false;
                if !stands_alone && !matches!(op, Operand::Error) {
                    self.error("this expression's value is unused (only `store`, `copy_async`, `commit`, `wait`, `sync` and `print` stand alone)", e.span);
                }
            }
        }
    }

    // ----- typing helpers -------------------------------------------------------------------

    /// Gives an operand a value: integer literals become i32, float literals f32.
    fn materialize_default(&mut self, op: Operand, span: Span, body: &mut Vec<Stmt>) -> Option<ValueId> {
        match op {
            Operand::Int(_) => self.coerce_to(op, &Type::Scalar(DType::I32), span, body),
            Operand::Float(_) => self.coerce_to(op, &Type::Scalar(DType::F32), span, body),
            Operand::Bool(_) => self.coerce_to(op, &Type::Scalar(DType::Bool), span, body),
            Operand::Value(v) => Some(v),
            Operand::Tensor(_) => {
                self.error("a global tensor can only be used through `load`, `store` and `copy_async`", span);
                None
            }
            Operand::Shared(_) => {
                self.error("a shared tensor can only be used through `load`, `store` and `copy_async`", span);
                None
            }
            Operand::List(_) => {
                self.error("a list is only allowed as offsets or a shape", span);
                None
            }
            Operand::Error => None,
        }
    }

    /// A scalar constant of `dtype` from a literal, checking that it is representable.
    /// Integers stay exact at every magnitude (the IR holds a [`Number`]).
    fn constant(&mut self, value: Number, dtype: DType, span: Span, body: &mut Vec<Stmt>) -> Option<ValueId> {
        match value {
            Number::Float(_) if !dtype.is_float() => {
                self.error(format!("float literal where an integer of type {dtype} is expected"), span);
                return None;
            }
            Number::Int(v) if dtype == DType::Bool && v != 0 && v != 1 => {
                self.error("expected a bool", span);
                return None;
            }
            Number::Int(v) if dtype.is_int() => {
                let (lo, hi) = dtype.int_range().expect("int");
                if !(lo..=hi).contains(&v) {
                    self.error(format!("{v} does not fit in {dtype}"), span);
                    return None;
                }
            }
            _ => {}
        }
        Some(self.emit(body, Type::Scalar(dtype), Op::Const(dtype.round_number(value)), span))
    }

    /// Converts an operand to exactly `want` (scalar or tensor type): literals take the dtype,
    /// scalars splat, tensors with extent-1 dims broadcast. Dtypes never change implicitly.
    fn coerce_to(&mut self, op: Operand, want: &Type, span: Span, body: &mut Vec<Stmt>) -> Option<ValueId> {
        let dtype = want.dtype()?;
        let scalar = match op {
            Operand::Error => return None,
            Operand::Int(v) => self.constant(Number::Int(v as i128), dtype, span, body)?,
            Operand::Float(v) => self.constant(Number::Float(v), dtype, span, body)?,
            Operand::Bool(b) => {
                if dtype != DType::Bool {
                    self.error(format!("expected {dtype}, found a bool"), span);
                    return None;
                }
                self.constant(Number::Int(b as i128), dtype, span, body)?
            }
            Operand::Value(v) => v,
            other => return self.materialize_default(other, span, body),
        };
        let have = self.ty(scalar).clone();
        if have == *want {
            return Some(scalar);
        }
        if have.dtype() != Some(dtype) {
            self.error(
                format!(
                    "expected {}, found {} (conversions are explicit: use `cast<{dtype}>(...)`)",
                    ir::print::type_str(want),
                    ir::print::type_str(&have)
                ),
                span,
            );
            return None;
        }
        match (&have, want) {
            (Type::Scalar(_), Type::Tensor { .. }) => Some(self.emit(body, want.clone(), Op::Splat(scalar), span)),
            // A one-element tile (a reduction to [1], say) where a scalar is needed: its element.
            (Type::Tensor { shape, .. }, Type::Scalar(_)) if shape.iter().all(|&e| e == 1) => {
                Some(self.emit(body, want.clone(), Op::ToScalar(scalar), span))
            }
            (Type::Tensor { shape: from, .. }, Type::Tensor { shape: to, .. })
                if from.len() == to.len() && from.iter().zip(to).all(|(f, t)| f == t || *f == 1) =>
            {
                Some(self.emit(body, want.clone(), Op::Broadcast(scalar), span))
            }
            _ => {
                self.error(
                    format!("expected {}, found {}", ir::print::type_str(want), ir::print::type_str(&have)),
                    span,
                );
                None
            }
        }
    }

    /// The common type of two operands of an elementwise operation.
    fn unify(&mut self, a: &Operand, b: &Operand, span: Span) -> Option<Type> {
        let ta = self.operand_type(a);
        let tb = self.operand_type(b);
        let (ta, tb) = match (ta, tb) {
            (Some(x), Some(y)) => (x, y),
            (Some(x), None) | (None, Some(x)) => return Some(x),
            (None, None) => return None,
        };
        if ta.dtype() != tb.dtype() {
            self.error(
                format!(
                    "operands have different dtypes, {} and {} (use `cast<...>(...)` to convert)",
                    ta.dtype().expect("typed"),
                    tb.dtype().expect("typed")
                ),
                span,
            );
            return None;
        }
        match (ta.shape(), tb.shape()) {
            (None, None) => Some(ta),
            (Some(_), None) => Some(ta),
            (None, Some(_)) => Some(tb),
            (Some(x), Some(y)) => {
                if x.len() != y.len() {
                    self.error(format!("operands have different ranks, shapes {x:?} and {y:?}"), span);
                    return None;
                }
                let mut shape = Vec::new();
                for (p, q) in x.iter().zip(y) {
                    if p == q || *q == 1 {
                        shape.push(*p);
                    } else if *p == 1 {
                        shape.push(*q);
                    } else {
                        self.error(format!("shapes {x:?} and {y:?} do not broadcast"), span);
                        return None;
                    }
                }
                Some(Type::Tensor { dtype: ta.dtype().expect("typed"), shape })
            }
        }
    }

    fn operand_type(&self, op: &Operand) -> Option<Type> {
        match op {
            Operand::Value(v) => Some(self.ty(*v).clone()),
            _ => None,
        }
    }

    // ----- expressions ----------------------------------------------------------------------

    fn expr(&mut self, e: &ast::Expr, body: &mut Vec<Stmt>) -> Operand {
        match &e.kind {
            ExprKind::Error => Operand::Error,
            ExprKind::Int(v) => Operand::Int(*v),
            ExprKind::Float(v) => Operand::Float(*v),
            ExprKind::Bool(b) => Operand::Bool(*b),
            ExprKind::List(items) => {
                Operand::List(items.iter().map(|i| (self.expr(i, body), i.span)).collect())
            }
            ExprKind::Name(n) => match self.lookup(n).cloned() {
                Some(Binding::Const(v)) => Operand::Int(v),
                Some(Binding::ScalarParam(i)) => {
                    let ParamKind::Scalar(d) = self.k.param(i).kind else { unreachable!("scalar binding") };
                    Operand::Value(self.emit(body, Type::Scalar(d), Op::Param(i), e.span))
                }
                Some(Binding::TensorParam(i)) => Operand::Tensor(i),
                Some(Binding::Value(v)) if matches!(self.k.value(v).ty, Type::Shared { .. }) => Operand::Shared(v),
                Some(Binding::Value(v)) => Operand::Value(v),
                Some(Binding::Var(var)) => {
                    let ty = self.k.var(var).ty.clone();
                    Operand::Value(self.emit(body, ty, Op::ReadVar(var), e.span))
                }
                Some(Binding::Poisoned) => Operand::Error,
                Some(Binding::DType(d)) => {
                    self.error(format!("`{n}` is a dtype ({d}), not a value"), e.span);
                    Operand::Error
                }
                Some(Binding::Layout(_)) => {
                    self.error(format!("`{n}` is a layout, not a value (layouts go after `@` in a `let` annotation)"), e.span);
                    Operand::Error
                }
                None if n == "block" => {
                    self.error("`block` needs a field: `block.x`, `block.y` or `block.z`", e.span);
                    Operand::Error
                }
                None => {
                    self.error(format!("unknown name `{n}`"), e.span);
                    Operand::Error
                }
            },
            ExprKind::Field(base, field) => {
                let is_block = matches!(&base.kind, ExprKind::Name(n) if n == "block" && self.lookup("block").is_none());
                if !is_block {
                    self.error("only `block.x`, `block.y` and `block.z` have fields", e.span);
                    return Operand::Error;
                }
                let axis = match field.name.as_str() {
                    "x" => 0,
                    "y" => 1,
                    "z" => 2,
                    other => {
                        self.error(format!("`block` has fields x, y and z, not `{other}`"), field.span);
                        return Operand::Error;
                    }
                };
                Operand::Value(self.emit(body, Type::Scalar(DType::I32), Op::BlockIdx(axis), e.span))
            }
            ExprKind::Unary(op, a) => {
                let x = self.expr(a, body);
                match (op, x) {
                    (_, Operand::Error) => Operand::Error,
                    (UnOp::Neg, Operand::Int(v)) => match v.checked_neg() {
                        Some(n) => Operand::Int(n),
                        None => {
                            self.error("integer overflow", e.span);
                            Operand::Error
                        }
                    },
                    (UnOp::Neg, Operand::Float(v)) => Operand::Float(-v),
                    (UnOp::Not, Operand::Bool(b)) => Operand::Bool(!b),
                    (UnOp::BitNot, Operand::Int(v)) => Operand::Int(!v),
                    (op, x) => {
                        let Some(v) = self.materialize_default(x, a.span, body) else { return Operand::Error };
                        let ty = self.ty(v).clone();
                        let dtype = ty.dtype().expect("typed");
                        let (ok, symbol, hint) = match op {
                            UnOp::Neg => (dtype.is_float() || dtype.is_signed_int(), "-", ""),
                            UnOp::Not => (dtype == DType::Bool, "!", if dtype.is_int() { " (`!` is logical; `~` complements an integer's bits)" } else { "" }),
                            UnOp::BitNot => (dtype.is_int(), "~", if dtype == DType::Bool { " (`~` complements an integer's bits; `!` negates a bool)" } else { "" }),
                        };
                        if !ok {
                            self.error(format!("`{symbol}` does not apply to {dtype}{hint}"), e.span);
                            return Operand::Error;
                        }
                        let u = if *op == UnOp::Neg { UnaryOp::Neg } else { UnaryOp::Not };
                        Operand::Value(self.emit(body, ty, Op::Unary(u, v), e.span))
                    }
                }
            }
            ExprKind::Binary(op, a, b) => {
                let x = self.expr(a, body);
                let y = self.expr(b, body);
                self.binary(*op, x, a.span, y, b.span, e.span, body)
            }
            ExprKind::Call { callee, dtype, args } => {
                let dtype = match dtype {
                    Some(d) => match self.resolve_dtype(d) {
                        Some(resolved) => Some((resolved, d.span())),
                        None => return Operand::Error,
                    },
                    None => None,
                };
                self.call(e, callee, dtype, args, body)
            }
        }
    }

    /// `max(x, y)` or `min(x, y)` (`op` is `Max` or `Min`) elementwise with broadcasting, folded
    /// on two compile-time integers.
    /// The operation `approx = ...` asks for: the accurate function `exact`, or its hardware
    /// approximation; an error (and `None`) for a value that is no compile-time bool or a
    /// function without one.
    fn approx_variant(&mut self, name: &str, exact: UnaryOp, approx: Option<(&Operand, Span)>) -> Option<UnaryOp> {
        match approx {
            None | Some((Operand::Bool(false), _)) => Some(exact),
            Some((Operand::Bool(true), span)) => {
                let found = exact.approximate();
                if found.is_none() {
                    let why = if exact == UnaryOp::Sqrt { " (it is correctly rounded)" } else { "" };
                    self.error(format!("`{name}` has no approximate variant{why}: drop `approx = true`"), span);
                }
                found
            }
            Some((_, span)) => {
                self.error("`approx` must be `true` or `false`", span);
                None
            }
        }
    }

    fn max_or_min(&mut self, op: BinaryOp, (x, xs): (Operand, Span), (y, ys): (Operand, Span), span: Span, body: &mut Vec<Stmt>) -> Operand {
        if matches!(x, Operand::Error) || matches!(y, Operand::Error) {
            return Operand::Error;
        }
        if let (Operand::Int(p), Operand::Int(q)) = (&x, &y) {
            return Operand::Int(if op == BinaryOp::Max { *p.max(q) } else { *p.min(q) });
        }
        let Some(ty) = self.unify(&x, &y, span).or_else(|| Some(Type::Scalar(DType::F32))) else { return Operand::Error };
        if ty.dtype() == Some(DType::Bool) {
            self.error(format!("`{}` does not apply to bool", op.name()), span);
            return Operand::Error;
        }
        let (Some(a), Some(b)) = (self.coerce_to(x, &ty, xs, body), self.coerce_to(y, &ty, ys, body)) else { return Operand::Error };
        Operand::Value(self.emit(body, ty, Op::Binary(op, a, b), span))
    }

    #[allow(clippy::too_many_arguments)]
    fn binary(&mut self, op: BinOp, x: Operand, xs: Span, y: Operand, ys: Span, span: Span, body: &mut Vec<Stmt>) -> Operand {
        if matches!(x, Operand::Error) || matches!(y, Operand::Error) {
            return Operand::Error;
        }
        // Compile-time folding of integer arithmetic.
        if let (Operand::Int(p), Operand::Int(q)) = (&x, &y) {
            let (p, q) = (*p, *q);
            let r = match op {
                BinOp::Add => p.checked_add(q),
                BinOp::Sub => p.checked_sub(q),
                BinOp::Mul => p.checked_mul(q),
                BinOp::Div | BinOp::Rem if q == 0 => {
                    self.error("division by zero", span);
                    return Operand::Error;
                }
                BinOp::Div => p.checked_div(q),
                BinOp::Rem => p.checked_rem(q),
                BinOp::Lt => return Operand::Bool(p < q),
                BinOp::Le => return Operand::Bool(p <= q),
                BinOp::Gt => return Operand::Bool(p > q),
                BinOp::Ge => return Operand::Bool(p >= q),
                BinOp::Eq => return Operand::Bool(p == q),
                BinOp::Ne => return Operand::Bool(p != q),
                BinOp::And | BinOp::Or => {
                    self.error(format!("`{}` needs bool operands", op.symbol()), span);
                    return Operand::Error;
                }
                BinOp::BitAnd => Some(p & q),
                BinOp::BitOr => Some(p | q),
                BinOp::BitXor => Some(p ^ q),
                BinOp::Shl | BinOp::Shr if !(0..64).contains(&q) => {
                    self.error(format!("shift amount {q} is outside 0..64, the bits of a compile-time integer"), span);
                    return Operand::Error;
                }
                BinOp::Shl => i64::try_from(i128::from(p) << q).ok(),
                BinOp::Shr => Some(p >> q),
            };
            return match r {
                Some(v) => Operand::Int(v),
                None => {
                    self.error("integer overflow in a compile-time expression", span);
                    Operand::Error
                }
            };
        }
        if let (Operand::Float(p), Operand::Float(q)) = (&x, &y) {
            if matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div) {
                return Operand::Float(match op {
                    BinOp::Add => p + q,
                    BinOp::Sub => p - q,
                    BinOp::Mul => p * q,
                    _ => p / q,
                });
            }
        }
        let ty = match self.unify(&x, &y, span) {
            Some(t) => t,
            None if self.operand_type(&x).is_none() && self.operand_type(&y).is_none() => {
                // Two untyped literals of different kinds (e.g. `1 + 2.0`): f32.
                let default = if matches!(x, Operand::Bool(_)) { DType::Bool } else if matches!(x, Operand::Float(_)) || matches!(y, Operand::Float(_)) { DType::F32 } else { DType::I32 };
                Type::Scalar(default)
            }
            None => return Operand::Error,
        };
        let dtype = ty.dtype().expect("typed");
        let is_logic = matches!(op, BinOp::And | BinOp::Or);
        if is_logic && dtype != DType::Bool {
            let hint = if dtype.is_int() { format!(" (for the bits of integers use `{}`)", if op == BinOp::And { "&" } else { "|" }) } else { String::new() };
            self.error(format!("`{}` needs bool operands, not {dtype}{hint}", op.symbol()), span);
            return Operand::Error;
        }
        let is_shift = matches!(op, BinOp::Shl | BinOp::Shr);
        if op.is_bit_operation() && !(dtype.is_int() || (dtype == DType::Bool && !is_shift)) {
            let what = if is_shift { "integer" } else { "integer or bool" };
            self.error(format!("`{}` needs {what} operands, not {dtype}", op.symbol()), span);
            return Operand::Error;
        }
        if !is_logic && !op.is_bit_operation() && !op.is_comparison() && dtype == DType::Bool {
            self.error(format!("`{}` does not apply to bool", op.symbol()), span);
            return Operand::Error;
        }
        if op == BinOp::Rem && dtype.is_float() {
            self.error("`%` needs integer operands", span);
            return Operand::Error;
        }
        let (Some(a), Some(b)) = (self.coerce_to(x, &ty, xs, body), self.coerce_to(y, &ty, ys, body)) else {
            return Operand::Error;
        };
        let bop = match op {
            BinOp::Add => BinaryOp::Add,
            BinOp::Sub => BinaryOp::Sub,
            BinOp::Mul => BinaryOp::Mul,
            BinOp::Div => BinaryOp::Div,
            BinOp::Rem => BinaryOp::Rem,
            BinOp::Lt => BinaryOp::Lt,
            BinOp::Le => BinaryOp::Le,
            BinOp::Gt => BinaryOp::Gt,
            BinOp::Ge => BinaryOp::Ge,
            BinOp::Eq => BinaryOp::Eq,
            BinOp::Ne => BinaryOp::Ne,
            BinOp::And | BinOp::BitAnd => BinaryOp::And,
            BinOp::Or | BinOp::BitOr => BinaryOp::Or,
            BinOp::BitXor => BinaryOp::Xor,
            BinOp::Shl => BinaryOp::Shl,
            BinOp::Shr => BinaryOp::Shr,
        };
        let result_ty = if op.is_comparison() {
            match &ty {
                Type::Tensor { shape, .. } => Type::Tensor { dtype: DType::Bool, shape: shape.clone() },
                _ => Type::Scalar(DType::Bool),
            }
        } else {
            ty
        };
        Operand::Value(self.emit(body, result_ty, Op::Binary(bop, a, b), span))
    }

    fn shape_list(&mut self, op: Operand, span: Span) -> Option<Vec<usize>> {
        let Operand::List(items) = op else {
            if !matches!(op, Operand::Error) {
                self.error("expected a shape list such as `[16, 64]`", span);
            }
            return None;
        };
        let mut shape = Vec::new();
        for (item, s) in items {
            match item {
                Operand::Int(v) if v > 0 => shape.push(v as usize),
                Operand::Int(v) => {
                    self.error(format!("tile extents must be positive, not {v}"), s);
                    return None;
                }
                Operand::Error => return None,
                _ => {
                    self.error("tile extents must be compile-time integers", s);
                    return None;
                }
            }
        }
        if shape.is_empty() {
            self.error("a tile needs at least one dimension", span);
            return None;
        }
        let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if n.is_none_or(|n| n > MAX_TILE_ELEMENTS) {
            self.error(format!("tile {shape:?} has more than {MAX_TILE_ELEMENTS} elements"), span);
            return None;
        }
        Some(shape)
    }

    fn offsets(&mut self, op: Operand, rank: usize, span: Span, body: &mut Vec<Stmt>) -> Option<Vec<ValueId>> {
        let items = self.offset_items(op, rank, span)?;
        let mut out = Vec::new();
        for (item, s) in items {
            if let Operand::Value(v) = &item
                && self.ty(*v).shape().is_some_and(|shape| shape.iter().any(|&e| e != 1))
            {
                self.error("these offsets are scalars: index tiles (gathers and scatters) work with global tensors in `load`, `store` and `atomic_add`", s);
                return None;
            }
            out.push(self.coerce_to(item, &Type::Scalar(DType::I32), s, body)?);
        }
        Some(out)
    }

    /// The items of a list of `rank` offsets.
    fn offset_items(&mut self, op: Operand, rank: usize, span: Span) -> Option<Vec<(Operand, Span)>> {
        let Operand::List(items) = op else {
            if !matches!(op, Operand::Error) {
                self.error("expected a list of offsets such as `[block.x * 16, 0]`", span);
            }
            return None;
        };
        if items.len() != rank {
            self.error(format!("expected {rank} offsets (one per tensor dimension), found {}", items.len()), span);
            return None;
        }
        Some(items)
    }

    /// The offsets of a global `load`, `store` or `atomic_add` of a tile of shape `tile`: a
    /// scalar per dimension (the tile's corner), or along a dimension a tile of indices (see
    /// [`Self::index_tile`]).
    fn global_offsets(&mut self, op: Operand, tile: &[usize], span: Span, body: &mut Vec<Stmt>) -> Option<Vec<ValueId>> {
        let items = self.offset_items(op, tile.len(), span)?;
        let mut out = Vec::new();
        for (d, (item, s)) in items.into_iter().enumerate() {
            let index_tile = match &item {
                Operand::Value(v) => match self.ty(*v).clone() {
                    Type::Tensor { dtype, shape } if shape.iter().any(|&e| e != 1) => Some((*v, dtype, shape)),
                    _ => None,
                },
                _ => None,
            };
            match index_tile {
                Some((v, dtype, shape)) => out.push(self.index_tile(v, dtype, &shape, d, tile, s, body)?),
                None => out.push(self.coerce_to(item, &Type::Scalar(DType::I32), s, body)?),
            }
        }
        Some(out)
    }

    /// An offset that is a tile of indices (a gather or scatter along dimension `d` of a tile
    /// of shape `tile`): `[tile[d]]`, one index per position along `d`, or any shape that
    /// broadcasts to `tile`, one per element. Returns it broadcast to `tile`'s shape, which
    /// the IR requires of an index tile.
    #[allow(clippy::too_many_arguments)]
    fn index_tile(&mut self, v: ValueId, dtype: DType, shape: &[usize], d: usize, tile: &[usize], span: Span, body: &mut Vec<Stmt>) -> Option<ValueId> {
        if !matches!(dtype, DType::I32 | DType::I64) {
            self.error(format!("an index tile holds i32 or i64 indices, not {dtype} (use `cast<i32>(...)`)"), span);
            return None;
        }
        let along = shape.len() == 1 && tile.len() > 1 && shape[0] == tile[d];
        let broadcasts = shape.len() == tile.len() && shape.iter().zip(tile).all(|(s, t)| s == t || *s == 1);
        if !along && !broadcasts {
            self.error(
                format!(
                    "an index tile for dimension {d} of a {tile:?} tile has shape [{}] (one index per row along it) or a shape that broadcasts to {tile:?}, not {shape:?}",
                    tile[d]
                ),
                span,
            );
            return None;
        }
        let v = if along {
            let mut placed = vec![1; tile.len()];
            placed[d] = tile[d];
            self.emit(body, Type::Tensor { dtype, shape: placed }, Op::Reshape(v), span)
        } else {
            v
        };
        self.coerce_to(Operand::Value(v), &Type::Tensor { dtype, shape: tile.to_vec() }, span, body)
    }

    /// The global tensor parameter a `load`/`store` names as its first argument: its index,
    /// dtype, symbolic shape and writability.
    fn global_param(&mut self, func: &str, op: Operand, span: Span) -> Option<(ParamId, DType, Vec<SymExpr>, bool)> {
        let Operand::Tensor(param) = op else {
            self.error(format!("the first argument of `{func}` must be a global tensor parameter"), span);
            return None;
        };
        let ParamKind::Global { dtype, shape, mutable } = self.k.param(param).kind.clone() else {
            unreachable!("tensor bindings name global parameters")
        };
        Some((param, dtype, shape, mutable))
    }

    /// `load(s, offsets, shape)` and `store(s, tile, offsets)` on shared tensor `s`: one offset
    /// per dim of `s`; the tile spans the trailing dims of `s`.
    fn shared_access(&mut self, name: &str, positional: Vec<(Operand, Span)>, span: Span, body: &mut Vec<Stmt>) -> Operand {
        let mut it = positional.into_iter();
        let (Operand::Shared(shared), _) = it.next().expect("3") else { unreachable!("checked by the caller") };
        let Type::Shared { dtype, shape: sshape } = self.ty(shared).clone() else { unreachable!("shared operand") };
        let (second, second_span) = it.next().expect("3");
        let (third, third_span) = it.next().expect("3");
        let check_tile = |s: &mut Self, tile: &[usize], at: Span| -> bool {
            let trailing = &sshape[sshape.len().saturating_sub(tile.len())..];
            if tile.len() > sshape.len() || tile.iter().zip(trailing).any(|(t, e)| t > e) {
                s.error(format!("a {tile:?} tile does not fit the trailing dims of the shared tensor {sshape:?}"), at);
                return false;
            }
            true
        };
        if name == "load" {
            let Some(shape) = self.shape_list(third, third_span) else { return Operand::Error };
            if !check_tile(self, &shape, third_span) {
                return Operand::Error;
            }
            let Some(offsets) = self.offsets(second, sshape.len(), second_span, body) else { return Operand::Error };
            return Operand::Value(self.emit(body, Type::Tensor { dtype, shape }, Op::LoadShared { shared, offsets }, span));
        }
        let Some(v) = self.materialize_default(second, second_span, body) else { return Operand::Error };
        let tile = match self.ty(v).clone() {
            Type::Tensor { dtype: d, shape } if d == dtype => shape,
            Type::Tensor { dtype: d, .. } => {
                self.error(format!("storing {d} values into a {dtype} shared tensor (use `cast<{dtype}>(...)`)"), second_span);
                return Operand::Error;
            }
            other => {
                self.error(format!("`store` needs a tile, found {}", ir::print::type_str(&other)), second_span);
                return Operand::Error;
            }
        };
        if !check_tile(self, &tile, second_span) {
            return Operand::Error;
        }
        if dtype.bits() < 8 {
            self.error(
                format!("storing a {dtype} tile into shared memory is not supported yet; fill shared tensors of sub-byte formats with `copy_async`"),
                second_span,
            );
            return Operand::Error;
        }
        let Some(offsets) = self.offsets(third, sshape.len(), third_span, body) else { return Operand::Error };
        self.emit(body, Type::Unit, Op::StoreShared { shared, value: v, offsets }, span);
        Operand::Error // a store has no value
    }

    fn call(&mut self, e: &ast::Expr, callee: &ast::Ident, dtype: Option<(DType, Span)>, args: &[ast::Arg], body: &mut Vec<Stmt>) -> Operand {
        let name = callee.name.as_str();
        let as_statement = std::mem::take(&mut self.statement_call);
        let builtin = builtins::lookup(name, builtins::Context::Kernel);
        if builtin.is_some_and(|b| b.statement) && !as_statement {
            self.error(format!("`{name}(...)` produces no value: write it as a statement of its own"), e.span);
            return Operand::Error;
        }
        // Split positional and named arguments; analyse every argument once.
        let mut positional: Vec<(Operand, Span)> = Vec::new();
        let mut named: Vec<(&ast::Ident, Operand, Span)> = Vec::new();
        for a in args {
            let v = self.expr(&a.value, body);
            match &a.name {
                Some(n) => named.push((n, v, a.value.span)),
                None => positional.push((v, a.value.span)),
            }
        }
        if positional.iter().any(|(o, _)| matches!(o, Operand::Error)) || named.iter().any(|(_, o, _)| matches!(o, Operand::Error)) {
            return Operand::Error;
        }
        // The shape of the call, from the table of builtins.
        let Some(builtin) = builtin else {
            self.diags.push(builtins::unknown_function(name, builtins::Context::Kernel, callee.span));
            return Operand::Error;
        };
        let names: Vec<&str> = named.iter().map(|(n, _, _)| n.name.as_str()).collect();
        if let Err(problem) = builtins::check_call(builtin, positional.len(), &names, dtype.is_some()) {
            let span = match &problem {
                builtins::CallError::UnknownNamed { index, .. } => named[*index].0.span,
                builtins::CallError::Dtype(_) => dtype.map_or(callee.span, |d| d.1),
                builtins::CallError::Arity(_) => e.span,
            };
            self.error(problem.message().to_string(), span);
            return Operand::Error;
        }
        let arity = |s: &mut Self, n: usize| -> bool {
            if positional.len() != n {
                s.error(format!("`{name}` takes {n} argument{}, found {}", if n == 1 { "" } else { "s" }, positional.len()), e.span);
                false
            } else {
                true
            }
        };
        let dim_arg = named.iter().find(|(n, _, _)| n.name == "dim").map(|(_, o, s)| (o.clone(), *s));
        let first_is_shared = matches!(positional.first(), Some((Operand::Shared(_), _)));
        match name {
            "load" | "store" if first_is_shared => {
                if !arity(self, 3) || !named.is_empty() {
                    if !named.is_empty() {
                        self.error("a load from shared memory takes no `pad`: every element must lie inside the shared tensor", named[0].2);
                    }
                    return Operand::Error;
                }
                self.shared_access(name, positional, e.span, body)
            }
            "shared" => {
                let dtype = dtype.expect("checked").0;
                if !arity(self, 1) {
                    return Operand::Error;
                }
                if self.scopes.len() != self.kernel_scope_depth {
                    self.error("shared tensors are allocated once per block: write `shared<...>(...)` at the top level of the kernel body, not inside `for` or `if`", e.span);
                    return Operand::Error;
                }
                let (shape, ss) = positional.into_iter().next().expect("1");
                let Some(shape) = self.shape_list(shape, ss) else { return Operand::Error };
                let bits = dtype.bits() as usize;
                // Formats narrower than a byte are packed; each row must be whole bytes, so
                // that a row (or a run of it) can be copied and addressed by the byte.
                let last = *shape.last().expect("a shape has a dimension");
                if bits < 8 && (last * bits) % 8 != 0 {
                    self.error(
                        format!("a row of {last} {dtype} elements is {} bits, not whole bytes: make the last extent a multiple of {}", last * bits, 8 / gcd(bits, 8)),
                        ss,
                    );
                    return Operand::Error;
                }
                let bytes = crate::ir::shared_tensor_bytes(dtype, &shape).unwrap_or(usize::MAX);
                self.shared_bytes = self.shared_bytes.saturating_add(bytes);
                if self.shared_bytes > MAX_SHARED_BYTES {
                    self.error(
                        format!("the kernel's shared tensors need {} bytes; at most {MAX_SHARED_BYTES} bytes of shared memory are available to a block (on sm_90a; sm_80 has {})", self.shared_bytes, crate::backend::Arch::Sm80.max_shared_bytes()),
                        e.span,
                    );
                    return Operand::Error;
                }
                Operand::Shared(self.emit(body, Type::Shared { dtype, shape }, Op::SharedAlloc, e.span))
            }
            "copy_async" => {
                if !arity(self, 4) {
                    return Operand::Error;
                }
                let mut it = positional.into_iter();
                let (dst, ds) = it.next().expect("4");
                let (dst_offs, dos) = it.next().expect("4");
                let (src, srcs) = it.next().expect("4");
                let (src_offs, sos) = it.next().expect("4");
                let Operand::Shared(shared) = dst else {
                    self.error("the first argument of `copy_async` must be a shared tensor (`let s = shared<f16>([...]);`)", ds);
                    return Operand::Error;
                };
                let Some((param, gdtype, gshape, _)) = self.global_param(name, src, srcs) else { return Operand::Error };
                let Type::Shared { dtype: sdtype, shape: sshape } = self.ty(shared).clone() else { unreachable!("shared operand") };
                if gdtype != sdtype {
                    self.error(format!("copying {gdtype} elements into a {sdtype} shared tensor"), srcs);
                    return Operand::Error;
                }
                if gshape.len() > sshape.len() {
                    self.error(
                        format!("the global tensor has rank {}, more than the shared tensor's {}", gshape.len(), sshape.len()),
                        srcs,
                    );
                    return Operand::Error;
                }
                // The destination offsets select the leading dims; the tile is the rest, whole.
                let lead = sshape.len() - gshape.len();
                if let Operand::List(items) = &dst_offs {
                    if items.len() != lead {
                        self.error(
                            format!(
                                "`copy_async` fills the trailing {} dims of the {sshape:?} shared tensor whole; give {lead} offset{} for its leading dims, found {}",
                                gshape.len(),
                                if lead == 1 { "" } else { "s" },
                                items.len()
                            ),
                            dos,
                        );
                        return Operand::Error;
                    }
                }
                let Some(dst_offsets) = self.offsets(dst_offs, sshape.len() - gshape.len(), dos, body) else { return Operand::Error };
                let Some(src_offsets) = self.offsets(src_offs, gshape.len(), sos, body) else { return Operand::Error };
                self.emit(body, Type::Unit, Op::CopyAsync { shared, dst_offsets, param, src_offsets }, e.span);
                Operand::Error // no value: a statement
            }
            "print" => {
                if !arity(self, 1) {
                    return Operand::Error;
                }
                // The name labels every printed line.
                let ExprKind::Name(label) = &args[0].value.kind else {
                    self.error("`print` takes a name (bind the value with `let` first): its lines are labelled with it", args[0].value.span);
                    return Operand::Error;
                };
                let label = label.clone();
                let (x, xs) = positional.into_iter().next().expect("1");
                let Some(v) = self.materialize_default(x, xs, body) else { return Operand::Error };
                self.emit(body, Type::Unit, Op::Print { value: v, label }, e.span);
                Operand::Error // no value: a statement
            }
            "require" => {
                if !arity(self, 1) {
                    return Operand::Error;
                }
                // A condition on the compile-time parameters, decided here: a kernel compiled
                // with values it was not written for (a k tile spanning two quantization
                // groups) is refused instead of computing the wrong thing.
                let (x, xs) = positional.into_iter().next().expect("1");
                match x {
                    Operand::Bool(true) => {}
                    Operand::Bool(false) => {
                        let mut names = Vec::new();
                        names_in(&args[0].value, &mut names);
                        let values: Vec<String> = self
                            .k
                            .const_params
                            .iter()
                            .filter(|(n, _)| names.contains(n))
                            .map(|(n, v)| format!("{n} = {v}"))
                            .collect();
                        let with = if values.is_empty() { String::new() } else { format!(" with {}", values.join(", ")) };
                        self.error(format!("the kernel's requirement does not hold{with}"), xs);
                    }
                    _ => self.error(
                        "`require` takes a condition on compile-time integers (e.g. `require(G % BK == 0)`), decided when the kernel is compiled",
                        xs,
                    ),
                }
                Operand::Error // no value: a statement
            }
            "commit" | "sync" => {
                if !arity(self, 0) {
                    return Operand::Error;
                }
                let op = if name == "commit" { Op::Commit } else { Op::Sync };
                self.emit(body, Type::Unit, op, e.span);
                Operand::Error
            }
            "wait" => {
                if !arity(self, 1) {
                    return Operand::Error;
                }
                let (n, ns) = positional.into_iter().next().expect("1");
                match n {
                    Operand::Int(n) if (0..=7).contains(&n) => {
                        self.emit(body, Type::Unit, Op::Wait(n as u32), e.span);
                    }
                    _ => self.error("`wait(n)` takes the number of groups that may stay in flight, a compile-time integer from 0 to 7", ns),
                }
                Operand::Error
            }
            "load" => {
                if !arity(self, 3) {
                    return Operand::Error;
                }
                let mut it = positional.into_iter();
                let (t, ts) = it.next().expect("3");
                let (offs, os) = it.next().expect("3");
                let (shape, ss) = it.next().expect("3");
                let Some((param, dtype, pshape, _)) = self.global_param(name, t, ts) else { return Operand::Error };
                let Some(shape) = self.shape_list(shape, ss) else { return Operand::Error };
                if shape.len() != pshape.len() {
                    self.error(format!("tile rank {} does not match the tensor's rank {}", shape.len(), pshape.len()), ss);
                    return Operand::Error;
                }
                let Some(offsets) = self.global_offsets(offs, &shape, os, body) else { return Operand::Error };
                let pad = match named.iter().find(|(n, _, _)| n.name == "pad") {
                    None => Number::Int(0),
                    Some((_, Operand::Int(v), _)) => Number::Int(*v as i128),
                    Some((_, Operand::Float(v), s)) => {
                        if !dtype.is_float() {
                            self.error(format!("a float pad for a {dtype} tensor"), *s);
                            return Operand::Error;
                        }
                        Number::Float(*v)
                    }
                    Some((_, _, s)) => {
                        self.error("`pad` must be a literal number", *s);
                        return Operand::Error;
                    }
                };
                let ty = Type::Tensor { dtype, shape };
                Operand::Value(self.emit(body, ty, Op::Load { param, offsets, pad: dtype.round_number(pad) }, e.span))
            }
            "store" | "atomic_add" => {
                if !arity(self, 3) {
                    return Operand::Error;
                }
                let mut it = positional.into_iter();
                let (t, ts) = it.next().expect("3");
                let (val, vs) = it.next().expect("3");
                let (offs, os) = it.next().expect("3");
                let Some((param, dtype, pshape, mutable)) = self.global_param(name, t, ts) else { return Operand::Error };
                if !mutable {
                    self.diags.push(
                        Diagnostic::error(format!("`{}` is not writable", self.k.param(param).name), ts)
                            .with_label(self.k.param(param).span, format!("declare it `global mut` to {} it", if name == "store" { "store into" } else { "add into" })),
                    );
                    return Operand::Error;
                }
                if name == "atomic_add" && !ATOMIC_ADD_DTYPES.contains(&dtype) {
                    let names: Vec<String> = ATOMIC_ADD_DTYPES.iter().map(|d| d.to_string()).collect();
                    self.error(format!("`atomic_add` adds into tensors of {}, not {dtype}", names.join(", ")), ts);
                    return Operand::Error;
                }
                let Some(v) = self.materialize_default(val, vs, body) else { return Operand::Error };
                let vt = self.ty(v).clone();
                match &vt {
                    Type::Tensor { dtype: d, shape } if *d == dtype && shape.len() == pshape.len() => {}
                    Type::Tensor { dtype: d, .. } if *d != dtype => {
                        self.error(format!("storing {d} values into a {dtype} tensor (use `cast<{dtype}>(...)`)"), vs);
                        return Operand::Error;
                    }
                    _ => {
                        self.error(format!("`{name}` needs a tile of rank {}, found {}", pshape.len(), ir::print::type_str(&vt)), vs);
                        return Operand::Error;
                    }
                }
                let tile = vt.shape().expect("a tile").to_vec();
                let Some(offsets) = self.global_offsets(offs, &tile, os, body) else { return Operand::Error };
                let op = if name == "store" { Op::Store { param, value: v, offsets } } else { Op::AtomicAdd { param, value: v, offsets } };
                self.emit(body, Type::Unit, op, e.span);
                Operand::Error // a store has no value; callers treat it as a statement
            }
            "zeros" | "full" => {
                let dtype = dtype.expect("checked").0;
                let n = if name == "zeros" { 1 } else { 2 };
                if !arity(self, n) {
                    return Operand::Error;
                }
                let mut it = positional.into_iter();
                let (shape, ss) = it.next().expect("n");
                let Some(shape) = self.shape_list(shape, ss) else { return Operand::Error };
                let (value, vs) = it.next().unwrap_or((Operand::Int(0), e.span));
                let scalar = self.coerce_to(value, &Type::Scalar(dtype), vs, body);
                let Some(scalar) = scalar else { return Operand::Error };
                if !self.ty(scalar).is_scalar() {
                    self.error("the fill value must be a scalar", vs);
                    return Operand::Error;
                }
                Operand::Value(self.emit(body, Type::Tensor { dtype, shape }, Op::Splat(scalar), e.span))
            }
            "iota" => {
                let (d, ds) = dtype.expect("checked");
                if !arity(self, 1) {
                    return Operand::Error;
                }
                let (shape, ss) = positional.into_iter().next().expect("1");
                let Some(shape) = self.shape_list(shape, ss) else { return Operand::Error };
                if d == DType::Bool {
                    self.error("`iota` makes indices: give it a numeric dtype, not bool", ds);
                    return Operand::Error;
                }
                let dim = match dim_arg {
                    None if shape.len() == 1 => 0,
                    None => {
                        self.error(format!("`iota` of a rank-{} tile needs `dim = d`, the dimension whose index each element holds", shape.len()), e.span);
                        return Operand::Error;
                    }
                    Some((Operand::Int(k), _)) if k >= 0 && (k as usize) < shape.len() => k as usize,
                    Some((_, ks)) => {
                        self.error(format!("`dim` must be a compile-time integer in 0..{}", shape.len()), ks);
                        return Operand::Error;
                    }
                };
                let last = shape[dim] as i128 - 1;
                if let Some((_, hi)) = d.int_range().filter(|_| d.is_int())
                    && last > hi
                {
                    self.error(format!("indices up to {last} do not fit {d} (at most {hi})"), ds);
                    return Operand::Error;
                }
                Operand::Value(self.emit(body, Type::Tensor { dtype: d, shape }, Op::Iota { dim }, e.span))
            }
            "cast" => {
                let to = dtype.expect("checked").0;
                if !arity(self, 1) {
                    return Operand::Error;
                }
                let (x, xs) = positional.into_iter().next().expect("1");
                let Some(v) = self.materialize_default(x, xs, body) else { return Operand::Error };
                let ty = match self.ty(v).clone() {
                    Type::Tensor { shape, .. } => Type::Tensor { dtype: to, shape },
                    _ => Type::Scalar(to),
                };
                Operand::Value(self.emit(body, ty, Op::Cast(v), e.span))
            }
            "transpose" | "reshape" | "permute" => {
                let want = if name == "transpose" { 1 } else { 2 };
                if !arity(self, want) {
                    return Operand::Error;
                }
                let mut it = positional.into_iter();
                let (x, xs) = it.next().expect("one");
                let Some(v) = self.materialize_default(x, xs, body) else { return Operand::Error };
                let Type::Tensor { dtype: d, shape } = self.ty(v).clone() else {
                    self.error(format!("`{name}` takes a tile, not a scalar"), xs);
                    return Operand::Error;
                };
                if name == "transpose" {
                    if shape.len() != 2 {
                        self.error(format!("`transpose` swaps the two dimensions of a 2-D tile; this one has rank {}", shape.len()), xs);
                        return Operand::Error;
                    }
                    let out = vec![shape[1], shape[0]];
                    return Operand::Value(self.emit(body, Type::Tensor { dtype: d, shape: out }, Op::Permute { value: v, perm: vec![1, 0] }, e.span));
                }
                let (list, ls) = it.next().expect("two");
                let Operand::List(items) = list else {
                    let example = if name == "permute" { "`permute(x, [2, 0, 1])`" } else { "`reshape(x, [4, 8])`" };
                    let what = if name == "permute" { "the order of the dimensions" } else { "the new shape" };
                    self.error(format!("`{name}` needs {what} as a list: {example}"), ls);
                    return Operand::Error;
                };
                if name == "permute" {
                    let mut perm = Vec::new();
                    for (item, span) in items {
                        match item {
                            Operand::Int(x) if x >= 0 && (x as usize) < shape.len() && !perm.contains(&(x as usize)) => perm.push(x as usize),
                            Operand::Int(x) if x >= 0 && perm.contains(&(x as usize)) => {
                                self.error(format!("dimension {x} appears twice in the permutation"), span);
                                return Operand::Error;
                            }
                            Operand::Error => return Operand::Error,
                            _ => {
                                self.error(format!("a dimension of a rank-{} tile is a compile-time integer from 0 to {}", shape.len(), shape.len() - 1), span);
                                return Operand::Error;
                            }
                        }
                    }
                    if perm.len() != shape.len() {
                        self.error(format!("`permute` of a rank-{} tile needs {} dimensions, not {}", shape.len(), shape.len(), perm.len()), ls);
                        return Operand::Error;
                    }
                    // Result dimension i is operand dimension perm[i].
                    let out = perm.iter().map(|&d| shape[d]).collect();
                    return Operand::Value(self.emit(body, Type::Tensor { dtype: d, shape: out }, Op::Permute { value: v, perm }, e.span));
                }
                let mut out = Vec::new();
                for (item, span) in items {
                    match item {
                        Operand::Int(x) if x > 0 => out.push(x as usize),
                        Operand::Error => return Operand::Error,
                        _ => {
                            self.error("a tile extent must be a positive compile-time integer", span);
                            return Operand::Error;
                        }
                    }
                }
                let (have, want): (usize, usize) = (shape.iter().product(), out.iter().product());
                if out.is_empty() || have != want {
                    self.error(format!("`reshape` of a {shape:?} tile ({have} elements) to {out:?} ({want} elements)"), ls);
                    return Operand::Error;
                }
                Operand::Value(self.emit(body, Type::Tensor { dtype: d, shape: out }, Op::Reshape(v), e.span))
            }
            "view" => {
                let to = dtype.expect("checked").0;
                if !arity(self, 1) {
                    return Operand::Error;
                }
                let (x, xs) = positional.into_iter().next().expect("1");
                let Some(v) = self.materialize_default(x, xs, body) else { return Operand::Error };
                let Type::Tensor { dtype: from, shape } = self.ty(v).clone() else {
                    self.error("`view` reinterprets a tile, not a scalar", xs);
                    return Operand::Error;
                };
                for d in [from, to] {
                    if d == DType::Bool || d.bits() > 32 {
                        self.error(format!("`view` works on dtypes of 1 to 32 bits, not {d}"), if d == from { xs } else { e.span });
                        return Operand::Error;
                    }
                }
                // The last dimension absorbs the change of width: [.., n] of b bits becomes
                // [.., n·b / b'].
                let last = *shape.last().expect("tiles have rank >= 1");
                let total_bits = last * from.bits() as usize;
                if total_bits % to.bits() as usize != 0 {
                    self.error(
                        format!(
                            "`view<{to}>` of a {from}{shape:?} tile: the last dimension holds {total_bits} bits, not a multiple of {}",
                            to.bits()
                        ),
                        e.span,
                    );
                    return Operand::Error;
                }
                let mut out = shape.clone();
                *out.last_mut().expect("rank >= 1") = total_bits / to.bits() as usize;
                Operand::Value(self.emit(body, Type::Tensor { dtype: to, shape: out }, Op::View(v), e.span))
            }
            "exp" | "exp2" | "log" | "log2" | "sqrt" | "rsqrt" | "sigmoid" | "tanh" | "sin" | "cos" | "erf" | "abs" => {
                if !arity(self, 1) {
                    return Operand::Error;
                }
                let (x, xs) = positional.into_iter().next().expect("1");
                let Some(v) = self.materialize_default(x, xs, body) else { return Operand::Error };
                let ty = self.ty(v).clone();
                let exact = UnaryOp::math_function(name).expect("a math function");
                let Some(u) = self.approx_variant(name, exact, named.iter().find(|(n, _, _)| n.name == "approx").map(|(_, o, s)| (o, *s))) else {
                    return Operand::Error;
                };
                let dt = ty.dtype().expect("typed");
                if (u.needs_float() && !dt.is_float()) || dt == DType::Bool {
                    self.error(format!("`{name}` needs a float operand, found {dt}"), xs);
                    return Operand::Error;
                }
                Operand::Value(self.emit(body, ty, Op::Unary(u, v), e.span))
            }
            "pow" => {
                if !arity(self, 2) {
                    return Operand::Error;
                }
                let approx = named.iter().find(|(n, _, _)| n.name == "approx").map(|(_, o, s)| (o, *s));
                let approx = match approx {
                    None => false,
                    Some((Operand::Bool(b), _)) => *b,
                    Some((_, span)) => {
                        self.error("`approx` must be `true` or `false`", span);
                        return Operand::Error;
                    }
                };
                let mut it = positional.into_iter();
                let (x, xs) = it.next().expect("2");
                let (y, ys) = it.next().expect("2");
                let Some(ty) = self.unify(&x, &y, e.span).or_else(|| Some(Type::Scalar(DType::F32))) else { return Operand::Error };
                let dt = ty.dtype().expect("typed");
                if !dt.is_float() {
                    self.error(format!("`pow` needs float operands, found {dt}"), e.span);
                    return Operand::Error;
                }
                let (Some(a), Some(b)) = (self.coerce_to(x, &ty, xs, body), self.coerce_to(y, &ty, ys, body)) else { return Operand::Error };
                let op = if approx { BinaryOp::PowApprox } else { BinaryOp::Pow };
                Operand::Value(self.emit(body, ty, Op::Binary(op, a, b), e.span))
            }
            "sum" | "max" | "min" if dim_arg.is_some() => {
                if !arity(self, 1) {
                    return Operand::Error;
                }
                let (x, xs) = positional.into_iter().next().expect("1");
                let Some(v) = self.materialize_default(x, xs, body) else { return Operand::Error };
                let Type::Tensor { dtype, shape } = self.ty(v).clone() else {
                    self.error(format!("`{name}(..., dim = ...)` reduces a tile, not a scalar"), xs);
                    return Operand::Error;
                };
                let (dim_op, ds) = dim_arg.expect("checked");
                let dim = match dim_op {
                    Operand::Int(d) if d >= 0 && (d as usize) < shape.len() => d as usize,
                    _ => {
                        self.error(format!("`dim` must be a compile-time integer in 0..{}", shape.len()), ds);
                        return Operand::Error;
                    }
                };
                if dtype == DType::Bool {
                    self.error(format!("`{name}` does not reduce bool tiles"), xs);
                    return Operand::Error;
                }
                if dtype.is_low_precision() {
                    self.error(
                        format!("`{name}` does not reduce {dtype} tiles: cast to {} first", dtype.compute_type()),
                        xs,
                    );
                    return Operand::Error;
                }
                let mut out = shape.clone();
                out[dim] = 1;
                let op = match name {
                    "sum" => ReduceOp::Sum,
                    "max" => ReduceOp::Max,
                    _ => ReduceOp::Min,
                };
                Operand::Value(self.emit(body, Type::Tensor { dtype, shape: out }, Op::Reduce { op, value: v, dim }, e.span))
            }
            "max" | "min" => {
                if !arity(self, 2) {
                    return Operand::Error;
                }
                let mut it = positional.into_iter();
                let (x, xs) = it.next().expect("2");
                let (y, ys) = it.next().expect("2");
                let op = if name == "max" { BinaryOp::Max } else { BinaryOp::Min };
                self.max_or_min(op, (x, xs), (y, ys), e.span, body)
            }
            // min(max(x, lo), hi), as numpy's `clip` (hi wins where lo > hi).
            "clamp" => {
                if !arity(self, 3) {
                    return Operand::Error;
                }
                let mut it = positional.into_iter();
                let (x, lo, hi) = (it.next().expect("3"), it.next().expect("3"), it.next().expect("3"));
                let lower = self.max_or_min(BinaryOp::Max, x, lo, e.span, body);
                self.max_or_min(BinaryOp::Min, (lower, e.span), hi, e.span, body)
            }
            // The width of a dtype in bits, a compile-time integer (`bits<W>()` for a dtype
            // parameter W), so that shapes can follow the packing of a format.
            "bits" => Operand::Int(i64::from(dtype.expect("checked by check_call").0.bits())),
            "cdiv" => {
                if !arity(self, 2) {
                    return Operand::Error;
                }
                let mut it = positional.into_iter();
                let (x, xs) = it.next().expect("2");
                let (y, ys) = it.next().expect("2");
                if let (Operand::Int(p), Operand::Int(q)) = (&x, &y) {
                    if *q <= 0 {
                        self.error("`cdiv` needs a positive divisor", ys);
                        return Operand::Error;
                    }
                    return match p.checked_add(q - 1) {
                        Some(s) => Operand::Int(s.div_euclid(*q)),
                        None => {
                            self.error("integer overflow", e.span);
                            Operand::Error
                        }
                    };
                }
                // (x + y - 1) / y on runtime scalars.
                let one = Operand::Int(1);
                let sum = self.binary(BinOp::Add, x, xs, y.clone(), ys, e.span, body);
                let minus = self.binary(BinOp::Sub, sum, e.span, one, e.span, e.span, body);
                let out = self.binary(BinOp::Div, minus, e.span, y, ys, e.span, body);
                if let Operand::Value(v) = &out {
                    if !self.ty(*v).dtype().is_some_and(DType::is_int) || !self.ty(*v).is_scalar() {
                        self.error("`cdiv` needs integer scalars", e.span);
                        return Operand::Error;
                    }
                }
                out
            }
            "where" => {
                if !arity(self, 3) {
                    return Operand::Error;
                }
                let mut it = positional.into_iter();
                let (c, cs) = it.next().expect("3");
                let (x, xs) = it.next().expect("3");
                let (y, ys) = it.next().expect("3");
                let Some(ty) = self.unify(&x, &y, e.span).or_else(|| Some(Type::Scalar(DType::F32))) else { return Operand::Error };
                let ct = self.operand_type(&c);
                let shape = match (ty.shape(), ct.as_ref().and_then(|t| t.shape())) {
                    (Some(a), Some(b)) if a.len() == b.len() => a.iter().zip(b).map(|(p, q)| *p.max(q)).collect::<Vec<_>>(),
                    (Some(a), _) => a.to_vec(),
                    (None, Some(b)) => b.to_vec(),
                    (None, None) => Vec::new(),
                };
                let dtype = ty.dtype().expect("typed");
                let (vty, cty) = if shape.is_empty() {
                    (Type::Scalar(dtype), Type::Scalar(DType::Bool))
                } else {
                    (Type::Tensor { dtype, shape: shape.clone() }, Type::Tensor { dtype: DType::Bool, shape })
                };
                let (Some(cv), Some(a), Some(b)) = (
                    self.coerce_to(c, &cty, cs, body),
                    self.coerce_to(x, &vty, xs, body),
                    self.coerce_to(y, &vty, ys, body),
                ) else {
                    return Operand::Error;
                };
                Operand::Value(self.emit(body, vty, Op::Select { cond: cv, a, b }, e.span))
            }
            "dot" => {
                if !arity(self, 3) {
                    return Operand::Error;
                }
                let mut vals = Vec::new();
                for (x, xs) in positional {
                    let Some(v) = self.materialize_default(x, xs, body) else { return Operand::Error };
                    vals.push((v, xs));
                }
                let (a, b, c) = (vals[0], vals[1], vals[2]);
                let (ta, tb, tc) = (self.ty(a.0).clone(), self.ty(b.0).clone(), self.ty(c.0).clone());
                let (Some([m, ka]), Some([kb, n]), Some([mc, nc])) = (ta.shape(), tb.shape(), tc.shape()) else {
                    self.error("`dot` takes three 2-D tiles: a [M, K], b [K, N] and the accumulator c [M, N]", e.span);
                    return Operand::Error;
                };
                if ka != kb || m != mc || n != nc {
                    self.error(
                        format!("`dot` shapes do not match: a {:?}, b {:?}, c {:?}", ta.shape().expect("t"), tb.shape().expect("t"), tc.shape().expect("t")),
                        e.span,
                    );
                    return Operand::Error;
                }
                if ta.dtype() != tb.dtype() {
                    self.error(format!("`dot` operands have different dtypes, {} and {}", ta.dtype().expect("t"), tb.dtype().expect("t")), b.1);
                    return Operand::Error;
                }
                if !tc.dtype().is_some_and(DType::is_float) && !tc.dtype().is_some_and(DType::is_int) {
                    self.error("the accumulator of `dot` must be a number tile", c.1);
                    return Operand::Error;
                }
                for (t, span) in [(&ta, a.1), (&tc, c.1)] {
                    if let Some(d) = t.dtype().filter(|d| d.is_low_precision()) {
                        self.error(
                            format!("`dot` does not take {d} tiles: dequantize them with `cast<f16>(...)` first"),
                            span,
                        );
                        return Operand::Error;
                    }
                }
                Operand::Value(self.emit(body, tc, Op::Dot { a: a.0, b: b.0, c: c.0 }, e.span))
            }
            "sum" => {
                // `sum(x)`: the reduction needs its dimension by name.
                self.error("`sum` takes the dimension to reduce by name: `sum(x, dim = d)`", e.span);
                Operand::Error
            }
            _ => {
                self.error(format!("internal compiler error: the builtin `{name}` has no meaning in kernels"), callee.span);
                Operand::Error
            }
        }
    }
}

/// The names an expression mentions (for the message of a requirement that does not hold).
fn names_in(e: &ast::Expr, names: &mut Vec<String>) {
    match &e.kind {
        ExprKind::Name(n) if !names.contains(n) => names.push(n.clone()),
        ExprKind::Field(x, _) | ExprKind::Unary(_, x) => names_in(x, names),
        ExprKind::Binary(_, a, b) => {
            names_in(a, names);
            names_in(b, names);
        }
        ExprKind::Call { args, .. } => args.iter().for_each(|a| names_in(&a.value, names)),
        ExprKind::List(items) => items.iter().for_each(|x| names_in(x, names)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parser::parse;

    fn lower(src: &str) -> Result<Kernel, Vec<Diagnostic>> {
        let (file, diags) = parse(src);
        assert!(diags.is_empty(), "{diags:?}");
        lower_kernel(find_kernel(&file, None).map_err(|d| vec![d])?, &[])
    }

    #[test]
    fn lowers_vector_add() {
        let k = lower(
            "kernel vadd<B = 128>(n: i32, a: global f32[n], b: global f32[n], c: global mut f32[n])
             grid(cdiv(n, B)) warps(4) {
                let x = load(a, [block.x * B], [B]);
                let y = load(b, [block.x * B], [B]);
                store(c, x + y, [block.x * B]);
             }",
        )
        .unwrap();
        let text = ir::print::kernel_to_string(&k);
        assert!(text.contains("load a["), "{text}");
        assert!(text.contains("grid(cdiv(n, 128), 1, 1)"), "{text}");
    }

    #[test]
    fn reports_type_errors_with_spans() {
        let src = "kernel k(n: i32, a: global f16[n], c: global f32[n]) grid(1) warps(1) {
            let x = load(a, [0], [32]);
            store(c, x, [0]);
            let y = foo + 1;
        }";
        let errors = lower(src).unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(errors.len(), 2, "{messages:?}");
        assert!(messages[0].contains("not writable"), "{messages:?}");
        assert!(messages[1].contains("unknown name `foo`"), "{messages:?}");
        let span = errors[1].span.unwrap();
        assert_eq!(&src[span.start..span.end], "foo");
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
