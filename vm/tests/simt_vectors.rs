//! Vector global accesses in the simulator, on hand-built LIR: raw bytes move in order (f16
//! lanes, packed u4 words), a byte offset that is not a multiple of the access size is a
//! misaligned access reported with the instruction's location, and an access past the buffer
//! is out of bounds; the same for vector loads from shared memory.

use tl_compiler::diagnostics::Span;
use tl_compiler::dtype::DType;
use tl_compiler::lir::{BinaryOp, Expr, Param, Program, Stmt, Ty, Var};
use tl_vm::simt::{self, SimtError};
use tl_vm::{Arg, HostTensor};

fn i64c(v: i64) -> Expr {
    Expr::Int(Ty::I64, v)
}

/// `tid · bytes + shift` as an i64 byte offset.
fn offset(bytes: i64, shift: i64) -> Expr {
    let tid = Expr::Cast { to: Ty::I64, value: Box::new(Expr::ThreadIdx), from_unsigned: false, to_unsigned: false };
    let scaled = Expr::Binary(BinaryOp::Mul, Box::new(tid), Box::new(i64c(bytes)));
    Expr::Binary(BinaryOp::Add, Box::new(scaled), Box::new(i64c(shift)))
}

/// Each of 32 threads copies `count` values of `ty` from `src` to `dst` at byte
/// `tid · count · ty.bytes() + shift`, with one vector load and one vector store.
fn copy_program(dtype: DType, ty: Ty, count: usize, shift: i64) -> Program {
    let mut p = Program {
        name: "vcopy".into(),
        params: vec![Param::Global { name: "src".into(), dtype }, Param::Global { name: "dst".into(), dtype }],
        block_threads: 32,
        shared_bytes: 0,
        vars: Vec::new(),
        body: Vec::new(),
    };
    let regs: Vec<Var> = (0..count).map(|_| p.new_var(ty)).collect();
    let bytes = (count * ty.bytes()) as i64;
    p.body = vec![
        Stmt::Source { span: Span::new(0, 4), what: "load src".into() },
        Stmt::LoadGlobalVector { dst: regs.clone(), param: 0, byte_offset: offset(bytes, shift), ty },
        Stmt::Source { span: Span::new(5, 9), what: "store dst".into() },
        Stmt::StoreGlobalVector { param: 1, byte_offset: offset(bytes, 0), values: regs.into_iter().map(Expr::Var).collect(), ty },
    ];
    p
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn tensors(dtype: DType, elements: usize, seed: u64) -> Vec<Arg> {
    let mut src = HostTensor::zeros(dtype, &[elements]);
    src.data = random_bytes(src.data.len(), seed);
    let mut dst = HostTensor::zeros(dtype, &[elements]);
    dst.data.fill(0xA5);
    vec![Arg::Tensor(src), Arg::Tensor(dst)]
}

#[test]
fn vector_copies_move_the_bytes_in_order() {
    // 8 × f16 (16 bytes), 4 × i32 words of packed u4 (32 elements each thread), 2 × i8.
    for (dtype, ty, count, elements) in [(DType::F16, Ty::F16, 8, 256), (DType::U4, Ty::I32, 4, 32 * 32), (DType::U8, Ty::I8, 2, 64), (DType::F32, Ty::F32, 4, 128)] {
        let p = copy_program(dtype, ty, count, 0);
        let mut args = tensors(dtype, elements, 7);
        simt::launch(&p, [1, 1, 1], &mut args).unwrap_or_else(|e| panic!("{dtype}: {e}"));
        let (Arg::Tensor(src), Arg::Tensor(dst)) = (&args[0], &args[1]) else { panic!() };
        // f16 NaN payloads are not kept by the simulator's float registers; compare values.
        if dtype == DType::F16 {
            for i in 0..elements {
                let (a, b) = (src.get(i), dst.get(i));
                assert!(a == b || (a.is_nan() && b.is_nan()), "{dtype} element {i}: {a} vs {b}");
            }
        } else {
            assert_eq!(src.data, dst.data, "{dtype}");
        }
    }
}

#[test]
fn a_misaligned_vector_access_is_reported_at_its_instruction() {
    let p = copy_program(DType::F32, Ty::F32, 4, 4);
    let mut args = tensors(DType::F32, 256, 3);
    let e = simt::launch(&p, [1, 1, 1], &mut args).unwrap_err();
    let SimtError::GlobalMisaligned { thread, what, ref param, byte_offset, size, ref at, .. } = e else { panic!("{e:?}") };
    assert_eq!((thread, what, param.as_str(), byte_offset, size), (0, "vector load", "src", 4, 16));
    assert_eq!(at.as_ref().map(|(s, w)| (*s, w.as_str())), Some((Span::new(0, 4), "load src")));
    let text = e.to_string();
    assert!(text.starts_with("misaligned vector load of 16 bytes at byte 4 of `src` (not a multiple of 16)"), "{text}");
    // 8-byte accesses at 8-byte steps are aligned.
    let p = copy_program(DType::F32, Ty::F32, 2, 8);
    let mut args = tensors(DType::F32, 256, 3);
    simt::launch(&p, [1, 1, 1], &mut args).unwrap();
}

#[test]
fn a_vector_access_past_the_buffer_is_out_of_bounds() {
    // 32 threads × 16 bytes, but only 100 f32 (400 bytes).
    let p = copy_program(DType::F32, Ty::F32, 4, 0);
    let mut args = tensors(DType::F32, 100, 5);
    let e = simt::launch(&p, [1, 1, 1], &mut args).unwrap_err();
    let SimtError::GlobalOutOfBounds { thread, what, index, len, .. } = e else { panic!("{e:?}") };
    assert_eq!((thread, what, index, len), (25, "vector load", 100, 100));
}

/// Each of 32 threads stores its 4 words of `src` to shared memory one word at a time, then
/// (after a barrier) reads the 16 bytes of thread `(tid + 1) % 32` plus `shift` with one shared
/// vector load and writes them to `dst` with one global vector store.
fn shared_program(shift: i64) -> Program {
    let mut p = Program {
        name: "svcopy".into(),
        params: vec![Param::Global { name: "src".into(), dtype: DType::I32 }, Param::Global { name: "dst".into(), dtype: DType::I32 }],
        block_threads: 32,
        shared_bytes: 512,
        vars: Vec::new(),
        body: Vec::new(),
    };
    let words: Vec<Var> = (0..4).map(|_| p.new_var(Ty::I32)).collect();
    let back: Vec<Var> = (0..4).map(|_| p.new_var(Ty::I32)).collect();
    let i32c = |v: i64| Expr::Int(Ty::I32, v);
    let tid16 = |add: i64| Expr::Binary(BinaryOp::Add, Box::new(Expr::Binary(BinaryOp::Mul, Box::new(Expr::ThreadIdx), Box::new(i32c(16)))), Box::new(i32c(add)));
    let neighbour = Expr::Binary(
        BinaryOp::Add,
        Box::new(Expr::Binary(
            BinaryOp::Mul,
            Box::new(Expr::Binary(BinaryOp::Rem, Box::new(Expr::Binary(BinaryOp::Add, Box::new(Expr::ThreadIdx), Box::new(i32c(1)))), Box::new(i32c(32)))),
            Box::new(i32c(16)),
        )),
        Box::new(i32c(shift)),
    );
    let mut body = vec![Stmt::LoadGlobalVector { dst: words.clone(), param: 0, byte_offset: offset(16, 0), ty: Ty::I32 }];
    for (w, r) in words.iter().enumerate() {
        body.push(Stmt::StoreShared { offset: tid16(4 * w as i64), value: Expr::Var(*r) });
    }
    body.push(Stmt::Barrier);
    body.push(Stmt::Source { span: Span::new(10, 14), what: "load shared".into() });
    body.push(Stmt::LoadSharedVector { dst: back.clone(), offset: neighbour, ty: Ty::I32 });
    body.push(Stmt::StoreGlobalVector { param: 1, byte_offset: offset(16, 0), values: back.into_iter().map(Expr::Var).collect(), ty: Ty::I32 });
    p.body = body;
    p
}

#[test]
fn shared_vector_loads_read_their_bytes_in_order() {
    let p = shared_program(0);
    tl_compiler::lir::verify::verify(&p).unwrap_or_else(|e| panic!("{e:?}"));
    let mut args = tensors(DType::I32, 128, 11);
    simt::launch(&p, [1, 1, 1], &mut args).unwrap();
    let (Arg::Tensor(src), Arg::Tensor(dst)) = (&args[0], &args[1]) else { panic!() };
    for t in 0..32 {
        assert_eq!(dst.data[t * 16..t * 16 + 16], src.data[(t + 1) % 32 * 16..(t + 1) % 32 * 16 + 16], "thread {t}");
    }
    // Text form: prints and parses back.
    let text = p.to_string();
    assert!(text.contains("= ld.shared.v4.i32 ["), "{text}");
    assert_eq!(tl_compiler::lir::parse::parse(&text).unwrap().to_string(), text);
}

#[test]
fn a_misaligned_or_outside_shared_vector_load_is_reported() {
    let mut args = tensors(DType::I32, 128, 11);
    let e = simt::launch(&shared_program(8), [1, 1, 1], &mut args).unwrap_err();
    let SimtError::SharedMisaligned { thread, offset, size, ref at, .. } = e else { panic!("{e:?}") };
    assert_eq!((thread, offset, size), (0, 24, 16));
    assert_eq!(at.as_ref().map(|(s, w)| (*s, w.as_str())), Some((Span::new(10, 14), "load shared")));
    assert!(e.to_string().starts_with("misaligned shared vector load of 16 bytes at shared byte 24"), "{e}");
    let mut args = tensors(DType::I32, 128, 11);
    let e = simt::launch(&shared_program(16), [1, 1, 1], &mut args).unwrap_err();
    let SimtError::SharedOutOfBounds { thread, offset, .. } = e else { panic!("{e:?}") };
    assert_eq!((thread, offset), (30, 512)); // (30 + 1) · 16 + 16
}
