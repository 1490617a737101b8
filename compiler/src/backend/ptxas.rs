//! Running NVIDIA's `ptxas` on generated PTX, to validate it on machines without a GPU.
//!
//! Expects nothing to be installed: [`find_ptxas`] returns `None` when no `ptxas` can be found,
//! and callers (tests in particular) decide whether that is a skip or an error.
//! Guarantees: [`assemble`] leaves no files behind and never panics; its error text contains
//! `ptxas`'s own output, which names the offending PTX line.

use super::Arch;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The `ptxas` to use, looked up once per process: `$TL_PTXAS` if set (taken as given, so a
/// wrong setting shows up as an error rather than a silent fallback), then `ptxas` on `PATH`,
/// then the copy installed by `pip install nvidia-cuda-nvcc` (`<site-packages>/nvidia/cu13/bin`).
pub fn find_ptxas() -> Option<PathBuf> {
    static PTXAS: OnceLock<Option<PathBuf>> = OnceLock::new();
    PTXAS.get_or_init(locate_ptxas).clone()
}

fn locate_ptxas() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TL_PTXAS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|dir| dir.join("ptxas")).find(|p| p.is_file())
    }) {
        return Some(found);
    }
    let output = Command::new("python3")
        .args([
            "-c",
            "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13','bin','ptxas'))",
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    path.is_file().then_some(path)
}

/// Assembles `ptx` for `arch` with `ptxas -v` and returns its report (registers, spills, shared
/// memory per kernel). On failure the error holds the exit status and everything `ptxas` printed.
pub fn assemble(ptx: &str, arch: Arch) -> Result<String, String> {
    with_ptxas(ptx, arch, true).map(|(report, _)| report)
}

/// Assembles `ptx` for `arch` and returns the cubin `ptxas` wrote (an ELF file of the GPU's
/// machine code, what `cuobjdump -sass` and `nvdisasm` read). Errors as [`assemble`].
pub fn assemble_cubin(ptx: &str, arch: Arch) -> Result<Vec<u8>, String> {
    with_ptxas(ptx, arch, false).map(|(_, cubin)| cubin)
}

/// What names the `ptxas` in use: the last line of `ptxas --version` (its release and build,
/// e.g. `Build cuda_13.0.r13.0/compiler.36424714_0`), or `None` without one. A cubin made by
/// one build is not taken for another's.
pub fn ptxas_version() -> Option<String> {
    static VERSION: OnceLock<Option<String>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            let output = Command::new(find_ptxas()?).arg("--version").output().ok()?;
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            output.status.success().then(|| text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string())
        })
        .clone()
}

fn with_ptxas(ptx: &str, arch: Arch, verbose: bool) -> Result<(String, Vec<u8>), String> {
    let ptxas = find_ptxas().ok_or_else(|| {
        "ptxas not found: set TL_PTXAS, put ptxas on PATH, or `pip install nvidia-cuda-nvcc`"
            .to_string()
    })?;
    let dir = unique_temp_dir()?;
    let result = run_ptxas(&ptxas, &dir, ptx, arch, verbose);
    // Best effort: a leftover temp directory is not worth failing the assembly for.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_ptxas(ptxas: &Path, dir: &Path, ptx: &str, arch: Arch, verbose: bool) -> Result<(String, Vec<u8>), String> {
    let ptx_path = dir.join("kernel.ptx");
    let cubin_path = dir.join("kernel.cubin");
    std::fs::write(&ptx_path, ptx)
        .map_err(|e| format!("cannot write {}: {e}", ptx_path.display()))?;
    let output = Command::new(ptxas)
        .args(verbose.then_some("-v"))
        .args(["--gpu-name", arch.name()])
        .arg(&ptx_path)
        .arg("-o")
        .arg(&cubin_path)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ptxas.display()))?;
    // ptxas writes the `-v` report and its diagnostics to stderr; keep stdout too, just in case.
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    if !output.status.success() {
        return Err(format!(
            "ptxas ({}) failed for {arch} with {}:\n{text}",
            ptxas.display(),
            output.status
        ));
    }
    let cubin = std::fs::read(&cubin_path)
        .map_err(|e| format!("ptxas ({}) succeeded but its cubin cannot be read: {e}", ptxas.display()))?;
    Ok((text, cubin))
}

/// What `ptxas -v` reports for one kernel or function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceUsage {
    pub name: String,
    pub registers: u32,
    pub barriers: u32,
    /// Static shared memory (bytes).
    pub shared_bytes: u64,
    pub stack_frame_bytes: u64,
    pub spill_store_bytes: u64,
    pub spill_load_bytes: u64,
}

/// The resource usage of every function in a `ptxas -v` report ([`assemble`]'s text), in the
/// order reported. Lines it does not know are skipped.
pub fn parse_resource_usage(report: &str) -> Vec<ResourceUsage> {
    fn number_before(text: &str, unit: &str) -> Option<u64> {
        let at = text.find(unit)?;
        text[..at].split(|c: char| !c.is_ascii_digit()).rfind(|w| !w.is_empty())?.parse().ok()
    }
    let mut usages: Vec<ResourceUsage> = Vec::new();
    let mut current: Option<usize> = None;
    for line in report.lines() {
        let quoted = |l: &str| l.split('\'').nth(1).map(str::to_string);
        if line.contains("Compiling entry function") || line.contains("Function properties for") {
            let name = if line.contains("Function properties for") {
                line.rsplit("Function properties for").next().map(|n| n.trim().to_string())
            } else {
                quoted(line)
            };
            let Some(name) = name else { continue };
            current = Some(match usages.iter().position(|u| u.name == name) {
                Some(i) => i,
                None => {
                    usages.push(ResourceUsage { name, ..ResourceUsage::default() });
                    usages.len() - 1
                }
            });
            continue;
        }
        let Some(u) = current.map(|i| &mut usages[i]) else { continue };
        if line.contains("stack frame") {
            u.stack_frame_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
            u.spill_store_bytes = number_before(line, "bytes spill stores").unwrap_or(0);
            u.spill_load_bytes = number_before(line, "bytes spill loads").unwrap_or(0);
        }
        if line.contains("Used") && line.contains("registers") {
            u.registers = number_before(line, "registers").unwrap_or(0) as u32;
            u.barriers = number_before(line, "barriers").unwrap_or(0) as u32;
            u.shared_bytes = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    usages
}

/// A fresh directory under the system temp dir, unique across threads and processes.
fn unique_temp_dir() -> Result<PathBuf, String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "tl-ptxas-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_KERNEL: &str = ".version 8.0\n.target sm_80\n.address_size 64\n\
                                .visible .entry empty()\n{\n\tret;\n}\n";

    #[test]
    fn resource_usage_is_read_from_the_report() {
        let report = "ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'qmatmul' for 'sm_80'
ptxas info    : Function properties for qmatmul
    8 bytes stack frame, 12 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 56 registers, used 1 barriers, 5120 bytes smem, 408 bytes cmem[0], 8 bytes cmem[2]
ptxas info    : Compile time = 77.701 ms
ptxas info    : Compiling entry function 'tiny' for 'sm_90a'
ptxas info    : Function properties for tiny
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 4 registers, 360 bytes cmem[0]
";
        let usage = parse_resource_usage(report);
        assert_eq!(
            usage,
            vec![
                ResourceUsage { name: "qmatmul".into(), registers: 56, barriers: 1, shared_bytes: 5120, stack_frame_bytes: 8, spill_store_bytes: 12, spill_load_bytes: 4 },
                ResourceUsage { name: "tiny".into(), registers: 4, ..ResourceUsage::default() },
            ]
        );
        assert!(parse_resource_usage("garbage\nUsed registers\n").is_empty());
    }

    #[test]
    fn assembles_a_trivial_kernel_and_reports_errors() {
        if find_ptxas().is_none() {
            // The same rule as `tl_tests::ptxas_available` (this crate cannot depend on it).
            assert!(std::env::var("TL_REQUIRE_PTXAS").map_or(true, |v| v != "1"), "ptxas not found, but TL_REQUIRE_PTXAS=1 requires it");
            eprintln!("SKIPPED assembles_a_trivial_kernel_and_reports_errors: ptxas not found (set TL_PTXAS or run scripts/setup.sh)");
            return;
        }
        for arch in Arch::ALL {
            let ptx = EMPTY_KERNEL.replace("sm_80", arch.name());
            let report = assemble(&ptx, arch).expect("ptxas accepts an empty kernel");
            assert!(report.contains("empty"), "report names the kernel: {report}");
            // The cubin: an ELF file for the CUDA machine (e_machine 190, EM_CUDA) holding the
            // kernel's symbol.
            let cubin = assemble_cubin(&ptx, arch).expect("ptxas accepts an empty kernel");
            assert_eq!(&cubin[..4], b"\x7fELF", "{arch}");
            assert_eq!(u16::from_le_bytes([cubin[18], cubin[19]]), 190, "{arch}");
            assert!(cubin.windows(5).any(|w| w == b"empty"), "{arch}");
        }
        let version = ptxas_version().expect("the ptxas found reports its version");
        assert!(!version.is_empty() && version.chars().any(|c| c.is_ascii_digit()), "{version}");
        assert!(assemble_cubin(&EMPTY_KERNEL.replace("ret;", "ret.bogus;"), Arch::Sm80).is_err_and(|e| e.contains("bogus")));
        let err = assemble(&EMPTY_KERNEL.replace("ret;", "ret.bogus;"), Arch::Sm80)
            .expect_err("ptxas rejects an unknown modifier");
        assert!(err.contains("bogus"), "error carries ptxas output: {err}");
    }
}
