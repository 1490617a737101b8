//! The embedding API of tl: compile a `.tl` source with compile-time parameters, then launch
//! its kernels on host tensors with backend `vm` (the block-level reference interpreter),
//! `simt` (the thread-level simulator running the generated per-thread code), `cpu` (that
//! code compiled to native code by Cranelift) or `cuda` (the GPU through the driver's PTX
//! JIT). The grid comes from the kernel's own `grid(...)`.
//!
//! Compile from a string (or a file, [`Module::from_file`]) with a compile-time parameter,
//! launch, read the result and the launch's time:
//!
//! ```
//! use tl_runtime::{Arg, Backend, DType, HostTensor, Module};
//! let source = "kernel scale<BLOCK = 128>(n: i32, s: f32, x: global mut f32[n]) grid(cdiv(n, BLOCK)) warps(4) {
//!     store(x, load(x, [block.x * BLOCK], [BLOCK]) * s, [block.x * BLOCK]);
//! }";
//! let kernel = Module::from_source("scale.tl", source)?.kernel(None, &[("BLOCK".into(), 256.into())])?;
//! let n = 1000;
//! let x = HostTensor::from_f64(DType::F32, &[n], &(0..n).map(|i| i as f64).collect::<Vec<_>>());
//! for backend in [Backend::Vm, Backend::Cpu] {
//!     let mut args = vec![Arg::scalar(n as i64), Arg::scalar(0.5), x.clone().into()];
//!     let report = kernel.launch(backend, &mut args)?;
//!     assert_eq!(report.grid, [4, 1, 1]);
//!     let Arg::Tensor(scaled) = &args[2] else { unreachable!() };
//!     assert_eq!(scaled.get(999), 499.5);
//!     println!("{}: {:.3} ms", backend.name(), report.wall_ms);
//! }
//! # Ok::<(), tl_runtime::RuntimeError>(())
//! ```
//!
//! Errors are [`RuntimeError`] values whose text shows the source: a compile error with its
//! diagnostics, a launch with a wrong argument at the parameter:
//!
//! ```
//! use tl_runtime::{Arg, Backend, DType, HostTensor, Module, RuntimeError};
//! let broken = Module::from_source("broken.tl", "kernel k(x: global mut f32[4]) grid(1) warps(1) {\n    store(x, undefined, [0]);\n}\n");
//! let Err(RuntimeError::Compile { rendered, .. }) = broken else { panic!("it compiled") };
//! assert!(rendered.contains("broken.tl:2:14"));
//!
//! let kernel = Module::from_source("ok.tl", "kernel k(x: global mut f32[4]) grid(1) warps(1) {\n    store(x, load(x, [0], [4]) + 1.0, [0]);\n}\n")?.kernel(None, &[])?;
//! let mut wrong = vec![Arg::from(HostTensor::zeros(DType::F16, &[4]))];
//! let error = kernel.launch(Backend::Vm, &mut wrong).unwrap_err();
//! assert!(error.to_string().contains("ok.tl:1:10"), "{error}");
//! # Ok::<(), tl_runtime::RuntimeError>(())
//! ```
//!
//! PTX needs a code generator (`Module::with_code_generator(tl_ptx::code_generator())`; the
//! runtime itself never links LLVM), and is kept in a compile cache on disk ([`cache`]), with
//! the cubin the CUDA driver makes of it when a kernel runs on the GPU.
//! Snapshot tests of a kernel's generated code in a user's crate: `tl_runtime::snapshot` (feature
//! `snapshot`).
//!
//! On a GPU, tensors the program keeps in device memory (`cudarc` buffers allocated on
//! [`cuda::device_context`]) are passed without copies: wrap each in a [`DeviceTensor`] with
//! its dtype and shape and call [`Kernel::launch_device`]:
//!
//! ```no_run
//! use tl_runtime::{DType, DeviceArg, DeviceTensor, Kernel, Number, RuntimeError, cuda};
//! /// `scale(n, s, x)` of the first example, on x in GPU memory.
//! fn scale_on_the_gpu(kernel: &Kernel) -> Result<Vec<f32>, RuntimeError> {
//!     let stream = cuda::device_context()?.default_stream();
//!     let mut x = stream.clone_htod(&vec![1.0f32; 1000]).expect("a copy to the GPU");
//!     let tensor = DeviceTensor::new(&mut x, DType::F32, &[1000])?;
//!     kernel.launch_device(&[DeviceArg::Scalar(Number::Int(1000)), DeviceArg::Scalar(Number::Float(0.5)), DeviceArg::Tensor(&tensor)])?;
//!     drop(tensor);
//!     Ok(stream.clone_dtoh(&x).expect("a copy from the GPU"))
//! }
//! ```
//!
//! The tuner ([`tune`]) searches a kernel's tile sizes, stages, warps and splits for a
//! problem and keeps the winner in a dispatch table that [`Module::tuned_kernel`] reads.

pub mod cache;
mod cubin;
pub mod cuda;
pub mod executors;
pub mod npy;
pub mod reference;
#[cfg(feature = "snapshot")]
pub mod snapshot;
pub mod tensor_file;
pub mod tune;

pub use tl_compiler::backend::{Arch, CodeGenerator};
pub use tl_compiler::dtype::DType;
pub use tl_compiler::number::Number;
pub use tl_vm::{Arg, HostTensor};
pub use cuda::DeviceTensor;

pub use tl_compiler::ir::ConstValue;
/// The `cudarc` the `cuda` backend is built on, for device buffers ([`cuda::DeviceTensor`]).
pub use cudarc;
pub use tl_compiler::passes::divisibility::Assumptions;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tl_compiler::diagnostics::{Diagnostic, render_all};
use tl_compiler::driver::{self, Compiled};
use tl_compiler::ir::ParamKind;
use tl_compiler::syntax::ast;

/// Where a kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The block-level reference interpreter (the semantics).
    Vm,
    /// The thread-level simulator, running the lowered per-thread program.
    Simt,
    /// An NVIDIA GPU through the CUDA driver.
    Cuda,
    /// Native code compiled by Cranelift from the per-thread program (`tl_cpu`).
    Cpu,
}

impl Backend {
    pub const ALL: [Backend; 4] = [Backend::Vm, Backend::Simt, Backend::Cuda, Backend::Cpu];

    /// The implementation that runs launches on this backend (`executors`, one file each).
    pub fn executor(self) -> &'static dyn executors::Executor {
        match self {
            Backend::Vm => &executors::VM,
            Backend::Simt => &executors::SIMT,
            Backend::Cuda => &executors::CUDA,
            Backend::Cpu => &executors::CPU,
        }
    }

    pub fn parse(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }

    pub fn name(self) -> &'static str {
        self.executor().name()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Diagnostics already rendered against the source, with file, line and markers.
    #[error("{rendered}")]
    Compile { rendered: String, diagnostics: Vec<Diagnostic> },
    #[error("cannot read `{path}`: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Vm(#[from] tl_vm::VmError),
    /// A fault of the VM while executing an instruction; `rendered` shows its source location
    /// like a compiler diagnostic (without the leading `error: `).
    #[error("{rendered}")]
    VmFault { error: tl_vm::VmError, rendered: String },
    /// A fault of the thread-level simulator; `rendered` shows the instruction's source
    /// location like a compiler diagnostic (without the leading `error: `, which whoever prints
    /// it adds) when the simulator knows it, and is the error's own text otherwise.
    #[error("{rendered}")]
    Simt { error: tl_vm::simt::SimtError, rendered: String },
    /// A failure of the `cpu` backend (a fault rendered at its source, or a construct it does
    /// not compile yet).
    #[error("{rendered}")]
    Cpu { error: tl_cpu::CpuError, rendered: String },
    #[error(transparent)]
    Cuda(#[from] cuda::CudaError),
    #[error(transparent)]
    Backend(#[from] tl_compiler::backend::BackendError),
    /// PTX was asked of a module that has no code generator.
    #[error("this module has no PTX code generator: add the `tl-ptx` crate and call `Module::with_code_generator(tl_ptx::code_generator())`")]
    NoCodeGenerator,
    #[error("{0}")]
    Usage(String),
    /// `ptxas` is missing, or failed on the PTX (its own message, which names the line).
    #[error("{0}")]
    Ptxas(String),
    /// A launch that cannot be made as asked (arguments that need more memory than allowed,
    /// for instance), rendered at its place in the source like a fault.
    #[error("{rendered}")]
    Launch { message: String, rendered: String },
}

/// A parsed and checked `.tl` source.
#[derive(Clone)]
pub struct Module {
    pub file_name: String,
    pub source: String,
    pub ast: ast::File,
    /// What turns the module's kernels into PTX (for [`Kernel::ptx`] and the `cuda` backend):
    /// none until [`Module::with_code_generator`] gives one, so that a program running only
    /// the CPU backends does not link LLVM.
    code_generator: Option<Arc<dyn CodeGenerator>>,
    /// Where PTX of this module's kernels is kept between processes ([`cache`]): the
    /// environment's cache unless [`Module::with_cache`] gives another.
    cache: Arc<cache::DiskCache>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("file_name", &self.file_name)
            .field("code_generator", &self.code_generator.is_some())
            .finish_non_exhaustive()
    }
}

impl Module {
    /// Parses and checks `source`; `file_name` appears in diagnostics.
    pub fn from_source(file_name: &str, source: &str) -> Result<Module, RuntimeError> {
        let ast = driver::check(source).map_err(|e| render(file_name, source, e.diagnostics))?;
        Ok(Module { file_name: file_name.to_string(), source: source.to_string(), ast, code_generator: None, cache: cache::DiskCache::from_environment() })
    }

    /// The module with `cache` keeping the PTX of its kernels (`DiskCache::at(dir)`, or
    /// `DiskCache::disabled()`), instead of the environment's ([`cache`]).
    pub fn with_cache(mut self, cache: Arc<cache::DiskCache>) -> Module {
        self.cache = cache;
        self
    }

    /// The compile cache of this module's kernels.
    pub fn cache(&self) -> &cache::DiskCache {
        &self.cache
    }

    /// The PTX of `program` for `arch`: from the compile cache when it has it, else from the
    /// code generator (and then kept in the cache).
    fn ptx_of(&self, program: &tl_compiler::lir::Program, arch: Arch) -> Result<String, RuntimeError> {
        let generator = self.code_generator()?;
        let Some(identity) = generator.identity() else { return Ok(generator.ptx(program, arch)?) };
        let key = cache::CacheKey::ptx(&identity, arch, program);
        if let Some(ptx) = self.cache.get(&key).and_then(|bytes| String::from_utf8(bytes).ok()) {
            return Ok(ptx);
        }
        let ptx = generator.ptx(program, arch)?;
        self.cache.put(&key, ptx.as_bytes());
        Ok(ptx)
    }

    /// The module with `generator` making its PTX: `tl_ptx::code_generator()` is the LLVM
    /// NVPTX one. Kernels compiled from the module afterwards use it.
    pub fn with_code_generator(mut self, generator: Arc<dyn CodeGenerator>) -> Module {
        self.code_generator = Some(generator);
        self
    }

    /// The code generator, or the error that says how to get one.
    pub fn code_generator(&self) -> Result<&dyn CodeGenerator, RuntimeError> {
        self.code_generator.as_deref().ok_or(RuntimeError::NoCodeGenerator)
    }

    /// Reads, decodes (UTF-8) and checks a file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Module, RuntimeError> {
        let path = path.as_ref();
        let bytes = read_regular_file(path).map_err(|source| RuntimeError::Io { path: path.to_path_buf(), source })?;
        let name = path.display().to_string();
        let source = tl_compiler::syntax::parser::decode_source(&bytes)
            .map_err(|d| render(&name, &String::from_utf8_lossy(&bytes), vec![d]))?;
        Module::from_source(&name, source)
    }

    /// Names of the kernels in this module, in order.
    pub fn kernel_names(&self) -> Vec<String> {
        self.ast
            .items
            .iter()
            .filter_map(|i| if let ast::Item::Kernel(k) = i { Some(k.name.name.clone()) } else { None })
            .collect()
    }

    /// The declaration of kernel `name` in the source (its compile-time and runtime
    /// parameters, grid and body as written).
    pub fn kernel_declaration(&self, name: &str) -> Option<&ast::Kernel> {
        self.ast.items.iter().find_map(|i| match i {
            ast::Item::Kernel(k) if k.name.name == name => Some(k),
            _ => None,
        })
    }

    /// The names of the compile-time parameters kernel `name` declares (none for a kernel
    /// the source does not have).
    pub fn const_parameter_names(&self, name: &str) -> Vec<String> {
        self.kernel_declaration(name).map(|k| k.const_params.iter().map(|p| p.name.name.clone()).collect()).unwrap_or_default()
    }

    /// Compiles kernel `name` (the first when `None`) with compile-time parameter overrides.
    pub fn kernel(&self, name: Option<&str>, consts: &[(String, ConstValue)]) -> Result<Kernel, RuntimeError> {
        self.kernel_with(name, consts, &mut driver::PassManager::default())
    }

    /// [`Module::kernel`] with the passes run by `passes` (which times them and keeps the IR
    /// after the passes it names).
    pub fn kernel_with(&self, name: Option<&str>, consts: &[(String, ConstValue)], passes: &mut driver::PassManager) -> Result<Kernel, RuntimeError> {
        let compiled = driver::compile_with(&self.ast, name, consts, passes).map_err(|e| self.render(e.diagnostics))?;
        let reference = self.ast.items.iter().find_map(|i| match i {
            ast::Item::Reference(r) if r.kernel.name == compiled.kernel.name => Some(r.clone()),
            _ => None,
        });
        Ok(Kernel {
            module: self.clone(),
            compiled,
            reference,
            ptx: Arch::ALL.into_iter().map(|arch| (arch, OnceLock::new())).collect(),
            specialize_log2: tl_compiler::passes::divisibility::DEFAULT_CAP_LOG2,
            variants: Default::default(),
            variant_ptx: Default::default(),
            cpu_programs: Default::default(),
        })
    }

    fn render(&self, diagnostics: Vec<Diagnostic>) -> RuntimeError {
        render(&self.file_name, &self.source, diagnostics)
    }

    /// A VM error, with an instruction's fault rendered at its source location (a missing
    /// `sync()` also marks the earlier statement).
    pub fn vm_error(&self, error: tl_vm::VmError) -> RuntimeError {
        match &error {
            tl_vm::VmError::Exec { block, instr, span, fault } => {
                let mut d = Diagnostic::error(format!("{fault} (block {block})"), *span).with_note(format!("in `{instr}`"));
                if let tl_vm::interp::Fault::MissingSync { earlier, earlier_access, earlier_span, .. } = fault {
                    d = d.with_label(*earlier_span, format!("`{earlier}` {earlier_access} here"));
                }
                let rendered = render_fault(&d, &self.file_name, &self.source);
                RuntimeError::VmFault { error, rendered }
            }
            _ => RuntimeError::Vm(error),
        }
    }

    /// A `cpu` backend error; a fault is rendered at the instruction it happened in.
    pub fn cpu_error(&self, error: tl_cpu::CpuError) -> RuntimeError {
        let rendered = match &error {
            tl_cpu::CpuError::Fault { message, block, thread, at: Some((span, what)) } => {
                let d = Diagnostic::error(format!("{message} (block ({}, {}, {}), thread {thread})", block[0], block[1], block[2]), *span).with_note(format!("in `{what}`"));
                render_fault(&d, &self.file_name, &self.source)
            }
            e => e.to_string(),
        };
        RuntimeError::Cpu { error, rendered }
    }

    pub fn simt_error(&self, error: tl_vm::simt::SimtError) -> RuntimeError {
        let rendered = render_simt_error(&error, &self.file_name, &self.source);
        RuntimeError::Simt { error, rendered }
    }
}

/// Renders a simulator error like a compiler diagnostic: the message, then the source line of
/// the instruction it happened in (for a race, the later access, with the earlier one as a
/// secondary label) and notes naming the block-IR instructions. Without a location, the
/// error's own text. The leading `error: ` is left out (the printer adds it).
pub fn render_simt_error(error: &tl_vm::simt::SimtError, file_name: &str, source: &str) -> String {
    use tl_vm::simt::{AccessKind, SimtError};
    let verb = |kind: AccessKind, present: bool| match (kind, present) {
        (AccessKind::Read, true) => "reads",
        (AccessKind::Read, false) => "read",
        (AccessKind::Write, true) => "writes",
        (AccessKind::Write, false) => "wrote",
    };
    let diagnostic = match error {
        SimtError::SharedRace { first, second, .. } => {
            let primary = second.at.as_ref().or(first.at.as_ref());
            primary.map(|(span, _)| {
                let mut d = Diagnostic::error(error.message(), *span);
                if let Some((s, what)) = &second.at {
                    d = d.with_note(format!("thread {} {} in `{what}`", second.thread, verb(second.kind, true)));
                    if let Some((f, _)) = &first.at {
                        if f != s {
                            d = d.with_label(*f, format!("thread {} {} here", first.thread, verb(first.kind, false)));
                        }
                    }
                }
                if let Some((_, what)) = &first.at {
                    d = d.with_note(format!("thread {} {} in `{what}`", first.thread, verb(first.kind, false)));
                }
                d.with_note("a barrier (`sync`) between the two accesses orders them")
            })
        }
        e => e.location().map(|(span, what)| Diagnostic::error(e.message(), *span).with_note(format!("in `{what}`"))),
    };
    match diagnostic {
        Some(d) => render_fault(&d, file_name, source),
        None => error.to_string(),
    }
}

/// Reads a whole file, refusing anything but a regular file first: a FIFO would block until a
/// writer comes, and a device may never end.
pub fn read_regular_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        let what = if metadata.is_dir() { "a directory" } else { "not a regular file (a FIFO, socket or device)" };
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("it is {what}")));
    }
    std::fs::read(path)
}

fn poisoned() -> RuntimeError {
    RuntimeError::Usage("a kernel's variant cache was poisoned by a panic in another thread".into())
}

/// A run-time fault's diagnostic rendered against the source, without the leading `error: `
/// (whoever prints it adds that).
fn render_fault(d: &Diagnostic, file_name: &str, source: &str) -> String {
    let text = d.render(file_name, source);
    text.strip_prefix("error: ").unwrap_or(&text).trim_end().to_string()
}

fn render(file_name: &str, source: &str, diagnostics: Vec<Diagnostic>) -> RuntimeError {
    RuntimeError::Compile { rendered: render_all(&diagnostics, file_name, source), diagnostics }
}

/// A compiled kernel, ready to launch.
///
/// Launches on `simt` and `cuda` run a variant specialized for the launch's *signature*: for
/// each integer scalar parameter, the largest power of two (up to `2^specialize_log2`) that
/// divides its value ([`Kernel::signature`]). A variant may vectorize global accesses the
/// unspecialized code cannot prove aligned. Variants are lowered once per signature and their
/// PTX generated once per signature and architecture. The `vm` backend has one semantics and
/// needs none.
#[derive(Debug)]
pub struct Kernel {
    pub module: Module,
    pub compiled: Compiled,
    /// The `reference` block for this kernel, if the source has one.
    pub reference: Option<ast::Reference>,
    /// PTX of the unspecialized variant, keyed by architecture.
    ptx: HashMap<Arch, OnceLock<String>>,
    /// The largest power of two (as log2) launches specialize on; 0 runs the unspecialized
    /// variant (`compiled.lir`) always. Defaults to 7 (divisibility by up to 128).
    pub specialize_log2: u32,
    variants: Mutex<HashMap<Assumptions, Arc<tl_compiler::lir::Program>>>,
    variant_ptx: Mutex<HashMap<(Assumptions, Arch), Arc<String>>>,
    /// Native code of the variants the `cpu` backend ran, compiled once per variant.
    cpu_programs: Mutex<HashMap<Assumptions, Arc<tl_cpu::CompiledProgram>>>,
}

/// An argument of [`Kernel::launch_device`]: a scalar, or a tensor in device memory.
#[derive(Debug)]
pub enum DeviceArg<'a> {
    Scalar(Number),
    Tensor(&'a cuda::DeviceTensor<'a>),
}

/// What a launch measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LaunchReport {
    pub grid: [u32; 3],
    /// GPU time of the kernel, for the `cuda` backend.
    pub kernel_ms: Option<f64>,
    /// Wall-clock time of the launch on the host, any backend: what the caller waited,
    /// compilation of a variant not compiled before and argument copies included.
    pub wall_ms: f64,
}

impl Kernel {
    pub fn name(&self) -> &str {
        &self.compiled.kernel.name
    }

    /// PTX for `arch`, generated once per kernel and architecture.
    pub fn ptx(&self, arch: Arch) -> Result<&str, RuntimeError> {
        let Some(slot) = self.ptx.get(&arch) else {
            return Err(RuntimeError::Usage(format!("no PTX is generated for architecture {}", arch.name())));
        };
        if let Some(p) = slot.get() {
            return Ok(p);
        }
        let ptx = self.module.ptx_of(&self.compiled.lir, arch)?;
        Ok(slot.get_or_init(|| ptx))
    }

    /// The values of the integer scalar parameters in `args` (`None` for the others).
    fn scalar_values(&self, args: &[Arg]) -> Vec<Option<i64>> {
        self.compiled
            .kernel
            .params
            .iter()
            .zip(args)
            .map(|(p, a)| match (&p.kind, a) {
                (ParamKind::Scalar(d), Arg::Scalar(Number::Int(v))) if d.is_int() => i64::try_from(*v).ok(),
                (ParamKind::Scalar(d), Arg::Scalar(Number::Float(v))) if d.is_int() && v.is_finite() => Some(*v as i64),
                _ => None,
            })
            .collect()
    }

    /// The signature of a launch with `args`: what its variant may assume about each integer
    /// scalar (the largest power of two dividing it, at most `2^specialize_log2`).
    pub fn signature(&self, args: &[Arg]) -> Assumptions {
        Assumptions::from_values(&self.compiled.kernel, &self.scalar_values(args), self.specialize_log2)
    }

    /// Parses assumptions written `NAME%K` (e.g. `["n%8", "k%16"]`) for this kernel.
    pub fn assumptions(&self, items: &[String]) -> Result<Assumptions, RuntimeError> {
        Assumptions::parse(&self.compiled.kernel, items).map_err(|e| RuntimeError::Usage(e.to_string()))
    }

    /// The LIR of the variant for `assumptions`, lowered once and cached; the unspecialized
    /// one is `compiled.lir` as it is now.
    pub fn variant(&self, assumptions: &Assumptions) -> Result<Arc<tl_compiler::lir::Program>, RuntimeError> {
        if assumptions.is_none() {
            return Ok(Arc::new(self.compiled.lir.clone()));
        }
        if let Some(p) = self.variants.lock().map_err(|_| poisoned())?.get(assumptions) {
            return Ok(p.clone());
        }
        let program = Arc::new(self.compiled.variant(assumptions).map_err(|e| self.module.render(e.diagnostics))?);
        let mut cache = self.variants.lock().map_err(|_| poisoned())?;
        Ok(cache.entry(assumptions.clone()).or_insert(program).clone())
    }

    /// PTX of the variant for `assumptions` and `arch`, generated once per pair.
    pub fn variant_ptx(&self, assumptions: &Assumptions, arch: Arch) -> Result<Arc<String>, RuntimeError> {
        if assumptions.is_none() {
            return Ok(Arc::new(self.ptx(arch)?.to_string()));
        }
        let key = (assumptions.clone(), arch);
        if let Some(p) = self.variant_ptx.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(p.clone());
        }
        let program = self.variant(assumptions)?;
        let ptx = Arc::new(self.module.ptx_of(&program, arch)?);
        let mut cache = self.variant_ptx.lock().map_err(|_| poisoned())?;
        Ok(cache.entry(key).or_insert(ptx).clone())
    }

    /// The cubin `ptxas` makes of the variant's PTX for `arch` (an ELF file of the GPU's
    /// machine code, for `cuobjdump -sass` or `nvdisasm`): from the compile cache when it holds
    /// the cubin of this PTX by this `ptxas` build, else assembled and kept there.
    /// [`RuntimeError::Ptxas`] when no `ptxas` is found (`TL_PTXAS`, `PATH`) or it fails.
    pub fn variant_cubin(&self, assumptions: &Assumptions, arch: Arch) -> Result<Vec<u8>, RuntimeError> {
        use tl_compiler::backend::ptxas;
        let ptx = self.variant_ptx(assumptions, arch)?;
        let version = ptxas::ptxas_version().ok_or_else(|| {
            RuntimeError::Ptxas(match ptxas::find_ptxas() {
                Some(path) => format!("`{} --version` does not run: a cubin needs a working ptxas (TL_PTXAS or PATH)", path.display()),
                None => "ptxas not found (set TL_PTXAS or put ptxas on PATH): a cubin needs it".into(),
            })
        })?;
        let key = cache::CacheKey::cubin(&format!("ptxas {version}"), arch.name(), &ptx);
        if let Some(cubin) = self.module.cache.get(&key) {
            return Ok(cubin);
        }
        let cubin = ptxas::assemble_cubin(&ptx, arch).map_err(RuntimeError::Ptxas)?;
        self.module.cache.put(&key, &cubin);
        Ok(cubin)
    }

    /// The variant for `assumptions` compiled to native code by the `cpu` backend, once per
    /// variant; the machine code is kept in the compile cache ([`cache`]) between processes.
    pub fn cpu_program(&self, assumptions: &Assumptions) -> Result<Arc<tl_cpu::CompiledProgram>, RuntimeError> {
        if let Some(p) = self.cpu_programs.lock().map_err(|_| poisoned())?.get(assumptions) {
            return Ok(p.clone());
        }
        let program = self.variant(assumptions)?;
        let compiled = Arc::new(tl_cpu::compile_with_cache(&program, Some(&*self.module.cache)).map_err(|e| self.module.cpu_error(e))?);
        let mut cache = self.cpu_programs.lock().map_err(|_| poisoned())?;
        Ok(cache.entry(assumptions.clone()).or_insert(compiled).clone())
    }

    /// Runs the kernel over its grid. Tensors of `args` are updated in place. `simt` and `cuda`
    /// run the variant of the launch's [`signature`](Kernel::signature).
    pub fn launch(&self, backend: Backend, args: &mut [Arg]) -> Result<LaunchReport, RuntimeError> {
        let signature = self.signature(args);
        self.launch_variant(backend, args, &signature)
    }

    /// Runs the variant for `assumptions` (checked against the arguments: a variant launched
    /// with values it does not assume would compute the wrong thing).
    pub fn launch_variant(&self, backend: Backend, args: &mut [Arg], assumptions: &Assumptions) -> Result<LaunchReport, RuntimeError> {
        let start = std::time::Instant::now();
        let grid = self.checked_grid(args, assumptions)?;
        let mut report = LaunchReport { grid, kernel_ms: None, wall_ms: 0.0 };
        if !grid.contains(&0) {
            report.kernel_ms = backend.executor().launch(self, args, grid, assumptions)?;
        }
        report.wall_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(report)
    }

    /// Runs the kernel on the GPU (the `cuda` backend) on tensors already in device memory:
    /// each [`cuda::DeviceTensor`]'s address is passed to the kernel as it is, nothing is
    /// copied, and the kernel's writes are in the buffers when this returns. The arguments are
    /// checked against the parameters as for [`Kernel::launch`] (kinds, dtypes, shapes, scalar
    /// ranges), before the driver is touched; the variant is the arguments' signature.
    pub fn launch_device(&self, args: &[DeviceArg]) -> Result<LaunchReport, RuntimeError> {
        let start = std::time::Instant::now();
        let kernel = &self.compiled.kernel;
        let shapes: Vec<tl_vm::interp::ArgShape> = args
            .iter()
            .map(|a| match a {
                DeviceArg::Scalar(v) => tl_vm::interp::ArgShape::Scalar(*v),
                DeviceArg::Tensor(t) => tl_vm::interp::ArgShape::Tensor { dtype: t.dtype, shape: &t.shape, bytes: t.bytes() },
            })
            .collect();
        let values = tl_vm::interp::check_arg_shapes(kernel, &shapes).map_err(|e| self.launch_error(e))?;
        let grid = tl_vm::interp::grid_from_params(kernel, &values).map_err(|e| self.launch_error(e))?;
        let assumptions = Assumptions::from_values(kernel, &values, self.specialize_log2);
        let mut report = LaunchReport { grid, kernel_ms: None, wall_ms: 0.0 };
        if !grid.contains(&0) {
            let mut kernel_args: Vec<cuda::KernelArg> = Vec::with_capacity(args.len());
            for (param, arg) in kernel.params.iter().zip(args) {
                kernel_args.push(match (arg, &param.kind) {
                    (DeviceArg::Scalar(v), ParamKind::Scalar(d)) => cuda::KernelArg::Scalar { value: *v, dtype: *d },
                    (DeviceArg::Tensor(t), _) => cuda::KernelArg::Device(t),
                    _ => return Err(RuntimeError::Usage(format!("argument `{}` has the wrong kind", param.name))),
                });
            }
            let times = executors::cuda::time_kernel_args(self, &mut kernel_args, grid, &assumptions, &cuda::TimingPlan::ONCE)?;
            report.kernel_ms = times.first().copied();
        }
        report.wall_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(report)
    }

    /// Times the variant for `assumptions` on the GPU (the `cuda` backend) as `plan` says:
    /// warm-up launches, then timed ones, each after an L2 flush, on one device copy of the
    /// arguments (copied back at the end, as a launch does). Returns the timed launches' kernel
    /// times in milliseconds; [`cuda::median_ms`] summarizes them. The arguments are checked
    /// as for [`Kernel::launch_variant`]; an empty grid is an error here (nothing to time).
    pub fn time_variant(&self, args: &mut [Arg], assumptions: &Assumptions, plan: &cuda::TimingPlan) -> Result<Vec<f64>, RuntimeError> {
        let grid = self.checked_grid(args, assumptions)?;
        if grid.contains(&0) {
            return Err(RuntimeError::Usage(format!("the grid of `{}` is empty ({grid:?}): there is nothing to time", self.name())));
        }
        executors::cuda::time(self, args, grid, assumptions, plan)
    }

    /// The launch's grid, after checking the arguments against the kernel's parameters and the
    /// variant's assumptions (a variant launched with values it does not assume would compute
    /// the wrong thing).
    fn checked_grid(&self, args: &[Arg], assumptions: &Assumptions) -> Result<[u32; 3], RuntimeError> {
        let kernel = &self.compiled.kernel;
        tl_vm::interp::check_args(kernel, args).map_err(|e| self.launch_error(e))?;
        if !assumptions.holds_for(&self.scalar_values(args)) {
            return Err(RuntimeError::Usage(format!(
                "the arguments of `{}` do not satisfy the variant's assumptions ({})",
                kernel.name,
                assumptions.describe(kernel)
            )));
        }
        tl_vm::interp::eval_grid(kernel, args).map_err(|e| self.launch_error(e))
    }

    /// A launch error rendered at its place in the source: a bad argument at its parameter, a
    /// bad grid at the kernel's `grid(..)`, a fault at its instruction.
    pub fn launch_error(&self, error: tl_vm::VmError) -> RuntimeError {
        let span = match &error {
            tl_vm::VmError::BadArg { index, .. } => self.compiled.kernel.params.get(*index).map(|p| p.span),
            tl_vm::VmError::Grid { .. } => self.grid_span(),
            _ => None,
        };
        match span {
            Some(span) => {
                let rendered = render_fault(&Diagnostic::error(error.to_string(), span), &self.module.file_name, &self.module.source);
                RuntimeError::VmFault { error, rendered }
            }
            None => self.module.vm_error(error),
        }
    }

    /// The span of the kernel's `grid(..)` clause.
    fn grid_span(&self) -> Option<tl_compiler::diagnostics::Span> {
        self.module.kernel_declaration(&self.compiled.kernel.name).map(|k| k.grid_span)
    }

    /// A usage error about parameter `index`, rendered at the parameter.
    /// The value `v` given for scalar parameter `index` of dtype `d`, as the launch takes it.
    fn scalar_argument(&self, index: usize, d: DType, v: Number) -> Result<Number, RuntimeError> {
        let name = &self.compiled.kernel.params[index].name;
        match v {
            Number::Int(i) if d.is_int() || d == DType::Bool => {
                let (lo, hi) = d.int_range().expect("integer dtype");
                if i < lo || i > hi {
                    return Err(self.param_error(index, format!("--arg {name}={i} is out of range for {d} ({lo}..={hi})")));
                }
                Ok(v)
            }
            Number::Float(f) if d.is_int() || d == DType::Bool => {
                Err(self.param_error(index, format!("--arg {name}={f} is not an integer, but `{name}` is {d}")))
            }
            _ => {
                // Exactly the number given when the float format holds it, else rounded once.
                let rounded = d.round_number(v);
                if rounded.to_f64().is_infinite() && v.to_f64().is_finite() {
                    let max = d.max_value();
                    return Err(self.param_error(index, format!("--arg {name}={v} is beyond the largest finite {d} ({max})")));
                }
                Ok(rounded)
            }
        }
    }

    fn param_error(&self, index: usize, message: String) -> RuntimeError {
        let span = self.compiled.kernel.params[index].span;
        let rendered = render_fault(&Diagnostic::error(message.clone(), span), &self.module.file_name, &self.module.source);
        RuntimeError::Launch { message, rendered }
    }

    /// Seeded random arguments: integer scalars from `sizes` or drawn within their dtype (1..=160
    /// where the dtype allows, `bool` 0 or 1), tensors of the resulting shapes with random
    /// values ([`random_tensor`]), outputs (`global mut`) poisoned ([`poisoned_tensor`]) so that
    /// unwritten elements show. Before allocating, the tensors' total size is checked against
    /// [`max_host_bytes`]: an error names each tensor's size and the limit.
    pub fn random_args(&self, seed: u64, sizes: &[(String, i64)]) -> Result<Vec<Arg>, RuntimeError> {
        self.random_args_within(seed, sizes, max_host_bytes())
    }

    /// [`Kernel::random_args`] with `limit` bytes of tensors at most instead of
    /// [`max_host_bytes`].
    pub fn random_args_within(&self, seed: u64, sizes: &[(String, i64)], limit: u64) -> Result<Vec<Arg>, RuntimeError> {
        let scalars: Vec<(String, Number)> = sizes.iter().map(|(n, v)| (n.clone(), Number::Int(i128::from(*v)))).collect();
        self.random_args_with_scalars(seed, &scalars, limit)
    }

    /// [`Kernel::random_args_within`] with scalar values of any kind: integers for integer and
    /// bool parameters (in range), integers or floats for float parameters, rounded to the
    /// parameter's dtype (to nearest even; a finite value beyond the dtype's range is an
    /// error, an infinity or NaN given as such is kept).
    pub fn random_args_with_scalars(&self, seed: u64, scalars: &[(String, Number)], limit: u64) -> Result<Vec<Arg>, RuntimeError> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let kernel = &self.compiled.kernel;
        for (name, _) in scalars {
            if !kernel.params.iter().any(|p| &p.name == name && matches!(p.kind, ParamKind::Scalar(_))) {
                return Err(RuntimeError::Usage(format!("kernel `{}` has no scalar parameter `{name}`", kernel.name)));
            }
        }
        let mut values: Vec<Option<i64>> = Vec::new();
        let mut args = Vec::new();
        for (index, p) in kernel.params.iter().enumerate() {
            match &p.kind {
                ParamKind::Scalar(d) => {
                    let v = match scalars.iter().find(|(n, _)| *n == p.name) {
                        Some((_, v)) => self.scalar_argument(index, *d, *v)?,
                        None if d.is_float() => Number::Float(d.round(rng.random_range(-2.0..2.0))),
                        None => {
                            let (lo, hi) = d.int_range().expect("integer or bool dtype");
                            let lo = if *d == DType::Bool || hi < 1 { lo } else { 1 };
                            Number::Int(rng.random_range(lo as i64..=hi.min(160) as i64) as i128)
                        }
                    };
                    values.push(match v {
                        Number::Int(i) => i64::try_from(i).ok(),
                        Number::Float(f) => Some(f as i64),
                    });
                    args.push(Arg::Scalar(v));
                }
                ParamKind::Global { .. } => {
                    values.push(None);
                    args.push(Arg::Scalar(Number::Int(0)));
                }
            }
        }
        // Shapes and sizes first, so that nothing is allocated for a launch that cannot fit.
        let mut shapes: Vec<Option<Vec<usize>>> = vec![None; kernel.params.len()];
        let mut total: u128 = 0;
        let mut sized: Vec<String> = Vec::new();
        for (i, p) in kernel.params.iter().enumerate() {
            let ParamKind::Global { dtype, shape, .. } = &p.kind else { continue };
            let mut dims = Vec::new();
            for s in shape {
                let v = s.eval(&values).map_err(|e| self.param_error(i, format!("shape of `{}`: {e}", p.name)))?;
                let v = usize::try_from(v).map_err(|_| self.param_error(i, format!("shape of `{}` has extent {v}", p.name)))?;
                dims.push(v);
            }
            let elements = dims.iter().try_fold(1u128, |acc, &d| acc.checked_mul(d as u128)).unwrap_or(u128::MAX);
            let bytes = elements.saturating_mul(dtype.bits() as u128).div_ceil(8);
            total = total.saturating_add(bytes);
            sized.push(format!("`{}`: {dtype}{dims:?} = {bytes} bytes", p.name));
            shapes[i] = Some(dims);
        }
        if total > limit as u128 {
            let first = kernel.params.iter().position(|p| matches!(p.kind, ParamKind::Global { .. })).unwrap_or(0);
            return Err(self.param_error(
                first,
                format!(
                    "these sizes need {total} bytes of tensors ({}), more than the {limit} bytes allowed (set TL_MAX_HOST_BYTES to allow more)",
                    sized.join(", ")
                ),
            ));
        }
        // Tensors that `atomic_add` adds into are accumulators: their values at launch are part
        // of the result, so they start random like inputs (and references read them).
        let accumulated: std::collections::HashSet<usize> = kernel
            .values
            .iter()
            .filter_map(|v| if let tl_compiler::ir::Op::AtomicAdd { param, .. } = v.op { Some(param.index()) } else { None })
            .collect();
        for (i, p) in kernel.params.iter().enumerate() {
            let ParamKind::Global { dtype, mutable, .. } = &p.kind else { continue };
            let dims = shapes[i].take().expect("sized above");
            let poisoned = *mutable && !accumulated.contains(&i);
            let t = if poisoned { poisoned_tensor(*dtype, &dims) } else { random_tensor(&mut rng, *dtype, &dims) };
            args[i] = Arg::Tensor(t);
        }
        Ok(args)
    }

    /// Evaluates the host reference on `args` (before the launch overwrote outputs that are also
    /// inputs). Returns `(parameter index, expected values)` per output.
    pub fn reference_outputs(&self, args: &[Arg]) -> Result<Vec<(usize, reference::Array)>, RuntimeError> {
        let Some(r) = &self.reference else {
            return Err(RuntimeError::Usage(format!(
                "kernel `{}` has no `reference {}` block to check against",
                self.name(),
                self.name()
            )));
        };
        let ref_args: Vec<reference::RefArg> = args
            .iter()
            .map(|a| match a {
                Arg::Scalar(v) => reference::RefArg::Scalar(v.to_f64()),
                Arg::Tensor(t) => reference::RefArg::Tensor(t),
            })
            .collect();
        reference::evaluate(r, &self.compiled.kernel, &ref_args).map_err(|d| self.module.render(vec![d]))
    }

    /// Runs on `backend` and compares every output with the host reference.
    pub fn check(&self, backend: Backend, args: &mut [Arg]) -> Result<CheckReport, RuntimeError> {
        let expected = self.reference_outputs(args)?;
        let launch = self.launch(backend, args)?;
        let mut outputs = Vec::new();
        for (index, want) in expected {
            let Arg::Tensor(t) = &args[index] else { unreachable!("outputs are tensors") };
            let rtol = reference::tolerance(t.dtype);
            let cmp = reference::compare(&t.to_f64(), &want.data, rtol);
            outputs.push(OutputCheck { name: self.compiled.kernel.params[index].name.clone(), rtol, comparison: cmp });
        }
        Ok(CheckReport { launch, outputs })
    }
}

/// The most bytes of tensors [`Kernel::random_args`] allocates for one launch: the
/// environment variable `TL_MAX_HOST_BYTES` when set to a number, 8 GiB otherwise.
pub fn max_host_bytes() -> u64 {
    std::env::var("TL_MAX_HOST_BYTES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(8 << 30)
}

/// The e8m0 codes [`random_tensor`] draws from: 2^-4 ..= 2^4 (bias 127). Scales multiply data
/// that is then summed, often into f16 (max 65504): with 2^8, a k = 130 sum of 4-bit weights
/// times scales already overflowed f16 in `qmatmul`; 2^4 keeps such sums finite while still
/// covering scales below and above 1.
pub const RANDOM_E8M0_CODES: std::ops::RangeInclusive<u64> = 123..=131;

/// A tensor of random elements, the inputs of [`Kernel::random_args`]. The draws are meant to
/// expose masking, sign and high-bit mistakes, not only to exercise the happy path:
///
/// * floats: a mean drawn once per tensor from [-1, 1], plus per element a uniform [-1, 1)
///   scaled by one of 2^-4 ..= 2^1 (mixed magnitudes, not zero-mean), rounded to the dtype;
/// * integers of at most 8 bits: uniformly random codes over the whole range (high bits set);
///   wider integers: uniform in ±2^(bits/2 − 1), so that a product of two still fits;
///   booleans 0 or 1;
/// * low-precision dtypes ([`DType::is_low_precision`]): uniformly random *codes*, so that every
///   value the format has is exercised (subnormals, ±0, the largest magnitudes). Float codes
///   that decode to NaN or infinity are redrawn, since a reference comparison cannot tell an
///   expected NaN from a wrong one; `e8m0` draws from [`RANDOM_E8M0_CODES`], since its full
///   range (2^-127 ..= 2^127) overflows f32 products.
pub fn random_tensor(rng: &mut impl rand::Rng, dtype: DType, shape: &[usize]) -> HostTensor {
    let n: usize = shape.iter().product();
    if dtype.is_low_precision() || (dtype.is_int() && dtype.bits() <= 8) {
        let codes: Vec<u64> = (0..n).map(|_| random_code(rng, dtype)).collect();
        return HostTensor::from_codes(dtype, shape, &codes);
    }
    let mean: f64 = if dtype.is_float() { rng.random_range(-1.0..=1.0) } else { 0.0 };
    let data: Vec<f64> = (0..n)
        .map(|_| match dtype {
            d if d.is_float() => mean + rng.random_range(-1.0..1.0) * 2f64.powi(rng.random_range(-4..=1)),
            DType::Bool => rng.random_range(0..2) as f64,
            d => {
                let half = 1i64 << (d.bits() / 2 - 1);
                let lo = if d.is_signed_int() { -half } else { 0 };
                rng.random_range(lo..half) as f64
            }
        })
        .collect();
    HostTensor::from_f64(dtype, shape, &data)
}

/// One uniformly random code of a low-precision dtype whose value is finite.
fn random_code(rng: &mut impl rand::Rng, dtype: DType) -> u64 {
    if dtype == DType::E8M0 {
        return rng.random_range(RANDOM_E8M0_CODES);
    }
    let limit = 1u64 << dtype.bits();
    loop {
        let code = rng.random_range(0..limit);
        // At most a few codes of any format are NaN or infinite (for an 8-bit IEEE-style
        // format with a 1-bit exponent, half of them), so this ends after a few draws.
        if dtype.decode(code).is_finite() {
            return code;
        }
    }
}

/// An output tensor before a launch: every element a value the kernel never computes by
/// accident, so that elements it fails to write show up in the comparison.
///
/// Floats hold NaN where the format has one, and the largest finite value otherwise (the
/// sub-byte `fNeXmY` formats, whose NaN would encode as +0, a value kernels do write);
/// integers hold their largest value; booleans 1.
pub fn poisoned_tensor(dtype: DType, shape: &[usize]) -> HostTensor {
    // Codes, not values: the largest u64 or i64 is not an f64, and rounding it into the
    // dtype from f64 does not give it back.
    let code = match (dtype.float_format(), dtype) {
        // An IEEE-style `f8e7m0` has no mantissa bit to tell NaN from infinity; its all-ones
        // exponent is infinity only, so it gets the largest value like the formats without NaN.
        (Some(f), _) => f.nan_code().filter(|&c| f.decode(c).is_nan()).unwrap_or_else(|| f.max_finite_code()),
        (None, DType::Int { signed: true, bits }) => tl_compiler::dtype::mask(bits as u32 - 1),
        (None, DType::Int { signed: false, bits }) => tl_compiler::dtype::mask(bits as u32),
        (None, _) => 1,
    };
    let mut t = HostTensor::zeros(dtype, shape);
    for i in 0..t.len() {
        t.set_code(i, code);
    }
    t
}

/// One output compared with its reference.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputCheck {
    pub name: String,
    pub rtol: f64,
    pub comparison: reference::Comparison,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckReport {
    pub launch: LaunchReport,
    pub outputs: Vec<OutputCheck>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.outputs.iter().all(|o| o.comparison.mismatches == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A code generator that records what it was asked for (the runtime never links LLVM).
    struct Recording(std::sync::Mutex<Vec<(String, Arch)>>);

    impl CodeGenerator for Recording {
        fn ptx(&self, program: &tl_compiler::lir::Program, arch: Arch) -> Result<String, tl_compiler::backend::BackendError> {
            self.0.lock().unwrap().push((program.name.clone(), arch));
            Ok(format!("// ptx of {} for {arch}", program.name))
        }
        fn intermediate(&self, program: &tl_compiler::lir::Program, _: Arch) -> Result<String, tl_compiler::backend::BackendError> {
            Ok(program.name.clone())
        }
    }

    #[test]
    fn ptx_comes_from_the_module_code_generator_once_per_architecture() {
        let source = "kernel k(x: global mut f32[32]) grid(1) warps(1) {\n    store(x, load(x, [0], [32]) + 1.0, [0]);\n}\n";
        // Without one, asking for PTX says how to get a code generator; the CPU backends work.
        let module = Module::from_source("k.tl", source).unwrap();
        let kernel = module.kernel(None, &[]).unwrap();
        let e = kernel.ptx(Arch::Sm80).expect_err("no code generator").to_string();
        assert!(e.contains("tl_ptx::code_generator()"), "{e}");
        let mut args = vec![Arg::Tensor(HostTensor::filled(DType::F32, &[32], 2.0))];
        kernel.launch(Backend::Vm, &mut args).unwrap();
        assert_eq!(args[0].tensor().unwrap().get(5), 3.0);
        // With one, each architecture's PTX is generated once and kept.
        let recording = Arc::new(Recording(Default::default()));
        let kernel = module.with_code_generator(recording.clone()).kernel(None, &[]).unwrap();
        for _ in 0..3 {
            assert_eq!(kernel.ptx(Arch::Sm80).unwrap(), "// ptx of k for sm_80");
            assert_eq!(kernel.ptx(Arch::Sm90a).unwrap(), "// ptx of k for sm_90a");
        }
        assert_eq!(*recording.0.lock().unwrap(), vec![("k".to_string(), Arch::Sm80), ("k".to_string(), Arch::Sm90a)]);
    }

    #[test]
    fn simulator_errors_render_like_diagnostics_with_both_sides_of_a_race() {
        use tl_compiler::diagnostics::Span;
        use tl_vm::simt::{Access, AccessKind, SimtError};
        let source = "kernel k() {\n    let a = stage(x);\n    let b = read(a);\n}\n";
        let span = |text: &str| {
            let start = source.find(text).unwrap();
            Span::new(start, start + text.len())
        };
        let race = SimtError::SharedRace {
            block: [1, 0, 0],
            byte: 16,
            first: Access { thread: 5, kind: AccessKind::Write, at: Some((span("stage(x)"), "%1 = stage %0".into())) },
            second: Access { thread: 3, kind: AccessKind::Read, at: Some((span("read(a)"), "%2 = read %1".into())) },
        };
        assert_eq!(
            render_simt_error(&race, "k.tl", source),
            "shared-memory race: thread 3 reads byte 16 that thread 5 wrote since the last barrier (block [1, 0, 0])
 --> k.tl:3:13
  |
3 |     let b = read(a);
  |             ^^^^^^^
 ::: k.tl:2:13
  |
2 |     let a = stage(x);
  |             -------- thread 5 wrote here
  = note: thread 3 reads in `%2 = read %1`
  = note: thread 5 wrote in `%1 = stage %0`
  = note: a barrier (`sync`) between the two accesses orders them"
        );
        let oob = SimtError::GlobalOutOfBounds {
            block: [0, 0, 0],
            thread: 7,
            what: "load",
            param: "x".into(),
            index: 9,
            len: 8,
            at: Some((span("stage(x)"), "%1 = stage %0".into())),
        };
        assert_eq!(
            render_simt_error(&oob, "k.tl", source),
            "load index 9 is outside `x` (8 elements) in block [0, 0, 0], thread 7
 --> k.tl:2:13
  |
2 |     let a = stage(x);
  |             ^^^^^^^^
  = note: in `%1 = stage %0`"
        );
        // Without a location: the error's own text.
        let nowhere = SimtError::DivergentBarrier { block: [0, 0, 0], at: None };
        assert_eq!(render_simt_error(&nowhere, "k.tl", source), nowhere.to_string());
        assert_eq!(nowhere.to_string(), "a barrier is reached by only some threads of block [0, 0, 0]");
    }

    #[test]
    fn random_low_bit_tensors_draw_finite_codes_across_the_range() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for dtype in DType::all().into_iter().filter(|d| d.is_low_precision()) {
            let t = random_tensor(&mut rng, dtype, &[4096]);
            assert_eq!(Some(t.data.len()), HostTensor::byte_len(dtype, &[4096]));
            let codes: std::collections::BTreeSet<u64> = (0..t.len()).map(|i| t.code(i)).collect();
            assert!(t.to_f64().iter().all(|v| v.is_finite()), "{dtype}: a NaN or infinite input");
            if dtype == DType::E8M0 {
                assert_eq!(codes, RANDOM_E8M0_CODES.collect(), "{dtype}");
                assert!(t.to_f64().iter().all(|v| (1.0 / 16.0..=16.0).contains(v)));
                continue;
            }
            // Every finite code of a format of at most 8 bits shows up in 4096 draws.
            let finite: std::collections::BTreeSet<u64> =
                (0..1u64 << dtype.bits()).filter(|c| dtype.decode(*c).is_finite()).collect();
            assert_eq!(codes, finite, "{dtype}");
        }
    }

    #[test]
    fn random_standard_tensors_expose_high_bits_offsets_and_magnitudes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        for dtype in DType::STANDARD {
            let values = random_tensor(&mut rng, dtype, &[4096]).to_f64();
            assert!(values.iter().any(|v| *v != 0.0), "{dtype}");
            match dtype {
                DType::Bool => assert!(values.iter().all(|v| *v == 0.0 || *v == 1.0)),
                d if d.is_float() => {
                    assert!(values.iter().all(|v| v.abs() <= 3.0), "{dtype}");
                    // Mixed magnitudes around a mean of the tensor's own.
                    let mean = values.iter().sum::<f64>() / values.len() as f64;
                    let spread = |lo: f64, hi: f64| values.iter().any(|v| ((v - mean).abs()) >= lo && (v - mean).abs() < hi);
                    assert!(spread(0.0, 1.0 / 32.0) && spread(1.0, 2.0), "{dtype}: no mixed magnitudes");
                }
                d if d.bits() <= 8 => {
                    // Every code, so the high bit is set in about half the draws.
                    let (lo, hi) = d.int_range().unwrap();
                    let (lo, hi) = (lo as f64, hi as f64);
                    assert!(values.contains(&lo) && values.contains(&hi), "{dtype}: the extremes never show");
                }
                d => {
                    let half = (1i64 << (d.bits() / 2 - 1)) as f64;
                    assert!(values.iter().all(|v| v.abs() <= half), "{dtype}");
                    assert!(values.iter().any(|v| v.abs() > 16.0), "{dtype}: only small values");
                }
            }
        }
        // Tensors get different means: not all zero-mean.
        let means: Vec<f64> = (0..8)
            .map(|_| {
                let v = random_tensor(&mut rng, DType::F32, &[1024]).to_f64();
                v.iter().sum::<f64>() / v.len() as f64
            })
            .collect();
        assert!(means.iter().any(|m| m.abs() > 0.25), "{means:?}");
    }

    #[test]
    fn poison_is_nan_where_the_format_has_one_and_the_maximum_otherwise() {
        for dtype in DType::all() {
            let t = poisoned_tensor(dtype, &[5]);
            let has_nan = dtype.is_float()
                && (dtype.bits() > 16 || (0..1u64 << dtype.bits()).any(|c| dtype.decode(c).is_nan()));
            for v in t.to_f64() {
                if has_nan {
                    assert!(v.is_nan(), "{dtype}: {v}");
                } else {
                    assert_eq!(v, dtype.max_value(), "{dtype}");
                }
            }
        }
        assert_eq!(poisoned_tensor(DType::F4E2M1, &[2]).to_f64(), vec![6.0, 6.0]);
        assert!(poisoned_tensor(DType::E8M0, &[1]).get(0).is_nan());
        assert_eq!(poisoned_tensor(DType::I4, &[1]).get(0), 7.0);
        assert_eq!(poisoned_tensor(DType::I64, &[1]).code(0), i64::MAX as u64);
        assert_eq!(poisoned_tensor(DType::U64, &[1]).code(0), u64::MAX);
        assert_eq!(poisoned_tensor(DType::Bool, &[1]).data, vec![1]);
    }
}
