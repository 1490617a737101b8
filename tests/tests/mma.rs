//! `dot` on tensor cores: when the accumulator's layout divides by the `mma.m16n8` fragment,
//! the lowering emits `mma.sync.m16n8k16`. The simulator runs it from the PTX ISA's fragment
//! tables (independent of the layout code), so agreement with the VM and with an f64 host
//! product checks the fragment layouts; ptxas checks the instruction.

use tl_compiler::backend::{Arch, ptxas};
use tl_compiler::dtype::DType;
use tl_compiler::ir::ConstValue;
use tl_runtime::{Arg, Backend, HostTensor, Module};
use tl_tests::{repo_root, Rng};


fn configs() -> Vec<(DType, [i64; 4])> {
    let mut out = Vec::new();
    for t in [DType::F16, DType::BF16] {
        // [BM, BN, BK, WARPS]
        for tile in [[32, 32, 32, 4], [16, 8, 16, 1], [64, 32, 16, 4], [32, 64, 48, 2], [16, 16, 32, 2]] {
            out.push((t, tile));
        }
    }
    out
}

fn consts(t: DType, tile: [i64; 4]) -> Vec<(String, ConstValue)> {
    let mut c = vec![("T".to_string(), ConstValue::DType(t))];
    for (name, v) in ["BM", "BN", "BK", "WARPS"].iter().zip(tile) {
        c.push((name.to_string(), ConstValue::Int(v)));
    }
    c
}

/// Runs `kernel` (parameters m, n, k, a, b, c) on the VM and on the simulator with c filled
/// with `poison`; returns c from each.
fn launch_on_vm_and_simt(kernel: &tl_runtime::Kernel, (m, n, k): (usize, usize, usize), a: &HostTensor, b: &HostTensor, c: DType, poison: f64) -> [HostTensor; 2] {
    let args = vec![
        Arg::scalar(m as i64),
        Arg::scalar(n as i64),
        Arg::scalar(k as i64),
        a.clone().into(),
        b.clone().into(),
        HostTensor::filled(c, &[m, n], poison).into(),
    ];
    [Backend::Vm, Backend::Simt].map(|backend| {
        let mut args = args.clone();
        kernel.launch(backend, &mut args).unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        args[5].tensor().unwrap().clone()
    })
}

/// Runs `kernel` (parameters m, n, k, a, b, c) on the VM and the simulator and checks every
/// element of c against the f64 sum of `product(i, j, p)` over p < k, within f32 accumulation
/// error (one rounding per step of 16 on the simulator, per product on the VM).
fn check_against_vm_and_host(kernel: &tl_runtime::Kernel, what: &str, (m, n, k): (usize, usize, usize), a: &HostTensor, b: &HostTensor, product: impl Fn(usize, usize, usize) -> f64) {
    let [vm, simt] = launch_on_vm_and_simt(kernel, (m, n, k), a, b, DType::F32, f64::NAN);
    let (vm, simt) = (&vm, &simt);
    for i in 0..m {
        for j in 0..n {
            let exact: f64 = (0..k).map(|p| product(i, j, p)).sum();
            let magnitude: f64 = (0..k).map(|p| product(i, j, p).abs()).sum();
            let tolerance = k as f64 * 2f64.powi(-23) * magnitude + 1e-30;
            for (who, out) in [("vm", vm), ("simt", simt)] {
                let got = out.get(i * n + j);
                assert!((got - exact).abs() <= tolerance, "{what} {who}: c[{i}, {j}] = {got}, exact {exact}");
            }
        }
    }
}

#[test]
fn tensor_core_dot_matches_the_vm_and_the_host_product() {
    let module = Module::from_file(repo_root().join("tests/kernels/mma.tl")).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(0x1f2e_3d4c_5b6a_7988);
    for (t, tile) in configs() {
        let kernel = module.kernel(None, &consts(t, tile)).unwrap_or_else(|e| panic!("{t} {tile:?}: {e}"));
        let lir = kernel.compiled.lir.to_string();
        assert!(lir.contains("mma.m16n8k16"), "{t} {tile:?}: the accumulator layout should divide by the mma fragment");
        let (m, n, k) = (tile[0] as usize * 2 - 3, tile[1] as usize + 5, tile[2] as usize * 2 + 7);
        let a = HostTensor::from_f64(t, &[m, k], &(0..m * k).map(|_| rng.unit()).collect::<Vec<_>>());
        let b = HostTensor::from_f64(t, &[k, n], &(0..k * n).map(|_| rng.unit()).collect::<Vec<_>>());
        check_against_vm_and_host(&kernel, &format!("{t} {tile:?}"), (m, n, k), &a, &b, |i, j, p| a.get(i * k + p) * b.get(p * n + j));
    }
}

/// A B operand computed in registers (from a shared tile) goes to the tensor cores from its
/// registers: every configuration (warps along m share B fragments, several n tiles per warp,
/// f16 and bf16) against the VM and an f64 host product of the rounded operands; ptxas.
#[test]
fn tensor_core_dot_takes_a_computed_b_operand_from_registers() {
    let module = Module::from_file(repo_root().join("tests/kernels/mma.tl")).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(0x0b0b_5eed_1234_5678);
    for (t, tile) in configs() {
        let kernel = module.kernel(Some("mma_matmul_b_registers"), &consts(t, tile)).unwrap_or_else(|e| panic!("{t} {tile:?}: {e}"));
        let ir = tl_compiler::ir::print::kernel_to_string(&kernel.compiled.kernel);
        assert!(ir.contains("b: registers)"), "{t} {tile:?}: the B operand should come from registers:\n{ir}");
        assert!(!kernel.compiled.lir.to_string().contains("ldmatrix.x2.trans"), "{t} {tile:?}: no ldmatrix for B");
        let (m, n, k) = (tile[0] as usize + 3, tile[1] as usize * 2 - 5, tile[2] as usize * 2 + 16);
        let a = HostTensor::from_f64(t, &[m, k], &(0..m * k).map(|_| rng.unit()).collect::<Vec<_>>());
        let b = HostTensor::from_f64(DType::F32, &[k, n], &(0..k * n).map(|_| rng.unit() * 3.0).collect::<Vec<_>>());
        // The products of the rounded operands, exactly.
        check_against_vm_and_host(&kernel, &format!("{t} {tile:?}"), (m, n, k), &a, &b, |i, j, p| a.get(i * k + p) * t.round(DType::F32.round(b.get(p * n + j) * 0.5)));
        if tl_tests::ptxas_available("mma with B in registers") {
            for arch in Arch::ALL {
                let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{t} {tile:?}: {e}"));
                ptxas::assemble(ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected {t} {tile:?} for {}: {e}", arch.name()));
            }
        }
    }
}

#[test]
fn tensor_core_dot_assembles() {
    if !tl_tests::ptxas_available("mma") {
        return;
    }
    let module = Module::from_file(repo_root().join("tests/kernels/mma.tl")).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    for (t, tile) in configs() {
        let kernel = module.kernel(None, &consts(t, tile)).unwrap_or_else(|e| panic!("{e}"));
        for arch in Arch::ALL {
            let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{t} {tile:?}: {e}"));
            assert!(ptx.contains("mma.sync.aligned.m16n8k16.row.col.f32"), "{t} {tile:?}: no mma in the PTX");
            ptxas::assemble(ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected {t} {tile:?} for {}: {e}", arch.name()));
        }
    }
}

/// `transpose` and `reshape` on the VM and the simulator, against the host: in registers when
/// the layouts follow, through shared memory when an annotation forces another layout.
#[test]
fn transpose_and_reshape_move_the_right_elements() {
    let module = Module::from_file(repo_root().join("tests/kernels/rearrange.tl")).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    let kernel = module.kernel(None, &[]).unwrap_or_else(|e| panic!("{e}"));
    let lir = kernel.compiled.lir.to_string();
    // One staging for the annotated transpose only (the others reuse registers).
    assert_eq!(lir.matches("barrier").count(), 2, "{lir}");
    let mut rng = Rng(0xabcdef);
    let x = HostTensor::from_f64(DType::F32, &[8, 16], &(0..128).map(|_| rng.unit()).collect::<Vec<_>>());
    for backend in [Backend::Vm, Backend::Simt] {
        let mut args = vec![
            x.clone().into(),
            HostTensor::filled(DType::F32, &[16, 8], f64::NAN).into(),
            HostTensor::filled(DType::F32, &[16, 8], f64::NAN).into(),
            HostTensor::filled(DType::F32, &[4, 32], f64::NAN).into(),
        ];
        kernel.launch(backend, &mut args).unwrap_or_else(|e| panic!("{e}"));
        let (t, u, r) = (args[1].tensor().unwrap(), args[2].tensor().unwrap(), args[3].tensor().unwrap());
        for i in 0..8 {
            for j in 0..16 {
                let v = x.get(i * 16 + j);
                assert_eq!(t.get(j * 8 + i), v * 2.0, "{} t[{j}, {i}]", backend.name());
                assert_eq!(u.get(j * 8 + i), v, "{} u[{j}, {i}]", backend.name());
                assert_eq!(r.get(i * 16 + j), DType::F32.round(v + 1.0), "{} r", backend.name());
            }
        }
    }
}

/// `permute` of a 3-D tile on the VM and the simulator, against the host (the definition
/// written out here) and the kernel's reference: in registers when the layout follows, through
/// shared memory when an annotation forces another layout; ptxas accepts its PTX.
#[test]
fn permute_moves_the_right_elements() {
    let module = Module::from_file(repo_root().join("tests/kernels/permute.tl")).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    let kernel = module.kernel(None, &[]).unwrap_or_else(|e| panic!("{e}"));
    let ir = tl_compiler::ir::print::kernel_to_string(&kernel.compiled.kernel);
    assert_eq!(ir.matches("via registers").count(), 4, "{ir}");
    assert_eq!(ir.matches("via staged").count(), 1, "{ir}");
    let mut rng = Rng(0x9e3779b9);
    let x = HostTensor::from_f64(DType::F32, &[8, 16], &(0..128).map(|_| rng.unit() + 0.25).collect::<Vec<_>>());
    for backend in [Backend::Vm, Backend::Simt] {
        let mut args = vec![x.clone().into(), HostTensor::filled(DType::F32, &[4, 32], f64::NAN).into(), HostTensor::filled(DType::F32, &[4, 32], f64::NAN).into()];
        let report = kernel.check(backend, &mut args).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.passed(), "{} against the reference: {report:?}", backend.name());
        let (p, q) = (args[1].tensor().unwrap(), args[2].tensor().unwrap());
        for i in 0..2 {
            for j in 0..4 {
                for l in 0..16 {
                    let v = x.get((4 * i + j) * 16 + l);
                    assert_eq!(p.get(j * 32 + 2 * l + i), v, "{} p", backend.name());
                    // q = permute [2, 1, 0] of a·3: q3[l, j, i], flattened l·8 + j·2 + i.
                    assert_eq!(q.get(l * 8 + j * 2 + i), DType::F32.round(v * 3.0), "{} q", backend.name());
                }
            }
        }
    }
    if tl_tests::ptxas_available("permute") {
        for arch in Arch::ALL {
            let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{}: {e}", arch.name()));
            ptxas::assemble(ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected permute3 for {}: {e}", arch.name()));
        }
    }
}

/// `dot` of i8 tiles into i32 on tensor cores (`mma.sync.m16n8k32.s8`): exact, so the VM, the
/// simulator and the host agree bit for bit; ptxas accepts it.
#[test]
fn integer_tensor_core_dot_is_exact() {
    let module = Module::from_file(repo_root().join("tests/kernels/mma.tl")).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(0x5a5a_1234_9876_0001);
    for tile in [[32i64, 32, 64, 4], [16, 8, 32, 1], [64, 32, 32, 4]] {
        let consts: Vec<(String, ConstValue)> =
            ["BM", "BN", "BK", "WARPS"].iter().zip(tile).map(|(n, v)| (n.to_string(), ConstValue::Int(v))).collect();
        let kernel = module.kernel(Some("mma_matmul_s8"), &consts).unwrap_or_else(|e| panic!("{tile:?}: {e}"));
        assert!(kernel.compiled.lir.to_string().contains("mma.m16n8k32.s8"), "{tile:?}: no s8 mma");
        let (m, n, k) = (tile[0] as usize + 5, tile[1] as usize * 2 - 3, tile[2] as usize * 2 + 9);
        let random = |rng: &mut Rng, len: usize| (0..len).map(|_| (rng.next() % 256) as i64 as f64 - 128.0).collect::<Vec<_>>();
        let a = HostTensor::from_f64(DType::I8, &[m, k], &random(&mut rng, m * k));
        let b = HostTensor::from_f64(DType::I8, &[k, n], &random(&mut rng, k * n));
        let [vm, simt] = launch_on_vm_and_simt(&kernel, (m, n, k), &a, &b, DType::I32, -12345.0);
        for i in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k).map(|p| a.get(i * k + p) * b.get(p * n + j)).sum();
                assert_eq!(vm.get(i * n + j), exact, "{tile:?} vm c[{i}, {j}]");
                assert_eq!(simt.get(i * n + j), exact, "{tile:?} simt c[{i}, {j}]");
            }
        }
        if ptxas::find_ptxas().is_some() {
            for arch in Arch::ALL {
                let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{tile:?}: {e}"));
                assert!(ptx.contains("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32"), "{tile:?}: no s8 mma in the PTX");
                ptxas::assemble(ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected s8 {tile:?} for {}: {e}", arch.name()));
            }
        }
    }
}
