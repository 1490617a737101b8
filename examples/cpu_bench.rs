//! Benchmark: the three CPU backends side by side on the shipped kernels the Cranelift
//! backend runs, at sizes given per kernel: `cpu` (native code), `vm` (the block-level
//! interpreter) and `simt` (the thread-level simulator), each launch on the same arguments in
//! one process, plus the `cpu` backend's compile time (LIR → native code). Prints numbers and
//! the speed-ups; asserts nothing (the tests check that the outputs agree bit for bit).
//!
//! Run with `cargo run --release -p tl-examples --example cpu_bench` (`-- --quick` for small
//! sizes, and without the simulator on the large ones).

use std::time::Instant;
use tl_runtime::{Backend, Module};

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
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
        let vm = time(Backend::Vm)?;
        let simt = if with_simt { Some(time(Backend::Simt)?) } else { None };
        let name = std::path::Path::new(file).file_stem().unwrap().to_string_lossy().to_string();
        let simt_text = simt.map_or("-".to_string(), |s| format!("{s:.1}"));
        let ratio = simt.map_or("-".to_string(), |s| format!("{:.0}x", s / cpu));
        println!("{:<12} {:>12.1} {:>10.1} {:>10.1} {:>10} {:>8.0}x {:>9}", name, compile_ms, cpu, vm, simt_text, vm / cpu, ratio);
    }
    Ok(())
}
