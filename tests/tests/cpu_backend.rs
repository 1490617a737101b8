//! The Cranelift backend (`--backend cpu`, `tl_cpu`) against the simulator, bit for bit:
//! every shipped kernel and the test kernels run on both with the same random arguments (and
//! print the same lines), and faults are diagnostics at the source instruction.

use tl_compiler::dtype::DType;
use tl_runtime::{Arg, Backend, HostTensor, Kernel, Module};

fn same_bits(a: &[Arg], b: &[Arg]) -> Result<(), String> {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if let (Some(x), Some(y)) = (x.tensor(), y.tensor()) {
            // NaN payloads may differ (the machine's NaN against the simulator's).
            let same = |k: usize| x.code(k) == y.code(k) || (x.get(k).is_nan() && y.get(k).is_nan());
            if let Some(k) = (0..x.len()).find(|&k| !same(k)) {
                return Err(format!("argument {i} differs first at element {k}: cpu {} (code {:#x}), simt {} (code {:#x})", x.get(k), x.code(k), y.get(k), y.code(k)));
            }
        }
    }
    Ok(())
}

/// A one-block LIR program on the cpu backend and on the simulator, from the same arguments:
/// the cpu backend's arguments after the launch, once both agree bit for bit.
fn run_lir_on_both(text: &str, arguments: Vec<tl_vm::interp::Arg>) -> Vec<tl_vm::interp::Arg> {
    let program = tl_compiler::lir::parse::parse(text).unwrap_or_else(|e| panic!("{e:?}"));
    tl_compiler::lir::verify::verify(&program).unwrap_or_else(|e| panic!("{e:?}"));
    let (mut cpu, mut simt) = (arguments.clone(), arguments);
    tl_cpu::compile(&program).unwrap_or_else(|e| panic!("{e}")).launch([1, 1, 1], &mut cpu).unwrap_or_else(|e| panic!("{e}"));
    tl_vm::simt::launch(&program, [1, 1, 1], &mut simt).unwrap_or_else(|e| panic!("{e}"));
    same_bits(&cpu, &simt).unwrap_or_else(|e| panic!("{e}"));
    cpu
}

fn kernels_of(path: &std::path::Path) -> Vec<Kernel> {
    let module = Module::from_file(path).unwrap_or_else(|e| panic!("{e}"));
    module.kernel_names().iter().map(|n| module.kernel(Some(n), &[]).unwrap_or_else(|e| panic!("{n}: {e}"))).collect()
}

#[test]
fn kernels_run_bit_exact_with_the_simulator() {
    let root = tl_tests::repo_root();
    let mut files = tl_tests::shipped_kernel_files();
    for name in ["gathers", "math_functions", "bit_operations", "atomics", "index_tiles", "tile_scalars", "scalar_arguments", "print"] {
        files.push(root.join(format!("tests/kernels/{name}.tl")));
    }
    let (mut ran, mut printing) = (Vec::new(), 0);
    for path in files {
        for kernel in kernels_of(&path) {
            let name = format!("{}:{}", path.file_name().unwrap().to_string_lossy(), kernel.name());
            // Small sizes: the simulator is the slow side.
            let mut simt = kernel.random_args(11, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut cpu = simt.clone();
            let grid = tl_vm::interp::eval_grid(&kernel.compiled.kernel, &simt).unwrap();
            let program = kernel.variant(&kernel.signature(&simt)).unwrap();
            let cpu_program = kernel.cpu_program(&kernel.signature(&cpu)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut cpu_lines = cpu_program.launch_with_output(grid, &mut cpu, None).unwrap_or_else(|e| panic!("{name} on cpu: {e}"));
            let (_, mut simt_lines) = tl_vm::simt::launch_with_output(&program, grid, &mut simt).unwrap_or_else(|e| panic!("{name} on simt: {e}"));
            same_bits(&cpu, &simt).unwrap_or_else(|e| panic!("{name}: cpu and simt differ: {e}"));
            // Printed lines: the same, in each backend's own order.
            cpu_lines.sort();
            simt_lines.sort();
            assert_eq!(cpu_lines, simt_lines, "{name}: printed lines differ");
            printing += usize::from(!cpu_lines.is_empty());
            ran.push(name);
        }
    }
    println!("bit-exact with the simulator: {} kernels: {ran:?}", ran.len());
    assert!(ran.len() >= 26, "too few kernels ran: {ran:?}");
    assert!(printing >= 1, "no kernel printed");
}

/// An integer division by zero stops the launch with the division's source line.
#[test]
fn faults_are_diagnostics_at_the_source() {
    let source = "kernel k(x: global i32[64], y: global i32[64], z: global mut i32[64]) grid(1) warps(2) {\n    store(z, load(x, [0], [64]) / load(y, [0], [64]), [0]);\n}\n";
    let kernel = Module::from_source("div.tl", source).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{e}"));
    let mut args = kernel.random_args(3, &[]).unwrap();
    if let Arg::Tensor(t) = &mut args[1] {
        t.data[40..44].copy_from_slice(&0i32.to_le_bytes());
    }
    let error = kernel.launch(Backend::Cpu, &mut args).expect_err("a division by zero");
    let text = error.to_string();
    assert!(text.contains("division by zero") && text.contains("div.tl:2"), "{text}");
}

/// Compiled code is reused: a second launch of the same variant compiles nothing.
#[test]
fn compiled_code_is_reused_across_launches() {
    let path = tl_tests::repo_root().join("examples/vector_add.tl");
    let kernel = &kernels_of(&path)[0];
    let mut args = kernel.random_args(5, &[]).unwrap();
    let signature = kernel.signature(&args);
    let first = kernel.cpu_program(&signature).unwrap();
    kernel.launch(Backend::Cpu, &mut args).unwrap();
    let second = kernel.cpu_program(&signature).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    assert!(first.clif().contains("function"), "{}", first.clif());
}

/// Machine code kept in the compile cache: a second module on the same cache directory (as
/// the next process would be) gets the code from the cache, and it computes the same bits as
/// the code Cranelift compiled and as the simulator, with every kind of table the code reads
/// (a chain of f16 operations, the 16-bit `exp` table, the inline f32 `exp`'s table). A
/// damaged entry is compiled again, with a warning.
#[test]
fn machine_code_from_the_cache_computes_what_the_compiled_code_does() {
    let source = "
kernel tables(n: i32, h: global f16[n], x: global f32[n], chain: global mut f16[n], e16: global mut f16[n], e32: global mut f32[n]) grid(cdiv(n, 256)) warps(2) {
    let a = load(h, [block.x * 256], [256]);
    let b = load(x, [block.x * 256], [256]);
    store(chain, a * sigmoid(a, approx = true), [block.x * 256]);
    store(e16, exp(a, approx = true), [block.x * 256]);
    store(e32, exp(b, approx = true), [block.x * 256]);
}
";
    let directory = tl_tests::scratch_directory("native_cache");
    let args = {
        let kernel = Module::from_source("tables.tl", source).unwrap().kernel(None, &[]).unwrap();
        kernel.random_args_with_scalars(3, &[("n".to_string(), tl_runtime::Number::Int(1000))], u64::MAX).unwrap()
    };
    // Runs the kernel on the cpu backend with a fresh module on the cache: the outputs, whether
    // the code came from the cache, and the cache's warnings.
    let run = || {
        let cache = std::sync::Arc::new(tl_runtime::cache::DiskCache::at(&directory));
        let kernel = Module::from_source("tables.tl", source).unwrap().with_cache(cache.clone()).kernel(None, &[]).unwrap();
        let mut out = args.clone();
        let from_cache = kernel.cpu_program(&kernel.signature(&out)).unwrap().from_cache();
        kernel.launch(Backend::Cpu, &mut out).unwrap_or_else(|e| panic!("{e}"));
        (out, from_cache, cache.warnings())
    };
    let (compiled, from_cache, _) = run();
    assert!(!from_cache);
    let mut simt = args.clone();
    Module::from_source("tables.tl", source).unwrap().kernel(None, &[]).unwrap().launch(Backend::Simt, &mut simt).unwrap();
    same_bits(&compiled, &simt).unwrap_or_else(|e| panic!("compiled code against simt: {e}"));
    assert!(compiled[3].tensor().unwrap().to_f64().iter().any(|v| v.is_finite() && *v != 0.0), "the outputs were written");

    let (cached, from_cache, warnings) = run();
    assert!(from_cache && warnings.is_empty(), "{warnings:?}");
    same_bits(&cached, &compiled).unwrap_or_else(|e| panic!("cached code against compiled code: {e}"));

    let entries: Vec<_> = std::fs::read_dir(&directory).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&entries[0], &bytes).unwrap();
    let (recompiled, from_cache, warnings) = run();
    assert!(!from_cache && warnings.len() == 1 && warnings[0].contains("damaged"), "{warnings:?}");
    same_bits(&recompiled, &compiled).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(&directory);
}

/// Blocks run in parallel: one thread and eight give the same bytes (race-free kernels,
/// integer atomics, whose sums do not depend on the order, and float atomics into an output
/// nothing else touches, whose additions are applied in grid order: split-K's partial sums).
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let root = tl_tests::repo_root();
    for file in ["stdlib/kernels/softmax.tl", "examples/rotary.tl", "examples/embedding.tl", "tests/kernels/gathers.tl", "examples/split_k.tl", "tests/kernels/atomics.tl"] {
        for kernel in kernels_of(&root.join(file)) {
            let args = kernel.random_args(23, &[]).unwrap();
            let signature = kernel.signature(&args);
            let program = kernel.cpu_program(&signature).unwrap();
            let grid = tl_vm::interp::eval_grid(&kernel.compiled.kernel, &args).unwrap();
            let (mut one, mut eight) = (args.clone(), args);
            program.launch_with_threads(grid, &mut one, Some(1)).unwrap();
            program.launch_with_threads(grid, &mut eight, Some(8)).unwrap();
            same_bits(&one, &eight).unwrap_or_else(|e| panic!("{}: {e}", kernel.name()));
        }
    }
}

/// The cpu backend converts between f32 and the 16-bit floats with inline integer code; each
/// conversion against the `half` crate (an independent implementation; the simulator uses it
/// too, through f64): every f16 and bf16 value to f32, and f32 values to both (every exponent
/// with edge and random mantissas, the rounding ties, the overflow boundary, NaNs, zeros).
#[test]
fn sixteen_bit_conversions_match_the_half_crate() {
    let source = "
kernel widen(n: i32, h: global f16[n], b: global bf16[n], hw: global mut f32[n], bw: global mut f32[n]) grid(cdiv(n, 1024)) warps(4) {
    store(hw, cast<f32>(load(h, [block.x * 1024], [1024])), [block.x * 1024]);
    store(bw, cast<f32>(load(b, [block.x * 1024], [1024])), [block.x * 1024]);
}
kernel narrow(n: i32, x: global f32[n], h: global mut f16[n], b: global mut bf16[n], hw: global mut f32[n], bw: global mut f32[n]) grid(cdiv(n, 1024)) warps(4) {
    let t = load(x, [block.x * 1024], [1024]);
    store(h, cast<f16>(t), [block.x * 1024]);
    store(b, cast<bf16>(t), [block.x * 1024]);
    store(hw, cast<f32>(cast<f16>(t)), [block.x * 1024]);
    store(bw, cast<f32>(cast<bf16>(t)), [block.x * 1024]);
}
";
    let module = Module::from_source("conversions.tl", source).unwrap_or_else(|e| panic!("{e}"));
    let int = |v: usize| Arg::Scalar(tl_runtime::Number::Int((v as i64).into()));
    let tensor = |dtype: DType, codes: &[u64]| Arg::from(HostTensor::from_codes(dtype, &[codes.len()], codes));
    let codes = |arg: &Arg| -> Vec<u64> {
        let t = arg.tensor().unwrap();
        (0..t.len()).map(|k| t.code(k)).collect()
    };
    let quiet_nan = |bits: u32| f32::from_bits(bits).is_nan();

    let all: Vec<u64> = (0..1u64 << 16).collect();
    let poison = vec![0x7fc0_1234u64; all.len()];
    let mut args = vec![int(all.len()), tensor(DType::F16, &all), tensor(DType::BF16, &all), tensor(DType::F32, &poison), tensor(DType::F32, &poison)];
    module.kernel(Some("widen"), &[]).unwrap().launch(Backend::Cpu, &mut args).unwrap_or_else(|e| panic!("{e}"));
    let (from_f16, from_bf16) = (codes(&args[3]), codes(&args[4]));
    for (k, &bits) in all.iter().enumerate() {
        let want_h = half::f16::from_bits(bits as u16).to_f32().to_bits();
        let want_b = half::bf16::from_bits(bits as u16).to_f32().to_bits();
        // A NaN must stay a NaN; its payload is not part of the contract.
        let same = |got: u64, want: u32| got as u32 == want || (quiet_nan(want) && quiet_nan(got as u32));
        assert!(same(from_f16[k], want_h), "f16 {bits:#06x} → f32: {:#010x}, half says {want_h:#010x}", from_f16[k]);
        assert!(same(from_bf16[k], want_b), "bf16 {bits:#06x} → f32: {:#010x}, half says {want_b:#010x}", from_bf16[k]);
    }

    let mut rng = tl_tests::Rng(0x16b);
    let mut inputs: Vec<u32> = Vec::new();
    for exponent in 0..256u32 {
        for mantissa in [0, 1, 0x1000, 0x0fff, 0x2000, 0x3000, 0x7000, 0x8000, 0x18000, 0x7f_ffff, 0x40_0000] {
            inputs.push(exponent << 23 | mantissa);
        }
        for _ in 0..64 {
            inputs.push(exponent << 23 | (rng.next() as u32 & 0x7f_ffff));
        }
    }
    // Around the largest finite f16 (65504) and the point where f16 rounds to infinity (65520).
    for base in [65504.0f32, 65520.0, 6.1035156e-5, 5.9604645e-8, 2.9802322e-8] {
        let b = base.to_bits();
        inputs.extend((b - 8..b + 8).collect::<Vec<_>>());
    }
    let inputs: Vec<u64> = inputs.iter().flat_map(|&b| [u64::from(b), u64::from(b | 0x8000_0000)]).collect();
    let poison = vec![0x7fc0_1234u64; inputs.len()];
    let mut args = vec![int(inputs.len()), tensor(DType::F32, &inputs), tensor(DType::F16, &vec![0x7e01; inputs.len()]), tensor(DType::BF16, &vec![0x7fc1; inputs.len()]), tensor(DType::F32, &poison), tensor(DType::F32, &poison)];
    module.kernel(Some("narrow"), &[]).unwrap().launch(Backend::Cpu, &mut args).unwrap_or_else(|e| panic!("{e}"));
    let (to_f16, to_bf16) = (codes(&args[2]), codes(&args[3]));
    // The round trip in one block is computed without leaving f32 (`codegen::sixteen_bit`).
    let (through_f16, through_bf16) = (codes(&args[4]), codes(&args[5]));
    for (k, &bits) in inputs.iter().enumerate() {
        let x = f32::from_bits(bits as u32);
        let (want_h, want_b) = (half::f16::from_f32(x), half::bf16::from_f32(x));
        let same_h = to_f16[k] as u16 == want_h.to_bits() || (want_h.is_nan() && half::f16::from_bits(to_f16[k] as u16).is_nan());
        let same_b = to_bf16[k] as u16 == want_b.to_bits() || (want_b.is_nan() && half::bf16::from_bits(to_bf16[k] as u16).is_nan());
        assert!(same_h, "f32 {bits:#010x} ({x:e}) → f16: {:#06x}, half says {:#06x}", to_f16[k], want_h.to_bits());
        assert!(same_b, "f32 {bits:#010x} ({x:e}) → bf16: {:#06x}, half says {:#06x}", to_bf16[k], want_b.to_bits());
        let (back_h, back_b) = (want_h.to_f32().to_bits(), want_b.to_f32().to_bits());
        let same = |got: u64, want: u32| got as u32 == want || (quiet_nan(want) && quiet_nan(got as u32));
        assert!(same(through_f16[k], back_h), "f32 {bits:#010x} ({x:e}) → f16 → f32: {:#010x}, half says {back_h:#010x}", through_f16[k]);
        assert!(same(through_bf16[k], back_b), "f32 {bits:#010x} ({x:e}) → bf16 → f32: {:#010x}, half says {back_b:#010x}", through_bf16[k]);
    }
}

/// f64 → f16 and f64 → bf16 in one rounding, against an oracle written from the definition
/// (the nearest of the format's values, ties to the even code, past the largest value by half
/// its spacing to infinity), on values at, just beside and between the midpoints of both
/// formats: where rounding through f32 first would land on a midpoint and go the wrong way.
#[test]
fn conversions_from_f64_round_once() {
    let source = "
kernel narrow(n: i32, x: global f64[n], h: global mut f16[n], b: global mut bf16[n]) grid(cdiv(n, 256)) warps(2) {
    let t = load(x, [block.x * 256], [256]);
    store(h, cast<f16>(t), [block.x * 256]);
    store(b, cast<bf16>(t), [block.x * 256]);
}
";
    // The non-negative finite values of a format (by code, increasing), then one more step
    // for infinity (its code even, so an exact tie past the largest value goes there).
    let values = |largest: u16, value: &dyn Fn(u16) -> f64| -> Vec<(u16, f64)> {
        let mut v: Vec<(u16, f64)> = (0..=largest).map(|c| (c, value(c))).collect();
        let step = v[largest as usize].1 - v[largest as usize - 1].1;
        v.push((largest + 1, v[largest as usize].1 + step));
        v
    };
    let f16_values = values(0x7bff, &|c| half::f16::from_bits(c).to_f64());
    let bf16_values = values(0x7f7f, &|c| half::bf16::from_bits(c).to_f64());
    let oracle = |table: &[(u16, f64)], x: f64| -> u16 {
        let sign = if x.is_sign_negative() { 0x8000 } else { 0 };
        let a = x.abs();
        let above = table.partition_point(|&(_, v)| v < a);
        let code = if above == table.len() {
            table[table.len() - 1].0
        } else if table[above].1 == a || above == 0 {
            table[above].0
        } else {
            let ((low_code, low), (high_code, high)) = (table[above - 1], table[above]);
            // Adjacent values: both differences are exact in f64.
            match (a - low).partial_cmp(&(high - a)).unwrap() {
                std::cmp::Ordering::Less => low_code,
                std::cmp::Ordering::Greater => high_code,
                std::cmp::Ordering::Equal => if low_code % 2 == 0 { low_code } else { high_code },
            }
        };
        code | sign
    };
    let mut rng = tl_tests::Rng(0xf64);
    let mut inputs: Vec<f64> = vec![0.0, 1.0 + 2f64.powi(-11) + 2f64.powi(-40), 65519.99, 65520.0, 65520.0 + 1e-9, 1e-9, 2f64.powi(-25), 2f64.powi(-25) * (1.0 + 1e-12)];
    for table in [&f16_values, &bf16_values] {
        for _ in 0..600 {
            let k = (rng.next() % (table.len() as u64 - 2)) as usize;
            let (low, high) = (table[k].1, table[k + 1].1);
            let middle = low + (high - low) / 2.0;
            inputs.extend([low, middle, middle * (1.0 + 2f64.powi(-40)), middle * (1.0 - 2f64.powi(-40)), middle + (high - low) * 2f64.powi(-14), low + (high - low) * rng.unit()]);
        }
    }
    let inputs: Vec<f64> = inputs.iter().flat_map(|&x| [x, -x]).collect();
    let module = Module::from_source("narrow.tl", source).unwrap_or_else(|e| panic!("{e}"));
    let kernel = module.kernel(None, &[]).unwrap();
    let n = inputs.len();
    let mut args = vec![Arg::Scalar(tl_runtime::Number::Int((n as i64).into())), HostTensor::from_f64(DType::F64, &[n], &inputs).into(), HostTensor::from_codes(DType::F16, &[n], &vec![0x7e01; n]).into(), HostTensor::from_codes(DType::BF16, &[n], &vec![0x7fc1; n]).into()];
    for backend in [Backend::Cpu, Backend::Simt] {
        kernel.launch(backend, &mut args).unwrap_or_else(|e| panic!("{e}"));
        let (h, b) = (args[2].tensor().unwrap(), args[3].tensor().unwrap());
        for (k, &x) in inputs.iter().enumerate() {
            assert_eq!(h.code(k) as u16, oracle(&f16_values, x), "{}: f64 {x:e} ({:#018x}) → f16", backend.name(), x.to_bits());
            assert_eq!(b.code(k) as u16, oracle(&bf16_values, x), "{}: f64 {x:e} ({:#018x}) → bf16", backend.name(), x.to_bits());
        }
    }
}

/// f32 `exp` and `exp2` with `approx = true` (on the CPU backends, the exact functions rounded
/// once) are inline on the cpu backend (a polynomial, with the math library
/// called only where the inline value is too close to an f32 rounding midpoint to decide):
/// against the definition, the math library's f64 function rounded once to f32, on every
/// exponent (NaN, infinities, the edges of the inline range), random operands, and operands
/// whose exact results lie near midpoints, inside the band the call decides and just outside.
#[test]
fn exponentials_match_the_math_library() {
    let source = "
kernel exponentials(n: i32, x: global f32[n], e: global mut f32[n], e2: global mut f32[n]) grid(cdiv(n, 1024)) warps(4) {
    let t = load(x, [block.x * 1024], [1024]);
    store(e, exp(t, approx = true), [block.x * 1024]);
    store(e2, exp2(t, approx = true), [block.x * 1024]);
}
";
    let functions: [(&str, fn(f64) -> f64); 2] = [("exp", f64::exp), ("exp2", f64::exp2)];
    let definition = |f: fn(f64) -> f64, x: f32| f(f64::from(x)) as f32;
    let mut rng = tl_tests::Rng(0xe4);
    let mut inputs: Vec<u32> = Vec::new();
    for exponent in 0..256u32 {
        for mantissa in [0, 1, 0x40_0000, 0x7f_ffff] {
            inputs.push(exponent << 23 | mantissa);
        }
        for _ in 0..16 {
            inputs.push(exponent << 23 | (rng.next() as u32 & 0x7f_ffff));
        }
    }
    for edge in [-87.0f32, 88.0, -125.0, 127.0, -103.0, -149.0, 128.0, 89.0, -0.0] {
        inputs.extend((edge.to_bits() - 4..edge.to_bits() + 4).collect::<Vec<_>>());
    }
    for _ in 0..200_000 {
        inputs.push((rng.unit() as f32 * 260.0 - 130.0).to_bits());
    }
    // Operands whose exact result has its 29 bits below f32 precision near the midpoint
    // 2^28: inside 2^15 the inline code calls the library, beyond it decides alone (its
    // value being up to 12,500 f64 ulps off).
    let dropped_distance = |y: f64| ((y.to_bits() & ((1 << 29) - 1)) as i64 - (1 << 28)).abs();
    let (mut inside, mut beside) = ([0; 2], [0; 2]);
    for bits in (0.5f32.to_bits()..2.0f32.to_bits()).chain((-2.0f32).to_bits()..(-0.5f32).to_bits()) {
        let x = f32::from_bits(bits);
        for (i, (_, f)) in functions.iter().enumerate() {
            let d = dropped_distance(f(f64::from(x)));
            if d <= 1 << 15 {
                inside[i] += 1;
                inputs.push(bits);
            } else if d <= 1 << 17 {
                beside[i] += 1;
                inputs.push(bits);
            }
        }
    }
    assert!(inside.iter().chain(&beside).all(|&c| c > 0), "no operands near midpoints: inside {inside:?}, beside {beside:?}");

    let module = Module::from_source("exponentials.tl", source).unwrap_or_else(|e| panic!("{e}"));
    let kernel = module.kernel(None, &[]).unwrap();
    let n = inputs.len();
    let codes: Vec<u64> = inputs.iter().map(|&b| u64::from(b)).collect();
    let poison = vec![0x7fc0_1234u64; n];
    let mut args = vec![
        Arg::Scalar(tl_runtime::Number::Int((n as i64).into())),
        HostTensor::from_codes(DType::F32, &[n], &codes).into(),
        HostTensor::from_codes(DType::F32, &[n], &poison).into(),
        HostTensor::from_codes(DType::F32, &[n], &poison).into(),
    ];
    kernel.launch(Backend::Cpu, &mut args).unwrap_or_else(|e| panic!("{e}"));
    for (i, (name, f)) in functions.iter().enumerate() {
        let got = args[2 + i].tensor().unwrap();
        for (k, &bits) in inputs.iter().enumerate() {
            let (x, want) = (f32::from_bits(bits), definition(*f, f32::from_bits(bits)));
            let same = got.code(k) as u32 == want.to_bits() || (want.is_nan() && f32::from_bits(got.code(k) as u32).is_nan());
            assert!(same, "{name}({x:e} = {bits:#010x}): cpu {:#010x}, the library {:#010x}", got.code(k), want.to_bits());
        }
    }
}

/// Chains of operations on one f16 or bf16 value become tables on the cpu backend
/// (`codegen::tabulate`, built with the simulator's operations): every operand of each chain,
/// against the simulator.
#[test]
fn sixteen_bit_chains_match_the_simulator_on_every_operand() {
    let source = "
kernel chains(n: i32, h: global f16[n], b: global bf16[n], silu_h: global mut f16[n], silu_b: global mut bf16[n], rational: global mut f16[n], widened: global mut f16[n]) grid(cdiv(n, 1024)) warps(4) {
    let x = load(h, [block.x * 1024], [1024]);
    let z = load(b, [block.x * 1024], [1024]);
    store(silu_h, x * sigmoid(x, approx = true), [block.x * 1024]);
    store(silu_b, z * sigmoid(z), [block.x * 1024]);
    store(rational, (x * x + 1.0) / (x - 3.0), [block.x * 1024]);
    store(widened, cast<f16>(cast<f32>(x) * 0.1 + cast<f32>(x) * cast<f32>(x)), [block.x * 1024]);
}
";
    let module = Module::from_source("chains.tl", source).unwrap_or_else(|e| panic!("{e}"));
    let kernel = module.kernel(None, &[]).unwrap();
    let all: Vec<u64> = (0..1u64 << 16).collect();
    let n = all.len();
    let arguments = || -> Vec<Arg> {
        let mut args = vec![Arg::Scalar(tl_runtime::Number::Int((n as i64).into())), HostTensor::from_codes(DType::F16, &[n], &all).into(), HostTensor::from_codes(DType::BF16, &[n], &all).into()];
        args.extend([DType::F16, DType::BF16, DType::F16, DType::F16].map(|d| Arg::from(HostTensor::from_codes(d, &[n], &vec![0x7e01; n]))));
        args
    };
    let (mut cpu, mut simt) = (arguments(), arguments());
    kernel.launch(Backend::Cpu, &mut cpu).unwrap_or_else(|e| panic!("{e}"));
    kernel.launch(Backend::Simt, &mut simt).unwrap_or_else(|e| panic!("{e}"));
    same_bits(&cpu, &simt).unwrap_or_else(|e| panic!("{e}"));
}

/// Butterfly shuffles folded into the run that follows them (`codegen::phases`): one whose
/// run does not write its source (folded), one whose run does (not folded: a lane must still
/// read its partner's value from before the run), and a folded shuffle's destination read
/// again after a barrier. Against values computed here from the definition of `shfl.bfly`,
/// and against the simulator.
#[test]
fn folded_shuffles_read_the_values_from_before_the_run() {
    let text = "lir shuffles(x: ptr i32, y: ptr i32, z: ptr i32) threads(64) shared(0) {
  reg r0: i32
  reg r1: i32
  reg r2: i32
  reg r3: i32
  r0 = ld.global.i32 p0[cast.i64(tid)]
  r1 = shfl.bfly r0, 1
  r2 = add(mul(r0, 3:i32), r1)
  r3 = shfl.bfly r2, 6
  r2 = add(r2, 1000:i32)
  st.global p1[cast.i64(tid)] = add(mul(r3, 7:i32), r2)
  barrier
  st.global p2[cast.i64(tid)] = r1
}
";
    let x: Vec<i64> = (0..64).map(|t| (t * 37 + 11) % 101 - 20).collect();
    let codes = |v: &[i64]| v.iter().map(|&c| c as u32 as u64).collect::<Vec<u64>>();
    let poison = vec![0x5eed_5eedi64; 64];
    let arguments = || -> Vec<tl_vm::interp::Arg> { [&x, &poison, &poison].map(|v| HostTensor::from_codes(DType::I32, &[64], &codes(v)).into()).into() };
    let cpu = run_lir_on_both(text, arguments());
    let r2 = |t: usize| 3 * x[t] + x[t ^ 1];
    for t in 0..64 {
        let (y, z) = (cpu[1].tensor().unwrap().code(t) as u32 as i32, cpu[2].tensor().unwrap().code(t) as u32 as i32);
        assert_eq!(i64::from(y), 7 * r2(t ^ 6) + r2(t) + 1000, "y[{t}]");
        assert_eq!(i64::from(z), x[t ^ 1], "z[{t}]");
    }
}

/// `ldmatrix` row offsets computed at the end of the run before a chain of warp instructions
/// (`codegen::phases`), except where an offset reads a register an earlier instruction of the
/// chain writes: the second `ldmatrix` here addresses rows by what the first one loaded.
/// Against values computed here from the definition of `ldmatrix`, and against the simulator.
#[test]
fn staged_row_offsets_wait_for_the_registers_they_read() {
    let text = "lir chained(x: ptr i32, y: ptr i32, z: ptr i32) threads(32) shared(128) {
  reg r0: i32
  reg r1: i32
  reg r2: i32
  st.shared [mul(tid, 4:i32)] = ld.global.i32 p0[cast.i64(tid)]
  r1 = 0:i32
  barrier
  {r1} = ldmatrix.x1 [mul(rem(tid, 8:i32), 16:i32)]
  {r2} = ldmatrix.x1 [mul(and(r1, 7:i32), 16:i32)]
  {r0} = ldmatrix.x1 [mul(sub(7:i32, rem(tid, 8:i32)), 16:i32)]
  st.global p1[cast.i64(tid)] = r2
  st.global p2[cast.i64(tid)] = r0
}
";
    let words: Vec<i64> = (0..32).map(|t| (t * 0x9e37_79b9i64 + 0x1234_5679) & 0xffff_ffff).collect();
    let poison = vec![0x5eed_5eedi64; 32];
    let codes = |v: &[i64]| v.iter().map(|&c| c as u64).collect::<Vec<u64>>();
    let arguments = || -> Vec<tl_vm::interp::Arg> { [&words, &poison, &poison].map(|v| HostTensor::from_codes(DType::I32, &[32], &codes(v)).into()).into() };
    let cpu = run_lir_on_both(text, arguments());
    // Lane l receives the 4 bytes at (row offset of lane l / 4) + 4·(l % 4); the word at
    // byte b of shared memory is words[b / 4].
    let loaded = |row_offset: &dyn Fn(usize) -> usize, l: usize| words[(row_offset(l / 4) + 4 * (l % 4)) / 4];
    let first = |l: usize| loaded(&|r| 16 * r, l);
    for l in 0..32 {
        let (y, z) = (cpu[1].tensor().unwrap().code(l) as i64, cpu[2].tensor().unwrap().code(l) as i64);
        assert_eq!(y & 0xffff_ffff, loaded(&|r| 16 * (first(r) as usize & 7), l), "y[{l}]");
        assert_eq!(z & 0xffff_ffff, loaded(&|r| 16 * (7 - r), l), "z[{l}]");
    }
}

/// `cp.async` copies the `src_bytes` first bytes of its source and zeros the rest: whole
/// copies (word by word on the cpu backend), partial ones and empty ones, for every thread a
/// different count. Against the definition, and against the simulator.
#[test]
fn async_copies_zero_fill_past_the_source_bytes() {
    let text = "lir copies(x: ptr i32, y: ptr i32) threads(32) shared(512) {
  reg r0: i32
  r0 = rem(mul(tid, 5:i32), 17:i32)
  cp.async.16 [mul(tid, 16:i32)], p0[byte mul(cast.i64(tid), 16:i64)], src_bytes r0
  cp.async.commit_group
  cp.async.wait_group 0
  barrier
  st.global p1[mul(cast.i64(tid), 4:i64)] = ld.shared.i32 [mul(tid, 16:i32)]
  st.global p1[add(mul(cast.i64(tid), 4:i64), 1:i64)] = ld.shared.i32 [add(mul(tid, 16:i32), 4:i32)]
  st.global p1[add(mul(cast.i64(tid), 4:i64), 2:i64)] = ld.shared.i32 [add(mul(tid, 16:i32), 8:i32)]
  st.global p1[add(mul(cast.i64(tid), 4:i64), 3:i64)] = ld.shared.i32 [add(mul(tid, 16:i32), 12:i32)]
}
";
    let source: Vec<u64> = (0..128u64).map(|i| (i * 0x0101_0101 + 0x8040_2011) & 0xffff_ffff).collect();
    let arguments = || -> Vec<tl_vm::interp::Arg> { vec![HostTensor::from_codes(DType::I32, &[128], &source).into(), HostTensor::from_codes(DType::I32, &[128], &[0x5eed_5eed; 128]).into()] };
    let cpu = run_lir_on_both(text, arguments());
    let source_bytes: Vec<u8> = source.iter().flat_map(|&w| (w as u32).to_le_bytes()).collect();
    let got: Vec<u8> = (0..128).flat_map(|i| (cpu[1].tensor().unwrap().code(i) as u32).to_le_bytes()).collect();
    let mut counts = std::collections::BTreeSet::new();
    for t in 0..32 {
        let count = t * 5 % 17;
        counts.insert(count.min(16));
        for k in 0..16 {
            let want = if k < count { source_bytes[16 * t + k] } else { 0 };
            assert_eq!(got[16 * t + k], want, "thread {t} (src_bytes {count}), byte {k}");
        }
    }
    assert!(counts.contains(&0) && counts.contains(&16) && counts.len() > 10, "counts {counts:?}");
}

/// A chain of butterfly shuffles and operations computed a warp at a time in vectors
/// (`codegen::butterfly`): every f32 and i32 operation it takes, lane masks within a vector
/// (1, 2, 3), across vectors (8, 12) and both (5, 6, 19), a shuffle in place, operands in
/// either order, registers from before the chain, and intermediate values read after it. NaN,
/// both zeros and infinities among the f32 values. Against values computed here from the
/// definitions (lane t of `shfl.bfly v, m` is lane t ^ m's v; `min`/`max` ignore a NaN
/// operand and put −0 below +0), and against the simulator.
#[test]
fn butterfly_chains_compute_each_lane_as_the_definitions_do() {
    let text = "lir chains(x: ptr f32, k: ptr i32, y: ptr f32, z: ptr f32, u: ptr i32, w: ptr f32) threads(64) shared(0) {
  reg r0: f32
  reg r1: f32
  reg r2: f32
  reg r3: f32
  reg r4: f32
  reg r5: f32
  reg r6: i32
  reg r7: i32
  reg r8: i32
  reg r9: i32
  reg r10: i32
  reg r11: i32
  r0 = ld.global.f32 p0[cast.i64(tid)]
  r6 = ld.global.i32 p1[cast.i64(tid)]
  r1 = shfl.bfly r0, 1
  r2 = max(r0, r1)
  r3 = shfl.bfly r2, 6
  r2 = add(r3, r2)
  r3 = shfl.bfly r2, 19
  r4 = min(r2, r3)
  r4 = shfl.bfly r4, 8
  r5 = sub(r4, r0)
  r5 = mul(r5, r1)
  r7 = shfl.bfly r6, 2
  r8 = mul(r6, r7)
  r9 = shfl.bfly r8, 5
  r8 = add(r8, r9)
  r8 = sub(r9, r8)
  r10 = and(r8, r7)
  r10 = or(r10, r9)
  r10 = xor(r10, r6)
  r9 = shfl.bfly r10, 12
  r11 = max(r10, r9)
  r10 = min(r10, r9)
  r11 = umin(r11, r7)
  r10 = umax(r10, r8)
  r11 = add(r11, r10)
  r9 = shfl.bfly r11, 3
  r11 = max(r9, r11)
  st.global p2[cast.i64(tid)] = r5
  st.global p3[cast.i64(tid)] = r1
  st.global p4[cast.i64(tid)] = r11
  st.global p5[cast.i64(tid)] = r2
}
";
    const N: usize = 64;
    // Lanes 2 and 3 of each 16 are −0 and +0 (the first `max` meets both orders of the
    // zeros), lane 5 NaN beside a number, 6 and 12 infinities, 14 a subnormal.
    let x: Vec<f32> = (0..N)
        .map(|t| match t % 16 {
            2 => -0.0,
            3 => 0.0,
            5 => f32::NAN,
            6 => f32::INFINITY,
            12 => f32::NEG_INFINITY,
            14 => 1e-40,
            _ => ((t * 37 + 11) % 101) as f32 * 0.37 - 9.0,
        })
        .collect();
    let k: Vec<i32> = (0..N).map(|t| ((t as i64 * 0x9e37_79b9 + 0x1234_5679) >> 3) as i32).collect();
    let floats = |v: &[f32]| HostTensor::from_codes(DType::F32, &[N], &v.iter().map(|f| u64::from(f.to_bits())).collect::<Vec<_>>());
    let ints = |v: &[i32]| HostTensor::from_codes(DType::I32, &[N], &v.iter().map(|&i| u64::from(i as u32)).collect::<Vec<_>>());
    let poison_f = vec![f32::from_bits(0x7fc0_dead); N];
    let poison_i = vec![0x5eed_5eed; N];
    let arguments = vec![floats(&x).into(), ints(&k).into(), floats(&poison_f).into(), floats(&poison_f).into(), ints(&poison_i).into(), floats(&poison_f).into()];
    let cpu = run_lir_on_both(text, arguments);

    // The definitions, lane by lane.
    let shfl = |v: &[f32], m: usize| -> Vec<f32> { (0..N).map(|t| v[t ^ m]).collect() };
    let shfl_i = |v: &[i32], m: usize| -> Vec<i32> { (0..N).map(|t| v[t ^ m]).collect() };
    let number = |max: bool, a: f32, b: f32| -> f32 {
        if a.is_nan() {
            b
        } else if b.is_nan() {
            a
        } else if a == b {
            // Only the zeros differ among equal values.
            if (a.is_sign_negative() == max) { b } else { a }
        } else if (a > b) == max {
            a
        } else {
            b
        }
    };
    let zip = |a: &[f32], b: &[f32], f: &dyn Fn(f32, f32) -> f32| -> Vec<f32> { a.iter().zip(b).map(|(&a, &b)| f(a, b)).collect() };
    let zip_i = |a: &[i32], b: &[i32], f: &dyn Fn(i32, i32) -> i32| -> Vec<i32> { a.iter().zip(b).map(|(&a, &b)| f(a, b)).collect() };
    let r1 = shfl(&x, 1);
    let r2 = zip(&x, &r1, &|a, b| number(true, a, b));
    let r3 = shfl(&r2, 6);
    let r2 = zip(&r3, &r2, &|a, b| a + b);
    let r3 = shfl(&r2, 19);
    let r4 = shfl(&zip(&r2, &r3, &|a, b| number(false, a, b)), 8);
    let r5 = zip(&zip(&r4, &x, &|a, b| a - b), &r1, &|a, b| a * b);
    let r7 = shfl_i(&k, 2);
    let r8 = zip_i(&k, &r7, &|a, b| a.wrapping_mul(b));
    let r9 = shfl_i(&r8, 5);
    let r8 = zip_i(&r9, &zip_i(&r8, &r9, &|a, b| a.wrapping_add(b)), &|a, b| a.wrapping_sub(b));
    let r10 = zip_i(&zip_i(&zip_i(&r8, &r7, &|a, b| a & b), &r9, &|a, b| a | b), &k, &|a, b| a ^ b);
    let r9 = shfl_i(&r10, 12);
    let r11 = zip_i(&r10, &r9, &|a, b| a.max(b));
    let r10 = zip_i(&r10, &r9, &|a, b| a.min(b));
    let r11 = zip_i(&r11, &r7, &|a, b| (a as u32).min(b as u32) as i32);
    let r10 = zip_i(&r10, &r8, &|a, b| (a as u32).max(b as u32) as i32);
    let r11 = zip_i(&r11, &r10, &|a, b| a.wrapping_add(b));
    let r11 = zip_i(&shfl_i(&r11, 3), &r11, &|a, b| a.max(b));

    let float_at = |arg: usize, t: usize| f32::from_bits(cpu[arg].tensor().unwrap().code(t) as u32);
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    for t in 0..N {
        assert!(same(float_at(2, t), r5[t]), "y[{t}]: {} against {}", float_at(2, t), r5[t]);
        assert!(same(float_at(3, t), r1[t]), "z[{t}]: {} against {}", float_at(3, t), r1[t]);
        assert!(same(float_at(5, t), r2[t]), "w[{t}]: {} against {}", float_at(5, t), r2[t]);
        assert_eq!(cpu[4].tensor().unwrap().code(t) as u32 as i32, r11[t], "u[{t}]");
    }
    // Most results are ordinary numbers (the specials do not swamp the chain).
    assert!(r5.iter().filter(|v| v.is_finite() && **v != 0.0).count() > N / 4 && r11.iter().filter(|&&v| v != 0).count() > N / 2);
}

/// A warp instruction in a block that is not whole warps: the simulator faults on it, the cpu
/// backend refuses it (an error, not a read past the last thread's registers).
#[test]
fn warp_instructions_need_whole_warps() {
    let text = "lir partial(x: ptr f32) threads(48) shared(0) {
  reg r0: f32
  reg r1: f32
  r0 = cast.f32(tid)
  r1 = shfl.bfly r0, 16
  st.global p0[cast.i64(tid)] = r1
}
";
    let program = tl_compiler::lir::parse::parse(text).unwrap_or_else(|e| panic!("{e:?}"));
    tl_compiler::lir::verify::verify(&program).unwrap_or_else(|e| panic!("{e:?}"));
    let error = tl_cpu::compile(&program).expect_err("48 threads are not whole warps");
    assert!(matches!(error, tl_cpu::CpuError::NotWholeWarps(48)), "{error}");
    let mut arguments: Vec<tl_vm::interp::Arg> = vec![HostTensor::from_codes(DType::F32, &[48], &[0; 48]).into()];
    let fault = tl_vm::simt::launch(&program, [1, 1, 1], &mut arguments).expect_err("the simulator faults");
    assert!(fault.to_string().contains("whole warps"), "{fault}");
}
