//! Vectorized global accesses and launch-time specialization (`passes::divisibility`,
//! `lower.rs` vector path, `Kernel::signature`): every shipped kernel runs on the simulator
//! both unspecialized and specialized for its argument values, at shapes divisible by 16, by 8
//! and ragged ones, each checked against the f64 reference, and the two variants must write
//! the same bits (vectorization changes no arithmetic); the VM (the semantics) is checked
//! against the same reference. Also: the vector path is really taken when provable and refused
//! when not, sub-byte tiles move as whole bytes and words, PTX has `ld.global.v4`/`.v2` and
//! ptxas accepts it, and a vector access the variant wrongly assumed aligned is reported by the
//! simulator at its source line.

use tl_compiler::backend::{Arch, ptxas};
use tl_compiler::dtype::DType;
use tl_compiler::ir::{ConstValue, ParamKind};
use tl_compiler::lir::{Program, Stmt};
use tl_compiler::passes::divisibility::{self, Assumptions};
use tl_runtime::{Arg, Backend, Kernel, Module, RuntimeError};
use tl_tests::{Rng, repo_root, shipped_kernel_files};
use tl_vm::simt::SimtError;

/// The vector accesses of a program: `(load?, bytes)` for each.
fn vector_accesses(p: &Program) -> Vec<(bool, usize)> {
    fn walk(body: &[Stmt], out: &mut Vec<(bool, usize)>) {
        for s in body {
            match s {
                Stmt::LoadGlobalVector { dst, ty, .. } => out.push((true, dst.len() * ty.bytes())),
                Stmt::StoreGlobalVector { values, ty, .. } => out.push((false, values.len() * ty.bytes())),
                Stmt::If { then_body, else_body, .. } => {
                    walk(then_body, out);
                    walk(else_body, out);
                }
                Stmt::For { body, .. } => walk(body, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(&p.body, &mut out);
    out
}

/// For each `cp.async` of `p`: its parameter, its size, and whether it sits under a run-time
/// alignment test (an `If` whose other branch copies element by element).
fn async_copies(p: &Program) -> Vec<(usize, u32, bool)> {
    fn walk(body: &[Stmt], tested: bool, out: &mut Vec<(usize, u32, bool)>) {
        for s in body {
            match s {
                Stmt::CopyAsync { param, bytes, .. } => out.push((*param, *bytes, tested)),
                Stmt::If { then_body, else_body, .. } => {
                    // The alignment test's fallback stores to shared memory directly.
                    let fallback = else_body.iter().any(|s| matches!(s, Stmt::StoreShared { .. } | Stmt::StoreSharedBits { .. }));
                    walk(then_body, tested || fallback, out);
                    walk(else_body, tested, out);
                }
                Stmt::For { body, .. } => walk(body, tested, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(&p.body, false, &mut out);
    out
}

fn int_scalars(kernel: &Kernel) -> Vec<String> {
    kernel
        .compiled
        .kernel
        .params
        .iter()
        .filter(|p| matches!(p.kind, ParamKind::Scalar(d) if d.is_int()))
        .map(|p| p.name.clone())
        .collect()
}

/// Runs `kernel` on the VM, on the simulator unspecialized and on the simulator specialized
/// for the arguments; all three pass the reference check and the two simulator runs write the
/// same bytes. Returns the signature used.
fn run_three_ways(kernel: &mut Kernel, sizes: &[(String, i64)], seed: u64) -> Assumptions {
    let name = kernel.name().to_string();
    let args = kernel.random_args(seed, sizes).unwrap();
    let mut vm_args = args.clone();
    let vm = kernel.check(Backend::Vm, &mut vm_args).unwrap_or_else(|e| panic!("{name} vm: {e}"));
    assert!(vm.passed(), "{name} {sizes:?} on vm: {vm:?}");

    kernel.specialize_log2 = 0;
    let mut plain_args = args.clone();
    let plain = kernel.check(Backend::Simt, &mut plain_args).unwrap_or_else(|e| panic!("{name} simt: {e}"));
    assert!(plain.passed(), "{name} {sizes:?} unspecialized: {plain:?}");

    kernel.specialize_log2 = divisibility::DEFAULT_CAP_LOG2;
    let signature = kernel.signature(&args);
    let mut special_args = args.clone();
    let special = kernel.check(Backend::Simt, &mut special_args).unwrap_or_else(|e| panic!("{name} simt {signature}: {e}"));
    assert!(special.passed(), "{name} {sizes:?} specialized {signature}: {special:?}");
    for (i, (a, b)) in plain_args.iter().zip(&special_args).enumerate() {
        if let (Arg::Tensor(a), Arg::Tensor(b)) = (a, b) {
            assert!(a.data == b.data, "{name} {sizes:?}: argument {i} differs between the unspecialized and the {signature} variant");
        }
    }
    signature
}

#[test]
fn shipped_kernels_specialized_and_unspecialized_on_the_simulator() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for path in shipped_kernel_files() {
        let module = Module::from_file(&path).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
        for name in module.kernel_names() {
            let mut kernel = module.kernel(Some(&name), &[]).unwrap_or_else(|e| panic!("{e}"));
            let scalars = int_scalars(&kernel);
            // Multiples of 16, of 8 (not 16), and ragged (odd) values.
            for (round, unit) in [16i64, 8, 1].into_iter().enumerate() {
                let sizes: Vec<(String, i64)> = scalars
                    .iter()
                    .map(|s| {
                        let v = match unit {
                            1 => 2 * (rng.next() % 70) as i64 + 1,
                            u => u * (1 + (rng.next() % (160 / u as u64)) as i64),
                        };
                        let v = if unit == 8 && v % 16 == 0 { v + 8 } else { v };
                        (s.clone(), v)
                    })
                    .collect();
                let signature = run_three_ways(&mut kernel, &sizes, round as u64 + 7);
                let expected: Vec<u32> = kernel
                    .compiled
                    .kernel
                    .params
                    .iter()
                    .map(|p| match sizes.iter().find(|(n, _)| *n == p.name) {
                        Some((_, v)) => divisibility::log2_of(*v).min(divisibility::DEFAULT_CAP_LOG2),
                        None => 0,
                    })
                    .collect();
                assert_eq!(signature.log2, expected, "{name} {sizes:?}");
                let vectors = vector_accesses(&kernel.variant(&signature).unwrap());
                match unit {
                    // Odd sizes prove nothing beyond what holds for every size (a row length fixed
                    // at compile time, as in examples/clip_rows.tl, aligns its rows anyway).
                    1 => assert_eq!(vectors, vector_accesses(&kernel.compiled.lir), "{name} {sizes:?}: odd sizes prove nothing, yet"),
                    _ => assert!(!vectors.is_empty(), "{name} {sizes:?}: no vector access in the {signature} variant"),
                }
                println!("{name} {sizes:?}: variant {}", signature.describe(&kernel.compiled.kernel));
            }
        }
    }
}

#[test]
fn qmatmul_specialized_on_the_simulator() {
    let module = Module::from_file(repo_root().join("stdlib/kernels/qmatmul.tl")).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    for w in ["u4", "u2", "u1", "u8", "i4", "f4e2m1", "f8e4m3fn", "u3"] {
        let consts = [("W".to_string(), ConstValue::DType(DType::from_name(w).unwrap()))];
        let mut kernel = module.kernel(None, &consts).unwrap_or_else(|e| panic!("{w}: {e}"));
        for (m, n, k) in [(16, 64, 128), (17, 48, 96), (3, 37, 77)] {
            let sizes = [("m".to_string(), m), ("n".to_string(), n), ("k".to_string(), k)];
            let signature = run_three_ways(&mut kernel, &sizes, (m * n) as u64);
            // The tiles of `a` (parameter 3) and `b` (4) reach shared memory by `cp.async`: in
            // a variant whose sizes prove the rows aligned, without a run-time test. Rows of
            // 32 u3 weights are 12 bytes, which no single cp.async moves.
            let variant = kernel.variant(&signature).unwrap();
            let copies = async_copies(&variant);
            // A thread copies 16 bytes of a row (8 f16 of `a`; of `b`, 16 bytes or the whole
            // 32-element row): aligned when the row lengths are multiples of that.
            let bits = DType::from_name(w).unwrap().bits() as i64;
            let b_run = (128 / bits).min(32);
            for param in [3usize, 4] {
                let aligned = if param == 3 { k % 8 == 0 } else { n % b_run == 0 };
                let of_param: Vec<_> = copies.iter().filter(|c| c.0 == param).collect();
                if param == 4 && w == "u3" {
                    assert!(of_param.is_empty(), "{w}: {of_param:?}");
                    continue;
                }
                assert!(!of_param.is_empty(), "{w} {sizes:?}: no cp.async of parameter {param} in the {signature} variant");
                assert_eq!(of_param.iter().all(|c| !c.2), aligned, "{w} {sizes:?} param {param}: {of_param:?}");
            }
        }
    }
}

#[test]
fn vector_add_on_n16_uses_16_byte_accesses_in_lir_and_ptx() {
    let module = Module::from_file(repo_root().join("examples/vector_add.tl")).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    let kernel = module.kernel(None, &[]).unwrap();
    let plain = &kernel.compiled.lir;
    assert!(vector_accesses(plain).is_empty(), "the unspecialized variant cannot know n % 4 == 0:\n{plain}");
    let n16 = kernel.assumptions(&["n%16".into()]).unwrap();
    let lir = kernel.variant(&n16).unwrap();
    assert_eq!(vector_accesses(&lir), vec![(true, 16), (true, 16), (false, 16)], "{lir}");
    assert!(lir.to_string().contains("ld.global.v4.f32"), "{lir}");
    let n2 = kernel.assumptions(&["n%2".into()]).unwrap();
    assert!(vector_accesses(&kernel.variant(&n2).unwrap()).iter().all(|(_, b)| *b == 8));
    for arch in [Arch::Sm80, Arch::Sm90a] {
        let ptx = kernel.variant_ptx(&n16, arch).unwrap();
        assert!(ptx.contains("ld.global.v4."), "{ptx}");
        assert!(ptx.contains("st.global.v4."), "{ptx}");
        let plain_ptx = kernel.ptx(arch).unwrap();
        assert!(!plain_ptx.contains("ld.global.v"), "{plain_ptx}");
        let v2 = kernel.variant_ptx(&n2, arch).unwrap();
        assert!(v2.contains("ld.global.v2."), "{v2}");
        if tl_tests::ptxas_available("vectorize") {
            ptxas::assemble(&ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected vector_add n%16 for {}: {e}", arch.name()));
            ptxas::assemble(&v2, arch).unwrap_or_else(|e| panic!("ptxas rejected vector_add n%2 for {}: {e}", arch.name()));
        }
    }
    // The launch signature picks the variant: 1024 = 2^10, capped at 128; 1000 = 8 · 125.
    let args = kernel.random_args(1, &[("n".into(), 1024)]).unwrap();
    assert_eq!(kernel.signature(&args).describe(&kernel.compiled.kernel), "n%128");
    let args = kernel.random_args(1, &[("n".into(), 1000)]).unwrap();
    assert_eq!(kernel.signature(&args).describe(&kernel.compiled.kernel), "n%8");
    let args = kernel.random_args(1, &[("n".into(), 999)]).unwrap();
    assert!(kernel.signature(&args).is_none());
}

/// A 2-D copy through registers, for any element type: the layout gives each thread a run of
/// consecutive elements of a row.
const COPY: &str = "
kernel copy<T: dtype = u4, BM = 8, BN = 64>(m: i32, n: i32, a: global T[m, n], b: global mut T[m, n])
    grid(cdiv(m, BM), cdiv(n, BN)) warps(1) {
    let t = load(a, [block.x * BM, block.y * BN], [BM, BN]);
    store(b, t, [block.x * BM, block.y * BN]);
}
kernel copy_shifted<T: dtype = f32, BN = 128>(n: i32, s: i32, a: global T[n], b: global mut T[n])
    grid(cdiv(n, BN)) warps(1) {
    let t = load(a, [block.x * BN + s], [BN]);
    store(b, t, [block.x * BN + s]);
}
";

fn copy_kernel(name: &str, dtype: &str) -> Kernel {
    let module = Module::from_source("copy.tl", COPY).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    module.kernel(Some(name), &[("T".into(), ConstValue::DType(DType::from_name(dtype).unwrap()))]).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the copy on the simulator with `assumptions` (or the launch signature) and checks the
/// output against the input, byte for byte (the copy of a packed tensor is its bytes).
fn check_copy(kernel: &Kernel, m: i64, n: i64, seed: u64) -> Assumptions {
    let mut args = kernel.random_args(seed, &[("m".into(), m), ("n".into(), n)]).unwrap();
    let signature = kernel.signature(&args);
    let mut vm_args = args.clone();
    kernel.launch(Backend::Vm, &mut vm_args).unwrap();
    kernel.launch(Backend::Simt, &mut args).unwrap_or_else(|e| panic!("{m}x{n}: {e}"));
    let (Arg::Tensor(a), Arg::Tensor(b), Arg::Tensor(vm_b)) = (&args[2], &args[3], &vm_args[3]) else { panic!() };
    let bits = a.dtype.bits() as usize;
    let total_bits = (m * n) as usize * bits;
    // Whole bytes, then the bits of the last partial byte.
    assert_eq!(a.data[..total_bits / 8], b.data[..total_bits / 8], "{} {m}x{n} {signature}", a.dtype);
    if !total_bits.is_multiple_of(8) {
        let mask = (1u8 << (total_bits % 8)) - 1;
        assert_eq!(a.data[total_bits / 8] & mask, b.data[total_bits / 8] & mask);
    }
    assert!(b.data == vm_b.data, "{} {m}x{n}: simulator and VM differ", a.dtype);
    signature
}

#[test]
fn sub_byte_tiles_move_as_whole_bytes_and_words() {
    let cases = [
        ("u4", 8, "ld.global.v2.b32"),
        ("u2", 4, "ld.global.b32"),
        ("u1", 2, "ld.global.b16"),
        ("u8", 16, "ld.global.v4.b32"),
        ("f4e2m1", 8, "ld.global.v2.b32"),
        ("i2", 4, "ld.global.b32"),
        ("f16", 16, "ld.global.v4.b32"),
    ];
    for (dtype, word_bytes, ptx_load) in cases {
        let kernel = copy_kernel("copy", dtype);
        let n16 = kernel.assumptions(&["n%16".into()]).unwrap();
        let vectors = vector_accesses(&kernel.variant(&n16).unwrap());
        assert!(!vectors.is_empty() && vectors.iter().all(|(_, b)| *b == word_bytes), "{dtype}: {vectors:?}");
        assert!(vectors.iter().any(|(l, _)| *l) && vectors.iter().any(|(l, _)| !*l), "{dtype}: {vectors:?}");
        assert!(vector_accesses(&kernel.compiled.lir).is_empty(), "{dtype}: unspecialized is per element");
        for (m, n, seed) in [(8, 64, 1), (19, 48, 2), (9, 160, 3), (13, 37, 4), (5, 50, 5)] {
            let signature = check_copy(&kernel, m, n, seed);
            println!("{dtype} {m}x{n}: {}", signature.describe(&kernel.compiled.kernel));
        }
        if ptxas::find_ptxas().is_some() {
            for arch in [Arch::Sm80, Arch::Sm90a] {
                let ptx = kernel.variant_ptx(&n16, arch).unwrap();
                assert!(ptx.contains(&format!("{ptx_load} ")), "{dtype}: expected {ptx_load}\n{ptx}");
                assert!(ptx.contains(&format!("{} ", ptx_load.replace("ld.", "st."))), "{dtype}\n{ptx}");
                assert!(!ptx.contains("atom.global"), "{dtype}: packed stores of whole words need no atomics\n{ptx}");
                ptxas::assemble(&ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected copy<{dtype}> n%16 for {}: {e}", arch.name()));
            }
        }
    }
}

#[test]
fn the_analysis_refuses_what_it_cannot_prove() {
    // Offset `block.x * BN + s`: nothing is known about s, so no vector even with n % 16.
    let kernel = copy_kernel("copy_shifted", "f32");
    let n16 = kernel.assumptions(&["n%16".into()]).unwrap();
    assert!(vector_accesses(&kernel.variant(&n16).unwrap()).is_empty());
    // With s % 4 as well, 16-byte accesses.
    let both = kernel.assumptions(&["n%16,s%4".into()]).unwrap();
    let vectors = vector_accesses(&kernel.variant(&both).unwrap());
    assert!(!vectors.is_empty() && vectors.iter().all(|(_, b)| *b == 16), "{vectors:?}");
    // s % 2 only: 8-byte accesses.
    let s2 = kernel.assumptions(&["n%16".into(), "s%2".into()]).unwrap();
    let vectors = vector_accesses(&kernel.variant(&s2).unwrap());
    assert!(!vectors.is_empty() && vectors.iter().all(|(_, b)| *b == 8), "{vectors:?}");
    // Row stride unknown (ragged n): the 2-D copy stays per element whatever m is.
    let kernel = copy_kernel("copy", "f16");
    let m16 = kernel.assumptions(&["m%16".into()]).unwrap();
    assert!(vector_accesses(&kernel.variant(&m16).unwrap()).is_empty());
    // And a ragged launch runs the unspecialized variant and is still right.
    let args = kernel.random_args(3, &[("m".into(), 33), ("n".into(), 77)]).unwrap();
    assert!(kernel.signature(&args).is_none());
    check_copy(&kernel, 33, 77, 3);
}

#[test]
fn divisibility_of_offsets_and_shapes() {
    let source = "
kernel k<BM = 16, BK = 32, G = 64>(m: i32, k: i32, a: global f16[m, k * 4], s: global f16[cdiv(k, G), m])
    grid(cdiv(m, BM)) warps(1) {
    let acc = zeros<f32>([BM, BK]);
    for kb in 0 .. cdiv(k, BK) {
        let ta = load(a, [block.x * BM, kb * BK], [BM, BK]);
        let g = kb * BK / G;
        let ts = load(s, [g, block.x * BM + 3], [1, BK]);
        acc = acc + cast<f32>(ta) + cast<f32>(ts);
    }
}";
    let file = tl_compiler::driver::check(source).unwrap_or_else(|e| panic!("{e:?}"));
    let kernel = tl_compiler::driver::block_ir(&file, None, &[]).unwrap_or_else(|e| panic!("{e:?}"));
    let mut assumptions = Assumptions::none(&kernel);
    assumptions.log2[1] = 3; // k % 8
    let d = divisibility::analyze(&kernel, &assumptions);
    let loads: Vec<Vec<u32>> = kernel
        .values
        .iter()
        .filter_map(|v| match &v.op {
            tl_compiler::ir::Op::Load { offsets, .. } => Some(offsets.iter().map(|o| d.value(*o)).collect()),
            _ => None,
        })
        .collect();
    // block.x * 16: 2^4; kb * 32: 2^5; kb * 32 / 64: nothing; block.x * 16 + 3: nothing.
    assert_eq!(loads, vec![vec![4, 5], vec![0, 0]]);
    let ParamKind::Global { shape, .. } = &kernel.params[2].kind else { panic!() };
    assert_eq!((d.sym(&shape[0]), d.sym(&shape[1])), (0, 5), "m unknown, k * 4 with k % 8");
    // Parsing and describing assumptions.
    let parsed = Assumptions::parse(&kernel, &["k%8".into()]).unwrap();
    assert_eq!(parsed, assumptions);
    assert_eq!(parsed.describe(&kernel), "k%8");
    assert!(Assumptions::parse(&kernel, &["k%6".into()]).is_err());
    assert!(Assumptions::parse(&kernel, &["a%8".into()]).is_err());
    assert!(Assumptions::parse(&kernel, &["k8".into()]).is_err());
    assert!(parsed.holds_for(&[None, Some(24), None, None]));
    assert!(!parsed.holds_for(&[None, Some(20), None, None]));
}

#[test]
fn a_variant_launched_against_its_assumptions_is_refused_and_a_misaligned_vector_access_is_reported() {
    // The runtime refuses to run a variant whose assumptions the arguments break.
    let kernel = copy_kernel("copy", "f32");
    let n16 = kernel.assumptions(&["n%16".into()]).unwrap();
    let mut args = kernel.random_args(9, &[("m".into(), 9), ("n".into(), 18)]).unwrap();
    let e = kernel.launch_variant(Backend::Simt, &mut args, &n16).unwrap_err();
    assert!(matches!(e, RuntimeError::Usage(_)), "{e}");
    // Run it on the simulator anyway: row r starts at byte 72 r, a multiple of 16 only for
    // even r, so the 16-byte vectors of row 1 are misaligned.
    let program = kernel.variant(&n16).unwrap();
    let grid = [2, 1, 1];
    let err = tl_vm::simt::launch(&program, grid, &mut args).unwrap_err();
    let SimtError::GlobalMisaligned { size, byte_offset, ref param, .. } = err else { panic!("{err:?}") };
    assert_eq!((size, param.as_str()), (16, "a"));
    assert_ne!(byte_offset % 16, 0);
    let rendered = kernel.module.simt_error(err).to_string();
    assert!(rendered.starts_with("misaligned vector load of 16 bytes at byte "), "{rendered}");
    assert!(rendered.contains("--> copy.tl:4:"), "{rendered}");
    assert!(rendered.contains("let t = load(a, [block.x * BM, block.y * BN], [BM, BN]);"), "{rendered}");
}

/// Random tile configurations, element types and sizes (divisible and ragged), with an offset
/// in the last dimension that is a multiple of a random power of two: the simulator running
/// the variant for the launch's signature writes exactly what the VM writes.
#[test]
fn random_tiles_and_sizes_simulator_equals_vm() {
    const SOURCE: &str = "
kernel shift_copy<T: dtype = f16, BM = 4, BN = 64, W = 1, S = 8>(m: i32, n: i32, a: global T[m, n], b: global mut T[m, n])
    grid(cdiv(m, BM), cdiv(n, BN)) warps(W) {
    let t = load(a, [block.x * BM, block.y * BN + S], [BM, BN]);
    store(b, t, [block.x * BM, block.y * BN]);
}";
    let module = Module::from_source("shift_copy.tl", SOURCE).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(0x0bad_cafe_1234_5678);
    let dtypes = ["f16", "f32", "u8", "u4", "u2", "u1", "i4", "f8e4m3fn", "f64", "u3"];
    let mut vectorized = 0;
    for round in 0..40u64 {
        let dtype = dtypes[(rng.next() % dtypes.len() as u64) as usize];
        let bm = 1i64 << (rng.next() % 4);
        let bn = 1i64 << (3 + rng.next() % 5);
        let warps = 1i64 << (rng.next() % 3);
        let shift = [0, 1, 2, 4, 8, 16][(rng.next() % 6) as usize];
        let consts = [
            ("T".to_string(), ConstValue::DType(DType::from_name(dtype).unwrap())),
            ("BM".to_string(), ConstValue::Int(bm)),
            ("BN".to_string(), ConstValue::Int(bn)),
            ("W".to_string(), ConstValue::Int(warps)),
            ("S".to_string(), ConstValue::Int(shift)),
        ];
        let kernel = module.kernel(None, &consts).unwrap_or_else(|e| panic!("{e}"));
        let unit = [1, 2, 4, 8, 16, 32][(rng.next() % 6) as usize];
        let m = 1 + (rng.next() % 20) as i64;
        let n = unit * (1 + (rng.next() % (200 / unit as u64)) as i64);
        let args = kernel.random_args(round, &[("m".into(), m), ("n".into(), n)]).unwrap();
        let signature = kernel.signature(&args);
        if !vector_accesses(&kernel.variant(&signature).unwrap()).is_empty() {
            vectorized += 1;
        }
        let (mut vm_args, mut simt_args) = (args.clone(), args);
        kernel.launch(Backend::Vm, &mut vm_args).unwrap();
        kernel.launch(Backend::Simt, &mut simt_args).unwrap_or_else(|e| panic!("{dtype} BM={bm} BN={bn} W={warps} S={shift} {m}x{n}: {e}"));
        let (Arg::Tensor(x), Arg::Tensor(y)) = (&vm_args[3], &simt_args[3]) else { panic!() };
        assert!(x.data == y.data, "{dtype} BM={bm} BN={bn} W={warps} S={shift} {m}x{n} ({signature}): simulator and VM differ");
    }
    assert!(vectorized >= 10, "only {vectorized} of 40 configurations vectorized");
}
