//! `atomic_add` (docs/language.md §7) on the VM and the simulator for every dtype with an
//! atomic addition, against sums computed on the host: blocks add overlapping row ranges into
//! one tensor (rows past its end skipped), and a reduction's result, held by several threads,
//! adds once. Outputs start from random values, not zeros. Integer inputs include values near
//! the type's limits, so that the sums wrap around; float inputs are small integers, whose sums
//! every order of addition computes exactly.

use tl_compiler::dtype::DType;
use tl_compiler::ir::ConstValue;
use tl_runtime::{Backend, HostTensor, Module};
use tl_tests::Rng;

const DTYPES: [DType; 8] = [DType::I32, DType::U32, DType::I64, DType::U64, DType::F16, DType::BF16, DType::F32, DType::F64];

/// Codes of `d` for the host: integers as two's complement patterns (some near the top of the
/// range when `wide`), floats as small integers.
fn random_codes(d: DType, count: usize, wide: bool, rng: &mut Rng) -> Vec<u64> {
    let mask = tl_compiler::dtype::mask(d.bits());
    (0..count)
        .map(|i| {
            if d.is_int() {
                // Every fourth value near the top of the range, so that sums wrap.
                if wide && i % 4 == 0 { (mask - (rng.next() % 8)) & mask } else { rng.next() & 0xff }
            } else {
                let v = (rng.next() % 5) as f64 - 2.0;
                HostTensor::from_f64(d, &[1], &[v]).code(0)
            }
        })
        .collect()
}

/// The host's sum of two elements of `d`, from their codes.
fn add(d: DType, a: u64, b: u64) -> u64 {
    if d.is_int() {
        return a.wrapping_add(b) & tl_compiler::dtype::mask(d.bits());
    }
    let value = |c: u64| HostTensor::from_codes(d, &[1], &[c]).get(0);
    // Small integers: the sum is exact in every float dtype here.
    HostTensor::from_f64(d, &[1], &[value(a) + value(b)]).code(0)
}

#[test]
fn atomic_adds_match_host_sums_for_every_dtype() {
    let source = std::fs::read_to_string(tl_tests::repo_root().join("tests/kernels/atomics.tl")).unwrap();
    let module = Module::from_source("atomics.tl", &source).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = Rng(0xa70_41c5);
    for d in DTYPES {
        let kernel = module.kernel(None, &[("T".to_string(), ConstValue::DType(d))]).unwrap_or_else(|e| panic!("{d}: {e}"));
        let x = random_codes(d, 64 * 32, true, &mut rng);
        let small = random_codes(d, 64 * 32, false, &mut rng);
        let totals_start = random_codes(d, 8 * 32, true, &mut rng);
        let sums_start = random_codes(d, 32, true, &mut rng);
        // Block b adds its rows 16b .. 16b + 15 into rows 2b .. 2b + 15 of `totals` (those < 8).
        let mut want_totals = totals_start.clone();
        let mut want_sums = sums_start.clone();
        for b in 0..4 {
            for r in 0..16 {
                for c in 0..32 {
                    let v = x[(16 * b + r) * 32 + c];
                    if 2 * b + r < 8 {
                        let o = (2 * b + r) * 32 + c;
                        want_totals[o] = add(d, want_totals[o], v);
                    }
                    want_sums[c] = add(d, want_sums[c], small[(16 * b + r) * 32 + c]);
                }
            }
        }
        for backend in [Backend::Vm, Backend::Simt] {
            let mut args = vec![
                HostTensor::from_codes(d, &[64, 32], &x).into(),
                HostTensor::from_codes(d, &[64, 32], &small).into(),
                HostTensor::from_codes(d, &[8, 32], &totals_start).into(),
                HostTensor::from_codes(d, &[32], &sums_start).into(),
            ];
            kernel.launch(backend, &mut args).unwrap_or_else(|e| panic!("{d} on {}: {e}", backend.name()));
            let codes = |i: usize| {
                let t = args[i].tensor().unwrap();
                (0..t.len()).map(|k| t.code(k)).collect::<Vec<u64>>()
            };
            assert_eq!(codes(2), want_totals, "{d} on {}: overlapping row ranges", backend.name());
            assert_eq!(codes(3), want_sums, "{d} on {}: a replicated reduction adds once", backend.name());
        }
    }
}
