//! Cubins on disk: the machine code the CUDA driver makes of a kernel's PTX, kept in the compile
//! cache ([`crate::cache`]) so that the next process loads it instead of JIT-compiling the PTX
//! again (the driver's JIT takes from milliseconds to seconds for a large kernel, once per
//! process and module).
//!
//! Expects: a context on the GPU the cubin is for, and PTX of this runtime's code generator.
//!
//! Guarantees:
//! * The key ([`CacheKey::cubin`]) holds the driver's version, the device's compute capability
//!   and the whole PTX text, so a driver update or another GPU makes another entry, never a
//!   stale one.
//! * The cubin is made by the driver's own linker (`cuLinkCreate`/`cuLinkAddData`/
//!   `cuLinkComplete`, the JIT that `cuModuleLoadData` runs on PTX, with the same defaults) and
//!   the module is loaded from exactly the bytes that are then stored.
//! * A cached cubin the driver refuses to load is removed with one warning and made again.
//! * A linker failure, or a linked cubin the driver does not load, costs only the caching: the
//!   PTX is loaded as it would be without a cache (one warning when that load succeeds; the
//!   PTX's own error when it fails too).
//! * A damaged entry, writers in several processes, an unwritable disk: as for every entry of
//!   the compile cache.

use std::ffi::{CString, c_void};
use std::fmt::Display;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaModule, sys};
use cudarc::nvrtc::Ptx;

use crate::cache::{CacheKey, DiskCache};
use crate::cuda::{CudaError, guarded};

/// Where a loaded module came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A cubin of the cache.
    Cache,
    /// A cubin linked now (and stored in the cache).
    Linked,
    /// The PTX, JIT-compiled by the driver as it loads it (no cache, or no cubin could be made).
    Ptx,
}

/// The module for `ptx` on `ctx`: from the cubin in `cache` when there is one the driver loads,
/// else linked now and stored. See the module's header.
pub(crate) fn load_module(ctx: &Arc<CudaContext>, ptx: &str, cache: Option<&DiskCache>) -> Result<(Arc<CudaModule>, Origin), CudaError> {
    let load_ptx = || guarded("loading the PTX module (JIT compilation by the driver)", || ctx.load_module(Ptx::from_src(ptx)));
    let Some(cache) = cache.filter(|c| c.directory().is_some()) else {
        return load_ptx().map(|m| (m, Origin::Ptx));
    };
    let key = CacheKey::cubin(&driver_identity()?, &device_target(ctx)?, ptx);
    load_through_cache(
        cache,
        &key,
        || link_cubin(ctx, ptx),
        |cubin| guarded("loading a cubin", || ctx.load_module(Ptx::from_binary(cubin.to_vec()))),
        load_ptx,
    )
}

/// The caching itself, apart from the driver: `link` makes a cubin, `load_cubin` loads one,
/// `load_ptx` loads the module without a cubin.
pub(crate) fn load_through_cache<M, E: Display>(
    cache: &DiskCache,
    key: &CacheKey,
    link: impl FnOnce() -> Result<Vec<u8>, E>,
    load_cubin: impl Fn(&[u8]) -> Result<M, E>,
    load_ptx: impl FnOnce() -> Result<M, E>,
) -> Result<(M, Origin), E> {
    if let Some(cubin) = cache.get(key) {
        match load_cubin(&cubin) {
            Ok(module) => return Ok((module, Origin::Cache)),
            Err(e) => cache.discard(key, &format!("the CUDA driver refused its cubin: {e}")),
        }
    }
    // A cubin that cannot be made, or made but not loaded, costs the caching only: the module
    // is what loading the PTX gives, as without a cache.
    match link().and_then(|cubin| load_cubin(&cubin).map(|module| (cubin, module))) {
        Ok((cubin, module)) => {
            cache.put(key, &cubin);
            Ok((module, Origin::Linked))
        }
        Err(link_error) => {
            let module = load_ptx()?;
            cache.warn_once("unlinked", || format!("the CUDA driver could not make a cubin it loads of a module whose PTX it loads ({link_error}): its cubins are not cached"));
            Ok((module, Origin::Ptx))
        }
    }
}

/// The driver's JIT, named by its version (`cuda driver 12080`): a cubin of one driver is not
/// served to another.
fn driver_identity() -> Result<String, CudaError> {
    let mut version: i32 = 0;
    // SAFETY: the driver writes one int through a pointer to a live local.
    guarded("reading the driver's version", || unsafe { sys::cuDriverGetVersion(&mut version) }.result())?;
    Ok(format!("cuda driver {version}"))
}

/// The machine a cubin runs on: the device's compute capability (`sm_90`).
fn device_target(ctx: &Arc<CudaContext>) -> Result<String, CudaError> {
    let (major, minor) = guarded("reading the compute capability", || ctx.compute_capability())?;
    Ok(format!("sm_{major}{minor}"))
}

/// Bytes of the linker's error log (its messages are short; a longer one is cut).
const LINK_LOG_BYTES: usize = 1 << 14;

/// Links `ptx` into a cubin for `ctx`'s device with the driver's linker. A failure's message
/// holds the linker's log.
fn link_cubin(ctx: &Arc<CudaContext>, ptx: &str) -> Result<Vec<u8>, CudaError> {
    guarded("binding the context", || ctx.bind_to_thread())?;
    // Generated PTX holds no NUL byte; one would end the text early, which the linker reports.
    let source = CString::new(ptx.replace('\0', " ")).unwrap_or_default();
    let mut log = vec![0u8; LINK_LOG_BYTES];
    let mut options = [sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER, sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES];
    // The size travels in the pointer-sized slot itself, as the driver API defines.
    let mut values: [*mut c_void; 2] = [log.as_mut_ptr().cast(), LINK_LOG_BYTES as *mut c_void];
    let mut state: sys::CUlinkState = std::ptr::null_mut();
    // SAFETY (every call below): the option arrays have the length given and live, with the
    // log buffer, until the state is destroyed; the PTX is NUL-terminated and its length
    // counts the NUL; the image belongs to the state and is copied before it is destroyed.
    guarded("creating the linker", || unsafe { sys::cuLinkCreate_v2(options.len() as u32, options.as_mut_ptr(), values.as_mut_ptr(), &mut state) }.result())?;
    let linked = (|| {
        guarded("linking the PTX", || {
            unsafe {
                sys::cuLinkAddData_v2(
                    state,
                    sys::CUjitInputType::CU_JIT_INPUT_PTX,
                    source.as_ptr() as *mut c_void,
                    source.as_bytes_with_nul().len(),
                    c"kernel.ptx".as_ptr(),
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            }
            .result()
        })?;
        let mut image: *mut c_void = std::ptr::null_mut();
        let mut size: usize = 0;
        guarded("completing the link", || unsafe { sys::cuLinkComplete(state, &mut image, &mut size) }.result())?;
        if image.is_null() || size == 0 {
            return Err(CudaError::Driver { during: "completing the link".into(), message: "the linker gave an empty cubin".into() });
        }
        Ok(unsafe { std::slice::from_raw_parts(image as *const u8, size) }.to_vec())
    })();
    let _ = guarded("destroying the linker", || unsafe { sys::cuLinkDestroy(state) }.result());
    linked.map_err(|error| match error {
        CudaError::Driver { during, message } => {
            let text = String::from_utf8_lossy(log.split(|&b| b == 0).next().unwrap_or_default()).trim().to_string();
            CudaError::Driver { during, message: if text.is_empty() { message } else { format!("{message}: {text}") } }
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn scratch(name: &str) -> std::path::PathBuf {
        crate::cache::scratch_directory(&format!("cubin_{name}"))
    }

    const PTX: &str = ".version 8.0\n.target sm_90a\n.entry k() { ret; }\n";

    fn key() -> CacheKey {
        CacheKey::cubin("cuda driver 12080", "sm_90", PTX)
    }

    /// A stand-in driver: "cubins" are `CUBIN:` and a body, loaded as the body; it counts what it
    /// was asked to do.
    struct Driver {
        links: Cell<usize>,
        ptx_loads: Cell<usize>,
        link_fails: bool,
        /// The linker succeeds but makes a cubin the loader refuses.
        links_junk: bool,
    }

    impl Driver {
        fn new() -> Driver {
            Driver { links: Cell::new(0), ptx_loads: Cell::new(0), link_fails: false, links_junk: false }
        }

        fn load(&self, cache: &DiskCache) -> Result<(String, Origin), String> {
            load_through_cache(
                cache,
                &key(),
                || {
                    self.links.set(self.links.get() + 1);
                    match (self.link_fails, self.links_junk) {
                        (true, _) => Err("CUDA_ERROR_NOT_SUPPORTED".to_string()),
                        (false, true) => Ok(b"JUNK".to_vec()),
                        (false, false) => Ok(b"CUBIN:kernel k".to_vec()),
                    }
                },
                |cubin| cubin.strip_prefix(b"CUBIN:").map(|body| String::from_utf8_lossy(body).into_owned()).ok_or_else(|| "CUDA_ERROR_INVALID_IMAGE".to_string()),
                || {
                    self.ptx_loads.set(self.ptx_loads.get() + 1);
                    Ok("kernel k".to_string())
                },
            )
        }
    }

    /// Linked once and stored; a second cache on the directory (the next process) loads the
    /// stored cubin without linking.
    #[test]
    fn a_linked_cubin_is_served_to_the_next_process() {
        let directory = scratch("served");
        let driver = Driver::new();
        assert_eq!(driver.load(&DiskCache::at(&directory)), Ok(("kernel k".to_string(), Origin::Linked)));
        let next = DiskCache::at(&directory);
        assert_eq!(driver.load(&next), Ok(("kernel k".to_string(), Origin::Cache)));
        assert_eq!((driver.links.get(), driver.ptx_loads.get(), next.hits()), (1, 0, 1));
        assert!(next.warnings().is_empty());
        // Another driver version or device is another entry.
        assert!(DiskCache::at(&directory).get(&CacheKey::cubin("cuda driver 12090", "sm_90", PTX)).is_none());
        let _ = std::fs::remove_dir_all(&directory);
    }

    /// A whole entry whose cubin the driver refuses (made by another driver build under the
    /// same version, say): removed with one warning, linked again, and stored anew.
    #[test]
    fn a_refused_cubin_is_replaced_with_one_warning() {
        let directory = scratch("refused");
        let cache = DiskCache::at(&directory);
        let driver = Driver::new();
        for _ in 0..3 {
            cache.put(&key(), b"ELF garbage");
            assert_eq!(driver.load(&cache), Ok(("kernel k".to_string(), Origin::Linked)));
            assert_eq!(cache.get(&key()).as_deref(), Some(b"CUBIN:kernel k".as_slice()));
        }
        assert_eq!(driver.links.get(), 3);
        let warnings = cache.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("refused its cubin") && warnings[0].contains("CUDA_ERROR_INVALID_IMAGE"), "{warnings:?}");
        let _ = std::fs::remove_dir_all(&directory);
    }

    /// A damaged entry is never given to the driver: linked again, one warning.
    #[test]
    fn a_damaged_entry_is_linked_again() {
        let directory = scratch("damaged");
        let cache = DiskCache::at(&directory);
        let driver = Driver::new();
        driver.load(&cache).unwrap();
        let entry = std::fs::read_dir(&directory).unwrap().flatten().next().unwrap().path();
        let mut bytes = std::fs::read(&entry).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&entry, &bytes).unwrap();
        assert_eq!(driver.load(&cache), Ok(("kernel k".to_string(), Origin::Linked)));
        assert_eq!(driver.links.get(), 2);
        assert!(cache.warnings().iter().any(|w| w.contains("damaged")), "{:?}", cache.warnings());
        let _ = std::fs::remove_dir_all(&directory);
    }

    /// A linker that fails, or links a cubin the driver does not load, costs the caching only:
    /// the PTX is loaded, one warning for any number of modules, nothing stored.
    #[test]
    fn a_cubin_that_cannot_be_made_falls_back_to_the_ptx() {
        for (driver, why) in [(Driver { link_fails: true, ..Driver::new() }, "CUDA_ERROR_NOT_SUPPORTED"), (Driver { links_junk: true, ..Driver::new() }, "CUDA_ERROR_INVALID_IMAGE")] {
            let directory = scratch(why);
            let cache = DiskCache::at(&directory);
            for _ in 0..3 {
                assert_eq!(driver.load(&cache), Ok(("kernel k".to_string(), Origin::Ptx)), "{why}");
            }
            assert_eq!((driver.links.get(), driver.ptx_loads.get()), (3, 3), "{why}");
            assert!(cache.get(&key()).is_none(), "{why}");
            let warnings = cache.warnings();
            assert!(warnings.len() == 1 && warnings[0].contains(why), "{warnings:?}");
            let _ = std::fs::remove_dir_all(&directory);
        }
    }

    /// When the PTX itself is refused, the error is the PTX's, and no warning blames the cache.
    #[test]
    fn bad_ptx_is_the_ptx_loads_error() {
        let directory = scratch("bad_ptx");
        let cache = DiskCache::at(&directory);
        let result: Result<(String, Origin), String> = load_through_cache(
            &cache,
            &key(),
            || Err("CUDA_ERROR_INVALID_PTX (link)".to_string()),
            |_| Err("never called".to_string()),
            || Err("CUDA_ERROR_INVALID_PTX: line 3 syntax error".to_string()),
        );
        assert_eq!(result, Err("CUDA_ERROR_INVALID_PTX: line 3 syntax error".to_string()));
        assert!(cache.warnings().is_empty(), "{:?}", cache.warnings());
        let _ = std::fs::remove_dir_all(&directory);
    }

    /// A cache that cannot be written still gives the module, every time, with one warning.
    #[test]
    fn an_unwritable_cache_still_loads() {
        let directory = scratch("unwritable");
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::write(directory.join("file"), b"x").unwrap();
        let cache = DiskCache::at(directory.join("file").join("cache"));
        let driver = Driver::new();
        for _ in 0..2 {
            assert_eq!(driver.load(&cache), Ok(("kernel k".to_string(), Origin::Linked)));
        }
        assert_eq!(cache.warnings().len(), 1, "{:?}", cache.warnings());
        let _ = std::fs::remove_dir_all(&directory);
    }
}
