//! `print` (`tests/kernels/print.tl`): the VM and the simulator print the same lines, every
//! element of a tile exactly once, with the values of the inputs (the PTX, which calls
//! `vprintf`, is checked in `ptx_checks.rs`).

use std::collections::BTreeMap;
use tl_runtime::Module;
use tl_tests::repo_root;

fn kernel() -> tl_runtime::Kernel {
    let module = Module::from_file(repo_root().join("tests/kernels/print.tl")).unwrap_or_else(|e| panic!("{e}"));
    module.kernel(None, &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// `block (..): label[..]` → value text, checking that no line repeats.
fn by_key(lines: &[String]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in lines {
        let (key, value) = line.rsplit_once(" = ").unwrap_or_else(|| panic!("malformed line {line:?}"));
        assert!(map.insert(key.to_string(), value.to_string()).is_none(), "printed twice: {key}");
    }
    map
}

#[test]
fn vm_and_simulator_print_the_same_lines() {
    let kernel = kernel();
    for (seed, (m, n)) in [(9i64, 5i64), (16, 16), (3, 40)].into_iter().enumerate() {
        let sizes = [("m".to_string(), m), ("n".to_string(), n)];
        let args = kernel.random_args(seed as u64, &sizes).unwrap();
        let mut vm_args = args.clone();
        let vm = by_key(&tl_vm::interp::launch_with_output(&kernel.compiled.kernel, &mut vm_args).unwrap());
        let mut simt_args = args.clone();
        let grid = tl_vm::interp::eval_grid(&kernel.compiled.kernel, &args).unwrap();
        let (_, simt_lines) = tl_vm::simt::launch_with_output(&kernel.compiled.lir, grid, &mut simt_args).unwrap_or_else(|e| panic!("{e}"));
        let simt = by_key(&simt_lines);
        assert_eq!(vm.keys().collect::<Vec<_>>(), simt.keys().collect::<Vec<_>>());
        // Each block prints five 8 × 16 (or 8 × 1) tiles and one scalar.
        let blocks = (grid[0] * grid[1]) as usize;
        assert_eq!(vm.len(), blocks * (4 * 8 * 16 + 8 + 1), "{m}x{n}");
        for (key, v) in &vm {
            let s = &simt[key];
            if key.contains(": rows[") {
                // Sums in different orders: equal to f32 accumulation tolerance.
                let (a, b): (f64, f64) = (v.parse().unwrap(), s.parse().unwrap());
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{key}: vm {v}, simt {s}");
            } else {
                assert_eq!(v, s, "{key}");
            }
        }
        // The printed tile is the input (independently of both backends), zero outside it.
        let x = args[2].tensor().unwrap();
        for i in 0..8 {
            for j in 0..16 {
                let key = format!("block (0, 0, 0): t[{i}, {j}]");
                let want = if i < m && j < n { x.get((i * n + j) as usize) } else { 0.0 };
                let text = tl_compiler::lir::format_print_value(tl_compiler::lir::PrintValue::Float(want));
                assert_eq!(vm[&key], text, "{key}");
            }
        }
        assert_eq!(vm["block (0, 0, 0): row"], "0");
        if grid[0] > 1 {
            assert_eq!(vm["block (1, 0, 0): row"], "8");
        }
    }
}

#[test]
fn printed_floats_look_like_c_printf() {
    use tl_compiler::lir::{format_print_value, PrintValue};
    assert_eq!(format_print_value(PrintValue::Float(0.0)), "0.00000000e+00");
    assert_eq!(format_print_value(PrintValue::Float(-1.5)), "-1.50000000e+00");
    assert_eq!(format_print_value(PrintValue::Float(448.0)), "4.48000000e+02");
    assert_eq!(format_print_value(PrintValue::Float(1.0e-7)), "1.00000000e-07");
    assert_eq!(format_print_value(PrintValue::Float(6.1e300)), "6.10000000e+300");
    assert_eq!(format_print_value(PrintValue::Float(f64::NEG_INFINITY)), "-inf");
    assert_eq!(format_print_value(PrintValue::Float(f64::NAN)), "nan");
    assert_eq!(format_print_value(PrintValue::Float(-f64::NAN)), "nan");
    assert_eq!(format_print_value(PrintValue::Int(-7)), "-7");
}

