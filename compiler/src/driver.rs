//! The compilation pipeline in one place: source → AST → block IR → passes → LIR (→ PTX in
//! `backend`). Each stage's output is available for `--emit` and for tests.

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

/// Runs the block-IR passes, verifying after each one.
pub fn optimize(mut kernel: Kernel) -> Result<Kernel, CompileError> {
    let diagnostics = passes::infer_layouts::infer_layouts(&mut kernel);
    if !diagnostics.is_empty() {
        return Err(diagnostics.into());
    }
    if let Err(errors) = ir::verify::verify(&kernel, true) {
        return Err(Diagnostic::error_nowhere(format!(
            "internal compiler error after layout inference: {}",
            errors.join("; ")
        ))
        .into());
    }
    Ok(kernel)
}

/// Source → block IR with layouts → LIR.
pub fn compile(file: &ast::File, kernel: Option<&str>, consts: &[(String, ir::ConstValue)]) -> Result<Compiled, CompileError> {
    let kernel = optimize(block_ir(file, kernel, consts)?)?;
    let lir = lower::lower(&kernel).map_err(|e| e.to_diagnostic())?;
    check_lir(&lir)?;
    Ok(Compiled { kernel, lir })
}

/// Runs the LIR verifier on what the lowering produced, in debug builds (every test): the code
/// generators and the simulator only ever receive LIR that comes through here. A violation is
/// an internal compiler error, reported at the source instruction the faulty statement
/// implements.
fn check_lir(program: &Program) -> Result<(), CompileError> {
    if !cfg!(debug_assertions) {
        return Ok(());
    }
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
