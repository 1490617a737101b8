//! The tuner: a search over a kernel's compile-time parameters (tile sizes, pipeline stages,
//! warps, split-K) for one problem, whose winner goes into the [`DispatchTable`] that
//! [`Module::tuned_kernel`] reads when the kernel is launched.
//!
//! A search ([`tune`]) compiles every candidate of its [`TuneSpace`] in parallel (one worker
//! per core; a candidate the compiler refuses, such as a tile that does not divide the group or
//! a shared-memory plan too large for the architecture, is reported as rejected), then times
//! the compiled ones one at a time on the target: the GPU through the CUDA driver (the median
//! of timed launches, each after an L2 flush), or the cpu backend (the best of its launches).
//! The winner's result is then checked against the kernel's `reference` block; a candidate
//! that computes the wrong thing is never stored (the next best is checked instead). Without a
//! device to time on, the `compile` target compiles every candidate and stores nothing.
//!
//! A problem is the kernel's integer scalars (`m`, `n`, `k`); the table keeps winners per
//! bucket of one of them (`m` by default: the power of two at or above it), so that decode
//! steps of 9 to 16 rows share the entry tuned for 16.
//!
//! Several kernels that run one after another for one result (`qmatmul_split` and
//! `qmatmul_split_reduce`) are timed together: each candidate's parameters go to every kernel
//! that declares them, and the candidate's time is the sum.
//!
//! ```
//! use tl_runtime::tune::{self, DispatchTable, TuneRequest, TuneSpace, TuneTarget};
//! use tl_runtime::{Backend, Module};
//!
//! let source = "kernel double<BLOCK = 64>(n: i32, x: global f32[n], y: global mut f32[n]) grid(cdiv(n, BLOCK)) warps(1) {
//!     store(y, load(x, [block.x * BLOCK], [BLOCK]) * 2.0, [block.x * BLOCK]);
//! }
//! reference double {
//!     y = x * 2.0;
//! }
//! ";
//! let module = Module::from_source("double.tl", source)?;
//! let mut request = TuneRequest::new(&module, "double", &[("n", 4096)], TuneTarget::Cpu);
//! request.space = TuneSpace { parameters: vec![("BLOCK".into(), vec![32, 64, 128])] };
//! let report = tune::tune(&module, &request, &mut |progress| eprintln!("{progress:?}"))?;
//! assert!(report.checked);
//!
//! // A serving process: the winner, from the table, for a problem of the same sizes.
//! let mut table = DispatchTable::in_memory();
//! table.insert(report.key.clone(), report.entry().expect("a winner"));
//! let tuned = module.tuned_kernel("double", &[], &[("n".into(), 4096)], None, TuneTarget::Cpu, &table)?;
//! assert_eq!(tuned.entry, report.entry());
//! let mut args = tuned.kernel.random_args(7, &[("n".into(), 4096)])?;
//! assert!(tuned.kernel.check(Backend::Cpu, &mut args)?.passed());
//! # Ok::<(), tl_runtime::RuntimeError>(())
//! ```

pub mod table;

pub use table::{DispatchKey, DispatchTable, TunedEntry};

use crate::{Backend, Kernel, Module, RuntimeError, cuda};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tl_compiler::backend::Arch;
use tl_compiler::ir::ConstValue;
use tl_compiler::passes::divisibility::Assumptions;
use tl_compiler::syntax::ast;

/// The most candidates one search takes: a larger space is refused (narrow it with
/// `--space`) rather than enumerated without bound.
pub const MAX_CANDIDATES: usize = 100_000;

/// The values tried for a parameter when the space does not name them: the usual tile sizes,
/// stages, warps and splits of the shipped kernels. A kernel's space is the parameters it
/// declares out of these.
pub const DEFAULT_SPACE: [(&str, &[i64]); 6] = [
    ("BM", &[16, 32, 64, 128]),
    ("BN", &[32, 64, 128, 256]),
    ("BK", &[16, 32, 64, 128]),
    ("STAGES", &[2, 3, 4]),
    ("WARPS", &[4, 8]),
    ("SPLITS", &[1, 2, 4, 8]),
];

/// The integer compile-time parameters a search varies and the values it tries for each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TuneSpace {
    pub parameters: Vec<(String, Vec<i64>)>,
}

impl TuneSpace {
    /// The [`DEFAULT_SPACE`] parameters that kernel `name` of `module` declares.
    pub fn default_for(module: &Module, name: &str) -> TuneSpace {
        let declared = declared_integer_parameters(module, name);
        let parameters = DEFAULT_SPACE
            .iter()
            .filter(|(p, _)| declared.iter().any(|d| d == p))
            .map(|(p, values)| (p.to_string(), values.to_vec()))
            .collect();
        TuneSpace { parameters }
    }

    /// Parses `NAME=V1,V2,...` (e.g. `BM=16,32,64`).
    pub fn parse_parameter(text: &str) -> Result<(String, Vec<i64>), String> {
        let (name, values) = text.split_once('=').ok_or_else(|| format!("`{text}` is not NAME=V1,V2,..."))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{name}` is not a parameter name"));
        }
        let values = values
            .split(',')
            .map(|v| v.trim().parse::<i64>().map_err(|_| format!("`{}` in `{text}` is not an integer", v.trim())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((name.to_string(), values))
    }

    /// How many candidates the space holds (saturating).
    pub fn len(&self) -> usize {
        if self.parameters.is_empty() {
            return 0;
        }
        self.parameters.iter().fold(1usize, |n, (_, v)| n.saturating_mul(v.len()))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every combination of the values, the last parameter varying fastest.
    pub fn candidates(&self) -> Vec<Vec<(String, i64)>> {
        if self.parameters.is_empty() { Vec::new() } else { combinations(&self.parameters) }
    }
}

/// Every combination of the named values, the last name varying fastest (one empty
/// combination when there are no names): a space's candidates, or the problems of
/// `tlc tune --size m=1,16,64`.
pub fn combinations(values: &[(String, Vec<i64>)]) -> Vec<Vec<(String, i64)>> {
    let mut all: Vec<Vec<(String, i64)>> = vec![Vec::new()];
    for (name, choices) in values {
        all = all
            .into_iter()
            .flat_map(|prefix| {
                choices.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push((name.clone(), *v));
                    next
                })
            })
            .collect();
    }
    all
}

/// Where candidates are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneTarget {
    /// The GPU of the CUDA driver, on PTX for its architecture (`cuda::device_arch`), the PTX
    /// its launches run.
    Cuda,
    /// The cpu backend on this machine.
    Cpu,
    /// Nowhere: every candidate is compiled to PTX for `arch` and none timed (no winner).
    Compile(Arch),
}

impl TuneTarget {
    pub fn name(self) -> &'static str {
        match self {
            TuneTarget::Cuda => "cuda",
            TuneTarget::Cpu => "cpu",
            TuneTarget::Compile(_) => "compile",
        }
    }

    /// The device a winner of this target is measured on (part of its dispatch key).
    pub fn device(self) -> Result<String, RuntimeError> {
        match self {
            TuneTarget::Cuda => {
                let name = cuda::device_name()?;
                let (major, minor) = cuda::compute_capability()?;
                Ok(format!("sm_{major}{minor} {name}"))
            }
            TuneTarget::Cpu => Ok(format!("cpu {}, {} threads", cpu_model(), cpu_threads())),
            TuneTarget::Compile(arch) => Ok(format!("none ({})", arch.name())),
        }
    }

    /// The identity of the compiler whose code this target times (part of the dispatch key).
    pub fn compiler(self, module: &Module) -> Result<String, RuntimeError> {
        match self {
            TuneTarget::Cuda | TuneTarget::Compile(_) => {
                let generator = module.code_generator()?;
                Ok(generator.identity().unwrap_or_else(|| "unidentified code generator".into()))
            }
            TuneTarget::Cpu => Ok(tl_cpu::identity()),
        }
    }
}

/// The CPU's model name (Linux: `/proc/cpuinfo`), else the architecture.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string())))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The threads a cpu launch uses (`TL_CPU_THREADS`, else every core).
fn cpu_threads() -> usize {
    std::env::var("TL_CPU_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// What to tune.
#[derive(Clone, Debug)]
pub struct TuneRequest {
    /// The kernel tuned (its name in the module).
    pub kernel: String,
    /// Kernels launched after it for the same result, timed with it (e.g.
    /// `qmatmul_split_reduce`); each takes the candidate's parameters it declares.
    pub then: Vec<String>,
    /// Compile-time parameters fixed for the whole search (the format: `W`, `S`, `G`...).
    pub consts: Vec<(String, ConstValue)>,
    pub space: TuneSpace,
    /// The problem: integer scalar parameters and their values (`m`, `n`, `k`).
    pub sizes: Vec<(String, i64)>,
    /// The size bucketed in the dispatch key (`None`: `m` when the problem has one).
    pub bucket: Option<String>,
    pub target: TuneTarget,
    /// Compile workers (0: one per core).
    pub jobs: usize,
    /// Timed launches per candidate (at least 1), after one untimed.
    pub runs: u32,
    /// Whether the winner's result is checked against the kernel's `reference` block.
    pub check: bool,
    /// Seed of the random arguments.
    pub seed: u64,
}

impl TuneRequest {
    /// A search of `kernel`'s default space on `sizes` for `target`: 3 timed launches per
    /// candidate, the winner checked.
    pub fn new(module: &Module, kernel: &str, sizes: &[(&str, i64)], target: TuneTarget) -> TuneRequest {
        TuneRequest {
            kernel: kernel.to_string(),
            then: Vec::new(),
            consts: Vec::new(),
            space: TuneSpace::default_for(module, kernel),
            sizes: sizes.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            bucket: None,
            target,
            jobs: 0,
            runs: 3,
            check: true,
            seed: 1,
        }
    }

    /// Where this search's winner goes in a dispatch table ([`dispatch_key`]).
    pub fn dispatch_key(&self, module: &Module) -> Result<DispatchKey, RuntimeError> {
        dispatch_key(module, &self.kernel, &self.consts, &self.sizes, self.bucket.as_deref(), self.target)
    }
}

/// What became of one candidate.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The compiler refused it (the first line of its error).
    Rejected(String),
    /// Compiled, not timed (the `compile` target).
    Compiled,
    /// Timed: milliseconds, summed over the kernels timed together.
    Timed(f64),
    /// Compiled but its launch failed or its result was wrong.
    Failed(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub values: Vec<(String, i64)>,
    /// Milliseconds the compilation of its kernels took (on its worker).
    pub compile_ms: f64,
    pub outcome: Outcome,
}

/// What a search found.
#[derive(Clone, Debug)]
pub struct TuneReport {
    /// Where the winner goes in the dispatch table.
    pub key: DispatchKey,
    /// Every candidate, in the space's order.
    pub candidates: Vec<Candidate>,
    /// Wall-clock seconds of the parallel compilation, and of the timing and checking.
    pub compile_seconds: f64,
    pub timing_seconds: f64,
    /// Compile workers used.
    pub jobs: usize,
    /// The winner's index in `candidates`: the fastest candidate whose result was checked
    /// (or, with `check` off or no `reference` block, the fastest).
    pub winner: Option<usize>,
    /// Whether the winner's result was checked against a reference.
    pub checked: bool,
}

impl TuneReport {
    /// The winner as a dispatch table entry.
    pub fn entry(&self) -> Option<TunedEntry> {
        let candidate = &self.candidates[self.winner?];
        let Outcome::Timed(time_ms) = candidate.outcome else { return None };
        Some(TunedEntry { values: candidate.values.clone(), time_ms })
    }

    /// How many candidates the compiler refused.
    pub fn rejected(&self) -> usize {
        self.candidates.iter().filter(|c| matches!(c.outcome, Outcome::Rejected(_))).count()
    }
}

/// What a running search reports, for progress output.
#[derive(Clone, Debug, PartialEq)]
pub enum TuneProgress {
    /// `done` of `total` candidates compiled (`rejected` of them refused).
    Compiled { done: usize, total: usize, rejected: usize },
    /// `done` of `total` compiled candidates timed; the best time so far.
    Timed { done: usize, total: usize, best_ms: Option<f64> },
    /// The result of the candidate at `index` was checked against the reference.
    Checked { index: usize, passed: bool },
}

/// Runs the search `request` describes over kernels of `module`, calling `progress` (on this
/// thread) as it goes. Errors are the request's own (an unknown kernel or parameter, a size
/// the kernel does not have, no device for the target); a candidate's failure is its
/// [`Outcome`].
pub fn tune(module: &Module, request: &TuneRequest, progress: &mut dyn FnMut(&TuneProgress)) -> Result<TuneReport, RuntimeError> {
    let key = request.dispatch_key(module)?;
    validate(module, request)?;
    let candidates = request.space.candidates();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // More workers than cores only adds memory (each holds a compilation): at most 4 per core.
    let jobs = if request.jobs == 0 { cores } else { request.jobs.min(4 * cores) }.min(candidates.len().max(1));
    // The GPU's architecture, asked of the driver once rather than by every candidate.
    let ptx_arch = match request.target {
        TuneTarget::Cuda => Some(cuda::device_arch()?),
        TuneTarget::Compile(arch) => Some(arch),
        TuneTarget::Cpu => None,
    };
    let compile_start = Instant::now();
    let compiled = compile_all(module, request, ptx_arch, &candidates, jobs, progress);
    let compile_seconds = compile_start.elapsed().as_secs_f64();
    let mut report = TuneReport {
        key,
        candidates: Vec::with_capacity(candidates.len()),
        compile_seconds,
        timing_seconds: 0.0,
        jobs,
        winner: None,
        checked: false,
    };
    let mut kernels = Vec::with_capacity(candidates.len());
    for (values, (compile_ms, result)) in candidates.into_iter().zip(compiled) {
        let outcome = match &result {
            Ok(_) => Outcome::Compiled,
            Err(error) => Outcome::Rejected(first_line(error)),
        };
        report.candidates.push(Candidate { values, compile_ms, outcome });
        kernels.push(result.ok());
    }
    if let TuneTarget::Compile(_) = request.target {
        return Ok(report);
    }
    let timing_start = Instant::now();
    time_all(request, &mut report, &kernels, progress);
    choose_winner(request, &mut report, &kernels, progress);
    report.timing_seconds = timing_start.elapsed().as_secs_f64();
    Ok(report)
}

/// The names of the integer compile-time parameters kernel `name` declares.
fn declared_integer_parameters(module: &Module, name: &str) -> Vec<String> {
    module
        .kernel_declaration(name)
        .map(|k| k.const_params.iter().filter(|p| matches!(p.default, ast::ConstDefault::Int(_))).map(|p| p.name.name.clone()).collect())
        .unwrap_or_default()
}

/// The request's own errors, before any candidate is compiled.
fn validate(module: &Module, request: &TuneRequest) -> Result<(), RuntimeError> {
    let usage = |m: String| Err(RuntimeError::Usage(m));
    for name in std::iter::once(&request.kernel).chain(&request.then) {
        if module.kernel_declaration(name).is_none() {
            return usage(format!("{} has no kernel `{name}` (it has {})", module.file_name, module.kernel_names().join(", ")));
        }
    }
    let declared = declared_integer_parameters(module, &request.kernel);
    for (index, (name, values)) in request.space.parameters.iter().enumerate() {
        if !declared.contains(name) {
            return usage(format!("`{}` has no integer compile-time parameter `{name}` to tune", request.kernel));
        }
        if values.is_empty() {
            return usage(format!("the space gives `{name}` no values"));
        }
        if request.space.parameters[..index].iter().any(|(other, _)| other == name) {
            return usage(format!("the space names `{name}` twice"));
        }
        if request.consts.iter().any(|(fixed, _)| fixed == name) {
            return usage(format!("`{name}` is both fixed and tuned"));
        }
    }
    if request.space.is_empty() {
        return usage(format!("nothing to tune: `{}` declares none of {} and no space was given", request.kernel, DEFAULT_SPACE.map(|(n, _)| n).join(", ")));
    }
    if request.space.len() > MAX_CANDIDATES {
        return usage(format!("the space holds {} candidates, more than the {MAX_CANDIDATES} a search takes: give fewer values", request.space.len()));
    }
    if let Some((name, value)) = request.sizes.iter().find(|(_, v)| *v < 1) {
        return usage(format!("the problem size {name} = {value} is not positive"));
    }
    if request.runs == 0 {
        return usage("a search needs at least one timed launch per candidate".into());
    }
    Ok(())
}

/// The key a winner of this problem is stored under. `consts` are the caller's fixed
/// parameters; the key's format is the kernel's resolved dtype parameters and the integers of
/// `consts`, so that a launch that names the default format explicitly finds what a search
/// that left it to the defaults stored.
pub fn dispatch_key(
    module: &Module,
    kernel: &str,
    consts: &[(String, ConstValue)],
    sizes: &[(String, i64)],
    bucket: Option<&str>,
    target: TuneTarget,
) -> Result<DispatchKey, RuntimeError> {
    key_of(module, &module.kernel(Some(kernel), consts)?, consts, sizes, bucket, target)
}

/// [`dispatch_key`] of `compiled`, the kernel compiled with `consts`.
fn key_of(module: &Module, compiled: &Kernel, consts: &[(String, ConstValue)], sizes: &[(String, i64)], bucket: Option<&str>, target: TuneTarget) -> Result<DispatchKey, RuntimeError> {
    let kernel = compiled.name();
    let ir = &compiled.compiled.kernel;
    let mut format: Vec<String> = ir.dtype_params.iter().map(|(n, d)| format!("{n}={}", d.name())).collect();
    for (name, value) in consts {
        if let ConstValue::Int(v) = value {
            format.push(format!("{name}={v}"));
        }
    }
    let bucket = bucket.or_else(|| sizes.iter().any(|(n, _)| n == "m").then_some("m"));
    let mut described = Vec::new();
    for param in &ir.params {
        let Some((name, value)) = sizes.iter().find(|(n, _)| *n == param.name) else { continue };
        if bucket == Some(name.as_str()) {
            described.push(format!("{name}<={}", bucket_of(*value)));
        } else {
            described.push(format!("{name}={value}"));
        }
    }
    for (name, _) in sizes {
        let integer_scalar = |p: &&tl_compiler::ir::Param| &p.name == name && matches!(p.kind, tl_compiler::ir::ParamKind::Scalar(d) if d.is_int());
        if !ir.params.iter().any(|p| integer_scalar(&p)) {
            return Err(RuntimeError::Usage(format!("kernel `{kernel}` has no integer scalar parameter `{name}` (a size of the problem)")));
        }
    }
    if let Some(bucket) = bucket.filter(|b| !sizes.iter().any(|(n, _)| n == b)) {
        return Err(RuntimeError::Usage(format!("the bucketed size `{bucket}` is not one of the problem's sizes")));
    }
    Ok(DispatchKey {
        device: target.device()?,
        compiler: target.compiler(module)?,
        kernel: kernel.to_string(),
        source: format!("{:016x}", crate::cache::fnv1a(module.source.as_bytes())),
        format: format.join(" "),
        sizes: described.join(" "),
    })
}

/// The bucket of a size: the power of two at or above it (1 for sizes up to 1).
pub fn bucket_of(size: i64) -> i64 {
    if size <= 1 { 1 } else { (size as u64).checked_next_power_of_two().map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64) }
}

/// A candidate's kernels, compiled for the target (PTX or native code of the problem's
/// variant), with the worker's milliseconds.
type Compiled = (f64, Result<Vec<(Kernel, Assumptions)>, RuntimeError>);

/// Compiles every candidate on `jobs` workers: PTX for `ptx_arch` (the `cuda` and `compile`
/// targets), native code otherwise.
fn compile_all(module: &Module, request: &TuneRequest, ptx_arch: Option<Arch>, candidates: &[Vec<(String, i64)>], jobs: usize, progress: &mut dyn FnMut(&TuneProgress)) -> Vec<Compiled> {
    let next = AtomicUsize::new(0);
    let (sender, receiver) = std::sync::mpsc::channel::<(usize, Compiled)>();
    let mut results: Vec<Option<Compiled>> = (0..candidates.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(values) = candidates.get(index) else { break };
                    let start = Instant::now();
                    // A compiler panic on one candidate (a bug) rejects that candidate, not the
                    // search.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compile_candidate(module, request, ptx_arch, values)))
                        .unwrap_or_else(|_| Err(RuntimeError::Usage("internal compiler error (a panic) on this candidate".into())));
                    if sender.send((index, (start.elapsed().as_secs_f64() * 1e3, result))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        let (mut done, mut rejected) = (0, 0);
        for (index, result) in receiver {
            done += 1;
            rejected += usize::from(result.1.is_err());
            results[index] = Some(result);
            progress(&TuneProgress::Compiled { done, total: candidates.len(), rejected });
        }
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| (0.0, Err(RuntimeError::Usage("its compile worker stopped".into())))))
        .collect()
}

fn compile_candidate(module: &Module, request: &TuneRequest, ptx_arch: Option<Arch>, values: &[(String, i64)]) -> Result<Vec<(Kernel, Assumptions)>, RuntimeError> {
    let mut kernels = Vec::new();
    for name in std::iter::once(&request.kernel).chain(&request.then) {
        let declared = module.const_parameter_names(name);
        let consts: Vec<(String, ConstValue)> = request
            .consts
            .iter()
            .cloned()
            .chain(values.iter().map(|(n, v)| (n.clone(), ConstValue::Int(*v))))
            .filter(|(n, _)| declared.contains(n))
            .collect();
        let kernel = module.kernel(Some(name), &consts)?;
        let assumptions = problem_assumptions(&kernel, &request.sizes);
        if let Some(arch) = ptx_arch {
            kernel.variant_ptx(&assumptions, arch)?;
        } else {
            kernel.cpu_program(&assumptions)?;
        }
        // Nothing is timed on the compile target: the compiled kernel is not kept (a sweep of
        // thousands of candidates holds one at a time per worker).
        if let TuneTarget::Compile(_) = request.target {
            continue;
        }
        kernels.push((kernel, assumptions));
    }
    Ok(kernels)
}

/// The variant a launch of `kernel` on the problem runs (its signature).
fn problem_assumptions(kernel: &Kernel, sizes: &[(String, i64)]) -> Assumptions {
    let ir = &kernel.compiled.kernel;
    let values: Vec<Option<i64>> = ir.params.iter().map(|p| sizes.iter().find(|(n, _)| *n == p.name).map(|(_, v)| *v)).collect();
    Assumptions::from_values(ir, &values, kernel.specialize_log2)
}

/// The sizes a kernel of the pipeline takes (those it has as scalars).
fn sizes_of(kernel: &Kernel, sizes: &[(String, i64)]) -> Vec<(String, i64)> {
    sizes.iter().filter(|(n, _)| kernel.compiled.kernel.params.iter().any(|p| &p.name == n)).cloned().collect()
}

fn time_all(request: &TuneRequest, report: &mut TuneReport, kernels: &[Option<Vec<(Kernel, Assumptions)>>], progress: &mut dyn FnMut(&TuneProgress)) {
    let total = kernels.iter().filter(|k| k.is_some()).count();
    let (mut done, mut best_ms) = (0, None::<f64>);
    for (candidate, compiled) in report.candidates.iter_mut().zip(kernels) {
        let Some(compiled) = compiled else { continue };
        candidate.outcome = match time_candidate(request, compiled) {
            Ok(ms) => {
                best_ms = Some(best_ms.map_or(ms, |b| b.min(ms)));
                Outcome::Timed(ms)
            }
            Err(error) => Outcome::Failed(first_line(&error)),
        };
        done += 1;
        progress(&TuneProgress::Timed { done, total, best_ms });
    }
}

/// The candidate's time: for each kernel, the median of the timed launches on the GPU or the
/// best on the cpu backend; summed.
fn time_candidate(request: &TuneRequest, compiled: &[(Kernel, Assumptions)]) -> Result<f64, RuntimeError> {
    let mut total = 0.0;
    for (kernel, assumptions) in compiled {
        let mut args = kernel.random_args_within(request.seed, &sizes_of(kernel, &request.sizes), crate::max_host_bytes())?;
        total += match request.target {
            TuneTarget::Cuda => {
                let plan = cuda::TimingPlan { warmup: 1, runs: request.runs.max(1), flush_bytes: 64 << 20 };
                let mut times = kernel.time_variant(&mut args, assumptions, &plan)?;
                cuda::median_ms(&mut times)
            }
            TuneTarget::Cpu => {
                kernel.launch_variant(Backend::Cpu, &mut args, assumptions)?;
                let mut best = f64::INFINITY;
                for _ in 0..request.runs.max(1) {
                    best = best.min(kernel.launch_variant(Backend::Cpu, &mut args, assumptions)?.wall_ms);
                }
                best
            }
            TuneTarget::Compile(_) => 0.0,
        };
    }
    Ok(total)
}

/// The fastest timed candidate whose result checks (each kernel of it with a `reference`
/// block, on fresh random arguments); a wrong one is marked failed and the next is tried.
fn choose_winner(request: &TuneRequest, report: &mut TuneReport, kernels: &[Option<Vec<(Kernel, Assumptions)>>], progress: &mut dyn FnMut(&TuneProgress)) {
    let backend = match request.target {
        TuneTarget::Cuda => Backend::Cuda,
        _ => Backend::Cpu,
    };
    loop {
        let fastest = report
            .candidates
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c.outcome {
                Outcome::Timed(ms) => Some((i, ms)),
                _ => None,
            })
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((index, _)) = fastest else { return };
        let Some(compiled) = &kernels[index] else { return };
        if !request.check {
            report.winner = Some(index);
            return;
        }
        match check_candidate(request, compiled, backend) {
            Ok(checked) => {
                progress(&TuneProgress::Checked { index, passed: true });
                report.winner = Some(index);
                report.checked = checked;
                return;
            }
            Err(why) => {
                progress(&TuneProgress::Checked { index, passed: false });
                report.candidates[index].outcome = Outcome::Failed(why);
            }
        }
    }
}

/// Checks each kernel of a candidate that has a reference; `Ok(false)` when none has one.
fn check_candidate(request: &TuneRequest, compiled: &[(Kernel, Assumptions)], backend: Backend) -> Result<bool, String> {
    let mut checked = false;
    for (kernel, _) in compiled.iter().filter(|(k, _)| k.reference.is_some()) {
        let mut args = kernel
            .random_args_within(request.seed.wrapping_add(1), &sizes_of(kernel, &request.sizes), crate::max_host_bytes())
            .map_err(|e| first_line(&e))?;
        let report = kernel.check(backend, &mut args).map_err(|e| first_line(&e))?;
        if !report.passed() {
            let wrong: Vec<String> = report.outputs.iter().filter(|o| o.comparison.mismatches != 0).map(|o| o.name.clone()).collect();
            return Err(format!("wrong result of `{}` (output {})", kernel.name(), wrong.join(", ")));
        }
        checked = true;
    }
    Ok(checked)
}

fn first_line(error: &RuntimeError) -> String {
    let text = error.to_string();
    text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string()
}

/// A kernel compiled with the winner the table holds for its problem, or with its defaults
/// when the table has none.
#[derive(Debug)]
pub struct TunedKernel {
    pub kernel: Kernel,
    /// The entry used; `None`: the defaults (never tuned for this key).
    pub entry: Option<TunedEntry>,
    pub key: DispatchKey,
}

impl Module {
    /// Kernel `name` for the problem `sizes` (its integer scalars) on `target`, compiled with
    /// `consts` and the parameters `table` holds for them (see [`tune`]); with `consts` alone
    /// when the table has no entry. `bucket` names the bucketed size as in the search (`None`:
    /// `m` when there is one).
    pub fn tuned_kernel(
        &self,
        name: &str,
        consts: &[(String, ConstValue)],
        sizes: &[(String, i64)],
        bucket: Option<&str>,
        target: TuneTarget,
        table: &DispatchTable,
    ) -> Result<TunedKernel, RuntimeError> {
        // Compiled with `consts` for the key; that is the kernel when the table has no entry.
        let defaults = self.kernel(Some(name), consts)?;
        let key = key_of(self, &defaults, consts, sizes, bucket, target)?;
        let entry = table.get(&key).cloned();
        let kernel = match &entry {
            Some(entry) => {
                let mut all = consts.to_vec();
                all.extend(entry.values.iter().map(|(n, v)| (n.clone(), ConstValue::Int(*v))));
                self.kernel(Some(name), &all)?
            }
            None => defaults,
        };
        Ok(TunedKernel { kernel, entry, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_enumerate_every_combination_once() {
        let space = TuneSpace { parameters: vec![("BM".into(), vec![16, 32]), ("BN".into(), vec![32, 64, 128])] };
        let candidates = space.candidates();
        assert_eq!(candidates.len(), 6);
        assert_eq!(space.len(), 6);
        assert_eq!(candidates[0], vec![("BM".to_string(), 16), ("BN".to_string(), 32)]);
        assert_eq!(candidates[5], vec![("BM".to_string(), 32), ("BN".to_string(), 128)]);
        let mut unique = candidates.clone();
        unique.dedup();
        assert_eq!(unique.len(), 6);
        assert!(TuneSpace::default().candidates().is_empty());
    }

    #[test]
    fn space_parameters_parse_with_clear_errors() {
        assert_eq!(TuneSpace::parse_parameter("BM=16,32, 64"), Ok(("BM".to_string(), vec![16, 32, 64])));
        assert!(TuneSpace::parse_parameter("BM").unwrap_err().contains("NAME=V1,V2"));
        assert!(TuneSpace::parse_parameter("BM=16,x").unwrap_err().contains("`x`"));
        assert!(TuneSpace::parse_parameter("B M=16").unwrap_err().contains("parameter name"));
    }

    #[test]
    fn buckets_are_the_power_of_two_at_or_above() {
        let cases = [(-3, 1), (0, 1), (1, 1), (2, 2), (3, 4), (9, 16), (16, 16), (17, 32), (4097, 8192)];
        for (size, bucket) in cases {
            assert_eq!(bucket_of(size), bucket, "size {size}");
        }
        assert_eq!(bucket_of(i64::MAX), i64::MAX);
    }
}
