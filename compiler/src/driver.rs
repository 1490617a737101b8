//! The compilation pipeline in one place: source → AST → block IR → passes → LIR (→ PTX by a
//! code generator, `backend::CodeGenerator`). Each stage's output is available for `--emit`
//! and for tests.
//!
//! [`compile_with`] runs the passes through a [`PassManager`]: it times each pass, keeps the IR
//! printed after the passes asked for (`tlc compile --print-after PASS`, `--time`), and runs
//! the verifier of the IR a pass produces before the next pass sees it (the block-IR verifier
//! after `sema` and each block-IR pass, the plan verifier after the planning passes, the LIR
//! verifier after `lower`).

use crate::diagnostics::Diagnostic;
use crate::ir::{self, Kernel};
use crate::lir::Program;
use crate::syntax::{ast, parser};
use crate::{lower, passes, sema};

/// Everything that went wrong, already positioned in the source; render with
/// `diagnostics::render_all`.
#[derive(Debug, thiserror::Error)]
#[error("{} error(s) in the kernel source", diagnostics.len())]
pub struct CompileError {
    pub diagnostics: Vec<Diagnostic>,
}

impl From<Diagnostic> for CompileError {
    fn from(d: Diagnostic) -> Self {
        CompileError { diagnostics: vec![d] }
    }
}

impl From<Vec<Diagnostic>> for CompileError {
    fn from(diagnostics: Vec<Diagnostic>) -> Self {
        CompileError { diagnostics }
    }
}

/// Parses a file; fails if there was any lexing or parsing error.
pub fn parse(source: &str) -> Result<ast::File, CompileError> {
    let (file, diagnostics) = parser::parse(source);
    if diagnostics.is_empty() { Ok(file) } else { Err(diagnostics.into()) }
}

/// Parses and checks every kernel of a file (with default compile-time parameters).
pub fn check(source: &str) -> Result<ast::File, CompileError> {
    let file = parse(source)?;
    let diagnostics = sema::check_file(&file);
    if diagnostics.is_empty() { Ok(file) } else { Err(diagnostics.into()) }
}

/// A kernel compiled down to the thread-level IR.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// Block IR with layouts assigned.
    pub kernel: Kernel,
    /// The unspecialized variant (assumes nothing about the runtime scalars).
    pub lir: Program,
}

impl Compiled {
    /// The LIR of the variant that may rely on `assumptions` about the runtime integer scalars
    /// (see `passes::divisibility`); the unspecialized one when nothing is assumed.
    pub fn variant(&self, assumptions: &passes::divisibility::Assumptions) -> Result<Program, CompileError> {
        if assumptions.is_none() {
            return Ok(self.lir.clone());
        }
        let program = lower::lower_with(&self.kernel, assumptions).map_err(|e| e.to_diagnostic())?;
        check_lir(&program)?;
        Ok(program)
    }
}

/// Block IR of one kernel (layouts not yet assigned).
pub fn block_ir(file: &ast::File, kernel: Option<&str>, consts: &[(String, ir::ConstValue)]) -> Result<Kernel, CompileError> {
    let k = sema::find_kernel(file, kernel)?;
    Ok(sema::lower_kernel_in(file, k, consts)?)
}

/// Runs the block-IR passes (layout inference, instruction selection, shared-memory planning),
/// verifying after each one.
pub fn optimize(kernel: Kernel) -> Result<Kernel, CompileError> {
    optimize_with(kernel, &mut PassManager::default())
}

fn optimize_with(mut kernel: Kernel, passes: &mut PassManager) -> Result<Kernel, CompileError> {
    type Pass = fn(&mut Kernel) -> Vec<Diagnostic>;
    let block_passes: [(&str, Pass); 3] = [
        ("infer-layouts", passes::infer_layouts::infer_layouts),
        ("select-instructions", passes::select_instructions::select_instructions),
        ("plan-shared-memory", passes::plan_shared_memory::plan_shared_memory),
    ];
    for (name, run) in block_passes {
        passes.pass(name, || {
            let diagnostics = run(&mut kernel);
            if diagnostics.is_empty() { Ok(()) } else { Err(diagnostics.into()) }
        })?;
        verify_block_ir(&kernel, true, name)?;
        passes.after(name, || ir::print::kernel_to_string(&kernel));
    }
    ir::plan::verify_plan(&kernel).map_err(|errors| {
        Diagnostic::error_nowhere(format!("internal compiler error after plan-shared-memory: {}", errors.join("; ")))
    })?;
    Ok(kernel)
}

/// The passes of [`compile_with`], in order, as `--print-after` and `--time` name them.
pub const PASSES: [&str; 5] = ["sema", "infer-layouts", "select-instructions", "plan-shared-memory", "lower"];

/// Runs the passes of a compilation: times each, keeps the text of the IR after the passes
/// named in `print_after`, and verifies what each pass produces (always for the block IR; the
/// LIR verifier in debug builds, or when `verify_lir` asks for it in release builds).
#[derive(Debug, Default)]
pub struct PassManager {
    /// Names from [`PASSES`] whose output to keep in `printed`.
    pub print_after: Vec<String>,
    /// Run the LIR verifier in release builds too.
    pub verify_lir: bool,
    /// `(pass, IR text after it)`, in the order the passes ran.
    pub printed: Vec<(String, String)>,
    /// `(pass, time)`, in the order the passes ran.
    pub timings: Vec<(String, std::time::Duration)>,
}

impl PassManager {
    fn pass<T>(&mut self, name: &str, run: impl FnOnce() -> Result<T, CompileError>) -> Result<T, CompileError> {
        let start = std::time::Instant::now();
        let result = run();
        self.timings.push((name.to_string(), start.elapsed()));
        result
    }

    fn after(&mut self, name: &str, text: impl FnOnce() -> String) {
        if self.print_after.iter().any(|p| p == name) {
            self.printed.push((name.to_string(), text()));
        }
    }
}

/// Source → block IR with layouts → LIR.
pub fn compile(file: &ast::File, kernel: Option<&str>, consts: &[(String, ir::ConstValue)]) -> Result<Compiled, CompileError> {
    compile_with(file, kernel, consts, &mut PassManager::default())
}

/// [`compile`], with the passes run by `passes`.
pub fn compile_with(file: &ast::File, kernel: Option<&str>, consts: &[(String, ir::ConstValue)], passes: &mut PassManager) -> Result<Compiled, CompileError> {
    let kernel = passes.pass("sema", || block_ir(file, kernel, consts))?;
    verify_block_ir(&kernel, false, "sema")?;
    passes.after("sema", || ir::print::kernel_to_string(&kernel));
    let kernel = optimize_with(kernel, passes)?;
    let lir = passes.pass("lower", || lower::lower(&kernel).map_err(|e| e.to_diagnostic().into()))?;
    if passes.verify_lir || cfg!(debug_assertions) {
        verify_lir(&lir)?;
    }
    passes.after("lower", || lir.to_string());
    Ok(Compiled { kernel, lir })
}

/// The block-IR verifier after `pass`: a violation is an internal compiler error.
fn verify_block_ir(kernel: &Kernel, require_layouts: bool, pass: &str) -> Result<(), CompileError> {
    ir::verify::verify(kernel, require_layouts).map_err(|errors| {
        Diagnostic::error_nowhere(format!("internal compiler error after {pass}: {}", errors.join("; "))).into()
    })
}

/// Runs the LIR verifier on what the lowering produced, in debug builds (every test): the code
/// generators and the simulator only ever receive LIR that comes through here. A violation is
/// an internal compiler error, reported at the source instruction the faulty statement
/// implements.
fn check_lir(program: &Program) -> Result<(), CompileError> {
    if !cfg!(debug_assertions) {
        return Ok(());
    }
    verify_lir(program)
}

/// The LIR verifier: a violation is an internal compiler error at the source instruction.
fn verify_lir(program: &Program) -> Result<(), CompileError> {
    crate::lir::verify::verify(program).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| {
                let message = format!("internal compiler error: invalid thread-level IR for `{}`: {}", program.name, e.kind);
                match e.source {
                    Some((span, what)) => Diagnostic::error(message, span).with_note(format!("in the code for `{what}`")),
                    None => Diagnostic::error_nowhere(message),
                }
            })
            .collect::<Vec<_>>()
            .into()
    })
}
