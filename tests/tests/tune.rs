//! The tuner through the embedding API (`tl_runtime::tune`): a search on the cpu backend
//! stores a winner that [`Module::tuned_kernel`] dispatches for every problem of its bucket
//! (and for no other device, bucket or format); a fast candidate that computes the wrong
//! thing is never the winner; the `compile` target compiles every candidate, reporting the
//! ones the compiler refuses; a request's own mistakes are errors.

use std::sync::Arc;
use tl_runtime::cache::DiskCache;
use tl_runtime::tune::{self, DispatchTable, Outcome, TuneProgress, TuneRequest, TuneSpace, TuneTarget};
use tl_runtime::{Arch, Backend, ConstValue, DType, Module};

fn qmatmul() -> Module {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../stdlib/kernels/qmatmul.tl");
    Module::from_file(path).unwrap().with_code_generator(tl_ptx::code_generator()).with_cache(Arc::new(DiskCache::disabled()))
}

fn space(parameters: &[(&str, &[i64])]) -> TuneSpace {
    TuneSpace { parameters: parameters.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect() }
}

fn scratch(name: &str) -> std::path::PathBuf {
    tl_tests::scratch_directory(&format!("tune_{name}"))
}

#[test]
fn a_cpu_search_stores_a_checked_winner_that_its_bucket_dispatches() {
    let module = qmatmul();
    let mut request = TuneRequest::new(&module, "qmatmul", &[("m", 16), ("n", 256), ("k", 512)], TuneTarget::Cpu);
    // BK = 128 does not divide the group of 64: the compiler refuses it.
    request.space = space(&[("BN", &[32, 64]), ("BK", &[32, 128]), ("STAGES", &[2, 3])]);
    request.consts = vec![("W".into(), ConstValue::DType(DType::U4))];
    request.runs = 2;
    let mut events = Vec::new();
    let report = tune::tune(&module, &request, &mut |e| events.push(e.clone())).unwrap();
    assert_eq!(report.candidates.len(), 8);
    for candidate in &report.candidates {
        let bk = candidate.values.iter().find(|(n, _)| n == "BK").unwrap().1;
        match (&candidate.outcome, bk) {
            (Outcome::Rejected(why), 128) => assert!(why.contains("BK") || why.contains("G"), "{why}"),
            (Outcome::Timed(ms), 32) => assert!(*ms > 0.0 && ms.is_finite()),
            (outcome, _) => panic!("BK={bk}: {outcome:?}"),
        }
    }
    assert_eq!(report.rejected(), 4);
    assert!(report.checked, "qmatmul has a reference block");
    let winner = report.entry().expect("a winner");
    let fastest = report.candidates.iter().filter_map(|c| if let Outcome::Timed(ms) = c.outcome { Some(ms) } else { None }).fold(f64::INFINITY, f64::min);
    assert_eq!(winner.time_ms, fastest);
    // Progress: every candidate compiled, every compiled one timed, the winner checked.
    assert_eq!(events.iter().filter(|e| matches!(e, TuneProgress::Compiled { .. })).count(), 8);
    assert!(events.contains(&TuneProgress::Compiled { done: 8, total: 8, rejected: 4 }));
    assert!(events.contains(&TuneProgress::Timed { done: 4, total: 4, best_ms: Some(fastest) }));
    assert!(events.iter().any(|e| matches!(e, TuneProgress::Checked { passed: true, .. })));

    let path = scratch("dispatch").join("dispatch.tbl");
    let mut table = DispatchTable::open(&path);
    table.insert(report.key.clone(), winner.clone());
    table.save().unwrap();
    let table = DispatchTable::open(&path);
    let consts = vec![("W".to_string(), ConstValue::DType(DType::U4))];
    // m = 13 is in the bucket of 16: the winner's parameters, and a correct result.
    let sizes = [("m".to_string(), 13), ("n".to_string(), 256), ("k".to_string(), 512)];
    let tuned = module.tuned_kernel("qmatmul", &consts, &sizes, None, TuneTarget::Cpu, &table).unwrap();
    assert_eq!(tuned.entry.as_ref(), Some(&winner));
    for (name, value) in &winner.values {
        assert!(tuned.kernel.compiled.kernel.const_params.contains(&(name.clone(), *value)), "{name}={value}");
    }
    let mut args = tuned.kernel.random_args(5, &sizes).unwrap();
    assert!(tuned.kernel.check(Backend::Cpu, &mut args).unwrap().passed());
    // The default format named explicitly finds the same entry (the key holds the resolved
    // dtypes, and W was fixed in the search).
    let explicit = vec![consts[0].clone(), ("S".to_string(), ConstValue::DType(DType::F16))];
    assert_eq!(module.tuned_kernel("qmatmul", &explicit, &sizes, None, TuneTarget::Cpu, &table).unwrap().entry.as_ref(), Some(&winner));
    // Another bucket, another format: the defaults.
    let other_bucket = [("m".to_string(), 17), ("n".to_string(), 256), ("k".to_string(), 512)];
    assert!(module.tuned_kernel("qmatmul", &consts, &other_bucket, None, TuneTarget::Cpu, &table).unwrap().entry.is_none());
    let other_format = vec![("W".to_string(), ConstValue::DType(DType::U3))];
    assert!(module.tuned_kernel("qmatmul", &other_format, &sizes, None, TuneTarget::Cpu, &table).unwrap().entry.is_none());
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// `scale` doubles a vector; with `SKIP = 1` its grid is empty, so it is the fastest
/// candidate by far and leaves the output as it was: the check must catch it.
const SCALE: &str = "kernel scale<BLOCK = 64, SKIP = 0>(n: i32, x: global f32[n], y: global mut f32[n]) grid(cdiv(n, BLOCK) * (1 - SKIP)) warps(1) {
    let t = load(x, [block.x * BLOCK], [BLOCK]);
    store(y, t * 2.0, [block.x * BLOCK]);
}

reference scale {
    y = x * 2.0;
}
";

#[test]
fn a_fast_wrong_candidate_is_never_the_winner() {
    let module = Module::from_source("scale.tl", SCALE).unwrap();
    let mut request = TuneRequest::new(&module, "scale", &[("n", 4096)], TuneTarget::Cpu);
    request.space = space(&[("BLOCK", &[32, 64]), ("SKIP", &[0, 1])]);
    let report = tune::tune(&module, &request, &mut |_| {}).unwrap();
    let winner = report.entry().expect("a winner");
    assert!(winner.values.contains(&("SKIP".to_string(), 0)), "{winner:?}");
    assert!(report.checked);
    let failed: Vec<_> = report.candidates.iter().filter(|c| matches!(&c.outcome, Outcome::Failed(why) if why.contains("wrong result of `scale`"))).collect();
    assert!(!failed.is_empty() && failed.iter().all(|c| c.values.contains(&("SKIP".to_string(), 1))), "{:?}", report.candidates);
    // Without the check, the wrong candidate wins: the check is what keeps it out.
    request.check = false;
    let unchecked = tune::tune(&module, &request, &mut |_| {}).unwrap();
    assert!(unchecked.entry().unwrap().values.contains(&("SKIP".to_string(), 1)));
    assert!(!unchecked.checked);
}

#[test]
fn the_compile_target_compiles_every_candidate_in_parallel_and_stores_nothing() {
    let module = qmatmul();
    let mut request = TuneRequest::new(&module, "qmatmul", &[("m", 16), ("n", 4096), ("k", 4096)], TuneTarget::Compile(Arch::Sm90a));
    request.space = space(&[("BM", &[16, 32]), ("BN", &[64, 128]), ("BK", &[32, 128]), ("WARPS", &[4, 8])]);
    request.jobs = 2;
    let report = tune::tune(&module, &request, &mut |_| {}).unwrap();
    assert_eq!(report.jobs, 2);
    assert_eq!(report.candidates.len(), 16);
    assert_eq!(report.rejected(), 8, "{:?}", report.candidates);
    assert!(report.candidates.iter().all(|c| matches!(c.outcome, Outcome::Compiled | Outcome::Rejected(_))));
    assert!(report.candidates.iter().filter(|c| c.outcome == Outcome::Compiled).all(|c| c.compile_ms > 0.0));
    assert!(report.winner.is_none() && report.entry().is_none());
    assert_eq!(report.key.device, "none (sm_90a)");
    assert!(report.key.compiler.starts_with("tl-ptx "), "{}", report.key.compiler);
}

#[test]
fn a_requests_own_mistakes_are_errors() {
    let module = qmatmul();
    let sizes = [("m", 16), ("n", 256), ("k", 512)];
    let error = |request: TuneRequest| tune::tune(&module, &request, &mut |_| {}).unwrap_err().to_string();
    let mut unknown_kernel = TuneRequest::new(&module, "qmatmul", &sizes, TuneTarget::Cpu);
    unknown_kernel.then = vec!["reduce".into()];
    assert!(error(unknown_kernel).contains("no kernel `reduce`"));
    let mut undeclared = TuneRequest::new(&module, "qmatmul", &sizes, TuneTarget::Cpu);
    undeclared.space = space(&[("SPLITS", &[1, 2])]);
    assert!(error(undeclared).contains("no integer compile-time parameter `SPLITS`"));
    let mut fixed = TuneRequest::new(&module, "qmatmul", &sizes, TuneTarget::Cpu);
    fixed.consts = vec![("BM".into(), ConstValue::Int(16))];
    assert!(error(fixed).contains("`BM` is both fixed and tuned"));
    let not_a_size = TuneRequest::new(&module, "qmatmul", &[("m", 16), ("rows", 4)], TuneTarget::Cpu);
    assert!(error(not_a_size).contains("no integer scalar parameter `rows`"));
    let tensor_as_size = TuneRequest::new(&module, "qmatmul", &[("m", 16), ("scales", 4)], TuneTarget::Cpu);
    assert!(error(tensor_as_size).contains("no integer scalar parameter `scales`"));
    let mut empty = TuneRequest::new(&module, "qmatmul", &sizes, TuneTarget::Cpu);
    empty.space = space(&[("BM", &[])]);
    assert!(error(empty).contains("gives `BM` no values"));
    let mut huge = TuneRequest::new(&module, "qmatmul", &sizes, TuneTarget::Cpu);
    let ten: Vec<i64> = (1..=10).map(|i| 16 * i).collect();
    huge.space = space(&[("BM", &ten), ("BN", &ten), ("BK", &ten), ("G", &ten), ("STAGES", &ten), ("WARPS", &ten)]);
    assert!(error(huge).contains("the space holds 1000000 candidates, more than the 100000"));
    let empty_problem = TuneRequest::new(&module, "qmatmul", &[("m", 0), ("n", 256), ("k", 512)], TuneTarget::Cpu);
    assert!(error(empty_problem).contains("the problem size m = 0 is not positive"));
}
