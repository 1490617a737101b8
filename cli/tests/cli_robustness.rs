//! `tlc` on hostile or careless input: huge launches, many errors, closed pipes and full
//! disks, FIFOs, grids beyond the hardware, repeated or misplaced options, and errors that must
//! say where they come from. Each case once crashed, hung, lied or printed something unclear.

use std::io::Read;
use std::process::{Command, Stdio};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn tlc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tlc")).args(args).env("TL_CACHE_DIR", "off").current_dir(ROOT).output().expect("tlc runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tlc-robust-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_launch_too_large_for_memory_is_refused_before_allocating() {
    let (code, _, err) = tlc(&["run", "stdlib/kernels/softmax.tl", "--arg", "m=268435456", "--arg", "n=268435456"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("576460752303423488 bytes"), "{err}");
    assert!(err.contains("`x`: f32[268435456, 268435456]"), "{err}");
    assert!(err.contains("TL_MAX_HOST_BYTES"), "{err}");
    assert!(err.contains("softmax.tl:"), "the error names the file and line: {err}");
    assert!(!err.contains("panicked") && !err.contains("memory allocation"), "{err}");
}

#[test]
fn many_errors_are_capped_and_counted() {
    let dir = temp_dir("many");
    let body = "    let = ;\n".repeat(100_000);
    let file = write(&dir, "many.tl", &format!("kernel k() grid(1) warps(1) {{\n{body}}}\n"));
    let (code, _, err) = tlc(&["check", &file]);
    assert_eq!(code, 1);
    let shown = err.matches("\nerror: ").count() + usize::from(err.starts_with("error: "));
    assert!(shown <= 102, "{shown} errors printed");
    assert!(err.contains("more diagnostics not shown"), "{}", &err[err.len().saturating_sub(400)..]);
    // Tokens of a big file are placed in one pass: the last one is on the last line.
    let (code, out, _) = tlc(&["compile", &file, "--emit", "tokens"]);
    assert_eq!(code, 0);
    assert!(out.lines().last().unwrap().starts_with("100002:1\t"), "{}", out.lines().last().unwrap());
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_an_error() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tlc"))
        .args(["compile", "stdlib/kernels/softmax.tl", "--emit", "llvm"])
        .current_dir(ROOT)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    if std::path::Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tlc"))
            .args(["compile", "stdlib/kernels/softmax.tl", "--emit", "llvm"])
            .current_dir(ROOT)
            .stdout(full)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("cannot write to standard output"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        let (code, _, err) = tlc(&["compile", "stdlib/kernels/softmax.tl", "--emit", "llvm", "-o", "/dev/full"]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("cannot write `/dev/full`"), "{err}");
    } else {
        eprintln!("SKIPPED the full-disk half: no /dev/full on this machine");
    }
}

#[cfg(unix)]
#[test]
fn fifos_are_refused_instead_of_blocking() {
    let dir = temp_dir("fifo");
    let fifo = dir.join("pipe.tl");
    let made = Command::new("mkfifo").arg(&fifo).status().map(|s| s.success()).unwrap_or(false);
    if !made {
        eprintln!("SKIPPED: mkfifo is not available");
        return;
    }
    let fifo = fifo.to_str().unwrap();
    let (code, _, err) = tlc(&["check", fifo]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    let npy = dir.join("x.npy");
    Command::new("mkfifo").arg(&npy).status().unwrap();
    let input = format!("a={}", npy.display());
    let (code, _, err) = tlc(&["run", "examples/vector_add.tl", "--arg", "n=8", "--input", &input]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    let output = format!("c={}", npy.display());
    let (code, _, err) = tlc(&["run", "examples/vector_add.tl", "--arg", "n=8", "--output", &output]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn grids_beyond_the_hardware_are_refused_at_the_grid_clause() {
    let dir = temp_dir("grid");
    let file = write(
        &dir,
        "grid.tl",
        "kernel wide(n: i64, y: i32, c: global mut f32[1]) grid(n, y) warps(1) {\n    store(c, zeros<f32>([1]), [0]);\n}\n",
    );
    for (n, y, what) in [("2147483648", "1", "2147483647"), ("1", "65536", "65535")] {
        let (code, _, err) = tlc(&["run", &file, "--arg", &format!("n={n}"), "--arg", &format!("y={y}")]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(&format!("more than the {what} the hardware launches")), "{err}");
        assert!(err.contains("grid.tl:1:"), "the error points at the grid clause: {err}");
    }
}

#[test]
fn repeated_and_misplaced_options_are_usage_errors() {
    for args in [
        &["run", "examples/vector_add.tl", "--arg", "n=4", "--arg", "n=5"][..],
        &["compile", "examples/vector_add.tl", "-D", "BLOCK=64", "-D", "BLOCK=128"],
        &["compile", "examples/vector_add.tl", "--emit", "ir", "--emit", "ptx"],
        &["run", "examples/vector_add.tl", "--emit", "ir"],
        &["compile", "examples/vector_add.tl", "--backend", "vm"],
        &["check", "examples/vector_add.tl", "--arg", "n=3"],
        &["run", "examples/vector_add.tl", "--assume", "n%4"],
    ] {
        let (code, _, err) = tlc(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("given twice") || err.contains("does not apply"), "{args:?}: {err}");
    }
}

#[test]
fn check_takes_parameters_and_finds_what_compile_finds_at_its_line() {
    let dir = temp_dir("check");
    let file = write(
        &dir,
        "big.tl",
        "kernel big<B = 16>(x: global f32[256, 256], y: global mut f32[256, 1]) grid(1) warps(4) {\n    let t = load(x, [0, 0], [B, 256]);\n    store(y, sum(t, dim = 1), [0, 0]);\n}\n",
    );
    assert_eq!(tlc(&["check", &file]).0, 0);
    let (code, _, err) = tlc(&["check", &file, "-D", "B=256"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bytes of shared memory"), "{err}");
    assert!(err.contains("big.tl:3:14"), "the error has a line and column: {err}");
    let (code, _, err) = tlc(&["check", &file, "-D", "Q=1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no kernel checked here has a compile-time parameter `Q`"), "{err}");
    let empty = write(&dir, "empty.tl", "// nothing here\n");
    let (code, _, err) = tlc(&["check", &empty]);
    assert_eq!(code, 0);
    assert!(err.contains("warning") && err.contains("no kernel"), "{err}");
}

#[test]
fn reference_errors_say_error_once_and_launch_errors_name_the_place() {
    let dir = temp_dir("reference");
    let file = write(
        &dir,
        "refbad.tl",
        "kernel k(n: i32, a: global f32[n], c: global mut f32[n]) grid(cdiv(n, 32)) warps(1) {\n    store(c, load(a, [block.x * 32], [32]), [block.x * 32]);\n}\nreference k {\n    c = a + nothere;\n}\n",
    );
    let (code, _, err) = tlc(&["run", &file, "--arg", "n=40"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown name `nothere`"), "{err}");
    assert!(!err.contains("error: error:"), "{err}");
    assert!(err.contains("refbad.tl:5:"), "{err}");
    // A scalar out of its dtype's range, at the parameter.
    let small = write(
        &dir,
        "small.tl",
        "kernel s(flag: bool, k: i8, c: global mut f32[1]) grid(1) warps(1) {\n    store(c, zeros<f32>([1]), [0]);\n}\n",
    );
    let (code, _, err) = tlc(&["run", &small, "--arg", "k=300"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("out of range for i8") && err.contains("small.tl:1:"), "{err}");
    // Random scalars are drawn within their dtypes: every seed runs.
    for seed in 0..8 {
        let (code, out, err) = tlc(&["run", &small, "--seed", &seed.to_string()]);
        assert_eq!(code, 0, "seed {seed}: {out}{err}");
    }
}

#[test]
fn a_tile_too_large_for_its_threads_is_refused_quickly_with_the_numbers() {
    let dir = temp_dir("tile");
    let file = write(
        &dir,
        "big.tl",
        "kernel big(n: i32, x: global f16[n], y: global mut u4[n]) grid(1) warps(1) {\n    let t = load(x, [0], [65536]);\n    store(y, cast<u4>(t), [0]);\n}\n",
    );
    let (code, _, err) = tlc(&["compile", &file, "--emit", "ptx"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("2048 elements in each of the block's 32 threads; at most 512"), "{err}");
    assert!(err.contains("big.tl:2:13") && err.matches("error: this").count() == 1, "{err}");
    // The same tile on 4 warps is 512 elements a thread: accepted.
    let fits = write(&dir, "fits.tl", &std::fs::read_to_string(&file).unwrap().replace("warps(1)", "warps(4)"));
    let (code, _, err) = tlc(&["check", &fits]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn sixty_four_bit_integers_arrive_exactly() {
    // Values an f64 cannot hold: `--arg` and literals used to be rounded (2^53 + 1 → 2^53) or
    // refused (2^63 − 1 rounded to 2^63, out of range).
    let dir = temp_dir("i64");
    let file = write(
        &dir,
        "wide.tl",
        "kernel wide(w: i64, c: global mut i64[1]) grid(1) warps(1) {\n    store(c, full<i64>([1], w), [0]);\n}\n",
    );
    let out = dir.join("c.npy");
    for value in [9007199254740993i64, i64::MAX, -9007199254740993, i64::MIN + 1] {
        for backend in ["vm", "simt"] {
            let output = format!("c={}", out.display());
            let (code, _, err) = tlc(&["run", &file, "--backend", backend, "--arg", &format!("w={value}"), "--output", &output]);
            assert_eq!(code, 0, "{value} on {backend}: {err}");
            let t = tl_runtime::npy::read_npy_file(&out).unwrap();
            assert_eq!(t.code(0) as i64, value, "{backend}");
        }
    }
    // Out of the parameter's range is still an error at the parameter.
    let narrow = write(&dir, "narrow.tl", "kernel narrow(w: i32, c: global mut i32[1]) grid(1) warps(1) {\n    store(c, full<i32>([1], w), [0]);\n}\n");
    let (code, _, err) = tlc(&["run", &narrow, "--arg", "w=9007199254740993"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("out of range for i32") && err.contains("narrow.tl:1:"), "{err}");
    let literal = write(
        &dir,
        "literal.tl",
        "kernel lit(c: global mut i64[1]) grid(1) warps(1) {\n    store(c, full<i64>([1], 9007199254740993), [0]);\n}\n",
    );
    let output = format!("c={}", out.display());
    let (code, _, err) = tlc(&["run", &literal, "--output", &output]);
    assert_eq!(code, 0, "{err}");
    let t = tl_runtime::npy::read_npy_file(&out).unwrap();
    assert_eq!(t.code(0), 9007199254740993);
}

#[test]
fn long_cpu_runs_report_progress_and_stop_on_an_interrupt() {
    for backend in ["vm", "cpu"] {
        long_run_reports_progress_and_stops_on_an_interrupt(backend);
    }
}

/// A run of about a billion blocks on `backend` (hours on the VM, a minute or more on the cpu
/// backend) reports progress every 0.2 s, then stops on an interrupt without writing its
/// output.
fn long_run_reports_progress_and_stops_on_an_interrupt(backend: &str) {
    let dir = temp_dir(&format!("progress-{backend}"));
    let file = write(
        &dir,
        "many.tl",
        "kernel many(n: i32, c: global mut f32[1]) grid(n) warps(1) {\n    store(c, zeros<f32>([1]), [0]);\n}\n",
    );
    // An output file from before: an interrupted run must leave it as it was.
    let previous = dir.join("c.npy");
    std::fs::write(&previous, b"not touched").unwrap();
    let output = format!("c={}", previous.display());
    // About a billion blocks: hours on the VM. Progress every 0.2 s; then an interrupt.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tlc"))
        .args(["run", &file, "--backend", backend, "--arg", "n=1000000000", "--output", &output])
        .env("TL_PROGRESS", "0.2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    let mut buffer = [0u8; 256];
    while !seen.contains("Ctrl-C stops it") {
        let n = stderr.read(&mut buffer).unwrap();
        assert!(n > 0, "tlc ended without progress: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    assert!(seen.contains(&format!("tl: {backend} `many`:")) && seen.contains("of 1000000000 blocks"), "{seen}");
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().map(|s| s.success()).unwrap_or(false);
    if !interrupted {
        child.kill().unwrap();
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status:?}");
    if interrupted {
        // Ended by the interrupt itself (the shell sees "interrupted", status 130).
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(2), "{status:?}");
    }
    assert_eq!(std::fs::read(&previous).unwrap(), b"not touched");
}
