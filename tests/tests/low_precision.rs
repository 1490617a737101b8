//! Low-precision formats through the whole compiler: packed loads and stores, casts between
//! formats and arithmetic through the compute type. The same kernel runs for many pairs of
//! formats on the VM and on the SIMT simulator (which runs the generated per-thread code,
//! with the bit-level decoders and encoders); the outputs must be bit-identical, and the
//! conversions must equal a host computation from `compiler::dtype`.

use tl_compiler::dtype::DType;
use tl_compiler::ir::ConstValue;
use tl_runtime::{Arg, Backend, HostTensor, Module};
use tl_tests::{repo_root, Rng};

fn formats() -> Vec<DType> {
    [
        "u1", "u2", "u3", "u4", "u7", "i2", "i3", "i4", "i7", "f3e1m1", "f4e2m1", "f5e2m2", "f6e2m3",
        "f6e3m2", "f7e3m3", "f7e5m1", "f8e4m3fn", "f8e5m2", "f8e4m3", "f8e3m4", "e8m0", "ue4m3", "ue5m3", "f16",
    ]
    .iter()
    .map(|n| DType::from_name(n).unwrap_or_else(|| panic!("{n}")))
    .collect()
}


fn random_codes(rng: &mut Rng, dtype: DType, n: usize) -> HostTensor {
    let codes: Vec<u64> = (0..n).map(|_| rng.next()).collect();
    HostTensor::from_codes(dtype, &[n], &codes)
}

/// An output poisoned with a byte pattern (the same on every backend).
fn poisoned(dtype: DType, n: usize) -> HostTensor {
    let mut t = HostTensor::zeros(dtype, &[n]);
    t.data.iter_mut().for_each(|b| *b = 0xA5);
    t
}

fn same_bits(a: &HostTensor, b: &HostTensor, i: usize) -> bool {
    let (x, y) = (a.get(i), b.get(i));
    a.code(i) == b.code(i) || (x.is_nan() && y.is_nan())
}

#[test]
fn vm_and_simt_agree_bit_for_bit_on_every_format_pair() {
    let module = Module::from_file(repo_root().join("tests/kernels/low_precision.tl")).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let targets: Vec<DType> = ["f32", "f16", "bf16", "f8e4m3fn", "f4e2m1", "e8m0", "i8", "u4", "i3"]
        .iter()
        .map(|n| DType::from_name(n).unwrap())
        .collect();
    let mut pairs = 0;
    for w in formats() {
        for &v in &targets {
            let consts = [("W".to_string(), ConstValue::DType(w)), ("V".to_string(), ConstValue::DType(v))];
            let kernel = module.kernel(None, &consts).unwrap_or_else(|e| panic!("{w} -> {v}: {e}"));
            let n = 150 + (rng.next() % 100) as usize; // ragged: not a multiple of the block
            let (x, y) = (random_codes(&mut rng, w, n), random_codes(&mut rng, w, n));
            // f64 inputs: random values around the format's range, some exactly on ties of
            // the target (decoded codes plus half a step), some off by one f64 ulp from them.
            let f64_values: Vec<f64> = (0..n)
                .map(|k| {
                    let a = w.decode(rng.next());
                    let b = w.decode(rng.next());
                    let mid = if a.is_finite() && b.is_finite() { (a + b) / 2.0 } else { 1.0 };
                    match k % 3 {
                        0 => mid,
                        1 => f64::from_bits(mid.to_bits().wrapping_add(1)),
                        _ => mid * (1.0 + 2f64.powi(-30)),
                    }
                })
                .collect();
            let f = HostTensor::from_f64(DType::F64, &[n], &f64_values);
            let i32_values: Vec<f64> = (0..n).map(|_| ((rng.next() as i64) >> (rng.next() % 60)) as i32 as f64).collect();
            let i = HostTensor::from_f64(DType::I32, &[n], &i32_values);
            let args = vec![
                Arg::scalar(n as i64),
                x.clone().into(),
                y.clone().into(),
                f.clone().into(),
                i.clone().into(),
                poisoned(v, n).into(),
                poisoned(w, n).into(),
                poisoned(w, n).into(),
                poisoned(w, n).into(),
                poisoned(w, n).into(),
                poisoned(w, n).into(),
            ];
            let mut vm_args = args.clone();
            kernel.launch(Backend::Vm, &mut vm_args).unwrap_or_else(|e| panic!("{w} -> {v} vm: {e}"));
            let mut simt_args = args.clone();
            kernel.launch(Backend::Simt, &mut simt_args).unwrap_or_else(|e| panic!("{w} -> {v} simt: {e}"));
            for (slot, what) in [(5, "wide"), (6, "back"), (7, "product"), (8, "literals"), (9, "from_f64"), (10, "from_i32")] {
                let (a, b) = (vm_args[slot].tensor().unwrap(), simt_args[slot].tensor().unwrap());
                for k in 0..n {
                    assert!(
                        same_bits(a, b, k),
                        "{w} -> {v}, output {what}[{k}] (x = {}, y = {}, f = {:e}, i = {}): vm code {:#x} ({}), simt code {:#x} ({})",
                        x.get(k),
                        y.get(k),
                        f.get(k),
                        i.get(k),
                        a.code(k),
                        a.get(k),
                        b.code(k),
                        b.get(k)
                    );
                }
            }
            // The conversions against the format definitions directly (one rounding each).
            let (wide, back) = (vm_args[5].tensor().unwrap(), vm_args[6].tensor().unwrap());
            let (from_f64, from_i32) = (vm_args[9].tensor().unwrap(), vm_args[10].tensor().unwrap());
            let agrees = |t: &HostTensor, d: DType, k: usize, expected: u64| t.code(k) == expected || (t.get(k).is_nan() && d.decode(expected).is_nan());
            for k in 0..n {
                assert!(agrees(wide, v, k, v.encode(x.get(k))), "{w} -> {v}: wide[{k}] of {}", x.get(k));
                let expected = w.encode(DType::F32.round(DType::F32.round(y.get(k)) * 3.0 - 0.5));
                assert!(agrees(back, w, k, expected), "{w}: back[{k}] of {}", y.get(k));
                assert!(agrees(from_f64, w, k, w.encode(f.get(k))), "{w}: from_f64[{k}] of {:e}", f.get(k));
                assert!(agrees(from_i32, w, k, w.encode(i.get(k))), "{w}: from_i32[{k}] of {}", i.get(k));
            }
            pairs += 1;
        }
    }
    println!("{pairs} format pairs agree");
}

#[test]
fn integer_operations_on_sub_byte_integers_agree() {
    let module = Module::from_file(repo_root().join("tests/kernels/low_precision.tl")).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(0x0bad_cafe_1234_5679);
    for name in ["u1", "u2", "u3", "u4", "u7", "i2", "i3", "i4", "i7"] {
        let w = DType::from_name(name).unwrap();
        let kernel = module.kernel(Some("integer_ops"), &[("W".to_string(), ConstValue::DType(w))]).unwrap_or_else(|e| panic!("{e}"));
        let n = 200;
        let (x, y) = (random_codes(&mut rng, w, n), random_codes(&mut rng, w, n));
        let args = vec![Arg::scalar(n as i64), x.clone().into(), y.clone().into(), poisoned(w, n).into(), poisoned(w, n).into(), poisoned(w, n).into()];
        let (mut vm_args, mut simt_args) = (args.clone(), args);
        kernel.launch(Backend::Vm, &mut vm_args).unwrap_or_else(|e| panic!("{w} vm: {e}"));
        kernel.launch(Backend::Simt, &mut simt_args).unwrap_or_else(|e| panic!("{w} simt: {e}"));
        let (lo, hi) = w.int_range().unwrap();
        for k in 0..n {
            let (a, b) = (x.get(k) as i128, y.get(k) as i128);
            // Host expectations: `!` flips the dtype's bits; results saturate into the range.
            let flipped = if w.is_signed_int() { !a } else { hi - a };
            let expected = [flipped, a.max(b), (a - b).clamp(lo, hi)];
            for (slot, want) in [3usize, 4, 5].into_iter().zip(expected) {
                for (backend, out) in [("vm", &vm_args), ("simt", &simt_args)] {
                    let got = out[slot].tensor().unwrap().get(k);
                    assert_eq!(got, want as f64, "{w} on {backend}: output {slot} at {k} for x = {a}, y = {b}");
                }
            }
        }
    }
}

/// `view` between every pair of formats whose row widths divide: the VM (on the logical tile)
/// and SIMT (the generated shifts, or the exchange through shared memory) agree bit for bit,
/// and viewing back gives the input codes. (`tests/tests/view.rs` checks against the host.)
#[test]
fn view_reinterprets_bits_per_thread_and_round_trips() {
    let source = |columns: usize| {
        format!(
            "kernel reinterpret<W: dtype = u8, V: dtype = u4, R = 4, C = {columns}, D = 1>(
                x: global W[R, C], y: global mut V[R, D], z: global mut W[R, C],
            ) grid(1) warps(1) {{
                let t = load(x, [0, 0], [R, C]);
                let v = view<V>(t);
                store(y, v, [0, 0]);
                store(z, view<W>(v), [0, 0]);
            }}"
        )
    };
    let names = ["u8", "i8", "u4", "i4", "u3", "u2", "f6e3m2", "f4e2m1", "f8e4m3fn", "e8m0", "f16", "bf16", "i16", "u1", "f32", "i32"];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut ran, mut round_tripped) = (0, 0);
    for (columns, from_name) in [(48usize, names), (96, names)].iter().flat_map(|(c, ns)| ns.iter().map(move |n| (*c, *n))) {
        for to_name in names {
            let (w, v) = (DType::from_name(from_name).unwrap(), DType::from_name(to_name).unwrap());
            let total = columns * w.bits() as usize;
            if total % v.bits() as usize != 0 {
                continue;
            }
            let d = total / v.bits() as usize;
            let module = Module::from_source("view.tl", &source(columns)).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
            let consts = [
                ("W".to_string(), ConstValue::DType(w)),
                ("V".to_string(), ConstValue::DType(v)),
                ("D".to_string(), ConstValue::Int(d as i64)),
            ];
            let kernel = module.kernel(None, &consts).unwrap_or_else(|e| panic!("{w} -> {v}: {e}"));
            // Random codes, NaN codes excluded (the VM holds values, so NaN payloads are not kept).
            let codes: Vec<u64> = (0..4 * columns)
                .map(|_| loop {
                    let c = rng.next();
                    if !w.decode(c).is_nan() {
                        break c;
                    }
                })
                .collect();
            let x = HostTensor::from_codes(w, &[4, columns], &codes);
            let args = vec![x.clone().into(), poisoned(v, 4 * d).into(), poisoned(w, 4 * columns).into()];
            let (mut vm_args, mut simt_args) = (args.clone(), args);
            for a in [&mut vm_args, &mut simt_args] {
                if let Arg::Tensor(t) = &mut a[1] {
                    t.shape = vec![4, d];
                }
                if let Arg::Tensor(t) = &mut a[2] {
                    t.shape = vec![4, columns];
                }
            }
            kernel.launch(Backend::Vm, &mut vm_args).unwrap_or_else(|e| panic!("{w} -> {v} vm: {e}"));
            kernel.launch(Backend::Simt, &mut simt_args).unwrap_or_else(|e| panic!("{w} -> {v} simt: {e}"));
            let (vm_y, simt_y) = (vm_args[1].tensor().unwrap(), simt_args[1].tensor().unwrap());
            for i in 0..4 * d {
                assert!(same_bits(vm_y, simt_y, i), "{w} -> {v}: y[{i}] vm {:#x} simt {:#x}", vm_y.code(i), simt_y.code(i));
            }
            // The VM holds values, and the simulator holds float registers as values too, so a
            // NaN in the middle loses its payload (it becomes the canonical NaN): round trips are
            // exact only without NaN in between (the GPU keeps the bits).
            let kept_bits = (0..4 * d).all(|i| !vm_y.get(i).is_nan());
            let round_trips: Vec<&Arg> = if kept_bits { vec![&vm_args[2], &simt_args[2]] } else { vec![] };
            round_tripped += kept_bits as usize;
            for out in round_trips {
                let z = out.tensor().unwrap();
                for i in 0..4 * columns {
                    assert!(same_bits(z, &x, i), "{w} -> {v} -> {w}: z[{i}] = {:#x}, input {:#x}", z.code(i), x.code(i));
                }
            }
            ran += 1;
        }
    }
    println!("view: {ran} format pairs ran ({round_tripped} round trips checked)");
    assert!(ran >= 100 && round_tripped >= 100, "only {ran} view pairs ran, {round_tripped} round trips checked");
}

/// The generated code of packed loads and stores (atomic and/or on bytes), the bit-level
/// decoders and encoders and `view` assembles with ptxas for both architectures.
#[test]
fn low_precision_kernels_assemble_with_ptxas() {
    use tl_compiler::backend::{Arch, ptxas};
    if !tl_tests::ptxas_available("low_precision") {
        return;
    }
    let convert = Module::from_file(repo_root().join("tests/kernels/low_precision.tl")).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
    let view = Module::from_source(
        "view.tl",
        "kernel v<W: dtype = u8, V: dtype = u4>(x: global W[4, 48], y: global mut V[4, 96]) grid(1) warps(1) {
            store(y, view<V>(load(x, [0, 0], [4, 48])), [0, 0]);
        }",
    ).map(|m| m.with_code_generator(tl_ptx::code_generator()))
    .unwrap_or_else(|e| panic!("{e}"));
    for (w, v) in [("u3", "f8e4m3fn"), ("f6e3m2", "e8m0"), ("i4", "f16"), ("e8m0", "ue4m3"), ("f4e2m1", "f8e5m2")] {
        let consts = [
            ("W".to_string(), ConstValue::DType(DType::from_name(w).unwrap())),
            ("V".to_string(), ConstValue::DType(DType::from_name(v).unwrap())),
        ];
        let kernel = convert.kernel(None, &consts).unwrap_or_else(|e| panic!("{e}"));
        for arch in Arch::ALL {
            let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{w} -> {v}: {e}"));
            ptxas::assemble(ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected convert {w} -> {v} for {}: {e}", arch.name()));
        }
    }
    let consts = [("W".to_string(), ConstValue::DType(DType::U8)), ("V".to_string(), ConstValue::DType(DType::U4))];
    let kernel = view.kernel(None, &consts).unwrap_or_else(|e| panic!("{e}"));
    for arch in Arch::ALL {
        ptxas::assemble(kernel.ptx(arch).unwrap(), arch).unwrap_or_else(|e| panic!("ptxas rejected view for {}: {e}", arch.name()));
    }
}
