//! The tl kernel library: `.tl` sources shipped with the compiler, embedded here so that a
//! Rust program can compile them without reading files.
//!
//! ```
//! let module = tl_stdlib::module("softmax").unwrap().unwrap();
//! assert_eq!(module.kernel_names(), vec!["softmax".to_string()]);
//! ```

pub mod quant;

use tl_runtime::{Module, RuntimeError};

/// `(name, source)` of every stdlib kernel file.
pub const KERNELS: &[(&str, &str)] = &[
    ("matmul", include_str!("../kernels/matmul.tl")),
    ("qmatmul", include_str!("../kernels/qmatmul.tl")),
    ("qmatmul_fragment", include_str!("../kernels/qmatmul_fragment.tl")),
    ("qmatmul_split", include_str!("../kernels/qmatmul_split.tl")),
    ("rmsnorm", include_str!("../kernels/rmsnorm.tl")),
    ("silu", include_str!("../kernels/silu.tl")),
    ("softmax", include_str!("../kernels/softmax.tl")),
];

/// Parses and checks the stdlib file `name` (`None` if there is no such file).
pub fn module(name: &str) -> Option<Result<Module, RuntimeError>> {
    KERNELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, src)| Module::from_source(&format!("stdlib/kernels/{n}.tl"), src))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_stdlib_file_is_listed_and_checks() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/kernels");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e.path().file_stem().map(|s| s.to_string_lossy().to_string()))
            .collect();
        on_disk.sort();
        let listed: Vec<String> = super::KERNELS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(on_disk, listed);
        // Each file's first kernel is named after the file (a file may add companions, such as
        // a split-K reduction).
        for (name, _) in super::KERNELS {
            let m = super::module(name).unwrap().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(m.kernel_names().first(), Some(&name.to_string()));
        }
    }
}
