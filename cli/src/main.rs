//! `tlc`: check, compile and run `.tl` kernels.
//!
//! Exit codes: 0 success, 1 a compile error or a failed check, 2 a usage error.

use anyhow::{Context, Result, anyhow, bail};
use std::path::PathBuf;
use tl_compiler::ir::{ConstValue, ParamKind};
use tl_compiler::syntax::{lexer, parser};
use tl_runtime::tensor_file::{self, TensorFileKind};
use tl_runtime::{Arch, Arg, Backend, DType, Module, Number, RuntimeError, reference};

mod tune;

const USAGE: &str = "usage:
  tlc check FILE
  tlc compile FILE [--kernel NAME] [-D NAME=VALUE]... --emit tokens|ast|ir|lir|llvm|ptx|clif|cubin
              [--arch sm_80|sm_90a] [--assume NAME%K]... [-o OUT]
              [--emit STAGE,STAGE,... -o DIR]
              [--print-after PASS]... [--time]
  tlc stats FILE [--kernel NAME] [-D NAME=VALUE]... [--arch sm_80|sm_90a] [--assume NAME%K]...
  tlc run FILE [--kernel NAME] [-D NAME=VALUE]... [--backend vm|simt|cuda|cpu] [--arg NAME=VALUE]...
              [--seed N] [--input NAME=TENSOR]... [--output NAME=TENSOR]... [--against vm|simt|cpu]
              [--tuned]
  tlc tune FILE [--kernel NAME] [-D NAME=VALUE]... --size NAME=N[,N...]... [--space NAME=V1,V2,...]...
              [--target cuda|cpu|compile] [--arch sm_80|sm_90a] [--then KERNEL]... [--jobs N]
              [--runs N] [--no-check] [--table PATH] [--retune] [--bucket NAME] [--seed N]

  --backend picks where tlc run runs the kernel: vm (the block-level reference interpreter,
  the default), simt (the thread-level simulator of the lowered program), cuda (a GPU through
  the CUDA driver) or cpu (the lowered program compiled to native code by Cranelift,
  bit-exact with simt; --emit clif prints its Cranelift IR).

  tlc run fills every tensor parameter with seeded random values (outputs with NaN or the
  largest value, except tensors atomic_add adds into) unless --input gives it; --output writes
  a parameter after the run.
  TENSOR is a file whose extension picks its form:
    *.npy  NumPy array: bool, i8..i64, u8..u64, f16, f32, f64
    *.tlt  tensor file: every dtype (u4, f6e3m2, f8e4m3fn, e8m0, bf16, ...), packed
           (format: docs/language.md, section Tensor files)
  An input file must hold exactly the parameter's dtype and shape.

  --arg NAME=VALUE gives a scalar parameter: an integer (--arg n=4096) or, for a float
  parameter, a number (--arg alpha=0.5, 1e-3, -inf), rounded once to its dtype (f16, bf16,
  f32, f64). A scalar also comes from --input NAME=FILE with one element of its dtype
  (numpy.save(path, numpy.float16(0.5))). Scalars --arg does not give are random.

  -D NAME=VALUE sets a compile-time parameter: an integer (-D BM=64) or, for a dtype
  parameter (`<W: dtype = u4>`), a dtype name (-D W=f6e3m2).

  --assume NAME%K compiles the variant specialized for runtime integer scalar NAME being a
  multiple of K (a power of two), e.g. --assume n%16 or --assume m%8,k%16; global loads and
  stores it proves aligned become vector accesses of up to 16 bytes. Without --assume,
  compile emits the unspecialized variant (assumes nothing). tlc run (simt, cuda) picks the
  variant from the argument values itself: each integer scalar's largest power-of-two
  divisor, up to 128.

  tlc stats prints what the kernel's PTX holds: its instructions by kind (global memory,
  shared memory, tensor cores, synchronization, control, the rest), each loop's (nested loops
  included; the innermost loop with the most instructions is marked hot, and its instructions
  are listed by opcode), and what ptxas reports:
  registers, barriers, shared memory and spills (when ptxas is found: TL_PTXAS or PATH).

  --print-after PASS writes the IR after that pass to standard error. The passes, in order:
  sema, infer-layouts (every tile's layout), select-instructions (how each instruction that
  moves data between threads does it: `via mma...`, `via shuffle`, `via staged`, `via copy`),
  plan-shared-memory (`shared [offsets]` and `shared_bytes(N)`): block IR; lower: the
  thread-level IR (the variant of --assume). --time writes the time of every pass to
  standard error: parse (and the whole file's checks), the passes, and codegen (the LLVM IR
  or PTX of --emit llvm/ptx). The verifier of each IR runs after the pass that produced it.

  --emit with several stages separated by commas (--emit ir,lir,ptx -o out/) compiles once
  and writes one file per stage into the directory -o names (created when missing):
  KERNEL.ir, KERNEL.lir, KERNEL.ll, KERNEL.ptx, KERNEL.clif, KERNEL.cubin, and FILE.tokens,
  FILE.ast. --emit cubin assembles the PTX with ptxas (TL_PTXAS or PATH) into the GPU's
  machine code for cuobjdump -sass or nvdisasm; being binary, it is written only to -o FILE.

  PTX is kept in a compile cache on disk and served from it when the same variant is compiled
  again (--time then shows `ptx from the cache`; cubins likewise, keyed by the ptxas build):
  in $TL_CACHE_DIR when set (TL_CACHE_DIR=off turns it off), else in the platform's cache
  directory ($XDG_CACHE_HOME/tl or ~/.cache/tl).
  An entry is keyed by the code generator's version and build, the architecture and the
  variant's whole thread-level program; a damaged entry is compiled again, and a cache that
  cannot be written leaves the compiled code in memory (each with one warning). On a GPU the
  cubin the driver makes of the PTX is kept there too (keyed by the driver's version, the
  device's compute capability and the PTX), so the next process skips the driver's JIT; and
  so is the cpu backend's machine code (--time: `clif (native code cached)`).

  tlc tune searches the kernel's compile-time parameters for the problem --size gives (its
  integer scalars: --size m=16 --size n=4096 --size k=4096; --size m=1,16,64 tunes each m in
  turn, every combination of the sizes' values being a problem of its own). The space is every combination
  of the values --space gives and, for the parameters it does not name, of the defaults for
  those the kernel declares: BM 16,32,64,128; BN 32,64,128,256; BK 16,32,64,128; STAGES
  2,3,4; WARPS 4,8; SPLITS 1,2,4,8 (a parameter fixed with -D is not searched). Candidates
  are compiled in parallel (--jobs, one per core by default); those the compiler refuses are
  counted by reason. --target cuda times the rest on the GPU (the default when a CUDA driver
  is present), cpu on the cpu backend, compile only compiles them (the default without a
  driver; nothing is stored). --then KERNEL times another kernel with each candidate (the
  reduction of a split-K matmul). The winner's result is checked against the kernel's
  reference (--no-check skips it) and stored in the dispatch table ($TL_TUNE_TABLE, else
  dispatch.tbl in the compile cache's directory; --table PATH) under the device, the
  compiler's build, the kernel, its source, its format and the problem, with the size --bucket
  names (m by default) rounded up to a power of two. A problem already in the table is not
  searched again unless --retune; a damaged table is dropped with a warning and tuned again.
  Progress goes to standard error every second (TL_PROGRESS=0 turns it off).
  tlc run --tuned (--backend cpu or cuda) compiles the kernel with the parameters the dispatch
  table holds for the sizes --arg gives (its defaults when it holds none; stderr says which).";

struct Usage(String);

#[derive(Default)]
struct Options {
    command: String,
    file: Option<PathBuf>,
    kernel: Option<String>,
    consts: Vec<(String, ConstValue)>,
    emit: Option<String>,
    arch: Option<Arch>,
    out: Option<PathBuf>,
    backend: Option<Backend>,
    against: Option<Backend>,
    /// `--arg NAME=VALUE`: the scalar arguments given (sizes and any other scalar).
    scalars: Vec<(String, Number)>,
    seed: u64,
    inputs: Vec<(String, PathBuf)>,
    outputs: Vec<(String, PathBuf)>,
    assume: Vec<String>,
    print_after: Vec<String>,
    time: bool,
    /// `tlc run --tuned`: the compile-time parameters the dispatch table holds for the sizes.
    tuned: bool,
    /// `tlc tune`: the problem (`--size`), the space (`--space`), and how to search.
    tune: tune::TuneOptions,
}

fn name_value(s: &str, flag: &str) -> Result<(String, String), Usage> {
    s.split_once('=')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| Usage(format!("{flag} expects NAME=VALUE, found `{s}`")))
}

fn parse_int(s: &str, what: &str) -> Result<i64, Usage> {
    s.parse().map_err(|_| Usage(format!("{what}: `{s}` is not an integer")))
}

/// A scalar argument: an integer (`64`, `-3`) kept exactly, or a float (`0.5`, `-1e-3`, `inf`,
/// `nan`) for float parameters.
fn parse_scalar(s: &str, what: &str) -> Result<Number, Usage> {
    if let Ok(i) = s.parse::<i128>() {
        return Ok(Number::Int(i));
    }
    s.parse::<f64>().map(Number::Float).map_err(|_| Usage(format!("--arg {what}: `{s}` is not a number")))
}

/// The commands, in the order the usage lists them.
const COMMANDS: [&str; 5] = ["check", "compile", "stats", "run", "tune"];

/// The options each command takes (beyond FILE); any other is a usage error rather than
/// silently ignored.
fn options_of(command: &str) -> &'static [&'static str] {
    match command {
        "check" => &["--kernel", "-D"],
        "stats" => &["--kernel", "-D", "--arch", "--assume"],
        "compile" => &["--kernel", "-D", "--emit", "--arch", "--assume", "-o", "--print-after", "--time"],
        "tune" => tune::OPTIONS,
        _ => &["--kernel", "-D", "--backend", "--against", "--arg", "--seed", "--input", "--output", "--tuned"],
    }
}

/// A usage error when `name` was already given with `flag`.
fn once(seen: &mut Vec<String>, flag: &str, name: &str) -> Result<(), Usage> {
    let key = format!("{flag} {name}");
    if seen.contains(&key) {
        return Err(Usage(if name.is_empty() {
            format!("{flag} is given twice")
        } else {
            format!("{flag} {name} is given twice (give each name once)")
        }));
    }
    seen.push(key);
    Ok(())
}

fn parse_args(args: Vec<String>) -> Result<Options, Usage> {
    let mut o = Options::default();
    let mut seen: Vec<String> = Vec::new();
    let mut it = args.into_iter();
    o.command = it.next().ok_or_else(|| Usage("missing command".into()))?;
    if o.command == "-h" || o.command == "--help" {
        return Err(Usage(String::new()));
    }
    if !COMMANDS.contains(&o.command.as_str()) {
        return Err(Usage(format!("unknown command `{}`", o.command)));
    }
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| Usage(format!("{flag} needs a value")));
        let known = COMMANDS.iter().any(|c| options_of(c).contains(&a.as_str()));
        if known && !options_of(&o.command).contains(&a.as_str()) {
            let hint = if a == "--assume" { "; `tlc run` specializes on the argument values itself" } else { "" };
            return Err(Usage(format!(
                "{a} does not apply to `tlc {}` (it takes {}){hint}",
                o.command,
                options_of(&o.command).join(", ")
            )));
        }
        if ["--kernel", "--emit", "--arch", "-o", "--backend", "--against", "--seed", "--time", "--tuned"].contains(&a.as_str()) || tune::SINGLE.contains(&a.as_str()) {
            once(&mut seen, &a, "")?;
        }
        if o.command == "tune" && tune::OPTIONS.contains(&a.as_str()) && tune::parse_option(&mut o.tune, &a, &mut value, &mut seen)? {
            continue;
        }
        match a.as_str() {
            "--kernel" => o.kernel = Some(value("--kernel")?),
            "-D" => {
                let (n, v) = name_value(&value("-D")?, "-D")?;
                once(&mut seen, "-D", &n)?;
                let v = ConstValue::parse(&v)
                    .ok_or_else(|| Usage(format!("-D {n}: `{v}` is neither an integer nor a dtype name")))?;
                o.consts.push((n, v));
            }
            "--emit" => o.emit = Some(value("--emit")?),
            "--arch" => {
                let v = value("--arch")?;
                o.arch = Some(Arch::parse(&v).ok_or_else(|| Usage(format!("unknown arch `{v}` (sm_80 or sm_90a)")))?);
            }
            "-o" => o.out = Some(PathBuf::from(value("-o")?)),
            "--backend" | "--against" => {
                let v = value(&a)?;
                let b = Backend::parse(&v).ok_or_else(|| Usage(format!("unknown backend `{v}` (vm, simt, cuda or cpu)")))?;
                if a == "--backend" { o.backend = Some(b) } else { o.against = Some(b) }
            }
            "--arg" => {
                let (n, v) = name_value(&value("--arg")?, "--arg")?;
                once(&mut seen, "--arg", &n)?;
                let v = parse_scalar(&v, &n)?;
                o.scalars.push((n, v));
            }
            "--assume" => o.assume.push(value("--assume")?),
            "--print-after" => {
                let pass = value("--print-after")?;
                if !tl_compiler::driver::PASSES.contains(&pass.as_str()) {
                    return Err(Usage(format!("--print-after: unknown pass `{pass}` (the passes are {})", tl_compiler::driver::PASSES.join(", "))));
                }
                once(&mut seen, "--print-after", &pass)?;
                o.print_after.push(pass);
            }
            "--time" => o.time = true,
            "--tuned" => o.tuned = true,
            "--seed" => o.seed = parse_int(&value("--seed")?, "--seed")? as u64,
            "--input" | "--output" => {
                let (n, v) = name_value(&value(&a)?, &a)?;
                once(&mut seen, &a, &n)?;
                if a == "--input" { o.inputs.push((n, v.into())) } else { o.outputs.push((n, v.into())) }
            }
            "-h" | "--help" => return Err(Usage(String::new())),
            s if s.starts_with('-') => return Err(Usage(format!("unknown option `{s}`"))),
            s => {
                if o.file.replace(PathBuf::from(s)).is_some() {
                    return Err(Usage("only one FILE may be given".into()));
                }
            }
        }
    }
    if o.file.is_none() {
        return Err(Usage("missing FILE".into()));
    }
    if o.command == "tune" && o.tune.sizes.is_empty() {
        return Err(Usage("tlc tune needs the problem: --size NAME=N for its integer scalars (--size m=16 --size n=4096 --size k=4096)".into()));
    }
    Ok(o)
}

/// Outcome of a command: `Ok(true)` success, `Ok(false)` a failed check or compile error
/// (already printed), `Err` anything else.
fn run(o: Options) -> Result<bool> {
    let path = o.file.clone().expect("checked");
    match o.command.as_str() {
        "check" => check(&o, &path),
        "compile" => compile(&o, &path),
        "stats" => stats(&o, &path),
        "tune" => tune::tune(&o, &path),
        _ => run_kernel(&o, &path),
    }
}

/// Writes to standard output. When the reader has gone (a closed pipe, as in `tlc ... | head`)
/// the program ends quietly with status 0, as Unix tools do; any other failure (a full disk) is
/// an error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(anyhow!("cannot write to standard output: {e}")),
    }
}

/// Writes to standard error; a failure there has nowhere to be reported, so it is dropped.
fn write_stderr(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

macro_rules! outln {
    ($($t:tt)*) => { write_stdout(&format!("{}\n", format_args!($($t)*)))? };
}

/// Refuses, before anything runs, an output path that is a directory, a FIFO or a socket
/// (writing to a FIFO blocks until a reader comes). A path that does not exist yet, a regular
/// file and a character device (`/dev/null`) are fine. (Inputs are checked where they are
/// read: `tl_runtime::read_regular_file`.)
fn check_output_path(path: &std::path::Path, what: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() || is_char_device(&m) => Ok(()),
        Ok(m) if m.is_dir() => bail!("{what} `{}` is a directory, not a file", path.display()),
        Ok(_) => bail!("{what} `{}` is not a regular file (a FIFO or a socket); give a regular file", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow!("cannot write `{}`: {e}", path.display())),
    }
}

#[cfg(unix)]
fn is_char_device(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_char_device()
}

#[cfg(not(unix))]
fn is_char_device(_: &std::fs::Metadata) -> bool {
    false
}

/// Writes `bytes` into the file `flag` gave, once `check_output_path` accepts it.
fn write_file(path: &std::path::Path, bytes: &[u8], flag: &str) -> Result<()> {
    check_output_path(path, flag)?;
    std::fs::write(path, bytes).with_context(|| format!("cannot write `{}`", path.display()))
}

/// Writes the output of `stage` to -o, else to standard output (text only: the binary cubin
/// needs -o).
fn write_out(o: &Options, stage: &str, bytes: &[u8]) -> Result<()> {
    match &o.out {
        Some(p) => write_file(p, bytes, "-o"),
        None if stage == "cubin" => bail!("--emit cubin writes a binary file: give it with -o FILE"),
        None => write_stdout(&String::from_utf8_lossy(bytes)),
    }
}

/// Reads and checks the file, then compiles every kernel (or the one `--kernel` names) through
/// lowering with the `-D` values that kernel declares: every error `compile` would find short
/// of LLVM, each at its source line. A file without kernels gets a warning.
fn check(o: &Options, path: &PathBuf) -> Result<bool> {
    let Some(module) = compiled(Module::from_file(path))? else { return Ok(false) };
    let names = match &o.kernel {
        Some(k) => vec![k.clone()],
        None => module.kernel_names(),
    };
    if names.is_empty() {
        write_stderr(&format!("warning: {}: no kernel to check\n", path.display()));
    }
    let declared = |kernel: &str| module.const_parameter_names(kernel);
    for (name, _) in &o.consts {
        if !names.iter().any(|k| declared(k).contains(name)) {
            bail!("-D {name}: no kernel checked here has a compile-time parameter `{name}`");
        }
    }
    let mut ok = true;
    for kernel in &names {
        let params = declared(kernel);
        let consts: Vec<(String, ConstValue)> = o.consts.iter().filter(|(n, _)| params.contains(n)).cloned().collect();
        if compiled(module.kernel(Some(kernel), &consts))?.is_none() {
            ok = false;
        }
    }
    if ok {
        outln!("{}: ok ({} kernel(s): {})", path.display(), names.len(), names.join(", "));
    }
    Ok(ok)
}

/// Compiles the selected kernel; `None` when the source has errors (already printed).
fn load_kernel(o: &Options, path: &PathBuf) -> Result<Option<tl_runtime::Kernel>> {
    compiled(Module::from_file(path).and_then(|m| m.with_code_generator(tl_ptx::code_generator()).kernel(o.kernel.as_deref(), &o.consts)))
}

/// The stages `--emit` knows, with the extension of their files when several are written.
const STAGES: [(&str, &str); 8] = [("tokens", "tokens"), ("ast", "ast"), ("ir", "ir"), ("lir", "lir"), ("llvm", "ll"), ("ptx", "ptx"), ("clif", "clif"), ("cubin", "cubin")];

/// The stages of `--emit` (one, or several separated by commas), checked.
fn emitted_stages(o: &Options) -> Result<Vec<&'static str>> {
    let emit = o.emit.clone().unwrap_or_else(|| "ptx".into());
    let mut stages = Vec::new();
    for name in emit.split(',').map(str::trim) {
        let Some(&(stage, _)) = STAGES.iter().find(|(s, _)| *s == name) else {
            bail!("unknown --emit `{name}` (tokens, ast, ir, lir, llvm, ptx, clif or cubin; several separated by commas)");
        };
        if stages.contains(&stage) {
            bail!("--emit names `{stage}` twice");
        }
        stages.push(stage);
    }
    Ok(stages)
}

/// The token or syntax-tree dump of the file (`None` after printing its diagnostics).
fn front_end_text(stage: &str, path: &std::path::Path) -> Result<Option<String>> {
    let bytes = tl_runtime::read_regular_file(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let name = path.display().to_string();
    let source = match parser::decode_source(&bytes) {
        Ok(s) => s,
        Err(d) => {
            write_stderr(&tl_compiler::diagnostics::render_all(&[d], &name, &String::from_utf8_lossy(&bytes)));
            return Ok(None);
        }
    };
    if stage == "tokens" {
        let mut out = String::new();
        let mut cursor = tl_compiler::diagnostics::PositionCursor::new(source);
        for (start, tok, end) in lexer::lex(source) {
            let (line, col) = cursor.line_col(start);
            match tok {
                Ok(t) => out.push_str(&format!("{line}:{col}\t{start}..{end}\t{t}\n")),
                Err(e) => out.push_str(&format!("{line}:{col}\t{start}..{end}\terror: {e}\n")),
            }
        }
        return Ok(Some(out));
    }
    let (file, diags) = parser::parse(source);
    if !diags.is_empty() {
        write_stderr(&tl_compiler::diagnostics::render_all(&diags, &name, source));
        return Ok(None);
    }
    Ok(Some(format!("{file:#?}\n")))
}

fn compile(o: &Options, path: &PathBuf) -> Result<bool> {
    let stages = emitted_stages(o)?;
    let arch = o.arch.unwrap_or(Arch::Sm80);
    // Several stages: one file each in the directory of -o.
    let directory = if stages.len() > 1 {
        let Some(directory) = &o.out else { bail!("--emit with several stages writes a file for each: give a directory with -o DIR") };
        if directory.exists() && !directory.is_dir() {
            bail!("-o `{}` is not a directory (--emit with several stages writes a file for each stage into it)", directory.display());
        }
        std::fs::create_dir_all(directory).with_context(|| format!("cannot create the directory `{}`", directory.display()))?;
        Some(directory.clone())
    } else {
        None
    };
    let stem = path.file_stem().map_or_else(|| "out".to_string(), |s| s.to_string_lossy().into_owned());
    // (stage, file name without extension, text)
    let mut outputs: Vec<(&str, String, Vec<u8>)> = Vec::new();
    for &stage in stages.iter().filter(|s| matches!(**s, "tokens" | "ast")) {
        let Some(text) = front_end_text(stage, path)? else { return Ok(false) };
        outputs.push((stage, stem.clone(), text.into_bytes()));
    }
    let kernel_stages: Vec<&str> = stages.iter().copied().filter(|s| !matches!(*s, "tokens" | "ast")).collect();
    if !kernel_stages.is_empty() && !compile_kernel_stages(o, path, &kernel_stages, arch, &mut outputs)? {
        return Ok(false);
    }
    // In the order --emit gave.
    outputs.sort_by_key(|(stage, _, _)| stages.iter().position(|s| s == stage));
    match directory {
        None => write_out(o, outputs[0].0, &outputs[0].2)?,
        Some(directory) => {
            for (stage, name, bytes) in &outputs {
                let extension = STAGES.iter().find(|(s, _)| s == stage).map_or(*stage, |(_, e)| *e);
                write_file(&directory.join(format!("{name}.{extension}")), bytes, "-o")?;
            }
        }
    }
    Ok(true)
}

/// Compiles the kernel and adds the text of each of `stages` (ir, lir, llvm, ptx, clif; or the
/// binary cubin) to
/// `outputs`, named after the kernel; `--print-after` and `--time` report on standard error.
/// `false` after printing a compile error.
fn compile_kernel_stages(o: &Options, path: &PathBuf, stages: &[&'static str], arch: Arch, outputs: &mut Vec<(&str, String, Vec<u8>)>) -> Result<bool> {
    let mut passes = tl_compiler::driver::PassManager { print_after: o.print_after.clone(), verify_lir: true, ..Default::default() };
    let start = std::time::Instant::now();
    let Some(module) = compiled(Module::from_file(path).map(|m| m.with_code_generator(tl_ptx::code_generator())))? else { return Ok(false) };
    let parse_time = start.elapsed();
    let Some(kernel) = compiled(module.kernel_with(o.kernel.as_deref(), &o.consts, &mut passes))? else { return Ok(false) };
    let assumptions = kernel.assumptions(&o.assume)?;
    let mut timings = vec![("parse".to_string(), parse_time)];
    timings.append(&mut passes.timings);
    if !assumptions.is_none() {
        // The variant of `--assume` is lowered again: its time and its LIR are the ones shown.
        let start = std::time::Instant::now();
        let variant = kernel.variant(&assumptions)?;
        timings.push((format!("lower ({})", assumptions.describe(&kernel.compiled.kernel)), start.elapsed()));
        for (pass, text) in &mut passes.printed {
            if pass == "lower" {
                *text = variant.to_string();
            }
        }
    }
    for (pass, text) in &passes.printed {
        write_stderr(&format!("// after {pass}: kernel `{}`\n{text}", kernel.name()));
    }
    let ptx_label = |from_cache: bool| if from_cache { format!("ptx from the cache ({arch})") } else { format!("codegen (ptx, {arch})") };
    for &stage in stages {
        let start = std::time::Instant::now();
        let hits_before = kernel.module.cache().hits();
        let text = match stage {
            "ir" => tl_compiler::ir::print::kernel_to_string(&kernel.compiled.kernel),
            "lir" => kernel.variant(&assumptions)?.to_string(),
            "llvm" => tl_ptx::lir_to_llvm_ir(&*kernel.variant(&assumptions)?, arch)?,
            "ptx" => kernel.variant_ptx(&assumptions, arch)?.to_string(),
            "clif" => kernel.cpu_program(&assumptions)?.clif().to_string(),
            "cubin" => {
                // The PTX first (timed as its own stage unless it is emitted too), so that the
                // cubin's time is ptxas's alone.
                kernel.variant_ptx(&assumptions, arch)?;
                if !stages.contains(&"ptx") {
                    timings.push((ptx_label(kernel.module.cache().hits() > hits_before), start.elapsed()));
                }
                let (start, hits_before) = (std::time::Instant::now(), kernel.module.cache().hits());
                let cubin = kernel.variant_cubin(&assumptions, arch)?;
                let from = if kernel.module.cache().hits() > hits_before { "from the cache" } else { "by ptxas" };
                timings.push((format!("cubin {from} ({arch})"), start.elapsed()));
                outputs.push((stage, kernel.name().to_string(), cubin));
                continue;
            }
            other => unreachable!("`emitted_stages` admits `{other}`"),
        };
        if stage == "ptx" {
            timings.push((ptx_label(kernel.module.cache().hits() > hits_before), start.elapsed()));
        } else if stage == "llvm" {
            timings.push((format!("codegen ({stage}, {arch})"), start.elapsed()));
        } else if stage == "clif" {
            let from_cache = kernel.cpu_program(&assumptions)?.from_cache();
            timings.push((if from_cache { "clif (native code cached)" } else { "codegen (clif, native code)" }.to_string(), start.elapsed()));
        }
        outputs.push((stage, kernel.name().to_string(), text.into_bytes()));
    }
    if o.time {
        let total: std::time::Duration = timings.iter().map(|(_, t)| *t).sum();
        let mut table = format!("time of `tlc compile {}` (kernel `{}`):\n", path.display(), kernel.name());
        for (pass, t) in timings.iter().chain([&("total".to_string(), total)]) {
            table.push_str(&format!("  {pass:<28} {:>10.3} ms\n", t.as_secs_f64() * 1e3));
        }
        write_stderr(&table);
    }
    Ok(true)
}

/// A compilation's result: `Some` on success, `None` after printing its diagnostics (a compile
/// error, reported as a failed command), an error otherwise.
fn compiled<T>(result: Result<T, RuntimeError>) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e @ RuntimeError::Compile { .. }) => {
            write_stderr(&e.to_string());
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// `tlc stats`: the statistics of the kernel's PTX (`backend::ptx_stats`) and the resources
/// ptxas reports for it.
fn stats(o: &Options, path: &PathBuf) -> Result<bool> {
    use tl_compiler::backend::{ptx_stats, ptxas};
    let arch = o.arch.unwrap_or(Arch::Sm80);
    let Some(kernel) = load_kernel(o, path)? else { return Ok(false) };
    let assumptions = kernel.assumptions(&o.assume)?;
    let ptx = kernel.variant_ptx(&assumptions, arch)?;
    let Some(stats) = ptx_stats::analyze(&ptx).into_iter().find(|k| k.name == kernel.name()) else {
        bail!("internal error: the PTX of `{}` has no entry of that name", kernel.name());
    };
    let kinds = |c: &ptx_stats::Counts| {
        ptx_stats::Kind::ALL.iter().map(|k| format!("{} {}", k.name(), c.kind(*k))).collect::<Vec<_>>().join(", ")
    };
    let variant = if assumptions.is_none() { "unspecialized".to_string() } else { assumptions.describe(&kernel.compiled.kernel) };
    let mut out = format!("kernel `{}` ({arch}, {variant}): {} threads per block
", kernel.name(), kernel.compiled.lir.block_threads);
    out.push_str(&format!("  instructions: {} ({})
", stats.counts.instructions, kinds(&stats.counts)));
    let hot = stats.hot_loop().map(|l| l.header.clone());
    for l in &stats.loops {
        let mark = if Some(&l.header) == hot.as_ref() { ", hot" } else { "" };
        out.push_str(&format!(
            "  loop {} (depth {}{mark}): {} instructions ({}; barriers {}, mma {})
",
            l.header,
            l.depth,
            l.counts.instructions,
            kinds(&l.counts),
            l.counts.with_prefix("bar"),
            l.counts.with_prefix("mma")
        ));
    }
    if let Some(l) = stats.hot_loop() {
        // The hot loop's instructions by opcode, most frequent first (ties by name).
        let mut opcodes: Vec<(&String, &usize)> = l.counts.by_opcode.iter().collect();
        opcodes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let listed: Vec<String> = opcodes.iter().map(|(op, n)| format!("{op} {n}")).collect();
        out.push_str(&format!("  hot loop by opcode: {}\n", listed.join(", ")));
    }
    match ptxas::find_ptxas() {
        None => out.push_str("  ptxas: not found, so registers, spills and shared memory are unknown (set TL_PTXAS or put ptxas on PATH)\n"),
        Some(_) => {
            let report = ptxas::assemble(&ptx, arch).map_err(|e| anyhow::anyhow!(e))?;
            // ptxas counts static shared memory only; a dynamic buffer's size is the plan's.
            let planned = kernel.compiled.lir.shared_bytes;
            let shared = if planned > tl_compiler::backend::STATIC_SHARED_BYTES { format!("{planned} bytes shared memory (dynamic)") } else { String::new() };
            match ptxas::parse_resource_usage(&report).into_iter().find(|u| u.name == kernel.name()) {
                Some(u) => out.push_str(&format!(
                    "  ptxas: {} registers, {} barriers, {}, {} bytes stack, spills: {} bytes stored, {} bytes loaded\n",
                    u.registers,
                    u.barriers,
                    if shared.is_empty() { format!("{} bytes shared memory", u.shared_bytes) } else { shared },
                    u.stack_frame_bytes,
                    u.spill_store_bytes,
                    u.spill_load_bytes
                )),
                None => out.push_str(&format!("  ptxas: no resource report for `{}`\n", kernel.name())),
            }
        }
    }
    write_stdout(&out)?;
    Ok(true)
}

/// The dtype of tensor parameter `name`, or an error when there is no such tensor parameter.
fn tensor_param(kernel: &tl_runtime::Kernel, name: &str) -> Result<(usize, DType)> {
    let params = &kernel.compiled.kernel.params;
    let index = params
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| anyhow!("kernel `{}` has no parameter `{name}`", kernel.name()))?;
    match &params[index].kind {
        ParamKind::Global { dtype, .. } => Ok((index, *dtype)),
        ParamKind::Scalar(_) => bail!("`{name}` is a scalar, not a tensor: give it with --arg {name}=VALUE"),
    }
}

/// Whether `.npy` has a descriptor for `dtype` (see `tl_runtime::npy`).
fn npy_holds(dtype: DType) -> bool {
    DType::STANDARD.contains(&dtype) && dtype != DType::BF16
}

/// Checks a `--input`/`--output` file name against parameter `name` before anything runs, so
/// that a run is not wasted on an output that cannot be written.
fn check_tensor_path(flag: &str, name: &str, dtype: DType, file: &std::path::Path) -> Result<()> {
    match TensorFileKind::of_path(file) {
        None => bail!(
            "{flag} {name}=`{}`: unknown tensor file type; name it `*.npy` (NumPy) or `*.tlt` (tensor file, every dtype)",
            file.display()
        ),
        Some(TensorFileKind::Npy) if !npy_holds(dtype) => bail!(
            "{flag} {name}=`{}`: `{name}` is a {dtype} tensor, which .npy cannot hold; use a `.tlt` tensor file",
            file.display()
        ),
        _ => Ok(()),
    }
}

fn run_kernel(o: &Options, path: &PathBuf) -> Result<bool> {
    let backend = o.backend.unwrap_or(Backend::Vm);
    for (_, file) in &o.outputs {
        check_output_path(file, "--output")?;
    }
    let loaded = if o.tuned { tune::load_tuned_kernel(o, path, backend)? } else { load_kernel(o, path)? };
    let Some(kernel) = loaded else { return Ok(false) };
    let params = &kernel.compiled.kernel.params;
    for (name, file) in &o.outputs {
        let (_, dtype) = tensor_param(&kernel, name)?;
        check_tensor_path("--output", name, dtype, file)?;
    }
    // Scalars from files first: sizes among them shape the tensors.
    let mut scalars = o.scalars.clone();
    for (name, file) in &o.inputs {
        let Some(ParamKind::Scalar(dtype)) = params.iter().find(|p| &p.name == name).map(|p| &p.kind) else { continue };
        if scalars.iter().any(|(n, _)| n == name) {
            bail!("`{name}` is given twice, by --arg and by --input");
        }
        let t = tensor_file::read_tensor_file(file)?;
        if t.dtype != *dtype || t.len() != 1 {
            bail!(
                "--input {name}=`{}`: `{name}` is a {dtype} scalar, but the file holds {}{:?} \
                 (a scalar's file holds one {dtype} element, e.g. `numpy.save(path, numpy.float32(0.5))`)",
                file.display(),
                t.dtype,
                t.shape
            );
        }
        scalars.push((name.clone(), t.get_number(0)));
    }
    let mut args = kernel.random_args_with_scalars(o.seed, &scalars, tl_runtime::max_host_bytes())?;
    for (name, file) in &o.inputs {
        if params.iter().any(|p| &p.name == name && matches!(p.kind, ParamKind::Scalar(_))) {
            continue;
        }
        let (index, dtype) = tensor_param(&kernel, name)?;
        check_tensor_path("--input", name, dtype, file)?;
        let t = tensor_file::read_tensor_file(file)?;
        let Arg::Tensor(old) = &args[index] else { unreachable!("random_args makes a tensor for every tensor parameter") };
        if t.dtype != dtype {
            bail!(
                "--input {name}=`{}`: parameter `{name}` is a {dtype} tensor, but the file holds {} \
                 (write the file as {dtype}; a .tlt tensor file holds every dtype)",
                file.display(),
                t.dtype
            );
        }
        if old.shape != t.shape {
            bail!(
                "`{}` holds {}{:?}, but `{name}` needs {}{:?} for these sizes (set sizes with --arg)",
                file.display(),
                t.dtype,
                t.shape,
                old.dtype,
                old.shape
            );
        }
        args[index] = Arg::Tensor(t);
    }
    let inputs = args.clone();
    let has_reference = kernel.reference.is_some();
    let sizes: Vec<String> = params
        .iter()
        .zip(&args)
        .filter_map(|(p, a)| if let Arg::Scalar(v) = a { Some(format!("{}={v}", p.name)) } else { None })
        .collect();
    let mut ok = true;
    let report = if has_reference {
        let r = kernel.check(backend, &mut args)?;
        for out in &r.outputs {
            let c = &out.comparison;
            let status = if c.mismatches == 0 { "PASS" } else { "FAIL" };
            ok &= c.mismatches == 0;
            outln!(
                "{status} {} backend={} {} output={} vs reference: max_abs_err={:.3e} max_rel_err={:.3e} (rtol {:.0e}) mismatches={}",
                kernel.name(),
                backend.name(),
                sizes.join(" "),
                out.name,
                c.max_abs_error,
                c.max_scaled_error,
                out.rtol,
                c.mismatches
            );
            if let Some((i, got, want)) = c.first_mismatch {
                outln!("  first mismatch at flat index {i}: got {got}, expected {want}");
            }
        }
        r.launch
    } else {
        outln!("note: kernel `{}` has no reference block; not checked", kernel.name());
        kernel.launch(backend, &mut args)?
    };
    if let Some(ms) = report.kernel_ms {
        outln!("  kernel time {ms:.3} ms, grid {:?}", report.grid);
    }
    if let Some(other) = o.against {
        let mut other_args = inputs.clone();
        kernel.launch(other, &mut other_args)?;
        for (i, p) in params.iter().enumerate() {
            let (Arg::Tensor(a), Arg::Tensor(b)) = (&args[i], &other_args[i]) else { continue };
            if !matches!(p.kind, ParamKind::Global { mutable: true, .. }) {
                continue;
            }
            let c = reference::compare(&a.to_f64(), &b.to_f64(), reference::tolerance(a.dtype));
            let status = if c.mismatches == 0 { "PASS" } else { "FAIL" };
            ok &= c.mismatches == 0;
            outln!(
                "{status} {} backend={} vs {} output={}: max_abs_err={:.3e} max_rel_err={:.3e} mismatches={}",
                kernel.name(),
                backend.name(),
                other.name(),
                p.name,
                c.max_abs_error,
                c.max_scaled_error,
                c.mismatches
            );
        }
    }
    for (name, file) in &o.outputs {
        let (index, _) = tensor_param(&kernel, name)?;
        let Arg::Tensor(t) = &args[index] else { unreachable!("tensor parameters hold tensors") };
        tensor_file::write_tensor_file(file, t)?;
    }
    Ok(ok)
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message before it
/// already contains (the I/O errors of this crate name their cause in their own message, as
/// `cannot read `x`: No such file`, and also return it as their `source`).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(args) {
        Ok(o) => o,
        Err(Usage(msg)) => {
            if msg.is_empty() {
                let code = i32::from(write_stdout(&format!("{USAGE}\n")).is_err());
                std::process::exit(code);
            }
            write_stderr(&format!("error: {msg}\n{USAGE}\n"));
            std::process::exit(2);
        }
    };
    // Recursive passes over a statement of up to MAX_STATEMENT_TOKENS tokens need more stack
    // than a default main thread guarantees everywhere.
    let worker = std::thread::Builder::new().stack_size(256 << 20).spawn(move || run(options));
    let result = match worker.map(|h| h.join()) {
        Ok(Ok(r)) => r,
        _ => Err(anyhow!("internal error: the compiler thread failed")),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        // Diagnostics arrive rendered (with their own `error: ` lines and summary).
        Err(e) if matches!(e.downcast_ref::<RuntimeError>(), Some(RuntimeError::Compile { .. })) => {
            write_stderr(&e.to_string());
            std::process::exit(1);
        }
        Err(e) => {
            write_stderr(&format!("error: {}\n", error_chain(&e)));
            std::process::exit(1);
        }
    }
}
