// Shared by the build scripts that name a crate's build by its sources (`include!`d, so it
// has no `//!` header of its own): a digest that changes whenever one of the files under the
// given roots changes, so that anything cached or tuned under one build is never taken for
// another's.

/// Sets the environment variable `variable` of the crate's compilation to an FNV-1a digest
/// (16 hex digits) of every file under `roots` (paths relative to the crate's manifest): each
/// file's path relative to the crate, a NUL, and its contents, in sorted order. Cargo reruns
/// the build script when any root changes.
fn emit_source_digest(variable: &str, roots: &[&str]) {
    let manifest = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for root in roots {
        let root = manifest.join(root);
        println!("cargo:rerun-if-changed={}", root.display());
        collect_files(&root, &mut files);
    }
    files.sort();
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    for file in &files {
        let relative = file.strip_prefix(&manifest).unwrap_or(file).to_string_lossy().into_owned();
        let contents = std::fs::read(file).unwrap_or_default();
        for byte in relative.as_bytes().iter().chain([0u8].iter()).chain(contents.iter()) {
            digest ^= u64::from(*byte);
            digest = digest.wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env={variable}={digest:016x}");
}

/// Every file under `path` (or `path` itself).
fn collect_files(path: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
    if path.is_file() {
        files.push(path.to_path_buf());
    } else if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            collect_files(&entry.path(), files);
        }
    }
}
