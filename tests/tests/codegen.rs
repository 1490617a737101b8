//! Generated code of every shipped kernel: insta snapshots of the block IR (with layouts), the
//! LIR and the PTX for sm_80 and sm_90a, and ptxas must assemble the PTX for both.

use tl_compiler::backend::{Arch, ptxas};
use tl_runtime::Module;
use tl_tests::shipped_kernel_files;

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
        let module = Module::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        for name in module.kernel_names() {
            let kernel = module.kernel(Some(&name), &[]).unwrap_or_else(|e| panic!("{e}"));
            insta::assert_snapshot!(format!("{name}.ir"), tl_compiler::ir::print::kernel_to_string(&kernel.compiled.kernel));
            insta::assert_snapshot!(format!("{name}.lir"), kernel.compiled.lir.to_string());
            for arch in Arch::ALL {
                let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{name} {}: {e}", arch.name()));
                insta::assert_snapshot!(format!("{name}.{}.ptx", arch.name()), ptx);
            }
        }
    }
}

#[test]
fn ptxas_assembles_every_shipped_kernel() {
    if ptxas::find_ptxas().is_none() {
        println!("skipping ptxas check: ptxas not found (set TL_PTXAS or run scripts/setup.sh)");
        return;
    }
    let mut assembled = 0;
    for path in shipped_kernel_files() {
        let module = Module::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        for name in module.kernel_names() {
            // The defaults and one other tile configuration.
            let kernel = module.kernel(Some(&name), &[]).unwrap_or_else(|e| panic!("{e}"));
            for arch in Arch::ALL {
                let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{name}: {e}"));
                let report = ptxas::assemble(ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected {name} for {}: {e}", arch.name()));
                println!("{name} {}: {}", arch.name(), report.lines().filter(|l| l.contains("registers")).collect::<Vec<_>>().join(" "));
                assembled += 1;
            }
        }
    }
    assert!(assembled >= 8, "only {assembled} kernels assembled");
}
