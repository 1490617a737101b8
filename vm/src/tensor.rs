//! Host tensors: a dtype, a shape and a dense row-major byte buffer.
//!
//! Elements are packed densely, least significant bit first (`compiler::dtype` § Storage):
//! element k of an n-bit dtype occupies bits `[k·n, (k+1)·n)` of `data` and may straddle bytes;
//! byte-aligned dtypes are therefore plain little-endian arrays. The VM reads and writes kernel
//! arguments through these; the runtime re-exports them.

use tl_compiler::dtype::{packed_bytes, read_packed, write_packed, DType};
use tl_compiler::number::Number;

#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl HostTensor {
    /// A tensor whose codes are all zero.
    ///
    /// Panics if the byte size overflows `usize` (use [`HostTensor::byte_len`] to check first).
    pub fn zeros(dtype: DType, shape: &[usize]) -> HostTensor {
        let bytes = HostTensor::byte_len(dtype, shape).expect("tensor size overflows usize");
        HostTensor { dtype, shape: shape.to_vec(), data: vec![0; bytes] }
    }

    /// Bytes that hold a tensor of this dtype and shape, or `None` on overflow.
    pub fn byte_len(dtype: DType, shape: &[usize]) -> Option<usize> {
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        packed_bytes(count, dtype.bits())
    }

    /// A tensor holding `values` rounded to `dtype`. `values.len()` must equal the element count.
    pub fn from_f64(dtype: DType, shape: &[usize], values: &[f64]) -> HostTensor {
        let mut t = HostTensor::zeros(dtype, shape);
        assert_eq!(values.len(), t.len(), "value count does not match the shape");
        for (i, v) in values.iter().enumerate() {
            t.set(i, *v);
        }
        t
    }

    /// A tensor holding `values` rounded to `dtype` (f32 input, as most host data is).
    pub fn from_f32(dtype: DType, shape: &[usize], values: &[f32]) -> HostTensor {
        let wide: Vec<f64> = values.iter().map(|&v| v as f64).collect();
        HostTensor::from_f64(dtype, shape, &wide)
    }

    /// A tensor from raw codes (the low `dtype.bits()` bits of each).
    pub fn from_codes(dtype: DType, shape: &[usize], codes: &[u64]) -> HostTensor {
        let mut t = HostTensor::zeros(dtype, shape);
        assert_eq!(codes.len(), t.len(), "code count does not match the shape");
        for (i, c) in codes.iter().enumerate() {
            t.set_code(i, *c);
        }
        t
    }

    /// A tensor filled with `value` (used to poison outputs before a run).
    pub fn filled(dtype: DType, shape: &[usize], value: f64) -> HostTensor {
        let mut t = HostTensor::zeros(dtype, shape);
        let code = dtype.encode(value);
        for i in 0..t.len() {
            t.set_code(i, code);
        }
        t
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The code of element `i` (row-major flat index).
    pub fn code(&self, i: usize) -> u64 {
        read_packed(&self.data, self.dtype.bits(), i)
    }

    /// Sets the code of element `i`; bits above `dtype.bits()` are ignored.
    pub fn set_code(&mut self, i: usize, code: u64) {
        write_packed(&mut self.data, self.dtype.bits(), i, code);
    }

    /// Element `i` (row-major flat index) as f64.
    pub fn get(&self, i: usize) -> f64 {
        self.dtype.decode(self.code(i))
    }

    /// Sets element `i`, rounding `value` to the dtype.
    pub fn set(&mut self, i: usize, value: f64) {
        self.set_code(i, self.dtype.encode(value));
    }

    /// Element `i` exactly (integers of every width as integers).
    pub fn get_number(&self, i: usize) -> Number {
        self.dtype.decode_number(self.code(i))
    }

    /// Sets element `i` to `value` rounded to the dtype, exactly for integers of every width.
    pub fn set_number(&mut self, i: usize, value: Number) {
        self.set_code(i, self.dtype.encode_number(value));
    }

    /// Every element as f64.
    pub fn to_f64(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// Every element as f32 (exact for every dtype of at most 16 bits).
    pub fn to_f32(&self) -> Vec<f32> {
        (0..self.len()).map(|i| self.get(i) as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_byte_tensors_pack_lsb_first() {
        let t = HostTensor::from_f64(DType::U4, &[3], &[1.0, 2.0, 15.0]);
        assert_eq!(t.data, vec![0x21, 0x0f]);
        let t = HostTensor::from_f64(DType::I3, &[3], &[-1.0, 1.0, -4.0]);
        // codes 0b111, 0b001, 0b100 → bits 111 001 100 (LSB first) = 0b1_0000_1111, 0b1
        assert_eq!(t.data, vec![0b0000_1111, 0b1]);
        assert_eq!(t.to_f64(), vec![-1.0, 1.0, -4.0]);
        let t = HostTensor::from_f32(DType::F4E2M1, &[2, 2], &[0.5, -6.0, 7.0, 0.2]);
        assert_eq!(t.to_f32(), vec![0.5, -6.0, 6.0, 0.0]);
        assert_eq!(HostTensor::byte_len(DType::F6E3M2, &[5]), Some(4));
        assert_eq!(HostTensor::byte_len(DType::U8, &[usize::MAX, 2]), None);
    }
}
