//! Benchmark: time to compile each shipped kernel from source to PTX (parse, check, lower,
//! LLVM, PTX), per architecture, as the median of several runs. Prints numbers; asserts none.
//!
//! Run with `cargo run --release -p tl-examples --example compile_bench`.

use std::time::Instant;
use tl_compiler::backend::Arch;
use tl_ptx::lir_to_ptx;
use tl_compiler::driver;

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut files = Vec::new();
    for dir in ["examples", "stdlib/kernels"] {
        for e in std::fs::read_dir(format!("{root}/{dir}"))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "tl") {
                files.push(p);
            }
        }
    }
    files.sort();
    const RUNS: usize = 7;
    println!("{:<28} {:>8} {:>12} {:>12}", "kernel", "arch", "median ms", "min ms");
    for path in files {
        let source = std::fs::read_to_string(&path)?;
        for arch in Arch::ALL {
            let mut times = Vec::new();
            for _ in 0..RUNS {
                let start = Instant::now();
                let file = driver::check(&source).map_err(|e| anyhow::anyhow!("{e}"))?;
                let compiled = driver::compile(&file, None, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
                let ptx = lir_to_ptx(&compiled.lir, arch)?;
                std::hint::black_box(ptx);
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            let name = path.file_name().unwrap().to_string_lossy();
            println!("{:<28} {:>8} {:>12.2} {:>12.2}", name, arch.name(), times[RUNS / 2], times[0]);
        }
    }
    Ok(())
}
