//! `view` means the same thing whatever layouts the compiler picks: every row's bits, LSB
//! first, cut into codes of the new dtype (docs/language.md). A kernel loads a tile, views it
//! and stores it, over many width pairs, tile shapes, warp counts and layout annotations (some
//! of which force the lowering to move bits between threads); the VM and the simulator must
//! both give exactly the bits of a host computation that knows nothing about layouts.

use tl_compiler::dtype::DType;
use tl_runtime::{Arg, Backend, HostTensor, Module};
use tl_tests::Rng;

/// The code of bits `[start, start + len)` of a row given as codes of `bits` bits each, read
/// bit by bit (independent of the packing helpers the compiler and the VM use).
fn host_bits(row: &[u64], bits: usize, start: usize, len: usize) -> u64 {
    (0..len).fold(0u64, |code, k| {
        let position = start + k;
        let bit = (row[position / bits] >> (position % bits)) & 1;
        code | (bit << k)
    })
}

/// Random codes of `dtype` over its whole code range, avoiding NaN codes of floats (the VM
/// keeps values, not NaN payloads).
fn random_codes(rng: &mut Rng, dtype: DType, n: usize) -> Vec<u64> {
    let mask = if dtype.bits() >= 64 { u64::MAX } else { (1u64 << dtype.bits()) - 1 };
    (0..n)
        .map(|_| loop {
            let code = rng.next() & mask;
            if !(dtype.is_float() && dtype.decode(code).is_nan()) {
                break code;
            }
        })
        .collect()
}

struct Case {
    from: DType,
    to: DType,
    rows: usize,
    cols: usize,
    warps: usize,
    /// A layout annotation for the operand and for the result, or none.
    annotations: (Option<String>, Option<String>),
}

impl Case {
    fn out_cols(&self) -> usize {
        self.cols * self.from.bits() as usize / self.to.bits() as usize
    }

    fn source(&self) -> String {
        let (r, c, c2) = (self.rows, self.cols, self.out_cols());
        let (s, t) = (self.from, self.to);
        let annotate = |a: &Option<String>, d: DType, cols: usize| match a {
            Some(l) => format!(": reg {d}[{r}, {cols}] @ {l}"),
            None => String::new(),
        };
        format!(
            "kernel viewed(m: i32, nb: i32, no: i32, packed: global {s}[m, nb], out: global mut {t}[m, no]) \
             grid(cdiv(m, {r}), cdiv(nb, {c})) warps({w}) {{\n\
             \x20   let x{xa} = load(packed, [block.x * {r}, block.y * {c}], [{r}, {c}]);\n\
             \x20   let y{ya} = view<{t}>(x);\n\
             \x20   store(out, y, [block.x * {r}, block.y * {c2}]);\n\
             }}\n",
            w = self.warps,
            xa = annotate(&self.annotations.0, s, c),
            ya = annotate(&self.annotations.1, t, c2),
        )
    }

    fn run(&self, rng: &mut Rng) {
        let source = self.source();
        let module = Module::from_source("view.tl", &source).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap_or_else(|e| panic!("{source}\n{e}"));
        let kernel = module.kernel(None, &[]).unwrap_or_else(|e| panic!("{source}\n{e}"));
        let (sb, db) = (self.from.bits() as usize, self.to.bits() as usize);
        // Ragged in both directions, keeping whole result codes per row.
        let step = db / gcd(sb, db);
        let m = self.rows * 2 + 1 + (rng.next() % self.rows as u64) as usize;
        let nb = (self.cols * 2 + step * (1 + (rng.next() % 3) as usize)).div_ceil(step) * step;
        let no = nb * sb / db;
        let codes = random_codes(rng, self.from, m * nb);
        let input = HostTensor::from_codes(self.from, &[m, nb], &codes);
        let mut poison = HostTensor::zeros(self.to, &[m, no]);
        poison.data.iter_mut().for_each(|b| *b = 0xA5);
        let args = vec![Arg::scalar(m as i64), Arg::scalar(nb as i64), Arg::scalar(no as i64), input.into(), poison.into()];
        for backend in [Backend::Vm, Backend::Simt] {
            let mut run_args = args.clone();
            kernel.launch(backend, &mut run_args).unwrap_or_else(|e| panic!("{source}\n{}: {e}", backend.name()));
            let out = run_args[4].tensor().expect("tensor");
            for r in 0..m {
                let row = &codes[r * nb..(r + 1) * nb];
                for j in 0..no {
                    let expected = host_bits(row, sb, j * db, db);
                    let got = out.code(r * no + j);
                    // The VM keeps values, so a NaN's payload is not kept (docs/language.md).
                    let both_nan = self.to.is_float() && self.to.decode(expected).is_nan() && self.to.decode(got).is_nan();
                    assert!(
                        got == expected || both_nan,
                        "{}: view<{}> of {}[{}, {}] (warps {}, annotations {:?}): out[{r}, {j}] = {got:#x}, expected {expected:#x}\n{source}",
                        backend.name(),
                        self.to,
                        self.from,
                        self.rows,
                        self.cols,
                        self.warps,
                        self.annotations
                    );
                }
            }
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn dtype(name: &str) -> DType {
    DType::from_name(name).unwrap_or_else(|| panic!("{name}"))
}

/// `local(rows / a, cols / b) * spatial(a, b)` or the other order, with `a · b` the block's
/// threads, when such a split exists: a layout inference would not pick for a view.
fn unusual_layout(rows: usize, cols: usize, threads: usize, spatial_first: bool) -> Option<String> {
    (1..=threads).filter(|a| threads.is_multiple_of(*a) && rows.is_multiple_of(*a)).find_map(|a| {
        let b = threads / a;
        cols.is_multiple_of(b).then(|| {
            let (local, spatial) = (format!("local({}, {})", rows / a, cols / b), format!("spatial({a}, {b})"));
            if spatial_first { format!("{spatial} * {local}") } else { format!("{local} * {spatial}") }
        })
    })
}

#[test]
fn the_issue_example_keeps_rows_apart_with_one_warp() {
    // u8[8, 64] viewed as u4 with one warp: nibbles of one row once landed in two rows.
    let case = Case { from: dtype("u8"), to: dtype("u4"), rows: 8, cols: 64, warps: 1, annotations: (None, None) };
    case.run(&mut Rng(0x5eed));
}

#[test]
fn view_is_layout_free_over_widths_shapes_and_warps() {
    let pairs = [
        ("u8", "u4"),
        ("u4", "u8"),
        ("u32", "u4"),
        ("u4", "u32"),
        ("u8", "u2"),
        ("u8", "u1"),
        ("u1", "u8"),
        ("u16", "u8"),
        ("u8", "u6"),
        ("u6", "u8"),
        ("u3", "u4"),
        ("i8", "i4"),
        ("f16", "u8"),
        ("u8", "f16"),
        ("f4e2m1", "u8"),
        ("u8", "f8e4m3fn"),
        ("u32", "f16"),
        ("i4", "u2"),
    ];
    let shapes = [(8, 64), (16, 32), (1, 96), (4, 24), (32, 8), (2, 48)];
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut cases = 0;
    for (from, to) in pairs {
        let (from, to) = (dtype(from), dtype(to));
        let (sb, db) = (from.bits() as usize, to.bits() as usize);
        for (rows, cols) in shapes {
            if (cols * sb) % db != 0 {
                continue;
            }
            for warps in [1, 2, 4] {
                let threads = 32 * warps;
                let out_cols = cols * sb / db;
                let mut variants = vec![(None, None)];
                // The result's layout fixed against the grain, the operand's left to inference,
                // and both fixed with the factors in opposite orders.
                if let Some(l) = unusual_layout(rows, out_cols, threads, cases % 2 == 0) {
                    variants.push((None, Some(l)));
                }
                if let (Some(a), Some(b)) =
                    (unusual_layout(rows, cols, threads, true), unusual_layout(rows, out_cols, threads, false))
                {
                    variants.push((Some(a), Some(b)));
                }
                for annotations in variants {
                    Case { from, to, rows, cols, warps, annotations }.run(&mut rng);
                    cases += 1;
                }
            }
        }
    }
    println!("{cases} view cases agree with the host on the VM and the simulator");
    assert!(cases > 150, "only {cases} cases ran");
}

#[test]
fn inferred_layouts_move_no_data_and_crossed_ones_exchange_and_assemble() {
    use tl_compiler::backend::{ptxas, Arch};
    use tl_compiler::passes::divisibility::Assumptions;
    let plain = Case { from: dtype("u8"), to: dtype("u4"), rows: 16, cols: 32, warps: 2, annotations: (None, None) };
    let crossed = Case {
        annotations: (unusual_layout(16, 32, 64, true), unusual_layout(16, 64, 64, false)),
        ..Case { from: dtype("u8"), to: dtype("u4"), rows: 16, cols: 32, warps: 2, annotations: (None, None) }
    };
    let odd = Case { from: dtype("u6"), to: dtype("u8"), rows: 4, cols: 24, warps: 1, annotations: (None, None) };
    let mut programs = Vec::new();
    for (case, exchanges) in [(&plain, false), (&crossed, true)] {
        let kernel = Module::from_source("view.tl", &case.source()).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap().kernel(None, &[]).unwrap();
        let program = kernel.variant(&Assumptions::default()).unwrap();
        assert_eq!(program.shared_bytes > 0, exchanges, "{}", case.source());
        programs.push(kernel);
    }
    programs.push(Module::from_source("view.tl", &odd.source()).map(|m| m.with_code_generator(tl_ptx::code_generator())).unwrap().kernel(None, &[]).unwrap());
    if !tl_tests::ptxas_available("view: ptxas") {
        return;
    }
    for kernel in &programs {
        for arch in Arch::ALL {
            let ptx = kernel.ptx(arch).unwrap_or_else(|e| panic!("{e}"));
            ptxas::assemble(ptx, arch).unwrap_or_else(|e| panic!("ptxas rejected a view for {}: {e}", arch.name()));
        }
    }
}
