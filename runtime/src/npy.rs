//! NumPy `.npy` files <-> [`HostTensor`].
//!
//! Expects: bytes in the `.npy` format (versions 1.0, 2.0 and 3.0) holding one array whose dtype
//! is a plain boolean, integer or IEEE float of 1, 2, 4 or 8 bytes (`|b1`, `|i1`, `<i2`, `<i4`,
//! `<i8`, `|u1`, `<u2`, `<u4`, `<u8`, `<f2`, `<f4`, `<f8`), little- (`<`), native (`=`, taken as
//! little-endian, the byte order of every host this project runs on) or big-endian (`>`), in C or
//! Fortran order.
//!
//! Guarantees:
//! * Reading never panics and never allocates more than the input's own size: the header is
//!   parsed by a small bounded parser (no `eval`), and the element count × item size is computed
//!   with checked arithmetic and compared with the bytes actually present before any buffer is
//!   made. Every malformed, truncated or unsupported input is an [`NpyError`].
//! * The result is always dense, row-major and little-endian, as [`HostTensor`] requires:
//!   big-endian data is byte-swapped and Fortran-order data is transposed.
//! * Writing produces format 1.0 (2.0 only when the header does not fit in 65535 bytes), with the
//!   header padded by spaces and a final `\n` so that the data starts at a multiple of 64 bytes,
//!   exactly as NumPy itself writes it; NumPy's `np.load` reads the result.
//! * `bf16` is rejected on write with [`NpyError::UnsupportedDtype`]: NumPy has no standard
//!   descriptor for it (ml_dtypes' `bfloat16` is stored as an opaque `<V2`, which loses the
//!   dtype), and silently writing it as `<u2` or `<f2` would be read back as the wrong numbers.
//! * Low-bit formats (`u4`, `f6e3m2`, `f8e4m3fn`, `e8m0`, ...) are rejected on write the same
//!   way. Tensors of those dtypes and of `bf16` go to tensor files (`.tlt`,
//!   [`crate::tensor_file`]), and every error says so.

use std::path::{Path, PathBuf};

use tl_compiler::dtype::DType;
use tl_vm::HostTensor;

/// The six magic bytes every `.npy` file starts with.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// NumPy aligns the start of the data to this many bytes (`numpy.lib.format.ARRAY_ALIGN`).
const ALIGN: usize = 64;

/// Nesting limit of the header parser: a real header nests two levels (dict, shape tuple); the
/// limit only stops hostile input from overflowing the stack.
const MAX_DEPTH: usize = 16;

#[derive(thiserror::Error, Debug)]
pub enum NpyError {
    #[error("not a .npy file: it does not start with the magic bytes \\x93NUMPY")]
    NotNpy,
    #[error("unsupported .npy format version {major}.{minor} (1.0, 2.0 and 3.0 are supported)")]
    UnsupportedVersion { major: u8, minor: u8 },
    #[error("truncated .npy file: {0}")]
    Truncated(String),
    #[error("malformed .npy header: {0}")]
    BadHeader(String),
    #[error("unsupported dtype for .npy: {0}")]
    UnsupportedDtype(String),
    #[error("array data is {found} bytes but the shape and dtype need exactly {expected} bytes")]
    SizeMismatch { expected: usize, found: usize },
    #[error("array too large: {0}")]
    TooLarge(String),
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Parses a whole `.npy` file held in memory.
pub fn read_npy(bytes: &[u8]) -> Result<HostTensor, NpyError> {
    let layout = parse_prelude(bytes)?;
    let data = bytes[layout.data_offset..].to_vec();
    finish(layout, data)
}

/// Reads and parses a `.npy` file. The file's buffer is reused for the data when no transpose
/// is needed, so a large file is not held twice.
pub fn read_npy_file(path: impl AsRef<Path>) -> Result<HostTensor, NpyError> {
    let path = path.as_ref();
    let mut bytes = crate::read_regular_file(path).map_err(|source| NpyError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let layout = parse_prelude(&bytes)?;
    bytes.drain(..layout.data_offset);
    finish(layout, bytes)
}

/// Serializes `t` as a `.npy` file (format 1.0, or 2.0 for headers over 65535 bytes).
///
/// Fails for `bf16` (no standard NumPy descriptor; see the module docs) and when `t.data` does
/// not hold exactly `shape × itemsize` bytes (such a tensor would make a corrupt file).
pub fn write_npy(t: &HostTensor) -> Result<Vec<u8>, NpyError> {
    let descr = descr_of(t.dtype)?;
    let expected = byte_len(&t.shape, t.dtype.bytes())?;
    if t.data.len() != expected {
        return Err(NpyError::SizeMismatch {
            expected,
            found: t.data.len(),
        });
    }

    let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    // Python's tuple repr: `()`, `(3,)`, `(3, 4)`.
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");

    // Version 1.0 has a u16 header length and a 10-byte prelude; 2.0 a u32 and 12 bytes.
    let (version, prelude) = if padded_len(dict.len(), 10) <= u16::MAX as usize {
        (1u8, 10usize)
    } else {
        (2u8, 12usize)
    };
    let header_len = padded_len(dict.len(), prelude);
    let mut out = Vec::with_capacity(prelude + header_len + t.data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        let len = u32::try_from(header_len)
            .map_err(|_| NpyError::TooLarge(format!("header of {header_len} bytes")))?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(prelude + header_len - 1, b' ');
    out.push(b'\n');
    debug_assert_eq!(out.len() % ALIGN, 0);
    out.extend_from_slice(&t.data);
    Ok(out)
}

/// Serializes `t` (see [`write_npy`]) and writes it to `path`.
pub fn write_npy_file(path: impl AsRef<Path>, t: &HostTensor) -> Result<(), NpyError> {
    let path = path.as_ref();
    let bytes = write_npy(t)?;
    std::fs::write(path, bytes).map_err(|source| NpyError::Io {
        op: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// Length of the header (dict, space padding and the final `\n`) such that
/// `prelude + header` is a multiple of [`ALIGN`].
fn padded_len(dict_len: usize, prelude: usize) -> usize {
    let unpadded = prelude + dict_len + 1;
    let total = unpadded.div_ceil(ALIGN) * ALIGN;
    total - prelude
}

fn descr_of(dtype: DType) -> Result<&'static str, NpyError> {
    Ok(match dtype {
        DType::Bool => "|b1",
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::U16 => "<u2",
        DType::U32 => "<u4",
        DType::U64 => "<u8",
        DType::F16 => "<f2",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        other => {
            return Err(NpyError::UnsupportedDtype(format!(
                "{other} has no standard NumPy descriptor, so it cannot be written as .npy; \
                 use a tensor file (`.tlt`), which holds every dtype"
            )));
        }
    })
}

/// `shape × itemsize` in bytes, or an error when it overflows `usize`.
fn byte_len(shape: &[usize], itemsize: usize) -> Result<usize, NpyError> {
    shape
        .iter()
        .try_fold(itemsize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| NpyError::TooLarge(format!("shape {shape:?} overflows the address space")))
}

/// What the prelude and header say about the data that follows them.
#[derive(Debug)]
struct Layout {
    dtype: DType,
    shape: Vec<usize>,
    big_endian: bool,
    fortran_order: bool,
    /// Where the data starts; the bytes from here to the end are exactly the data (checked).
    data_offset: usize,
}

fn parse_prelude(bytes: &[u8]) -> Result<Layout, NpyError> {
    if bytes.len() < 8 {
        // A prefix of the magic is a truncated file; anything else is not an npy file at all.
        return Err(if MAGIC.starts_with(bytes) {
            NpyError::Truncated(format!(
                "{} bytes, shorter than the 8-byte prelude",
                bytes.len()
            ))
        } else {
            NpyError::NotNpy
        });
    }
    if &bytes[..6] != MAGIC {
        return Err(NpyError::NotNpy);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => return Err(NpyError::UnsupportedVersion { major, minor }),
    };
    let prelude = 8 + len_bytes;
    if bytes.len() < prelude {
        return Err(NpyError::Truncated(format!(
            "{} bytes, shorter than the {prelude}-byte prelude of version {major}.0",
            bytes.len()
        )));
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        // u32 -> usize is lossless on every 32/64-bit target.
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let data_offset = prelude
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            NpyError::Truncated(format!(
                "the header claims {header_len} bytes but only {} follow the prelude",
                bytes.len() - prelude
            ))
        })?;
    let raw = &bytes[prelude..data_offset];
    // Versions 1.0 and 2.0 store the header in latin-1, 3.0 in UTF-8.
    let text: String = if major == 3 {
        std::str::from_utf8(raw)
            .map_err(|e| NpyError::BadHeader(format!("not valid UTF-8: {e}")))?
            .to_owned()
    } else {
        raw.iter().map(|&b| b as char).collect()
    };

    let header = parse_header(&text)?;
    let layout = Layout {
        dtype: header.dtype,
        shape: header.shape,
        big_endian: header.big_endian,
        fortran_order: header.fortran_order,
        data_offset,
    };
    let expected = byte_len(&layout.shape, layout.dtype.bytes())?;
    let found = bytes.len() - data_offset;
    if found < expected {
        return Err(NpyError::Truncated(format!(
            "the data is {found} bytes but shape {:?} of {} needs {expected}",
            layout.shape, layout.dtype
        )));
    }
    if found > expected {
        return Err(NpyError::SizeMismatch { expected, found });
    }
    Ok(layout)
}

/// Turns the raw data (exactly `shape × itemsize` bytes, checked by `parse_prelude`) into a
/// row-major little-endian tensor.
fn finish(layout: Layout, mut data: Vec<u8>) -> Result<HostTensor, NpyError> {
    let itemsize = layout.dtype.bytes();
    debug_assert_eq!(
        Ok(data.len()),
        byte_len(&layout.shape, itemsize).map_err(|_| ())
    );
    if layout.big_endian && itemsize > 1 {
        for elem in data.chunks_exact_mut(itemsize) {
            elem.reverse();
        }
    }
    if layout.dtype == DType::Bool {
        // NumPy bools are 0 or 1, but a hand-made file may hold other bytes; kernels may rely
        // on exactly 0/1, so normalize the way a bool cast would.
        for b in &mut data {
            *b = (*b != 0) as u8;
        }
    }
    if layout.fortran_order && layout.shape.len() > 1 {
        data = fortran_to_c(&data, &layout.shape, itemsize);
    }
    Ok(HostTensor {
        dtype: layout.dtype,
        shape: layout.shape,
        data,
    })
}

/// Transposes column-major (Fortran) data of `shape` to row-major. `src.len()` must be
/// `shape × itemsize`; the strides below cannot overflow because their product is that length.
fn fortran_to_c(src: &[u8], shape: &[usize], itemsize: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len());
    if src.is_empty() {
        return out;
    }
    // Fortran strides in elements: the first axis varies fastest.
    let mut fstride = Vec::with_capacity(shape.len());
    let mut s = 1usize;
    for &d in shape {
        fstride.push(s);
        s *= d;
    }
    // Walk the row-major index (last axis fastest), keeping the Fortran offset in step.
    let mut idx = vec![0usize; shape.len()];
    let mut off = 0usize;
    loop {
        out.extend_from_slice(&src[off * itemsize..(off + 1) * itemsize]);
        let mut axis = shape.len();
        loop {
            if axis == 0 {
                return out;
            }
            axis -= 1;
            idx[axis] += 1;
            off += fstride[axis];
            if idx[axis] < shape[axis] {
                break;
            }
            off -= fstride[axis] * shape[axis];
            idx[axis] = 0;
        }
    }
}

/// The three entries every `.npy` header dict has.
struct Header {
    dtype: DType,
    big_endian: bool,
    fortran_order: bool,
    shape: Vec<usize>,
}

fn parse_header(text: &str) -> Result<Header, NpyError> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected text after the header dict"));
    }
    let PyValue::Dict(entries) = value else {
        return Err(NpyError::BadHeader("the header is not a dict".into()));
    };

    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, value) in entries {
        let PyValue::Str(key) = key else {
            return Err(NpyError::BadHeader("a header key is not a string".into()));
        };
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran,
            "shape" => &mut shape,
            // NumPy itself rejects headers with other keys.
            other => return Err(NpyError::BadHeader(format!("unexpected key {other:?}"))),
        };
        if slot.replace(value).is_some() {
            return Err(NpyError::BadHeader(format!("duplicate key {key:?}")));
        }
    }
    let missing = |k: &str| NpyError::BadHeader(format!("missing key {k:?}"));

    let (dtype, big_endian) = match descr.ok_or_else(|| missing("descr"))? {
        PyValue::Str(s) => parse_descr(&s)?,
        PyValue::List => {
            return Err(NpyError::UnsupportedDtype(
                "structured (record) dtypes are not supported".into(),
            ));
        }
        _ => return Err(NpyError::BadHeader("'descr' is not a string".into())),
    };
    let fortran_order = match fortran.ok_or_else(|| missing("fortran_order"))? {
        PyValue::Bool(b) => b,
        _ => {
            return Err(NpyError::BadHeader(
                "'fortran_order' is not True or False".into(),
            ));
        }
    };
    let shape = match shape.ok_or_else(|| missing("shape"))? {
        PyValue::Tuple(items) => items
            .into_iter()
            .map(|v| match v {
                PyValue::Int(n) => usize::try_from(n).map_err(|_| {
                    if n < 0 {
                        NpyError::BadHeader(format!("negative dimension {n} in 'shape'"))
                    } else {
                        NpyError::TooLarge(format!("dimension {n} does not fit in usize"))
                    }
                }),
                _ => Err(NpyError::BadHeader("'shape' holds a non-integer".into())),
            })
            .collect::<Result<Vec<usize>, _>>()?,
        _ => return Err(NpyError::BadHeader("'shape' is not a tuple".into())),
    };
    Ok(Header {
        dtype,
        big_endian,
        fortran_order,
        shape,
    })
}

/// Maps a NumPy type string such as `<f4` to a dtype and whether its bytes are big-endian.
fn parse_descr(descr: &str) -> Result<(DType, bool), NpyError> {
    let unsupported = || NpyError::UnsupportedDtype(format!("descr {descr:?}"));
    let (order, rest) = match descr.as_bytes().first() {
        Some(c @ (b'<' | b'>' | b'=' | b'|')) => (*c, &descr[1..]),
        // np.dtype accepts a missing byte order as native; np.save never writes one.
        _ => (b'=', descr),
    };
    let dtype = match rest {
        "b1" | "?" => DType::Bool,
        "i1" => DType::I8,
        "i2" => DType::I16,
        "i4" => DType::I32,
        "i8" => DType::I64,
        "u1" => DType::U8,
        "u2" => DType::U16,
        "u4" => DType::U32,
        "u8" => DType::U64,
        "f2" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        _ => return Err(unsupported()),
    };
    // `|` means "byte order not applicable", which is only true of 1-byte types.
    if order == b'|' && dtype.bytes() != 1 {
        return Err(unsupported());
    }
    Ok((dtype, order == b'>' && dtype.bytes() > 1))
}

/// The subset of Python literals that appears in `.npy` headers.
#[derive(Debug)]
enum PyValue {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<PyValue>),
    /// A list; its items are parsed and dropped, since lists only appear in structured
    /// `descr`s, which are rejected.
    List,
    Dict(Vec<(PyValue, PyValue)>),
}

/// A recursive-descent parser over the header text; every error is a `BadHeader`.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> NpyError {
        NpyError::BadHeader(format!("{what} at byte {}", self.pos))
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<PyValue, NpyError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.peek() {
            None => Err(self.err("unexpected end of header")),
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                while !self.close(b'}', entries.is_empty())? {
                    let key = self.value(depth + 1)?;
                    if self.peek() != Some(b':') {
                        return Err(self.err("expected ':'"));
                    }
                    self.pos += 1;
                    let value = self.value(depth + 1)?;
                    entries.push((key, value));
                }
                Ok(PyValue::Dict(entries))
            }
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                while !self.close(b')', items.is_empty())? {
                    items.push(self.value(depth + 1)?);
                }
                // `(3)` is just 3 in Python; only `(3,)` is a tuple. Headers always write the
                // comma, but follow Python so a hand-made `(3)` is not misread as a shape.
                if items.len() == 1 && !self.s[..self.pos - 1].trim_ascii_end().ends_with(b",") {
                    return Ok(items.pop().expect("one item"));
                }
                Ok(PyValue::Tuple(items))
            }
            Some(b'[') => {
                self.pos += 1;
                let mut first = true;
                while !self.close(b']', first)? {
                    self.value(depth + 1)?;
                    first = false;
                }
                Ok(PyValue::List)
            }
            Some(q @ (b'\'' | b'"')) => self.string(q),
            Some(b'u') if matches!(self.s.get(self.pos + 1), Some(b'\'' | b'"')) => {
                // Python 2 unicode literal, u'...'.
                self.pos += 1;
                let q = self.s[self.pos];
                self.string(q)
            }
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' => self.int(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_alphanumeric() {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(PyValue::Bool(true)),
                    b"False" => Ok(PyValue::Bool(false)),
                    b"None" => Ok(PyValue::None),
                    _ => {
                        self.pos = start;
                        Err(self.err("unknown name"))
                    }
                }
            }
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    /// At the start of each item of a container: consumes the separating `,` (not before the
    /// first item) and returns true when the closing bracket `close` ends the container.
    /// A trailing comma before the bracket is allowed, as in Python.
    fn close(&mut self, close: u8, first: bool) -> Result<bool, NpyError> {
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(true);
        }
        if !first {
            if self.peek() != Some(b',') {
                return Err(self.err("expected ',' or a closing bracket"));
            }
            self.pos += 1;
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn string(&mut self, quote: u8) -> Result<PyValue, NpyError> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return Err(self.err("unterminated string"));
            };
            self.pos += 1;
            match c {
                _ if c == quote => break,
                b'\n' => return Err(self.err("newline in string")),
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return Err(self.err("unterminated string"));
                    };
                    self.pos += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'\\' | b'\'' | b'"' => e,
                        _ => return Err(self.err("unsupported escape in string")),
                    });
                }
                _ => out.push(c),
            }
        }
        // The input is a &str and we split only at ASCII bytes, so this is valid UTF-8.
        String::from_utf8(out)
            .map(PyValue::Str)
            .map_err(|_| self.err("invalid string"))
    }

    fn int(&mut self) -> Result<PyValue, NpyError> {
        let negative = match self.s[self.pos] {
            b'-' => {
                self.pos += 1;
                true
            }
            b'+' => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        let start = self.pos;
        let mut n: i128 = 0;
        while let Some(&c) = self.s.get(self.pos).filter(|c| c.is_ascii_digit()) {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add((c - b'0') as i128))
                .ok_or_else(|| self.err("integer too large"))?;
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err("expected digits"));
        }
        // Python 2 wrote long integers as `3L`.
        if matches!(self.s.get(self.pos), Some(b'L' | b'l')) {
            self.pos += 1;
        }
        if self
            .s
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.')
        {
            return Err(self.err("not an integer"));
        }
        Ok(PyValue::Int(if negative { -n } else { n }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Builds a file by hand, per the format spec, independent of `write_npy`.
    fn hand_npy(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let prelude = if version == 1 { 10 } else { 12 };
        let mut header = dict.as_bytes().to_vec();
        while !(prelude + header.len() + 1).is_multiple_of(64) {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut out = b"\x93NUMPY".to_vec();
        out.push(version);
        out.push(0);
        if version == 1 {
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out
    }

    fn i32_bytes(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn sample(dtype: DType, shape: &[usize]) -> HostTensor {
        let n: usize = shape.iter().product();
        let values: Vec<f64> = (0..n).map(|i| (i as f64) * 1.5 - 7.0).collect();
        HostTensor::from_f64(dtype, shape, &values)
    }

    #[test]
    fn round_trip_every_supported_dtype() {
        let shapes: [&[usize]; 6] = [&[], &[0], &[5], &[2, 3], &[2, 0, 4], &[2, 3, 4]];
        for dtype in DType::STANDARD {
            if dtype == DType::BF16 {
                continue;
            }
            for shape in shapes {
                let t = sample(dtype, shape);
                let bytes = write_npy(&t).unwrap();
                assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{dtype} {shape:?}");
                let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
                assert_eq!((10 + header_len) % 64, 0);
                assert_eq!(bytes[10 + header_len - 1], b'\n');
                assert_eq!(read_npy(&bytes).unwrap(), t, "{dtype} {shape:?}");
            }
        }
    }

    #[test]
    fn writes_numpy_style_header() {
        let bytes = write_npy(&sample(DType::F32, &[3, 4])).unwrap();
        let header = std::str::from_utf8(&bytes[10..128]).unwrap();
        assert!(header.ends_with("}\n") || header.ends_with(" \n"));
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"));
        let bytes = write_npy(&sample(DType::U8, &[7])).unwrap();
        assert!(
            std::str::from_utf8(&bytes[10..64])
                .unwrap()
                .contains("'shape': (7,)")
        );
        let bytes = write_npy(&sample(DType::Bool, &[])).unwrap();
        let header = std::str::from_utf8(&bytes[10..64]).unwrap();
        assert!(header.contains("'descr': '|b1'") && header.contains("'shape': ()"));
    }

    #[test]
    fn bf16_is_rejected_on_write() {
        let t = sample(DType::BF16, &[2]);
        let err = write_npy(&t).unwrap_err();
        assert!(matches!(err, NpyError::UnsupportedDtype(_)), "{err}");
        assert!(err.to_string().contains("bf16"));
        assert!(err.to_string().contains(".tlt"));
    }

    #[test]
    fn low_bit_dtypes_are_rejected_with_a_pointer_to_tlt() {
        for dtype in DType::all().into_iter().filter(|d| !DType::STANDARD.contains(d)) {
            let t = HostTensor::zeros(dtype, &[3]);
            let err = write_npy(&t).unwrap_err();
            assert!(matches!(err, NpyError::UnsupportedDtype(_)), "{dtype}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(&dtype.name()) && msg.contains(".tlt"), "{msg}");
        }
    }

    #[test]
    fn write_rejects_inconsistent_tensor() {
        let t = HostTensor {
            dtype: DType::I32,
            shape: vec![3],
            data: vec![0; 8],
        };
        assert!(matches!(
            write_npy(&t),
            Err(NpyError::SizeMismatch {
                expected: 12,
                found: 8
            })
        ));
    }

    #[test]
    fn long_header_uses_version_2() {
        // 30000 unit dimensions make a header of ~90 KB, over version 1.0's u16 length.
        let shape = vec![1usize; 30000];
        let t = sample(DType::I16, &shape);
        let bytes = write_npy(&t).unwrap();
        assert_eq!(&bytes[6..8], &[2, 0]);
        let header_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!((12 + header_len) % 64, 0);
        assert_eq!(read_npy(&bytes).unwrap(), t);
    }

    #[test]
    fn reads_hand_written_file() {
        let dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }";
        let bytes = hand_npy(1, dict, &i32_bytes(&[0, 1, 2, 3, 4, 5]));
        // 10 + 60 + 1 bytes round up to 128, as NumPy writes it.
        assert_eq!(bytes.len(), 128 + 24);
        let t = read_npy(&bytes).unwrap();
        assert_eq!(t.dtype, DType::I32);
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.to_f64(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn reads_versions_2_and_3_and_odd_spellings() {
        let data = i32_bytes(&[7, -8]);
        for (version, dict) in [
            (
                2,
                "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
            ),
            (
                3,
                "{\"shape\": (2,), \"descr\": \"=i4\", \"fortran_order\": False}",
            ),
            (1, "{'descr':'<i4','fortran_order':False,'shape':(2L,)}"),
            (
                1,
                "{u'descr': u'<i4', u'fortran_order': False, u'shape': ( 2 , ) }",
            ),
        ] {
            let t =
                read_npy(&hand_npy(version, dict, &data)).unwrap_or_else(|e| panic!("{dict}: {e}"));
            assert_eq!(t.shape, vec![2], "{dict}");
            assert_eq!(t.to_f64(), vec![7.0, -8.0], "{dict}");
        }
    }

    #[test]
    fn big_endian_is_swapped() {
        let dict = "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }";
        let data: Vec<u8> = [1.5f32, -2.0, 1e-3]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        let t = read_npy(&hand_npy(1, dict, &data)).unwrap();
        assert_eq!(t.to_f64(), vec![1.5, -2.0, 1e-3f32 as f64]);

        let dict = "{'descr': '>u2', 'fortran_order': False, 'shape': (2,), }";
        let t = read_npy(&hand_npy(1, dict, &[0x12, 0x34, 0xff, 0x00])).unwrap();
        assert_eq!(t.to_f64(), vec![0x1234 as f64, 0xff00 as f64]);
    }

    #[test]
    fn fortran_order_is_transposed() {
        // The 2x3 array [[0,1,2],[3,4,5]] stored column-major: 0,3,1,4,2,5.
        let dict = "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }";
        let t = read_npy(&hand_npy(1, dict, &i32_bytes(&[0, 3, 1, 4, 2, 5]))).unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.to_f64(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);

        // 3-d: element (i, j, k) of shape (2, 3, 4) holds 100i + 10j + k.
        let shape = [2usize, 3, 4];
        let mut fortran = Vec::new();
        for k in 0..4 {
            for j in 0..3 {
                for i in 0..2 {
                    fortran.push(100 * i + 10 * j + k);
                }
            }
        }
        let dict = "{'descr': '>i4', 'fortran_order': True, 'shape': (2, 3, 4), }";
        let data: Vec<u8> = fortran.iter().flat_map(|x: &i32| x.to_be_bytes()).collect();
        let t = read_npy(&hand_npy(1, dict, &data)).unwrap();
        assert_eq!(t.shape, shape.to_vec());
        let mut expected = Vec::new();
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    expected.push((100 * i + 10 * j + k) as f64);
                }
            }
        }
        assert_eq!(t.to_f64(), expected);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = write_npy(&sample(DType::F64, &[3, 2])).unwrap();
        for n in 0..bytes.len() {
            assert!(
                read_npy(&bytes[..n]).is_err(),
                "prefix of {n} bytes was accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            read_npy(&longer),
            Err(NpyError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn malformed_headers_are_errors() {
        let data = i32_bytes(&[1, 2]);
        let bad = [
            "",
            "{",
            "{'descr': '<i4', 'fortran_order': False}",
            "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
            "{'descr': '<i4', 'descr': '<i4', 'fortran_order': False, 'shape': (2,)}",
            "{'descr': '<c8', 'fortran_order': False, 'shape': (2,)}",
            "{'descr': '|i4', 'fortran_order': False, 'shape': (2,)}",
            "{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (2,)}",
            "{'descr': '<i4', 'fortran_order': 0, 'shape': (2,)}",
            "{'descr': '<i4', 'fortran_order': False, 'shape': (-2,)}",
            "{'descr': '<i4', 'fortran_order': False, 'shape': (2)}",
            "{'descr': '<i4', 'fortran_order': False, 'shape': (2.0,)}",
            "{'descr': '<i4', 'fortran_order': False, 'shape': (2,)} junk",
            "{'descr': '<i4' 'fortran_order': False, 'shape': (2,)}",
            "{'descr': '<i4, 'fortran_order': False, 'shape': (2,)}",
            "[1, 2]",
            "{'descr': '<i4', 'fortran_order': False, 'shape': (((((((((((((((((((((2,),),),),),),),),),),),),),),),),),),),),)}",
        ];
        for dict in bad {
            let r = read_npy(&hand_npy(1, dict, &data));
            assert!(r.is_err(), "accepted {dict:?}");
        }
        assert!(matches!(
            read_npy(b"PK\x03\x04 a zip file"),
            Err(NpyError::NotNpy)
        ));
        let mut v = hand_npy(
            1,
            "{'descr': '<i4', 'fortran_order': False, 'shape': (2,)}",
            &data,
        );
        v[6] = 4;
        assert!(matches!(
            read_npy(&v),
            Err(NpyError::UnsupportedVersion { major: 4, .. })
        ));
        // A header length pointing past the end of the file.
        v[6] = 1;
        v[8] = 0xff;
        v[9] = 0xff;
        assert!(matches!(read_npy(&v), Err(NpyError::Truncated(_))));
    }

    #[test]
    fn huge_shapes_fail_without_allocating() {
        for shape in [
            "(1000000000000, 1000000000000)",
            "(18446744073709551615, 2)",
            "(99999999999999999999999999,)",
            "(999999999999999999999999999999999999999999999999999999999999,)",
            "(4611686018427387904,)",
        ] {
            let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
            let r = read_npy(&hand_npy(1, &dict, &[0; 16]));
            assert!(r.is_err(), "accepted shape {shape}");
        }
    }

    #[test]
    fn random_corruption_never_panics() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x006e_7079);
        let good = [
            write_npy(&sample(DType::F32, &[3, 4])).unwrap(),
            hand_npy(
                1,
                "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }",
                &[1; 12],
            ),
            hand_npy(
                3,
                "{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }",
                &[9; 8],
            ),
        ];
        for i in 0..20_000 {
            let mut v = good[i % good.len()].clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..v.len());
                v[at] = match rng.random_range(0..3) {
                    0 => rng.random(),
                    1 => b"(),:'\"{}[]0123456789TrueFalse<>|=-L "[rng.random_range(0..36)],
                    _ => v[at].wrapping_add(1),
                };
            }
            if rng.random_bool(0.2) {
                let cut = rng.random_range(0..v.len());
                v.truncate(cut);
            }
            let _ = read_npy(&v);
        }
        let mut garbage = vec![0u8; 256];
        for _ in 0..2000 {
            rng.fill(&mut garbage[..]);
            garbage[..6].copy_from_slice(MAGIC);
            assert!(read_npy(&garbage).is_err());
        }
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("tl-npy-test-{}-{name}", std::process::id()))
    }

    #[test]
    fn file_round_trip_and_io_errors_name_the_path() {
        let path = temp_path("file.npy");
        let t = sample(DType::F16, &[4, 2]);
        write_npy_file(&path, &t).unwrap();
        assert_eq!(read_npy_file(&path).unwrap(), t);
        std::fs::remove_file(&path).unwrap();

        let missing = temp_path("does-not-exist.npy");
        let msg = read_npy_file(&missing).unwrap_err().to_string();
        assert!(
            msg.contains("does-not-exist.npy") && msg.contains("read"),
            "{msg}"
        );
        let msg = write_npy_file(temp_path("no-such-dir").join("x.npy"), &t).unwrap_err();
        assert!(msg.to_string().contains("no-such-dir"), "{msg}");
    }

    /// Cross-checks with NumPy when python3 has it; NumPy is optional for this project.
    #[test]
    fn agrees_with_numpy_when_available() {
        let have_numpy = std::process::Command::new("python3")
            .args(["-c", "import numpy"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !have_numpy {
            println!("skipping: python3 with numpy is not installed");
            return;
        }
        // NumPy writes, we read.
        let from_numpy = temp_path("from-numpy.npy");
        let script = format!(
            "import numpy as np\n\
             a = np.arange(24, dtype='>i4').reshape(2, 3, 4) * 3 - 5\n\
             np.save({:?}, np.asfortranarray(a))\n",
            from_numpy.to_str().unwrap()
        );
        let ok = std::process::Command::new("python3")
            .args(["-c", &script])
            .status()
            .unwrap();
        assert!(ok.success());
        let t = read_npy_file(&from_numpy).unwrap();
        std::fs::remove_file(&from_numpy).unwrap();
        assert_eq!(t.shape, vec![2, 3, 4]);
        assert_eq!(
            t.to_f64(),
            (0..24).map(|i| (i * 3 - 5) as f64).collect::<Vec<_>>()
        );

        // We write, NumPy reads.
        for dtype in DType::STANDARD.into_iter().filter(|d| *d != DType::BF16) {
            let path = temp_path(&format!("to-numpy-{dtype}.npy"));
            let t = sample(dtype, &[2, 3]);
            write_npy_file(&path, &t).unwrap();
            let expected: Vec<String> = t.to_f64().iter().map(|v| format!("{v:?}")).collect();
            let script = format!(
                "import numpy as np\n\
                 a = np.load({:?})\n\
                 assert a.shape == (2, 3), a.shape\n\
                 assert a.dtype == np.dtype({:?}), a.dtype\n\
                 assert a.astype('f8').ravel().tolist() == [{}], a\n",
                path.to_str().unwrap(),
                descr_of(dtype).unwrap(),
                expected.join(", ")
            );
            let ok = std::process::Command::new("python3")
                .args(["-c", &script])
                .status()
                .unwrap();
            std::fs::remove_file(&path).unwrap();
            assert!(ok.success(), "numpy disagrees on {dtype}");
        }
    }
}
