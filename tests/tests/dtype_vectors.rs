//! Number formats against independent reference vectors, exhaustively, plus properties of
//! every format (decode∘encode is the identity on codes, encoding is monotone, ties go to even).
//!
//! The vectors live in `tests/vectors/dtypes`, written by `scripts/gen_dtype_vectors.py` from
//! the `ml_dtypes` library (a pinned version) and numpy, not by this project. When
//! `TL_DTYPE_VECTORS` names another folder, that one is checked too, and so is a
//! `../shared/testdata/dtypes` folder beside the repository when there is one. Each file's name
//! says its format (in the reference library's naming, mapped to ours below) and whether it
//! holds `decode` lines (`code<TAB>value`) or `encode` lines (`f32 bits<TAB>code`).

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use tl_compiler::dtype::DType;
use tl_tests::repo_root;

/// The folders of vectors to check: the repository's own first, then the optional ones.
fn vector_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![repo_root().join("tests/vectors/dtypes")];
    if let Some(dir) = std::env::var_os("TL_DTYPE_VECTORS") {
        dirs.push(PathBuf::from(dir));
    }
    let beside = repo_root().join("../shared/testdata/dtypes");
    if beside.is_dir() {
        dirs.push(beside);
    }
    dirs
}

/// The reference library's format names, mapped to ours explicitly.
fn our_dtype(reference_name: &str) -> Option<DType> {
    Some(match reference_name {
        "bfloat16" => DType::BF16,
        "float16" => DType::F16,
        "float4_e2m1fn" => DType::F4E2M1,
        "float6_e2m3fn" => DType::F6E2M3,
        "float6_e3m2fn" => DType::F6E3M2,
        "float8_e3m4" => DType::F8E3M4,
        "float8_e4m3" => DType::F8E4M3,
        "float8_e4m3fn" => DType::F8E4M3FN,
        "float8_e5m2" => DType::F8E5M2,
        "float8_e8m0fnu" => DType::E8M0,
        "int1" => DType::I1,
        "int2" => DType::I2,
        "int4" => DType::I4,
        "uint1" => DType::U1,
        "uint2" => DType::U2,
        "uint4" => DType::U4,
        _ => return None,
    })
}

/// Checks one vector file; returns (lines checked, mismatch messages).
fn check_file(path: &Path) -> (usize, Vec<String>) {
    let file_name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut parts = file_name.splitn(3, '.');
    let (format, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(dtype) = our_dtype(format) else {
        return (0, vec![format!("{file_name}: no dtype of ours is mapped to `{format}`")]);
    };
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut errors = Vec::new();
    let mut checked = 0;
    for (number, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let place = format!("{file_name}:{}", number + 1);
        let mut cols = line.split('\t');
        let (Some(a), Some(b), None) = (cols.next(), cols.next(), cols.next()) else {
            errors.push(format!("{place}: malformed line `{line}`"));
            continue;
        };
        checked += 1;
        match kind {
            "decode" => {
                let Ok(code) = u64::from_str_radix(a, 16) else {
                    errors.push(format!("{place}: bad code `{a}`"));
                    continue;
                };
                let ours = dtype.decode(code);
                let ok = if dtype.is_float() {
                    let Ok(bits) = u32::from_str_radix(b, 16) else {
                        errors.push(format!("{place}: bad value `{b}`"));
                        continue;
                    };
                    let expected = f32::from_bits(bits);
                    if expected.is_nan() {
                        ours.is_nan()
                    } else {
                        // Every value of these formats is exact in f32; compare bits so -0 counts.
                        (ours as f32).to_bits() == bits && ours as f32 as f64 == ours
                    }
                } else {
                    b.parse::<f64>().is_ok_and(|v| v == ours)
                };
                if !ok {
                    errors.push(format!("{place}: {dtype} decode({a}) = {ours:e}, reference {b}"));
                }
            }
            "encode" => {
                let (Ok(bits), Ok(code)) = (u32::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
                    errors.push(format!("{place}: malformed line `{line}`"));
                    continue;
                };
                let input = f32::from_bits(bits) as f64;
                let ours = dtype.encode(input);
                if ours != code {
                    errors.push(format!("{place}: {dtype} encode({input:e}) = {ours:x}, reference {b}"));
                }
            }
            _ => {
                errors.push(format!("{file_name}: neither a decode nor an encode file"));
                break;
            }
        }
    }
    if checked == 0 {
        errors.push(format!("{file_name}: no vectors"));
    }
    (checked, errors)
}

fn check_dir(dir: &Path) -> (usize, usize, Vec<String>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the dtype vectors at {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
        .collect();
    files.sort();
    let (mut lines, mut errors) = (0, Vec::new());
    for f in &files {
        let (n, e) = check_file(f);
        lines += n;
        errors.extend(e);
    }
    (files.len(), lines, errors)
}

#[test]
fn every_vector_of_every_file_matches() {
    for dir in vector_dirs() {
        let (files, lines, errors) = check_dir(&dir);
        println!("checked {lines} vectors in {files} files from {}", dir.display());
        assert!(files > 0, "no vector files in {}", dir.display());
        assert!(errors.is_empty(), "{} mismatches:\n{}", errors.len(), errors.iter().take(40).cloned().collect::<Vec<_>>().join("\n"));
    }
}

/// The repository's own vectors cover every format the reference library has, both ways.
#[test]
fn the_repository_holds_vectors_for_every_format() {
    let dir = repo_root().join("tests/vectors/dtypes");
    let names: Vec<String> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    for format in ["float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn", "float8_e3m4", "float8_e4m3", "float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu"] {
        for kind in ["decode", "encode"] {
            assert!(names.contains(&format!("{format}.{kind}.tsv")), "{format}.{kind}.tsv missing from {}", dir.display());
        }
    }
    for name in ["bfloat16.encode.tsv", "float16.encode.tsv", "int4.decode.tsv", "uint4.decode.tsv", "int2.decode.tsv", "uint2.decode.tsv"] {
        assert!(names.contains(&name.to_string()), "{name} missing");
    }
}

#[test]
fn a_corrupted_vector_fails_the_check() {
    let source = repo_root().join("tests/vectors/dtypes");
    let tmp = std::env::temp_dir().join(format!("tl-dtype-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for name in ["float4_e2m1fn.encode.tsv", "float8_e4m3fn.decode.tsv", "int4.decode.tsv"] {
        let text = std::fs::read_to_string(source.join(name)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Flip the lowest bit of the second column of one data line in the middle of the file.
        let target = lines.len() / 3;
        let corrupted: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i != target {
                    return l.to_string();
                }
                let (a, b) = l.split_once('\t').unwrap();
                let flipped = if name.starts_with("int") {
                    (b.parse::<i64>().unwrap() + 1).to_string()
                } else {
                    format!("{:0w$x}", u64::from_str_radix(b, 16).unwrap() ^ 1, w = b.len())
                };
                format!("{a}\t{flipped}")
            })
            .collect();
        let one = tmp.join(name);
        std::fs::write(&one, corrupted.join("\n")).unwrap();
        let (_, errors) = check_file(&one);
        assert_eq!(errors.len(), 1, "{name}: {errors:?}");
        assert!(errors[0].contains(&format!("{name}:{}", target + 1)), "{errors:?}");
    }
    std::fs::remove_dir_all(&tmp).ok();
}

/// Every format we support, sub-byte and wide.
fn narrow_formats() -> Vec<DType> {
    DType::all().into_iter().filter(|d| d.bits() <= 16).collect()
}

#[test]
fn decode_then_encode_is_the_identity_on_every_code() {
    for d in narrow_formats() {
        for code in 0..(1u64 << d.bits()) {
            let v = d.decode(code);
            if v.is_nan() {
                assert!(d.decode(d.encode(v)).is_nan(), "{d}: NaN code {code:x}");
                continue;
            }
            if d == DType::Bool && code > 1 {
                continue; // bool has two codes; others read as true
            }
            assert_eq!(d.encode(v), code, "{d}: code {code:x} = {v:e}");
        }
    }
}

#[test]
fn ties_go_to_even_and_between_codes_to_the_nearest() {
    for d in narrow_formats().into_iter().filter(|d| d.is_float() && *d != DType::E8M0) {
        // Positive finite values in increasing order.
        let mut values: Vec<(u64, f64)> = (0..(1u64 << d.bits()))
            .map(|c| (c, d.decode(c)))
            .filter(|(_, v)| v.is_finite() && *v >= 0.0 && !(v == &0.0 && v.is_sign_negative()))
            .collect();
        values.sort_by(|a, b| a.1.total_cmp(&b.1));
        for w in values.windows(2) {
            let ((c0, v0), (c1, v1)) = (w[0], w[1]);
            let mid = (v0 + v1) / 2.0;
            let even = if c0 % 2 == 0 { c0 } else { c1 };
            assert_eq!(d.encode(mid), even, "{d}: tie between {v0} and {v1}");
            let quarter = (v1 - v0) / 4.0;
            assert_eq!(d.encode(v0 + quarter), c0, "{d}: just above {v0}");
            assert_eq!(d.encode(v1 - quarter), c1, "{d}: just below {v1}");
            if d.float_format().unwrap().signed {
                assert_eq!(d.decode(d.encode(-(v0 + quarter))), -v0, "{d}: sign symmetry at {v0}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encoding_is_monotone(index in 0usize..1000, x in -1e6f64..1e6, y in -1e6f64..1e6, scale in -30i32..30) {
        let formats = narrow_formats();
        let d = formats[index % formats.len()];
        let (x, y) = (x * 2f64.powi(scale), y * 2f64.powi(scale));
        let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
        let (a, b) = (d.round(lo), d.round(hi));
        if !a.is_nan() && !b.is_nan() {
            prop_assert!(a <= b, "{}: round({lo:e}) = {a:e} > round({hi:e}) = {b:e}", d);
        }
        // Rounding never moves a value farther than to a neighbour: |round(x) - x| is at most
        // the distance from x to any other representable value (checked against the codes).
        if d.is_float() && d.bits() <= 8 && d != DType::E8M0 && a.is_finite() && lo.abs() <= d.max_value() {
            let err = (a - lo).abs();
            for code in 0..(1u64 << d.bits()) {
                let v = d.decode(code);
                if v.is_finite() {
                    prop_assert!(err <= (v - lo).abs(), "{}: {lo:e} rounded to {a:e} but {v:e} is nearer", d);
                }
            }
        }
    }
}
