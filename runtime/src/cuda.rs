//! The `cuda` backend: runs a PTX kernel on GPU 0 through the CUDA driver API (cudarc, with the
//! driver library loaded at run time).
//!
//! Expects: PTX text containing a `.entry` for the kernel, and kernel arguments in the kernel's
//! parameter order: every tensor is passed as one 64-bit device pointer to a copy of its bytes
//! (packed: elements of fewer than 8 bits share bytes, `HostTensor::byte_len`), every scalar as
//! a value in the register type of its dtype (`lir::Ty::of`: low-precision dtypes in 8 bits).
//! No CUDA toolkit is needed: the driver JIT-compiles the PTX for whatever GPU is present.
//!
//! Guarantees:
//! * Nothing here panics when there is no GPU. cudarc's `CudaContext::new` panics when
//!   `libcuda.so` cannot be loaded, so every entry point first asks
//!   `cudarc::driver::sys::is_culib_present()` and returns [`CudaError::NoDriver`]; as a second
//!   guard every call into cudarc runs under `catch_unwind`, so a panic inside cudarc (e.g. a
//!   driver too old to have a symbol it needs) becomes [`CudaError::Panicked`].
//! * Arguments are checked before the driver is touched: launch shape, packed tensor byte
//!   lengths, and (when the PTX parameter list can be read) the number and sizes of the kernel's
//!   parameters, since a mismatch there is undefined behaviour in `cuLaunchKernel`, not an error.
//! * [`launch`] copies every tensor to the device, launches, synchronizes (so kernel faults are
//!   reported by this call), and copies every tensor back; the caller decides which are outputs.
//! * The CUDA context and loaded modules are cached for the life of the process (creating a
//!   context and JIT-compiling PTX each cost far more than a typical kernel); after any driver
//!   error the cache is dropped, so a context broken by a sticky fault is not reused.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use cudarc::driver::{
    CudaContext, CudaModule, CudaSlice, DriverError, LaunchConfig, PushKernelArg, sys,
};
use tl_compiler::dtype::DType;
use tl_compiler::number::Number;
use tl_vm::HostTensor;

#[derive(thiserror::Error, Debug)]
pub enum CudaError {
    #[error(
        "the NVIDIA driver library (libcuda.so) was not found, so the `cuda` backend is \
         unavailable on this machine; use `--backend vm` to run kernels on the CPU"
    )]
    NoDriver,
    #[error(
        "the NVIDIA driver is installed but reports no CUDA device, so the `cuda` backend is \
         unavailable on this machine; use `--backend vm` to run kernels on the CPU"
    )]
    NoDevice,
    #[error("CUDA driver error while {during}: {message}")]
    Driver { during: String, message: String },
    #[error("the CUDA driver bindings panicked while {during}: {message}")]
    Panicked { during: String, message: String },
    #[error("bad kernel launch: {0}")]
    BadArgument(String),
}

/// One kernel argument, in parameter order.
pub enum KernelArg<'a> {
    /// A scalar, rounded to `dtype` as a cast would (integers saturate, floats round to nearest
    /// even) and passed as that type.
    Scalar { value: Number, dtype: DType },
    /// A tensor, passed as a device pointer to a copy of its bytes and copied back afterwards.
    Tensor(&'a mut HostTensor),
    /// A tensor already on the device ([`DeviceTensor`]): its address is passed as it is, and
    /// nothing is copied either way.
    Device(&'a DeviceTensor<'a>),
}

/// A tensor in GPU memory: a `cudarc` buffer on the runtime's context ([`device_context`]),
/// described by the dtype and shape the kernel's parameter has. A launch with it
/// (`Kernel::launch_device`) passes the buffer's address to the kernel without copies; the
/// kernel's writes are in the buffer when the launch returns.
#[derive(Debug)]
pub struct DeviceTensor<'a> {
    pointer: u64,
    /// The packed bytes of `dtype` and `shape` (the buffer holds at least these).
    bytes: usize,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// The buffer stays borrowed (mutably: the kernel may write it) while the tensor lives.
    buffer: std::marker::PhantomData<&'a mut ()>,
}

impl<'a> DeviceTensor<'a> {
    /// The tensor of `dtype` and `shape` in `buffer` (packed as on the host: elements of fewer
    /// than 8 bits share bytes, `HostTensor::byte_len`), from its start. The buffer must hold
    /// at least that many bytes. Work queued on the buffer's stream is waited for here, so a
    /// launch sees the buffer's data.
    pub fn new<T>(buffer: &'a mut CudaSlice<T>, dtype: DType, shape: &[usize]) -> Result<DeviceTensor<'a>, CudaError> {
        let bytes = packed_bytes(dtype, shape)?;
        let held = buffer.num_bytes();
        if held < bytes {
            return Err(CudaError::BadArgument(format!(
                "a {dtype} tensor of shape {shape:?} needs {bytes} bytes, but the device buffer holds {held}"
            )));
        }
        use cudarc::driver::DevicePtrMut;
        let stream = buffer.stream().clone();
        guarded("waiting for the buffer's stream", || stream.synchronize())?;
        let (pointer, written) = buffer.device_ptr_mut(&stream);
        drop(written);
        Ok(DeviceTensor { pointer, bytes, dtype, shape: shape.to_vec(), buffer: std::marker::PhantomData })
    }

    /// A tensor at a device address from elsewhere (another CUDA library's allocation).
    ///
    /// # Safety
    /// `pointer` must address at least `HostTensor::byte_len(dtype, shape)` bytes of device
    /// memory of the runtime's context ([`device_context`]) that nothing else uses during the
    /// launches the tensor is passed to, and that stay allocated while the tensor lives.
    pub unsafe fn from_raw(pointer: u64, dtype: DType, shape: &[usize]) -> Result<DeviceTensor<'static>, CudaError> {
        // Variants may access the tensor in 16-byte vectors from its start, as device
        // allocations (256-byte aligned) allow.
        if pointer % 16 != 0 {
            return Err(CudaError::BadArgument(format!("device address {pointer:#x} is not 16-byte aligned")));
        }
        let bytes = packed_bytes(dtype, shape)?;
        Ok(DeviceTensor { pointer, bytes, dtype, shape: shape.to_vec(), buffer: std::marker::PhantomData })
    }

    /// The packed bytes of the tensor's dtype and shape.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The packed bytes of a tensor of `dtype` and `shape` (`HostTensor::byte_len`), or the error
/// for a shape past the address space.
fn packed_bytes(dtype: DType, shape: &[usize]) -> Result<usize, CudaError> {
    HostTensor::byte_len(dtype, shape).ok_or_else(|| CudaError::BadArgument(format!("a {dtype} tensor of shape {shape:?} is larger than the address space")))
}

pub struct LaunchSpec<'a> {
    pub ptx: &'a str,
    pub kernel_name: &'a str,
    pub grid: [u32; 3],
    pub block_threads: u32,
    /// The shared memory the kernel uses, in bytes. Up to `STATIC_SHARED_BYTES` it is static
    /// (declared in the PTX) and nothing is requested at launch; beyond, the PTX declares it
    /// `.extern` and the launch opts in to that much dynamic shared memory.
    pub shared_bytes: u32,
    /// Where the cubin the driver makes of the PTX is kept between processes (`crate::cubin`);
    /// `None` JIT-compiles the PTX in every process.
    pub cubin_cache: Option<&'a crate::cache::DiskCache>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LaunchReport {
    /// GPU time of the kernel alone (CUDA events around the launch), in milliseconds.
    pub kernel_ms: f64,
}

/// True when a kernel launch can be expected to reach a GPU: the driver library loads,
/// initializes, and reports at least one device. Never panics.
pub fn driver_available() -> bool {
    culib_present()
        && matches!(guarded("counting devices", CudaContext::device_count), Ok(n) if n > 0)
}

/// The name of GPU 0, e.g. "NVIDIA H100 80GB HBM3".
pub fn device_name() -> Result<String, CudaError> {
    let ctx = context()?;
    guarded("reading the device name", || ctx.name())
}

/// The compute capability of GPU 0 as (major, minor), e.g. (9, 0) for sm_90.
pub fn compute_capability() -> Result<(i32, i32), CudaError> {
    let ctx = context()?;
    guarded("reading the compute capability", || {
        ctx.compute_capability()
    })
}

/// The architecture PTX is generated for on GPU 0: `sm_90a` on compute capability 9.x,
/// `sm_80` otherwise (Ampere and later run it).
pub fn device_arch() -> Result<tl_compiler::backend::Arch, CudaError> {
    Ok(match compute_capability()? {
        (9, _) => tl_compiler::backend::Arch::Sm90a,
        _ => tl_compiler::backend::Arch::Sm80,
    })
}

/// Runs one kernel on GPU 0 and copies every tensor argument back. See the module docs.
pub fn launch(spec: &LaunchSpec, args: &mut [KernelArg]) -> Result<LaunchReport, CudaError> {
    let times = time(spec, args, &TimingPlan::ONCE)?;
    Ok(LaunchReport { kernel_ms: times[0] })
}

/// How [`time`] repeats a launch for a benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimingPlan {
    /// Launches before the timed ones (module load and the first touch of the buffers stay out
    /// of the numbers).
    pub warmup: u32,
    /// Timed launches, at least 1.
    pub runs: u32,
    /// Bytes of a scratch buffer written before every launch, so that the L2 cache holds none
    /// of the kernel's inputs (0: no flush). The write is outside the timed region.
    pub flush_bytes: usize,
}

impl TimingPlan {
    /// One launch, not repeated, no flush: what [`launch`] does.
    pub const ONCE: TimingPlan = TimingPlan { warmup: 0, runs: 1, flush_bytes: 0 };
}

/// Runs the kernel `plan.warmup + plan.runs` times on one device copy of its arguments, each
/// launch timed alone by CUDA events (after the L2 flush of `plan.flush_bytes`, untimed), then
/// copies every tensor back as [`launch`] does; returns the timed launches' kernel times in
/// milliseconds, in launch order. The kernel must compute the same result when run again on
/// its own output (every shipped kernel writes its outputs without reading them).
pub fn time(spec: &LaunchSpec, args: &mut [KernelArg], plan: &TimingPlan) -> Result<Vec<f64>, CudaError> {
    if plan.runs == 0 {
        return Err(CudaError::BadArgument("a timing plan needs at least one timed run".into()));
    }
    validate(spec, args)?;
    let result = launch_on_device(spec, args, plan);
    if matches!(
        result,
        Err(CudaError::Driver { .. } | CudaError::Panicked { .. })
    ) {
        // A fault such as an illegal address poisons the context for good; forget it so that
        // the next launch retains a fresh one once the last reference here is dropped.
        *state() = None;
    }
    result
}

/// The bandwidth of a device-to-device copy of `bytes` bytes on GPU 0, in GB/s (10^9 bytes per
/// second) counting the bytes read plus the bytes written: the median of `runs` copies timed
/// by CUDA events, after one untimed copy. This is the memory-bandwidth ceiling a memory-bound
/// kernel is measured against.
pub fn copy_bandwidth_gbs(bytes: usize, runs: u32) -> Result<f64, CudaError> {
    if bytes == 0 || runs == 0 {
        return Err(CudaError::BadArgument("a copy-bandwidth measurement needs bytes and runs".into()));
    }
    let ctx = context()?;
    let stream = ctx.default_stream();
    let source = guarded("allocating device memory", || stream.alloc_zeros::<u8>(bytes))?;
    let mut destination = guarded("allocating device memory", || stream.alloc_zeros::<u8>(bytes))?;
    let mut times = Vec::new();
    for run in 0..=runs {
        let begin = guarded("recording an event", || stream.record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)))?;
        guarded("copying on the device", || stream.memcpy_dtod(&source, &mut destination))?;
        let end = guarded("recording an event", || stream.record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)))?;
        let ms = guarded("timing the copy", || begin.elapsed_ms(&end))? as f64;
        if run > 0 {
            times.push(ms);
        }
    }
    let median = median_ms(&mut times);
    Ok(2.0 * bytes as f64 / (median * 1e-3) / 1e9)
}

/// The median of some times (the lower middle one of an even count).
pub fn median_ms(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(times.len().saturating_sub(1) / 2).copied().unwrap_or(f64::NAN)
}

fn launch_on_device(spec: &LaunchSpec, args: &mut [KernelArg], plan: &TimingPlan) -> Result<Vec<f64>, CudaError> {
    let ctx = context()?;
    let module = module(&ctx, spec.ptx, spec.cubin_cache)?;
    let func = guarded("looking up the kernel", || {
        module.load_function(spec.kernel_name)
    })?;
    let stream = ctx.default_stream();

    // Device copies of the tensors, in argument order. cuMemAlloc rejects zero bytes, so an
    // empty tensor gets a 1-byte buffer the kernel never reads.
    let mut buffers: Vec<CudaSlice<u8>> = Vec::new();
    for arg in args.iter() {
        if let KernelArg::Tensor(t) = arg {
            let buf = if t.data.is_empty() {
                guarded("allocating device memory", || stream.alloc_zeros::<u8>(1))?
            } else {
                guarded("copying a tensor to the device", || {
                    stream.clone_htod(&t.data[..])
                })?
            };
            buffers.push(buf);
        }
    }
    let mut flush = match plan.flush_bytes {
        0 => None,
        bytes => Some(guarded("allocating the cache-flush buffer", || stream.alloc_zeros::<u8>(bytes))?),
    };
    // Every scalar lives in its own zero-padded 8-byte slot (see `scalar_slot`).
    let slots: Vec<u64> = args
        .iter()
        .filter_map(|a| match a {
            KernelArg::Scalar { value, dtype } => Some(scalar_slot(*value, *dtype)),
            KernelArg::Tensor(_) | KernelArg::Device(_) => None,
        })
        .collect();
    // Device tensors: their addresses, passed as the 64-bit pointer parameters they are.
    let addresses: Vec<u64> = args
        .iter()
        .filter_map(|a| match a {
            KernelArg::Device(t) => Some(t.pointer),
            _ => None,
        })
        .collect();

    let dynamic_shared = if spec.shared_bytes as usize > tl_compiler::backend::STATIC_SHARED_BYTES {
        let bytes = i32::try_from(spec.shared_bytes).unwrap_or(i32::MAX);
        guarded("allowing the kernel its dynamic shared memory", || {
            func.set_attribute(sys::CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes)
        })?;
        spec.shared_bytes
    } else {
        0
    };
    let cfg = LaunchConfig {
        grid_dim: (spec.grid[0], spec.grid[1], spec.grid[2]),
        block_dim: (spec.block_threads, 1, 1),
        shared_mem_bytes: dynamic_shared,
    };
    let mut times = Vec::new();
    for run in 0..plan.warmup + plan.runs {
        if let Some(scratch) = flush.as_mut() {
            guarded("flushing the L2 cache", || stream.memset_zeros(scratch))?;
        }
        let mut builder = stream.launch_builder(&func);
        let (mut bufs, mut scalars, mut devices) = (buffers.iter_mut(), slots.iter(), addresses.iter());
        for arg in args.iter() {
            match arg {
                KernelArg::Tensor(_) => builder.arg(bufs.next().expect("one buffer per tensor")),
                KernelArg::Scalar { .. } => {
                    builder.arg(scalars.next().expect("one slot per scalar"))
                }
                KernelArg::Device(_) => builder.arg(devices.next().expect("one address per device tensor")),
            };
        }
        builder.record_kernel_launch(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = Instant::now();
        // SAFETY: `validate` checked the argument count and sizes against the PTX signature
        // when it could be read; every pointer is a live device buffer of the tensor's exact
        // size, and every scalar slot outlives the launch. What the kernel does with them is
        // the compiler's responsibility.
        let events = guarded("launching the kernel", || unsafe { builder.launch(cfg) })?;
        guarded("running the kernel", || stream.synchronize())?;
        let kernel_ms = match events {
            Some((begin, end)) => guarded("timing the kernel", || begin.elapsed_ms(&end))? as f64,
            None => start.elapsed().as_secs_f64() * 1e3,
        };
        if run >= plan.warmup {
            times.push(kernel_ms);
        }
    }

    let mut bufs = buffers.iter();
    for arg in args.iter_mut() {
        if let KernelArg::Tensor(t) = arg {
            let buf = bufs.next().expect("one buffer per tensor");
            if !t.data.is_empty() {
                guarded("copying a tensor back to the host", || {
                    stream.memcpy_dtoh(buf, &mut t.data[..])
                })?;
            }
        }
    }
    guarded("copying tensors back to the host", || stream.synchronize())?;
    Ok(times)
}

/// The bytes of `value` as the kernel's register for `dtype` holds it (`lir::Ty::of`),
/// little-endian, zero-padded to 8 bytes. The driver copies exactly as many bytes as the PTX
/// parameter declares from this slot, so a parameter of any size up to 8 reads the value's own
/// bytes and never reads past the slot.
///
/// Low-precision dtypes travel in an 8-bit container: integers below 8 bits as their value
/// (sign-extended for signed ones, so `i4` −1 is 0xff, not 0x0f), low-precision floats as their
/// code in the low bits.
fn scalar_slot(value: Number, dtype: DType) -> u64 {
    let code = match dtype {
        DType::Int { bits, .. } if bits < 8 => DType::I8.encode_number(dtype.round_number(value)),
        _ => dtype.encode_number(value),
    };
    code & tl_compiler::dtype::mask(container_bytes(dtype) as u32 * 8)
}

/// Bytes of the register that holds a scalar of `dtype` in the generated code.
fn container_bytes(dtype: DType) -> usize {
    tl_compiler::lir::Ty::of(dtype).bytes()
}

/// Checks everything that can be checked without a driver.
fn validate(spec: &LaunchSpec, args: &[KernelArg]) -> Result<(), CudaError> {
    let bad = |m: String| Err(CudaError::BadArgument(m));
    // cudarc turns both strings into C strings with `unwrap`.
    if spec.ptx.contains('\0') {
        return bad("the PTX text contains a NUL byte".into());
    }
    if spec.kernel_name.is_empty() || spec.kernel_name.contains('\0') {
        return bad(format!("invalid kernel name {:?}", spec.kernel_name));
    }
    if spec.grid.contains(&0) {
        return bad(format!("grid {:?} has a zero dimension", spec.grid));
    }
    if spec.grid[0] > i32::MAX as u32 || spec.grid[1] > 65535 || spec.grid[2] > 65535 {
        return bad(format!(
            "grid {:?} exceeds the CUDA limits (2^31-1, 65535, 65535)",
            spec.grid
        ));
    }
    if !(1..=1024).contains(&spec.block_threads) {
        return bad(format!(
            "{} threads per block (CUDA allows 1 to 1024)",
            spec.block_threads
        ));
    }
    for (i, arg) in args.iter().enumerate() {
        if let KernelArg::Tensor(t) = arg {
            // Tensors travel packed (sub-byte elements share bytes), exactly as the host holds
            // them; the device buffer is a copy of `data`, so its length is what the kernel's
            // bounds assume.
            match HostTensor::byte_len(t.dtype, &t.shape) {
                Some(expected) if expected == t.data.len() => {}
                Some(expected) => {
                    return bad(format!(
                        "argument {i}: a {} tensor of shape {:?} holds {} bytes, but its packed \
                         size is {expected} bytes",
                        t.dtype,
                        t.shape,
                        t.data.len()
                    ));
                }
                None => {
                    return bad(format!(
                        "argument {i}: a {} tensor of shape {:?} is larger than the address space",
                        t.dtype, t.shape
                    ));
                }
            }
        }
    }

    let entries = ptx_entries(spec.ptx);
    let Some((_, params)) = entries.iter().find(|(name, _)| name == spec.kernel_name) else {
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        return bad(format!(
            "the PTX has no kernel `{}` (its kernels: {})",
            spec.kernel_name,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    };
    // An unreadable parameter list skips the signature check; the driver still loads the PTX.
    let Some(params) = params else { return Ok(()) };
    if params.len() != args.len() {
        return bad(format!(
            "kernel `{}` takes {} parameters but {} arguments were given",
            spec.kernel_name,
            params.len(),
            args.len()
        ));
    }
    for (i, (arg, &size)) in args.iter().zip(params).enumerate() {
        match arg {
            KernelArg::Tensor(_) | KernelArg::Device(_) if size != 8 => {
                return bad(format!(
                    "argument {i} is a tensor (a 64-bit pointer) but parameter {i} has {size} bytes"
                ));
            }
            // The sizes must match the register that holds the dtype, except that LLVM may
            // widen sub-word integer registers (bool, the 8-bit container of low-precision
            // dtypes, 16-bit integers) to 32 bits.
            KernelArg::Scalar { dtype, .. }
                if size != container_bytes(*dtype)
                    && !(container_bytes(*dtype) < 4
                        && !tl_compiler::lir::Ty::of(*dtype).is_float()
                        && size == 4) =>
            {
                return bad(format!(
                    "argument {i} is a {dtype} scalar but parameter {i} has {size} bytes"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every `.entry` in the PTX: its name and, when the parameter list could be read, the size in
/// bytes of each parameter. This is a light reading of what LLVM and nvcc emit, e.g.
/// `.visible .entry k(.param .u64 .ptr .global .align 4 k_param_0, .param .f32 k_param_1)`.
fn ptx_entries(ptx: &str) -> Vec<(String, Option<Vec<usize>>)> {
    // Drop `//` comments so they cannot hide or fake a declaration.
    let text: String = ptx
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(".entry") {
        rest = &rest[at + ".entry".len()..];
        if !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let after = rest.trim_start();
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_$%.".contains(c)))
            .unwrap_or(after.len());
        if name_len == 0 {
            continue;
        }
        let name = after[..name_len].to_string();
        let sig = after[name_len..].trim_start();
        let params = sig
            .strip_prefix('(')
            .and_then(|s| s.find(')').map(|end| &s[..end]))
            .and_then(parse_params);
        out.push((name, params));
    }
    out
}

fn parse_params(list: &str) -> Option<Vec<usize>> {
    if list.trim().is_empty() {
        return Some(Vec::new());
    }
    list.split(',').map(param_size).collect()
}

/// Size of one `.param ...` declaration, or None when it is not understood.
fn param_size(decl: &str) -> Option<usize> {
    let tokens: Vec<&str> = decl.split_whitespace().collect();
    if tokens.first() != Some(&".param") || tokens.len() < 3 {
        return None;
    }
    let elem = tokens[1..tokens.len() - 1].iter().find_map(|t| match *t {
        ".b8" | ".u8" | ".s8" => Some(1),
        ".b16" | ".u16" | ".s16" | ".f16" | ".bf16" => Some(2),
        ".b32" | ".u32" | ".s32" | ".f32" | ".f16x2" | ".bf16x2" => Some(4),
        ".b64" | ".u64" | ".s64" | ".f64" => Some(8),
        _ => None,
    })?;
    // `name[16]` declares an array (how LLVM passes by-value structs).
    let name = tokens[tokens.len() - 1];
    match name.find('[') {
        None => Some(elem),
        Some(open) => {
            let count: usize = name[open + 1..].strip_suffix(']')?.parse().ok()?;
            elem.checked_mul(count)
        }
    }
}

/// Whether libcuda can be loaded; asked once, since dlopen-ing the driver is not free.
fn culib_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: loading the library runs its initializers; that is what using the driver means.
    *PRESENT.get_or_init(|| unsafe { sys::is_culib_present() })
}

struct State {
    ctx: Arc<CudaContext>,
    /// Loaded modules by PTX text, so repeated launches skip the JIT.
    modules: HashMap<String, Arc<CudaModule>>,
}

/// Above this many cached modules the cache starts over (a bound, not a tuning knob).
const MAX_MODULES: usize = 64;

fn state() -> std::sync::MutexGuard<'static, Option<State>> {
    static STATE: Mutex<Option<State>> = Mutex::new(None);
    // A panic while holding the lock cannot leave the Option half-written; keep using it.
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The context launches run in (device 0's primary context): allocate the buffers of
/// [`DeviceTensor`]s on its streams (`device_context()?.default_stream().clone_htod(..)`).
/// [`CudaError::NoDriver`] without a driver.
pub fn device_context() -> Result<Arc<CudaContext>, CudaError> {
    context()
}

/// The context of device 0, created on first use.
fn context() -> Result<Arc<CudaContext>, CudaError> {
    if !culib_present() {
        return Err(CudaError::NoDriver);
    }
    let mut st = state();
    if let Some(s) = st.as_ref() {
        return Ok(s.ctx.clone());
    }
    if guarded("counting devices", CudaContext::device_count)? < 1 {
        return Err(CudaError::NoDevice);
    }
    let ctx = guarded("creating a context on device 0", || CudaContext::new(0))?;
    *st = Some(State {
        ctx: ctx.clone(),
        modules: HashMap::new(),
    });
    Ok(ctx)
}

/// The loaded module of `ptx`: kept in memory for the life of the context, and its cubin on
/// disk in `cubin_cache` (`crate::cubin`).
fn module(ctx: &Arc<CudaContext>, ptx: &str, cubin_cache: Option<&crate::cache::DiskCache>) -> Result<Arc<CudaModule>, CudaError> {
    if let Some(m) = state().as_ref().filter(|s| Arc::ptr_eq(&s.ctx, ctx)).and_then(|s| s.modules.get(ptx)) {
        return Ok(m.clone());
    }
    // Loaded without the lock: linking a large kernel takes a while.
    let (m, _origin) = crate::cubin::load_module(ctx, ptx, cubin_cache)?;
    if let Some(s) = state().as_mut().filter(|s| Arc::ptr_eq(&s.ctx, ctx)) {
        if s.modules.len() >= MAX_MODULES {
            s.modules.clear();
        }
        s.modules.insert(ptx.to_string(), m.clone());
    }
    Ok(m)
}

/// Runs one cudarc call, turning its error into [`CudaError::Driver`] and a panic into
/// [`CudaError::Panicked`].
pub(crate) fn guarded<T>(during: &str, f: impl FnOnce() -> Result<T, DriverError>) -> Result<T, CudaError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CudaError::Driver {
            during: during.to_string(),
            message: describe(&e),
        }),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(CudaError::Panicked {
                during: during.to_string(),
                message,
            })
        }
    }
}

/// "CUDA_ERROR_INVALID_PTX: a PTX JIT compilation failed", or the raw code if the driver
/// cannot describe it.
fn describe(e: &DriverError) -> String {
    match (e.error_name(), e.error_string()) {
        (Ok(name), Ok(text)) => format!("{}: {}", name.to_string_lossy(), text.to_string_lossy()),
        _ => format!("{:?}", e.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// c[i] = a[i] + s * b[i] for i < n; one thread per element.
    const VADD_PTX: &str = r#"
.version 7.0
.target sm_50
.address_size 64

// c = a + s * b
.visible .entry vadd(
    .param .u64 .ptr .global .align 4 vadd_param_0,
    .param .u64 .ptr .global .align 4 vadd_param_1,
    .param .u64 .ptr .global .align 4 vadd_param_2,
    .param .f32 vadd_param_3,
    .param .u32 vadd_param_4
)
{
    .reg .pred %p<2>;
    .reg .b32 %r<6>;
    .reg .f32 %f<5>;
    .reg .b64 %rd<11>;

    ld.param.u64 %rd1, [vadd_param_0];
    ld.param.u64 %rd2, [vadd_param_1];
    ld.param.u64 %rd3, [vadd_param_2];
    ld.param.f32 %f1, [vadd_param_3];
    ld.param.u32 %r1, [vadd_param_4];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.s32 %r5, %r2, %r3, %r4;
    setp.ge.u32 %p1, %r5, %r1;
    @%p1 bra DONE;
    cvta.to.global.u64 %rd4, %rd1;
    cvta.to.global.u64 %rd5, %rd2;
    cvta.to.global.u64 %rd6, %rd3;
    mul.wide.u32 %rd7, %r5, 4;
    add.s64 %rd8, %rd4, %rd7;
    add.s64 %rd9, %rd5, %rd7;
    add.s64 %rd10, %rd6, %rd7;
    ld.global.f32 %f2, [%rd8];
    ld.global.f32 %f3, [%rd9];
    fma.rn.f32 %f4, %f1, %f3, %f2;
    st.global.f32 [%rd10], %f4;
DONE:
    ret;
}
"#;

    fn vadd_spec(grid: u32) -> LaunchSpec<'static> {
        LaunchSpec {
            ptx: VADD_PTX,
            kernel_name: "vadd",
            grid: [grid, 1, 1],
            block_threads: 256,
            shared_bytes: 0,
            cubin_cache: None,
        }
    }

    #[test]
    fn reads_ptx_signatures() {
        let entries = ptx_entries(VADD_PTX);
        assert_eq!(
            entries,
            vec![("vadd".to_string(), Some(vec![8, 8, 8, 4, 4]))]
        );
        let ptx = ".entry a()\n{ ret; }\n.visible .entry b ( .param .align 8 .b8 b_param_0[16], \
                   .param .b16 b_param_1 )\n.entry\tc(.param .weird c_p)";
        assert_eq!(
            ptx_entries(ptx),
            vec![
                ("a".to_string(), Some(vec![])),
                ("b".to_string(), Some(vec![16, 2])),
                ("c".to_string(), None),
            ]
        );
    }

    #[test]
    fn scalars_are_encoded_in_their_dtype() {
        assert_eq!(scalar_slot(Number::Float(-1.0), DType::I32), 0xffff_ffff);
        assert_eq!(scalar_slot(Number::Float(-1.0), DType::I64), u64::MAX);
        assert_eq!(scalar_slot(Number::Float(300.0), DType::U8), 255);
        assert_eq!(scalar_slot(Number::Float(1.0), DType::F16), 0x3c00);
        assert_eq!(scalar_slot(Number::Float(1.0), DType::BF16), 0x3f80);
        assert_eq!(scalar_slot(Number::Float(1.5), DType::F32), 1.5f32.to_bits() as u64);
        assert_eq!(scalar_slot(Number::Float(0.1), DType::F64), 0.1f64.to_bits());
        assert_eq!(scalar_slot(Number::Float(5.0), DType::Bool), 1);
        // Low-precision dtypes in their 8-bit container.
        assert_eq!(scalar_slot(Number::Float(-1.0), DType::I4), 0xff);
        assert_eq!(scalar_slot(Number::Float(-100.0), DType::I4), 0xf8);
        assert_eq!(scalar_slot(Number::Float(100.0), DType::U3), 7);
        assert_eq!(scalar_slot(Number::Float(-6.0), DType::F4E2M1), 0xf);
        assert_eq!(scalar_slot(Number::Float(448.0), DType::F8E4M3FN), 0x7e);
        assert_eq!(scalar_slot(Number::Float(1.0), DType::E8M0), 127);
        // Integers exactly at every width, beyond 2^53 and up to the ends of i64 and u64.
        assert_eq!(scalar_slot(Number::Int((1 << 53) + 1), DType::I64), (1 << 53) + 1);
        assert_eq!(scalar_slot(Number::Int(i64::MAX as i128), DType::I64), i64::MAX as u64);
        assert_eq!(scalar_slot(Number::Int(u64::MAX as i128), DType::U64), u64::MAX);
        assert_eq!(scalar_slot(Number::Int(-3), DType::I4), 0xfd);
    }

    #[test]
    fn tensor_sizes_are_checked_packed() {
        let spec = LaunchSpec {
            ptx: ".version 7.0\n.target sm_50\n.address_size 64\n.visible .entry k(.param .u64 k_param_0)\n{ ret; }",
            kernel_name: "k",
            grid: [1, 1, 1],
            block_threads: 32,
            shared_bytes: 0,
            cubin_cache: None,
        };
        // A packed f4e2m1 tensor of 5 elements holds 3 bytes; 5 bytes (one per element) is
        // refused before the driver is touched.
        let mut unpacked = HostTensor { dtype: DType::F4E2M1, shape: vec![5], data: vec![0; 5] };
        match launch(&spec, &mut [KernelArg::Tensor(&mut unpacked)]) {
            Err(CudaError::BadArgument(m)) => assert!(m.contains("packed size is 3 bytes"), "{m}"),
            other => panic!("expected BadArgument, got {other:?}"),
        }
        let mut huge = HostTensor { dtype: DType::U4, shape: vec![usize::MAX, 4], data: vec![] };
        match launch(&spec, &mut [KernelArg::Tensor(&mut huge)]) {
            Err(CudaError::BadArgument(m)) => assert!(m.contains("address space"), "{m}"),
            other => panic!("expected BadArgument, got {other:?}"),
        }
        // The packed size passes validation (and then needs a driver).
        let mut packed = HostTensor::zeros(DType::F6E3M2, &[5]);
        assert_eq!(packed.data.len(), 4);
        assert!(!matches!(
            launch(&spec, &mut [KernelArg::Tensor(&mut packed)]),
            Err(CudaError::BadArgument(_))
        ));
    }

    #[test]
    fn bad_launches_are_rejected_before_the_driver() {
        let n = 10usize;
        let mut a = HostTensor::zeros(DType::F32, &[n]);
        let mut b = HostTensor::zeros(DType::F32, &[n]);
        let mut c = HostTensor::zeros(DType::F32, &[n]);
        let mut short = HostTensor {
            dtype: DType::F32,
            shape: vec![n],
            data: vec![0; 3],
        };
        let check = |spec: &LaunchSpec, args: &mut [KernelArg], want: &str| match launch(spec, args)
        {
            Err(CudaError::BadArgument(m)) => assert!(m.contains(want), "{m:?} lacks {want:?}"),
            other => panic!("expected BadArgument({want}), got {other:?}"),
        };
        let scalars = |s_dtype| {
            [
                KernelArg::Scalar {
                    value: Number::Float(2.0),
                    dtype: s_dtype,
                },
                KernelArg::Scalar {
                    value: Number::Int(n as i128),
                    dtype: DType::U32,
                },
            ]
        };

        let [s, m] = scalars(DType::F32);
        let mut args = [KernelArg::Tensor(&mut a), KernelArg::Tensor(&mut b), s, m];
        check(&vadd_spec(1), &mut args, "5 parameters but 4 arguments");

        let [s, m] = scalars(DType::F64);
        let mut args = [
            KernelArg::Tensor(&mut a),
            KernelArg::Tensor(&mut b),
            KernelArg::Tensor(&mut c),
            s,
            m,
        ];
        check(&vadd_spec(1), &mut args, "argument 3 is a f64 scalar");
        check(
            &LaunchSpec {
                kernel_name: "vsub",
                ..vadd_spec(1)
            },
            &mut args,
            "its kernels: vadd",
        );
        check(
            &LaunchSpec {
                kernel_name: "va\0dd",
                ..vadd_spec(1)
            },
            &mut args,
            "kernel name",
        );
        check(
            &LaunchSpec {
                block_threads: 2048,
                ..vadd_spec(1)
            },
            &mut args,
            "1 to 1024",
        );
        check(&vadd_spec(0), &mut args, "zero dimension");

        let [s, m] = scalars(DType::F32);
        let mut args = [
            KernelArg::Scalar {
                value: Number::Float(0.0),
                dtype: DType::F32,
            },
            KernelArg::Tensor(&mut b),
            KernelArg::Tensor(&mut c),
            s,
            m,
        ];
        check(
            &vadd_spec(1),
            &mut args,
            "argument 0 is a f32 scalar but parameter 0 has 8",
        );

        let [s, m] = scalars(DType::F32);
        let mut args = [
            KernelArg::Tensor(&mut a),
            KernelArg::Tensor(&mut short),
            KernelArg::Tensor(&mut c),
            s,
            m,
        ];
        check(&vadd_spec(1), &mut args, "argument 1");
    }

    #[test]
    fn without_a_driver_every_entry_point_is_a_clear_error() {
        if driver_available() {
            eprintln!("SKIPPED: a CUDA driver and device are present, so the no-driver error cannot be tested here");
            return;
        }
        let no_lib = !culib_present();
        let expected = |e: &CudaError| match e {
            CudaError::NoDriver => no_lib,
            CudaError::NoDevice => !no_lib,
            _ => false,
        };
        let n = 4usize;
        let mut a = HostTensor::zeros(DType::F32, &[n]);
        let mut b = HostTensor::zeros(DType::F32, &[n]);
        let mut c = HostTensor::zeros(DType::F32, &[n]);
        let mut args = [
            KernelArg::Tensor(&mut a),
            KernelArg::Tensor(&mut b),
            KernelArg::Tensor(&mut c),
            KernelArg::Scalar {
                value: Number::Float(1.0),
                dtype: DType::F32,
            },
            KernelArg::Scalar {
                value: Number::Int(n as i128),
                dtype: DType::U32,
            },
        ];
        let err = launch(&vadd_spec(1), &mut args).unwrap_err();
        assert!(expected(&err), "{err:?}");
        assert!(expected(&device_name().unwrap_err()));
        assert!(expected(&compute_capability().unwrap_err()));
        let plan = TimingPlan { warmup: 1, runs: 3, flush_bytes: 1 << 20 };
        assert!(expected(&time(&vadd_spec(1), &mut args, &plan).unwrap_err()));
        assert!(expected(&copy_bandwidth_gbs(1 << 20, 3).unwrap_err()));
        if no_lib {
            let msg = err.to_string();
            assert!(
                msg.contains("libcuda.so") && msg.contains("--backend vm"),
                "{msg}"
            );
        }
    }

    #[test]
    fn timing_plans_need_a_timed_run() {
        let plan = TimingPlan { warmup: 3, runs: 0, flush_bytes: 0 };
        assert!(matches!(time(&vadd_spec(1), &mut [], &plan), Err(CudaError::BadArgument(m)) if m.contains("timed run")));
        assert!(matches!(copy_bandwidth_gbs(0, 3), Err(CudaError::BadArgument(_))));
        assert_eq!(median_ms(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_ms(&mut [4.0, 1.0, 3.0, 2.0]), 2.0);
        assert!(median_ms(&mut []).is_nan());
    }

    /// The arguments of `vadd_spec`'s kernel: c = a + 0.5 * b over n elements.
    fn vadd_args<'t>(a: &'t mut HostTensor, b: &'t mut HostTensor, c: &'t mut HostTensor, n: usize) -> [KernelArg<'t>; 5] {
        [
            KernelArg::Tensor(a),
            KernelArg::Tensor(b),
            KernelArg::Tensor(c),
            KernelArg::Scalar { value: Number::Float(0.5), dtype: DType::F32 },
            KernelArg::Scalar { value: Number::Int(n as i128), dtype: DType::U32 },
        ]
    }

    #[test]
    fn vadd_on_the_gpu() {
        if !driver_available() {
            eprintln!("SKIPPED vadd_on_the_gpu: no CUDA driver on this machine (libcuda not found)");
            return;
        }
        println!("device: {}", device_name().unwrap());
        let n = 1000usize;
        let av: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let bv: Vec<f64> = (0..n).map(|i| (i % 7) as f64 - 3.0).collect();
        let mut a = HostTensor::from_f64(DType::F32, &[n], &av);
        let mut b = HostTensor::from_f64(DType::F32, &[n], &bv);
        let mut c = HostTensor::filled(DType::F32, &[n], f64::NAN);
        let mut args = vadd_args(&mut a, &mut b, &mut c, n);
        let grid = n.div_ceil(256) as u32;
        for _ in 0..2 {
            // The second launch runs on the cached context and module.
            let report = launch(&vadd_spec(grid), &mut args).unwrap();
            assert!(report.kernel_ms >= 0.0);
        }
        let expected: Vec<f64> = av.iter().zip(&bv).map(|(x, y)| x + 0.5 * y).collect();
        assert_eq!(c.to_f64(), expected);

        // The cubin kept on disk: linked and stored in the first round, loaded from the cache
        // in the second (the loaded modules forgotten in between, as in a new process).
        let directory = std::env::temp_dir().join(format!("tl_cubin_on_the_gpu_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        let disk = crate::cache::DiskCache::at(&directory);
        for round in 0..2 {
            if let Some(s) = state().as_mut() {
                s.modules.clear();
            }
            let mut c = HostTensor::filled(DType::F32, &[n], f64::NAN);
            let mut args = vadd_args(&mut a, &mut b, &mut c, n);
            launch(&LaunchSpec { cubin_cache: Some(&disk), ..vadd_spec(grid) }, &mut args).unwrap();
            assert_eq!(c.to_f64(), expected, "round {round}");
            assert_eq!(disk.hits(), round, "round {round}");
        }
        assert!(disk.warnings().is_empty(), "{:?}", disk.warnings());
        let _ = std::fs::remove_dir_all(&directory);

        // Timed repetitions with a cache flush: one time per timed run, the result unchanged.
        c = HostTensor::filled(DType::F32, &[n], f64::NAN);
        let mut args = vadd_args(&mut a, &mut b, &mut c, n);
        let plan = TimingPlan { warmup: 2, runs: 5, flush_bytes: 64 << 20 };
        let times = time(&vadd_spec(grid), &mut args, &plan).unwrap();
        assert_eq!(times.len(), 5);
        assert!(times.iter().all(|t| t.is_finite() && *t >= 0.0), "{times:?}");
        assert_eq!(c.to_f64(), expected);
        let bandwidth = copy_bandwidth_gbs(256 << 20, 5).unwrap();
        println!("copy bandwidth: {bandwidth:.0} GB/s");
        assert!(bandwidth > 10.0 && bandwidth < 100_000.0, "{bandwidth}");

        // Empty tensors are allowed (n = 0: no thread touches them).
        let mut e = [
            HostTensor::zeros(DType::F32, &[0]),
            HostTensor::zeros(DType::F32, &[0]),
            HostTensor::zeros(DType::F32, &[0]),
        ];
        let [x, y, z] = &mut e;
        let mut args = [
            KernelArg::Tensor(x),
            KernelArg::Tensor(y),
            KernelArg::Tensor(z),
            KernelArg::Scalar {
                value: Number::Float(0.5),
                dtype: DType::F32,
            },
            KernelArg::Scalar {
                value: Number::Float(0.0),
                dtype: DType::U32,
            },
        ];
        launch(&vadd_spec(1), &mut args).unwrap();

        // PTX the driver rejects is a Driver error, not a panic.
        let spec = LaunchSpec {
            ptx: ".version 7.0\n.target sm_50\n.entry vadd( garbage",
            ..vadd_spec(1)
        };
        match launch(&spec, &mut []) {
            Err(CudaError::Driver { .. }) => {}
            other => panic!("expected a driver error, got {other:?}"),
        }
    }
}
