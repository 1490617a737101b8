//! Shared tensors and the `copy_async` pipeline (`tests/kernels/pipeline.tl`): the VM and the
//! simulator against the f64 reference and each other at aligned shapes (where the copies are
//! real `cp.async`s) and ragged ones (where they fall back to loads and stores), and the
//! mistakes a pipeline can make: a missing `wait` (the VM and the simulator both refuse to
//! read a tile whose copy is in flight) and a missing `sync` (a race in the simulator), each
//! reported at the source line of the instruction.

use tl_runtime::{Arg, Backend, DType, HostTensor, Kernel, Module, RuntimeError};
use tl_tests::repo_root;
use tl_vm::simt::SimtError;

fn source() -> String {
    std::fs::read_to_string(repo_root().join("tests/kernels/pipeline.tl")).unwrap()
}

fn kernel_from(text: &str, consts: &[(&str, i64)]) -> Kernel {
    let module = Module::from_source("pipeline.tl", text).unwrap_or_else(|e| panic!("{e}"));
    let consts: Vec<(String, tl_compiler::ir::ConstValue)> = consts.iter().map(|(n, v)| (n.to_string(), (*v).into())).collect();
    module.kernel(None, &consts).unwrap_or_else(|e| panic!("{e}"))
}

fn sizes(m: i64, n: i64, k: i64) -> Vec<(String, i64)> {
    vec![("m".into(), m), ("n".into(), n), ("k".into(), k)]
}

fn output(args: &[Arg]) -> Vec<f64> {
    let t = args.last().unwrap().tensor().unwrap();
    (0..t.len()).map(|i| t.get(i)).collect()
}

#[test]
fn the_pipelined_matmul_matches_its_reference_on_vm_and_simt_at_aligned_and_ragged_shapes() {
    for (stages, warps) in [(2, 4), (3, 4), (4, 2)] {
        let kernel = kernel_from(&source(), &[("STAGES", stages), ("WARPS", warps)]);
        for (seed, (m, n, k)) in [(64, 64, 128), (32, 96, 256), (37, 45, 77), (5, 33, 31), (64, 40, 200)].into_iter().enumerate() {
            let args = kernel.random_args(seed as u64, &sizes(m, n, k)).unwrap();
            let mut vm_args = args.clone();
            let vm = kernel.check(Backend::Vm, &mut vm_args).unwrap_or_else(|e| panic!("vm: {e}"));
            assert!(vm.passed(), "STAGES={stages} {m}x{n}x{k} on vm: {vm:?}");
            let mut simt_args = args.clone();
            let simt = kernel.check(Backend::Simt, &mut simt_args).unwrap_or_else(|e| panic!("simt: {e}"));
            assert!(simt.passed(), "STAGES={stages} {m}x{n}x{k} on simt: {simt:?}");
            // Both accumulate in f32 but in different orders: agree to accumulation tolerance.
            for (x, y) in output(&vm_args).iter().zip(output(&simt_args)) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "STAGES={stages} {m}x{n}x{k}: vm {x} simt {y}");
            }
        }
    }
}

/// Runs the simulator and returns how many `cp.async`s it started.
fn async_copies(kernel: &Kernel, m: i64, n: i64, k: i64) -> u64 {
    let mut args = kernel.random_args(7, &sizes(m, n, k)).unwrap();
    let grid = tl_vm::interp::eval_grid(&kernel.compiled.kernel, &args).unwrap();
    let stats = tl_vm::simt::launch_counted(&kernel.compiled.lir, grid, &mut args).unwrap_or_else(|e| panic!("{e}"));
    stats.async_copies
}

#[test]
fn aligned_rows_copy_with_cp_async_and_ragged_rows_fall_back() {
    let kernel = kernel_from(&source(), &[]);
    let lir = kernel.compiled.lir.to_string();
    assert!(lir.contains("cp.async.16") && lir.contains("cp.async.commit_group") && lir.contains("cp.async.wait_group 2"), "{lir}");
    // `dot` reads both tiles in place with ldmatrix, without staging them: the only barriers
    // are the kernel's two `sync()`s.
    assert_eq!(lir.matches("barrier").count(), 2, "{lir}");
    assert!(lir.contains("ldmatrix.x4") && lir.contains("ldmatrix.x2.trans"), "{lir}");
    // 64 × 64 × 128, 32 × 32 × 32 tiles, 128 threads: a and b tiles of 2 KiB are 16 bytes per
    // thread each; 4 blocks × 4 k tiles × 2 copies × 128 threads.
    assert_eq!(async_copies(&kernel, 64, 64, 128), 4 * 4 * 2 * 128);
    // k = 77: rows of `a` are 154 bytes, not a multiple of 16, so `a` goes element by element;
    // n = 64: rows of `b` are 128 bytes, so `b` still uses cp.async (3 k tiles).
    assert_eq!(async_copies(&kernel, 64, 64, 77), 4 * 3 * 128);
    // n = 45 as well: nothing is aligned.
    assert_eq!(async_copies(&kernel, 64, 45, 77), 0);
}

#[test]
fn a_missing_wait_is_caught_by_the_vm_and_the_simulator_at_the_read() {
    let text = source().replace("        wait(STAGES - 1);\n", "");
    assert_ne!(text, source());
    let kernel = kernel_from(&text, &[]);
    let line = text[..text.find("let ta = load(sa").unwrap()].matches('\n').count() + 1;
    let mut args = kernel.random_args(1, &sizes(32, 32, 64)).unwrap();
    let e = kernel.launch(Backend::Vm, &mut args).unwrap_err().to_string();
    assert!(e.contains("while a `copy_async` into it is still in flight"), "{e}");
    assert!(e.contains(&format!("pipeline.tl:{line}:")), "{e}");
    let mut args = kernel.random_args(1, &sizes(32, 32, 64)).unwrap();
    let e = kernel.launch(Backend::Simt, &mut args).unwrap_err();
    let text_e = e.to_string();
    assert!(matches!(&e, RuntimeError::Simt { error: SimtError::CopyInFlight { .. }, .. }), "{e:?}");
    assert!(text_e.contains("while a cp.async of thread") && text_e.contains(&format!("pipeline.tl:{line}:")), "{text_e}");
    println!("error: {text_e}");
}

/// The pipeline with `ta` read in a layout whose threads hold other elements than the ones
/// they copied (the copies give each thread 8 consecutive elements of a row, 4 threads per
/// row; here 32 consecutive threads share a column group). As written, each thread reads back
/// only what it copied itself, which needs no barrier.
fn crosswise() -> String {
    let text = source().replace("let ta = load(sa,", "let ta: reg f16[BM, BK] @ column_spatial(32, 4) * local(1, 8) = load(sa,");
    assert_ne!(text, source());
    text
}

#[test]
fn the_crosswise_pipeline_is_race_free_as_written() {
    let kernel = kernel_from(&crosswise(), &[]);
    for (m, n, k) in [(64, 64, 128), (37, 45, 77)] {
        let mut args = kernel.random_args(5, &sizes(m, n, k)).unwrap();
        let report = kernel.check(Backend::Simt, &mut args).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.passed(), "{report:?}");
    }
}

#[test]
fn a_missing_sync_after_the_wait_is_an_error_on_both_backends_whatever_the_layouts() {
    // Without the first `sync()` other threads read what a thread's copy wrote. The VM's
    // block-level rule reports it in both layouts; the simulator sees the race of the lowered
    // code where the layouts make threads read each other's bytes.
    for (text, layouts) in [(crosswise(), "crosswise"), (source(), "as copied")] {
        let text = text.replacen("        sync();\n        let ta", "        let ta", 1);
        let kernel = kernel_from(&text, &[]);
        let mut args = kernel.random_args(2, &sizes(32, 32, 64)).unwrap();
        let e = kernel.launch(Backend::Vm, &mut args).unwrap_err();
        let RuntimeError::VmFault { error: tl_vm::VmError::Exec { fault, .. }, rendered } = &e else { panic!("{layouts}: {e:?}") };
        assert!(matches!(fault, tl_vm::interp::Fault::MissingSync { .. }), "{layouts}: {rendered}");
        assert!(rendered.contains("no `sync()` in between") && rendered.contains("copy_async"), "{layouts}: {rendered}");
        println!("error: {e}");
    }
    let text = crosswise().replacen("        sync();\n        let ta", "        let ta", 1);
    let kernel = kernel_from(&text, &[]);
    let mut args = kernel.random_args(2, &sizes(32, 32, 64)).unwrap();
    let e = kernel.launch(Backend::Simt, &mut args).unwrap_err();
    let RuntimeError::Simt { error: SimtError::SharedRace { first, second, .. }, rendered } = &e else { panic!("{e:?}") };
    assert!(first.at.as_ref().unwrap().1.starts_with("copy_async"), "{rendered}");
    assert!(second.at.as_ref().unwrap().1.starts_with("load_shared"), "{rendered}");
}

#[test]
fn a_missing_trailing_sync_lets_the_next_copy_overwrite_a_tile_still_being_read() {
    // With `dot`, the tensor-core staging inside it has barriers of its own that happen to
    // order the reads before the next copy; an elementwise use of the tiles has none, so the
    // trailing `sync()` is what keeps iteration kb + 1's copy out of the slot iteration kb
    // reads.
    let body = crosswise().replace("acc = dot(ta, tb, acc);", "acc = acc + cast<f32>(ta) + cast<f32>(tb);");
    let with_sync = kernel_from(&body, &[("STAGES", 2)]);
    let mut args = with_sync.random_args(2, &sizes(32, 32, 128)).unwrap();
    with_sync.launch(Backend::Simt, &mut args).unwrap_or_else(|e| panic!("{e}"));
    let text = body.replacen("acc = acc + cast<f32>(ta) + cast<f32>(tb);\n        sync();\n", "acc = acc + cast<f32>(ta) + cast<f32>(tb);\n", 1);
    assert_ne!(text, body);
    let kernel = kernel_from(&text, &[("STAGES", 2)]);
    let mut args = kernel.random_args(2, &sizes(32, 32, 128)).unwrap();
    let e = kernel.launch(Backend::Simt, &mut args).unwrap_err();
    let RuntimeError::Simt { error: SimtError::SharedRace { first, second, .. }, rendered } = &e else { panic!("{e:?}") };
    assert_eq!((first.kind, second.kind), (tl_vm::simt::AccessKind::Read, tl_vm::simt::AccessKind::Write), "{rendered}");
    assert!(second.at.as_ref().unwrap().1.starts_with("copy_async"), "{rendered}");
    println!("error: {e}");
    // The VM's block-level rule: the copy may overwrite what the loads read since the last
    // `sync()`, with `dot` (whose internal barriers do not count) as well as without.
    for text in [text.clone(), source().replacen("acc = dot(ta, tb, acc);\n        sync();\n", "acc = dot(ta, tb, acc);\n", 1)] {
        let kernel = kernel_from(&text, &[("STAGES", 2)]);
        let mut args = kernel.random_args(2, &sizes(32, 32, 128)).unwrap();
        let e = kernel.launch(Backend::Vm, &mut args).unwrap_err();
        let RuntimeError::VmFault { rendered, .. } = &e else { panic!("{e:?}") };
        assert!(rendered.contains("is written here, but `load` read it with no `sync()` in between"), "{rendered}");
    }
}

/// `copy_async` of a ragged 1-D tile in several formats: the elements inside the tensor arrive
/// unchanged, those outside are all bits zero (code 0, which is 2^-127 in e8m0), on both
/// backends, read back from the shared tensor and stored whole.
#[test]
fn copies_arrive_unchanged_and_zero_filled_outside_the_tensor() {
    for dtype in ["f32", "f16", "bf16", "i8", "u4", "i4", "u2", "u1", "f4e2m1", "e8m0", "f8e4m3fn"] {
        let text = format!(
            "kernel fill(n: i32, o: i32, x: global {dtype}[n], y: global mut {dtype}[64]) grid(1) warps(1) {{
                let s = shared<{dtype}>([2, 64]);
                copy_async(s, [1], x, [o]);
                commit();
                wait(0);
                sync();
                let t = load(s, [1, 0], [64]);
                store(y, t, [0]);
            }}"
        );
        let module = Module::from_source("fill.tl", &text).unwrap_or_else(|e| panic!("{dtype}: {e}"));
        let kernel = module.kernel(None, &[]).unwrap_or_else(|e| panic!("{dtype}: {e}"));
        for (n, o) in [(64, 0), (37, 0), (100, 32), (80, 40), (5, -3)] {
            let mut args = kernel.random_args(n as u64, &[("n".into(), n), ("o".into(), o)]).unwrap();
            let x = args[2].tensor().unwrap().clone();
            let mut vm_args = args.clone();
            kernel.launch(Backend::Vm, &mut vm_args).unwrap_or_else(|e| panic!("{dtype} vm: {e}"));
            // The simulator on the variant specialized for these sizes, and on the general one
            // (which tests the alignment at run time).
            let mut general_args = args.clone();
            kernel.launch(Backend::Simt, &mut args).unwrap_or_else(|e| panic!("{dtype} simt: {e}"));
            tl_vm::simt::launch(&kernel.compiled.lir, [1, 1, 1], &mut general_args).unwrap_or_else(|e| panic!("{dtype} simt: {e}"));
            for (name, result) in [("vm", &vm_args), ("simt", &args), ("simt, general variant", &general_args)] {
                let y = result[3].tensor().unwrap();
                for i in 0..64i64 {
                    let g = o + i;
                    let want = if (0..n).contains(&g) { x.code(g as usize) } else { 0 };
                    assert_eq!(y.code(i as usize), want, "{dtype} {name} n={n} o={o} element {i}");
                }
            }
        }
    }
}

/// Shared tensors that fit alone but not with the scratch space the lowering adds to move a
/// tile between threads (here for `sum` across warps) are refused with both numbers.
#[test]
fn shared_memory_beyond_the_limit_with_scratch_is_a_clear_error() {
    // 200 KB of shared tensors fit; the f32 `dot` (CUDA cores) stages its two 16 KB operands
    // after them, which does not.
    let text = "kernel big(a: global f32[64, 64], c: global mut f32[64, 64]) grid(1) warps(4) {
        let s = shared<f32>([50, 1024]);
        let x = load(a, [0, 0], [64, 64]);
        let y = dot(x, x, zeros<f32>([64, 64]));
        store(c, y, [0, 0]);
    }";
    let module = Module::from_source("big.tl", text).unwrap();
    let e = match module.kernel(None, &[]) {
        Ok(_) => panic!("a kernel over the shared-memory limit compiled"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("kernel `big` needs 237568 bytes of shared memory (204800 for its shared tensors"), "{e}");
    assert!(e.contains("more than the 232448 bytes available to a block"), "{e}");
    // The error is at the `dot`, whose scratch space reaches furthest.
    assert!(e.contains("big.tl:4:17"), "{e}");
    assert!(e.contains("moves its f32[64, 64] and f32[64, 64] tiles between threads through 32768 bytes"), "{e}");
}

/// More shared memory than the 48 KB of static shared memory: a three-stage ring of 64 KB
/// tiles runs on the VM and the simulator like any other, against a host computation.
#[test]
fn a_pipeline_beyond_48_kb_of_shared_memory_runs() {
    let text = "kernel deep(n: i32, a: global f32[n, 128], c: global mut f32[n, 128]) grid(1) warps(4) {
        let ring = shared<f32>([3, 128, 128]);
        let tiles = cdiv(n, 128);
        for s in 0 .. 2 {
            if s < tiles { copy_async(ring, [s], a, [s * 128, 0]); }
            commit();
        }
        for t in 0 .. tiles {
            if t + 2 < tiles { copy_async(ring, [(t + 2) % 3], a, [(t + 2) * 128, 0]); }
            commit();
            wait(2);
            sync();
            let x = load(ring, [t % 3, 0, 0], [128, 128]);
            store(c, x * 2.0 + 1.0, [t * 128, 0]);
            sync();
        }
    }";
    let kernel = Module::from_source("deep.tl", text).unwrap().kernel(None, &[]).unwrap();
    assert_eq!(kernel.compiled.kernel.shared_bytes, Some(3 * 128 * 128 * 4));
    let n = 5 * 128 - 17;
    let mut rng = tl_tests::Rng(11);
    let input: Vec<f64> = (0..n * 128).map(|_| rng.unit() * 3.0 + 0.5).collect();
    for backend in [Backend::Vm, Backend::Simt] {
        let mut args = vec![
            Arg::scalar(n as i64),
            HostTensor::from_f64(DType::F32, &[n, 128], &input).into(),
            HostTensor::from_f64(DType::F32, &[n, 128], &vec![f64::NAN; n * 128]).into(),
        ];
        kernel.launch(backend, &mut args).unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        let Arg::Tensor(c) = &args[2] else { unreachable!() };
        let want: Vec<f64> = input.iter().map(|x| ((*x as f32) * 2.0 + 1.0) as f64).collect();
        assert_eq!(c.to_f64(), want, "{backend:?}");
    }
}
