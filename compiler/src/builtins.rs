//! The builtin functions of the language, as one table: where each exists (kernels, `reference`
//! blocks), how many positional arguments it takes, its named arguments, whether it takes a
//! dtype (`cast<f16>(x)`), and whether it is a statement of its own (produces no value).
//!
//! Sema checks calls in kernels against it before it types them, the reference checker
//! (`check_reference`) checks calls in `reference` blocks against it, and the evaluator of
//! reference blocks (`tl_runtime::reference`) reads the same rows, so a function's shape of call
//! is written once. docs/language.md describes each function.

/// Where a call is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    /// The body of a kernel: tiles, shared tensors, scalars.
    Kernel,
    /// A `reference NAME { ... }` block: whole arrays in f64.
    Reference,
}

impl Context {
    pub fn describe(self) -> &'static str {
        match self {
            Context::Kernel => "a kernel",
            Context::Reference => "a reference",
        }
    }
}

/// One builtin function in one context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Builtin {
    pub name: &'static str,
    pub context: Context,
    /// The numbers of positional arguments it accepts, smallest first.
    pub arities: &'static [usize],
    /// The named arguments it accepts (`dim = 1`, `pad = 0.0`).
    pub named: &'static [&'static str],
    /// Whether it takes a dtype in angle brackets; without one it takes none.
    pub takes_dtype: bool,
    /// A statement of its own: it produces no value.
    pub statement: bool,
    /// How a call is written, for messages.
    pub usage: &'static str,
}

const fn kernel(name: &'static str, arities: &'static [usize], usage: &'static str) -> Builtin {
    Builtin { name, context: Context::Kernel, arities, named: &[], takes_dtype: false, statement: false, usage }
}

const fn reference(name: &'static str, arities: &'static [usize], usage: &'static str) -> Builtin {
    Builtin { name, context: Context::Reference, arities, named: &[], takes_dtype: false, statement: false, usage }
}

impl Builtin {
    const fn named(mut self, named: &'static [&'static str]) -> Builtin {
        self.named = named;
        self
    }

    const fn dtype(mut self) -> Builtin {
        self.takes_dtype = true;
        self
    }

    const fn statement(mut self) -> Builtin {
        self.statement = true;
        self
    }

    /// "1 argument", "2 or 3 arguments".
    pub fn arity_text(&self) -> String {
        let numbers: Vec<String> = self.arities.iter().map(|n| n.to_string()).collect();
        let text = match numbers.as_slice() {
            [one] => one.clone(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
            [] => "no".to_string(),
        };
        let plural = self.arities != [1];
        format!("{text} argument{}", if plural { "s" } else { "" })
    }
}

/// Every builtin, kernels' first. A name may have a row per context.
pub const BUILTINS: &[Builtin] = &[
    // Memory.
    kernel("load", &[3], "load(tensor, [offsets], [shape], pad = value)").named(&["pad"]),
    kernel("store", &[3], "store(tensor, tile, [offsets])").statement(),
    kernel("atomic_add", &[3], "atomic_add(tensor, tile, [offsets])").statement(),
    kernel("shared", &[1], "shared<dtype>([shape])").dtype(),
    kernel("copy_async", &[4], "copy_async(shared, [offsets], tensor, [offsets])").statement(),
    kernel("commit", &[0], "commit()").statement(),
    kernel("wait", &[1], "wait(n)").statement(),
    kernel("sync", &[0], "sync()").statement(),
    kernel("print", &[1], "print(name)").statement(),
    kernel("require", &[1], "require(condition)").statement(),
    // Tiles.
    kernel("zeros", &[1], "zeros<dtype>([shape])").dtype(),
    kernel("full", &[2], "full<dtype>([shape], value)").dtype(),
    kernel("iota", &[1], "iota<dtype>([shape], dim = d)").dtype().named(&["dim"]),
    kernel("cast", &[1], "cast<dtype>(x)").dtype(),
    kernel("view", &[1], "view<dtype>(x)").dtype(),
    kernel("transpose", &[1], "transpose(x)"),
    kernel("permute", &[2], "permute(x, [dims])"),
    kernel("reshape", &[2], "reshape(x, [shape])"),
    kernel("dot", &[3], "dot(a, b, acc)"),
    kernel("where", &[3], "where(cond, a, b)"),
    kernel("cdiv", &[2], "cdiv(a, b)"),
    kernel("bits", &[0], "bits<dtype>()").dtype(),
    // Math and reductions.
    kernel("exp", &[1], "exp(x, approx = false)").named(&["approx"]),
    kernel("exp2", &[1], "exp2(x, approx = false)").named(&["approx"]),
    kernel("log", &[1], "log(x, approx = false)").named(&["approx"]),
    kernel("log2", &[1], "log2(x, approx = false)").named(&["approx"]),
    kernel("sqrt", &[1], "sqrt(x)").named(&["approx"]),
    kernel("rsqrt", &[1], "rsqrt(x, approx = false)").named(&["approx"]),
    kernel("sigmoid", &[1], "sigmoid(x, approx = false)").named(&["approx"]),
    kernel("tanh", &[1], "tanh(x, approx = false)").named(&["approx"]),
    kernel("sin", &[1], "sin(x, approx = false)").named(&["approx"]),
    kernel("cos", &[1], "cos(x, approx = false)").named(&["approx"]),
    kernel("erf", &[1], "erf(x)").named(&["approx"]),
    kernel("pow", &[2], "pow(x, y, approx = false)").named(&["approx"]),
    kernel("abs", &[1], "abs(x)"),
    kernel("sum", &[1], "sum(x, dim = d)").named(&["dim"]),
    kernel("max", &[1, 2], "max(x, dim = d) or max(a, b)").named(&["dim"]),
    kernel("min", &[1, 2], "min(x, dim = d) or min(a, b)").named(&["dim"]),
    kernel("clamp", &[3], "clamp(x, lo, hi)"),
    // References: whole arrays in f64.
    reference("exp", &[1], "exp(x)"),
    reference("exp2", &[1], "exp2(x)"),
    reference("log", &[1], "log(x)"),
    reference("log2", &[1], "log2(x)"),
    reference("sqrt", &[1], "sqrt(x)"),
    reference("rsqrt", &[1], "rsqrt(x)"),
    reference("sigmoid", &[1], "sigmoid(x)"),
    reference("tanh", &[1], "tanh(x)"),
    reference("sin", &[1], "sin(x)"),
    reference("cos", &[1], "cos(x)"),
    reference("erf", &[1], "erf(x)"),
    reference("pow", &[2], "pow(x, y)"),
    reference("abs", &[1], "abs(x)"),
    reference("sum", &[1], "sum(x, dim = d)").named(&["dim"]),
    reference("max", &[1, 2], "max(x, dim = d) or max(a, b)").named(&["dim"]),
    reference("min", &[1, 2], "min(x, dim = d) or min(a, b)").named(&["dim"]),
    reference("clamp", &[3], "clamp(x, lo, hi)"),
    reference("where", &[3], "where(cond, a, b)"),
    reference("cast", &[1], "cast<dtype>(x)").dtype(),
    reference("matmul", &[2], "matmul(a, b)"),
    reference("transpose", &[1], "transpose(x)"),
    reference("repeat", &[2], "repeat(x, r, dim = d)").named(&["dim"]),
    reference("repeat_rows", &[3], "repeat_rows(x, group, rows)"),
    reference("reshape", &[2], "reshape(x, [shape])"),
    reference("permute", &[2], "permute(x, [dims])"),
    reference("slice", &[3], "slice(x, [offsets], [shape])"),
    reference("gather", &[2], "gather(x, indices)"),
    reference("pad", &[2], "pad(x, [shape])"),
    reference("cdiv", &[2], "cdiv(a, b)"),
    reference("bits", &[0], "bits<dtype>()").dtype(),
    reference("iota", &[1], "iota<dtype>([shape], dim = d)").dtype().named(&["dim"]),
];

/// Whether the reference builtin `name` takes lists (`[..]`) as arguments: shapes, dimension
/// orders, offsets.
pub fn takes_lists(name: &str) -> bool {
    matches!(name, "reshape" | "permute" | "slice" | "pad" | "iota")
}

/// The builtin `name` in `context`, if there is one.
pub fn lookup(name: &str, context: Context) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name && b.context == context)
}

/// The names of the builtins of `context`, in table order, once each.
pub fn names(context: Context) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for b in BUILTINS.iter().filter(|b| b.context == context) {
        if !names.contains(&b.name) {
            names.push(b.name);
        }
    }
    names
}

/// The diagnostic for a call of `name`, which `context` does not have, at `span`: it says where
/// the function exists instead, or suggests a near name and lists the context's functions.
pub fn unknown_function(name: &str, context: Context, span: crate::diagnostics::Span) -> crate::diagnostics::Diagnostic {
    use crate::diagnostics::Diagnostic;
    let elsewhere = [Context::Kernel, Context::Reference].into_iter().find(|c| *c != context && lookup(name, *c).is_some());
    if let Some(other) = elsewhere {
        return Diagnostic::error(format!("`{name}` exists in {} but not in {}", other.describe(), context.describe()), span);
    }
    let near = names(context).into_iter().filter(|n| edit_distance(n, name) <= 2).min_by_key(|n| edit_distance(n, name));
    let message = match near {
        Some(near) => format!("unknown function `{name}`; did you mean `{near}`?"),
        None => format!("unknown function `{name}`"),
    };
    Diagnostic::error(message, span).with_note(format!("{} has: {}", context.describe(), names(context).join(", ")))
}

/// The number of single-character insertions, deletions and substitutions between two names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Why a call of `builtin` with `positional` positional arguments, the named arguments `named`
/// and a dtype or not does not fit its row, if it does not (the first problem found).
pub fn check_call(builtin: &Builtin, positional: usize, named: &[&str], has_dtype: bool) -> Result<(), CallError> {
    if let Some(index) = named.iter().position(|n| !builtin.named.contains(n)) {
        return Err(CallError::UnknownNamed { message: format!("`{}` has no argument named `{}`", builtin.name, named[index]), index });
    }
    if builtin.takes_dtype != has_dtype {
        return Err(CallError::Dtype(if builtin.takes_dtype {
            format!("`{}` needs a dtype: `{}<f32>(...)`", builtin.name, builtin.name)
        } else {
            format!("`{}` takes no dtype argument", builtin.name)
        }));
    }
    if !builtin.arities.contains(&positional) {
        return Err(CallError::Arity(format!("`{}` takes {}, found {positional}: {}", builtin.name, builtin.arity_text(), builtin.usage)));
    }
    Ok(())
}

/// What is wrong with a call, by the part of the call it concerns (so the caller can point at
/// that part).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The named argument at `index` of the call's named arguments is not one of the function's.
    UnknownNamed { message: String, index: usize },
    Dtype(String),
    Arity(String),
}

impl CallError {
    pub fn message(&self) -> &str {
        match self {
            CallError::UnknownNamed { message: m, .. } | CallError::Dtype(m) | CallError::Arity(m) => m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_unique_and_well_formed() {
        for (i, b) in BUILTINS.iter().enumerate() {
            assert!(BUILTINS[..i].iter().all(|o| (o.name, o.context) != (b.name, b.context)), "{} twice", b.name);
            assert!(b.arities.windows(2).all(|w| w[0] < w[1]), "{}", b.name);
            assert!(b.usage.starts_with(b.name), "{}: {}", b.name, b.usage);
            assert!(!(b.statement && b.context == Context::Reference), "{}", b.name);
        }
    }

    #[test]
    fn calls_are_checked_part_by_part() {
        let load = lookup("load", Context::Kernel).unwrap();
        assert_eq!(check_call(load, 3, &["pad"], false), Ok(()));
        assert!(matches!(check_call(load, 3, &["dim"], false), Err(CallError::UnknownNamed { message: m, index: 0 }) if m.contains("no argument named `dim`")));
        assert!(matches!(check_call(load, 2, &[], false), Err(CallError::Arity(m)) if m == "`load` takes 3 arguments, found 2: load(tensor, [offsets], [shape], pad = value)"));
        let cast = lookup("cast", Context::Reference).unwrap();
        assert!(matches!(check_call(cast, 1, &[], false), Err(CallError::Dtype(m)) if m.contains("needs a dtype")));
        let max = lookup("max", Context::Kernel).unwrap();
        assert_eq!(max.arity_text(), "1 or 2 arguments");
        assert!(matches!(check_call(max, 3, &[], false), Err(CallError::Arity(m)) if m.contains("takes 1 or 2 arguments, found 3")));
        let at = crate::diagnostics::Span::new(0, 1);
        assert_eq!(unknown_function("matmul", Context::Kernel, at).message, "`matmul` exists in a reference but not in a kernel");
        let unknown = unknown_function("frobnicate", Context::Reference, at);
        assert_eq!(unknown.message, "unknown function `frobnicate`");
        assert!(unknown.notes[0].starts_with("a reference has: exp, exp2,"), "{:?}", unknown.notes);
        assert_eq!(unknown_function("sums", Context::Kernel, at).message, "unknown function `sums`; did you mean `sum`?");
        assert_eq!(edit_distance("copy_asnyc", "copy_async"), 2);
    }
}
