//! Host tensors: a dtype, a shape and a dense row-major byte buffer, little-endian.
//! The VM reads and writes kernel arguments through these; the runtime re-exports them.

use tl_compiler::dtype::DType;

#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl HostTensor {
    /// A tensor of zeros.
    pub fn zeros(dtype: DType, shape: &[usize]) -> HostTensor {
        let n: usize = shape.iter().product();
        HostTensor { dtype, shape: shape.to_vec(), data: vec![0; n * dtype.bytes()] }
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

    /// A tensor filled with `value` (used to poison outputs before a run).
    pub fn filled(dtype: DType, shape: &[usize], value: f64) -> HostTensor {
        let mut t = HostTensor::zeros(dtype, shape);
        for i in 0..t.len() {
            t.set(i, value);
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

    /// Element `i` (row-major flat index) as f64.
    pub fn get(&self, i: usize) -> f64 {
        let b = self.dtype.bytes();
        self.dtype.decode(&self.data[i * b..(i + 1) * b])
    }

    /// Sets element `i`, rounding `value` to the dtype.
    pub fn set(&mut self, i: usize, value: f64) {
        let b = self.dtype.bytes();
        self.dtype.encode(value, &mut self.data[i * b..(i + 1) * b]);
    }

    /// Every element as f64.
    pub fn to_f64(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }
}
