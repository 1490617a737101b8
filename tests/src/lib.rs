//! Shared helpers of the integration tests.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// A directory for one test (`name` unique among the tests), empty: under the system's
/// temporary directory, named with the process.
pub fn scratch_directory(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("tl_tests_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    directory
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

/// A small deterministic generator (xorshift64) for test inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// Whether `ptxas` is available for a test that assembles PTX. Without it the test says so
/// loudly and skips, unless `TL_REQUIRE_PTXAS=1` (set by `scripts/test.sh`, where ptxas is
/// installed): then a missing ptxas fails the test instead of letting it pass by skipping.
pub fn ptxas_available(test: &str) -> bool {
    if tl_compiler::backend::ptxas::find_ptxas().is_some() {
        return true;
    }
    if std::env::var("TL_REQUIRE_PTXAS").is_ok_and(|v| v == "1") {
        panic!("{test}: ptxas not found, but TL_REQUIRE_PTXAS=1 requires it (set TL_PTXAS or run scripts/setup.sh)");
    }
    eprintln!("SKIPPED {test}: ptxas not found (set TL_PTXAS or run scripts/setup.sh); its PTX is not assembled");
    false
}

pub mod fuzz;
