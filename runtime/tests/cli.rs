//! The `tlc` binary end to end: exit codes, diagnostics on stderr, emitted stages, `run`.

use std::process::Command;

fn tlc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tlc"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("tlc runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn check_reports_errors_with_location_and_exit_1() {
    let (code, _, err) = tlc(&["check", "tests/cases/errors/types.tl"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("tests/cases/errors/types.tl:5:13"), "{err}");
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
        println!("skipping: this machine has a CUDA driver");
        return;
    }
    let (code, _, err) = tlc(&["run", "examples/vector_add.tl", "--backend", "cuda"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("libcuda"), "{err}");
}
