//! Benchmark: the three CPU backends side by side on the shipped kernels the Cranelift
//! backend runs, at sizes given per kernel: `cpu` (native code), `vm` (the block-level
//! interpreter) and `simt` (the thread-level simulator), each launch on the same arguments in
//! one process, plus the `cpu` backend's compile time (LIR → native code). Prints numbers and
//! the speed-ups; asserts nothing (the tests check that the outputs agree bit for bit).
//!
//! Run with `cargo run --release -p tl-examples --example cpu_bench` (`-- --quick` for small
//! sizes; `-- --kernel NAME` for one kernel; `-- --cpu-only` without the interpreters, for
//! profiling the generated code).

use std::time::Instant;
use tl_runtime::{Backend, Module};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let cpu_only = args.iter().any(|a| a == "--cpu-only");
    let only = args.iter().position(|a| a == "--kernel").and_then(|i| args.get(i + 1)).cloned();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    // (file, runtime sizes); the simulator is skipped where it would take minutes.
    let cases: Vec<(&str, Vec<(&str, i64)>, bool)> = if quick {
        vec![
            ("examples/vector_add.tl", vec![("n", 1 << 16)], true),
            ("stdlib/kernels/softmax.tl", vec![("m", 64), ("n", 1024)], true),
        ]
    } else {
        vec![
            ("examples/vector_add.tl", vec![("n", 1 << 22)], true),
            ("stdlib/kernels/softmax.tl", vec![("m", 1024), ("n", 4096)], true),
            ("stdlib/kernels/silu.tl", vec![("m", 1024), ("n", 4096)], true),
            ("examples/rotary.tl", vec![("t", 4096)], true),
            ("examples/embedding.tl", vec![("tokens", 4096), ("vocab", 32000)], false),
            ("stdlib/kernels/qmatmul.tl", vec![("m", 16), ("n", 4096), ("k", 4096)], true),
        ]
    };
    println!("{:<12} {:>12} {:>10} {:>10} {:>10} {:>9} {:>9}", "kernel", "compile ms", "cpu ms", "vm ms", "simt ms", "vm/cpu", "simt/cpu");
    for (file, sizes, with_simt) in cases {
        let name = std::path::Path::new(file).file_stem().unwrap().to_string_lossy().to_string();
        if only.as_ref().is_some_and(|o| *o != name) {
            continue;
        }
        let module = Module::from_file(format!("{root}/{file}"))?;
        let kernel = module.kernel(None, &[])?;
        let sizes: Vec<(String, i64)> = sizes.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        let args = kernel.random_args_within(1, &sizes, 1 << 34)?;
        let start = Instant::now();
        kernel.cpu_program(&kernel.signature(&args))?;
        let compile_ms = start.elapsed().as_secs_f64() * 1e3;
        let time = |backend: Backend| -> anyhow::Result<f64> {
            let mut a = args.clone();
            let start = Instant::now();
            kernel.launch(backend, &mut a)?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        };
        let cpu = time(Backend::Cpu)?;
        if cpu_only {
            // The best of ten launches (a profile then sees mostly the generated code).
            let best = (0..9).map(|_| time(Backend::Cpu)).try_fold(cpu, |best, t| t.map(|t| best.min(t)))?;
            println!("{:<12} {:>12.1} {:>10.1}", name, compile_ms, best);
            continue;
        }
        let vm = time(Backend::Vm)?;
        let simt = if with_simt { Some(time(Backend::Simt)?) } else { None };
        let simt_text = simt.map_or("-".to_string(), |s| format!("{s:.1}"));
        let ratio = simt.map_or("-".to_string(), |s| format!("{:.0}x", s / cpu));
        println!("{:<12} {:>12.1} {:>10.1} {:>10.1} {:>10} {:>8.0}x {:>9}", name, compile_ms, cpu, vm, simt_text, vm / cpu, ratio);
    }
    Ok(())
}
