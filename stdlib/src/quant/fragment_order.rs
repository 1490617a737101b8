//! Fragment order: packed weights re-laid out offline so that each thread of
//! `stdlib/kernels/qmatmul_fragment.tl` reads its tensor-core operands as one contiguous run.
//!
//! A `[k, n]` matrix of codes is cut into tiles of `bk × bn` (k and n padded with zero codes
//! to whole tiles). Tile `(kb, nb)` becomes row `kb`, columns `nb·bk·bn .. (nb+1)·bk·bn` of a
//! `[⌈k/bk⌉, ⌈n/bn⌉·bk·bn]` tensor of the same dtype. Inside a tile, weight `[kk, nn]` with
//!
//! ```text
//! kk = a0·16 + h·8 + r·2 + c    (a0 < bk/16, h < 2, r < 4, c < 2)
//! nn = a1·32 + q                (a1 < bn/32, q < 32)
//! ```
//!
//! has pair index `P = ((a0·(bn/32) + a1)·2 + h)` in the run of thread `q·4 + r`, the
//! `4·(bk/16)·(bn/32)` codes of column `q` of each 32-column slice and of rows `2r, 2r+1,
//! 2r+8, 2r+9` of each 16-row slice: the order in which the 128 threads of a block hold the
//! tile as the B operand of `mma.m16n8k16` when its four warps share the m rows. Thread runs
//! follow one another; inside a run, the codes of pair `P = w·pw + j` (`j < pw`) sit at
//! `(w·2 + c)·pw + j`: `pw` is the power of two nearest `16 / bits`, so that the two codes of
//! a pair lie about 16 bits apart, where one `lop3` on a 32-bit window of the run turns both
//! into halves of an f16 pair (exactly 16 bits apart, in one word, for widths that divide
//! 16; 12, 20, 12 and 14 bits for 3, 5, 6 and 7 bits), and 1 (the two codes adjacent) when
//! a run does not hold whole groups of `2·pw` codes (see [`FragmentTile::pairs_per_group`]).
//!
//! ```
//! use tl_compiler::dtype::DType;
//! use tl_stdlib::quant::{from_fragment_order, to_fragment_order, FragmentTile};
//! use tl_vm::tensor::HostTensor;
//!
//! let codes: Vec<u64> = (0..100 * 70).map(|i| (i * 7 % 16) as u64).collect();
//! let weights = HostTensor::from_codes(DType::U4, &[100, 70], &codes);
//! let tile = FragmentTile::new(64, 128).unwrap();
//! let ordered = to_fragment_order(&weights, tile).unwrap();
//! assert_eq!(ordered.shape, vec![2, 64 * 128]); // 100 rows → 2 tiles of 64, 70 columns → 1 of 128
//! assert_eq!(from_fragment_order(&ordered, tile, 100, 70).unwrap(), weights);
//! ```

use super::QuantError;
use tl_vm::tensor::HostTensor;

/// The tile of the fragment order: `bk` rows (a multiple of 16) by `bn` columns (a multiple
/// of 32), the kernel's `BK` and `BN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentTile {
    bk: usize,
    bn: usize,
}

impl FragmentTile {
    pub fn new(bk: usize, bn: usize) -> Result<FragmentTile, QuantError> {
        if bk == 0 || !bk.is_multiple_of(16) || bn == 0 || !bn.is_multiple_of(32) {
            return Err(QuantError::FragmentTile { bk, bn });
        }
        Ok(FragmentTile { bk, bn })
    }

    pub fn bk(self) -> usize {
        self.bk
    }

    pub fn bn(self) -> usize {
        self.bn
    }

    /// How many pairs of `bits`-wide codes make a group of the order, whose two codes of each
    /// pair lie `pairs · bits` bits apart: the power of two nearest `16 / bits` (the largest
    /// power of two at most `20 / bits`: 16, 8, 4, 4, 4, 2, 2, 2 for 1 to 8 bits) when it
    /// divides the pairs of a thread's run (`bk·bn / 256`), else 1. The kernels compute the
    /// same number (`PW`).
    pub fn pairs_per_group(self, bits: u32) -> usize {
        let pairs_per_run = self.bk * self.bn / 256;
        match 20usize.checked_div(bits as usize) {
            Some(near) if near > 0 => {
                let group = 1usize << near.ilog2();
                if pairs_per_run.is_multiple_of(group) { group } else { 1 }
            }
            _ => 1,
        }
    }

    /// The position inside its tile's run of `bk · bn` codes of weight `[kk, nn]` of the tile
    /// (`kk < bk`, `nn < bn`), for codes of `bits` bits.
    pub fn position(self, kk: usize, nn: usize, bits: u32) -> usize {
        let (a0, h, r, c) = (kk / 16, kk / 8 % 2, kk / 2 % 4, kk % 2);
        let (a1, q) = (nn / 32, nn % 32);
        let pair = (a0 * (self.bn / 32) + a1) * 2 + h;
        let pw = self.pairs_per_group(bits);
        let run = self.bk * self.bn / 128;
        (q * 4 + r) * run + ((pair / pw) * 2 + c) * pw + pair % pw
    }

    /// The shape of the fragment-ordered tensor of a `[rows, cols]` matrix.
    pub fn ordered_shape(self, rows: usize, cols: usize) -> [usize; 2] {
        [rows.div_ceil(self.bk), cols.div_ceil(self.bn) * self.bk * self.bn]
    }

    /// The flat index in the fragment-ordered tensor of weight `[row, col]` of a matrix of
    /// `cols` columns.
    fn ordered_index(self, row: usize, col: usize, cols: usize, bits: u32) -> usize {
        let tile_size = self.bk * self.bn;
        let (kb, nb) = (row / self.bk, col / self.bn);
        kb * cols.div_ceil(self.bn) * tile_size + nb * tile_size + self.position(row % self.bk, col % self.bn, bits)
    }
}

/// The codes of the `[k, n]` matrix `codes` (any dtype) in fragment order (see the module
/// header), padded with zero codes to whole tiles.
pub fn to_fragment_order(codes: &HostTensor, tile: FragmentTile) -> Result<HostTensor, QuantError> {
    let [rows, cols] = matrix_shape(codes)?;
    let shape = tile.ordered_shape(rows, cols);
    checked_len(codes.dtype, &shape)?;
    let mut ordered = HostTensor::zeros(codes.dtype, &shape);
    for row in 0..rows {
        for col in 0..cols {
            ordered.set_code(tile.ordered_index(row, col, cols, codes.dtype.bits()), codes.code(row * cols + col));
        }
    }
    Ok(ordered)
}

/// The `[rows, cols]` matrix whose fragment order (for `tile`) is `ordered`: the inverse of
/// [`to_fragment_order`] (the padding is dropped).
pub fn from_fragment_order(ordered: &HostTensor, tile: FragmentTile, rows: usize, cols: usize) -> Result<HostTensor, QuantError> {
    let shape = matrix_shape(ordered)?;
    let expected = tile.ordered_shape(rows, cols);
    if shape != expected {
        return Err(QuantError::FragmentOrderShape { shape: shape.to_vec(), rows, cols, expected: expected.to_vec() });
    }
    checked_len(ordered.dtype, &[rows, cols])?;
    let mut codes = HostTensor::zeros(ordered.dtype, &[rows, cols]);
    for row in 0..rows {
        for col in 0..cols {
            codes.set_code(row * cols + col, ordered.code(tile.ordered_index(row, col, cols, ordered.dtype.bits())));
        }
    }
    Ok(codes)
}

fn matrix_shape(tensor: &HostTensor) -> Result<[usize; 2], QuantError> {
    let &[rows, cols] = tensor.shape.as_slice() else { return Err(QuantError::NotAMatrix { shape: tensor.shape.clone() }) };
    let expected = HostTensor::byte_len(tensor.dtype, &tensor.shape);
    if expected != Some(tensor.data.len()) {
        return Err(QuantError::MalformedTensor { dtype: tensor.dtype, shape: tensor.shape.clone(), bytes: tensor.data.len(), expected });
    }
    Ok([rows, cols])
}

fn checked_len(dtype: tl_compiler::dtype::DType, shape: &[usize]) -> Result<(), QuantError> {
    match HostTensor::byte_len(dtype, shape) {
        Some(_) => Ok(()),
        None => Err(QuantError::MalformedTensor { dtype, shape: shape.to_vec(), bytes: 0, expected: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tl_compiler::dtype::DType;
    use tl_compiler::ir::{ConstValue, Op};

    /// The position of every weight of a tile is where the compiled kernel holds it: thread
    /// t's local register l of the `dot`'s B operand at t · (codes per thread) + l. The
    /// layout is the one the compiler's layout inference gives `qmatmul_fragment` at each
    /// tile size, not one written down here.
    #[test]
    fn positions_are_the_compiled_kernels_b_fragment_order() {
        let module = crate::module("qmatmul_fragment").expect("listed").expect("checks");
        let tiles = [(16, 32), (64, 128), (32, 64), (128, 64), (16, 128), (32, 128)];
        for ((bk, bn), w) in tiles.into_iter().flat_map(|t| [DType::U1, DType::U2, DType::I4, DType::U3, DType::Int { signed: true, bits: 5 }, DType::Int { signed: false, bits: 6 }, DType::Int { signed: false, bits: 7 }, DType::U8].map(|w| (t, w))) {
            let consts = [
                ("BK".to_string(), ConstValue::Int(bk as i64)),
                ("BN".to_string(), ConstValue::Int(bn as i64)),
                ("G".to_string(), ConstValue::Int(bk as i64)),
                ("W".to_string(), ConstValue::DType(w)),
            ];
            let kernel = module.kernel(None, &consts).unwrap_or_else(|e| panic!("{bk}×{bn} {w}: {e}"));
            let ir = &kernel.compiled.kernel;
            let b = ir.values.iter().find_map(|v| match v.op { Op::Dot { b, .. } => Some(b), _ => None }).expect("a dot");
            let layout = ir.value(b).layout.clone().expect("a laid-out operand");
            assert_eq!(layout.shape(), &[bk, bn]);
            let per_thread = layout.local_size();
            assert_eq!(per_thread * 128, bk * bn, "no replicas at BM = 16");
            let tile = FragmentTile::new(bk, bn).unwrap();
            let mut seen = vec![false; bk * bn];
            for thread in 0..128 {
                for local in 0..per_thread {
                    let coords = layout.coord(thread, local).expect("inside the layout");
                    let position = tile.position(coords[0], coords[1], w.bits());
                    assert_eq!(position, thread * per_thread + local, "tile {bk}×{bn} {w}: [{}, {}]", coords[0], coords[1]);
                    seen[position] = true;
                }
            }
            assert!(seen.iter().all(|s| *s));
        }
    }

    #[test]
    fn round_trips_every_width_and_ragged_shapes() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for dtype in [DType::U1, DType::I3, DType::U4, DType::F6E3M2, DType::U8, DType::F16] {
            for (rows, cols) in [(1, 1), (16, 32), (17, 33), (100, 300), (64, 128)] {
                let codes: Vec<u64> = (0..rows * cols)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state
                    })
                    .collect();
                let weights = HostTensor::from_codes(dtype, &[rows, cols], &codes);
                let tile = FragmentTile::new(32, 64).unwrap();
                let ordered = to_fragment_order(&weights, tile).unwrap();
                assert_eq!(ordered.shape, tile.ordered_shape(rows, cols).to_vec());
                assert_eq!(from_fragment_order(&ordered, tile, rows, cols).unwrap(), weights, "{dtype} {rows}×{cols}");
                // Padding is zero codes, and every code appears once.
                let nonzero_in = (0..weights.len()).filter(|&i| weights.code(i) != 0).count();
                let nonzero_out = (0..ordered.len()).filter(|&i| ordered.code(i) != 0).count();
                assert_eq!(nonzero_in, nonzero_out);
            }
        }
    }

    #[test]
    fn refuses_bad_tiles_and_shapes() {
        assert!(matches!(FragmentTile::new(8, 32), Err(QuantError::FragmentTile { .. })));
        assert!(matches!(FragmentTile::new(16, 48), Err(QuantError::FragmentTile { .. })));
        assert!(matches!(FragmentTile::new(0, 32), Err(QuantError::FragmentTile { .. })));
        let tile = FragmentTile::new(16, 32).unwrap();
        let vector = HostTensor::zeros(DType::U4, &[12]);
        assert!(matches!(to_fragment_order(&vector, tile), Err(QuantError::NotAMatrix { .. })));
        let ordered = HostTensor::zeros(DType::U4, &[1, 512]);
        let error = from_fragment_order(&ordered, tile, 17, 32).unwrap_err();
        assert!(error.to_string().contains("[2, 512]"), "{error}");
        let truncated = HostTensor { dtype: DType::U4, shape: vec![4, 4], data: vec![0; 3] };
        assert!(matches!(to_fragment_order(&truncated, tile), Err(QuantError::MalformedTensor { .. })));
    }
}
