//! One-element tiles where a scalar is needed (docs/language.md §4): offsets read from memory
//! (a gather), an `if` on a reduced value and a loop bound that was loaded, both around
//! barriers, on the VM and the simulator against the host; and the simulator's check of the
//! guarantee the lowering gives such a value (the same in every thread).

use tl_compiler::dtype::DType;
use tl_compiler::lir::{BinaryOp, Expr, Stmt};
use tl_runtime::{Backend, HostTensor, Module, RuntimeError};

fn kernel() -> tl_runtime::Kernel {
    Module::from_file(tl_tests::repo_root().join("tests/kernels/tile_scalars.tl")).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"))
}

fn args(ids: &[i64], table: &[f64], x: &[f64]) -> Vec<tl_runtime::Arg> {
    vec![
        HostTensor::from_f64(DType::I32, &[8], &ids.iter().map(|&i| i as f64).collect::<Vec<_>>()).into(),
        HostTensor::from_f64(DType::F32, &[100, 64], table).into(),
        HostTensor::from_f64(DType::F32, &[128], x).into(),
        HostTensor::filled(DType::F32, &[8, 64], f64::NAN).into(),
        HostTensor::filled(DType::F32, &[128], f64::NAN).into(),
        HostTensor::filled(DType::I32, &[8], -7.0).into(),
    ]
}

#[test]
fn gathers_branches_and_loop_bounds_follow_values_read_from_memory() {
    let kernel = kernel();
    let mut rng = tl_tests::Rng(0x5ca1_a125);
    let table: Vec<f64> = (0..100 * 64).map(|_| rng.unit() * 3.0).collect();
    // Rows inside the table, and two outside it (they read as zeros).
    let ids = [17i64, 0, 99, 42, 100, 3, 250, 64];
    for sign in [1.0, -1.0] {
        // Mostly positive or mostly negative values, so the branch goes both ways.
        let x: Vec<f64> = (0..128).map(|_| sign * (rng.unit() + 0.5)).collect();
        let want_rows: Vec<f64> = ids.iter().flat_map(|&i| (0..64).map(move |c| if i < 100 { i as usize * 64 + c } else { usize::MAX })).map(|k| if k == usize::MAX { 0.0 } else { table[k] as f32 as f64 }).collect();
        let total: f64 = x.iter().map(|&v| v as f32 as f64).sum();
        let want_doubled: Vec<f64> = x.iter().map(|&v| if total > 0.0 { 2.0 * (v as f32) as f64 } else { v as f32 as f64 }).collect();
        let want_steps: Vec<f64> = ids.iter().map(|&i| (i % 5) as f64).collect();
        for backend in [Backend::Vm, Backend::Simt] {
            let mut a = args(&ids, &table, &x);
            kernel.launch(backend, &mut a).unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
            let got = |i: usize| a[i].tensor().unwrap().to_f64();
            assert_eq!(got(3), want_rows, "{}: gathered rows", backend.name());
            assert_eq!(got(4), want_doubled, "{}: branch on the sum {total}", backend.name());
            assert_eq!(got(5), want_steps, "{}: loop bounds", backend.name());
        }
    }
}

/// Every `uniform` assignment in `body`, its value made to differ between threads.
fn break_uniformity(body: &mut [Stmt]) -> usize {
    let mut n = 0;
    for s in body {
        match s {
            Stmt::AssignUniform(_, e) => {
                let ty = tl_compiler::lir::Ty::I32;
                if matches!(e, Expr::Var(_)) {
                    *e = Expr::Select(
                        Box::new(Expr::Cmp(tl_compiler::lir::CmpOp::Eq, Box::new(Expr::ThreadIdx), Box::new(Expr::Int(ty, 5)))),
                        Box::new(Expr::Binary(BinaryOp::Add, Box::new(e.clone()), Box::new(e.clone()))),
                        Box::new(e.clone()),
                    );
                    n += 1;
                }
            }
            Stmt::If { then_body, else_body, .. } => n += break_uniformity(then_body) + break_uniformity(else_body),
            Stmt::For { body, .. } => n += break_uniformity(body),
            _ => {}
        }
    }
    n
}

#[test]
fn the_simulator_reports_a_scalar_that_differs_between_threads() {
    let mut kernel = kernel();
    assert_eq!(break_uniformity(&mut kernel.compiled.lir.body), 3, "the gather's offset, the branch and the loop bound");
    let ids = [1i64, 2, 3, 4, 5, 6, 7, 8];
    let mut a = args(&ids, &vec![1.0; 6400], &vec![1.0; 128]);
    let e = kernel.launch(Backend::Simt, &mut a).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, RuntimeError::Simt { .. }), "{e:?}");
    assert!(text.contains("differs: thread 0 has") && text.contains("thread 5 has"), "{text}");
    assert!(text.contains("tile_scalars.tl:8:30"), "{text}");
    println!("{text}");
}

/// `examples/clip_rows.tl` takes both sides of its branch on a row's reduced maximum: rows of
/// small values stay as they are, rows with a value beyond the limit are scaled, on the VM and
/// the simulator, against the host and the reference.
#[test]
fn clip_rows_branches_both_ways_on_a_reduced_value() {
    let kernel = Module::from_file(tl_tests::repo_root().join("examples/clip_rows.tl")).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = tl_tests::Rng(0xc11b);
    // Even rows within (-1, 1), odd rows within (-3, 3); the limit is 2.
    let x: Vec<f64> = (0..64 * 512).map(|i| rng.unit() * if (i / 512) % 2 == 0 { 1.0 } else { 3.0 }).map(|v| v as f32 as f64).collect();
    let want: Vec<f64> = (0..64 * 512)
        .map(|i| {
            let row = &x[i / 512 * 512..(i / 512 + 1) * 512];
            let peak = row.iter().fold(0.0f64, |m, v| m.max(v.abs())) as f32;
            if peak > 2.0 { (x[i] as f32 * (2.0f32 / peak)) as f64 } else { x[i] }
        })
        .collect();
    assert!((0..64).any(|r| want[r * 512..(r + 1) * 512] != x[r * 512..(r + 1) * 512]), "some row is scaled");
    for backend in [Backend::Vm, Backend::Simt] {
        let mut a = vec![
            tl_runtime::Arg::Scalar(tl_runtime::Number::Int(64)),
            tl_runtime::Arg::Scalar(tl_runtime::Number::Float(2.0)),
            HostTensor::from_f64(DType::F32, &[64, 512], &x).into(),
            HostTensor::filled(DType::F32, &[64, 512], f64::NAN).into(),
        ];
        let report = kernel.check(backend, &mut a).unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        assert!(report.passed(), "{}: {report:?}", backend.name());
        assert_eq!(a[3].tensor().unwrap().to_f64(), want, "{}", backend.name());
    }
}
