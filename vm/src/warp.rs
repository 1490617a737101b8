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
    match kind {
        // Through f32: exact, and the conversion the machine has.
        MmaKind::F16 => mma_m16n8k16_of(f16_value, a, b, c),
        MmaKind::BF16 => mma_m16n8k16_of(|bits| f64::from(half::bf16::from_bits(bits).to_f32()), a, b, c),
        MmaKind::S8 => unreachable!("s8 is mma_m16n8k32_s8"),
    }
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

/// `mma_m16n8k16` with the elements' values given by `element` (a copy per format, inlined).
fn mma_m16n8k16_of(element: impl Fn(u16) -> f64, a: &[[u32; 4]; WARP], b: &[[u32; 2]; WARP], c: &mut [[f32; 4]; WARP]) {
    let half_of = |reg: u32, high: bool| -> u16 { if high { (reg >> 16) as u16 } else { reg as u16 } };
    let mut matrix_a = [[0f64; 16]; 16];
    let mut matrix_b = [[0f64; 8]; 16];
    let mut matrix_c = [[0f64; 8]; 16];
    for lane in 0..WARP {
        let (group, tig) = (lane / 4, lane % 4);
        for i in 0..8 {
            let (row, col) = (group + 8 * ((i / 2) % 2), 2 * tig + (i % 2) + 8 * (i / 4));
            matrix_a[row][col] = element(half_of(a[lane][i / 2], i % 2 == 1));
        }
        for i in 0..4 {
            let (row, col) = (2 * tig + (i % 2) + 8 * (i / 2), group);
            matrix_b[row][col] = element(half_of(b[lane][i / 2], i % 2 == 1));
        }
        for i in 0..4 {
            let (row, col) = (group + 8 * (i / 2), 2 * tig + (i % 2));
            matrix_c[row][col] = c[lane][i] as f64;
        }
    }
    // Each element: the products in order of k, summed from -0.0 (as `Iterator::sum`), then C;
    // the eight columns of a row side by side (independent sums the machine can vectorize).
    let mut matrix_d = [[0f64; 8]; 16];
    for row in 0..16 {
        let mut sums = [-0.0f64; 8];
        for k in 0..16 {
            let x = matrix_a[row][k];
            for (sum, y) in sums.iter_mut().zip(&matrix_b[k]) {
                *sum += x * y;
            }
        }
        for col in 0..8 {
            matrix_d[row][col] = sums[col] + matrix_c[row][col];
        }
    }
    for lane in 0..WARP {
        let (group, tig) = (lane / 4, lane % 4);
        for i in 0..4 {
            let (row, col) = (group + 8 * (i / 2), 2 * tig + (i % 2));
            c[lane][i] = matrix_d[row][col] as f32;
        }
    }
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

    #[test]
    fn f16_values_are_the_half_crates() {
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f64();
            let got = f16_value(bits);
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{bits:#06x}: {got:e}, half says {want:e}");
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
