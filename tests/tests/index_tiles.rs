//! Index tiles (`iota`, docs/language.md §7) on the VM and the simulator: every element holds
//! its own index along one dimension, whatever layout the tile has (chosen by inference, by an
//! annotation, or by a `dot`'s accumulator). Expected values are written from the definition on
//! the host; the kernel's reference block is a third opinion, in f64.

use tl_compiler::dtype::DType;
use tl_runtime::{Arg, Backend, HostTensor, Module};

fn kernel() -> tl_runtime::Kernel {
    Module::from_file(tl_tests::repo_root().join("tests/kernels/index_tiles.tl")).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"))
}

fn values(a: &Arg) -> Vec<f64> {
    a.tensor().expect("a tensor").to_f64()
}

#[test]
fn index_tiles_hold_their_own_indices_on_both_cpu_backends() {
    let kernel = kernel();
    let mut rng = tl_tests::Rng(0x51ab_0e11);
    let x: Vec<f64> = (0..64 * 64).map(|_| rng.unit() * 4.0 + 1.0).collect();
    let want_masked: Vec<f64> = (0..64 * 64).map(|f| if f % 64 <= f / 64 { x[f] as f32 as f64 } else { f64::NEG_INFINITY }).collect();
    let want_positions: Vec<f64> = (0..64 * 64).map(|f| (f % 64) as f64 * 0.5).collect();
    let want_diagonals: Vec<f64> = (0..64 * 64).map(|f| (f % 64 + f / 64) as f64).collect();
    let want_by_hand: Vec<f64> = (0..16 * 8).map(|f| ((f % 8) * 100 + f / 8) as f64).collect();
    for backend in [Backend::Vm, Backend::Simt] {
        let mut args = kernel.random_args(3, &[]).unwrap();
        args[0] = HostTensor::from_f64(DType::F32, &[64, 64], &x).into();
        let report = kernel.check(backend, &mut args).unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        assert!(report.passed(), "{} against the reference: {report:?}", backend.name());
        let name = backend.name();
        assert_eq!(values(&args[3]), want_masked, "{name}: causal mask");
        assert_eq!(values(&args[4]), want_positions, "{name}: f16 column positions");
        assert_eq!(values(&args[5]), want_diagonals, "{name}: u8 row + column");
        assert_eq!(values(&args[6]), want_by_hand, "{name}: annotated layout");
    }
}
