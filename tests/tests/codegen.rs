//! Generated code of every shipped kernel: insta snapshots of the block IR (with layouts), the
//! LIR and the PTX for sm_80 and sm_90a, and ptxas must assemble the PTX for both; the same
//! for the variant specialized on every integer scalar being a multiple of 16 (`.v16`
//! snapshots, vectorized global accesses).

use tl_compiler::backend::{Arch, ptxas};
use tl_runtime::{Assumptions, Kernel, Module};
use tl_tests::shipped_kernel_files;

/// The variant of `kernel` that assumes every integer scalar parameter a multiple of 16.
fn all_sixteen(kernel: &Kernel) -> Assumptions {
    let items: Vec<String> = kernel
        .compiled
        .kernel
        .params
        .iter()
        .filter(|p| matches!(p.kind, tl_compiler::ir::ParamKind::Scalar(d) if d.is_int()))
        .map(|p| format!("{}%16", p.name))
        .collect();
    kernel.assumptions(&items).unwrap_or_else(|e| panic!("{e}"))
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    s.set_snapshot_path("snapshots");
    s
}

#[test]
fn snapshots_of_ir_lir_and_ptx() {
    let _guard = settings().bind_to_scope();
    for path in shipped_kernel_files() {
        let module = Module::from_file(&path).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
        for name in module.kernel_names() {
            let kernel = module.kernel(Some(&name), &[]).unwrap_or_else(|e| panic!("{e}"));
            insta::assert_snapshot!(format!("{name}.ir"), tl_compiler::ir::print::kernel_to_string(&kernel.compiled.kernel));
            insta::assert_snapshot!(format!("{name}.lir"), kernel.compiled.lir.to_string());
            for arch in Arch::ALL {
                let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{name} {}: {e}", arch.name()));
                insta::assert_snapshot!(format!("{name}.{}.ptx", arch.name()), ptx);
            }
            let v16 = all_sixteen(&kernel);
            insta::assert_snapshot!(format!("{name}.v16.lir"), kernel.variant(&v16).unwrap_or_else(|e| panic!("{e}")).to_string());
            let ptx = kernel.variant_ptx(&v16, Arch::Sm80).unwrap_or_else(|e| panic!("{name} v16: {e}"));
            insta::assert_snapshot!(format!("{name}.v16.sm_80.ptx"), ptx.as_str());
        }
    }
}

#[test]
fn ptxas_assembles_every_shipped_kernel() {
    if !tl_tests::ptxas_available("codegen") {
        return;
    }
    let mut assembled = 0;
    for path in shipped_kernel_files() {
        let module = Module::from_file(&path).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{e}"));
        for name in module.kernel_names() {
            // The defaults and one other tile configuration.
            let kernel = module.kernel(Some(&name), &[]).unwrap_or_else(|e| panic!("{e}"));
            for arch in Arch::ALL {
                let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{name}: {e}"));
                let report = ptxas::assemble(ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected {name} for {}: {e}", arch.name()));
                println!("{name} {}: {}", arch.name(), report.lines().filter(|l| l.contains("registers")).collect::<Vec<_>>().join(" "));
                assembled += 1;
                let v16 = all_sixteen(&kernel);
                let ptx = kernel.variant_ptx(&v16, arch).unwrap_or_else(|e| panic!("{name} v16: {e}"));
                ptxas::assemble(&ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected {name} (v16) for {}: {e}", arch.name()));
            }
        }
    }
    assert!(assembled >= 8, "only {assembled} kernels assembled");
}
