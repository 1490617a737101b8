//! Robustness of the diagnostics against malformed input (the expected errors of hand-written
//! cases are filetests: `tests/filetests/errors`, run by `filetests.rs`).

use tl_compiler::{driver, sema, syntax::parser};

/// A tiny deterministic generator, so that the inputs are reproducible without dependencies.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn no_panic(bytes: &[u8]) {
    let source = match parser::decode_source(bytes) {
        Ok(s) => s,
        Err(d) => {
            assert!(d.message.contains("UTF-8"));
            return;
        }
    };
    let (file, _) = parser::parse(source);
    for d in sema::check_file(&file) {
        let _ = d.render("fuzz.tl", source);
    }
    if let Ok(file) = driver::parse(source) {
        for item in &file.items {
            if let tl_compiler::syntax::ast::Item::Kernel(k) = item {
                if let Ok(c) = driver::compile(&file, Some(&k.name.name), &[]) {
                    let _ = tl_ptx::lir_to_ptx(&c.lir, tl_compiler::backend::Arch::Sm80);
                }
            }
        }
    }
}

#[test]
fn malformed_inputs_never_panic() {
    let seeds: Vec<String> = tl_tests::shipped_kernel_files().iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    let mut rng = XorShift(0x9e3779b97f4a7c15);
    // Mutations of real kernels: byte flips, deletions, duplications, truncations.
    for round in 0..400 {
        let mut bytes = seeds[round % seeds.len()].clone().into_bytes();
        for _ in 0..1 + rng.next() % 4 {
            let at = (rng.next() as usize) % bytes.len();
            match rng.next() % 4 {
                0 => bytes[at] = rng.next() as u8,
                1 => {
                    let end = (at + (rng.next() % 20) as usize).min(bytes.len());
                    bytes.drain(at..end);
                }
                2 => {
                    let end = (at + (rng.next() % 40) as usize).min(bytes.len());
                    let chunk = bytes[at..end].to_vec();
                    bytes.splice(at..at, chunk);
                }
                _ => bytes.truncate(at),
            }
            if bytes.is_empty() {
                break;
            }
        }
        no_panic(&bytes);
    }
    // Pathological inputs.
    let deep = format!("kernel k() grid(1) warps(1) {{ let x = {}1{}; }}", "(".repeat(100_000), ")".repeat(100_000));
    let long = format!("kernel k() grid(1) warps(1) {{ let x = 1{}; }}", "+1".repeat(100_000));
    let unary = format!("kernel k() grid(1) warps(1) {{ let x = {}1; }}", "-".repeat(100_000));
    let blocks = format!("kernel k() grid(1) warps(1) {{ {} }}", "for i in 0..1 {".repeat(10_000));
    let huge = "kernel k<B = 99999999999999999999999>() grid(1) warps(1) {}".to_string();
    let overflow = "kernel k<B = 9223372036854775807>() grid(B * B) warps(1) { let x = B + 1; }".to_string();
    let tile = "kernel k(n: i32, a: global f32[n]) grid(1) warps(1) { let x = load(a, [0], [1048576, 1048576]); }".to_string();
    for s in [deep, long, unary, blocks, huge, overflow, tile] {
        no_panic(s.as_bytes());
    }
    let garbage: Vec<u8> = (0..20_000).map(|_| rng.next() as u8).collect();
    no_panic(&garbage);
    no_panic(b"kernel \xff\xfe k() {}");
    no_panic(b"");
}
