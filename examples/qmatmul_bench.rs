//! Benchmark of the quantized matmul for every weight format, on `[k, n]` weights
//! (`stdlib/kernels/qmatmul.tl`) and on weights in fragment order
//! (`stdlib/kernels/qmatmul_fragment.tl`): what its PTX holds and how long it takes to
//! compile. Prints numbers; asserts none.
//!
//! For each format, weight order and dequantization arithmetic (`D`: f32, f16 with packed
//! `f16x2` instructions, or bf16 with bf16 activations and `bf16x2`), at the decode configuration (BM = 16, BN = 128, BK = 64,
//! G = 128, STAGES = 3, f16 scales; the variant for n and k multiples of 128, as the runtime
//! picks for the layer shapes of Llama-3, m unknown), it prints:
//! * the compile time from source to PTX (median of 3, release builds only mean anything);
//! * the PTX instructions of the kernel and of its hot loop (the loop over k) per thread;
//! * instructions per weight on the hot loop: the loop's instructions per thread divided by
//!   the weights each thread dequantizes per iteration (BK · BN / threads);
//! * barriers and `mma` in the loop; registers, spills and shared memory from `ptxas -v`
//!   (when ptxas is found).
//!
//! Run with `cargo run --release -p tl-examples --example qmatmul_bench` (add `-- --markdown`
//! for the table of docs/performance.md). The GPU half of the benchmark (our kernel against
//! torch fp16, a Triton W4A16 kernel and the copy-bandwidth bound, `qmatmul_bench_gpu.rs`)
//! runs when a CUDA driver and a device are present (`--no-gpu` skips it, `--gpu-only` runs
//! it alone); without one this says so. On a GPU machine without Rust, carry the release
//! binary (`target/release/examples/qmatmul_bench`) and run it from a copy of the repository:
//! it reads the kernels and `scripts/qmatmul_reference_bench.py` from the current directory.

#[path = "qmatmul_bench_gpu.rs"]
mod gpu;

use std::time::Instant;
use tl_compiler::backend::{ptx_stats, ptxas, Arch};
use tl_runtime::{ConstValue, DType, Module};

const FORMATS: [&str; 14] = [
    "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "i4", "i8", "f4e2m1", "f6e3m2", "f8e4m3fn", "f8e5m2",
];
const CONFIG: [(&str, i64); 5] = [("BM", 16), ("BN", 128), ("BK", 64), ("G", 128), ("STAGES", 3)];
const ASSUME: &str = "n%128,k%128";
/// The kernels compared: (file and kernel name, how they take the weights, the dequantization
/// arithmetic `D`, the zero points' dtype `Z`; the activations are f16, except with `D` =
/// bf16, where they are bf16 too). Integer zero points (u4, as GPTQ/AWQ checkpoints store
/// them) fold into the conversion of 1-, 2- and 4-bit codes.
const KERNELS: [(&str, &str, &str, &str); 6] = [
    ("qmatmul", "[k, n]", "f32", "f16"),
    ("qmatmul", "[k, n]", "f16", "f16"),
    ("qmatmul_fragment", "fragment", "f32", "f16"),
    ("qmatmul_fragment", "fragment", "f16", "f16"),
    ("qmatmul_fragment", "fragment", "f16", "u4"),
    ("qmatmul_fragment", "fragment", "bf16", "f16"),
];

fn main() -> anyhow::Result<()> {
    let markdown = std::env::args().any(|a| a == "--markdown");
    let root = repository_root();
    if std::env::args().any(|a| a == "--gpu-only") {
        if !tl_runtime::cuda::driver_available() {
            anyhow::bail!("--gpu-only: no CUDA driver and device here");
        }
        return gpu::run(&root, markdown);
    }
    let arch = Arch::Sm80;
    let have_ptxas = ptxas::find_ptxas().is_some();
    let config: Vec<String> = CONFIG.iter().map(|(n, v)| format!("{n}={v}")).collect();
    println!("qmatmul at {} (variant {ASSUME}), {}, PTX from LLVM {}", config.join(" "), arch.name(), if cfg!(debug_assertions) { "(debug build: compile times are not meaningful)" } else { "(release build)" });
    let header = ["format", "weights", "D", "Z", "compile ms", "PTX instr", "K-loop instr", "instr/weight", "barriers", "mma", "registers", "spills (B)", "smem (B)"];
    let print_row = |row: &[String]| {
        if markdown {
            println!("| {} |", row.join(" | "));
        } else {
            println!(
                "{:<10} {:<9} {:<4} {:<4} {:>10} {:>10} {:>12} {:>12} {:>8} {:>5} {:>9} {:>10} {:>8}",
                row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10], row[11], row[12]
            );
        }
    };
    print_row(&header.map(String::from));
    if markdown {
        println!("|{}|", header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    }
    for name in FORMATS {
        let w = DType::from_name(name).ok_or_else(|| anyhow::anyhow!("unknown format {name}"))?;
        for (kernel_name, weights, arithmetic, zero) in KERNELS {
            let path = format!("{root}/stdlib/kernels/{kernel_name}.tl");
            let [d, z] = [arithmetic, zero].map(|t| DType::from_name(t).ok_or_else(|| anyhow::anyhow!("unknown dtype {t}")));
            let mut row = vec![name.to_string(), weights.to_string(), arithmetic.to_string(), zero.to_string()];
            row.extend(measure(&path, kernel_name, w, d?, z?, arch, have_ptxas)?);
            print_row(&row);
        }
    }
    decode_grids(markdown);
    if !have_ptxas {
        println!("ptxas not found (set TL_PTXAS or put it on PATH): registers, spills and shared memory are unknown");
    }
    if std::env::args().any(|a| a == "--no-gpu") {
        println!("--no-gpu: the GPU comparison is skipped");
    } else if tl_runtime::cuda::driver_available() {
        gpu::run(&root, markdown)?;
    } else {
        println!("no GPU present: the GPU comparison (our kernel against torch fp16 and Triton W4A16 at the copy-bandwidth bound) needs one");
    }
    Ok(())
}

/// The repository whose kernels are measured: the current directory when it holds
/// `stdlib/kernels` (a binary carried to another machine and run from a copy of the
/// repository), else the one this was built from.
fn repository_root() -> String {
    match std::env::current_dir() {
        Ok(dir) if dir.join("stdlib/kernels/qmatmul_fragment.tl").is_file() => dir.display().to_string(),
        _ => concat!(env!("CARGO_MANIFEST_DIR"), "/..").to_string(),
    }
}

/// The columns after the format, the weight order, the arithmetic and the zero points' dtype
/// for kernel `kernel_name` of `path` with weights of `w` dequantized in `d`, zero points of `z`.
#[allow(clippy::too_many_arguments)]
fn measure(path: &str, kernel_name: &str, w: DType, d: DType, z: DType, arch: Arch, have_ptxas: bool) -> anyhow::Result<Vec<String>> {
    let source = std::fs::read_to_string(path)?;
    let mut consts: Vec<(String, ConstValue)> = CONFIG.iter().map(|(n, v)| (n.to_string(), ConstValue::Int(*v))).collect();
    consts.push(("W".into(), ConstValue::DType(w)));
    consts.push(("D".into(), ConstValue::DType(d)));
    consts.push(("Z".into(), ConstValue::DType(z)));
    if d == DType::BF16 {
        consts.push(("A".into(), ConstValue::DType(DType::BF16)));
    }
    // Source to PTX, the whole way, three times.
    let mut times = Vec::new();
    let mut ptx = String::new();
    let mut threads = 0;
    let mut planned = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let module = Module::from_source(path, &source)?.with_code_generator(tl_ptx::code_generator());
        let kernel = module.kernel(Some(kernel_name), &consts)?;
        let assumptions = kernel.assumptions(&[ASSUME.to_string()])?;
        ptx = kernel.variant_ptx(&assumptions, arch)?.to_string();
        times.push(start.elapsed().as_secs_f64() * 1e3);
        threads = kernel.compiled.lir.block_threads as usize;
        planned = kernel.compiled.lir.shared_bytes;
    }
    times.sort_by(f64::total_cmp);
    let stats = ptx_stats::analyze(&ptx).into_iter().find(|k| k.name == kernel_name).ok_or_else(|| anyhow::anyhow!("no {kernel_name} entry"))?;
    let hot = stats.hot_loop().ok_or_else(|| anyhow::anyhow!("no loop in {kernel_name}"))?;
    let config = |name: &str| CONFIG.iter().find(|(n, _)| *n == name).map_or(1, |(_, v)| *v);
    let weights_per_thread = (config("BK") * config("BN")) as f64 / threads as f64;
    let usage = if have_ptxas {
        let report = ptxas::assemble(&ptx, arch).map_err(|e| anyhow::anyhow!(e))?;
        ptxas::parse_resource_usage(&report).into_iter().find(|u| u.name == kernel_name)
    } else {
        None
    };
    let (registers, spills, smem) = match &usage {
        // ptxas counts static shared memory only; beyond 48 KB the buffer is dynamic.
        Some(u) if u.shared_bytes == 0 && planned > tl_compiler::backend::STATIC_SHARED_BYTES => {
            (u.registers.to_string(), (u.spill_store_bytes + u.spill_load_bytes).to_string(), format!("{planned} (dynamic)"))
        }
        Some(u) => (u.registers.to_string(), (u.spill_store_bytes + u.spill_load_bytes).to_string(), u.shared_bytes.to_string()),
        None => ("?".into(), "?".into(), "?".into()),
    };
    Ok(vec![
        format!("{:.0}", times[1]),
        stats.counts.instructions.to_string(),
        hot.counts.instructions.to_string(),
        format!("{:.1}", hot.counts.instructions as f64 / weights_per_thread),
        hot.counts.with_prefix("bar").to_string(),
        hot.counts.with_prefix("mma").to_string(),
        registers,
        spills,
        smem,
    ])
}

/// The blocks a decode launch (m ≤ 16: one m tile) gives the GPU on the linear layers of
/// Llama-3, BN = 128, BK = 64, without and with split-K (`stdlib/kernels/qmatmul_split.tl`):
/// n / BN blocks, times the number of k ranges; an H100 or H200 has 132 SMs.
fn decode_grids(markdown: bool) {
    const LAYERS: [(&str, usize, usize); 8] = [
        ("8B qkv", 6144, 4096),
        ("8B o", 4096, 4096),
        ("8B gate+up", 28672, 4096),
        ("8B down", 4096, 14336),
        ("70B qkv", 10240, 8192),
        ("70B o", 8192, 8192),
        ("70B gate+up", 57344, 8192),
        ("70B down", 8192, 28672),
    ];
    const SPLITS: [usize; 4] = [1, 2, 4, 8];
    let (bn, bk, g) = (128, 64, 128);
    println!();
    println!("decode grids (m <= 16, BN={bn}, BK={bk}, G={g}): blocks for SPLITS = {SPLITS:?} (k tiles per split in parentheses: whole groups of G / BK tiles)");
    let header = ["layer", "n", "k", "SPLITS=1", "SPLITS=2", "SPLITS=4", "SPLITS=8"];
    if markdown {
        println!("| {} |", header.join(" | "));
        println!("|{}|", header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    }
    for (name, n, k) in LAYERS {
        // As `qmatmul_split` divides k: whole groups per split.
        let (tiles, groups) = (k.div_ceil(bk), k.div_ceil(g));
        let mut row = vec![name.to_string(), n.to_string(), k.to_string()];
        row.extend(SPLITS.iter().map(|s| format!("{} ({})", n.div_ceil(bn) * s, (groups.div_ceil(*s) * (g / bk)).min(tiles))));
        if markdown {
            println!("| {} |", row.join(" | "));
        } else {
            println!("{:<12} {:>6} {:>6} {:>11} {:>11} {:>11} {:>11}", row[0], row[1], row[2], row[3], row[4], row[5], row[6]);
        }
    }
}
