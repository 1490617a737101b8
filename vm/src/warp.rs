//! Warp-wide tensor-core instructions, from their definitions in the PTX ISA.
//!
//! Written from the ISA's fragment tables (not from the compiler's layout code), so that the
//! simulator checks the layouts the compiler chooses for `mma` operands and accumulators.

use tl_compiler::lir::MmaKind;

/// Lanes of a warp.
pub const WARP: usize = 32;

/// `mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32` for one warp.
///
/// Fragments per lane (`groupID = lane / 4`, `tig = lane % 4`; a 32-bit register holds two
/// 16-bit elements, the lower-numbered one in the low half):
/// * A (16×16, row-major): element `a_i`, i in 0..8, is at row `groupID + 8·((i / 2) % 2)`,
///   column `2·tig + (i % 2) + 8·(i / 4)`;
/// * B (16×8, column-major): `b_i`, i in 0..4, is at row `2·tig + (i % 2) + 8·(i / 2)`, column
///   `groupID`;
/// * C and D (16×8): `c_i`, i in 0..4, is at row `groupID + 8·(i / 2)`, column
///   `2·tig + (i % 2)`.
///
/// D = A·B + C, each element summed exactly (in f64) and rounded once to f32.
pub fn mma_m16n8k16(kind: MmaKind, a: &[[u32; 4]; WARP], b: &[[u32; 2]; WARP], c: &mut [[f32; 4]; WARP]) {
    assert!(kind != MmaKind::S8, "s8 is mma_m16n8k32_s8");
    let halves_a = std::array::from_fn(|at| fragment_half(a[usize::from(A_PLACES[at].0)][usize::from(A_PLACES[at].1 / 2)], A_PLACES[at].1));
    let halves_b = std::array::from_fn(|at| fragment_half(b[usize::from(B_PLACES[at].0)][usize::from(B_PLACES[at].1 / 2)], B_PLACES[at].1));
    let matrix_c = std::array::from_fn(|at| f64::from(c[usize::from(C_PLACES[at].0)][usize::from(C_PLACES[at].1)]));
    let d = mma_m16n8k16_matrices(kind, &halves_a, &halves_b, &matrix_c);
    for (at, &(lane, i)) in C_PLACES.iter().enumerate() {
        c[usize::from(lane)][usize::from(i)] = d[at] as f32;
    }
}

/// Half `i % 2` of a fragment register (`a_i`/`b_i` with i even in the low 16 bits).
#[inline]
fn fragment_half(register: u32, i: u8) -> u16 {
    if i % 2 == 1 { (register >> 16) as u16 } else { register as u16 }
}

/// Where `a_i` (i in 0..8) of `lane` sits in A, as a row-major index of the 16×16 matrix: the
/// ISA's table above (`groupID = lane / 4`, `tig = lane % 4`).
pub const fn a_element(lane: usize, i: usize) -> usize {
    let (group, tig) = (lane / 4, lane % 4);
    (group + 8 * ((i / 2) % 2)) * 16 + 2 * tig + i % 2 + 8 * (i / 4)
}

/// Where `b_i` (i in 0..4) of `lane` sits in B, row-major (16×8).
pub const fn b_element(lane: usize, i: usize) -> usize {
    let (group, tig) = (lane / 4, lane % 4);
    (2 * tig + i % 2 + 8 * (i / 2)) * 8 + group
}

/// Where `c_i` (and `d_i`, i in 0..4) of `lane` sits in C and D, row-major (16×8).
pub const fn c_element(lane: usize, i: usize) -> usize {
    let (group, tig) = (lane / 4, lane % 4);
    (group + 8 * (i / 2)) * 8 + 2 * tig + i % 2
}

/// The maps above inverted: for each matrix element (row-major), the (lane, i) holding it.
macro_rules! places {
    ($elements:expr, $per_lane:expr, $element:ident) => {{
        let mut places = [(0u8, 0u8); $elements];
        let mut lane = 0;
        while lane < WARP {
            let mut i = 0;
            while i < $per_lane {
                places[$element(lane, i)] = (lane as u8, i as u8);
                i += 1;
            }
            lane += 1;
        }
        places
    }};
}
const A_PLACES: [(u8, u8); 256] = places!(256, 8, a_element);
const B_PLACES: [(u8, u8); 128] = places!(128, 4, b_element);
const C_PLACES: [(u8, u8); 128] = places!(128, 4, c_element);

/// D = A·B + C on whole matrices (row-major, `A_PLACES` order): the halves of A and B (f16, or
/// bf16 for `MmaKind::BF16`) and C's values; D's values before their rounding to f32.
pub fn mma_m16n8k16_matrices(kind: MmaKind, a: &[u16; 256], b: &[u16; 128], c: &[f64; 128]) -> [f64; 128] {
    assert!(kind != MmaKind::S8, "s8 is mma_m16n8k32_s8");
    products(kind == MmaKind::BF16, a, b, c)
}

/// The value of an f16 (exact; a NaN stays a NaN): exponent and mantissa moved into an f32's
/// fields and scaled by 2^112, which is exact for normal and subnormal values alike.
#[inline]
fn f16_value(bits: u16) -> f64 {
    let magnitude = u32::from(bits & 0x7fff);
    let value = if magnitude >= 0x7c00 {
        f32::from_bits((magnitude << 13) | 0x7000_0000)
    } else {
        f32::from_bits(magnitude << 13) * f32::from_bits(0x7780_0000)
    };
    let value = f64::from(value);
    if bits & 0x8000 != 0 { -value } else { value }
}

/// The value of a bf16 (exact).
#[inline]
fn bf16_value(bits: u16) -> f64 {
    f64::from(f32::from_bits(u32::from(bits) << 16))
}

/// D = A·B + C from the halves of A and B (f16, or bf16) and C's values: each element the
/// products in order of k summed from -0.0 (as `Iterator::sum`), then C, in f64 (every
/// product exact). With AVX and F16C where the machine has them: the same operations (no fused
/// multiply-add, so the same bits), four columns at a time, the f16 values converted by the
/// machine's instruction (exact, as every conversion to wider).
fn products(bf16: bool, a: &[u16; 256], b: &[u16; 128], c: &[f64; 128]) -> [f64; 128] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx") && std::is_x86_feature_detected!("f16c") {
            // SAFETY: the machine has AVX and F16C.
            return unsafe { products_avx(bf16, a, b, c) };
        }
    }
    let value = if bf16 { bf16_value } else { f16_value };
    let (a, b) = (a.map(value), b.map(value));
    products_in_order(&a, &b, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn products_avx(bf16: bool, a: &[u16; 256], b: &[u16; 128], c: &[f64; 128]) -> [f64; 128] {
    use std::arch::x86_64::{__m128i, _mm256_castps256_ps128, _mm256_cvtph_ps, _mm256_cvtps_pd, _mm256_extractf128_ps, _mm256_storeu_pd, _mm_loadu_si128};
    // The values are written over whole arrays left uninitialized (zeroing them first was a
    // memset per product, a few percent of a tensor-core kernel on the cpu backend).
    let mut values_a = std::mem::MaybeUninit::<[f64; 256]>::uninit();
    let mut values_b = std::mem::MaybeUninit::<[f64; 128]>::uninit();
    let (to_a, to_b) = (values_a.as_mut_ptr().cast::<f64>(), values_b.as_mut_ptr().cast::<f64>());
    for (halves, to) in [(&a[..], to_a), (&b[..], to_b)] {
        for (chunk, eight) in halves.chunks_exact(8).enumerate() {
            // SAFETY: eight u16 read, eight f64 written inside the array (`halves` has as many
            // elements as it), unaligned accesses.
            unsafe {
                let out = to.add(8 * chunk);
                if bf16 {
                    for (k, &h) in eight.iter().enumerate() {
                        out.add(k).write(bf16_value(h));
                    }
                } else {
                    let wide = _mm256_cvtph_ps(_mm_loadu_si128(eight.as_ptr().cast::<__m128i>()));
                    _mm256_storeu_pd(out, _mm256_cvtps_pd(_mm256_castps256_ps128(wide)));
                    _mm256_storeu_pd(out.add(4), _mm256_cvtps_pd(_mm256_extractf128_ps(wide, 1)));
                }
            }
        }
    }
    // SAFETY: every element of both arrays was written just above.
    let (values_a, values_b) = unsafe { (values_a.assume_init(), values_b.assume_init()) };
    products_in_order(&values_a, &values_b, c)
}

#[inline(always)]
fn products_in_order(a: &[f64; 256], b: &[f64; 128], c: &[f64; 128]) -> [f64; 128] {
    // The eight columns of four rows side by side: 32 independent sums (each still in the
    // order of k) the machine can vectorize and overlap.
    let mut d = [0f64; 128];
    for rows in (0..16).step_by(4) {
        let mut sums = [[-0.0f64; 8]; 4];
        for k in 0..16 {
            for (r, row_sums) in sums.iter_mut().enumerate() {
                let x = a[(rows + r) * 16 + k];
                for (col, sum) in row_sums.iter_mut().enumerate() {
                    *sum += x * b[k * 8 + col];
                }
            }
        }
        for (r, row_sums) in sums.iter().enumerate() {
            for (col, sum) in row_sums.iter().enumerate() {
                d[(rows + r) * 8 + col] = sum + c[(rows + r) * 8 + col];
            }
        }
    }
    d
}

/// `mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32` for one warp (four s8 per register,
/// the lowest-numbered element in the lowest byte):
/// * A (16×32): `a_i`, i in 0..16, at row `groupID + 8·((i / 4) % 2)`, column
///   `4·tig + (i % 4) + 16·(i / 8)`;
/// * B (32×8): `b_i`, i in 0..8, at row `4·tig + (i % 4) + 16·(i / 4)`, column `groupID`;
/// * C and D (16×8, s32): as for m16n8k16.
///
/// D = A·B + C with wrapping 32-bit arithmetic (no `.satfinite`).
pub fn mma_m16n8k32_s8(a: &[[u32; 4]; WARP], b: &[[u32; 2]; WARP], c: &mut [[i32; 4]; WARP]) {
    let byte = |reg: u32, k: usize| (reg >> (8 * k)) as u8 as i8 as i32;
    let mut matrix_a = [[0i32; 32]; 16];
    let mut matrix_b = [[0i32; 8]; 32];
    let mut matrix_c = [[0i32; 8]; 16];
    for lane in 0..WARP {
        let (group, tig) = (lane / 4, lane % 4);
        for i in 0..16 {
            matrix_a[group + 8 * ((i / 4) % 2)][4 * tig + (i % 4) + 16 * (i / 8)] = byte(a[lane][i / 4], i % 4);
        }
        for i in 0..8 {
            matrix_b[4 * tig + (i % 4) + 16 * (i / 4)][group] = byte(b[lane][i / 4], i % 4);
        }
        for i in 0..4 {
            matrix_c[group + 8 * (i / 2)][2 * tig + (i % 2)] = c[lane][i];
        }
    }
    for lane in 0..WARP {
        let (group, tig) = (lane / 4, lane % 4);
        for i in 0..4 {
            let (row, col) = (group + 8 * (i / 2), 2 * tig + (i % 2));
            let sum = (0..32).fold(matrix_c[row][col], |acc, k| acc.wrapping_add(matrix_a[row][k].wrapping_mul(matrix_b[k][col])));
            c[lane][i] = sum;
        }
    }
}

/// `ldmatrix.sync.aligned.m8n8.x{count}{.trans}.b16` for one warp. `rows[lane]` holds the
/// eight 16-bit elements at the row address lane `lane` gave; lanes `8i..8i+7` give the rows of
/// matrix `i` (the others are ignored). Lane `l` receives in register `i` the elements
/// (row `l / 4`, columns `2·(l % 4)` and `2·(l % 4) + 1`) of matrix `i`, or with `trans` those
/// at (rows `2·(l % 4)` and `2·(l % 4) + 1`, column `l / 4`); the first goes to the low half.
pub fn ldmatrix(count: usize, trans: bool, rows: &[[u16; 8]; WARP]) -> [[u32; 4]; WARP] {
    let mut out = [[0u32; 4]; WARP];
    for (lane, regs) in out.iter_mut().enumerate() {
        for (i, reg) in regs.iter_mut().enumerate().take(count) {
            let at = |row: usize, col: usize| rows[8 * i + row][col] as u32;
            let (first, second) = if trans {
                (at(2 * (lane % 4), lane / 4), at(2 * (lane % 4) + 1, lane / 4))
            } else {
                (at(lane / 4, 2 * (lane % 4)), at(lane / 4, 2 * (lane % 4) + 1))
            };
            *reg = first | (second << 16);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each fragment map is one-to-one onto its matrix: every element is held by exactly one
    /// (lane, i), so the inverted tables leave no element at its default.
    #[test]
    fn fragment_maps_cover_each_matrix_once() {
        let check = |name: &str, places: &[(u8, u8)], element: fn(usize, usize) -> usize| {
            for (at, &(lane, i)) in places.iter().enumerate() {
                assert_eq!(element(usize::from(lane), usize::from(i)), at, "{name}: element {at}");
            }
        };
        check("A", &A_PLACES, a_element);
        check("B", &B_PLACES, b_element);
        check("C", &C_PLACES, c_element);
    }

    #[test]
    fn f16_and_bf16_values_are_the_half_crates() {
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f64();
            let got = f16_value(bits);
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{bits:#06x}: {got:e}, half says {want:e}");
            let want = half::bf16::from_bits(bits).to_f64();
            let got = bf16_value(bits);
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "bf16 {bits:#06x}: {got:e}, half says {want:e}");
        }
    }

    /// The machine-specific path of `products` against the portable one, on random halves
    /// (NaNs and infinities among them) and both formats.
    #[test]
    fn products_agree_across_paths() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..200 {
            let bf16 = round % 2 == 1;
            let a: [u16; 256] = std::array::from_fn(|_| next() as u16);
            let b: [u16; 128] = std::array::from_fn(|_| next() as u16);
            let c: [f64; 128] = std::array::from_fn(|_| f64::from(f32::from_bits(next() as u32 & 0xbfff_ffff)));
            let value = if bf16 { bf16_value } else { f16_value };
            let portable = products_in_order(&a.map(value), &b.map(value), &c);
            let chosen = products(bf16, &a, &b, &c);
            for k in 0..128 {
                assert!(portable[k].to_bits() == chosen[k].to_bits() || (portable[k].is_nan() && chosen[k].is_nan()), "round {round} element {k}: {} vs {}", portable[k], chosen[k]);
            }
        }
    }

    #[test]
    fn ldmatrix_distributes_rows_and_transposes() {
        // Element (matrix i, row r, column c) = i·64 + r·8 + c.
        let mut rows = [[0u16; 8]; WARP];
        for (lane, row) in rows.iter_mut().enumerate() {
            for (c, x) in row.iter_mut().enumerate() {
                *x = ((lane / 8) * 64 + (lane % 8) * 8 + c) as u16;
            }
        }
        let plain = ldmatrix(4, false, &rows);
        let trans = ldmatrix(2, true, &rows);
        for lane in 0..WARP {
            for i in 0..4 {
                let (r, c) = (lane / 4, 2 * (lane % 4));
                let want = (i * 64 + r * 8 + c) as u32 | (((i * 64 + r * 8 + c + 1) as u32) << 16);
                assert_eq!(plain[lane][i], want, "lane {lane} matrix {i}");
            }
            for i in 0..2 {
                let (r, c) = (2 * (lane % 4), lane / 4);
                let want = (i * 64 + r * 8 + c) as u32 | (((i * 64 + (r + 1) * 8 + c) as u32) << 16);
                assert_eq!(trans[lane][i], want, "lane {lane} matrix {i} transposed");
            }
            assert_eq!(trans[lane][2], 0);
        }
    }

    /// Puts matrices into fragments with the same tables, runs the instruction, and compares
    /// with a plain matrix product.
    #[test]
    fn mma_computes_the_matrix_product() {
        let value = |r: usize, c: usize, s: usize| ((r * 7 + c * 3 + s) % 11) as f32 - 5.0;
        let a_m: Vec<Vec<f32>> = (0..16).map(|r| (0..16).map(|c| value(r, c, 1) / 4.0).collect()).collect();
        let b_m: Vec<Vec<f32>> = (0..16).map(|r| (0..8).map(|c| value(r, c, 2) / 2.0).collect()).collect();
        let c_m: Vec<Vec<f32>> = (0..16).map(|r| (0..8).map(|c| value(r, c, 3)).collect()).collect();
        let bits = |v: f32| half::f16::from_f32(v).to_bits() as u32;
        let (mut a, mut b, mut c) = ([[0u32; 4]; WARP], [[0u32; 2]; WARP], [[0f32; 4]; WARP]);
        for lane in 0..WARP {
            let (g, t) = (lane / 4, lane % 4);
            for i in 0..8 {
                let (row, col) = (g + 8 * ((i / 2) % 2), 2 * t + (i % 2) + 8 * (i / 4));
                a[lane][i / 2] |= bits(a_m[row][col]) << (16 * (i % 2));
            }
            for i in 0..4 {
                let (row, col) = (2 * t + (i % 2) + 8 * (i / 2), g);
                b[lane][i / 2] |= bits(b_m[row][col]) << (16 * (i % 2));
            }
            for i in 0..4 {
                c[lane][i] = c_m[g + 8 * (i / 2)][2 * t + (i % 2)];
            }
        }
        mma_m16n8k16(MmaKind::F16, &a, &b, &mut c);
        for lane in 0..WARP {
            let (g, t) = (lane / 4, lane % 4);
            for i in 0..4 {
                let (row, col) = (g + 8 * (i / 2), 2 * t + (i % 2));
                let want: f32 = (0..16).map(|k| a_m[row][k] * b_m[k][col]).sum::<f32>() + c_m[row][col];
                assert_eq!(c[lane][i], want, "lane {lane} c{i}");
            }
        }
    }
}
