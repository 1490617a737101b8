//! Host references: evaluates a `.tl` file's `reference NAME { ... }` block in f64 over whole
//! tensors, independently of the VM, the lowering and the GPU.
//!
//! Expects the kernel's arguments (already checked against its signature). Guarantees either
//! the value of every output the block assigns, or a diagnostic at the offending text. Semantics:
//! numpy-style broadcasting (shapes aligned from the right), reductions keep the reduced dim
//! with extent 1, `matmul(a, b)` is the 2-D product, `cast<dtype>(x)` rounds to the dtype;
//! everything else is exact f64 arithmetic.

use tl_compiler::builtins::{self, Context};
use tl_compiler::diagnostics::{Diagnostic, Span};
use tl_compiler::ir::{Kernel, ParamKind};
use tl_compiler::syntax::ast::{self, BinOp, ExprKind, StmtKind, UnOp};
use tl_vm::HostTensor;
use std::collections::HashMap;

/// An f64 array: shape `[]` is a scalar.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Array {
    pub fn scalar(v: f64) -> Array {
        Array { shape: Vec::new(), data: vec![v] }
    }

    fn map(&self, f: impl Fn(f64) -> f64) -> Array {
        Array { shape: self.shape.clone(), data: self.data.iter().map(|x| f(*x)).collect() }
    }
}

/// A kernel argument as the reference sees it.
pub enum RefArg<'a> {
    Scalar(f64),
    Tensor(&'a HostTensor),
}

fn err<T>(message: impl Into<String>, span: Span) -> Result<T, Diagnostic> {
    Err(Diagnostic::error(message, span))
}

/// Evaluates `reference`; returns `(parameter index, value)` for each assigned output.
pub fn evaluate(reference: &ast::Reference, kernel: &Kernel, args: &[RefArg]) -> Result<Vec<(usize, Array)>, Diagnostic> {
    let mut env = Env {
        values: HashMap::new(),
        dtypes: kernel.dtype_params.iter().cloned().collect(),
    };
    for (name, v) in &kernel.const_params {
        env.values.insert(name.clone(), Array::scalar(*v as f64));
    }
    for (p, a) in kernel.params.iter().zip(args) {
        let value = match a {
            RefArg::Scalar(v) => Array::scalar(*v),
            RefArg::Tensor(t) => Array { shape: t.shape.clone(), data: t.to_f64() },
        };
        env.values.insert(p.name.clone(), value);
    }
    let mut outputs: Vec<(usize, Array)> = Vec::new();
    for stmt in &reference.body {
        match &stmt.kind {
            StmtKind::Let { name, value, .. } => {
                let v = eval(value, &env)?;
                env.values.insert(name.name.clone(), v);
            }
            StmtKind::Assign { name, value } => {
                let v = eval(value, &env)?;
                let Some(index) = kernel.params.iter().position(|p| p.name == name.name) else {
                    return err(format!("`{}` is not a parameter of kernel `{}`", name.name, kernel.name), name.span);
                };
                let ParamKind::Global { mutable: true, .. } = kernel.params[index].kind else {
                    return err(format!("`{}` is not an output (a `global mut` tensor)", name.name), name.span);
                };
                let RefArg::Tensor(t) = &args[index] else {
                    return err("internal error: a tensor parameter without a tensor argument", name.span);
                };
                let v = broadcast_to(&v, &t.shape).ok_or_else(|| {
                    Diagnostic::error(
                        format!("the reference computes shape {:?}, but `{}` has shape {:?}", v.shape, name.name, t.shape),
                        value.span,
                    )
                })?;
                outputs.retain(|(i, _)| *i != index);
                outputs.push((index, v));
            }
            StmtKind::Error => {}
            _ => return err("a reference holds only `let name = ...;` and `output = ...;` statements", stmt.span),
        }
    }
    if outputs.is_empty() {
        return err("this reference assigns no output", reference.span);
    }
    Ok(outputs)
}

fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let x = if i < rank - a.len() { 1 } else { a[i - (rank - a.len())] };
        let y = if i < rank - b.len() { 1 } else { b[i - (rank - b.len())] };
        out[i] = if x == y || y == 1 { x } else if x == 1 { y } else { return None };
    }
    Some(out)
}

/// Flat index into `shape` (right-aligned, extent-1 dims broadcast) of `coords` in `out`.
fn source_index(shape: &[usize], coords: &[usize]) -> usize {
    let off = coords.len() - shape.len();
    shape.iter().enumerate().fold(0, |acc, (d, s)| acc * s + if *s == 1 { 0 } else { coords[off + d] })
}

fn unravel(mut flat: usize, shape: &[usize], coords: &mut [usize]) {
    for d in (0..shape.len()).rev() {
        coords[d] = flat % shape[d];
        flat /= shape[d];
    }
}

fn broadcast_to(a: &Array, shape: &[usize]) -> Option<Array> {
    if broadcast_shape(&a.shape, shape)? != shape {
        return None;
    }
    Some(zip_with(a, &Array { shape: shape.to_vec(), data: vec![0.0; shape.iter().product()] }, |x, _| x).expect("compatible"))
}

fn zip_with(a: &Array, b: &Array, f: impl Fn(f64, f64) -> f64) -> Option<Array> {
    let shape = broadcast_shape(&a.shape, &b.shape)?;
    let n: usize = shape.iter().product();
    let mut coords = vec![0; shape.len()];
    let mut data = Vec::with_capacity(n);
    for i in 0..n {
        unravel(i, &shape, &mut coords);
        data.push(f(a.data[source_index(&a.shape, &coords)], b.data[source_index(&b.shape, &coords)]));
    }
    Some(Array { shape, data })
}

fn reduce(a: &Array, dim: usize, init: f64, f: impl Fn(f64, f64) -> f64) -> Array {
    let mut shape = a.shape.clone();
    shape[dim] = 1;
    let n: usize = shape.iter().product();
    let mut data = vec![init; n];
    let mut coords = vec![0; a.shape.len()];
    for (i, x) in a.data.iter().enumerate() {
        unravel(i, &a.shape, &mut coords);
        coords[dim] = 0;
        let o = coords.iter().zip(&shape).fold(0, |acc, (c, s)| acc * s + c);
        data[o] = f(data[o], *x);
    }
    Array { shape, data }
}

/// Integers up to 2^53 in magnitude are exact in f64, the reference's number.
const EXACT_INTEGER_BITS: u32 = 53;

/// Bit operations take integers that f64 holds exactly (`op` and `span` name the place).
fn exact_integers(x: &Array, op: &str, span: Span) -> Result<(), Diagnostic> {
    let limit = (EXACT_INTEGER_BITS as f64).exp2();
    match x.data.iter().find(|v| v.fract() != 0.0 || v.abs() > limit || v.is_nan()) {
        Some(v) => err(format!("`{op}` needs integers of at most 2^{EXACT_INTEGER_BITS} in magnitude, not {v}"), span),
        None => Ok(()),
    }
}

/// Names visible to a reference: values, and the kernel's dtype parameters.
struct Env {
    values: HashMap<String, Array>,
    dtypes: HashMap<String, tl_compiler::dtype::DType>,
}

fn eval(e: &ast::Expr, env: &Env) -> Result<Array, Diagnostic> {
    match &e.kind {
        ExprKind::Int(v) => Ok(Array::scalar(*v as f64)),
        ExprKind::Float(v) => Ok(Array::scalar(*v)),
        ExprKind::Bool(b) => Ok(Array::scalar(*b as u8 as f64)),
        ExprKind::Name(n) => env.values.get(n).cloned().ok_or_else(|| Diagnostic::error(format!("unknown name `{n}`"), e.span)),
        ExprKind::Unary(UnOp::Neg, a) => Ok(eval(a, env)?.map(|x| -x)),
        ExprKind::Unary(UnOp::Not, a) => Ok(eval(a, env)?.map(|x| (x == 0.0) as u8 as f64)),
        ExprKind::Unary(UnOp::BitNot, a) => {
            let x = eval(a, env)?;
            exact_integers(&x, "~", a.span)?;
            Ok(x.map(|v| -v - 1.0))
        }
        ExprKind::Binary(op, a, b) => {
            let (x, y) = (eval(a, env)?, eval(b, env)?);
            if op.is_bit_operation() {
                exact_integers(&x, op.symbol(), a.span)?;
                exact_integers(&y, op.symbol(), b.span)?;
                if matches!(op, BinOp::Shl | BinOp::Shr)
                    && let Some(q) = y.data.iter().find(|q| !(0.0..=EXACT_INTEGER_BITS as f64).contains(*q))
                {
                    return err(format!("shift amount {q} is outside 0..={EXACT_INTEGER_BITS}"), b.span);
                }
            }
            let f = |p: f64, q: f64| -> f64 {
                match op {
                    BinOp::Add => p + q,
                    BinOp::Sub => p - q,
                    BinOp::Mul => p * q,
                    BinOp::Div => p / q,
                    BinOp::Rem => p % q,
                    BinOp::Lt => (p < q) as u8 as f64,
                    BinOp::Le => (p <= q) as u8 as f64,
                    BinOp::Gt => (p > q) as u8 as f64,
                    BinOp::Ge => (p >= q) as u8 as f64,
                    BinOp::Eq => (p == q) as u8 as f64,
                    BinOp::Ne => (p != q) as u8 as f64,
                    BinOp::And => (p != 0.0 && q != 0.0) as u8 as f64,
                    BinOp::Or => (p != 0.0 || q != 0.0) as u8 as f64,
                    // Integers of unbounded width, two's complement (checked exact above).
                    BinOp::BitAnd => ((p as i64) & (q as i64)) as f64,
                    BinOp::BitOr => ((p as i64) | (q as i64)) as f64,
                    BinOp::BitXor => ((p as i64) ^ (q as i64)) as f64,
                    BinOp::Shl => p * q.exp2(),
                    BinOp::Shr => (p / q.exp2()).floor(),
                }
            };
            let result = zip_with(&x, &y, f).ok_or_else(|| {
                Diagnostic::error(format!("shapes {:?} and {:?} do not broadcast", x.shape, y.shape), e.span)
            })?;
            if *op == BinOp::Shl {
                exact_integers(&result, "<<", e.span)?;
            }
            Ok(result)
        }
        ExprKind::Call { callee, dtype, args } => {
            let name = callee.name.as_str();
            // The shape of the call, from the table of builtins (sema checked it already; a
            // reference evaluated without that check still gets the same errors).
            let Some(builtin) = builtins::lookup(name, Context::Reference) else {
                return Err(builtins::unknown_function(name, Context::Reference, callee.span));
            };
            let named: Vec<&str> = args.iter().filter_map(|a| a.name.as_ref().map(|n| n.name.as_str())).collect();
            let positional_count = args.iter().filter(|a| a.name.is_none()).count();
            if let Err(problem) = builtins::check_call(builtin, positional_count, &named, dtype.is_some()) {
                return err(problem.message().to_string(), e.span);
            }
            let mut positional = Vec::new();
            let mut dim = None;
            for a in args {
                match &a.name {
                    Some(n) if n.name == "dim" => match &a.value.kind {
                        ExprKind::Int(d) => dim = Some(*d),
                        _ => return err("`dim` must be an integer literal", a.value.span),
                    },
                    Some(n) => return err(format!("unknown argument `{}`", n.name), n.span),
                    None => positional.push(match &a.value.kind {
                        // A list of scalars (a shape, an order of dims, offsets) as a 1-D array.
                        ExprKind::List(items) if builtins::takes_lists(name) => {
                            let mut data = Vec::new();
                            for item in items {
                                let v = eval(item, env)?;
                                if !v.shape.is_empty() {
                                    return err(format!("a list holds scalars, not arrays of shape {:?}", v.shape), item.span);
                                }
                                data.push(v.data[0]);
                            }
                            Array { shape: vec![data.len()], data }
                        }
                        _ => eval(&a.value, env)?,
                    }),
                }
            }
            let want = |n: usize| -> Result<(), Diagnostic> {
                if positional.len() == n { Ok(()) } else { err(format!("`{name}` takes {n} argument(s) here"), e.span) }
            };
            if name == "iota" {
                want(1)?;
                let shape = whole_numbers(&positional[0], name, e.span)?;
                let d = dtype_argument(dtype.as_ref(), env, "`iota` needs a dtype: `iota<i32>([n])`", callee.span)?;
                let axis = match dim {
                    None if shape.len() == 1 => 0,
                    Some(k) if k >= 0 && (k as usize) < shape.len() => k as usize,
                    _ => return err(format!("`iota` of shape {shape:?} needs `dim = d` with d in 0..{}", shape.len()), e.span),
                };
                let count = shape.iter().try_fold(1usize, |a, &s| a.checked_mul(s)).filter(|&c| c <= 1 << 32);
                let Some(count) = count else { return err(format!("`iota` of shape {shape:?} is too large"), e.span) };
                let stride: usize = shape[axis + 1..].iter().product();
                let data = (0..count).map(|f| d.round((f / stride % shape[axis]) as f64)).collect();
                return Ok(Array { shape, data });
            }
            if name == "repeat" {
                // repeat(x, r, dim = d): every index along d taken r times in a row
                // (out[.., i, ..] = x[.., i / r, ..]), as numpy's `repeat` with an axis.
                want(2)?;
                let x = &positional[0];
                let r = positional[1].data.first().copied().unwrap_or(f64::NAN);
                if !positional[1].shape.is_empty() || !(r.is_finite() && r.fract() == 0.0 && (1.0..=1e9).contains(&r)) {
                    return err("`repeat` repeats a positive whole number of times", args[1].value.span);
                }
                let axis = match dim {
                    None if x.shape.len() == 1 => 0,
                    Some(k) if k >= 0 && (k as usize) < x.shape.len() => k as usize,
                    _ => return err(format!("`repeat` of shape {:?} needs `dim = d` with d in 0..{}", x.shape, x.shape.len()), e.span),
                };
                let r = r as usize;
                let mut shape = x.shape.clone();
                shape[axis] *= r;
                let count = shape.iter().try_fold(1usize, |a, &s| a.checked_mul(s)).filter(|&c| c <= 1 << 32);
                let Some(count) = count else { return err(format!("`repeat` to shape {shape:?} is too large"), e.span) };
                let inner: usize = shape[axis + 1..].iter().product();
                let data = (0..count)
                    .map(|f| {
                        let (outer, rest) = (f / (inner * shape[axis]), f % (inner * shape[axis]));
                        let (i, j) = (rest / inner, rest % inner);
                        x.data[(outer * x.shape[axis] + i / r) * inner + j]
                    })
                    .collect();
                return Ok(Array { shape, data });
            }
            if let Some(d) = dim {
                want(1)?;
                let a = &positional[0];
                if d < 0 || d as usize >= a.shape.len() {
                    return err(format!("`dim = {d}` is out of range for shape {:?}", a.shape), e.span);
                }
                let d = d as usize;
                return match name {
                    "sum" => Ok(reduce(a, d, 0.0, |p, q| p + q)),
                    "max" => Ok(reduce(a, d, f64::NEG_INFINITY, f64::max)),
                    "min" => Ok(reduce(a, d, f64::INFINITY, f64::min)),
                    _ => err(format!("`{name}` takes no `dim`"), callee.span),
                };
            }
            match name {
                "exp" | "exp2" | "log" | "log2" | "sqrt" | "rsqrt" | "sigmoid" | "tanh" | "sin" | "cos" | "erf" | "abs" => {
                    want(1)?;
                    // The same f64 functions as the VM's.
                    let op = tl_compiler::ir::UnaryOp::math_function(name).expect("a math function");
                    Ok(positional[0].map(|x| op.exact_f64(x)))
                }
                "pow" => {
                    want(2)?;
                    zip_with(&positional[0], &positional[1], f64::powf)
                        .ok_or_else(|| Diagnostic::error("operand shapes do not broadcast", e.span))
                }
                "max" | "min" => {
                    want(2)?;
                    let f: fn(f64, f64) -> f64 = if name == "max" { f64::max } else { f64::min };
                    zip_with(&positional[0], &positional[1], f)
                        .ok_or_else(|| Diagnostic::error("operand shapes do not broadcast", e.span))
                }
                "clamp" => {
                    want(3)?;
                    let shape_error = || Diagnostic::error("operand shapes do not broadcast", e.span);
                    let lower = zip_with(&positional[0], &positional[1], f64::max).ok_or_else(shape_error)?;
                    zip_with(&lower, &positional[2], f64::min).ok_or_else(shape_error)
                }
                "where" => {
                    want(3)?;
                    let ab = zip_with(&positional[1], &positional[2], |_, _| 0.0)
                        .and_then(|s| zip_with(&positional[0], &s, |_, _| 0.0))
                        .ok_or_else(|| Diagnostic::error("operand shapes do not broadcast", e.span))?;
                    let (c, a, b) = (
                        broadcast_to(&positional[0], &ab.shape).expect("broadcast"),
                        broadcast_to(&positional[1], &ab.shape).expect("broadcast"),
                        broadcast_to(&positional[2], &ab.shape).expect("broadcast"),
                    );
                    let data = (0..ab.data.len()).map(|i| if c.data[i] != 0.0 { a.data[i] } else { b.data[i] }).collect();
                    Ok(Array { shape: ab.shape, data })
                }
                "bits" => {
                    want(0)?;
                    let d = dtype_argument(dtype.as_ref(), env, "`bits` needs a dtype: `bits<u4>()`", callee.span)?;
                    Ok(Array { shape: vec![], data: vec![f64::from(d.bits())] })
                }
                "cast" => {
                    want(1)?;
                    let d = dtype_argument(dtype.as_ref(), env, "`cast` needs a dtype: `cast<f16>(x)`", callee.span)?;
                    Ok(positional[0].map(|x| d.round(x)))
                }
                "matmul" => {
                    want(2)?;
                    let (a, b) = (&positional[0], &positional[1]);
                    // [m, k] × [k, n], or a batch of them: [s, m, k] × [s, k, n]; a 1-D
                    // operand is a row (left) or a column (right) vector whose dimension
                    // the result drops, as numpy's `matmul`.
                    let (vector_left, vector_right) = (a.shape.len() == 1, b.shape.len() == 1);
                    let row = Array { shape: vec![1, a.data.len()], data: a.data.clone() };
                    let column = Array { shape: vec![b.data.len(), 1], data: b.data.clone() };
                    let a = if vector_left { &row } else { a };
                    let b = if vector_right { &column } else { b };
                    let (batch, m, ka, kb, n) = match (a.shape.as_slice(), b.shape.as_slice()) {
                        ([m, ka], [kb, n]) => (None, *m, *ka, *kb, *n),
                        ([sa, m, ka], [sb, kb, n]) if sa == sb => (Some(*sa), *m, *ka, *kb, *n),
                        _ => return err(format!("`matmul` takes two 2-D arrays or two 3-D batches of one size, not {:?} and {:?}", a.shape, b.shape), e.span),
                    };
                    if ka != kb {
                        return err(format!("`matmul` shapes {:?} and {:?} do not match", a.shape, b.shape), e.span);
                    }
                    let k = ka;
                    let mut data = vec![0.0; batch.unwrap_or(1) * m * n];
                    for s in 0..batch.unwrap_or(1) {
                        let (a, b) = (&a.data[s * m * k..(s + 1) * m * k], &b.data[s * k * n..(s + 1) * k * n]);
                        let out = &mut data[s * m * n..(s + 1) * m * n];
                        for i in 0..m {
                            for p in 0..k {
                                let x = a[i * k + p];
                                for j in 0..n {
                                    out[i * n + j] += x * b[p * n + j];
                                }
                            }
                        }
                    }
                    let shape = match batch {
                        Some(s) => vec![s, m, n],
                        None => vec![m, n],
                    };
                    let shape = match (vector_left, vector_right) {
                        (true, true) => vec![],
                        (true, false) => vec![n],
                        (false, true) => vec![m],
                        (false, false) => shape,
                    };
                    Ok(Array { shape, data })
                }
                "repeat_rows" => {
                    // repeat_rows(x, r, rows): out[i, j] = x[i / r, j] for i < rows (per-group
                    // scales expanded to the rows they scale).
                    want(3)?;
                    let x = &positional[0];
                    let (r, rows) = (positional[1].data.first().copied().unwrap_or(0.0), positional[2].data.first().copied().unwrap_or(0.0));
                    let [groups, n] = x.shape.as_slice() else { return err("`repeat_rows` takes a 2-D array", e.span) };
                    let whole = |v: f64| v.is_finite() && v.fract() == 0.0 && (0.0..=1e15).contains(&v);
                    if !whole(r) || !whole(rows) || r < 1.0 || (rows as usize).div_ceil(r as usize) > *groups {
                        return err(format!("`repeat_rows`: {groups} groups of {r} rows do not cover {rows} rows"), e.span);
                    }
                    let (r, rows, n) = (r as usize, rows as usize, *n);
                    let data = (0..rows * n).map(|i| x.data[(i / n / r) * n + i % n]).collect();
                    Ok(Array { shape: vec![rows, n], data })
                }
                "gather" => {
                    want(2)?;
                    let (x, idx) = (&positional[0], &positional[1]);
                    let Some((&rows, row_shape)) = x.shape.split_first() else {
                        return err("`gather` takes rows of an array of rank 1 or more, not a scalar", e.span);
                    };
                    let row: usize = row_shape.iter().product();
                    // Row `i` for each index; an index that names no row gives zeros, as a
                    // kernel's load outside a tensor reads them.
                    let data = idx
                        .data
                        .iter()
                        .flat_map(|&i| {
                            let inside = i.fract() == 0.0 && (0.0..rows as f64).contains(&i);
                            (0..row).map(move |c| if inside { x.data[i as usize * row + c] } else { 0.0 })
                        })
                        .collect();
                    let shape = idx.shape.iter().chain(row_shape).copied().collect();
                    Ok(Array { shape, data })
                }
                "transpose" => {
                    want(1)?;
                    if positional[0].shape.len() != 2 {
                        return err(format!("`transpose` swaps the dimensions of a 2-D array, not of shape {:?} (`permute` reorders any)", positional[0].shape), e.span);
                    }
                    rearrange("permute", &positional[0], &[vec![1, 0]]).map_err(|message| Diagnostic::error(message, e.span))
                }
                "reshape" | "permute" | "slice" | "pad" => {
                    let x = &positional[0];
                    let lists: Vec<Vec<usize>> = positional[1..]
                        .iter()
                        .zip(&args[1..])
                        .map(|(list, arg)| whole_numbers(list, name, arg.value.span))
                        .collect::<Result<_, _>>()?;
                    rearrange(name, x, &lists).map_err(|message| Diagnostic::error(message, e.span))
                }
                "cdiv" => {
                    want(2)?;
                    let f = |p: f64, q: f64| if q > 0.0 && p >= 0.0 && p.fract() == 0.0 && q.fract() == 0.0 { (p / q).ceil() } else { f64::NAN };
                    let out = zip_with(&positional[0], &positional[1], f).ok_or_else(|| Diagnostic::error("operand shapes do not broadcast", e.span))?;
                    if out.data.iter().any(|v| v.is_nan()) {
                        return err("`cdiv` takes a whole number and a positive whole number", e.span);
                    }
                    Ok(out)
                }
                _ => err(format!("internal error: the builtin `{name}` has no meaning in references"), callee.span),
            }
        }
        ExprKind::Field(..) | ExprKind::List(_) => err("not allowed in a reference", e.span),
        ExprKind::Error => err("unreadable expression", e.span),
    }
}

/// The dtype a builtin's `<dtype>` names (a dtype parameter resolved through `env`).
fn dtype_argument(dtype: Option<&ast::DTypeRef>, env: &Env, missing: &str, span: Span) -> Result<tl_compiler::dtype::DType, Diagnostic> {
    match dtype {
        None => err(missing, span),
        Some(ast::DTypeRef::Known(d, _)) => Ok(*d),
        Some(ast::DTypeRef::Named(name)) => env.dtypes.get(&name.name).copied().ok_or_else(|| Diagnostic::error(format!("unknown dtype `{}`", name.name), name.span)),
    }
}

/// The entries of a list argument of `name` (a 1-D array from `[..]`) as whole numbers.
fn whole_numbers(list: &Array, name: &str, span: Span) -> Result<Vec<usize>, Diagnostic> {
    if list.shape.len() != 1 {
        return err(format!("`{name}` takes a list here: `[a, b, ..]`"), span);
    }
    list.data
        .iter()
        .map(|&v| {
            if v.is_finite() && v.fract() == 0.0 && (0.0..=1e15).contains(&v) {
                Ok(v as usize)
            } else {
                err(format!("`{name}`: {v} is not a whole number"), span)
            }
        })
        .collect()
}

/// `reshape(x, [shape])` (row-major order kept), `permute(x, [dims])` (result dim i is dim
/// dims[i] of x), `slice(x, [offsets], [shape])` (the block of `shape` at `offsets`) and
/// `pad(x, [shape])` (x in the leading corner of a zero array of `shape`).
fn rearrange(name: &str, x: &Array, lists: &[Vec<usize>]) -> Result<Array, String> {
    match (name, lists) {
        ("reshape", [shape]) => {
            let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if count != Some(x.data.len()) {
                return Err(format!("`reshape` of an array of shape {:?} ({} elements) to {shape:?}", x.shape, x.data.len()));
            }
            Ok(Array { shape: shape.clone(), data: x.data.clone() })
        }
        ("permute", [perm]) => {
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..x.shape.len()).collect::<Vec<_>>() {
                return Err(format!("`permute` of a rank-{} array needs an order of its dims 0..{}, not {perm:?}", x.shape.len(), x.shape.len()));
            }
            let shape: Vec<usize> = perm.iter().map(|&d| x.shape[d]).collect();
            let strides = row_major_strides(&x.shape);
            let mut coords = vec![0; shape.len()];
            let data = (0..x.data.len())
                .map(|flat| {
                    // Result coordinate i is coordinate perm[i] of x.
                    unravel(flat, &shape, &mut coords);
                    x.data[coords.iter().zip(perm).map(|(c, &d)| c * strides[d]).sum::<usize>()]
                })
                .collect();
            Ok(Array { shape, data })
        }
        ("slice", [offsets, shape]) => {
            let inside = offsets.len() == x.shape.len()
                && shape.len() == x.shape.len()
                && (0..shape.len()).all(|d| offsets[d].checked_add(shape[d]).is_some_and(|end| end <= x.shape[d]));
            if !inside {
                return Err(format!("`slice` of shape {shape:?} at {offsets:?} does not fit in an array of shape {:?}", x.shape));
            }
            let strides = row_major_strides(&x.shape);
            let count: usize = shape.iter().product();
            let mut coords = vec![0; shape.len()];
            let data = (0..count)
                .map(|flat| {
                    unravel(flat, shape, &mut coords);
                    x.data[(0..shape.len()).map(|d| (offsets[d] + coords[d]) * strides[d]).sum::<usize>()]
                })
                .collect();
            Ok(Array { shape: shape.clone(), data })
        }
        ("pad", [shape]) => {
            let fits = shape.len() == x.shape.len() && shape.iter().zip(&x.shape).all(|(new, old)| new >= old);
            if !fits {
                return Err(format!("`pad` of an array of shape {:?} to {shape:?} (as many dims, none smaller)", x.shape));
            }
            let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|c| *c <= 1 << 32).ok_or_else(|| format!("`pad` to {shape:?} is too large"))?;
            let mut data = vec![0.0; count];
            let strides = row_major_strides(shape);
            let mut coords = vec![0; x.shape.len()];
            for (flat, v) in x.data.iter().enumerate() {
                unravel(flat, &x.shape, &mut coords);
                data[coords.iter().zip(&strides).map(|(c, s)| c * s).sum::<usize>()] = *v;
            }
            Ok(Array { shape: shape.clone(), data })
        }
        _ => Err(format!("`{name}` takes an array and {} list(s)", if name == "slice" { 2 } else { 1 })),
    }
}

fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// The relative tolerance for comparing a kernel output of `dtype` with its f64 reference.
pub fn tolerance(dtype: tl_compiler::dtype::DType) -> f64 {
    use tl_compiler::dtype::DType;
    match dtype {
        DType::F64 => 1e-9,
        DType::F32 => 1e-4,
        DType::F16 => 1e-2,
        DType::BF16 => 5e-2,
        _ => 0.0,
    }
}

/// Result of comparing an output with its reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub max_abs_error: f64,
    /// The largest `|got − ref| / (|ref| + mean|ref|)`.
    pub max_scaled_error: f64,
    /// Elements outside the tolerance.
    pub mismatches: usize,
    /// The first mismatch: (flat index, got, expected).
    pub first_mismatch: Option<(usize, f64, f64)>,
}

/// Compares `got` with `want` under relative tolerance `rtol`: an element passes when
/// `|got − ref| ≤ rtol · (|ref| + mean|ref|)` (NaN never passes unless both are NaN).
pub fn compare(got: &[f64], want: &[f64], rtol: f64) -> Comparison {
    let mean = want.iter().map(|x| x.abs()).filter(|x| x.is_finite()).sum::<f64>() / want.len().max(1) as f64;
    let mut c = Comparison { max_abs_error: 0.0, max_scaled_error: 0.0, mismatches: 0, first_mismatch: None };
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let both_nan = g.is_nan() && w.is_nan();
        let diff = if both_nan || g == w { 0.0 } else { (g - w).abs() };
        let scale = w.abs() + mean;
        let scaled = if diff == 0.0 { 0.0 } else if scale > 0.0 { diff / scale } else { f64::INFINITY };
        let scaled = if scaled.is_nan() { f64::INFINITY } else { scaled };
        c.max_abs_error = c.max_abs_error.max(if diff.is_nan() { f64::INFINITY } else { diff });
        c.max_scaled_error = c.max_scaled_error.max(scaled);
        if scaled > rtol {
            c.mismatches += 1;
            if c.first_mismatch.is_none() {
                c.first_mismatch = Some((i, *g, *w));
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iota(shape: &[usize]) -> Array {
        let count = shape.iter().product::<usize>();
        Array { shape: shape.to_vec(), data: (0..count).map(|i| i as f64).collect() }
    }

    #[test]
    fn permute_moves_each_element_by_the_definition() {
        // x[i, j, l] = 12 i + 4 j + l; permute [2, 0, 1]: out[l, i, j] = x[i, j, l].
        let x = iota(&[2, 3, 4]);
        let out = rearrange("permute", &x, &[vec![2, 0, 1]]).unwrap();
        assert_eq!(out.shape, vec![4, 2, 3]);
        for l in 0..4 {
            for i in 0..2 {
                for j in 0..3 {
                    assert_eq!(out.data[l * 6 + i * 3 + j], (12 * i + 4 * j + l) as f64);
                }
            }
        }
        assert!(rearrange("permute", &x, &[vec![0, 0, 1]]).unwrap_err().contains("order of its dims"));
    }

    #[test]
    fn pad_puts_the_array_in_the_leading_corner() {
        let x = iota(&[2, 3]);
        let out = rearrange("pad", &x, &[vec![3, 4]]).unwrap();
        assert_eq!(out.data, vec![0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(rearrange("pad", &x, &[vec![1, 4]]).unwrap_err().contains("none smaller"));
    }

    #[test]
    fn slice_and_reshape_by_the_definition() {
        let x = iota(&[4, 5]);
        let out = rearrange("slice", &x, &[vec![1, 2], vec![2, 3]]).unwrap();
        assert_eq!(out.data, vec![7.0, 8.0, 9.0, 12.0, 13.0, 14.0]);
        assert!(rearrange("slice", &x, &[vec![3, 0], vec![2, 1]]).unwrap_err().contains("does not fit"));
        let r = rearrange("reshape", &x, &[vec![2, 10]]).unwrap();
        assert_eq!((r.shape.clone(), r.data.clone()), (vec![2, 10], x.data.clone()));
        assert!(rearrange("reshape", &x, &[vec![3, 7]]).unwrap_err().contains("20 elements"));
    }
}
