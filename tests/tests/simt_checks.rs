//! The simulator's checks on compiled kernels with a deliberate mistake put into their LIR: a
//! deleted barrier (`sync`) gives a shared-memory race and a deleted bounds mask an
//! out-of-bounds access, each reported through the runtime with the source line of the
//! instruction, like a compiler diagnostic. Also the simulator's speed on the matmul
//! (`cargo test --release -p tl-tests --test simt_checks -- --ignored --nocapture`).

use tl_compiler::lir::Stmt;
use tl_runtime::{Backend, Kernel, Module, RuntimeError};
use tl_tests::repo_root;
use tl_vm::simt::{AccessKind, SimtError};

/// `tests/kernels/staged.tl`: a sum across warps and its broadcast, both through shared memory.
/// Launches run the unspecialized `compiled.lir` (which the tests edit), not a variant
/// specialized on the argument values.
fn staged() -> Kernel {
    let module = Module::from_file(repo_root().join("tests/kernels/staged.tl")).unwrap_or_else(|e| panic!("{e}"));
    let mut kernel = module.kernel(None, &[]).unwrap_or_else(|e| panic!("{e}"));
    kernel.specialize_log2 = 0;
    kernel
}

/// Removes the `n`-th barrier (in program order) from `body`; true when it found it.
fn remove_barrier(body: &mut Vec<Stmt>, n: &mut usize) -> bool {
    let mut i = 0;
    while i < body.len() {
        match &mut body[i] {
            Stmt::Barrier if *n == 0 => {
                body.remove(i);
                return true;
            }
            Stmt::Barrier => *n -= 1,
            Stmt::If { then_body, else_body, .. } => {
                if remove_barrier(then_body, n) || remove_barrier(else_body, n) {
                    return true;
                }
            }
            Stmt::For { body, .. } => {
                if remove_barrier(body, n) {
                    return true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

fn count_barriers(body: &[Stmt]) -> usize {
    body.iter()
        .map(|s| match s {
            Stmt::Barrier => 1,
            Stmt::If { then_body, else_body, .. } => count_barriers(then_body) + count_barriers(else_body),
            Stmt::For { body, .. } => count_barriers(body),
            _ => 0,
        })
        .sum()
}

/// The 1-based column of `sum(` on its line of the kernel's source.
fn sum_column(kernel: &Kernel) -> usize {
    let line = kernel.module.source.lines().find(|l| l.contains("sum(t, dim = 0)")).expect("in the source");
    line.find("sum(").expect("on the line") + 1
}

/// The 1-based line of `kernel`'s source that contains `text`.
fn line_of(kernel: &Kernel, text: &str) -> usize {
    let source = &kernel.module.source;
    source[..source.find(text).expect("in the source")].matches('\n').count() + 1
}

#[test]
fn the_staged_kernel_is_race_free_and_correct_as_compiled() {
    let kernel = staged();
    assert!(count_barriers(&kernel.compiled.lir.body) >= 3, "{}", kernel.compiled.lir);
    for seed in 0..2 {
        let mut args = kernel.random_args(seed, &[]).unwrap();
        let report = kernel.check(Backend::Simt, &mut args).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.passed(), "{report:?}");
    }
}

#[test]
fn every_deleted_barrier_of_the_staged_kernel_is_caught_as_a_race() {
    let barriers = count_barriers(&staged().compiled.lir.body);
    // The last barrier (after the broadcast's reads) has no shared access after it.
    for n in 0..barriers - 1 {
        let mut kernel = staged();
        assert!(remove_barrier(&mut kernel.compiled.lir.body, &mut n.clone()));
        let mut args = kernel.random_args(1, &[("n".into(), 50)]).unwrap();
        match kernel.launch(Backend::Simt, &mut args) {
            Err(RuntimeError::Simt { error: SimtError::SharedRace { first, second, .. }, rendered }) => {
                assert!(first.at.is_some() && second.at.is_some(), "{rendered}");
                assert_ne!(first.thread, second.thread);
                assert!(first.kind == AccessKind::Write || second.kind == AccessKind::Write);
            }
            other => panic!("barrier {n} of {barriers} deleted: {other:?}"),
        }
    }
    let mut kernel = staged();
    assert!(remove_barrier(&mut kernel.compiled.lir.body, &mut (barriers - 1)));
    let mut args = kernel.random_args(1, &[("n".into(), 50)]).unwrap();
    assert!(kernel.check(Backend::Simt, &mut args).unwrap().passed());
}

#[test]
fn a_missing_sync_after_staging_is_a_read_after_write_race_at_the_reduction() {
    // The first barrier ends the staging of `sum`'s operand: without it the reduction reads
    // elements other threads wrote.
    let mut kernel = staged();
    assert!(remove_barrier(&mut kernel.compiled.lir.body, &mut 0));
    let mut args = kernel.random_args(3, &[]).unwrap();
    let e = kernel.launch(Backend::Simt, &mut args).unwrap_err();
    let text = e.to_string();
    let RuntimeError::Simt { error: SimtError::SharedRace { first, second, .. }, .. } = &e else { panic!("{e:?}") };
    assert_eq!((first.kind, second.kind), (AccessKind::Write, AccessKind::Read));
    assert!(first.at.as_ref().unwrap().1.starts_with("reduce_sum"), "{text}");
    let line = line_of(&kernel, "sum(t, dim = 0)");
    assert!(text.starts_with(&format!("shared-memory race: thread {} reads byte ", second.thread)), "{text}");
    assert!(text.contains(&format!("that thread {} wrote since the last barrier", first.thread)), "{text}");
    let column = sum_column(&kernel);
    assert!(text.contains(&format!("--> {}:{line}:{column}", kernel.module.file_name)), "{text}");
    assert!(text.contains(&format!("{line} |     let s: reg f32[1, BN] @ spatial(1, BN) * replicate(4) = sum(t, dim = 0);")), "{text}");
    assert!(text.contains("= note: thread") && text.contains("reduce_sum"), "{text}");
    // What `tlc` prints: `error: ` and this text.
    println!("error: {text}");
}

#[test]
fn a_missing_sync_between_reduction_and_broadcast_is_a_write_after_read_race() {
    // The second barrier keeps the broadcast's staging from overwriting the reduction's
    // operand while other threads still read it.
    let mut kernel = staged();
    assert!(remove_barrier(&mut kernel.compiled.lir.body, &mut 1));
    let mut args = kernel.random_args(3, &[]).unwrap();
    let e = kernel.launch(Backend::Simt, &mut args).unwrap_err();
    let text = e.to_string();
    let RuntimeError::Simt { error: SimtError::SharedRace { first, second, .. }, .. } = &e else { panic!("{e:?}") };
    assert_eq!((first.kind, second.kind), (AccessKind::Read, AccessKind::Write));
    assert!(second.at.as_ref().unwrap().1.starts_with("broadcast"), "{text}");
    assert!(text.contains(&format!("writes byte {}", match &e {
        RuntimeError::Simt { error: SimtError::SharedRace { byte, .. }, .. } => *byte,
        _ => unreachable!(),
    })), "{text}");
    // The primary location is the broadcast (in `t - s`), the earlier read a label on the
    // reduction.
    let (broadcast_line, reduce_line) = (line_of(&kernel, "t - s"), line_of(&kernel, "sum(t, dim = 0)"));
    let file = &kernel.module.file_name;
    assert!(text.contains(&format!("--> {file}:{broadcast_line}:")), "{text}");
    assert!(text.contains(&format!("::: {file}:{reduce_line}:{}", sum_column(&kernel))), "{text}");
    assert!(text.contains(&format!("thread {} read here", first.thread)), "{text}");
    println!("error: {text}");
}

/// Replaces every `If` whose then-branch stores to global memory by that branch (the bounds
/// mask and the replica guard of a `store`).
fn unmask_stores(body: &mut Vec<Stmt>) {
    let mut out = Vec::new();
    for s in body.drain(..) {
        match s {
            Stmt::If { then_body, else_body, .. } if else_body.is_empty() && then_body.iter().any(|s| matches!(s, Stmt::StoreGlobal { .. })) => {
                out.extend(then_body)
            }
            Stmt::If { cond, mut then_body, mut else_body } => {
                unmask_stores(&mut then_body);
                unmask_stores(&mut else_body);
                out.push(Stmt::If { cond, then_body, else_body });
            }
            Stmt::For { var, start, end, mut body } => {
                unmask_stores(&mut body);
                out.push(Stmt::For { var, start, end, body });
            }
            s => out.push(s),
        }
    }
    *body = out;
}

#[test]
fn a_missing_bounds_mask_is_an_out_of_bounds_store_at_the_store() {
    let mut kernel = staged();
    unmask_stores(&mut kernel.compiled.lir.body);
    // 50 columns: the second block's strip (columns 32..64) runs past the end of the rows
    // (unnoticed but in the last row, whose overrun leaves the tensor).
    let mut args = kernel.random_args(4, &[("n".into(), 50)]).unwrap();
    let e = kernel.launch(Backend::Simt, &mut args).unwrap_err();
    let text = e.to_string();
    let RuntimeError::Simt { error: SimtError::GlobalOutOfBounds { block, what, param, len, index, .. }, .. } = &e else { panic!("{e:?}") };
    assert_eq!((*block, *what, param.as_str(), *len), ([1, 0, 0], "store", "y", 64 * 50));
    assert!(*index >= 64 * 50, "{text}");
    let line = line_of(&kernel, "store(y,");
    assert!(text.starts_with(&format!("store index {index} is outside `y` (3200 elements) in block [1, 0, 0], thread ")), "{text}");
    assert!(text.contains(&format!("--> {}:{line}:5", kernel.module.file_name)), "{text}");
    assert!(text.contains(&format!("{line} |     store(y, t - s, [0, block.x * BN]);")), "{text}");
    assert!(text.contains("= note: in `store y"), "{text}");
    println!("error: {text}");
    // With the masks it runs.
    let kernel = staged();
    let mut args = kernel.random_args(4, &[("n".into(), 50)]).unwrap();
    assert!(kernel.check(Backend::Simt, &mut args).unwrap().passed());
}

/// Simulator speed at m = n = k = 128 on the CUDA-core matmul, the pipelined tensor-core
/// matmul and the quantized matmul (u4 weights), in LIR thread-instructions (statements
/// executed × active threads) per second. Meant for a release build.
#[test]
#[ignore = "a benchmark: run with --release -- --ignored --nocapture"]
fn simt_speed_on_matmul() {
    for file in ["stdlib/kernels/matmul.tl", "tests/kernels/pipeline.tl", "stdlib/kernels/qmatmul.tl"] {
        let module = Module::from_file(repo_root().join(file)).unwrap();
        let kernel = module.kernel(None, &[]).unwrap();
        let sizes = [("m".to_string(), 128), ("n".to_string(), 128), ("k".to_string(), 128)];
        let args = kernel.random_args(0, &sizes).unwrap();
        let grid = tl_vm::interp::eval_grid(&kernel.compiled.kernel, &args).unwrap();
        let mut best = f64::INFINITY;
        let mut stats = None;
        for _ in 0..3 {
            let mut a = args.clone();
            let start = std::time::Instant::now();
            let s = tl_vm::simt::launch_counted(&kernel.compiled.lir, grid, &mut a).unwrap_or_else(|e| panic!("{e}"));
            best = best.min(start.elapsed().as_secs_f64());
            stats = Some(s);
        }
        let s = stats.unwrap();
        println!(
            "simt {} m=n=k=128, grid {grid:?}, {} threads/block: {} thread-instructions, {} barriers, {} cp.async, best of 3 {:.3} s: {:.3e} thread-instructions/s",
            kernel.name(),
            kernel.compiled.lir.block_threads,
            s.thread_instructions,
            s.barriers,
            s.async_copies,
            best,
            s.thread_instructions as f64 / best
        );
    }
}
