//! The filetests: one case a file under `tests/filetests/KIND/`, each reported as its own test
//! (`cargo test -p tl-tests --test filetests -- errors/` runs one kind). Expectations that are
//! snapshots of the compiler's output live beside the case and are rewritten by `TL_BLESS=1`.
//!
//! * `errors/NAME.tl`: every `// error: TEXT` marker must be reported on its line (several per
//!   line allowed) and nothing else may be (files that pass sema are compiled through
//!   lowering); the rendered diagnostics are compared with `NAME.stderr`.
//! * `ir/NAME.tl`: the block IR with layouts of every kernel, compared with `NAME.ir`.
//! * `lower/NAME.tl`: the thread-level IR of every kernel, compared with `NAME.lir`; it must
//!   also verify, parse back to the same text. `lower/NAME.ir` starts from block IR with
//!   layouts (after a header of `// ` lines), which must parse, print back as written and
//!   verify, and lowers to `NAME.lir`.
//! * `lir/NAME.lir`: a thread-level program written by hand, after a header of `// ` comment
//!   lines. It must parse and print back to the same text; each `// verify-error: TEXT` line
//!   of the header names an error the verifier must report, and without one the program must
//!   verify.
//! * `run/NAME.tl`: the first kernel runs on the VM, the simulator and the cpu backend with
//!   seeded random inputs; the cpu backend must give the simulator's bits, and the VM and the
//!   simulator must agree (integers and bools bit for bit, floats within
//!   1e-4 · (1 + |x|), for `dot`s accumulated in another order on tensor cores). A header line
//!   `// run: OPTIONS` takes `--seed S`, `--arg NAME=V` and `--small-integers` (integer inputs
//!   of 8 bits and more drawn in -8..8, or 0..16 unsigned). The reproductions of bugs the
//!   program generator found live here.

use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};
use tl_compiler::diagnostics::{line_col, render_all, Diagnostic};
use tl_compiler::{driver, sema};
use tl_runtime::{Arg, Backend, Module};
use tl_tests::repo_root;

/// Each kind and the extensions of its cases.
const KINDS: [(&str, &[&str]); 5] = [("errors", &["tl"]), ("ir", &["tl"]), ("lower", &["tl", "ir"]), ("lir", &["lir"]), ("run", &["tl"])];

fn main() {
    let args = Arguments::from_args();
    let root = repo_root().join("tests/filetests");
    let mut trials = Vec::new();
    for (kind, extensions) in KINDS {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(kind))
            .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| extensions.iter().any(|e| x == *e))).collect())
            .unwrap_or_default();
        files.sort();
        assert!(!files.is_empty(), "no {kind} filetests in {}", root.join(kind).display());
        for path in files {
            let name = format!("{kind}/{}", path.file_name().unwrap().to_string_lossy());
            trials.push(Trial::test(name, move || run_case(kind, &path)));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn run_case(kind: &str, path: &Path) -> Result<(), Failed> {
    let source = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match kind {
        "errors" => errors(path, &source),
        "ir" => snapshot(path, "ir", &compiled(path, &source)?.iter().map(|c| tl_compiler::ir::print::kernel_to_string(&c.kernel)).collect::<String>()),
        "lower" if path.extension().is_some_and(|x| x == "ir") => lower_block_ir(path, &source),
        "lower" => lower(path, &source),
        "lir" => lir(&source),
        "run" => run(path, &source),
        _ => Err(format!("unknown filetest kind `{kind}`").into()),
    }
}

/// Compares `actual` with the expectation file beside the case (`TL_BLESS=1` rewrites it).
fn snapshot(path: &Path, extension: &str, actual: &str) -> Result<(), Failed> {
    let expected_path = path.with_extension(extension);
    if std::env::var_os("TL_BLESS").is_some() {
        std::fs::write(&expected_path, actual).map_err(|e| format!("{}: {e}", expected_path.display()))?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(&expected_path).map_err(|_| format!("missing {}; run with TL_BLESS=1", expected_path.display()))?;
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(expected.lines().count().min(actual.lines().count()));
        return Err(format!(
            "{} differs from the output (TL_BLESS=1 to accept), first at line {}:\n  expected: {}\n  actual:   {}",
            expected_path.display(),
            first + 1,
            expected.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>")
        )
        .into());
    }
    Ok(())
}

/// The path as the rendered diagnostics show it (relative to the repository).
fn display_path(path: &Path) -> String {
    path.strip_prefix(repo_root()).unwrap_or(path).display().to_string()
}

/// Every kernel of the file compiled to LIR, in order.
fn compiled(path: &Path, source: &str) -> Result<Vec<driver::Compiled>, Failed> {
    let file = driver::check(source).map_err(|e| render_all(&e.diagnostics, &display_path(path), source))?;
    let names: Vec<String> = file.items.iter().filter_map(|i| if let tl_compiler::syntax::ast::Item::Kernel(k) = i { Some(k.name.name.clone()) } else { None }).collect();
    if names.is_empty() {
        return Err("the file has no kernel".into());
    }
    names.iter().map(|n| driver::compile(&file, Some(n), &[]).map_err(|e| render_all(&e.diagnostics, &display_path(path), source).into())).collect()
}

fn lower(path: &Path, source: &str) -> Result<(), Failed> {
    let mut text = String::new();
    for c in compiled(path, source)? {
        tl_compiler::lir::verify::verify(&c.lir).map_err(|e| format!("{}: {e:?}", c.kernel.name))?;
        let lir = c.lir.to_string();
        let parsed = tl_compiler::lir::parse::parse(&lir).map_err(|e| format!("{}: the LIR does not parse back: {e}", c.kernel.name))?;
        if parsed.to_string() != lir {
            return Err(format!("{}: the LIR text changes through a parse", c.kernel.name).into());
        }
        text.push_str(&lir);
    }
    snapshot(path, "lir", &text)
}

/// A `lower` case that starts from block IR with layouts (after a header of `// ` lines): it
/// must parse, print back as written, verify, and lower to the LIR in `NAME.lir`.
fn lower_block_ir(path: &Path, source: &str) -> Result<(), Failed> {
    let (_, text) = header(source);
    let kernel = tl_compiler::ir::parse::parse(&text).map_err(|e| format!("parse error (line numbers count from the `kernel` line): {e}"))?;
    let printed = tl_compiler::ir::print::kernel_to_string(&kernel);
    if printed != text {
        return Err(format!("the kernel does not print back as written; it prints as:\n{printed}").into());
    }
    tl_compiler::ir::verify::verify(&kernel, true).map_err(|e| format!("the kernel does not verify: {e:?}"))?;
    let lir = tl_compiler::lower::lower(&kernel).map_err(|e| format!("lowering fails: {e:?}"))?;
    tl_compiler::lir::verify::verify(&lir).map_err(|e| format!("{e:?}"))?;
    snapshot(path, "lir", &lir.to_string())
}

fn diagnostics_of(source: &str) -> Vec<Diagnostic> {
    match driver::parse(source) {
        Err(e) => e.diagnostics,
        Ok(file) => {
            let diagnostics = sema::check_file(&file);
            if !diagnostics.is_empty() {
                return diagnostics;
            }
            // Sema is clean: the later stages (layout inference, lowering) report their own.
            file.items
                .iter()
                .filter_map(|i| if let tl_compiler::syntax::ast::Item::Kernel(k) = i { Some(k.name.name.clone()) } else { None })
                .flat_map(|name| driver::compile(&file, Some(&name), &[]).err().map(|e| e.diagnostics).unwrap_or_default())
                .collect()
        }
    }
}

fn errors(path: &Path, source: &str) -> Result<(), Failed> {
    let mut expected: Vec<(usize, String)> = Vec::new();
    for (i, line) in source.lines().enumerate() {
        for part in line.split("// error: ").skip(1) {
            expected.push((i + 1, part.trim().to_string()));
        }
    }
    if expected.is_empty() {
        return Err("an errors case marks at least one `// error: TEXT`".into());
    }
    let diags = diagnostics_of(source);
    let mut unmatched: Vec<&Diagnostic> = diags.iter().collect();
    for (line, text) in &expected {
        let position = unmatched
            .iter()
            .position(|d| d.message.contains(text.as_str()) && d.span.is_some_and(|s| line_col(source, s.start).0 == *line));
        match position {
            Some(p) => {
                unmatched.remove(p);
            }
            None => return Err(format!("line {line}: expected an error containing `{text}`; got {diags:#?}").into()),
        }
    }
    if !unmatched.is_empty() {
        return Err(format!("unexpected diagnostics {unmatched:#?}").into());
    }
    snapshot(path, "stderr", &render_all(&diags, &display_path(path), source))
}

/// The `// ` header lines before the program, and the program text.
fn header(source: &str) -> (Vec<&str>, String) {
    let mut lines = source.lines();
    let mut header = Vec::new();
    let mut rest = String::new();
    for line in lines.by_ref() {
        match line.strip_prefix("//") {
            Some(comment) => header.push(comment.trim()),
            None => {
                rest.push_str(line);
                rest.push('\n');
                break;
            }
        }
    }
    for line in lines {
        rest.push_str(line);
        rest.push('\n');
    }
    (header, rest)
}

fn lir(source: &str) -> Result<(), Failed> {
    let (header, text) = header(source);
    let program = tl_compiler::lir::parse::parse(&text).map_err(|e| format!("parse error (line numbers count from the `lir` line): {e}"))?;
    if program.to_string() != text {
        return Err(format!("the program does not print back as written; it prints as:\n{program}").into());
    }
    let wanted: Vec<&str> = header.iter().filter_map(|l| l.strip_prefix("verify-error:")).map(str::trim).collect();
    match (tl_compiler::lir::verify::verify(&program), wanted.is_empty()) {
        (Ok(()), true) => Ok(()),
        (Ok(()), false) => Err(format!("the program verifies, but the verifier should report {wanted:?}").into()),
        (Err(errors), true) => Err(format!("the verifier reports {:?}", errors.iter().map(ToString::to_string).collect::<Vec<_>>()).into()),
        (Err(errors), false) => {
            let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
            for want in &wanted {
                if !texts.iter().any(|t| t.contains(want)) {
                    return Err(format!("the verifier should report `{want}`; it reports {texts:?}").into());
                }
            }
            if texts.len() != wanted.len() {
                return Err(format!("the verifier reports {} errors, the case names {}: {texts:?}", texts.len(), wanted.len()).into());
            }
            Ok(())
        }
    }
}

/// Options of a `run` case.
struct RunOptions {
    seed: u64,
    sizes: Vec<(String, i64)>,
    small_integers: bool,
}

fn run_options(source: &str) -> Result<RunOptions, Failed> {
    let mut options = RunOptions { seed: 1, sizes: Vec::new(), small_integers: false };
    for line in source.lines().filter_map(|l| l.trim().strip_prefix("// run:")) {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            match w {
                "--seed" => options.seed = words.next().and_then(|s| s.parse().ok()).ok_or("--seed takes a number")?,
                "--arg" => {
                    let (n, v) = words.next().and_then(|a| a.split_once('=')).ok_or("--arg takes NAME=VALUE")?;
                    options.sizes.push((n.to_string(), v.parse().map_err(|_| format!("--arg {n}: `{v}` is not an integer"))?));
                }
                "--small-integers" => options.small_integers = true,
                _ => return Err(format!("unknown run option `{w}`").into()),
            }
        }
    }
    Ok(options)
}

/// Integer inputs of 8 bits and more redrawn in -8..8 (signed) or 0..16 (unsigned): programs
/// minimized from generated ones keep their integer arithmetic from overflowing only for
/// inputs in those ranges.
fn small_integer_inputs(kernel: &tl_runtime::Kernel, args: &mut [Arg], seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (p, a) in kernel.compiled.kernel.params.iter().zip(args.iter_mut()) {
        let (tl_compiler::ir::ParamKind::Global { mutable: false, .. }, Arg::Tensor(t)) = (&p.kind, a) else { continue };
        if t.dtype.is_int() && t.dtype.bits() >= 8 {
            let signed = t.dtype.is_signed_int();
            for i in 0..t.len() {
                t.set(i, if signed { rng.random_range(-8..8) as f64 } else { rng.random_range(0..16) as f64 });
            }
        }
    }
}

fn run(path: &Path, source: &str) -> Result<(), Failed> {
    let options = run_options(source)?;
    let kernel = Module::from_source(&display_path(path), source).and_then(|m| m.kernel(None, &[])).map_err(|e| e.to_string())?;
    let mut args = kernel.random_args(options.seed, &options.sizes).map_err(|e| e.to_string())?;
    if options.small_integers {
        small_integer_inputs(&kernel, &mut args, options.seed);
    }
    let (mut vm, mut simt, mut cpu) = (args.clone(), args.clone(), args);
    kernel.launch(Backend::Vm, &mut vm).map_err(|e| format!("vm: {e}"))?;
    kernel.launch(Backend::Simt, &mut simt).map_err(|e| format!("simt: {e}"))?;
    kernel.launch(Backend::Cpu, &mut cpu).map_err(|e| format!("cpu: {e}"))?;
    let mut report = String::new();
    // The cpu backend computes the simulator's bits (NaN payloads aside).
    for (p, (a, b)) in kernel.compiled.kernel.params.iter().zip(cpu.iter().zip(&simt)) {
        let (Some(a), Some(b)) = (a.tensor(), b.tensor()) else { continue };
        if let Some(i) = (0..a.len()).find(|&i| a.code(i) != b.code(i) && !(a.get(i).is_nan() && b.get(i).is_nan())) {
            report.push_str(&format!("`{}` differs between cpu and simt at [{i}]: cpu {} simt {}; ", p.name, a.get(i), b.get(i)));
        }
    }
    for (p, (a, b)) in kernel.compiled.kernel.params.iter().zip(vm.iter().zip(&simt)) {
        let (Some(a), Some(b)) = (a.tensor(), b.tensor()) else { continue };
        let agree = |i: usize| {
            let (x, y) = (a.get(i), b.get(i));
            a.code(i) == b.code(i) || (x.is_nan() && y.is_nan()) || (a.dtype.is_float() && (x - y).abs() <= 1e-4 * (1.0 + x.abs()))
        };
        let diffs: Vec<String> = (0..a.len()).filter(|&i| !agree(i)).take(6).map(|i| format!("[{i}] vm {} simt {}", a.get(i), b.get(i))).collect();
        if !diffs.is_empty() {
            report.push_str(&format!("`{}` differs: {}; ", p.name, diffs.join(", ")));
        }
    }
    if report.is_empty() { Ok(()) } else { Err(report.into()) }
}
