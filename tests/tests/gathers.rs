//! Gathers and scatters with index tiles (docs/language.md §7, `load`/`store`/`atomic_add`):
//! the kernels of `tests/kernels/gathers.tl` on the VM and the simulator against host
//! computations written from the definition, with indices inside and outside the tensor.

use tl_compiler::dtype::DType;
use tl_runtime::{Arg, Backend, HostTensor, Kernel, Module, Number};

fn kernel(name: &str) -> Kernel {
    let source = std::fs::read_to_string(tl_tests::repo_root().join("tests/kernels/gathers.tl")).unwrap();
    Module::from_source("gathers.tl", &source).and_then(|m| m.kernel(Some(name), &[])).unwrap_or_else(|e| panic!("{e}"))
}

fn int(v: i64) -> Arg {
    Arg::Scalar(Number::Int(v.into()))
}

fn run(kernel: &Kernel, backend: Backend, args: &mut [Arg]) -> Vec<f64> {
    kernel.launch(backend, args).unwrap_or_else(|e| panic!("{} on {}: {e}", kernel.name(), backend.name()));
    args.last().unwrap().tensor().unwrap().to_f64()
}

/// Rows of a table by id; ids past either end (and the rows past `t`, padded with -1) read
/// zeros. 40 ids: three blocks, the last one partial.
#[test]
fn gathered_rows_are_the_rows_the_ids_name() {
    let (t, vocab, d) = (40usize, 50usize, 64usize);
    let mut rng = tl_tests::Rng(0x9a7);
    let ids: Vec<f64> = (0..t).map(|i| if i % 9 == 4 { -3.0 } else if i % 11 == 7 { vocab as f64 } else { (rng.next() % vocab as u64) as f64 }).collect();
    let table: Vec<f64> = (0..vocab * d).map(|_| (rng.unit() * 8.0 - 3.0) as f32 as f64).collect();
    let want: Vec<f64> = (0..t * d)
        .map(|k| {
            let id = ids[k / d];
            if (0.0..vocab as f64).contains(&id) { table[id as usize * d + k % d] } else { 0.0 }
        })
        .collect();
    let kernel = kernel("gather_rows");
    for backend in [Backend::Vm, Backend::Simt] {
        let mut args = vec![
            int(t as i64),
            int(vocab as i64),
            HostTensor::from_f64(DType::I32, &[t], &ids).into(),
            HostTensor::from_f64(DType::F32, &[vocab, d], &table).into(),
            HostTensor::filled(DType::F32, &[t, d], f64::NAN).into(),
        ];
        assert_eq!(run(&kernel, backend, &mut args), want, "{}", backend.name());
    }
}

/// Rows scattered to a permutation with i64 ids; an id past the end drops its row, which
/// leaves the poison where nothing lands.
#[test]
fn scattered_rows_land_where_the_ids_say() {
    let (t, d) = (48usize, 32usize);
    let mut rng = tl_tests::Rng(0x5ca7);
    let mut ids: Vec<f64> = (0..t).map(|i| ((i * 17 + 5) % t) as f64).collect();
    ids[10] = 1e12; // dropped: the row of ids[10]'s target keeps its poison
    let x: Vec<f64> = (0..t * d).map(|_| (rng.unit() * 4.0 - 1.0) as f32 as f64).collect();
    let mut want = vec![f64::NAN; t * d];
    for (i, &id) in ids.iter().enumerate() {
        if id < t as f64 {
            want[id as usize * d..(id as usize + 1) * d].copy_from_slice(&x[i * d..(i + 1) * d]);
        }
    }
    let kernel = kernel("scatter_rows");
    for backend in [Backend::Vm, Backend::Simt] {
        let mut args = vec![
            int(t as i64),
            HostTensor::from_f64(DType::I64, &[t], &ids).into(),
            HostTensor::from_f64(DType::F32, &[t, d], &x).into(),
            HostTensor::filled(DType::F32, &[t, d], f64::NAN).into(),
        ];
        let got = run(&kernel, backend, &mut args);
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w || (g.is_nan() && w.is_nan()), "{}: element {k}: got {g}, want {w}", backend.name());
        }
    }
}

/// Rows added into experts by id, ids repeating (the tokens routed to one expert), from
/// several blocks: integer sums, exact whatever the order.
#[test]
fn scatter_adds_sum_every_row_routed_to_an_expert() {
    let (t, experts, d) = (56usize, 5usize, 32usize);
    let mut rng = tl_tests::Rng(0xadd);
    let ids: Vec<f64> = (0..t).map(|i| if i == 13 { -1.0 } else { (rng.next() % experts as u64) as f64 }).collect();
    let x: Vec<f64> = (0..t * d).map(|_| (rng.next() % 2001) as f64 - 1000.0).collect();
    let start: Vec<f64> = (0..experts * d).map(|i| i as f64).collect();
    let mut want = start.clone();
    for (i, &id) in ids.iter().enumerate() {
        if id >= 0.0 {
            for c in 0..d {
                want[id as usize * d + c] += x[i * d + c];
            }
        }
    }
    let kernel = kernel("scatter_add");
    for backend in [Backend::Vm, Backend::Simt] {
        let mut args = vec![
            int(t as i64),
            int(experts as i64),
            HostTensor::from_f64(DType::I32, &[t], &ids).into(),
            HostTensor::from_f64(DType::I32, &[t, d], &x).into(),
            HostTensor::from_f64(DType::I32, &[experts, d], &start).into(),
        ];
        assert_eq!(run(&kernel, backend, &mut args), want, "{}", backend.name());
    }
}

/// A per-element gather along the last dimension (an index tile of the tile's own shape),
/// columns outside the row reading the pad.
#[test]
fn per_element_gathers_read_each_elements_own_column() {
    let (m, n, width) = (8usize, 32usize, 100usize);
    let mut rng = tl_tests::Rng(0xc01);
    let cols: Vec<f64> = (0..m * n).map(|k| if k % 13 == 0 { -1.0 } else if k % 17 == 0 { 100.0 } else { (rng.next() % width as u64) as f64 }).collect();
    let x: Vec<f64> = (0..m * width).map(|_| f64::from(half::f16::from_f64(rng.unit() * 2.0 - 1.0))).collect();
    let want: Vec<f64> = (0..m * n)
        .map(|k| {
            let c = cols[k];
            if (0.0..width as f64).contains(&c) { x[(k / n) * width + c as usize] } else { 7.0 }
        })
        .collect();
    let kernel = kernel("gather_columns");
    for backend in [Backend::Vm, Backend::Simt] {
        let mut args = vec![
            HostTensor::from_f64(DType::I32, &[m, n], &cols).into(),
            HostTensor::from_f64(DType::F16, &[m, width], &x).into(),
            HostTensor::filled(DType::F16, &[m, n], f64::NAN).into(),
        ];
        assert_eq!(run(&kernel, backend, &mut args), want, "{}", backend.name());
    }
}

/// The gathered rows are read with vector loads (one index per row, broadcast along it),
/// and a per-element gather element by element.
#[test]
fn gathered_rows_use_vector_loads() {
    let lir = |name: &str| {
        let k = kernel(name);
        let assumptions = k.assumptions(&[]).unwrap_or_else(|e| panic!("{e}"));
        k.variant(&assumptions).unwrap_or_else(|e| panic!("{e}")).to_string()
    };
    // Vector loads from parameter `p` (the table, the gathered tensor).
    let vector_loads_from = |lir: &str, p: usize| lir.lines().filter(|l| l.contains("= ld.global.v") && l.contains(&format!(" p{p}["))).count();
    let rows = lir("gather_rows");
    assert!(vector_loads_from(&rows, 3) > 0, "no vector load of the table in\n{rows}");
    let columns = lir("gather_columns");
    assert_eq!(vector_loads_from(&columns, 1), 0, "a vector load in a per-element gather:\n{columns}");
    assert!(columns.contains("ld.global.f16 p1["), "no element load of x in\n{columns}");
}
