//! The PTX of kernels whose other checks run on the CPU backends (`overflow.rs`, `print.rs`,
//! `pipeline.rs`, `exact_integers.rs`): what the generated code must and must not contain, and
//! that ptxas assembles it for sm_80 and sm_90a. They live in one binary so that the others do
//! not link LLVM (ARCHITECTURE.md, "Build boundaries").

use tl_compiler::backend::{ptxas, Arch};
use tl_runtime::{Kernel, Module};
use tl_tests::repo_root;

fn from_source(name: &str, source: &str) -> Kernel {
    Module::from_source(name, source).map(|m| m.with_code_generator(tl_ptx::code_generator())).and_then(|m| m.kernel(None, &[])).unwrap_or_else(|e| panic!("{source}\n{e}"))
}

fn from_file(path: &str) -> Kernel {
    let source = std::fs::read_to_string(repo_root().join(path)).unwrap();
    from_source(path, &source)
}

/// ptxas assembles `kernel` for both architectures (when ptxas is installed).
fn assembles(test: &str, kernel: &Kernel) {
    if !tl_tests::ptxas_available(test) {
        return;
    }
    for arch in Arch::ALL {
        let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{e}"));
        ptxas::assemble(ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected `{}` for {}: {e}", kernel.name(), arch.name()));
    }
}

/// Bit operations on integers of every width assemble (the shifts' amount rule adds selects
/// and a minimum, the widths below 8 bits a wrap back to their bits).
#[test]
fn bit_operations_assemble_for_every_width() {
    let source = std::fs::read_to_string(repo_root().join("tests/kernels/bit_operations.tl")).unwrap();
    let module = Module::from_source("bit_operations.tl", &source).unwrap().with_code_generator(tl_ptx::code_generator());
    for d in ["u1", "i3", "u4", "i4", "u8", "i8", "i16", "u32", "i64", "u64"] {
        let consts = [("T".to_string(), tl_compiler::ir::ConstValue::parse(d).unwrap())];
        let kernel = module.kernel(None, &consts).unwrap_or_else(|e| panic!("{d}: {e}"));
        assembles(&format!("bit_operations {d}"), &kernel);
    }
}

/// `atomic_add` becomes an atomic reduction in global memory for every dtype that has one
/// (bf16 on sm_80 a compare-and-swap loop), and assembles.
#[test]
fn atomic_adds_assemble_for_every_dtype() {
    let source = std::fs::read_to_string(repo_root().join("tests/kernels/atomics.tl")).unwrap();
    let module = Module::from_source("atomics.tl", &source).unwrap().with_code_generator(tl_ptx::code_generator());
    for d in tl_compiler::ir::ATOMIC_ADD_DTYPES {
        let kernel = module.kernel(None, &[("T".to_string(), tl_compiler::ir::ConstValue::DType(d))]).unwrap_or_else(|e| panic!("{d}: {e}"));
        for arch in Arch::ALL {
            let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{d} {}: {e}", arch.name()));
            let want = if d == tl_compiler::dtype::DType::BF16 && arch == Arch::Sm80 { "atom.relaxed.gpu.global.cas.b32" } else { "atom.global.add" };
            let atomic = ptx.lines().any(|l| l.contains(want));
            assert!(atomic, "{d} on {}: no `{want}` in\n{ptx}", arch.name());
        }
        assembles(&format!("atomics {d}"), &kernel);
    }
}

/// Index tiles in every layout the test kernel gives them assemble.
#[test]
fn index_tiles_assemble() {
    assembles("index_tiles", &from_file("tests/kernels/index_tiles.tl"));
}

/// The overflow checks are `check.cpu`: the GPU code has no trap for them.
#[test]
fn overflow_checks_stay_off_the_gpu() {
    let kernel = from_source("overflow.tl", "kernel k(n: i32, x: global i32[32], y: global mut i32[32]) grid(1) warps(1) {\n    let t = load(x, [0], [32]);\n    store(y, t * n + 1, [0]);\n}\n");
    assert_eq!(kernel.compiled.lir.to_string().matches("check.cpu").count(), 2);
    for arch in Arch::ALL {
        let ptx = kernel.ptx(arch).unwrap();
        assert!(!ptx.contains("trap"), "{ptx}");
    }
    assembles("overflow", &kernel);
}

/// `print` calls `vprintf` with one format string per distinct line.
#[test]
fn print_compiles_to_vprintf_and_assembles() {
    let kernel = from_file("tests/kernels/print.tl");
    for arch in Arch::ALL {
        let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{e}"));
        assert!(ptx.contains("vprintf"), "{ptx}");
        // The format strings are byte arrays in PTX.
        let bytes = |text: &str| text.bytes().map(|b| b.to_string()).collect::<Vec<_>>().join(", ");
        assert!(ptx.contains(&bytes(": t[%d, %d] = %.8e\n")) && ptx.contains(&bytes(": row = %lld\n")), "{ptx}");
        assert_eq!(ptx.matches(&bytes(": t[%d, %d] = %.8e\n")).count(), 1, "one format string per distinct line");
    }
    assembles("print", &kernel);
}

/// A `copy_async` pipeline becomes `cp.async` with commit and wait groups.
#[test]
fn every_kernel_with_copies_in_its_lir_assembles() {
    let kernel = from_file("tests/kernels/pipeline.tl");
    assert!(kernel.compiled.lir.to_string().contains("cp.async."));
    for arch in Arch::ALL {
        let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{e}"));
        assert!(ptx.contains("cp.async.cg.shared.global") && ptx.contains("cp.async.wait_group"), "{ptx}");
    }
    assembles("pipeline", &kernel);
}

/// 64-bit constants appear in full in the PTX; a u64 prints unsigned.
#[test]
fn sixty_four_bit_kernels_assemble_with_ptxas() {
    let source = "kernel wide(w: i64, u: u64, x: global i64[4], y: global mut i64[4]) grid(1) warps(1) {\n    let t = load(x, [0], [4]);\n    store(y, max(t + w - 9007199254740993, 9223372036854775000), [0]);\n    print(u);\n}\n";
    let kernel = from_source("wide.tl", source);
    assert!(kernel.compiled.lir.to_string().contains("print.u64"));
    for arch in Arch::ALL {
        let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{e}"));
        assert!(ptx.contains("-9007199254740993") && ptx.contains("9223372036854775000"), "{ptx}");
        // `%llu`, as bytes of the format string.
        assert!(ptx.contains("37, 108, 108, 117"), "{ptx}");
    }
    assembles("exact_integers", &kernel);
}

/// Every kernel of the `lower` filetests (written in `.tl`) assembles: their LIR is a blessed
/// snapshot, so the PTX made from it is checked here.
#[test]
fn the_lower_filetest_kernels_assemble() {
    let dir = repo_root().join("tests/filetests/lower");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "tl")).collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for path in files {
        let relative = path.strip_prefix(repo_root()).unwrap().display().to_string();
        assembles("lower filetests", &from_file(&relative));
    }
}

/// A ring of `stages` 128 × 128 f32 tiles in shared memory (64 KB each).
fn ring_kernel(stages: usize) -> Kernel {
    let source = format!(
        "kernel deep(n: i32, a: global f32[n, 128], c: global mut f32[n, 128]) grid(1) warps(4) {{
    let ring = shared<f32>([{stages}, 128, 128]);
    for t in 0 .. cdiv(n, 128) {{
        copy_async(ring, [t % {stages}], a, [t * 128, 0]);
        commit();
        wait(0);
        sync();
        let x = load(ring, [t % {stages}, 0, 0], [128, 128]);
        store(c, x + 1.0, [t * 128, 0]);
        sync();
    }}
}}
"
    );
    from_source("deep.tl", &source)
}

/// Beyond 48 KB the shared buffer is dynamic shared memory (`.extern`, sized at launch), which
/// ptxas accepts on both architectures; beyond what an architecture gives a block (163 KB on
/// sm_80, 227 KB on sm_90a) its PTX is refused with the numbers.
#[test]
fn shared_memory_beyond_48_kb_is_dynamic_and_bounded_per_architecture() {
    let small = from_source("small.tl", "kernel k(x: global f32[128], y: global mut f32[128]) grid(1) warps(1) {\n    let s = shared<f32>([128]);\n    copy_async(s, [], x, [0]);\n    commit();\n    wait(0);\n    sync();\n    store(y, load(s, [0], [128]), [0]);\n}\n");
    let static_ptx = small.ptx(Arch::Sm80).unwrap();
    assert!(static_ptx.contains(".shared .align 16 .b8 smem[512]"), "{static_ptx}");
    let two = ring_kernel(2);
    assert_eq!(two.compiled.lir.shared_bytes, 131072);
    for arch in Arch::ALL {
        let ptx = two.ptx(arch).unwrap_or_else(|e| panic!("{e}"));
        assert!(ptx.contains(".extern .shared .align 16 .b8 smem[]"), "{ptx}");
    }
    assembles("dynamic shared memory", &two);
    let three = ring_kernel(3);
    assert_eq!(three.compiled.lir.shared_bytes, 196608);
    let e = three.ptx(Arch::Sm80).unwrap_err().to_string();
    assert!(e.contains("kernel `deep` needs 196608 bytes of shared memory, more than the 166912 bytes a block may use on sm_80"), "{e}");
    let ptx = three.ptx(Arch::Sm90a).unwrap_or_else(|e| panic!("{e}"));
    if tl_tests::ptxas_available("dynamic shared memory on sm_90a") {
        ptxas::assemble(ptx, Arch::Sm90a).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The accurate math functions are sequences of exact operations (no `.approx` instruction in
/// their PTX), the `approx = true` ones PTX's approximations; both assemble for every float
/// dtype.
#[test]
fn math_functions_assemble_and_use_approximations_only_when_asked() {
    let source = std::fs::read_to_string(repo_root().join("tests/kernels/math_functions.tl")).unwrap();
    let module = Module::from_source("math_functions.tl", &source).unwrap().with_code_generator(tl_ptx::code_generator());
    for d in ["f32", "f16", "bf16", "f64", "f8e4m3"] {
        let consts = [("T".to_string(), tl_compiler::ir::ConstValue::parse(d).unwrap())];
        let accurate = module.kernel(Some("accurate"), &consts).unwrap_or_else(|e| panic!("{d}: {e}"));
        let approximate = module.kernel(Some("approximate"), &consts).unwrap_or_else(|e| panic!("{d}: {e}"));
        for arch in Arch::ALL {
            let ptx = accurate.ptx(arch).unwrap_or_else(|e| panic!("{d} {}: {e}", arch.name()));
            let approximations: Vec<&str> = ptx.lines().filter(|l| l.contains(".approx")).collect();
            assert!(approximations.is_empty(), "{d} on {}: accurate math uses {approximations:?}", arch.name());
            let ptx = approximate.ptx(arch).unwrap_or_else(|e| panic!("{d} {}: {e}", arch.name()));
            for want in ["ex2.approx.f32", "lg2.approx.f32", "sin.approx.f32", "cos.approx.f32", "tanh.approx.f32"] {
                assert!(ptx.contains(want), "{d} on {}: no `{want}` in the approximate kernel", arch.name());
            }
            // f64's rsqrt is 1 / sqrt(x) (PTX's f64 approximation is too coarse).
            if d != "f64" {
                assert!(ptx.contains("rsqrt.approx.f32"), "{d} on {}: no `rsqrt.approx.f32`", arch.name());
            }
        }
        assembles(&format!("math_functions accurate {d}"), &accurate);
        assembles(&format!("math_functions approximate {d}"), &approximate);
    }
}

/// Scalar parameters of every float width (f16 and bf16 passed by value) assemble.
#[test]
fn float_scalar_arguments_assemble() {
    assembles("scalar_arguments", &from_file("tests/kernels/scalar_arguments.tl"));
}

/// Gathers and scatters with index tiles assemble, and a gather of whole rows reads them
/// with vector loads.
#[test]
fn gathers_and_scatters_assemble() {
    let source = std::fs::read_to_string(repo_root().join("tests/kernels/gathers.tl")).unwrap();
    let module = Module::from_source("gathers.tl", &source).unwrap().with_code_generator(tl_ptx::code_generator());
    for name in module.kernel_names() {
        let kernel = module.kernel(Some(&name), &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assembles(&format!("gathers {name}"), &kernel);
        if name == "gather_rows" {
            let ptx = kernel.ptx(Arch::Sm90a).unwrap_or_else(|e| panic!("{e}"));
            assert!(ptx.contains("ld.global.v4"), "no vector load in the row gather:\n{ptx}");
        }
    }
}

/// The kernels of the program that embeds the runtime (`examples/embed_app`, whose own test
/// checks their results against the host) assemble, with the variant its snapshots keep.
#[test]
fn the_embedding_programs_kernels_assemble() {
    let test = "the_embedding_programs_kernels_assemble";
    let saxpy = tl_embed_app::saxpy(256).unwrap_or_else(|e| panic!("{e}"));
    assembles(test, &saxpy);
    assembles(test, &tl_embed_app::row_sum().unwrap_or_else(|e| panic!("{e}")));
    if tl_tests::ptxas_available(test) {
        let n4 = saxpy.assumptions(&["n%4".to_string()]).unwrap();
        let ptx = saxpy.variant_ptx(&n4, Arch::Sm90a).unwrap_or_else(|e| panic!("{e}"));
        ptxas::assemble(&ptx, Arch::Sm90a).unwrap_or_else(|e| panic!("ptxas rejected saxpy (n%4) for sm_90a: {e}"));
    }
}
