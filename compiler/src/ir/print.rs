//! The deterministic text form of the block IR (`tlc compile --emit ir`, golden tests).

use super::*;
use std::fmt::Write;

/// Formats a shape or grid expression with parameter names.
pub fn sym_expr(kernel: &Kernel, e: &SymExpr) -> String {
    let bin = |name: &str, a: &SymExpr, b: &SymExpr| {
        format!("{name}({}, {})", sym_expr(kernel, a), sym_expr(kernel, b))
    };
    match e {
        SymExpr::Const(v) => v.to_string(),
        SymExpr::Param(i) => param_name(kernel, *i).to_string(),
        SymExpr::Add(a, b) => format!("({} + {})", sym_expr(kernel, a), sym_expr(kernel, b)),
        SymExpr::Sub(a, b) => format!("({} - {})", sym_expr(kernel, a), sym_expr(kernel, b)),
        SymExpr::Mul(a, b) => format!("({} * {})", sym_expr(kernel, a), sym_expr(kernel, b)),
        SymExpr::Div(a, b) => format!("({} / {})", sym_expr(kernel, a), sym_expr(kernel, b)),
        SymExpr::Rem(a, b) => format!("({} % {})", sym_expr(kernel, a), sym_expr(kernel, b)),
        SymExpr::CeilDiv(a, b) => bin("cdiv", a, b),
        SymExpr::Min(a, b) => bin("min", a, b),
        SymExpr::Max(a, b) => bin("max", a, b),
    }
}

pub fn type_str(ty: &Type) -> String {
    match ty {
        Type::Scalar(d) => d.name().to_string(),
        Type::Tensor { dtype, shape } => {
            let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
            format!("{dtype}[{}]", dims.join(", "))
        }
        Type::Shared { dtype, shape } => {
            let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
            format!("shared {dtype}[{}]", dims.join(", "))
        }
        Type::Unit => "()".to_string(),
    }
}

fn float_str(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{v:?}")
    }
}

/// A constant as the source would write it: integers in full, floats as [`float_str`].
fn number_str(n: Number) -> String {
    match n {
        Number::Int(v) => v.to_string(),
        Number::Float(f) => float_str(f),
    }
}

fn ids(v: &[ValueId]) -> String {
    v.iter().map(|i| format!("%{}", i.0)).collect::<Vec<_>>().join(", ")
}

/// Prints a whole kernel.
pub fn kernel_to_string(kernel: &Kernel) -> String {
    let mut out = String::new();
    let consts: Vec<String> =
        kernel.const_params.iter().map(|(n, v)| format!("{n} = {v}")).chain(kernel.dtype_params.iter().map(|(n, d)| format!("{n}: dtype = {d}"))).collect();
    let params: Vec<String> = kernel
        .params
        .iter()
        .map(|p| match &p.kind {
            ParamKind::Scalar(d) => format!("{}: {d}", p.name),
            ParamKind::Global { dtype, shape, mutable } => {
                let dims: Vec<String> = shape.iter().map(|s| sym_expr(kernel, s)).collect();
                format!(
                    "{}: global {}{dtype}[{}]",
                    p.name,
                    if *mutable { "mut " } else { "" },
                    dims.join(", ")
                )
            }
        })
        .collect();
    let grid: Vec<String> = kernel.grid.iter().map(|g| sym_expr(kernel, g)).collect();
    let shared = kernel.shared_bytes.map(|b| format!(" shared_bytes({b})")).unwrap_or_default();
    let _ = writeln!(
        out,
        "kernel {}<{}>({})\n    grid({}) warps({}){shared} {{",
        kernel.name,
        consts.join(", "),
        params.join(", "),
        grid.join(", "),
        kernel.warps
    );
    for (i, var) in kernel.vars.iter().enumerate() {
        let layout = var.layout.as_ref().map(|l| format!(" @ {}", l.readable())).unwrap_or_default();
        let _ = writeln!(out, "  var ${i} {}: {}{layout}", var.name, type_str(&var.ty));
    }
    print_body(kernel, &kernel.body, 1, &mut out);
    out.push_str("}\n");
    out
}

fn print_body(kernel: &Kernel, body: &[Stmt], depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    for stmt in body {
        match stmt {
            Stmt::Eval(id) => {
                let v = kernel.value(*id);
                let text = op_str(kernel, &v.op);
                let layout = v.layout.as_ref().map(|l| format!(" @ {}", l.readable())).unwrap_or_default();
                let plan = plan_str(v);
                if v.ty == Type::Unit {
                    let _ = writeln!(out, "{pad}{text}{plan}");
                } else {
                    let _ = writeln!(out, "{pad}%{}: {} = {text}{layout}{plan}", id.0, type_str(&v.ty));
                }
            }
            Stmt::Assign(var, value) => {
                let _ = writeln!(out, "{pad}${} = %{}", var.0, value.0);
            }
            Stmt::For { index, start, end, body } => {
                let _ = writeln!(out, "{pad}for %{} in %{} .. %{} {{", index.0, start.0, end.0);
                print_body(kernel, body, depth + 1, out);
                let _ = writeln!(out, "{pad}}}");
            }
            Stmt::If { cond, then_body, else_body } => {
                let _ = writeln!(out, "{pad}if %{} {{", cond.0);
                print_body(kernel, then_body, depth + 1, out);
                if !else_body.is_empty() {
                    let _ = writeln!(out, "{pad}}} else {{");
                    print_body(kernel, else_body, depth + 1, out);
                }
                let _ = writeln!(out, "{pad}}}");
            }
        }
    }
}

/// The planning passes' decisions on a value, as they follow its layout:
/// ` via mma.m16n8k16.f16(a: in_place, b: staged) shared [2048]` (see `plan`).
pub fn plan_str(v: &ValueData) -> String {
    let mut out = String::new();
    if let Some(strategy) = &v.strategy {
        let _ = write!(out, " via {}", strategy.name());
        match strategy {
            plan::Strategy::Mma { a, b, .. } => {
                let _ = write!(out, "(a: {}, b: {})", a.name(), b.name());
            }
            plan::Strategy::Copy { layout, run } => {
                let _ = write!(out, "({}, run {run})", layout.readable());
            }
            _ => {}
        }
    }
    if !v.shared_offsets.is_empty() {
        let offsets: Vec<String> = v.shared_offsets.iter().map(|o| o.to_string()).collect();
        let _ = write!(out, " shared [{}]", offsets.join(", "));
    }
    out
}

fn param_name(kernel: &Kernel, i: ParamId) -> &str {
    kernel.params.get(i.index()).map_or("?", |p| p.name.as_str())
}

/// The text of one operation, as `--emit ir` prints it (`load x[%2, %5] pad 0.0`).
pub fn op_str(kernel: &Kernel, op: &Op) -> String {
    match op {
        Op::Const(v) => format!("const {}", number_str(*v)),
        Op::Param(i) => format!("param {}", param_name(kernel, *i)),
        Op::BlockIdx(a) => format!("block_idx.{}", ["x", "y", "z"][(*a as usize).min(2)]),
        Op::LoopIndex => "loop_index".into(),
        Op::ReadVar(v) => format!("read ${}", v.0),
        Op::Unary(u, a) => format!("{} %{}", u.name(), a.0),
        Op::Binary(b, x, y) => format!("{} %{}, %{}", b.name(), x.0, y.0),
        Op::Cast(a) => format!("cast %{}", a.0),
        Op::View(a) => format!("view %{}", a.0),
        Op::Permute { value, perm } => format!("permute %{}, {perm:?}", value.0),
        Op::Reshape(a) => format!("reshape %{}", a.0),
        Op::Splat(a) => format!("splat %{}", a.0),
        Op::ToScalar(a) => format!("to_scalar %{}", a.0),
        Op::Iota { dim } => format!("iota dim {dim}"),
        Op::Broadcast(a) => format!("broadcast %{}", a.0),
        Op::Load { param, offsets, pad } => {
            format!("load {}[{}] pad {}", param_name(kernel, *param), ids(offsets), number_str(*pad))
        }
        Op::Store { param, value, offsets } => {
            format!("store {}[{}], %{}", param_name(kernel, *param), ids(offsets), value.0)
        }
        Op::AtomicAdd { param, value, offsets } => {
            format!("atomic_add {}[{}], %{}", param_name(kernel, *param), ids(offsets), value.0)
        }
        Op::SharedAlloc => "shared_alloc".into(),
        Op::LoadShared { shared, offsets } => format!("load_shared %{}[{}]", shared.0, ids(offsets)),
        Op::StoreShared { shared, value, offsets } => format!("store_shared %{}[{}], %{}", shared.0, ids(offsets), value.0),
        Op::CopyAsync { shared, dst_offsets, param, src_offsets } => format!(
            "copy_async %{}[{}], {}[{}]",
            shared.0,
            ids(dst_offsets),
            param_name(kernel, *param),
            ids(src_offsets)
        ),
        Op::Commit => "commit".into(),
        Op::Wait(n) => format!("wait {n}"),
        Op::Sync => "sync".into(),
        Op::Print { value, label } => format!("print %{} {label:?}", value.0),
        Op::Dot { a, b, c } => format!("dot %{}, %{}, %{}", a.0, b.0, c.0),
        Op::Reduce { op, value, dim } => format!("reduce_{} %{}, dim {dim}", op.name(), value.0),
        Op::Select { cond, a, b } => format!("select %{}, %{}, %{}", cond.0, a.0, b.0),
    }
}
