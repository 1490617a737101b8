//! Every shipped kernel, at random shapes (ragged ones included), on the VM and on the SIMT
//! simulator, each checked against the kernel's f64 host reference; the two backends are also
//! compared with each other.

use tl_runtime::{Arg, Backend, Module};
use tl_tests::shipped_kernel_files;

#[test]
fn shipped_kernels_match_their_references_on_vm_and_simt() {
    for path in shipped_kernel_files() {
        let module = Module::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        for name in module.kernel_names() {
            let kernel = module.kernel(Some(&name), &[]).unwrap_or_else(|e| panic!("{e}"));
            for seed in 0..3u64 {
                let args = kernel.random_args(seed, &[]).unwrap();
                let mut vm_args = args.clone();
                let vm = kernel.check(Backend::Vm, &mut vm_args).unwrap_or_else(|e| panic!("{name} vm: {e}"));
                assert!(vm.passed(), "{name} seed {seed} on vm: {vm:?}");
                let mut simt_args = args.clone();
                let simt = kernel.check(Backend::Simt, &mut simt_args).unwrap_or_else(|e| panic!("{name} simt: {e}"));
                assert!(simt.passed(), "{name} seed {seed} on simt: {simt:?}");
                let sizes: Vec<String> = args.iter().filter_map(|a| if let Arg::Scalar(v) = a { Some(v.to_string()) } else { None }).collect();
                println!("{name} seed {seed} sizes {sizes:?}: vm {:.2e}, simt {:.2e}", vm.outputs[0].comparison.max_scaled_error, simt.outputs[0].comparison.max_scaled_error);
            }
        }
    }
}

/// The shipped kernels and those under `tests/kernels`.
fn shipped_and_test_kernel_files() -> Vec<std::path::PathBuf> {
    let mut files = shipped_kernel_files();
    let tests = tl_tests::repo_root().join("tests/kernels");
    let mut extra: Vec<_> = std::fs::read_dir(&tests).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "tl")).collect();
    extra.sort();
    files.extend(extra);
    files
}

/// The LIR of every shipped and test kernel prints and parses back to the same text, the
/// parsed program verifies, and it computes the same bytes on the simulator as the original:
/// a test may start from saved LIR.
#[test]
fn every_kernel_lir_prints_parses_back_and_runs_the_same() {
    let files = shipped_and_test_kernel_files();
    let mut checked = 0;
    for path in files {
        let module = Module::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        for name in module.kernel_names() {
            let Ok(kernel) = module.kernel(Some(&name), &[]) else { continue };
            let text = kernel.compiled.lir.to_string();
            let parsed = tl_compiler::lir::parse::parse(&text).unwrap_or_else(|e| panic!("{}: {name}: {e}", path.display()));
            assert_eq!(parsed.to_string(), text, "{name}: the text changed through a parse");
            tl_compiler::lir::verify::verify(&parsed).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let args = kernel.random_args(5, &[]).unwrap();
            let grid = tl_vm::interp::eval_grid(&kernel.compiled.kernel, &args).unwrap();
            let (mut original, mut reparsed) = (args.clone(), args.clone());
            let a = tl_vm::simt::launch_with_output(&kernel.compiled.lir, grid, &mut original).map(|(_, lines)| lines);
            let b = tl_vm::simt::launch_with_output(&parsed, grid, &mut reparsed).map(|(_, lines)| lines);
            assert_eq!(a.is_ok(), b.is_ok(), "{name}: {a:?} vs {b:?}");
            assert_eq!(original, reparsed, "{name}: outputs differ");
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} kernels");
}

/// The block IR of every shipped and test kernel, before and after layout inference, prints
/// and parses back to the same text; the parsed kernel with layouts verifies and lowers to
/// exactly the LIR of the original: a test may start from saved block IR.
#[test]
fn every_kernel_block_ir_prints_parses_back_and_lowers_the_same() {
    use tl_compiler::ir::{parse::parse, print::kernel_to_string, verify::verify};
    let files = shipped_and_test_kernel_files();
    let mut checked = 0;
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        let file = tl_compiler::driver::check(&source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let module = Module::from_file(&path).unwrap();
        for name in module.kernel_names() {
            let Ok(before) = tl_compiler::driver::block_ir(&file, Some(&name), &[]) else { continue };
            let text = kernel_to_string(&before);
            let parsed = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            assert_eq!(kernel_to_string(&parsed), text, "{name}: the block IR text changed through a parse");
            verify(&parsed, false).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let Ok(compiled) = tl_compiler::driver::compile(&file, Some(&name), &[]) else { continue };
            let text = kernel_to_string(&compiled.kernel);
            let parsed = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            assert_eq!(kernel_to_string(&parsed), text, "{name}: the block IR with layouts changed through a parse");
            verify(&parsed, true).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let lowered = tl_compiler::lower::lower(&parsed).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            // Spans are not in the text: compare the LIR without its source markers.
            let strip = |p: &tl_compiler::lir::Program| p.to_string().lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
            assert_eq!(strip(&lowered), strip(&compiled.lir), "{name}: the parsed kernel lowers differently");
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} kernels");
}
