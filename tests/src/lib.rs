//! Shared helpers of the integration tests.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Every `.tl` kernel file we ship: `examples/*.tl` and `stdlib/kernels/*.tl`, sorted.
pub fn shipped_kernel_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["examples", "stdlib/kernels"] {
        let Ok(entries) = std::fs::read_dir(repo_root().join(dir)) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "tl") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no shipped kernels found");
    files
}
