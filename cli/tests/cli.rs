//! The `tlc` binary end to end: exit codes, diagnostics on stderr, emitted stages, `run`.

use std::process::Command;

/// `tlc` with `args`, without the compile cache (each compile runs every stage; the cache has
/// its own test): exit code, stdout, stderr.
fn tlc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tlc"))
        .args(args)
        .env("TL_CACHE_DIR", "off")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("tlc runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn check_reports_errors_with_location_and_exit_1() {
    let (code, _, err) = tlc(&["check", "tests/filetests/errors/types.tl"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("tests/filetests/errors/types.tl:5:13"), "{err}");
    assert!(err.contains("^^^^^"), "{err}");
    let (code, out, _) = tlc(&["check", "examples/vector_add.tl"]);
    assert_eq!(code, 0);
    assert!(out.contains("ok"));
}

#[test]
fn usage_errors_exit_2_and_missing_files_exit_1() {
    assert_eq!(tlc(&["frobnicate", "x.tl"]).0, 2);
    assert_eq!(tlc(&["compile", "examples/vector_add.tl", "--arch", "sm_7"]).0, 2);
    let (code, _, err) = tlc(&["check", "does/not/exist.tl"]);
    assert_eq!(code, 1);
    assert!(err.contains("does/not/exist.tl"), "{err}");
}

#[test]
fn garbage_input_is_an_error_not_a_crash() {
    let dir = std::env::temp_dir().join(format!("tlc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("garbage.tl");
    std::fs::write(&bad, b"kernel \xff\xfe\x00 {{{{ ((((").unwrap();
    let (code, _, err) = tlc(&["check", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("UTF-8"), "{err}");
    let deep = dir.join("deep.tl");
    std::fs::write(&deep, format!("kernel k() grid(1) warps(1) {{ let x = {}; }}", "-".repeat(200_000) + "1")).unwrap();
    let (code, _, err) = tlc(&["compile", deep.to_str().unwrap(), "--emit", "ptx"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("longer than"), "{err}");
}

#[test]
fn emits_every_stage() {
    for (emit, marker) in [("tokens", "kernel"), ("ast", "Kernel"), ("ir", "load a["), ("lir", "ld.global"), ("llvm", "define"), ("ptx", ".entry vector_add")] {
        let (code, out, err) = tlc(&["compile", "examples/vector_add.tl", "--emit", emit, "-D", "BLOCK=256"]);
        assert_eq!(code, 0, "{emit}: {err}");
        assert!(out.contains(marker), "{emit}: {out}");
    }
    let (code, _, err) = tlc(&["compile", "examples/vector_add.tl", "-D", "NOPE=3"]);
    assert_eq!(code, 1);
    assert!(err.contains("no compile-time parameter `NOPE`"), "{err}");
}

#[test]
fn assume_selects_a_specialized_variant() {
    let (code, plain, err) = tlc(&["compile", "examples/vector_add.tl", "--emit", "ptx"]);
    assert_eq!(code, 0, "{err}");
    assert!(!plain.contains("ld.global.v"), "unspecialized by default: {plain}");
    let (code, v16, err) = tlc(&["compile", "examples/vector_add.tl", "--emit", "ptx", "--assume", "n%16"]);
    assert_eq!(code, 0, "{err}");
    assert!(v16.contains("ld.global.v4.") && v16.contains("st.global.v4."), "{v16}");
    let (code, lir, err) = tlc(&["compile", "examples/vector_add.tl", "--emit", "lir", "--assume", "n%2"]);
    assert_eq!(code, 0, "{err}");
    assert!(lir.contains("ld.global.v2.f32"), "{lir}");
    let (code, _, err) = tlc(&["compile", "examples/vector_add.tl", "--assume", "n%3"]);
    assert_eq!(code, 1);
    assert!(err.contains("power of two"), "{err}");
    let (code, _, err) = tlc(&["compile", "examples/vector_add.tl", "--assume", "q%4"]);
    assert_eq!(code, 1);
    assert!(err.contains("no integer scalar parameter `q`"), "{err}");
    assert_eq!(tlc(&["run", "examples/vector_add.tl", "--assume", "n%4"]).0, 2);
}

#[test]
fn run_checks_against_the_reference_and_reads_and_writes_npy() {
    let (code, out, err) = tlc(&["run", "stdlib/kernels/softmax.tl", "--backend", "vm", "--arg", "m=5", "--arg", "n=300", "--against", "simt"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("PASS softmax backend=vm m=5 n=300"), "{out}");
    assert!(out.contains("PASS softmax backend=vm vs simt"), "{out}");
    let dir = std::env::temp_dir().join(format!("tlc-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("c.npy");
    let (code, out, err) = tlc(&["run", "examples/vector_add.tl", "--arg", "n=77", "--output", &format!("c={}", c.display())]);
    assert_eq!(code, 0, "{out}{err}");
    let t = tl_runtime::npy::read_npy_file(&c).unwrap();
    assert_eq!(t.shape, vec![77]);
    assert!(t.to_f64().iter().all(|v| v.is_finite()));
    // Feed it back as an input: c = a + a where a is the previous output.
    let (code, out, err) = tlc(&["run", "examples/vector_add.tl", "--arg", "n=77", "--input", &format!("a={}", c.display()), "--input", &format!("b={}", c.display())]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = tlc(&["run", "examples/vector_add.tl", "--arg", "n=78", "--input", &format!("a={}", c.display())]);
    assert_eq!(code, 1);
    assert!(err.contains("needs f32[78]"), "{err}");
}

#[test]
fn cuda_backend_without_a_driver_is_a_clear_error() {
    if tl_runtime::cuda::driver_available() {
        eprintln!("SKIPPED: this machine has a CUDA driver, so the no-driver error cannot be tested here");
        return;
    }
    let (code, _, err) = tlc(&["run", "examples/vector_add.tl", "--backend", "cuda"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("libcuda"), "{err}");
}

/// A copy kernel over any dtype: `c = a`, with the format chosen by `-D W=...`.
const COPY_KERNEL: &str = "// c = a for a tensor of any dtype W.
kernel copy<W: dtype = u4, BLOCK = 64>(
    n: i32,
    a: global W[n],
    c: global mut W[n],
) grid(cdiv(n, BLOCK)) warps(1) {
    store(c, load(a, [block.x * BLOCK], [BLOCK]), [block.x * BLOCK]);
}

reference copy {
    c = a;
}
";

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tlc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn codes(t: &tl_runtime::HostTensor) -> Vec<u64> {
    (0..t.len()).map(|i| t.code(i)).collect()
}

#[test]
fn run_reads_and_writes_tlt_files_of_every_format() {
    let dir = temp_dir("tlt");
    let kernel = dir.join("copy.tl");
    std::fs::write(&kernel, COPY_KERNEL).unwrap();
    let kernel = kernel.to_str().unwrap();
    for format in ["u1", "i3", "u4", "f4e2m1", "f6e3m2", "f8e4m3fn", "f8e5m2", "e8m0", "ue4m3", "bf16", "f32"] {
        let dtype = tl_runtime::DType::from_name(format).unwrap();
        let (a, c, c2) = (dir.join(format!("a-{format}.tlt")), dir.join(format!("c-{format}.tlt")), dir.join(format!("c2-{format}.tlt")));
        let w = format!("W={format}");
        // Random inputs (random codes for the low-bit formats), both tensors written out.
        let (code, out, err) = tlc(&["run", kernel, "-D", &w, "--arg", "n=77", "--seed", "5", "--against", "simt",
            "--output", &format!("a={}", a.display()), "--output", &format!("c={}", c.display())]);
        assert_eq!(code, 0, "{format}: {out}{err}");
        assert!(out.contains("PASS copy backend=vm n=77") && out.contains("vs simt"), "{format}: {out}");
        let (ta, tc) = (tl_runtime::tensor_file::read_tlt_file(&a).unwrap(), tl_runtime::tensor_file::read_tlt_file(&c).unwrap());
        assert_eq!((ta.dtype, ta.shape.clone()), (dtype, vec![77]), "{format}");
        assert_eq!(codes(&tc), codes(&ta), "{format}: the copy differs from its input");
        assert!(codes(&ta).iter().collect::<std::collections::BTreeSet<_>>().len() > 1, "{format}: inputs are not random");
        // The output fed back as the input, on the simulator: the same codes come out again.
        let (code, out, err) = tlc(&["run", kernel, "-D", &w, "--arg", "n=77", "--backend", "simt",
            "--input", &format!("a={}", c.display()), "--output", &format!("c={}", c2.display())]);
        assert_eq!(code, 0, "{format}: {out}{err}");
        assert_eq!(std::fs::read(&c2).unwrap(), std::fs::read(&c).unwrap(), "{format}");
    }
    // Standard dtypes go through .npy as before, and both forms mix in one run.
    let npy = dir.join("a.npy");
    let (code, out, err) = tlc(&["run", kernel, "-D", "W=f16", "--arg", "n=9", "--output", &format!("a={}", npy.display())]);
    assert_eq!(code, 0, "{out}{err}");
    let tlt = dir.join("c-from-npy.tlt");
    let (code, out, err) = tlc(&["run", kernel, "-D", "W=f16", "--arg", "n=9", "--input", &format!("a={}", npy.display()), "--output", &format!("c={}", tlt.display())]);
    assert_eq!(code, 0, "{out}{err}");
    let (from_npy, from_tlt) = (tl_runtime::npy::read_npy_file(&npy).unwrap(), tl_runtime::tensor_file::read_tlt_file(&tlt).unwrap());
    assert_eq!(from_npy, from_tlt);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_reports_tensor_file_mismatches_clearly() {
    let dir = temp_dir("tlt-errors");
    let kernel = dir.join("copy.tl");
    std::fs::write(&kernel, COPY_KERNEL).unwrap();
    let kernel = kernel.to_str().unwrap();
    let f4 = dir.join("a.tlt");
    let (code, out, err) = tlc(&["run", kernel, "-D", "W=f4e2m1", "--arg", "n=10", "--output", &format!("a={}", f4.display())]);
    assert_eq!(code, 0, "{out}{err}");
    let input = format!("a={}", f4.display());

    // A dtype mismatch names the parameter and both dtypes.
    let (code, _, err) = tlc(&["run", kernel, "-D", "W=f6e3m2", "--arg", "n=10", "--input", &input]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("parameter `a` is a f6e3m2 tensor, but the file holds f4e2m1"), "{err}");
    // A shape mismatch says what is needed.
    let (code, _, err) = tlc(&["run", kernel, "-D", "W=f4e2m1", "--arg", "n=11", "--input", &input]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("needs f4e2m1[11]"), "{err}");
    // .npy cannot hold a low-bit tensor: refused before the run, pointing at .tlt.
    let (code, out, err) = tlc(&["run", kernel, "-D", "W=u4", "--arg", "n=10", "--output", &format!("c={}", dir.join("c.npy").display())]);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "the kernel ran: {out}");
    assert!(err.contains("u4") && err.contains(".tlt"), "{err}");
    assert!(!dir.join("c.npy").exists());
    // Unknown extensions, corrupt files and missing files name the file, once.
    let (code, _, err) = tlc(&["run", kernel, "--arg", "n=10", "--input", "a=weights.bin"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("weights.bin") && err.contains(".npy") && err.contains(".tlt"), "{err}");
    let corrupt = dir.join("corrupt.tlt");
    let mut bytes = std::fs::read(&f4).unwrap();
    bytes.pop();
    std::fs::write(&corrupt, bytes).unwrap();
    let (code, _, err) = tlc(&["run", kernel, "-D", "W=f4e2m1", "--arg", "n=10", "--input", &format!("a={}", corrupt.display())]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("corrupt.tlt") && err.contains("truncated"), "{err}");
    let (code, _, err) = tlc(&["run", kernel, "--arg", "n=10", "--input", "a=missing.tlt"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot read `missing.tlt`"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    // A scalar is not a tensor.
    let (code, _, err) = tlc(&["run", kernel, "--arg", "n=10", "--output", &format!("n={}", dir.join("n.tlt").display())]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`n` is a scalar"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_describes_both_tensor_file_forms() {
    let (code, out, _) = tlc(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--input NAME=TENSOR") && out.contains("*.npy") && out.contains("*.tlt"), "{out}");
}

#[test]
fn print_after_and_time_show_each_pass() {
    let (code, out, err) = tlc(&["compile", "examples/vector_add.tl", "--emit", "ptx", "--print-after", "infer-layouts", "--print-after", "lower", "--time"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(".entry vector_add"), "the PTX still goes to stdout");
    // The block IR with its layouts, then the thread-level IR, then the table of times.
    let layouts = err.find("// after infer-layouts: kernel `vector_add`").expect("block IR");
    let lir = err.find("// after lower: kernel `vector_add`").expect("LIR");
    assert!(layouts < lir && err[layouts..lir].contains("@ spatial(128) * local(4)"), "{err}");
    assert!(err[lir..].contains("lir vector_add(") && err[lir..].contains("ld.global.f32"), "{err}");
    for pass in ["parse", "sema", "infer-layouts", "select-instructions", "plan-shared-memory", "lower", "codegen (ptx, sm_80)", "total"] {
        assert!(err.lines().any(|l| l.trim_start().starts_with(pass) && l.ends_with(" ms")), "no time for {pass}: {err}");
    }
    // With --assume, the LIR shown is the specialized variant's (vector loads).
    let (code, _, err) = tlc(&["compile", "examples/vector_add.tl", "--emit", "ir", "--assume", "n%16", "--print-after", "lower", "--time"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("ld.global.v4.f32") && err.contains("lower (n%16)"), "{err}");
    // An unknown pass, or a pass given twice, is a usage error naming the passes.
    let (code, _, err) = tlc(&["compile", "examples/vector_add.tl", "--print-after", "frob"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown pass `frob` (the passes are sema, infer-layouts, select-instructions, plan-shared-memory, lower)"), "{err}");
    assert_eq!(tlc(&["compile", "examples/vector_add.tl", "--print-after", "lower", "--print-after", "lower"]).0, 2);
    assert_eq!(tlc(&["run", "examples/vector_add.tl", "--time"]).0, 2);
}

#[test]
fn stats_count_the_instructions_of_the_ptx_and_its_loops() {
    let file = "stdlib/kernels/qmatmul.tl";
    let (code, out, err) = tlc(&["stats", file, "-D", "W=u4", "--assume", "n%16,k%16"]);
    assert_eq!(code, 0, "{err}");
    // The total, counted here independently from `tlc compile --emit ptx`: every statement
    // line of the body that is not a directive.
    let (code, ptx, err) = tlc(&["compile", file, "-D", "W=u4", "--assume", "n%16,k%16", "--emit", "ptx"]);
    assert_eq!(code, 0, "{err}");
    let counted = ptx
        .lines()
        .map(|l| l.split("//").next().unwrap_or("").trim())
        .filter(|l| l.ends_with(';') && !l.starts_with('.') && !l.starts_with(')') && !l.is_empty())
        .count();
    assert!(out.contains(&format!("instructions: {counted} (")), "counted {counted}:\n{out}");
    // The k loop is the hot one: it holds the tensor-core instructions (2 k-steps of 16 for
    // each warp's 16×8 tile: BK = 32) and the barriers.
    let hot = out.lines().find(|l| l.contains(", hot)")).unwrap_or_else(|| panic!("no hot loop:\n{out}"));
    assert!(hot.contains("mma 2)"), "{hot}");
    if out.contains("ptxas: not found") {
        assert!(std::env::var("TL_REQUIRE_PTXAS").as_deref() != Ok("1"), "TL_REQUIRE_PTXAS=1 but tlc stats found no ptxas:\n{out}");
        eprintln!("SKIPPED the ptxas part of stats_count_the_instructions_of_the_ptx_and_its_loops: ptxas not found");
    } else {
        // ptxas counts the shared memory the compiler's plan gives the kernel.
        let (_, ir, _) = tlc(&["compile", file, "-D", "W=u4", "--emit", "ir"]);
        let planned = ir.split("shared_bytes(").nth(1).and_then(|r| r.split(')').next()).unwrap_or_else(|| panic!("{ir}"));
        assert!(out.contains("registers") && out.contains(&format!(" {planned} bytes shared memory")), "{planned}: {out}");
    }
    assert_eq!(tlc(&["stats", file, "--backend", "vm"]).0, 2, "run options do not apply");
}

#[test]
fn run_takes_float_scalars_from_arg_and_from_npy_files() {
    let file = "tests/kernels/scalar_arguments.tl";
    let (code, out, err) = tlc(&["run", file, "--arg", "n=100", "--arg", "alpha=0.3", "--arg", "beta=-1.5e-2", "--arg", "gamma=3", "--against", "simt"]);
    assert_eq!(code, 0, "{out}{err}");
    // 0.3 rounded to f16 is 1229 / 4096, -0.015 to bf16 is -246 / 16384.
    assert!(out.contains("PASS axpy backend=vm n=100 alpha=0.300048828125 beta=-0.0150146484375 gamma=3 output=y vs reference"), "{out}");
    assert!(out.contains("PASS axpy backend=vm vs simt"), "{out}");
    // A scalar from a file of one element of its dtype (numpy.save(path, numpy.float16(0.3))).
    let dir = temp_dir("scalars");
    let alpha = dir.join("alpha.npy");
    tl_runtime::npy::write_npy_file(&alpha, &tl_runtime::HostTensor::from_f64(tl_runtime::DType::F16, &[], &[0.3])).unwrap();
    let input = format!("alpha={}", alpha.display());
    let (code, out, err) = tlc(&["run", file, "--arg", "n=64", "--input", &input]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("alpha=0.300048828125"), "{out}");
    // The wrong dtype, a value twice, an integer parameter given a fraction, a float too large
    // for its dtype, and text that is no number are errors that say so.
    let wide = dir.join("wide.npy");
    tl_runtime::npy::write_npy_file(&wide, &tl_runtime::HostTensor::from_f64(tl_runtime::DType::F32, &[], &[0.3])).unwrap();
    let (code, _, err) = tlc(&["run", file, "--input", &format!("alpha={}", wide.display())]);
    assert_eq!(code, 1);
    assert!(err.contains("`alpha` is a f16 scalar, but the file holds f32[]"), "{err}");
    let (code, _, err) = tlc(&["run", file, "--arg", "alpha=1", "--input", &input]);
    assert_eq!(code, 1);
    assert!(err.contains("`alpha` is given twice"), "{err}");
    let (code, _, err) = tlc(&["run", file, "--arg", "n=1.5"]);
    assert_eq!(code, 1);
    assert!(err.contains("--arg n=1.5 is not an integer, but `n` is i32") && err.contains("scalar_arguments.tl:3:"), "{err}");
    let (code, _, err) = tlc(&["run", file, "--arg", "alpha=1e6"]);
    assert_eq!(code, 1);
    assert!(err.contains("beyond the largest finite f16 (65504)"), "{err}");
    let (code, _, err) = tlc(&["run", file, "--arg", "alpha=half"]);
    assert_eq!(code, 2);
    assert!(err.contains("--arg alpha: `half` is not a number"), "{err}");
}

/// The Cranelift backend from the command line: a run checked against the reference, the
/// Cranelift IR, a tensor-core matmul, and a kernel that prints.
#[test]
fn the_cpu_backend_runs_kernels_and_prints_its_ir() {
    let (code, out, err) = tlc(&["run", "stdlib/kernels/softmax.tl", "--backend", "cpu", "--arg", "m=8", "--arg", "n=300"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("PASS softmax backend=cpu"), "{out}");
    let (code, out, err) = tlc(&["compile", "examples/vector_add.tl", "--emit", "clif"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("function") && out.contains("fadd"), "{out}");
    let (code, out, err) = tlc(&["run", "stdlib/kernels/matmul.tl", "--backend", "cpu"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("PASS matmul backend=cpu"), "{out}");
    // `print`: the same lines as the simulator's (in its own order).
    let printed = |backend: &str| {
        let (code, out, err) = tlc(&["run", "tests/kernels/print.tl", "--backend", backend, "--arg", "m=4", "--arg", "n=3"]);
        assert_eq!(code, 0, "{out}{err}");
        let mut lines: Vec<String> = out.lines().filter(|l| l.starts_with("block (")).map(str::to_string).collect();
        lines.sort();
        lines
    };
    let (cpu, simt) = (printed("cpu"), printed("simt"));
    assert!(cpu.len() > 100 && cpu.iter().any(|l| l.starts_with("block (0, 0, 0): w[0, 0] = ")), "{cpu:?}");
    assert_eq!(cpu, simt);
}

/// The compile cache across processes: four `tlc compile` at once on an empty cache (writers
/// racing on one entry), then a fifth served from the cache (`--time` says so) with the same
/// PTX; a damaged entry is compiled again with a warning; another variant (`--assume`) or
/// architecture is another entry.
#[test]
fn compile_cache_serves_a_second_compile_and_survives_racing_writers() {
    let directory = temp_dir("cache");
    let cache = directory.join("cache");
    let compile = |extra: &[&str]| {
        let mut args = vec!["compile", "stdlib/kernels/rmsnorm.tl", "--emit", "ptx", "--time"];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_tlc")).args(&args).env("TL_CACHE_DIR", &cache).current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).output().expect("tlc runs")
    };
    let racing: Vec<std::process::Child> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_tlc"))
                .args(["compile", "stdlib/kernels/rmsnorm.tl", "--emit", "ptx"])
                .env("TL_CACHE_DIR", &cache)
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("tlc starts")
        })
        .collect();
    let outputs: Vec<std::process::Output> = racing.into_iter().map(|c| c.wait_with_output().expect("tlc runs")).collect();
    for o in &outputs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stderr.is_empty(), "a racing writer warned: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.stdout, outputs[0].stdout);
    }
    let entries = || std::fs::read_dir(&cache).unwrap().flatten().map(|e| e.path()).collect::<Vec<_>>();
    assert_eq!(entries().len(), 1, "one entry, no temporary files: {:?}", entries());

    let served = compile(&[]);
    let time = String::from_utf8_lossy(&served.stderr);
    assert!(served.status.success() && time.contains("ptx from the cache (sm_80)") && !time.contains("codegen (ptx"), "{time}");
    assert_eq!(served.stdout, outputs[0].stdout);

    // A damaged entry: compiled again (the same PTX), one warning, the entry rewritten.
    let entry = entries().pop().unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&entry, &bytes).unwrap();
    let recompiled = compile(&[]);
    let time = String::from_utf8_lossy(&recompiled.stderr);
    assert!(recompiled.status.success() && time.contains("codegen (ptx, sm_80)") && time.contains("warning: compile cache entry") && time.contains("damaged"), "{time}");
    assert_eq!(recompiled.stdout, outputs[0].stdout);
    assert!(String::from_utf8_lossy(&compile(&[]).stderr).contains("ptx from the cache"), "the entry was not rewritten");

    // Other variants are other entries.
    for extra in [&["--assume", "n%8"][..], &["--arch", "sm_90a"], &["-D", "BN=256"]] {
        let first = compile(extra);
        assert!(first.status.success() && String::from_utf8_lossy(&first.stderr).contains("codegen (ptx"), "{extra:?}: {}", String::from_utf8_lossy(&first.stderr));
        assert_ne!(first.stdout, outputs[0].stdout, "{extra:?}");
    }
    assert_eq!(entries().len(), 4);
    let _ = std::fs::remove_dir_all(&directory);
}

/// `--emit` of several stages: one compile, one file per stage in the directory of -o, each
/// the same text as that stage emitted alone; the mistakes are usage errors.
#[test]
fn several_stages_are_emitted_into_files_at_once() {
    let directory = temp_dir("stages");
    let out = directory.join("out");
    let out_text = out.to_str().unwrap();
    let (code, stdout, err) = tlc(&["compile", "examples/vector_add.tl", "--emit", "ir,lir,ptx,tokens,clif", "-o", out_text, "--assume", "n%4"]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.is_empty(), "{stdout}");
    for (stage, file) in [("ir", "vector_add.ir"), ("lir", "vector_add.lir"), ("ptx", "vector_add.ptx"), ("tokens", "vector_add.tokens"), ("clif", "vector_add.clif")] {
        let written = std::fs::read_to_string(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (code, alone, err) = tlc(&["compile", "examples/vector_add.tl", "--emit", stage, "--assume", "n%4"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(written, alone, "{stage}");
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 5);
    for (args, message) in [
        (vec!["--emit", "ir,lir"], "give a directory with -o DIR"),
        (vec!["--emit", "ir,ir", "-o", out_text], "names `ir` twice"),
        (vec!["--emit", "ir,bogus", "-o", out_text], "unknown --emit `bogus`"),
        (vec!["--emit", "ir,lir", "-o", "examples/vector_add.tl"], "is not a directory"),
    ] {
        let mut all = vec!["compile", "examples/vector_add.tl"];
        all.extend(args.iter().copied());
        let (code, _, err) = tlc(&all);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&directory);
}

/// `--emit cubin`: the cubin ptxas makes of the kernel's PTX, written to -o: an ELF file for the
/// CUDA machine, byte for byte what ptxas makes of the emitted PTX when run by hand. A second
/// compile is served from the cache (`--time` says so); a damaged entry is assembled again with
/// a warning; among several stages it is KERNEL.cubin; without -o it is an error.
#[test]
fn cubins_are_assembled_by_ptxas_and_cached() {
    let directory = temp_dir("cubin");
    let file = |name: &str| directory.join(name).to_str().unwrap().to_string();
    let Some(ptxas) = tl_compiler::backend::ptxas::find_ptxas() else {
        assert!(std::env::var("TL_REQUIRE_PTXAS").map_or(true, |v| v != "1"), "ptxas not found, but TL_REQUIRE_PTXAS=1 requires it");
        eprintln!("SKIPPED cubins_are_assembled_by_ptxas_and_cached: ptxas not found (set TL_PTXAS or run scripts/setup.sh)");
        let (code, _, err) = tlc(&["compile", "examples/vector_add.tl", "--emit", "cubin", "-o", &file("k.cubin")]);
        assert!(code == 1 && err.contains("ptxas not found"), "{err}");
        return;
    };
    let cache = directory.join("cache");
    let compile = |extra: &[&str]| {
        let mut args = vec!["compile", "examples/vector_add.tl", "--arch", "sm_90a", "--time"];
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_tlc")).args(&args).env("TL_CACHE_DIR", &cache).current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).output().expect("tlc runs");
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let time = compile(&["--emit", "cubin", "-o", &file("first.cubin")]);
    assert!(time.contains("codegen (ptx, sm_90a)") && time.contains("cubin by ptxas (sm_90a)"), "{time}");
    let cubin = std::fs::read(directory.join("first.cubin")).unwrap();
    assert_eq!(&cubin[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([cubin[18], cubin[19]]), 190, "e_machine is EM_CUDA");
    assert!(cubin.windows(10).any(|w| w == b"vector_add"), "the kernel's symbol");

    // The same bytes as ptxas run by hand on the emitted PTX.
    compile(&["--emit", "ptx", "-o", &file("k.ptx")]);
    let by_hand = Command::new(&ptxas).args(["--gpu-name", "sm_90a", &file("k.ptx"), "-o", &file("by_hand.cubin")]).output().expect("ptxas runs");
    assert!(by_hand.status.success(), "{}", String::from_utf8_lossy(&by_hand.stderr));
    assert!(std::fs::read(directory.join("by_hand.cubin")).unwrap() == cubin, "the cubin differs from ptxas's own");

    // Served from the cache, the same bytes.
    let time = compile(&["--emit", "cubin", "-o", &file("second.cubin")]);
    assert!(time.contains("ptx from the cache (sm_90a)") && time.contains("cubin from the cache (sm_90a)"), "{time}");
    assert!(std::fs::read(directory.join("second.cubin")).unwrap() == cubin);

    // A damaged cubin entry: assembled again, one warning, the same bytes.
    let cubin_entry = std::fs::read_dir(&cache).unwrap().flatten().map(|e| e.path()).find(|p| std::fs::read(p).is_ok_and(|b| b.get(16..22) == Some(b"cubin\n".as_slice()))).expect("a cubin entry");
    let mut bytes = std::fs::read(&cubin_entry).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&cubin_entry, &bytes).unwrap();
    let time = compile(&["--emit", "cubin", "-o", &file("third.cubin")]);
    assert!(time.contains("damaged") && time.contains("cubin by ptxas (sm_90a)"), "{time}");
    assert!(std::fs::read(directory.join("third.cubin")).unwrap() == cubin);

    // Among several stages: KERNEL.cubin beside KERNEL.ptx.
    compile(&["--emit", "ptx,cubin", "-o", &file("stages")]);
    assert!(std::fs::read(directory.join("stages/vector_add.cubin")).unwrap() == cubin);
    assert_eq!(std::fs::read_to_string(directory.join("stages/vector_add.ptx")).unwrap(), std::fs::read_to_string(directory.join("k.ptx")).unwrap());

    let (code, _, err) = tlc(&["compile", "examples/vector_add.tl", "--emit", "cubin"]);
    assert!(code == 1 && err.contains("give it with -o FILE"), "{err}");
    // A TL_PTXAS that does not run is named, and nothing is written.
    let out = Command::new(env!("CARGO_BIN_EXE_tlc"))
        .args(["compile", "examples/vector_add.tl", "--emit", "cubin", "-o", &file("none.cubin")])
        .env("TL_CACHE_DIR", "off")
        .env("TL_PTXAS", directory.join("no_such_ptxas"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("tlc runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && err.contains("no_such_ptxas") && err.contains("does not run"), "{err}");
    assert!(!directory.join("none.cubin").exists());
    let _ = std::fs::remove_dir_all(&directory);
}

/// The cpu backend's machine code across processes: a second `tlc compile --emit clif` takes it
/// from the compile cache (`--time` says so) with the same Cranelift IR, and a second
/// `tlc run --backend cpu` runs the cached code (no new entry), agreeing with simt.
#[test]
fn native_code_is_served_to_the_next_process() {
    let directory = temp_dir("native");
    let cache = directory.join("cache");
    let tlc_cached = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tlc")).args(args).env("TL_CACHE_DIR", &cache).current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).output().expect("tlc runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let entries = || std::fs::read_dir(&cache).map_or(0, |d| d.count());
    let compile = ["compile", "stdlib/kernels/silu.tl", "--emit", "clif", "--time"];
    let (first_clif, time) = tlc_cached(&compile);
    assert!(time.contains("codegen (clif, native code)"), "{time}");
    let (second_clif, time) = tlc_cached(&compile);
    assert!(time.contains("clif (native code cached)"), "{time}");
    assert_eq!(first_clif, second_clif);
    let run = ["run", "stdlib/kernels/silu.tl", "--backend", "cpu", "--against", "simt", "--seed", "4"];
    let (first_run, _) = tlc_cached(&run);
    let after_first = entries();
    let (second_run, _) = tlc_cached(&run);
    assert_eq!(entries(), after_first, "the second run compiled its code again");
    assert!(second_run.contains("PASS silu backend=cpu vs simt") && !second_run.contains("FAIL"), "{second_run}");
    assert_eq!(first_run, second_run);
    let _ = std::fs::remove_dir_all(&directory);
}
