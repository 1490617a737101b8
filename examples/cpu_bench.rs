//! Benchmark: the three CPU backends side by side on every shipped kernel at sizes given per
//! kernel: `cpu` (native code, blocks on all cores; the best of ten launches, and of five on
//! one thread, as the interpreters run), `vm` (the block-level interpreter) and `simt` (the
//! thread-level simulator), each on the same arguments in one process, plus the `cpu`
//! backend's compile time (LIR → native code). Prints numbers and
//! the speed-ups; asserts nothing (the tests check that the outputs agree bit for bit).
//!
//! After qmatmul it runs numpy's f32 dequantize-then-matmul of the same data
//! (`scripts/qmatmul_numpy.py`, when python3 has numpy) and prints both times.
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
    // (file, runtime sizes).
    let cases: Vec<(&str, Vec<(&str, i64)>)> = if quick {
        vec![
            ("examples/vector_add.tl", vec![("n", 1 << 16)]),
            ("stdlib/kernels/softmax.tl", vec![("m", 64), ("n", 1024)]),
        ]
    } else {
        vec![
            ("examples/vector_add.tl", vec![("n", 1 << 22)]),
            ("stdlib/kernels/softmax.tl", vec![("m", 4096), ("n", 4096)]),
            ("stdlib/kernels/rmsnorm.tl", vec![("m", 4096), ("n", 4096)]),
            ("stdlib/kernels/silu.tl", vec![("m", 4096), ("n", 4096)]),
            ("examples/layouts.tl", vec![("m", 4096), ("n", 4096)]),
            ("examples/clip_rows.tl", vec![("rows", 4096)]),
            ("examples/rotary.tl", vec![("t", 4096)]),
            ("examples/embedding.tl", vec![("tokens", 4096), ("vocab", 32000)]),
            ("examples/paged_kv.tl", vec![("seqs", 64), ("pages", 64), ("blocks", 4096)]),
            ("stdlib/kernels/matmul.tl", vec![("m", 512), ("n", 512), ("k", 512)]),
            ("examples/split_k.tl", vec![("m", 512), ("n", 512), ("k", 512)]),
            ("stdlib/kernels/qmatmul.tl", vec![("m", 16), ("n", 4096), ("k", 4096)]),
            ("stdlib/kernels/qmatmul_fragment.tl", vec![("m", 16), ("n", 4096), ("k", 4096)]),
            ("stdlib/kernels/qmatmul_split.tl", vec![("m", 16), ("n", 4096), ("k", 4096)]),
        ]
    };
    println!("{:<17} {:>11} {:>9} {:>10} {:>10} {:>10} {:>7} {:>9} {:>10}", "kernel", "compile ms", "cpu ms", "cpu 1t ms", "vm ms", "simt ms", "vm/cpu", "simt/cpu", "simt/cpu1t");
    for (file, sizes) in cases {
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
        // The cpu backend's best of ten launches (a shared machine's other load disturbs some
        // of them; with --cpu-only a profile then sees mostly the generated code); the
        // interpreters run once.
        let best_of = |runs: usize| (0..runs).map(|_| time(Backend::Cpu)).try_fold(f64::INFINITY, |best, t| t.map(|t| best.min(t)));
        if cpu_only {
            println!("{:<17} {:>11.1} {:>9.1}", name, compile_ms, best_of(10)?);
            continue;
        }
        let cpu = best_of(10)?;
        // On one thread, as the interpreters run: the speed-up per core.
        let program = kernel.cpu_program(&kernel.signature(&args))?;
        let grid = kernel.launch(Backend::Cpu, &mut args.clone())?.grid;
        let mut one_thread = f64::INFINITY;
        for _ in 0..5 {
            let mut a = args.clone();
            let start = Instant::now();
            program.launch_with_threads(grid, &mut a, Some(1))?;
            one_thread = one_thread.min(start.elapsed().as_secs_f64() * 1e3);
        }
        let vm = time(Backend::Vm)?;
        let simt = time(Backend::Simt)?;
        let ratio = |cpu: f64| format!("{:.0}x", simt / cpu);
        println!("{:<17} {:>11.1} {:>9.1} {:>10.1} {:>10.1} {:>10.1} {:>6.0}x {:>9} {:>10}", name, compile_ms, cpu, one_thread, vm, simt, vm / cpu, ratio(cpu), ratio(one_thread));
        if name == "qmatmul" {
            qmatmul_against_numpy(root, &kernel, &args, cpu)?;
        }
    }
    Ok(())
}

/// qmatmul (u4 weights, f16 scales and zero points, groups of 64 rows) against numpy's f32
/// dequantize-then-matmul of the same data (`scripts/qmatmul_numpy.py`), side by side; a note
/// instead when python3 with numpy is missing.
fn qmatmul_against_numpy(root: &str, kernel: &tl_runtime::Kernel, args: &[tl_runtime::Arg], cpu_ms: f64) -> anyhow::Result<()> {
    use tl_runtime::{npy::write_npy_file, DType, HostTensor};
    let mut out = args.to_vec();
    kernel.launch(Backend::Cpu, &mut out)?;
    let folder = std::env::temp_dir().join(format!("tl_cpu_bench_{}", std::process::id()));
    std::fs::create_dir_all(&folder)?;
    let tensor = |i: usize| out[i].tensor().expect("a tensor parameter");
    let b = tensor(4);
    let codes: Vec<u64> = (0..b.len()).map(|i| b.code(i)).collect();
    write_npy_file(folder.join("a.npy"), tensor(3))?;
    write_npy_file(folder.join("b.npy"), &HostTensor::from_codes(DType::U8, &b.shape, &codes))?;
    write_npy_file(folder.join("scales.npy"), tensor(5))?;
    write_npy_file(folder.join("zero_points.npy"), tensor(6))?;
    write_npy_file(folder.join("c_cpu.npy"), tensor(7))?;
    let result = std::process::Command::new("python3").arg(format!("{root}/scripts/qmatmul_numpy.py")).arg(&folder).arg("64").output();
    let _ = std::fs::remove_dir_all(&folder);
    match result {
        Ok(o) if o.status.success() => {
            let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let numpy_ms = line.split_whitespace().find_map(|w| w.strip_prefix("numpy_ms=")).and_then(|v| v.parse::<f64>().ok());
            match numpy_ms {
                Some(ms) => println!("  numpy f32 dequantize + matmul of the same data: {line} (cpu backend {cpu_ms:.1} ms: {:.2}x numpy's time)", cpu_ms / ms),
                None => println!("  numpy: unexpected output {line:?}"),
            }
        }
        Ok(o) => println!("  numpy comparison skipped: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("python3 failed")),
        Err(e) => println!("  numpy comparison skipped: python3: {e}"),
    }
    Ok(())
}
