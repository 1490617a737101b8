//! Host-side weight quantization: turns a `[k, n]` matrix of real weights into low-precision
//! codes plus per-group scales (and zero points), and back.
//!
//! Two entry points produce a [`QuantizedMatrix`]:
//!
//! * [`quantize`] / [`quantize_tensor`]: integer (`i1..i8`, `u1..u8`) or float (every signed
//!   float format of at most 8 bits) codes, one scale per column and per group of rows along k
//!   ([`Group`]), scales in f16, bf16, f32, e8m0 or an unsigned float `ueXmY`, symmetric or (for
//!   integers) asymmetric with zero points.
//! * [`mx_quantize`] / [`mx_quantize_tensor`]: OCP Microscaling (MX) block scaling: e8m0 scales
//!   chosen by the shared-exponent rule of the spec ([`MxScaleRounding::RoundDown`]) or by the
//!   never-clipping variant ([`MxScaleRounding::RoundUp`]).
//!
//! [`dequantize`] computes `w = (decode(q) − zero) · decode(scale)` exactly (in f64) from the
//! stored codes, so it is the definition a dequantizing kernel is checked against.
//!
//! The numerics (every formula, the rounding and saturation rules, all-zero groups) are written
//! down in `docs/quantization.md`; the short version:
//!
//! * Scales are rounded *up* into the scale dtype (to the smallest representable value at
//!   least as large as the ideal scale) before any element is divided by them, so no element
//!   clips and dequantization reproduces exactly what was quantized.
//! * Elements round to nearest, ties to even ([`DType::encode`]), after an explicit clamp to
//!   ±max (so IEEE-style `f8e5m2` saturates like PTX `.satfinite` instead of overflowing to
//!   infinity).
//! * A group whose weights are all zero gets scale 1 (and zero point 0).
//!
//! ```
//! use tl_compiler::dtype::DType;
//! use tl_stdlib::quant::{dequantize, quantize, Group, QuantScheme};
//!
//! // A 3 × 2 matrix (row-major), 4-bit signed integers, one f16 scale per column.
//! let weights = [0.5f32, -2.0, 0.25, 1.0, -0.7, 3.5];
//! let scheme = QuantScheme::symmetric(DType::I4, Group::PerChannel, DType::F16);
//! let quantized = quantize(&weights, [3, 2], &scheme).unwrap();
//! assert_eq!(quantized.scales().shape, vec![1, 2]);
//! let restored = dequantize(&quantized);
//! for (i, (w, r)) in weights.iter().zip(&restored).enumerate() {
//!     // Within half a step of the column's scale (max |w| / 7, rounded up into f16).
//!     assert!((*w as f64 - r).abs() <= 0.5 * quantized.scale(0, i % 2));
//! }
//! assert_eq!(quantized.scale(0, 1), 0.5); // 3.5 / 7
//! ```

mod fragment_order;

pub use fragment_order::{from_fragment_order, to_fragment_order, FragmentTile};

use thiserror::Error;
use tl_compiler::dtype::DType;
use tl_vm::tensor::HostTensor;

/// How rows along k share a scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    /// One scale per column over all of k.
    PerChannel,
    /// One scale per column for every `g` consecutive rows of k (`g ≥ 1`); the last group holds
    /// the remaining `k mod g` rows when k is not a multiple of `g`.
    Size(usize),
}

impl Group {
    /// Number of groups along k for a matrix of `rows` rows. Per channel is always one group
    /// (even for zero rows, so that every column has a scale); `Size(g)` is `⌈rows / g⌉`.
    /// `Size(0)` counts as one row per group here; [`QuantScheme::validate`] refuses it.
    pub fn group_count(self, rows: usize) -> usize {
        match self {
            Group::PerChannel => 1,
            Group::Size(g) => rows.div_ceil(g.max(1)),
        }
    }

    /// The group that row `row` belongs to.
    pub fn group_of_row(self, row: usize) -> usize {
        match self {
            Group::PerChannel => 0,
            Group::Size(g) => row / g.max(1),
        }
    }

    /// The rows `[start, end)` of group `group` in a matrix of `rows` rows.
    pub fn rows_of_group(self, group: usize, rows: usize) -> std::ops::Range<usize> {
        match self {
            Group::PerChannel => 0..rows,
            Group::Size(g) => {
                let g = g.max(1);
                let start = group.saturating_mul(g).min(rows);
                start..start.saturating_add(g).min(rows)
            }
        }
    }
}

/// Whether codes are centred on zero or shifted by a per-group zero point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Symmetry {
    /// `w ≈ (q − z) · scale` with a fixed `z`: 0 for signed integers and floats, `2^(b−1)` for
    /// unsigned `b`-bit integers (the middle code, so `u4` holds `q − 8 ∈ [−8, 7]`). The scale
    /// maps `max |w|` of the group onto the largest positive level (`2^(b−1) − 1` for
    /// integers, the format's max for floats).
    Symmetric,
    /// `w ≈ (q − zero) · scale` with an integer `zero` per group, so that the group's range
    /// `[min(w, 0), max(w, 0)]` maps onto all `2^b` codes. Integers only.
    Asymmetric,
}

/// What [`quantize`] produces: the code format, the grouping, the scale format and the symmetry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantScheme {
    /// The format of the codes: `i1..i8`, `u1..u8`, or a signed float of at most 8 bits.
    pub weight_dtype: DType,
    pub group: Group,
    /// The format of the scales (and of the zero points): f16, bf16, f32, e8m0 or `ueXmY`.
    pub scale_dtype: DType,
    pub symmetry: Symmetry,
}

impl QuantScheme {
    pub fn symmetric(weight_dtype: DType, group: Group, scale_dtype: DType) -> QuantScheme {
        QuantScheme { weight_dtype, group, scale_dtype, symmetry: Symmetry::Symmetric }
    }

    pub fn asymmetric(weight_dtype: DType, group: Group, scale_dtype: DType) -> QuantScheme {
        QuantScheme { weight_dtype, group, scale_dtype, symmetry: Symmetry::Asymmetric }
    }

    /// Checks that the formats and the grouping can work together (the input does not matter).
    pub fn validate(&self) -> Result<(), QuantError> {
        check_weight_dtype(self.weight_dtype)?;
        check_scale_dtype(self.scale_dtype)?;
        if self.group == Group::Size(0) {
            return Err(QuantError::GroupSizeZero);
        }
        match self.symmetry {
            Symmetry::Symmetric => {
                if let DType::Int { bits: 1, .. } = self.weight_dtype {
                    return Err(QuantError::NoPositiveLevel { dtype: self.weight_dtype });
                }
            }
            Symmetry::Asymmetric => {
                if !self.weight_dtype.is_int() {
                    return Err(QuantError::ZeroPointsNeedIntegerWeights { dtype: self.weight_dtype });
                }
                // Zero points are integers in [−128, 255] held in the scale dtype; only the
                // IEEE scale formats hold all of those exactly (bf16 has 8 significant bits,
                // enough for 255).
                if ![DType::F16, DType::BF16, DType::F32].contains(&self.scale_dtype) {
                    return Err(QuantError::ZeroPointsNeedIeeeScales { dtype: self.scale_dtype });
                }
            }
        }
        Ok(())
    }

    /// The zero point of a symmetric scheme: 0, except `2^(b−1)` for unsigned `b`-bit integers.
    pub fn implicit_zero_point(&self) -> f64 {
        match self.weight_dtype {
            DType::Int { signed: false, bits } => (1u64 << (bits - 1).min(62)) as f64,
            _ => 0.0,
        }
    }
}

/// How [`mx_quantize`] picks the shared exponent X of a block (scale `2^X`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MxScaleRounding {
    /// The OCP MX v1.0 rule: `X = ⌊log2 amax⌋ − emax_elem`. The largest element of a block lands
    /// in the element format's top binade `[2^emax_elem, 2^(emax_elem+1))`, which extends
    /// beyond the format's max (6 in `[4, 8)` for e2m1), so it may saturate (clip).
    #[default]
    RoundDown,
    /// `X = ⌈log2(amax / max_elem)⌉`: the smallest power of two with `amax ≤ max_elem · 2^X`,
    /// so no element ever exceeds the element max (Triton's default).
    RoundUp,
}

/// An MX block-scaling scheme: element format, block size along k, shared-exponent rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MxScheme {
    /// The element format: OCP lists `f4e2m1`, `f6e2m3`, `f6e3m2`, `f8e4m3fn`, `f8e5m2`; every
    /// other signed float of at most 8 bits is accepted with the same rule.
    pub element_dtype: DType,
    /// Rows of k that share one e8m0 scale (32 in the OCP spec; any size ≥ 1 works).
    pub block_size: usize,
    pub rounding: MxScaleRounding,
}

impl MxScheme {
    /// The block size of the OCP MX v1.0 formats.
    pub const OCP_BLOCK_SIZE: usize = 32;

    /// The OCP scheme for `element_dtype`: blocks of 32, shared exponent rounded down.
    pub fn ocp(element_dtype: DType) -> MxScheme {
        MxScheme { element_dtype, block_size: MxScheme::OCP_BLOCK_SIZE, rounding: MxScaleRounding::RoundDown }
    }

    /// The [`QuantScheme`] that describes the result (e8m0 scales, symmetric).
    pub fn quant_scheme(&self) -> QuantScheme {
        QuantScheme::symmetric(self.element_dtype, Group::Size(self.block_size), DType::E8M0)
    }
}

/// Why a matrix could not be quantized (or a [`QuantizedMatrix`] could not be assembled).
#[derive(Clone, Debug, PartialEq, Error)]
pub enum QuantError {
    #[error("the weights hold {values} values, which is not a [{rows}, {cols}] matrix ({rows} × {cols} values)")]
    ShapeMismatch { rows: usize, cols: usize, values: usize },
    #[error("quantization takes a [k, n] matrix, but the tensor has shape {shape:?}")]
    NotAMatrix { shape: Vec<usize> },
    #[error("the {dtype} tensor of shape {shape:?} has {bytes} bytes of data, not the {expected:?} its shape needs")]
    MalformedTensor { dtype: DType, shape: Vec<usize>, bytes: usize, expected: Option<usize> },
    #[error("weights to quantize must be f16, bf16, f32 or f64, not {dtype}")]
    UnsupportedInputDtype { dtype: DType },
    #[error("a fragment-order tile is a multiple of 16 rows by a multiple of 32 columns, not {bk} × {bn}")]
    FragmentTile { bk: usize, bn: usize },
    #[error("a fragment-ordered [{rows}, {cols}] matrix has shape {expected:?}, not {shape:?}")]
    FragmentOrderShape { shape: Vec<usize>, rows: usize, cols: usize, expected: Vec<usize> },
    #[error("the group (block) size must be at least 1 row")]
    GroupSizeZero,
    #[error("cannot quantize to {dtype}: {reason}")]
    UnsupportedWeightDtype { dtype: DType, reason: &'static str },
    #[error("scales cannot be {dtype}: use f16, bf16, f32, e8m0 or an unsigned float ueXmY")]
    UnsupportedScaleDtype { dtype: DType },
    #[error("zero points (asymmetric quantization) need integer codes, not {dtype}: floats are symmetric")]
    ZeroPointsNeedIntegerWeights { dtype: DType },
    #[error(
        "zero points are integers stored in the scale dtype, which must be f16, bf16 or f32 to hold them exactly, not {dtype}"
    )]
    ZeroPointsNeedIeeeScales { dtype: DType },
    #[error(
        "symmetric {dtype} has no positive level (only the codes for −1 and 0 around its zero point); quantize it asymmetrically"
    )]
    NoPositiveLevel { dtype: DType },
    #[error("weight [{row}, {col}] is {value}: only finite weights can be quantized")]
    NonFiniteWeight { row: usize, col: usize, value: f64 },
    #[error(
        "the scale of group {group}, column {col} would be {needed:e}, which {scale_dtype} cannot hold (max {max:e})"
    )]
    ScaleOverflow { group: usize, col: usize, needed: f64, scale_dtype: DType, max: f64 },
    #[error("inconsistent quantized matrix: {0}")]
    InconsistentParts(String),
}

/// Codes, scales and zero points of one quantized `[k, n]` matrix.
///
/// Element `(r, c)` belongs to group `g = scheme.group.group_of_row(r)` and stands for
/// `(decode(codes[r, c]) − zero[g, c]) · decode(scales[g, c])`, where `zero` is the
/// `zeros` tensor for asymmetric schemes and [`QuantScheme::implicit_zero_point`] otherwise.
/// The parts are checked when the matrix is built, so reading it never panics.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedMatrix {
    scheme: QuantScheme,
    codes: HostTensor,
    scales: HostTensor,
    zeros: Option<HostTensor>,
}

impl QuantizedMatrix {
    /// Assembles a matrix from its parts (for example, loaded from files), checking dtypes,
    /// shapes, byte lengths, that scales are finite and positive, and that zero points are
    /// integer codes of the weight dtype.
    pub fn new(
        scheme: QuantScheme,
        codes: HostTensor,
        scales: HostTensor,
        zeros: Option<HostTensor>,
    ) -> Result<QuantizedMatrix, QuantError> {
        scheme.validate()?;
        let bad = |what: String| Err(QuantError::InconsistentParts(what));
        check_tensor_bytes(&codes)?;
        check_tensor_bytes(&scales)?;
        if codes.dtype != scheme.weight_dtype {
            return bad(format!("codes are {}, the scheme says {}", codes.dtype, scheme.weight_dtype));
        }
        let [rows, cols] = codes.shape[..] else {
            return bad(format!("codes have shape {:?}, not [k, n]", codes.shape));
        };
        let groups = scheme.group.group_count(rows);
        if scales.dtype != scheme.scale_dtype {
            return bad(format!("scales are {}, the scheme says {}", scales.dtype, scheme.scale_dtype));
        }
        if scales.shape != [groups, cols] {
            return bad(format!("scales have shape {:?}, expected [{groups}, {cols}]", scales.shape));
        }
        for i in 0..scales.len() {
            let s = scales.get(i);
            if !(s.is_finite() && s > 0.0) {
                return bad(format!("scale [{}, {}] is {s}, not finite and positive", i / cols, i % cols));
            }
        }
        match (scheme.symmetry, &zeros) {
            (Symmetry::Symmetric, Some(_)) => return bad("a symmetric scheme has no zero points tensor".into()),
            (Symmetry::Asymmetric, None) => return bad("an asymmetric scheme needs a zero points tensor".into()),
            (Symmetry::Symmetric, None) => {}
            (Symmetry::Asymmetric, Some(z)) => {
                check_tensor_bytes(z)?;
                if z.dtype != scheme.scale_dtype || z.shape != [groups, cols] {
                    return bad(format!(
                        "zero points are {} {:?}, expected {} [{groups}, {cols}]",
                        z.dtype, z.shape, scheme.scale_dtype
                    ));
                }
                let (lo, hi) = scheme.weight_dtype.int_range().expect("validated: integer weights");
                for i in 0..z.len() {
                    let v = z.get(i);
                    if !(v.fract() == 0.0 && v >= lo as f64 && v <= hi as f64) {
                        return bad(format!(
                            "zero point [{}, {}] is {v}, not an integer in [{lo}, {hi}]",
                            i / cols,
                            i % cols
                        ));
                    }
                }
            }
        }
        Ok(QuantizedMatrix { scheme, codes, scales, zeros })
    }

    pub fn scheme(&self) -> &QuantScheme {
        &self.scheme
    }

    /// The codes, `[k, n]` of the weight dtype, packed densely.
    pub fn codes(&self) -> &HostTensor {
        &self.codes
    }

    /// The scales, `[groups, n]` of the scale dtype.
    pub fn scales(&self) -> &HostTensor {
        &self.scales
    }

    /// The zero points, `[groups, n]` of the scale dtype (integer values); `None` when symmetric.
    pub fn zeros(&self) -> Option<&HostTensor> {
        self.zeros.as_ref()
    }

    /// k.
    pub fn rows(&self) -> usize {
        self.codes.shape[0]
    }

    /// n.
    pub fn cols(&self) -> usize {
        self.codes.shape[1]
    }

    pub fn group_count(&self) -> usize {
        self.scales.shape[0]
    }

    /// The decoded scale of group `group`, column `col` (panics when out of range, like indexing).
    pub fn scale(&self, group: usize, col: usize) -> f64 {
        self.scales.get(group * self.cols() + col)
    }

    /// The zero point of group `group`, column `col` (the implicit one when symmetric; panics
    /// when out of range, like indexing).
    pub fn zero_point(&self, group: usize, col: usize) -> f64 {
        match &self.zeros {
            Some(z) => z.get(group * self.cols() + col),
            None => self.scheme.implicit_zero_point(),
        }
    }

    /// The parts: `(scheme, codes, scales, zeros)`.
    pub fn into_parts(self) -> (QuantScheme, HostTensor, HostTensor, Option<HostTensor>) {
        (self.scheme, self.codes, self.scales, self.zeros)
    }
}

/// Quantizes a row-major `[k, n]` matrix (`shape = [k, n]`, `weights.len() == k·n`).
pub fn quantize(weights: &[f32], shape: [usize; 2], scheme: &QuantScheme) -> Result<QuantizedMatrix, QuantError> {
    let values: Vec<f64> = weights.iter().map(|&w| w as f64).collect();
    quantize_values(&values, shape, scheme)
}

/// Quantizes a `[k, n]` host tensor of f16, bf16, f32 or f64.
pub fn quantize_tensor(weights: &HostTensor, scheme: &QuantScheme) -> Result<QuantizedMatrix, QuantError> {
    let (values, shape) = matrix_values(weights)?;
    quantize_values(&values, shape, scheme)
}

/// Quantizes a row-major `[k, n]` matrix of f64 values (the common path of [`quantize`] and
/// [`quantize_tensor`]; f64 holds every input format exactly).
pub fn quantize_values(values: &[f64], shape: [usize; 2], scheme: &QuantScheme) -> Result<QuantizedMatrix, QuantError> {
    scheme.validate()?;
    check_values(values, shape)?;
    let [rows, cols] = shape;
    let weight = scheme.weight_dtype;
    let groups = scheme.group.group_count(rows);
    let mut codes = HostTensor::zeros(weight, &shape);
    let mut scales = HostTensor::zeros(scheme.scale_dtype, &[groups, cols]);
    let mut zeros = match scheme.symmetry {
        Symmetry::Asymmetric => Some(HostTensor::zeros(scheme.scale_dtype, &[groups, cols])),
        Symmetry::Symmetric => None,
    };
    for group in 0..groups {
        let group_rows = scheme.group.rows_of_group(group, rows);
        for col in 0..cols {
            let column = || group_rows.clone().map(|r| values[r * cols + col]);
            let scale_error = |needed: f64| QuantError::ScaleOverflow {
                group,
                col,
                needed,
                scale_dtype: scheme.scale_dtype,
                max: scheme.scale_dtype.max_value(),
            };
            let slot = group * cols + col;
            match (weight, scheme.symmetry) {
                (DType::Int { .. }, Symmetry::Symmetric) => {
                    // Codes q − z in [−P, P] with P = 2^(b−1) − 1: the most negative code of a
                    // signed format is left unused so that the grid is symmetric around zero.
                    let positive_levels = ((1u64 << (weight.bits() - 1)) - 1) as f64;
                    let zero = scheme.implicit_zero_point();
                    let amax = column().fold(0.0f64, |m, w| m.max(w.abs()));
                    let scale = covering_scale(scheme.scale_dtype, amax, positive_levels)
                        .ok_or_else(|| scale_error(amax / positive_levels))?;
                    scales.set(slot, scale);
                    for r in group_rows.clone() {
                        let q =
                            (values[r * cols + col] / scale).round_ties_even().clamp(-positive_levels, positive_levels);
                        codes.set(r * cols + col, q + zero);
                    }
                }
                (DType::Int { .. }, Symmetry::Asymmetric) => {
                    let (qmin, qmax) = weight.int_range().expect("integer weights");
                    let (qmin, qmax) = (qmin as f64, qmax as f64);
                    // The range always includes 0 so that a zero weight is exactly representable
                    // (q = zero), which padding and sparsity rely on.
                    let lo = column().fold(0.0f64, f64::min);
                    let hi = column().fold(0.0f64, f64::max);
                    let levels = qmax - qmin;
                    let range = hi - lo;
                    let scale =
                        covering_scale(scheme.scale_dtype, range, levels).ok_or_else(|| scale_error(range / levels))?;
                    // The ideal zero qmin − lo/scale lies in [qmin, qmax] because the scale covers
                    // the range; rounding it moves every w/scale + zero by at most ½, and the
                    // clamp below then costs at most ½ step too, so |w − dq| ≤ scale/2 holds.
                    let zero = if range == 0.0 {
                        0.0f64.clamp(qmin, qmax)
                    } else {
                        (qmin - lo / scale).round_ties_even().clamp(qmin, qmax)
                    };
                    scales.set(slot, scale);
                    zeros.as_mut().expect("asymmetric").set(slot, zero);
                    for r in group_rows.clone() {
                        let q = ((values[r * cols + col] / scale).round_ties_even() + zero).clamp(qmin, qmax);
                        codes.set(r * cols + col, q);
                    }
                }
                (DType::Float(_), _) => {
                    let max = weight.max_value();
                    let amax = column().fold(0.0f64, |m, w| m.max(w.abs()));
                    let scale = covering_scale(scheme.scale_dtype, amax, max).ok_or_else(|| scale_error(amax / max))?;
                    scales.set(slot, scale);
                    for r in group_rows.clone() {
                        codes.set_code(r * cols + col, encode_saturating(weight, values[r * cols + col] / scale));
                    }
                }
                (DType::Bool, _) => unreachable!("validated: bool is not a weight dtype"),
            }
        }
    }
    QuantizedMatrix::new(*scheme, codes, scales, zeros)
}

/// MX-quantizes a row-major `[k, n]` matrix: blocks of `scheme.block_size` rows along k share an
/// e8m0 scale `2^X` per column (see [`mx_shared_exponent`]); elements are
/// `encode(clamp(w / 2^X, ±max_elem))`, round to nearest even.
pub fn mx_quantize(weights: &[f32], shape: [usize; 2], scheme: &MxScheme) -> Result<QuantizedMatrix, QuantError> {
    let values: Vec<f64> = weights.iter().map(|&w| w as f64).collect();
    mx_quantize_values(&values, shape, scheme)
}

/// [`mx_quantize`] for a `[k, n]` host tensor of f16, bf16, f32 or f64.
pub fn mx_quantize_tensor(weights: &HostTensor, scheme: &MxScheme) -> Result<QuantizedMatrix, QuantError> {
    let (values, shape) = matrix_values(weights)?;
    mx_quantize_values(&values, shape, scheme)
}

/// [`mx_quantize`] for f64 values.
pub fn mx_quantize_values(values: &[f64], shape: [usize; 2], scheme: &MxScheme) -> Result<QuantizedMatrix, QuantError> {
    let element = scheme.element_dtype;
    if !element.is_float() {
        return Err(QuantError::UnsupportedWeightDtype {
            dtype: element,
            reason: "MX elements are floats here (f4e2m1, f6e2m3, f6e3m2, f8e4m3fn, f8e5m2); MXINT8 is not supported",
        });
    }
    let quant_scheme = scheme.quant_scheme();
    quant_scheme.validate()?;
    check_values(values, shape)?;
    let [rows, cols] = shape;
    let groups = quant_scheme.group.group_count(rows);
    let mut codes = HostTensor::zeros(element, &shape);
    let mut scales = HostTensor::zeros(DType::E8M0, &[groups, cols]);
    let bias = DType::E8M0.float_format().expect("float").bias();
    for group in 0..groups {
        let group_rows = quant_scheme.group.rows_of_group(group, rows);
        for col in 0..cols {
            let amax = group_rows.clone().fold(0.0f64, |m, r| m.max(values[r * cols + col].abs()));
            // All-zero block: scale 1, every element +0 (or −0).
            let exponent = if amax == 0.0 { 0 } else { mx_shared_exponent(amax, element, scheme.rounding) };
            if exponent > bias {
                return Err(QuantError::ScaleOverflow {
                    group,
                    col,
                    needed: pow2(exponent.min(1023)),
                    scale_dtype: DType::E8M0,
                    max: DType::E8M0.max_value(),
                });
            }
            // Below 2^−127 the scale cannot shrink further: small blocks lose precision (their
            // elements drift into the subnormals or to zero) but never clip.
            let exponent = exponent.max(-bias);
            scales.set_code(group * cols + col, (exponent + bias) as u64);
            let inverse = pow2(-exponent); // a power of two: w · 2^−X is exact
            for r in group_rows.clone() {
                codes.set_code(r * cols + col, encode_saturating(element, values[r * cols + col] * inverse));
            }
        }
    }
    QuantizedMatrix::new(quant_scheme, codes, scales, None)
}

/// `emax_elem` of the MX spec: the exponent of the largest power of two not above the element
/// format's max, `⌊log2 max⌋` (e2m1 2, e2m3 2, e3m2 4, e4m3fn 8, e5m2 15).
pub fn mx_emax_elem(element_dtype: DType) -> i32 {
    floor_log2(element_dtype.max_value())
}

/// The shared exponent X (scale `2^X`) of a block whose largest magnitude is `amax > 0`, before
/// clamping to the e8m0 range: `⌊log2 amax⌋ − emax_elem` (round down, OCP) or
/// `⌈log2(amax / max_elem)⌉` (round up). Returns 0 for `amax` that is not finite and positive.
pub fn mx_shared_exponent(amax: f64, element_dtype: DType, rounding: MxScaleRounding) -> i32 {
    if !(amax.is_finite() && amax > 0.0) {
        return 0;
    }
    match rounding {
        MxScaleRounding::RoundDown => floor_log2(amax) - mx_emax_elem(element_dtype),
        MxScaleRounding::RoundUp => {
            // Smallest X with amax ≤ max · 2^X, found with exact comparisons (max · 2^X is exact
            // in f64) instead of a floating-point log2 that could land on the wrong side.
            let max = element_dtype.max_value();
            let mut x = floor_log2(amax) - floor_log2(max);
            while amax > max * pow2(x) {
                x += 1;
            }
            while amax <= max * pow2(x - 1) {
                x -= 1;
            }
            x
        }
    }
}

/// The weights `(decode(q) − zero) · decode(scale)`, row-major `[k, n]`, exactly (every product
/// of a code of at most 8 bits and a scale of at most 24 significant bits fits in an f64). NaN
/// codes (which [`quantize`] never produces) decode to NaN.
pub fn dequantize(matrix: &QuantizedMatrix) -> Vec<f64> {
    let (rows, cols) = (matrix.rows(), matrix.cols());
    let group = matrix.scheme.group;
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let g = group.group_of_row(r);
        for c in 0..cols {
            let q = matrix.codes.get(r * cols + c);
            out.push((q - matrix.zero_point(g, c)) * matrix.scale(g, c));
        }
    }
    out
}

/// [`dequantize`] rounded to f32 (to nearest even; not exact when a scale has many significant
/// bits).
pub fn dequantize_f32(matrix: &QuantizedMatrix) -> Vec<f32> {
    dequantize(matrix).into_iter().map(|v| v as f32).collect()
}

fn check_weight_dtype(dtype: DType) -> Result<(), QuantError> {
    let reason = match dtype {
        DType::Int { bits, .. } if bits <= 8 => return Ok(()),
        DType::Float(f) if f.signed && dtype.bits() <= 8 => return Ok(()),
        DType::Float(f) if !f.signed => {
            "unsigned floats (e8m0, ueXmY) cannot hold negative weights; they are scale formats"
        }
        DType::Bool => "bool is not a number format",
        _ => "codes must have at most 8 bits (integers i1..i8, u1..u8 or a float of at most 8 bits)",
    };
    Err(QuantError::UnsupportedWeightDtype { dtype, reason })
}

fn check_scale_dtype(dtype: DType) -> Result<(), QuantError> {
    match dtype {
        DType::F16 | DType::BF16 | DType::F32 | DType::E8M0 => Ok(()),
        // Unsigned floats such as ue4m3 (the NVFP4 block scale).
        DType::Float(f) if !f.signed => Ok(()),
        _ => Err(QuantError::UnsupportedScaleDtype { dtype }),
    }
}

/// Checks that `values` is a `[rows, cols]` matrix of finite numbers.
fn check_values(values: &[f64], [rows, cols]: [usize; 2]) -> Result<(), QuantError> {
    if rows.checked_mul(cols) != Some(values.len()) {
        return Err(QuantError::ShapeMismatch { rows, cols, values: values.len() });
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(QuantError::NonFiniteWeight { row: i / cols, col: i % cols, value: values[i] });
    }
    Ok(())
}

fn check_tensor_bytes(tensor: &HostTensor) -> Result<(), QuantError> {
    let expected = HostTensor::byte_len(tensor.dtype, &tensor.shape);
    if expected != Some(tensor.data.len()) {
        return Err(QuantError::MalformedTensor {
            dtype: tensor.dtype,
            shape: tensor.shape.clone(),
            bytes: tensor.data.len(),
            expected,
        });
    }
    Ok(())
}

/// The values and `[k, n]` shape of a floating-point host tensor.
fn matrix_values(weights: &HostTensor) -> Result<(Vec<f64>, [usize; 2]), QuantError> {
    if ![DType::F16, DType::BF16, DType::F32, DType::F64].contains(&weights.dtype) {
        return Err(QuantError::UnsupportedInputDtype { dtype: weights.dtype });
    }
    let [rows, cols] = weights.shape[..] else {
        return Err(QuantError::NotAMatrix { shape: weights.shape.clone() });
    };
    check_tensor_bytes(weights)?;
    Ok((weights.to_f64(), [rows, cols]))
}

/// The smallest scale representable in `dtype` with `amax ≤ levels · scale`, so that
/// `amax / scale` never exceeds the largest level; 1 when `amax` is 0 (an all-zero group).
/// `None` when even the largest finite scale is too small.
fn covering_scale(dtype: DType, amax: f64, levels: f64) -> Option<f64> {
    if amax == 0.0 {
        return Some(1.0);
    }
    let mut scale = round_up_into(dtype, amax / levels)?;
    // amax / levels was rounded in f64; the product check is exact (levels has at most 8
    // significant bits and the scale at most 24), so it settles the last ulp.
    while amax > levels * scale {
        scale = next_up(dtype, scale)?;
    }
    Some(scale)
}

/// The smallest value of `dtype` (a positive scale format) that is ≥ `x` (`x` > 0, finite).
fn round_up_into(dtype: DType, x: f64) -> Option<f64> {
    let code = dtype.encode(x);
    let value = dtype.decode(code);
    let value = if value < x { dtype.decode(code + 1) } else { value };
    (value.is_finite() && value > 0.0).then_some(value)
}

/// The next larger value of `dtype` after the positive value `x` (positive codes are ordered
/// like their values in every float format).
fn next_up(dtype: DType, x: f64) -> Option<f64> {
    let value = dtype.decode(dtype.encode(x) + 1);
    (value.is_finite() && value > x).then_some(value)
}

/// Rounds `value` into a float format, saturating at ±max also in IEEE-style formats (which
/// would otherwise overflow to infinity beyond max + ½ ulp): PTX `cvt.rn.satfinite`.
fn encode_saturating(dtype: DType, value: f64) -> u64 {
    let max = dtype.max_value();
    dtype.encode(value.clamp(-max, max))
}

use tl_compiler::dtype::floor_log2;

/// 2^e as f64, exact over the f64 range (0 below it, infinity above).
fn pow2(e: i32) -> f64 {
    if e > 1023 {
        f64::INFINITY
    } else if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else if e >= -1074 {
        f64::from_bits(1u64 << (e + 1074))
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64: a small deterministic generator, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Uniform integer in [lo, hi].
        fn int(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
        }
    }

    const ROWS: usize = 37;
    const COLS: usize = 5;

    /// A ragged matrix whose columns have very different magnitudes (so per-column scales
    /// differ by orders of magnitude), one all-positive column and one all-negative column (so
    /// asymmetric zero points hit both ends), and some exact zeros. Never all zero.
    fn random_matrix(rng: &mut Rng, rows: usize, cols: usize) -> Vec<f32> {
        let magnitudes = [1e-3, 0.5, 1.0, 30.0, 700.0];
        (0..rows * cols)
            .map(|i| {
                let col = i % cols;
                let m = magnitudes[col % magnitudes.len()];
                let u = rng.unit();
                let v = match col % 5 {
                    1 => m * (0.1 + u),  // all positive
                    3 => -m * (0.1 + u), // all negative
                    _ if rng.unit() < 0.05 => 0.0,
                    _ => m * (2.0 * u - 1.0),
                };
                v as f32
            })
            .collect()
    }

    fn integer_dtypes() -> Vec<DType> {
        (1..=8u8).flat_map(|bits| [DType::Int { signed: true, bits }, DType::Int { signed: false, bits }]).collect()
    }

    /// Every signed float format of at most 8 bits (the weight formats).
    fn float_weight_dtypes() -> Vec<DType> {
        let formats: Vec<DType> =
            DType::all().into_iter().filter(|d| matches!(d, DType::Float(f) if f.signed) && d.bits() <= 8).collect();
        assert!(formats.len() > 20, "{}", formats.len());
        formats
    }

    fn groups() -> Vec<Group> {
        vec![Group::Size(1), Group::Size(7), Group::Size(32), Group::Size(ROWS), Group::Size(64), Group::PerChannel]
    }

    /// The spacing of the float format `dtype` around the magnitude `x` (the quantum of x's
    /// binade; the subnormal quantum below the normal range).
    fn float_spacing(dtype: DType, x: f64) -> f64 {
        let f = dtype.float_format().unwrap();
        let min_exponent = 1 - f.bias();
        let e = if x == 0.0 { min_exponent } else { floor_log2(x).max(min_exponent) };
        pow2(e - f.mantissa_bits as i32)
    }

    /// Checks the structure every quantized matrix has, whatever the scheme.
    fn check_shapes(q: &QuantizedMatrix, scheme: &QuantScheme, rows: usize, cols: usize) {
        assert_eq!(q.codes().shape, vec![rows, cols]);
        assert_eq!(q.codes().dtype, scheme.weight_dtype);
        let groups = scheme.group.group_count(rows);
        assert_eq!(q.scales().shape, vec![groups, cols]);
        assert_eq!(q.scales().dtype, scheme.scale_dtype);
        assert_eq!(q.zeros().is_some(), scheme.symmetry == Symmetry::Asymmetric);
    }

    #[test]
    fn integer_formats_reconstruct_within_half_a_step() {
        let mut rng = Rng(1);
        let weights = random_matrix(&mut rng, ROWS, COLS);
        for dtype in integer_dtypes() {
            for symmetry in [Symmetry::Symmetric, Symmetry::Asymmetric] {
                let scale_dtypes: &[DType] = match symmetry {
                    Symmetry::Symmetric => &[DType::F16, DType::BF16, DType::F32, DType::E8M0],
                    Symmetry::Asymmetric => &[DType::F16, DType::BF16, DType::F32],
                };
                if symmetry == Symmetry::Symmetric && dtype.bits() == 1 {
                    continue; // refused: see refuses_bad_input_with_clear_errors
                }
                for &scale_dtype in scale_dtypes {
                    for group in groups() {
                        let scheme = QuantScheme { weight_dtype: dtype, group, scale_dtype, symmetry };
                        let q = quantize(&weights, [ROWS, COLS], &scheme).unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
                        check_shapes(&q, &scheme, ROWS, COLS);
                        let restored = dequantize(&q);
                        let (qmin, qmax) = dtype.int_range().unwrap();
                        for r in 0..ROWS {
                            let g = group.group_of_row(r);
                            for c in 0..COLS {
                                let i = r * COLS + c;
                                let (w, scale) = (weights[i] as f64, q.scale(g, c));
                                let error = (w - restored[i]).abs();
                                assert!(
                                    error <= 0.5 * scale * (1.0 + 1e-12),
                                    "{scheme:?} [{r}, {c}]: w {w} restored {} scale {scale}",
                                    restored[i]
                                );
                                let code = q.codes().get(i);
                                assert!(code >= qmin as f64 && code <= qmax as f64);
                                if w == 0.0 {
                                    assert_eq!(restored[i], 0.0, "{scheme:?}: zero must stay zero");
                                }
                            }
                        }
                        // Each scale is the smallest of its format that covers the group: the next
                        // smaller one would leave the group's range beyond the top level.
                        let (levels, range): (f64, fn(f64, f64) -> f64) = match symmetry {
                            Symmetry::Symmetric => (((1u64 << (dtype.bits() - 1)) - 1) as f64, |lo, hi| hi.max(-lo)),
                            Symmetry::Asymmetric => ((qmax - qmin) as f64, |lo, hi| hi - lo),
                        };
                        for g in 0..q.group_count() {
                            for c in 0..COLS {
                                let column = group.rows_of_group(g, ROWS).map(|r| weights[r * COLS + c] as f64);
                                let lo = column.clone().fold(0.0, f64::min);
                                let hi = column.fold(0.0, f64::max);
                                let code = scale_dtype.encode(q.scale(g, c));
                                if code > 0 && range(lo, hi) > 0.0 {
                                    let smaller = scale_dtype.decode(code - 1);
                                    assert!(
                                        range(lo, hi) > levels * smaller,
                                        "{scheme:?} g{g} c{c}: {smaller} covers too"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn float_formats_reconstruct_within_half_the_local_spacing() {
        let mut rng = Rng(2);
        let weights = random_matrix(&mut rng, ROWS, COLS);
        for dtype in float_weight_dtypes() {
            for scale_dtype in [DType::F16, DType::BF16, DType::F32, DType::E8M0, DType::UE4M3] {
                for group in groups() {
                    let scheme = QuantScheme::symmetric(dtype, group, scale_dtype);
                    let q = quantize(&weights, [ROWS, COLS], &scheme).unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
                    check_shapes(&q, &scheme, ROWS, COLS);
                    let restored = dequantize(&q);
                    for r in 0..ROWS {
                        let g = group.group_of_row(r);
                        for c in 0..COLS {
                            let i = r * COLS + c;
                            let (w, scale) = (weights[i] as f64, q.scale(g, c));
                            let x = w.abs() / scale;
                            assert!(x <= dtype.max_value() * (1.0 + 1e-12), "{scheme:?}: {x} clips");
                            let bound = 0.5 * float_spacing(dtype, x) * scale;
                            let error = (w - restored[i]).abs();
                            assert!(
                                error <= bound * (1.0 + 1e-12),
                                "{scheme:?} [{r}, {c}]: w {w} restored {} scale {scale} bound {bound}",
                                restored[i]
                            );
                            assert!(restored[i].is_finite());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn representable_integer_values_round_trip_exactly() {
        let mut rng = Rng(3);
        for dtype in integer_dtypes() {
            let (qmin, qmax) = dtype.int_range().unwrap();
            for symmetry in [Symmetry::Symmetric, Symmetry::Asymmetric] {
                if symmetry == Symmetry::Symmetric && dtype.bits() == 1 {
                    continue;
                }
                for (scale_dtype, base_scale) in [
                    (DType::F16, 0.15625),
                    (DType::BF16, 3.0),
                    (DType::F32, 1.0 + 2f64.powi(-10)),
                    (DType::E8M0, 0.125),
                ] {
                    if symmetry == Symmetry::Asymmetric && scale_dtype == DType::E8M0 {
                        continue;
                    }
                    // Groups of at least two rows (37 = 7·5 + 2 = 5·7 + 2 = 32 + 5), so each can hold
                    // both qmin and qmax.
                    for group in [Group::Size(5), Group::Size(7), Group::Size(32), Group::PerChannel] {
                        let scheme = QuantScheme { weight_dtype: dtype, group, scale_dtype, symmetry };
                        let groups = group.group_count(ROWS);
                        // Per group and column: a scale s and (asymmetric) a zero point z.
                        let scale = |g: usize, c: usize| base_scale * (1 << ((g + c) % 4)) as f64;
                        let mut zero_points = vec![0i64; groups * COLS];
                        let mut codes = vec![0i64; ROWS * COLS];
                        for g in 0..groups {
                            for c in 0..COLS {
                                let rows = group.rows_of_group(g, ROWS);
                                let z = match symmetry {
                                    Symmetry::Symmetric => scheme.implicit_zero_point() as i64,
                                    Symmetry::Asymmetric => rng.int(qmin as i64, qmax as i64),
                                };
                                zero_points[g * COLS + c] = z;
                                let top = (1i64 << (dtype.bits() - 1)) - 1;
                                for (j, r) in rows.enumerate() {
                                    codes[r * COLS + c] = match (symmetry, j) {
                                        (Symmetry::Symmetric, 0) => z + if rng.unit() < 0.5 { top } else { -top },
                                        (Symmetry::Symmetric, _) => z + rng.int(-top, top),
                                        (Symmetry::Asymmetric, 0) => qmin as i64,
                                        (Symmetry::Asymmetric, 1) => qmax as i64,
                                        (Symmetry::Asymmetric, _) => rng.int(qmin as i64, qmax as i64),
                                    };
                                }
                            }
                        }
                        let weights: Vec<f32> = (0..ROWS * COLS)
                            .map(|i| {
                                let (r, c) = (i / COLS, i % COLS);
                                let g = group.group_of_row(r);
                                let w = (codes[i] - zero_points[g * COLS + c]) as f64 * scale(g, c);
                                assert_eq!(w as f32 as f64, w);
                                w as f32
                            })
                            .collect();
                        let q = quantize(&weights, [ROWS, COLS], &scheme).unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
                        let restored = dequantize(&q);
                        for i in 0..ROWS * COLS {
                            assert_eq!(restored[i], weights[i] as f64, "{scheme:?} element {i}");
                            assert_eq!(q.codes().get(i) as i64, codes[i], "{scheme:?} element {i}");
                        }
                        for g in 0..groups {
                            for c in 0..COLS {
                                assert_eq!(q.scale(g, c), scale(g, c), "{scheme:?}");
                                assert_eq!(q.zero_point(g, c) as i64, zero_points[g * COLS + c], "{scheme:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// A random finite code of the float format `dtype`.
    fn random_finite_code(rng: &mut Rng, dtype: DType) -> u64 {
        loop {
            let code = rng.next_u64() & ((1u64 << dtype.bits()) - 1);
            if dtype.decode(code).is_finite() {
                return code;
            }
        }
    }

    #[test]
    fn representable_float_values_round_trip_exactly() {
        let mut rng = Rng(4);
        for dtype in float_weight_dtypes() {
            let max_code = dtype.encode(dtype.max_value());
            let sign = 1u64 << (dtype.bits() - 1);
            for (scale_dtype, base_scale) in [
                (DType::F16, 0.15625),
                (DType::BF16, 3.0),
                (DType::F32, 1.0 + 2f64.powi(-10)),
                (DType::E8M0, 0.125),
                (DType::UE4M3, 0.75),
            ] {
                for group in [Group::Size(1), Group::Size(7), Group::PerChannel] {
                    let scheme = QuantScheme::symmetric(dtype, group, scale_dtype);
                    let scale = |g: usize, c: usize| base_scale * (1 << ((g + c) % 3)) as f64;
                    let mut codes = vec![0u64; ROWS * COLS];
                    for g in 0..group.group_count(ROWS) {
                        for c in 0..COLS {
                            for (j, r) in group.rows_of_group(g, ROWS).enumerate() {
                                codes[r * COLS + c] = if j == 0 {
                                    // ±max pins the scale to exactly s.
                                    max_code | if rng.unit() < 0.5 { sign } else { 0 }
                                } else {
                                    random_finite_code(&mut rng, dtype)
                                };
                            }
                        }
                    }
                    let weights: Vec<f32> = (0..ROWS * COLS)
                        .map(|i| {
                            let g = group.group_of_row(i / COLS);
                            let w = dtype.decode(codes[i]) * scale(g, i % COLS);
                            assert_eq!(w as f32 as f64, w);
                            w as f32
                        })
                        .collect();
                    let q = quantize(&weights, [ROWS, COLS], &scheme).unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
                    let restored = dequantize(&q);
                    for i in 0..ROWS * COLS {
                        assert_eq!(q.codes().code(i), codes[i], "{scheme:?} element {i}: w {}", weights[i]);
                        assert_eq!(restored[i].to_bits(), (weights[i] as f64).to_bits(), "{scheme:?} element {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn all_zero_groups_get_scale_one_and_zero_codes() {
        // Rows 0..7 of every column are zero; with groups of 7 the first group is all zero.
        let mut rng = Rng(5);
        let mut weights = random_matrix(&mut rng, ROWS, COLS);
        weights[..7 * COLS].iter_mut().for_each(|w| *w = 0.0);
        let schemes = [
            QuantScheme::symmetric(DType::I4, Group::Size(7), DType::F16),
            QuantScheme::symmetric(DType::U4, Group::Size(7), DType::BF16),
            QuantScheme::asymmetric(DType::U4, Group::Size(7), DType::F16),
            QuantScheme::asymmetric(DType::I3, Group::Size(7), DType::F32),
            QuantScheme::symmetric(DType::F4E2M1, Group::Size(7), DType::E8M0),
            QuantScheme::symmetric(DType::F8E4M3FN, Group::Size(7), DType::F16),
        ];
        for scheme in schemes {
            let q = quantize(&weights, [ROWS, COLS], &scheme).unwrap();
            let restored = dequantize(&q);
            for c in 0..COLS {
                assert_eq!(q.scale(0, c), 1.0, "{scheme:?}");
                for r in 0..7 {
                    assert_eq!(restored[r * COLS + c], 0.0, "{scheme:?}");
                    assert_eq!(q.codes().get(r * COLS + c), q.zero_point(0, c), "{scheme:?}");
                }
            }
            assert!(restored.iter().all(|v| v.is_finite()));
        }
        for rounding in [MxScaleRounding::RoundDown, MxScaleRounding::RoundUp] {
            let q = mx_quantize(
                &weights,
                [ROWS, COLS],
                &MxScheme { element_dtype: DType::F4E2M1, block_size: 7, rounding },
            )
            .unwrap();
            for c in 0..COLS {
                assert_eq!(q.scale(0, c), 1.0);
                assert_eq!(q.scales().code(c), 127);
            }
            assert!(dequantize(&q)[..7 * COLS].iter().all(|&v| v == 0.0));
        }
        // A whole matrix of zeros (and an empty one) quantize without NaN or infinity.
        let q =
            quantize(&[0.0; 6], [3, 2], &QuantScheme::asymmetric(DType::U8, Group::PerChannel, DType::F16)).unwrap();
        assert_eq!(dequantize(&q), vec![0.0; 6]);
        let q = quantize(&[], [0, 4], &QuantScheme::symmetric(DType::I8, Group::PerChannel, DType::F16)).unwrap();
        assert_eq!(q.scales().to_f64(), vec![1.0; 4]);
        let q = quantize(&[], [0, 4], &QuantScheme::symmetric(DType::I8, Group::Size(4), DType::F16)).unwrap();
        assert_eq!(q.scales().shape, vec![0, 4]);
    }

    #[test]
    fn symmetric_unsigned_integers_center_the_zero_point() {
        let scheme = QuantScheme::symmetric(DType::U4, Group::PerChannel, DType::F32);
        assert_eq!(scheme.implicit_zero_point(), 8.0);
        assert_eq!(QuantScheme::symmetric(DType::U8, Group::PerChannel, DType::F32).implicit_zero_point(), 128.0);
        assert_eq!(QuantScheme::symmetric(DType::I4, Group::PerChannel, DType::F32).implicit_zero_point(), 0.0);
        // amax 7 → scale 1; codes are w + 8.
        let q = quantize(&[-7.0, 0.0, 3.0, 7.0], [4, 1], &scheme).unwrap();
        assert_eq!(q.scale(0, 0), 1.0);
        assert_eq!((0..4).map(|i| q.codes().code(i)).collect::<Vec<_>>(), vec![1, 8, 11, 15]);
        assert_eq!(dequantize(&q), vec![-7.0, 0.0, 3.0, 7.0]);
        // Signed symmetric never uses the most negative code (−8 for i4).
        let q = quantize(&[-7.0, 7.0, -6.6], [3, 1], &QuantScheme::symmetric(DType::I4, Group::PerChannel, DType::F32))
            .unwrap();
        assert_eq!(q.codes().to_f64(), vec![-7.0, 7.0, -7.0]);
    }

    #[test]
    fn asymmetric_zero_points_follow_the_range() {
        // [0.5, 2.0] (all positive): range [0, 2] over u2's 3 steps → scale 2/3 rounded up in
        // f32, zero 0.
        let scheme = QuantScheme::asymmetric(DType::U2, Group::PerChannel, DType::F32);
        let q = quantize(&[0.5, 2.0], [2, 1], &scheme).unwrap();
        let s = q.scale(0, 0);
        let nearest = (2.0f64 / 3.0) as f32;
        let rounded_up = if (nearest as f64) < 2.0 / 3.0 { f32::from_bits(nearest.to_bits() + 1) } else { nearest };
        assert_eq!(s, rounded_up as f64);
        assert!(3.0 * s >= 2.0);
        assert_eq!(q.zero_point(0, 0), 0.0);
        assert_eq!(q.codes().to_f64(), vec![1.0, 3.0]);
        // [−3, 1] in u2: scale 4/3, zero round(0 + 3/(4/3)) = round(2.25) = 2.
        let q =
            quantize(&[-3.0, 1.0], [2, 1], &QuantScheme::asymmetric(DType::U2, Group::PerChannel, DType::F16)).unwrap();
        assert_eq!(q.zero_point(0, 0), 2.0);
        assert_eq!(q.zeros().unwrap().dtype, DType::F16);
        // i1 asymmetric works on codes {−1, 0}: [−0.5, 0] → scale 0.5, zero 0.
        let q =
            quantize(&[-0.5, 0.0, -0.2], [3, 1], &QuantScheme::asymmetric(DType::I1, Group::PerChannel, DType::F16))
                .unwrap();
        assert_eq!(q.scale(0, 0), 0.5);
        assert_eq!(q.zero_point(0, 0), 0.0);
        assert_eq!(dequantize(&q), vec![-0.5, 0.0, -0.0]);
    }

    #[test]
    fn scales_are_rounded_up_into_the_scale_dtype_before_dividing() {
        // amax 1.0 over i4: ideal scale 1/7 = 0.142857…; f16 neighbours 0.14282 and 0.14294.
        // Round to nearest would give 0.14282 and 1.0 / 0.14282 = 7.0018 → clipped; round up
        // keeps the max code at exactly 7 and the error within half a step.
        let weights = [1.0f32, -0.5, 0.3];
        let q = quantize(&weights, [3, 1], &QuantScheme::symmetric(DType::I4, Group::PerChannel, DType::F16)).unwrap();
        let s = q.scale(0, 0);
        assert!(s > 1.0 / 7.0 && DType::F16.round(1.0 / 7.0) < 1.0 / 7.0);
        assert_eq!(s, DType::F16.decode(DType::F16.encode(1.0 / 7.0) + 1));
        assert_eq!(q.codes().get(0), 7.0);
        // The stored scale is what was divided by: dequantization reproduces q · s exactly.
        let restored = dequantize(&q);
        for (i, value) in restored.iter().enumerate() {
            assert_eq!(*value, q.codes().get(i) * s);
        }
        // Scales far below the scale dtype's range round up to its smallest value (positive).
        let q = quantize(&[1e-30, -1e-31], [2, 1], &QuantScheme::symmetric(DType::I8, Group::PerChannel, DType::F16))
            .unwrap();
        assert_eq!(q.scale(0, 0), 2f64.powi(-24));
        assert_eq!(q.codes().to_f64(), vec![0.0, 0.0]);
    }

    /// For each element of an MX-quantized matrix: (error, half the element spacing at the
    /// scaled value times the scale, whether the scaled value exceeded the element max).
    fn mx_errors(weights: &[f32], q: &QuantizedMatrix) -> Vec<(f64, f64, bool)> {
        let element = q.scheme().weight_dtype;
        let restored = dequantize(q);
        (0..weights.len())
            .map(|i| {
                let (r, c) = (i / q.cols(), i % q.cols());
                let scale = q.scale(q.scheme().group.group_of_row(r), c);
                let x = (weights[i] as f64).abs() / scale;
                let bound = 0.5 * float_spacing(element, x) * scale;
                ((weights[i] as f64 - restored[i]).abs(), bound, x > element.max_value())
            })
            .collect()
    }

    const OCP_ELEMENTS: [DType; 5] = [DType::F4E2M1, DType::F6E2M3, DType::F6E3M2, DType::F8E4M3FN, DType::F8E5M2];

    #[test]
    fn mx_emax_elem_matches_the_ocp_table() {
        let emax: Vec<i32> = OCP_ELEMENTS.iter().map(|&d| mx_emax_elem(d)).collect();
        assert_eq!(emax, vec![2, 2, 4, 8, 15]);
    }

    #[test]
    fn mx_shared_exponent_follows_both_rules() {
        use MxScaleRounding::{RoundDown, RoundUp};
        // e4m3fn: amax 1 → ⌊0⌋ − 8 = −8; ⌈log2(1/448)⌉ = ⌈−8.81⌉ = −8.
        assert_eq!(mx_shared_exponent(1.0, DType::F8E4M3FN, RoundDown), -8);
        assert_eq!(mx_shared_exponent(1.0, DType::F8E4M3FN, RoundUp), -8);
        // amax 500: round down ⌊8.97⌋ − 8 = 0 (500 clips to 448); round up ⌈log2(500/448)⌉ = 1.
        assert_eq!(mx_shared_exponent(500.0, DType::F8E4M3FN, RoundDown), 0);
        assert_eq!(mx_shared_exponent(500.0, DType::F8E4M3FN, RoundUp), 1);
        // e2m1: amax exactly 6·2^3 = 48 → round up gives 3 (no bump past equality), round
        // down ⌊5.58⌋ − 2 = 3.
        assert_eq!(mx_shared_exponent(48.0, DType::F4E2M1, RoundUp), 3);
        assert_eq!(mx_shared_exponent(48.0, DType::F4E2M1, RoundDown), 3);
        // 4.5: the rules differ: round down ⌊2.17⌋ − 2 = 0, round up ⌈log2 0.75⌉ = 0, while
        // ⌊log2(4.5/6)⌋ would be −1 (Triton's round-down; not the OCP rule).
        assert_eq!(mx_shared_exponent(4.5, DType::F4E2M1, RoundDown), 0);
        assert_eq!(mx_shared_exponent(4.5, DType::F4E2M1, RoundUp), 0);
        assert_eq!(mx_shared_exponent(0.0, DType::F4E2M1, RoundUp), 0);
        // Random amax: round up is the smallest X with amax ≤ max · 2^X, and round down is never
        // above it.
        let mut rng = Rng(6);
        for &element in &OCP_ELEMENTS {
            let max = element.max_value();
            for _ in 0..2000 {
                let amax = (rng.unit() + 1e-3) * pow2(rng.int(-60, 60) as i32);
                let up = mx_shared_exponent(amax, element, RoundUp);
                assert!(amax <= max * pow2(up) && amax > max * pow2(up - 1), "{element} {amax}");
                let down = mx_shared_exponent(amax, element, RoundDown);
                assert!(down == up || down == up - 1, "{element} {amax}: {down} {up}");
            }
        }
    }

    #[test]
    fn mx_elements_reconstruct_within_the_element_spacing() {
        let mut rng = Rng(7);
        let weights = random_matrix(&mut rng, ROWS, COLS);
        for element in float_weight_dtypes() {
            for rounding in [MxScaleRounding::RoundDown, MxScaleRounding::RoundUp] {
                for block_size in [1, 7, 32, ROWS, 64] {
                    let scheme = MxScheme { element_dtype: element, block_size, rounding };
                    let q = mx_quantize(&weights, [ROWS, COLS], &scheme).unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
                    check_shapes(&q, &scheme.quant_scheme(), ROWS, COLS);
                    // Scales are exactly the shared exponent of each block.
                    for g in 0..q.group_count() {
                        for c in 0..COLS {
                            let amax = Group::Size(block_size)
                                .rows_of_group(g, ROWS)
                                .map(|r| (weights[r * COLS + c] as f64).abs())
                                .fold(0.0, f64::max);
                            let x = mx_shared_exponent(amax, element, rounding).max(-127);
                            assert_eq!(q.scales().code(g * COLS + c), (x + 127) as u64, "{scheme:?}");
                        }
                    }
                    let restored = dequantize(&q);
                    for (i, (error, bound, clipped)) in mx_errors(&weights, &q).into_iter().enumerate() {
                        let scale = q.scale(q.scheme().group.group_of_row(i / COLS), i % COLS);
                        assert!(restored[i].is_finite());
                        if clipped {
                            assert_eq!(
                                rounding,
                                MxScaleRounding::RoundDown,
                                "{scheme:?}: round up clipped element {i}"
                            );
                            // Saturated to ±max, never to infinity.
                            assert_eq!(restored[i].abs(), element.max_value() * scale, "{scheme:?}");
                        } else {
                            assert!(
                                error <= bound * (1.0 + 1e-12),
                                "{scheme:?} element {i}: w {} restored {}",
                                weights[i],
                                restored[i]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn mx_ocp_default_blocks_are_32_rows() {
        let mut rng = Rng(8);
        let weights = random_matrix(&mut rng, 70, 3);
        for element in OCP_ELEMENTS {
            let scheme = MxScheme::ocp(element);
            assert_eq!((scheme.block_size, scheme.rounding), (32, MxScaleRounding::RoundDown));
            let q = mx_quantize(&weights, [70, 3], &scheme).unwrap();
            assert_eq!(q.scales().shape, vec![3, 3]);
            assert_eq!(q.scales().dtype, DType::E8M0);
            assert_eq!(q.codes().data.len(), (70 * 3 * element.bits() as usize).div_ceil(8));
        }
    }

    #[test]
    fn mx_round_down_can_clip_and_round_up_never_does() {
        use MxScaleRounding::{RoundDown, RoundUp};
        // e2m1 block with amax 7.75: round down X = ⌊2.95⌋ − 2 = 0, 7.75 saturates to 6 (error
        // 1.75, beyond half the spacing 1 of [4, 8)); round up X = ⌈log2(7.75/6)⌉ = 1,
        // 7.75/2 = 3.875 → 4, restored 8 (error 0.25).
        let weights = [7.75f32, 1.0, -0.5, 3.0];
        let down = mx_quantize(
            &weights,
            [4, 1],
            &MxScheme { element_dtype: DType::F4E2M1, block_size: 32, rounding: RoundDown },
        )
        .unwrap();
        let up = mx_quantize(
            &weights,
            [4, 1],
            &MxScheme { element_dtype: DType::F4E2M1, block_size: 32, rounding: RoundUp },
        )
        .unwrap();
        assert_eq!(down.scale(0, 0), 1.0);
        assert_eq!(up.scale(0, 0), 2.0);
        assert_eq!(dequantize(&down), vec![6.0, 1.0, -0.5, 3.0]);
        // −0.5 / 2 = −0.25 is a tie between 0 and 0.5 in e2m1: even, so (−)0.
        assert_eq!(dequantize(&up), vec![8.0, 1.0, 0.0, 3.0]);
        let (error, bound, clipped) = mx_errors(&weights, &down)[0];
        assert!(clipped && error > bound);
        assert!(mx_errors(&weights, &up).iter().all(|&(e, b, c)| !c && e <= b));

        // e5m2 is IEEE-style: 62000 would overflow to infinity in a plain cast; the block
        // scaling saturates it to 57344 as PTX satfinite does.
        let q = mx_quantize(
            &[62000.0, 1.0],
            [2, 1],
            &MxScheme { element_dtype: DType::F8E5M2, block_size: 2, rounding: RoundDown },
        )
        .unwrap();
        assert_eq!(q.scale(0, 0), 1.0);
        assert_eq!(dequantize(&q), vec![57344.0, 1.0]);

        // Over many random blocks (log-uniform magnitudes, so the block maxima spread over whole
        // binades): round down clips sometimes, round up never.
        let mut rng = Rng(9);
        let weights: Vec<f32> = (0..32 * 40 * 5)
            .map(|_| {
                let sign = if rng.unit() < 0.5 { -1.0 } else { 1.0 };
                (sign * (20.0 * rng.unit() - 10.0).exp2()) as f32
            })
            .collect();
        for element in OCP_ELEMENTS {
            let count = |rounding| {
                let q =
                    mx_quantize(&weights, [32 * 40, 5], &MxScheme { element_dtype: element, block_size: 32, rounding })
                        .unwrap();
                mx_errors(&weights, &q).iter().filter(|e| e.2).count()
            };
            assert!(count(RoundDown) > 0, "{element}");
            assert_eq!(count(RoundUp), 0, "{element}");
        }
    }

    #[test]
    fn mx_representable_values_round_trip_exactly() {
        let mut rng = Rng(10);
        for element in float_weight_dtypes() {
            let max_code = element.encode(element.max_value());
            for rounding in [MxScaleRounding::RoundDown, MxScaleRounding::RoundUp] {
                for block_size in [1, 7, 32] {
                    let blocks = ROWS.div_ceil(block_size);
                    let exponents: Vec<i32> = (0..blocks * COLS).map(|_| rng.int(-12, 12) as i32).collect();
                    let mut codes = vec![0u64; ROWS * COLS];
                    for (i, code) in codes.iter_mut().enumerate() {
                        // The first row of each block holds ±max, which pins X under both rules.
                        *code = if (i / COLS).is_multiple_of(block_size) {
                            max_code | ((rng.unit() < 0.5) as u64) << (element.bits() - 1)
                        } else {
                            random_finite_code(&mut rng, element)
                        };
                    }
                    let weights: Vec<f32> = (0..ROWS * COLS)
                        .map(|i| {
                            let x = exponents[(i / COLS / block_size) * COLS + i % COLS];
                            let w = element.decode(codes[i]) * pow2(x);
                            assert_eq!(w as f32 as f64, w);
                            w as f32
                        })
                        .collect();
                    let scheme = MxScheme { element_dtype: element, block_size, rounding };
                    let q = mx_quantize(&weights, [ROWS, COLS], &scheme).unwrap();
                    let restored = dequantize(&q);
                    for i in 0..ROWS * COLS {
                        assert_eq!(q.codes().code(i), codes[i], "{scheme:?} element {i}");
                        assert_eq!(restored[i].to_bits(), (weights[i] as f64).to_bits(), "{scheme:?} element {i}");
                    }
                    for (slot, x) in exponents.iter().enumerate() {
                        assert_eq!(q.scales().code(slot), (x + 127) as u64, "{scheme:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn host_tensors_of_f16_bf16_and_f32_quantize_like_slices() {
        let mut rng = Rng(11);
        let weights = random_matrix(&mut rng, ROWS, COLS);
        let scheme = QuantScheme::asymmetric(DType::U4, Group::Size(8), DType::F16);
        let mx = MxScheme::ocp(DType::F6E3M2);
        for dtype in [DType::F16, DType::BF16, DType::F32] {
            let tensor = HostTensor::from_f32(dtype, &[ROWS, COLS], &weights);
            let rounded: Vec<f32> = tensor.to_f32();
            assert_eq!(quantize_tensor(&tensor, &scheme).unwrap(), quantize(&rounded, [ROWS, COLS], &scheme).unwrap());
            assert_eq!(mx_quantize_tensor(&tensor, &mx).unwrap(), mx_quantize(&rounded, [ROWS, COLS], &mx).unwrap());
        }
        let flat = HostTensor::from_f32(DType::F32, &[ROWS * COLS], &weights);
        assert_eq!(quantize_tensor(&flat, &scheme), Err(QuantError::NotAMatrix { shape: vec![ROWS * COLS] }));
        let ints = HostTensor::from_f32(DType::I8, &[ROWS, COLS], &weights);
        assert_eq!(quantize_tensor(&ints, &scheme), Err(QuantError::UnsupportedInputDtype { dtype: DType::I8 }));
        let mut short = HostTensor::from_f32(DType::F32, &[ROWS, COLS], &weights);
        short.data.truncate(10);
        assert!(matches!(quantize_tensor(&short, &scheme), Err(QuantError::MalformedTensor { .. })));
    }

    #[test]
    fn refuses_bad_input_with_clear_errors() {
        let ok = QuantScheme::symmetric(DType::I4, Group::Size(8), DType::F16);
        let weights = [1.0f32; 12];
        let err = |weights: &[f32], shape, scheme: QuantScheme| quantize(weights, shape, &scheme).unwrap_err();

        let e = err(&weights, [5, 3], ok);
        assert_eq!(e, QuantError::ShapeMismatch { rows: 5, cols: 3, values: 12 });
        assert!(e.to_string().contains("not a [5, 3] matrix"), "{e}");
        assert!(matches!(err(&weights, [usize::MAX, 2], ok), QuantError::ShapeMismatch { .. }));
        assert_eq!(err(&weights, [4, 3], QuantScheme { group: Group::Size(0), ..ok }), QuantError::GroupSizeZero);

        for bad in [DType::F32, DType::F16, DType::I16, DType::Bool, DType::E8M0, DType::UE4M3] {
            let e = err(&weights, [4, 3], QuantScheme { weight_dtype: bad, ..ok });
            assert!(matches!(e, QuantError::UnsupportedWeightDtype { dtype, .. } if dtype == bad), "{bad}: {e}");
        }
        assert!(
            err(&weights, [4, 3], QuantScheme { weight_dtype: DType::E8M0, ..ok })
                .to_string()
                .contains("unsigned floats")
        );
        for bad in [DType::F64, DType::I8, DType::F8E4M3FN, DType::F4E2M1] {
            assert_eq!(
                err(&weights, [4, 3], QuantScheme { scale_dtype: bad, ..ok }),
                QuantError::UnsupportedScaleDtype { dtype: bad }
            );
        }
        assert_eq!(
            err(&weights, [4, 3], QuantScheme::asymmetric(DType::F8E4M3FN, Group::PerChannel, DType::F16)),
            QuantError::ZeroPointsNeedIntegerWeights { dtype: DType::F8E4M3FN }
        );
        assert_eq!(
            err(&weights, [4, 3], QuantScheme::asymmetric(DType::U4, Group::PerChannel, DType::E8M0)),
            QuantError::ZeroPointsNeedIeeeScales { dtype: DType::E8M0 }
        );
        for one_bit in [DType::I1, DType::U1] {
            assert_eq!(
                err(&weights, [4, 3], QuantScheme::symmetric(one_bit, Group::PerChannel, DType::F16)),
                QuantError::NoPositiveLevel { dtype: one_bit }
            );
        }

        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut w = weights;
            w[7] = bad;
            let e = err(&w, [4, 3], ok);
            assert!(matches!(e, QuantError::NonFiniteWeight { row: 2, col: 1, .. }), "{e}");
            assert!(e.to_string().contains("weight [2, 1]"), "{e}");
            let e = mx_quantize(&w, [4, 3], &MxScheme::ocp(DType::F4E2M1)).unwrap_err();
            assert!(matches!(e, QuantError::NonFiniteWeight { row: 2, col: 1, .. }), "{e}");
        }

        // 1e6 / 7 does not fit in f16 (max 65504); the same weights fit f32 scales.
        let big = [1e6f32, 1.0];
        let e = err(&big, [2, 1], QuantScheme::symmetric(DType::I4, Group::PerChannel, DType::F16));
        assert!(matches!(e, QuantError::ScaleOverflow { group: 0, col: 0, scale_dtype: DType::F16, .. }), "{e}");
        assert!(e.to_string().contains("f16 cannot hold"), "{e}");
        assert!(quantize(&big, [2, 1], &QuantScheme::symmetric(DType::I4, Group::PerChannel, DType::F32)).is_ok());
        // e8m0's largest scale is 2^127: f32::MAX over u2's one positive level needs 2^128.
        let e = err(&[f32::MAX], [1, 1], QuantScheme::symmetric(DType::U2, Group::PerChannel, DType::E8M0));
        assert!(matches!(e, QuantError::ScaleOverflow { scale_dtype: DType::E8M0, .. }), "{e}");
        // MX on f64 input beyond what 2^127 · max can hold.
        let e = mx_quantize_values(&[1e300], [1, 1], &MxScheme::ocp(DType::F4E2M1)).unwrap_err();
        assert!(matches!(e, QuantError::ScaleOverflow { scale_dtype: DType::E8M0, .. }), "{e}");

        // MX refuses integer elements, unsigned floats and blocks of 0.
        for bad in [DType::I8, DType::E8M0, DType::UE4M3, DType::F16] {
            let e = mx_quantize(&weights, [4, 3], &MxScheme::ocp(bad)).unwrap_err();
            assert!(matches!(e, QuantError::UnsupportedWeightDtype { dtype, .. } if dtype == bad), "{bad}: {e}");
        }
        let e = mx_quantize(&weights, [4, 3], &MxScheme { block_size: 0, ..MxScheme::ocp(DType::F4E2M1) }).unwrap_err();
        assert_eq!(e, QuantError::GroupSizeZero);
    }

    #[test]
    fn quantized_matrix_new_checks_its_parts() {
        let scheme = QuantScheme::asymmetric(DType::U4, Group::Size(2), DType::F16);
        let q = quantize(&[0.5, -1.0, 2.0, 0.0, 1.5, 0.25], [3, 2], &scheme).unwrap();
        let (scheme, codes, scales, zeros) = q.clone().into_parts();
        assert_eq!(QuantizedMatrix::new(scheme, codes.clone(), scales.clone(), zeros.clone()).unwrap(), q);
        let inconsistent = |r: Result<QuantizedMatrix, QuantError>| {
            matches!(r, Err(QuantError::InconsistentParts(_)) | Err(QuantError::MalformedTensor { .. }))
        };
        // Wrong dtype, shape, missing zeros, bad scale values, bad zero points, short data.
        assert!(inconsistent(QuantizedMatrix::new(
            scheme,
            HostTensor::zeros(DType::U8, &[3, 2]),
            scales.clone(),
            zeros.clone()
        )));
        assert!(inconsistent(QuantizedMatrix::new(
            scheme,
            codes.clone(),
            HostTensor::filled(DType::F16, &[1, 2], 1.0),
            zeros.clone()
        )));
        assert!(inconsistent(QuantizedMatrix::new(scheme, codes.clone(), scales.clone(), None)));
        assert!(inconsistent(QuantizedMatrix::new(
            scheme,
            HostTensor::zeros(DType::U4, &[6]),
            scales.clone(),
            zeros.clone()
        )));
        for bad_scale in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            assert!(inconsistent(QuantizedMatrix::new(
                scheme,
                codes.clone(),
                HostTensor::filled(DType::F16, &[2, 2], bad_scale),
                zeros.clone()
            )));
        }
        for bad_zero in [0.5, -1.0, 16.0] {
            assert!(inconsistent(QuantizedMatrix::new(
                scheme,
                codes.clone(),
                scales.clone(),
                Some(HostTensor::filled(DType::F16, &[2, 2], bad_zero))
            )));
        }
        let mut short = codes.clone();
        short.data.pop();
        assert!(inconsistent(QuantizedMatrix::new(scheme, short, scales.clone(), zeros.clone())));
        let symmetric = QuantScheme::symmetric(DType::U4, Group::Size(2), DType::F16);
        assert!(inconsistent(QuantizedMatrix::new(symmetric, codes, scales, zeros)));
    }

    #[test]
    fn group_arithmetic_covers_every_row_once() {
        for rows in [0, 1, 36, 37, 64] {
            for group in [Group::Size(1), Group::Size(7), Group::Size(32), Group::Size(100), Group::PerChannel] {
                let mut seen = vec![0; rows];
                for g in 0..group.group_count(rows) {
                    let range = group.rows_of_group(g, rows);
                    assert!(!range.is_empty() || rows == 0, "{group:?} {rows}: group {g} is empty");
                    for r in range {
                        assert_eq!(group.group_of_row(r), g);
                        seen[r] += 1;
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{group:?} {rows}");
            }
        }
    }
}
