//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz), kept here so that the ordinary test
//! suite can replay every saved input (`tests/tests/fuzz_corpus.rs`) without libFuzzer. Each
//! takes arbitrary bytes and must return, without panicking, hanging or allocating without
//! bound, whatever they are: errors are fine, crashes are bugs.

use tl_compiler::diagnostics::render_all;
use tl_compiler::driver;
use tl_compiler::syntax::{lexer, parser};
use tl_runtime::{Backend, Module};

/// A fuzz target: its name, its body and the corpus folder it reads.
pub type Target = (&'static str, fn(&[u8]), &'static str);

/// The targets by name (`fuzz/fuzz_targets/NAME.rs`) with the folder of `fuzz/corpus/` that
/// holds their inputs: the four that read a source share `source`.
pub const TARGETS: [Target; 9] = [
    ("lex", lex, "source"),
    ("parse", parse, "source"),
    ("check", check, "source"),
    ("compile", compile, "source"),
    ("run", run, "run"),
    ("npy", npy, "npy"),
    ("tlt", tlt, "tlt"),
    ("ir_text", ir_text, "ir_text"),
    ("lir_text", lir_text, "lir_text"),
];

/// The block IR's text form: a kernel that parses prints back to text that parses to the same
/// text, and the verifier (with and without layouts) and the plan verifier answer without a
/// panic.
pub fn ir_text(data: &[u8]) {
    use tl_compiler::ir::{parse::parse, print::kernel_to_string, verify::verify};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(kernel) = parse(text) else { return };
    let printed = kernel_to_string(&kernel);
    let again = parse(&printed).unwrap_or_else(|e| panic!("printed block IR does not parse: {e}\n{printed}"));
    assert_eq!(kernel_to_string(&again), printed, "block IR text is not stable through a parse");
    let _ = verify(&kernel, false);
    if verify(&kernel, true).is_ok() {
        let _ = tl_compiler::ir::plan::verify_plan(&kernel);
    }
}

/// The LIR's text form: a program that parses prints back to text that parses to the same
/// text, and the verifier answers without a panic.
pub fn lir_text(data: &[u8]) {
    use tl_compiler::lir::{parse::parse, verify::verify};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(program) = parse(text) else { return };
    let printed = program.to_string();
    let again = parse(&printed).unwrap_or_else(|e| panic!("printed LIR does not parse: {e}\n{printed}"));
    assert_eq!(again.to_string(), printed, "LIR text is not stable through a parse");
    let _ = verify(&program);
}

/// Lexing never fails hard.
pub fn lex(data: &[u8]) {
    if let Ok(source) = parser::decode_source(data) {
        let _ = lexer::lex(source);
    }
}

/// Parsing with recovery, and rendering what it reports.
pub fn parse(data: &[u8]) {
    if let Ok(source) = parser::decode_source(data) {
        let (_, diagnostics) = parser::parse(source);
        let _ = render_all(&diagnostics, "fuzz.tl", source);
    }
}

/// Parsing and semantic checks of every kernel.
pub fn check(data: &[u8]) {
    if let Ok(source) = parser::decode_source(data)
        && let Err(e) = driver::check(source)
    {
        let _ = render_all(&e.diagnostics, "fuzz.tl", source);
    }
}

/// Every kernel through layout inference and lowering to the thread-level IR, errors rendered.
pub fn compile(data: &[u8]) {
    let Ok(source) = parser::decode_source(data) else { return };
    let Ok(module) = Module::from_source("fuzz.tl", source) else { return };
    for name in module.kernel_names() {
        let _ = module.kernel(Some(&name), &[]);
    }
}

/// The first byte seeds the arguments, the rest is a source: its first kernel runs on the VM and
/// on the simulator with random arguments of small sizes (1 to 64, at most 64 MiB of tensors),
/// when its grid has at most 16 blocks.
pub fn run(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else { return };
    let Ok(source) = parser::decode_source(rest) else { return };
    let Ok(module) = Module::from_source("fuzz.tl", source) else { return };
    let Ok(kernel) = module.kernel(None, &[]) else { return };
    let sizes: Vec<(String, i64)> = kernel
        .compiled
        .kernel
        .params
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.kind, tl_compiler::ir::ParamKind::Scalar(d) if d.is_int()))
        .map(|(i, p)| (p.name.clone(), 1 + (seed as i64 * 31 + i as i64 * 17) % 64))
        .collect();
    let Ok(args) = kernel.random_args_within(seed as u64, &sizes, 64 << 20) else { return };
    let Ok(grid) = tl_vm::interp::eval_grid(&kernel.compiled.kernel, &args) else { return };
    if grid.iter().map(|&g| g as u64).product::<u64>() > 16 {
        return;
    }
    for backend in [Backend::Vm, Backend::Simt] {
        let mut a = args.clone();
        let _ = kernel.launch(backend, &mut a);
    }
}

/// `.npy` reading.
pub fn npy(data: &[u8]) {
    let _ = tl_runtime::npy::read_npy(data);
}

/// `.tlt` reading.
pub fn tlt(data: &[u8]) {
    let _ = tl_runtime::tensor_file::read_tlt(data);
}
