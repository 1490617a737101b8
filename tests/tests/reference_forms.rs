//! The reference language's array forms that kernels have no twin for: `transpose`, `repeat`
//! along any axis and `matmul` with vectors (docs/language.md §8). Each reference is checked
//! against a kernel that computes the same thing with tile operations, on the VM and the
//! simulator, and on small inputs against values worked out by hand.

use tl_compiler::dtype::DType;
use tl_runtime::{Arg, Backend, HostTensor, Module};

const SOURCE: &str = "\
kernel transposed(x: global f32[32, 64], y: global mut f32[64, 32]) grid(1) warps(4) {
    store(y, transpose(load(x, [0, 0], [32, 64])), [0, 0]);
}
reference transposed {
    y = transpose(x);
}

// Every column four times in a row: y[i, j] = x[i, j / 4].
kernel repeated(x: global f32[16, 8], y: global mut f32[16, 32]) grid(1) warps(2) {
    let t = reshape(load(x, [0, 0], [16, 8]), [16, 8, 1]);
    store(y, reshape(t + zeros<f32>([16, 8, 4]), [16, 32]), [0, 0]);
}
reference repeated {
    y = repeat(x, 4, dim = 1);
}

// A matrix times a vector, and a vector times a matrix.
kernel products(a: global f32[16, 32], v: global f32[32], w: global f32[16], y: global mut f32[16], z: global mut f32[32]) grid(1) warps(2) {
    let m = load(a, [0, 0], [16, 32]);
    store(y, reshape(sum(m * reshape(load(v, [0], [32]), [1, 32]), dim = 1), [16]), [0]);
    store(z, reshape(sum(m * reshape(load(w, [0], [16]), [16, 1]), dim = 0), [32]), [0]);
}
reference products {
    y = matmul(a, v);
    z = matmul(w, a);
}
";

#[test]
fn references_agree_with_kernels_computing_the_same() {
    let module = Module::from_source("reference_forms.tl", SOURCE).unwrap_or_else(|e| panic!("{e}"));
    for name in ["transposed", "repeated", "products"] {
        let kernel = module.kernel(Some(name), &[]).unwrap_or_else(|e| panic!("{e}"));
        for backend in [Backend::Vm, Backend::Simt] {
            let mut args = kernel.random_args(7, &[]).unwrap();
            let report = kernel.check(backend, &mut args).unwrap_or_else(|e| panic!("{name} on {}: {e}", backend.name()));
            assert!(report.passed(), "{name} on {}: {report:?}", backend.name());
        }
    }
}

#[test]
fn references_give_the_values_worked_out_by_hand() {
    let source = "\
kernel k(x: global f32[2, 3], v: global f32[3], w: global f32[2], y: global mut f32[3, 2], r: global mut f32[2, 6], s: global mut f32[4, 3], p: global mut f32[2], q: global mut f32[3], d: global mut f32[1]) grid(1) warps(1) {
    store(y, zeros<f32>([3, 2]), [0, 0]);
}
reference k {
    y = transpose(x);
    r = repeat(x, 2, dim = 1);
    s = repeat(x, 2, dim = 0);
    p = matmul(x, v);
    q = matmul(w, x);
    d = matmul(v, v);
}
";
    let kernel = Module::from_source("hand.tl", source).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"));
    // x = [[1, 2, 3], [4, 5, 6]], v = [1, 0, -1], w = [1, 2].
    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let v = [1.0, 0.0, -1.0];
    let mut args: Vec<Arg> = vec![HostTensor::from_f64(DType::F32, &[2, 3], &x).into(), HostTensor::from_f64(DType::F32, &[3], &v).into(), HostTensor::from_f64(DType::F32, &[2], &[1.0, 2.0]).into()];
    for shape in [&[3, 2][..], &[2, 6], &[4, 3], &[2], &[3], &[1]] {
        args.push(HostTensor::filled(DType::F32, shape, 0.0).into());
    }
    let outputs = kernel.reference_outputs(&args).unwrap_or_else(|e| panic!("{e}"));
    let by_index = |i: usize| outputs.iter().find(|(p, _)| *p == i).map(|(_, a)| a.data.clone()).unwrap();
    assert_eq!(by_index(3), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert_eq!(by_index(4), vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 6.0]);
    assert_eq!(by_index(5), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 4.0, 5.0, 6.0]);
    assert_eq!(by_index(6), vec![-2.0, -2.0]);
    assert_eq!(by_index(7), vec![9.0, 12.0, 15.0]);
    assert_eq!(by_index(8), vec![2.0]);
}
