//! `TL_PTX_SOURCE_DIGEST`: a digest of the sources the code generator is built from (this
//! crate's and the compiler's), part of its identity (`CodeGenerator::identity`): PTX cached
//! by one build is never served to a build whose code differs.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let roots = [manifest.join("src"), manifest.join("../compiler/src"), manifest.join("../compiler/Cargo.toml"), manifest.join("Cargo.toml")];
    let mut files = Vec::new();
    for root in &roots {
        println!("cargo:rerun-if-changed={}", root.display());
        collect(root, &mut files);
    }
    files.sort();
    // FNV-1a over each file's path (relative to the crate) and contents.
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    for file in &files {
        let relative = file.strip_prefix(&manifest).unwrap_or(file).to_string_lossy().into_owned();
        let contents = std::fs::read(file).unwrap_or_default();
        for byte in relative.as_bytes().iter().chain([0u8].iter()).chain(contents.iter()) {
            digest ^= u64::from(*byte);
            digest = digest.wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=TL_PTX_SOURCE_DIGEST={digest:016x}");
}

/// Every file under `path` (or `path` itself).
fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_file() {
        files.push(path.to_path_buf());
    } else if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            collect(&entry.path(), files);
        }
    }
}
