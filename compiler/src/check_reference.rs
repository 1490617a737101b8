//! Checks a `reference NAME { ... }` block as sema checks a kernel, before anything runs it.
//!
//! Expects the reference and the kernel it names (both parsed). Reports, at the offending
//! text: statements other than `let name = ...;` and `output = ...;`; assignments to names that
//! are not `global mut` parameters of the kernel; names that are neither parameters,
//! compile-time integers of the kernel nor earlier `let`s (a dtype parameter used as a value
//! too); calls of functions a reference does not have, with the wrong number of arguments,
//! unknown named arguments, a `dim` that is not an integer literal, or a missing, unexpected or
//! unknown dtype (the table of `builtins`); a reference that assigns no output. Shapes depend
//! on the launch's sizes and are checked when the reference runs (`tl_runtime::reference`).

use crate::builtins::{self, Context};
use crate::diagnostics::Diagnostic;
use crate::syntax::ast::{self, ConstDefault, DTypeRef, ExprKind, StmtKind, TypeExpr};
use std::collections::HashSet;

/// What a name in a reference stands for.
enum Name {
    /// A value: a parameter, a compile-time integer or a `let`.
    Value,
    /// A dtype parameter of the kernel.
    DType,
}

/// The diagnostics of `reference`, which belongs to `kernel`.
pub fn check_reference(reference: &ast::Reference, kernel: &ast::Kernel) -> Vec<Diagnostic> {
    let mut checker = Checker { kernel, lets: HashSet::new(), diagnostics: Vec::new() };
    let mut assigns = false;
    for stmt in &reference.body {
        match &stmt.kind {
            StmtKind::Let { name, value, .. } => {
                checker.expr(value);
                checker.lets.insert(name.name.clone());
            }
            StmtKind::Assign { name, value } => {
                checker.expr(value);
                assigns = true;
                match kernel.params.iter().find(|p| p.name.name == name.name) {
                    None => checker.error(format!("`{}` is not a parameter of kernel `{}`", name.name, kernel.name.name), name.span),
                    Some(ast::Param { ty: TypeExpr::Global { mutable: true, .. }, .. }) => {}
                    Some(_) => checker.error(format!("`{}` is not an output (a `global mut` tensor)", name.name), name.span),
                }
            }
            StmtKind::Error => assigns = true, // already reported; do not add a second error
            _ => checker.error("a reference holds only `let name = ...;` and `output = ...;` statements", stmt.span),
        }
    }
    if !assigns {
        checker.error("this reference assigns no output", reference.span);
    }
    checker.diagnostics
}

struct Checker<'k> {
    kernel: &'k ast::Kernel,
    lets: HashSet<String>,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, message: impl Into<String>, span: crate::diagnostics::Span) {
        self.diagnostics.push(Diagnostic::error(message, span));
    }

    fn name(&self, name: &str) -> Option<Name> {
        if self.lets.contains(name) || self.kernel.params.iter().any(|p| p.name.name == name) {
            return Some(Name::Value);
        }
        self.kernel.const_params.iter().find(|c| c.name.name == name).map(|c| match c.default {
            ConstDefault::Int(_) => Name::Value,
            ConstDefault::DType { .. } => Name::DType,
        })
    }

    fn expr(&mut self, e: &ast::Expr) {
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Bool(_) | ExprKind::Error => {}
            ExprKind::Name(n) => match self.name(n) {
                Some(Name::Value) => {}
                Some(Name::DType) => self.error(format!("`{n}` is a dtype, not a value"), e.span),
                None => self.error(format!("unknown name `{n}` in the reference of `{}`", self.kernel.name.name), e.span),
            },
            ExprKind::Unary(_, x) => self.expr(x),
            ExprKind::Binary(_, x, y) => {
                self.expr(x);
                self.expr(y);
            }
            ExprKind::Field(..) | ExprKind::List(_) => self.error("not allowed in a reference", e.span),
            ExprKind::Call { callee, dtype, args } => {
                for a in args {
                    match &a.name {
                        Some(n) if n.name == "dim" && !matches!(a.value.kind, ExprKind::Int(_)) => {
                            self.error("`dim` must be an integer literal", a.value.span)
                        }
                        Some(_) => {}
                        // Shapes, dimension orders and offsets are lists of values.
                        None => match &a.value.kind {
                            ExprKind::List(items) if builtins::takes_lists(&callee.name) => items.iter().for_each(|item| self.expr(item)),
                            _ => self.expr(&a.value),
                        },
                    }
                }
                let Some(builtin) = builtins::lookup(&callee.name, Context::Reference) else {
                    self.diagnostics.push(builtins::unknown_function(&callee.name, Context::Reference, callee.span));
                    return;
                };
                let positional = args.iter().filter(|a| a.name.is_none()).count();
                let named: Vec<&ast::Ident> = args.iter().filter_map(|a| a.name.as_ref()).collect();
                let names: Vec<&str> = named.iter().map(|n| n.name.as_str()).collect();
                if let Err(problem) = builtins::check_call(builtin, positional, &names, dtype.is_some()) {
                    let span = match (&problem, dtype) {
                        (builtins::CallError::Dtype(_), Some(d)) => d.span(),
                        (builtins::CallError::Dtype(_), None) => callee.span,
                        (builtins::CallError::UnknownNamed { index, .. }, _) => named[*index].span,
                        (builtins::CallError::Arity(_), _) => e.span,
                    };
                    self.error(problem.message().to_string(), span);
                    return;
                }
                if let Some(DTypeRef::Named(n)) = dtype
                    && !matches!(self.name(&n.name), Some(Name::DType))
                {
                    self.error(format!("unknown dtype `{}`", n.name), n.span);
                }
            }
        }
    }
}
