//! Integer arithmetic of 8 bits and more whose exact result does not fit its dtype is an error
//! of the kernel (docs/language.md §5): the VM computes exactly and faults, and the simulator
//! reports it from the checks the lowering adds for the CPU backends, at the same line. Inputs
//! just inside the range run cleanly on both.

use tl_compiler::dtype::DType;
use tl_runtime::{Arg, Backend, HostTensor, Module};

/// `y = EXPR(x)` over 32 elements of dtype `d`, with scalar `n` of dtype `d` too.
fn kernel(d: &str, expr: &str) -> tl_runtime::Kernel {
    let source = format!(
        "kernel k(n: {d}, x: global {d}[32], y: global mut {d}[32]) grid(1) warps(1) {{\n    let t = load(x, [0], [32]);\n    store(y, {expr}, [0]);\n}}\n"
    );
    Module::from_source("overflow.tl", &source).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{source}\n{e}"))
}

/// Runs on both CPU backends with `x` all `fill` except `x[7] = special`; returns the errors.
fn run(kernel: &tl_runtime::Kernel, d: DType, n: f64, fill: f64, special: f64) -> Vec<String> {
    let mut values = vec![fill; 32];
    values[7] = special;
    let args = vec![Arg::scalar(n), HostTensor::from_f64(d, &[32], &values).into(), HostTensor::zeros(d, &[32]).into()];
    [Backend::Vm, Backend::Simt]
        .iter()
        .map(|&b| {
            let mut a = args.clone();
            kernel.launch(b, &mut a).err().map_or(String::new(), |e| format!("{}: {e}", b.name()))
        })
        .collect()
}

#[test]
fn overflow_is_reported_by_the_vm_and_the_simulator_at_its_line() {
    // (dtype, expression, n, fill, the element that overflows, one that just fits)
    let cases: &[(&str, &str, f64, f64, f64, f64)] = &[
        ("i32", "t * 65536", 1.0, 3.0, 40000.0, 32767.0),
        ("i32", "t + n", 2147483000.0, 1.0, 700.0, 647.0),
        ("i32", "t - n", 2147483000.0, 1.0, -1000.0, -648.0),
        ("u8", "t * 2", 1.0, 3.0, 200.0, 127.0),
        ("u8", "t - n", 5.0, 9.0, 4.0, 5.0),
        ("i8", "-t", 1.0, 3.0, -128.0, -127.0),
        ("i16", "abs(t)", 1.0, 3.0, -32768.0, -32767.0),
        ("u32", "t * t", 1.0, 3.0, 70000.0, 65535.0),
        ("i32", "t / n", -1.0, 3.0, -2147483648.0, -2147483647.0),
        ("i64", "t + t", 1.0, 1.0, 4611686018427387904.0, 2305843009213693952.0),
        ("i64", "t - n", 9007199254740992.0, 1.0, -9223372036854775808.0, -9223372036854775808.0 + 9007199254740992.0),
        ("i64", "t * t", 1.0, 3.0, 4294967296.0, 2147483648.0),
        ("u64", "t * n", 4294967296.0, 3.0, 4294967296.0, 4294967295.0),
    ];
    for &(d, expr, n, fill, bad, good) in cases {
        let dtype = DType::from_name(d).unwrap();
        let k = kernel(d, expr);
        let errors = run(&k, dtype, n, fill, bad);
        for e in &errors {
            assert!(e.contains("overflow") && e.contains("overflow.tl:3:"), "{d} `{expr}` with {bad}: {e}");
        }
        assert!(errors.iter().all(|e| !e.is_empty()), "{d} `{expr}` with {bad}: {errors:?}");
        let clean = run(&k, dtype, n, fill, good);
        assert!(clean.iter().all(|e| e.is_empty()), "{d} `{expr}` with {good}: {clean:?}");
    }
}

#[test]
fn overflow_checks_are_cpu_only_statements() {
    // `check.cpu`: the simulator tests them, the GPU generates nothing for them (the PTX is
    // checked in `ptx_checks.rs`).
    let k = kernel("i32", "t * n + 1");
    let lir = k.compiled.lir.to_string();
    assert_eq!(lir.matches("check.cpu").count(), 2, "{lir}");
}
