//! The compile cache through the embedding API (`tl_runtime::cache`): PTX of a kernel and of
//! its variants served to another module from disk, keyed by the code generator's identity
//! (another identity is another entry; a generator without one is never cached).

use std::sync::Arc;
use tl_runtime::cache::DiskCache;
use tl_runtime::{Arch, CodeGenerator, Module};

fn scratch(name: &str) -> std::path::PathBuf {
    tl_tests::scratch_directory(&format!("compile_cache_{name}"))
}

/// `tl_ptx`'s generator under another identity (or none), counting the PTX it makes.
struct Renamed {
    identity: Option<String>,
    made: std::sync::atomic::AtomicUsize,
}

impl CodeGenerator for Renamed {
    fn ptx(&self, program: &tl_compiler::lir::Program, arch: Arch) -> Result<String, tl_compiler::backend::BackendError> {
        self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tl_ptx::code_generator().ptx(program, arch)
    }
    fn intermediate(&self, program: &tl_compiler::lir::Program, arch: Arch) -> Result<String, tl_compiler::backend::BackendError> {
        tl_ptx::code_generator().intermediate(program, arch)
    }
    fn identity(&self) -> Option<String> {
        self.identity.clone()
    }
}

fn module(cache: &Arc<DiskCache>, generator: Arc<dyn CodeGenerator>) -> Module {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/vector_add.tl");
    Module::from_file(path).unwrap().with_code_generator(generator).with_cache(cache.clone())
}

#[test]
fn ptx_is_served_to_another_module_from_disk() {
    let directory = scratch("modules");
    let first_cache = Arc::new(DiskCache::at(&directory));
    let first = module(&first_cache, tl_ptx::code_generator()).kernel(None, &[]).unwrap();
    let n16 = first.assumptions(&["n%16".to_string()]).unwrap();
    let (plain, specialized) = (first.ptx(Arch::Sm80).unwrap().to_string(), first.variant_ptx(&n16, Arch::Sm80).unwrap());
    assert_eq!(first_cache.hits(), 0);

    // Another module (as another process would): both from disk, the same text.
    let second_cache = Arc::new(DiskCache::at(&directory));
    let second = module(&second_cache, tl_ptx::code_generator()).kernel(None, &[]).unwrap();
    assert_eq!(second.ptx(Arch::Sm80).unwrap(), plain);
    assert_eq!(*second.variant_ptx(&n16, Arch::Sm80).unwrap(), *specialized);
    assert_eq!(second_cache.hits(), 2);
    assert_ne!(plain, *specialized);
    // Another architecture is another entry.
    second.ptx(Arch::Sm90a).unwrap();
    assert_eq!(second_cache.hits(), 2);
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn the_generator_identity_keys_the_entries() {
    let directory = scratch("identity");
    let cache = Arc::new(DiskCache::at(&directory));
    module(&cache, tl_ptx::code_generator()).kernel(None, &[]).unwrap().ptx(Arch::Sm80).unwrap();
    for identity in [Some("another build".to_string()), None] {
        let generator = Arc::new(Renamed { identity: identity.clone(), made: Default::default() });
        for _ in 0..2 {
            module(&cache, generator.clone()).kernel(None, &[]).unwrap().ptx(Arch::Sm80).unwrap();
        }
        // Another identity: made once, then served; no identity: made every time.
        let expected = if identity.is_some() { 1 } else { 2 };
        assert_eq!(generator.made.load(std::sync::atomic::Ordering::Relaxed), expected, "{identity:?}");
    }
    assert_eq!(cache.hits(), 1);
    let _ = std::fs::remove_dir_all(&directory);
}
