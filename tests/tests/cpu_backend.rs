//! The Cranelift backend (`--backend cpu`, `tl_cpu`) against the simulator, bit for bit:
//! every shipped kernel and the test kernels run on both with the same random arguments (the
//! kernels that `print`, which the backend does not compile yet, must be refused with a clear
//! error), and faults are diagnostics at the source instruction.

use tl_runtime::{Arg, Backend, Kernel, Module, RuntimeError};

/// Constructs the backend refuses today; a kernel using one must be refused, not run.
const NOT_YET: [&str; 1] = ["`print`"];

fn same_bits(a: &[Arg], b: &[Arg]) -> Result<(), String> {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if let (Some(x), Some(y)) = (x.tensor(), y.tensor()) {
            // NaN payloads may differ (the machine's NaN against the simulator's).
            let same = |k: usize| x.code(k) == y.code(k) || (x.get(k).is_nan() && y.get(k).is_nan());
            if let Some(k) = (0..x.len()).find(|&k| !same(k)) {
                return Err(format!("argument {i} differs first at element {k}: cpu {} (code {:#x}), simt {} (code {:#x})", x.get(k), x.code(k), y.get(k), y.code(k)));
            }
        }
    }
    Ok(())
}

fn kernels_of(path: &std::path::Path) -> Vec<Kernel> {
    let module = Module::from_file(path).unwrap_or_else(|e| panic!("{e}"));
    module.kernel_names().iter().map(|n| module.kernel(Some(n), &[]).unwrap_or_else(|e| panic!("{n}: {e}"))).collect()
}

#[test]
fn kernels_run_bit_exact_with_the_simulator() {
    let root = tl_tests::repo_root();
    let mut files = tl_tests::shipped_kernel_files();
    for name in ["gathers", "math_functions", "bit_operations", "atomics", "index_tiles", "tile_scalars", "scalar_arguments", "print"] {
        files.push(root.join(format!("tests/kernels/{name}.tl")));
    }
    let (mut ran, mut refused) = (Vec::new(), Vec::new());
    for path in files {
        for kernel in kernels_of(&path) {
            let name = format!("{}:{}", path.file_name().unwrap().to_string_lossy(), kernel.name());
            // Small sizes: the simulator is the slow side.
            let mut simt = kernel.random_args(11, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut cpu = simt.clone();
            match kernel.launch(Backend::Cpu, &mut cpu) {
                Err(RuntimeError::Cpu { error: tl_cpu::CpuError::Unsupported(what), .. }) => {
                    assert!(NOT_YET.iter().any(|n| what.contains(n)), "{name}: refused for {what}");
                    refused.push(name);
                    continue;
                }
                Err(e) => panic!("{name} on cpu: {e}"),
                Ok(_) => {}
            }
            kernel.launch(Backend::Simt, &mut simt).unwrap_or_else(|e| panic!("{name} on simt: {e}"));
            same_bits(&cpu, &simt).unwrap_or_else(|e| panic!("{name}: cpu and simt differ: {e}"));
            ran.push(name);
        }
    }
    println!("bit-exact with the simulator: {} kernels: {ran:?}", ran.len());
    println!("refused (print): {} kernels: {refused:?}", refused.len());
    assert!(ran.len() >= 25, "too few kernels ran: {ran:?}");
}

/// An integer division by zero stops the launch with the division's source line.
#[test]
fn faults_are_diagnostics_at_the_source() {
    let source = "kernel k(x: global i32[64], y: global i32[64], z: global mut i32[64]) grid(1) warps(2) {\n    store(z, load(x, [0], [64]) / load(y, [0], [64]), [0]);\n}\n";
    let kernel = Module::from_source("div.tl", source).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"));
    let mut args = kernel.random_args(3, &[]).unwrap();
    if let Arg::Tensor(t) = &mut args[1] {
        t.data[40..44].copy_from_slice(&0i32.to_le_bytes());
    }
    let error = kernel.launch(Backend::Cpu, &mut args).expect_err("a division by zero");
    let text = error.to_string();
    assert!(text.contains("division by zero") && text.contains("div.tl:2"), "{text}");
}

/// Compiled code is reused: a second launch of the same variant compiles nothing.
#[test]
fn compiled_code_is_reused_across_launches() {
    let path = tl_tests::repo_root().join("examples/vector_add.tl");
    let kernel = &kernels_of(&path)[0];
    let mut args = kernel.random_args(5, &[]).unwrap();
    let signature = kernel.signature(&args);
    let first = kernel.cpu_program(&signature).unwrap();
    kernel.launch(Backend::Cpu, &mut args).unwrap();
    let second = kernel.cpu_program(&signature).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    assert!(first.clif().contains("function"), "{}", first.clif());
}

/// Blocks run in parallel: one thread and eight give the same bytes (race-free kernels, and
/// integer atomics, whose sums do not depend on the order).
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let root = tl_tests::repo_root();
    for file in ["stdlib/kernels/softmax.tl", "examples/rotary.tl", "examples/embedding.tl", "tests/kernels/gathers.tl"] {
        for kernel in kernels_of(&root.join(file)) {
            let args = kernel.random_args(23, &[]).unwrap();
            let signature = kernel.signature(&args);
            let program = kernel.cpu_program(&signature).unwrap();
            let grid = tl_vm::interp::eval_grid(&kernel.compiled.kernel, &args).unwrap();
            let (mut one, mut eight) = (args.clone(), args);
            program.launch_with_threads(grid, &mut one, Some(1)).unwrap();
            program.launch_with_threads(grid, &mut eight, Some(8)).unwrap();
            same_bits(&one, &eight).unwrap_or_else(|e| panic!("{}: {e}", kernel.name()));
        }
    }
}
