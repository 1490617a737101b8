//! Tensor files (`.tlt`): one [`HostTensor`] of any dtype, packed exactly as it is held in
//! memory, plus [`read_tensor_file`] / [`write_tensor_file`], which pick `.npy` or `.tlt` by
//! the file's extension.
//!
//! `.npy` has descriptors for the standard byte-aligned dtypes only; the low-bit formats
//! (`u4`, `f6e3m2`, `f8e4m3fn`, `e8m0`, ...) and `bf16` need a form of their own, and this is it.
//!
//! # Format (version 1)
//!
//! ```text
//! offset 0   8 bytes   magic: the ASCII bytes `TLTENSOR`
//! offset 8   1 byte    format version: 0x01
//! offset 9   header    one line of ASCII text ending in `\n` (at most 4096 bytes, `\n` included):
//!                          dtype=NAME shape=[D0,D1,...]\n
//!                      NAME is a dtype name as `.tl` source spells it (`f32`, `u4`, `f6e3m2`,
//!                      `e8m0`, ...); the dims are decimal integers; `shape=[]` is a 0-d tensor
//!                      (one element). Spaces are allowed around each dim, nowhere else.
//! then       data      exactly ceil(count · bits / 8) bytes, count = the product of the dims:
//!                      every element's code packed densely, least significant bit first
//!                      (element k holds bits [k·bits, (k+1)·bits) of the data, row-major), as
//!                      `compiler::dtype` § Storage says; byte-aligned dtypes are therefore
//!                      plain little-endian arrays. Nothing follows the data.
//! ```
//!
//! The one canonical form: the unused high bits of the last data byte are zero, and `bool`
//! elements are the bytes 0 or 1. Writers produce exactly this form (they clear padding bits and
//! normalize booleans); readers refuse anything else, so a file is never read in two ways.
//!
//! For example, a `u4` tensor of shape `[3]` holding 1, 2, 15 is the 34 bytes
//! `TLTENSOR` `01` `dtype=u4 shape=[3]\n` `21 0f`. From Python (NumPy):
//!
//! ```text
//! def save_tlt(path, dtype_name, shape, packed_bytes):
//!     header = f"dtype={dtype_name} shape=[{','.join(map(str, shape))}]\n"
//!     open(path, "wb").write(b"TLTENSOR\x01" + header.encode() + bytes(packed_bytes))
//! ```
//!
//! # Guarantees
//!
//! * Reading never panics and never allocates more than the input holds: the header is bounded
//!   and parsed by hand, the byte size is computed with checked arithmetic and compared with the
//!   bytes actually present before anything is copied. Every malformed, truncated, oversized or
//!   non-canonical input is a [`FormatError`]; the `*_file` functions wrap it in a
//!   [`TensorFileError`] that names the file.
//! * `write_tlt` followed by `read_tlt` gives back an equal tensor for every dtype in
//!   [`DType::all`] and every shape (tested with random codes).

use std::path::{Path, PathBuf};

use tl_compiler::dtype::DType;
use tl_vm::HostTensor;

use crate::npy::{self, NpyError};

/// The eight bytes every tensor file starts with.
pub const MAGIC: &[u8; 8] = b"TLTENSOR";

/// The format version this build reads and writes.
pub const VERSION: u8 = 1;

/// The extension of tensor files (without the dot).
pub const EXTENSION: &str = "tlt";

/// Longest header line, `\n` included: room for a shape of rank 200 with 20-digit dims, and a
/// bound that keeps a file without a newline from being scanned to its end.
pub const MAX_HEADER_BYTES: usize = 4096;

/// Where the header line starts: after the magic and the version byte.
const HEADER_START: usize = MAGIC.len() + 1;

/// What is wrong with the bytes of a tensor file (or with a tensor that cannot be written).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a tensor file: it does not start with the magic bytes `TLTENSOR`")]
    NotTensorFile,
    #[error("unsupported tensor file version {0} (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    #[error("truncated tensor file: {0}")]
    Truncated(String),
    #[error("malformed tensor file header: {0} (expected `dtype=NAME shape=[D0,D1,...]` and a newline)")]
    BadHeader(String),
    #[error("unknown dtype `{0}` in the tensor file header")]
    UnknownDtype(String),
    #[error("shape {shape} of {dtype} is too large: its byte size overflows the address space")]
    TooLarge { dtype: String, shape: String },
    #[error("the data is {found} bytes but {dtype}{shape:?} needs exactly {expected} bytes")]
    SizeMismatch { dtype: DType, shape: Vec<usize>, expected: usize, found: usize },
    #[error("non-canonical data: {0}")]
    NonCanonical(String),
}

/// A tensor file that could not be read or written: which file, and why.
#[derive(thiserror::Error, Debug)]
pub enum TensorFileError {
    #[error("`{}`: {problem}", path.display())]
    Format { path: PathBuf, problem: FormatError },
    // The npy error is part of the message rather than a `source`, so that printing the error
    // chain does not repeat it.
    #[error("`{}`: {problem}", path.display())]
    Npy { path: PathBuf, problem: NpyError },
    #[error("cannot {op} `{}`: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{}`: unknown tensor file type; name it `*.npy` (NumPy, the standard byte-aligned dtypes) \
         or `*.tlt` (tensor file, every dtype)",
        path.display()
    )]
    UnknownExtension { path: PathBuf },
}

/// The two file forms a tensor can be read from and written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorFileKind {
    /// NumPy `.npy` ([`crate::npy`]): the standard byte-aligned dtypes except `bf16`.
    Npy,
    /// Tensor file `.tlt` (this module): every dtype.
    Tlt,
}

impl TensorFileKind {
    /// The kind named by `path`'s extension (`.npy` or `.tlt`, in any letter case).
    pub fn of_path(path: &Path) -> Option<TensorFileKind> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "npy" => Some(TensorFileKind::Npy),
            EXTENSION => Some(TensorFileKind::Tlt),
            _ => None,
        }
    }
}

/// Serializes `t` as a tensor file.
///
/// Fails with [`FormatError::SizeMismatch`] when `t.data` does not hold exactly
/// [`HostTensor::byte_len`] bytes (such a tensor would make a corrupt file), and with
/// [`FormatError::TooLarge`] when that size overflows.
pub fn write_tlt(t: &HostTensor) -> Result<Vec<u8>, FormatError> {
    let expected = HostTensor::byte_len(t.dtype, &t.shape)
        .ok_or_else(|| FormatError::TooLarge { dtype: t.dtype.name(), shape: format!("{:?}", t.shape) })?;
    if t.data.len() != expected {
        return Err(FormatError::SizeMismatch {
            dtype: t.dtype,
            shape: t.shape.clone(),
            expected,
            found: t.data.len(),
        });
    }
    let header = header_line(t.dtype, &t.shape);
    let mut out = Vec::with_capacity(HEADER_START + header.len() + expected);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(header.as_bytes());
    let data_start = out.len();
    out.extend_from_slice(&t.data);
    canonicalize(t.dtype, t.len(), &mut out[data_start..]);
    Ok(out)
}

/// The header line for `dtype` and `shape`, `\n` included.
fn header_line(dtype: DType, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("dtype={} shape=[{}]\n", dtype.name(), dims.join(","))
}

/// Brings packed data into the canonical form: booleans 0 or 1, padding bits of the last byte
/// zero. `data` holds exactly the packed bytes of `count` elements.
fn canonicalize(dtype: DType, count: usize, data: &mut [u8]) {
    if dtype == DType::Bool {
        for b in data.iter_mut() {
            *b = (*b != 0) as u8;
        }
    }
    if let Some(last) = data.last_mut() {
        *last &= padding_mask(dtype, count);
    }
}

/// The bits of the last data byte that hold elements (the rest are padding and must be zero).
/// Only meaningful when there is at least one data byte.
fn padding_mask(dtype: DType, count: usize) -> u8 {
    // count · bits fits in usize here: the caller holds that many bits of data.
    let used = (count.wrapping_mul(dtype.bits() as usize) % 8) as u32;
    if used == 0 { 0xff } else { ((1u16 << used) - 1) as u8 }
}

/// Parses a whole tensor file held in memory.
pub fn read_tlt(bytes: &[u8]) -> Result<HostTensor, FormatError> {
    let (dtype, shape, data_start) = parse_prelude(bytes)?;
    let data = &bytes[data_start..];
    check_data(dtype, &shape, data)?;
    Ok(HostTensor { dtype, shape, data: data.to_vec() })
}

/// Reads and parses the tensor file at `path`. The file's buffer is reused for the data, so a
/// large tensor is not held twice.
pub fn read_tlt_file(path: impl AsRef<Path>) -> Result<HostTensor, TensorFileError> {
    let path = path.as_ref();
    let in_file = |problem| TensorFileError::Format { path: path.to_path_buf(), problem };
    let mut bytes =
        crate::read_regular_file(path).map_err(|source| TensorFileError::Io { op: "read", path: path.to_path_buf(), source })?;
    let (dtype, shape, data_start) = parse_prelude(&bytes).map_err(in_file)?;
    check_data(dtype, &shape, &bytes[data_start..]).map_err(in_file)?;
    bytes.drain(..data_start);
    Ok(HostTensor { dtype, shape, data: bytes })
}

/// Serializes `t` (see [`write_tlt`]) and writes it to `path`.
pub fn write_tlt_file(path: impl AsRef<Path>, t: &HostTensor) -> Result<(), TensorFileError> {
    let path = path.as_ref();
    let bytes = write_tlt(t).map_err(|problem| TensorFileError::Format { path: path.to_path_buf(), problem })?;
    std::fs::write(path, bytes).map_err(|source| TensorFileError::Io { op: "write", path: path.to_path_buf(), source })
}

/// Reads a `.npy` or `.tlt` file, chosen by its extension.
pub fn read_tensor_file(path: impl AsRef<Path>) -> Result<HostTensor, TensorFileError> {
    let path = path.as_ref();
    match TensorFileKind::of_path(path) {
        Some(TensorFileKind::Tlt) => read_tlt_file(path),
        Some(TensorFileKind::Npy) => npy::read_npy_file(path).map_err(|e| npy_error(path, e)),
        None => Err(TensorFileError::UnknownExtension { path: path.to_path_buf() }),
    }
}

/// Writes `t` as a `.npy` or `.tlt` file, chosen by the extension of `path`. A dtype that
/// `.npy` cannot hold is an error that points at `.tlt`.
pub fn write_tensor_file(path: impl AsRef<Path>, t: &HostTensor) -> Result<(), TensorFileError> {
    let path = path.as_ref();
    match TensorFileKind::of_path(path) {
        Some(TensorFileKind::Tlt) => write_tlt_file(path, t),
        Some(TensorFileKind::Npy) => npy::write_npy_file(path, t).map_err(|e| npy_error(path, e)),
        None => Err(TensorFileError::UnknownExtension { path: path.to_path_buf() }),
    }
}

/// Names the file in an npy error; I/O errors already carry the path and keep their source.
fn npy_error(path: &Path, e: NpyError) -> TensorFileError {
    match e {
        NpyError::Io { op, path, source } => TensorFileError::Io { op, path, source },
        problem => TensorFileError::Npy { path: path.to_path_buf(), problem },
    }
}

/// Checks magic, version and header; returns dtype, shape and where the data starts. The
/// data's size is not checked here (see [`check_data`]).
fn parse_prelude(bytes: &[u8]) -> Result<(DType, Vec<usize>, usize), FormatError> {
    if bytes.len() < MAGIC.len() {
        // A prefix of the magic is a cut-off file; anything else is not a tensor file at all.
        return Err(if MAGIC.starts_with(bytes) {
            FormatError::Truncated(format!("{} bytes, shorter than the 8-byte magic", bytes.len()))
        } else {
            FormatError::NotTensorFile
        });
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(FormatError::NotTensorFile);
    }
    let Some(&version) = bytes.get(MAGIC.len()) else {
        return Err(FormatError::Truncated("the file ends before the version byte".into()));
    };
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let rest = &bytes[HEADER_START..];
    let window = &rest[..rest.len().min(MAX_HEADER_BYTES)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        return Err(if rest.len() < MAX_HEADER_BYTES {
            FormatError::Truncated("the file ends inside the header line (no newline)".into())
        } else {
            FormatError::BadHeader(format!("no newline in the first {MAX_HEADER_BYTES} bytes of the header"))
        });
    };
    let line = std::str::from_utf8(&rest[..newline])
        .map_err(|e| FormatError::BadHeader(format!("the header is not UTF-8 text ({e})")))?;
    let (dtype, shape) = parse_header(line)?;
    Ok((dtype, shape, HEADER_START + newline + 1))
}

/// Parses `dtype=NAME shape=[D0,D1,...]` (the line without its newline).
fn parse_header(line: &str) -> Result<(DType, Vec<usize>), FormatError> {
    let bad = |m: String| Err(FormatError::BadHeader(m));
    let Some(rest) = line.strip_prefix("dtype=") else {
        return bad(format!("the header {line:?} does not start with `dtype=`"));
    };
    let Some((name, rest)) = rest.split_once(' ') else {
        return bad(format!("the header {line:?} has no ` shape=` after the dtype"));
    };
    let Some(dims) = rest.strip_prefix("shape=") else {
        return bad(format!("expected `shape=` after the dtype, found {rest:?}"));
    };
    let Some(dims) = dims.strip_prefix('[').and_then(|d| d.strip_suffix(']')) else {
        return bad(format!("the shape {dims:?} is not a bracketed list such as `[3,5]` or `[]`"));
    };
    let dtype = DType::from_name(name).ok_or_else(|| FormatError::UnknownDtype(name.escape_debug().to_string()))?;
    let mut shape = Vec::new();
    if !dims.trim_matches(' ').is_empty() {
        for dim in dims.split(',') {
            let dim = dim.trim_matches(' ');
            if dim.is_empty() || !dim.bytes().all(|b| b.is_ascii_digit()) {
                return bad(format!("the shape [{dims}] holds {dim:?}, which is not a non-negative integer"));
            }
            let too_large = || FormatError::TooLarge { dtype: dtype.name(), shape: format!("[{dims}]") };
            shape.push(dim.parse::<usize>().map_err(|_| too_large())?);
        }
    }
    if HostTensor::byte_len(dtype, &shape).is_none() {
        return Err(FormatError::TooLarge { dtype: dtype.name(), shape: format!("{shape:?}") });
    }
    Ok((dtype, shape))
}

/// Checks that `data` is exactly the packed bytes of `dtype` × `shape`, in canonical form.
fn check_data(dtype: DType, shape: &[usize], data: &[u8]) -> Result<(), FormatError> {
    // parse_header checked that the size does not overflow.
    let expected = HostTensor::byte_len(dtype, shape).unwrap_or(usize::MAX);
    let found = data.len();
    if found < expected {
        return Err(FormatError::Truncated(format!("the data is {found} bytes but {dtype}{shape:?} needs {expected}")));
    }
    if found > expected {
        return Err(FormatError::SizeMismatch { dtype, shape: shape.to_vec(), expected, found });
    }
    if dtype == DType::Bool
        && let Some(i) = data.iter().position(|&b| b > 1)
    {
        return Err(FormatError::NonCanonical(format!(
            "bool element {i} is the byte {:#04x}; booleans are stored as 0 or 1",
            data[i]
        )));
    }
    let count: usize = shape.iter().product();
    if let Some(&last) = data.last() {
        let stray = last & !padding_mask(dtype, count);
        if stray != 0 {
            return Err(FormatError::NonCanonical(format!(
                "the last data byte {last:#04x} has padding bits {stray:#04x} set after the last \
                 {dtype} element; they must be zero"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const SHAPES: [&[usize]; 8] = [&[], &[0], &[1], &[7], &[3, 5], &[2, 0, 4], &[2, 3, 5], &[1, 1, 1, 13]];

    fn random_tensor(rng: &mut impl Rng, dtype: DType, shape: &[usize]) -> HostTensor {
        let count: usize = shape.iter().product();
        let mask = tl_compiler::dtype::mask(dtype.bits());
        let codes: Vec<u64> = (0..count).map(|_| rng.random::<u64>() & mask).collect();
        let mut codes = codes;
        if dtype == DType::Bool {
            codes.iter_mut().for_each(|c| *c &= 1);
        }
        HostTensor::from_codes(dtype, shape, &codes)
    }

    #[test]
    fn round_trip_every_dtype_with_random_codes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x746c_7400);
        let all = DType::all();
        assert!(all.len() > 60);
        for dtype in all {
            for shape in SHAPES {
                let t = random_tensor(&mut rng, dtype, shape);
                let bytes = write_tlt(&t).unwrap();
                let header = header_line(dtype, shape);
                assert_eq!(&bytes[..9], b"TLTENSOR\x01");
                assert_eq!(&bytes[9..9 + header.len()], header.as_bytes());
                assert_eq!(bytes.len(), 9 + header.len() + HostTensor::byte_len(dtype, shape).unwrap());
                let back = read_tlt(&bytes).unwrap_or_else(|e| panic!("{dtype} {shape:?}: {e}"));
                assert_eq!(back, t, "{dtype} {shape:?}");
                for i in 0..t.len() {
                    assert_eq!(back.code(i), t.code(i), "{dtype} {shape:?} element {i}");
                }
            }
        }
    }

    #[test]
    fn reads_hand_written_files() {
        // u4 [1, 2, 15]: codes packed LSB first, two to a byte.
        let bytes = b"TLTENSOR\x01dtype=u4 shape=[3]\n\x21\x0f";
        let t = read_tlt(bytes).unwrap();
        assert_eq!((t.dtype, t.shape.clone()), (DType::U4, vec![3]));
        assert_eq!(t.to_f64(), vec![1.0, 2.0, 15.0]);
        assert_eq!(write_tlt(&t).unwrap(), bytes.to_vec());

        // f6e3m2 [2, 2]: codes 0x01, 0x3f, 0x20, 0x1c straddle bytes (24 bits, 3 bytes).
        let codes = [0x01u64, 0x3f, 0x20, 0x1c];
        let mut bits = 0u32;
        for (k, c) in codes.iter().enumerate() {
            bits |= (*c as u32) << (6 * k);
        }
        let mut file = b"TLTENSOR\x01dtype=f6e3m2 shape=[ 2 , 2 ]\n".to_vec();
        file.extend_from_slice(&bits.to_le_bytes()[..3]);
        let t = read_tlt(&file).unwrap();
        assert_eq!(t.dtype, DType::F6E3M2);
        assert_eq!((0..4).map(|i| t.code(i)).collect::<Vec<_>>(), codes);
        assert_eq!(t.get(1), -28.0);

        // A 0-d f32 tensor holds one element.
        let mut file = b"TLTENSOR\x01dtype=f32 shape=[]\n".to_vec();
        file.extend_from_slice(&1.5f32.to_le_bytes());
        let t = read_tlt(&file).unwrap();
        assert_eq!((t.shape.len(), t.to_f64()), (0, vec![1.5]));

        // bf16 and e8m0, which .npy cannot hold.
        let t = read_tlt(b"TLTENSOR\x01dtype=bf16 shape=[1]\n\x80\x3f").unwrap();
        assert_eq!(t.to_f64(), vec![1.0]);
        let t = read_tlt(b"TLTENSOR\x01dtype=e8m0 shape=[2]\n\x7f\x80").unwrap();
        assert_eq!(t.to_f64(), vec![1.0, 2.0]);
    }

    #[test]
    fn writer_produces_the_canonical_form() {
        // Padding bits set in memory are cleared in the file; booleans become 0 or 1.
        let t = HostTensor { dtype: DType::U3, shape: vec![2], data: vec![0b1110_1101] };
        let bytes = write_tlt(&t).unwrap();
        assert_eq!(*bytes.last().unwrap(), 0b0010_1101);
        assert_eq!(read_tlt(&bytes).unwrap().to_f64(), vec![5.0, 5.0]);
        let t = HostTensor { dtype: DType::Bool, shape: vec![3], data: vec![0, 7, 1] };
        assert_eq!(read_tlt(&write_tlt(&t).unwrap()).unwrap().data, vec![0, 1, 1]);
        // A tensor whose buffer does not match its shape is refused.
        let t = HostTensor { dtype: DType::F4E2M1, shape: vec![5], data: vec![0; 2] };
        assert_eq!(
            write_tlt(&t),
            Err(FormatError::SizeMismatch { dtype: DType::F4E2M1, shape: vec![5], expected: 3, found: 2 })
        );
    }

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = b"TLTENSOR\x01".to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn every_problem_is_a_clear_error() {
        use FormatError as E;
        let err = |bytes: &[u8]| read_tlt(bytes).unwrap_err();
        assert_eq!(err(b"\x93NUMPY\x01\x00 an npy file"), E::NotTensorFile);
        assert_eq!(err(b"TLT"), E::Truncated("3 bytes, shorter than the 8-byte magic".into()));
        assert_eq!(err(b"nope"), E::NotTensorFile);
        assert!(matches!(err(b"TLTENSOR"), E::Truncated(_)));
        assert_eq!(err(b"TLTENSOR\x02dtype=u8 shape=[1]\n\x00"), E::UnsupportedVersion(2));
        assert!(matches!(err(b"TLTENSOR\x01dtype=u8 shape=[1]"), E::Truncated(m) if m.contains("no newline")));
        assert_eq!(err(&file("dtype=f5e5m5 shape=[1]\n", &[0])), E::UnknownDtype("f5e5m5".into()));
        assert_eq!(err(&file("dtype=float32 shape=[1]\n", &[0; 4])), E::UnknownDtype("float32".into()));
        for header in [
            "dtype=u8\n",
            "shape=[1] dtype=u8\n",
            "dtype=u8 shape=1\n",
            "dtype=u8 shape=(1,)\n",
            "dtype=u8 shape=[1,]\n",
            "dtype=u8 shape=[-1]\n",
            "dtype=u8 shape=[1.0]\n",
            "dtype=u8 shape=[1] \n",
            "dtype=u8  shape=[1]\n",
            "dtype=u8 shape=[1] extra=2\n",
            "dtype=u8 shape=[1]\r\n",
            "DTYPE=u8 shape=[1]\n",
        ] {
            assert!(matches!(err(&file(header, &[0])), E::BadHeader(_)), "accepted {header:?}");
        }
        assert!(matches!(err(&file("dtype=u8 shape=[\u{ff}]\n", &[0])), E::BadHeader(_)));
        assert!(
            matches!(err(&file("dtype=u8 shape=[1]", &[b'x'; MAX_HEADER_BYTES])), E::BadHeader(m) if m.contains("no newline"))
        );
        let mut latin1 = b"TLTENSOR\x01dtype=u8 shape=[\xff]\n".to_vec();
        latin1.push(0);
        assert!(matches!(err(&latin1), E::BadHeader(m) if m.contains("UTF-8")));

        // Shapes whose size overflows, before any data is looked at.
        for shape in [
            "[18446744073709551615,2]",
            "[99999999999999999999999]",
            "[4611686018427387904]",
            "[65536,65536,65536,65536]",
        ] {
            let e = err(&file(&format!("dtype=f32 shape={shape}\n"), &[0; 16]));
            assert!(matches!(e, E::TooLarge { .. }), "{shape}: {e}");
        }
        // A huge but representable size with little data is truncated, not allocated.
        let e = err(&file("dtype=u8 shape=[1000000000000]\n", &[0; 16]));
        assert!(matches!(e, E::Truncated(ref m) if m.contains("1000000000000")), "{e}");

        // Too few and too many data bytes.
        assert!(matches!(err(&file("dtype=u4 shape=[3]\n", &[0x21])), E::Truncated(_)));
        assert_eq!(
            err(&file("dtype=u4 shape=[3]\n", &[0x21, 0x0f, 0x00])),
            E::SizeMismatch { dtype: DType::U4, shape: vec![3], expected: 2, found: 3 }
        );
        // Non-canonical data.
        assert!(
            matches!(err(&file("dtype=u4 shape=[3]\n", &[0x21, 0x1f])), E::NonCanonical(m) if m.contains("padding"))
        );
        assert!(
            matches!(err(&file("dtype=bool shape=[2]\n", &[1, 2])), E::NonCanonical(m) if m.contains("bool element 1"))
        );

        // Messages say what is wrong.
        let msg = err(&file("dtype=f5e5m5 shape=[1]\n", &[0])).to_string();
        assert!(msg.contains("unknown dtype `f5e5m5`"), "{msg}");
        let msg = err(&file("dtype=u4 shape=[3]\n", &[0x21, 0x0f, 0x00])).to_string();
        assert!(msg.contains("3 bytes") && msg.contains("u4[3]") && msg.contains("exactly 2"), "{msg}");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for dtype in [DType::F6E3M2, DType::F32, DType::U1, DType::E8M0] {
            let bytes = write_tlt(&random_tensor(&mut rng, dtype, &[3, 5])).unwrap();
            for n in 0..bytes.len() {
                assert!(read_tlt(&bytes[..n]).is_err(), "{dtype}: a prefix of {n} bytes was accepted");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(matches!(read_tlt(&longer), Err(FormatError::SizeMismatch { .. })));
        }
    }

    #[test]
    fn random_corruption_and_garbage_never_panic() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x746c_7401);
        let good: Vec<Vec<u8>> =
            [(DType::F4E2M1, &[3usize, 5][..]), (DType::Bool, &[4][..]), (DType::F32, &[2, 2][..]), (DType::U3, &[])]
                .into_iter()
                .map(|(d, s)| write_tlt(&random_tensor(&mut rng, d, s)).unwrap())
                .collect();
        let alphabet = b"TLENSOR dtype=shape[],0123456789fuiebm\n\x00\xff-";
        let mut accepted = 0;
        for i in 0..20_000 {
            let mut v = good[i % good.len()].clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..v.len());
                v[at] = match rng.random_range(0..3) {
                    0 => rng.random(),
                    1 => alphabet[rng.random_range(0..alphabet.len())],
                    _ => v[at].wrapping_add(1),
                };
            }
            if rng.random_bool(0.2) {
                let cut = rng.random_range(0..v.len());
                v.truncate(cut);
            }
            if rng.random_bool(0.1) {
                let at = rng.random_range(0..=v.len());
                v.insert(at, alphabet[rng.random_range(0..alphabet.len())]);
            }
            if let Ok(t) = read_tlt(&v) {
                // Whatever is accepted is consistent and survives a round trip (the header may
                // be spelled differently, e.g. with spaces in the shape).
                assert_eq!(Some(t.data.len()), HostTensor::byte_len(t.dtype, &t.shape));
                assert_eq!(read_tlt(&write_tlt(&t).unwrap()).unwrap(), t);
                assert!(v.ends_with(&t.data));
                accepted += 1;
            }
        }
        assert!(accepted > 0, "no mutation kept a valid file (the data bytes of f32 always do)");
        let mut garbage = [0u8; 200];
        for i in 0..5000 {
            rng.fill(&mut garbage[..]);
            if i % 2 == 0 {
                garbage[..9].copy_from_slice(b"TLTENSOR\x01");
            }
            let len = rng.random_range(0..garbage.len());
            assert!(read_tlt(&garbage[..len]).is_err());
        }
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("tl-tlt-test-{}-{name}", std::process::id()))
    }

    #[test]
    fn files_are_chosen_by_extension_and_errors_name_the_file() {
        let t = HostTensor::from_f32(DType::F4E2M1, &[2, 3], &[0.5, -6.0, 1.0, 0.0, 3.0, -1.5]);
        let tlt = temp_path("x.tlt");
        write_tensor_file(&tlt, &t).unwrap();
        assert_eq!(read_tensor_file(&tlt).unwrap(), t);
        assert_eq!(read_tlt_file(&tlt).unwrap(), t);
        // Upper-case extensions work too.
        let upper = temp_path("X.TLT");
        write_tensor_file(&upper, &t).unwrap();
        assert_eq!(read_tensor_file(&upper).unwrap(), t);

        let f32s = HostTensor::from_f32(DType::F32, &[3], &[1.0, 2.0, 3.0]);
        let npy_path = temp_path("x.npy");
        write_tensor_file(&npy_path, &f32s).unwrap();
        assert_eq!(read_tensor_file(&npy_path).unwrap(), f32s);

        // A low-bit tensor cannot be written as .npy; the error points at .tlt.
        let msg = write_tensor_file(&npy_path, &t).unwrap_err().to_string();
        assert!(msg.contains("x.npy") && msg.contains("f4e2m1") && msg.contains(".tlt"), "{msg}");

        let msg = read_tensor_file(temp_path("x.bin")).unwrap_err().to_string();
        assert!(msg.contains("x.bin") && msg.contains(".npy") && msg.contains(".tlt"), "{msg}");

        // Contents checked, with the file named: an npy file renamed to .tlt, and vice versa.
        std::fs::copy(&npy_path, temp_path("renamed.tlt")).unwrap();
        let msg = read_tensor_file(temp_path("renamed.tlt")).unwrap_err().to_string();
        assert!(msg.contains("renamed.tlt") && msg.contains("TLTENSOR"), "{msg}");
        std::fs::copy(&tlt, temp_path("renamed.npy")).unwrap();
        let msg = read_tensor_file(temp_path("renamed.npy")).unwrap_err().to_string();
        assert!(msg.contains("renamed.npy") && msg.contains("NUMPY"), "{msg}");

        let msg = read_tensor_file(temp_path("missing.tlt")).unwrap_err().to_string();
        assert!(msg.contains("cannot read") && msg.contains("missing.tlt"), "{msg}");
        let msg = write_tensor_file(temp_path("no-such-dir").join("y.tlt"), &t).unwrap_err().to_string();
        assert!(msg.contains("cannot write") && msg.contains("no-such-dir"), "{msg}");

        for p in [tlt, upper, npy_path, temp_path("renamed.tlt"), temp_path("renamed.npy")] {
            std::fs::remove_file(p).unwrap();
        }
    }
}
