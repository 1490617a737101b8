use super::*;
use tl_compiler::backend::ptxas::{assemble, find_ptxas};

// ------------------------------------------------------------ builders for hand-written LIR

fn b(e: Expr) -> Box<Expr> {
    Box::new(e)
}
fn int(ty: Ty, v: i64) -> Expr {
    Expr::Int(ty, v)
}
fn float(ty: Ty, v: f64) -> Expr {
    Expr::Float(ty, v)
}
fn var(v: Var) -> Expr {
    Expr::Var(v)
}
fn bin(op: BinaryOp, x: Expr, y: Expr) -> Expr {
    Expr::Binary(op, b(x), b(y))
}
fn un(op: UnaryOp, x: Expr) -> Expr {
    Expr::Unary(op, b(x))
}
fn cmp(op: CmpOp, x: Expr, y: Expr) -> Expr {
    Expr::Cmp(op, b(x), b(y))
}
fn cast(to: Ty, x: Expr) -> Expr {
    Expr::Cast { to, value: b(x), from_unsigned: false, to_unsigned: false }
}
fn load(param: usize, index: Expr, ty: Ty) -> Expr {
    Expr::LoadGlobal { param, index: b(index), ty }
}
fn global(name: &str, dtype: DType) -> Param {
    Param::Global { name: name.into(), dtype }
}
fn kernel(name: &str, params: Vec<Param>, block_threads: u32, shared_bytes: usize) -> Program {
    Program {
        name: name.into(),
        params,
        block_threads,
        shared_bytes,
        vars: vec![],
        body: vec![],
    }
}

/// Appends `i = (ctaid.x * block_threads + tid.x) as i64` and returns `i`.
fn global_thread_index(p: &mut Program) -> Var {
    let i = p.new_var(Ty::I64);
    let threads = int(Ty::I32, p.block_threads as i64);
    let linear =
        bin(BinaryOp::Add, bin(BinaryOp::Mul, Expr::BlockIdx(0), threads), Expr::ThreadIdx);
    p.body.push(Stmt::Assign(i, cast(Ty::I64, linear)));
    i
}

/// Compiles `p` for every arch, checks the PTX has `.entry` and every marker, assembles it
/// with ptxas when available, and returns the PTX per arch.
fn compile_everywhere(p: &Program, markers: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for arch in Arch::ALL {
        let ptx = lir_to_ptx(p, arch).unwrap_or_else(|e| panic!("{e}\n{p}"));
        // LLVM separates operands with tabs; markers are written with single spaces.
        let flat = ptx.split_whitespace().collect::<Vec<_>>().join(" ");
        let entry = format!(".entry {}(", p.name);
        for marker in std::iter::once(entry.as_str()).chain(markers.iter().copied()) {
            assert!(flat.contains(marker), "{arch}: `{marker}` missing from\n{ptx}");
        }
        assert!(ptx.contains(&format!(".target {}", arch.name())));
        match find_ptxas() {
            Some(_) => {
                if let Err(e) = assemble(&ptx, arch) {
                    panic!("{e}\n{ptx}");
                }
            }
            None => println!("skipping ptxas check: ptxas not found"),
        }
        out.push(ptx);
    }
    out
}

// ------------------------------------------------------------ kernels

fn vector_add() -> Program {
    let mut p = kernel(
        "vadd",
        vec![
            global("a", DType::F32),
            global("b", DType::F32),
            global("c", DType::F32),
            Param::Scalar { name: "n".into(), ty: Ty::I32 },
        ],
        256,
        0,
    );
    let i = global_thread_index(&mut p);
    let sum = bin(BinaryOp::Add, load(0, var(i), Ty::F32), load(1, var(i), Ty::F32));
    p.body.push(Stmt::If {
        cond: cmp(CmpOp::Lt, var(i), cast(Ty::I64, Expr::Param(3))),
        then_body: vec![Stmt::StoreGlobal { param: 2, index: var(i), value: sum }],
        else_body: vec![],
    });
    p
}

#[test]
fn vector_add_f32() {
    compile_everywhere(
        &vector_add(),
        &["ld.global", "st.global", "add.rn.f32", ".maxntid 256", "%tid.x"],
    );
}

/// `y[i] = lop3(prmt(x[i], x[i] >> 8, 0x5410), 0x00ff00ff, 0x64806480, 0x6a)`: the byte
/// permute through the NVVM intrinsic, the truth table as inline PTX.
#[test]
fn prmt_and_lop3() {
    let mut p = kernel("bits", vec![global("x", DType::I32), global("y", DType::I32)], 128, 0);
    let i = global_thread_index(&mut p);
    let x = p.new_var(Ty::I32);
    p.body.push(Stmt::Assign(x, load(0, var(i), Ty::I32)));
    let packed = Expr::Prmt {
        a: b(var(x)),
        b: b(bin(BinaryOp::LShr, var(x), int(Ty::I32, 8))),
        selector: b(int(Ty::I32, 0x5410)),
    };
    let value = Expr::Lop3 { a: b(packed), b: b(int(Ty::I32, 0x00ff_00ff)), c: b(int(Ty::I32, 0x6480_6480)), lut: 0x6a };
    p.body.push(Stmt::StoreGlobal { param: 1, index: var(i), value });
    compile_everywhere(&p, &["prmt.b32", "lop3.b32", ", 0x6a;"]);
    let ir = lir_to_llvm_ir(&p, Arch::Sm80).unwrap();
    assert!(ir.contains("@llvm.nvvm.prmt("), "{ir}");
}

#[test]
fn llvm_ir_is_an_optimized_ptx_kernel() {
    let ir = lir_to_llvm_ir(&vector_add(), Arch::Sm80).unwrap();
    assert!(ir.contains("define ptx_kernel void @vadd("), "{ir}");
    assert!(ir.contains("\"nvvm.maxntid\"=\"256\""), "{ir}");
    assert!(!ir.contains("alloca"), "mem2reg left allocas:\n{ir}");
}

#[test]
fn mul_add_is_not_contracted() {
    // The VM rounds after each operation; only an explicit Fma may fuse.
    let mut p = kernel("muladd", vec![global("x", DType::F32)], 32, 0);
    let x = load(0, cast(Ty::I64, Expr::ThreadIdx), Ty::F32);
    let value =
        bin(BinaryOp::Add, bin(BinaryOp::Mul, x.clone(), x.clone()), float(Ty::F32, 0.5));
    p.body.push(Stmt::StoreGlobal { param: 0, index: cast(Ty::I64, Expr::ThreadIdx), value });
    for ptx in compile_everywhere(&p, &["mul.rn.f32", "add.rn.f32"]) {
        assert!(!ptx.contains("fma"), "{ptx}");
    }
}

#[test]
fn f16_math() {
    let mut p =
        kernel("f16_math", vec![global("x", DType::F16), global("y", DType::F16)], 128, 0);
    let i = global_thread_index(&mut p);
    let x = p.new_var(Ty::F16);
    let t = p.new_var(Ty::F16);
    p.body.push(Stmt::Assign(x, load(0, var(i), Ty::F16)));
    let e = un(UnaryOp::Exp, var(x));
    let q = bin(BinaryOp::Div, var(x), float(Ty::F16, 3.0));
    p.body.push(Stmt::Assign(t, Expr::Fma(b(e), b(q), b(float(Ty::F16, 0.25)))));
    // Every transcendental, each via f32, plus a round trip through f32 and bf16.
    let mut acc = var(t);
    for op in [
        UnaryOp::Exp2,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Tanh,
        UnaryOp::Abs,
        UnaryOp::Neg,
    ] {
        acc = bin(BinaryOp::Add, acc, un(op, var(x)));
    }
    let through_f32 =
        cast(Ty::F16, bin(BinaryOp::Mul, cast(Ty::F32, acc), float(Ty::F32, 2.0)));
    let through_bf16 =
        cast(Ty::F16, bin(BinaryOp::Max, cast(Ty::BF16, through_f32), float(Ty::BF16, -1.0)));
    p.body.push(Stmt::StoreGlobal { param: 1, index: var(i), value: through_bf16 });
    compile_everywhere(
        &p,
        &[
            "ld.global.b16",
            "st.global.b16",
            "fma.rn.f16",
            "ex2.approx",
            "lg2.approx",
            "rsqrt.approx",
            "tanh.approx.f32",
            "sqrt.rn.f32",
            "div.rn.f32",
        ],
    );
}

#[test]
fn f64_and_bf16_math() {
    let mut p =
        kernel("wide_math", vec![global("x", DType::F64), global("y", DType::BF16)], 64, 0);
    let i = global_thread_index(&mut p);
    let x = load(0, var(i), Ty::F64);
    let mut acc = x.clone();
    for op in [UnaryOp::Exp, UnaryOp::Sqrt, UnaryOp::Rsqrt, UnaryOp::Tanh] {
        acc = bin(BinaryOp::Add, acc, un(op, x.clone()));
    }
    let h = cast(Ty::BF16, acc);
    let mut bf = Expr::Fma(b(h.clone()), b(h.clone()), b(float(Ty::BF16, 1.0)));
    for op in [BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Min] {
        bf = bin(op, bf, h.clone());
    }
    bf = bin(BinaryOp::Add, bf, un(UnaryOp::Exp, h));
    p.body.push(Stmt::StoreGlobal { param: 1, index: var(i), value: bf });
    compile_everywhere(&p, &["sqrt.rn.f64", "rcp.rn.f64", "ex2.approx", "tanh.approx.f32"]);
}

#[test]
fn shared_memory_loop_with_barriers() {
    let threads = 128;
    let mut p =
        kernel("smem_loop", vec![global("out", DType::F32)], threads, threads as usize * 4);
    let k = p.new_var(Ty::I32);
    let acc = p.new_var(Ty::F32);
    p.body.push(Stmt::Assign(acc, float(Ty::F32, 0.0)));
    let mine = bin(BinaryOp::Mul, Expr::ThreadIdx, int(Ty::I32, 4));
    let neighbour = bin(
        BinaryOp::Mul,
        bin(
            BinaryOp::Rem,
            bin(BinaryOp::Add, Expr::ThreadIdx, int(Ty::I32, 1)),
            int(Ty::I32, threads as i64),
        ),
        int(Ty::I32, 4),
    );
    p.body.push(Stmt::For {
        var: k,
        start: int(Ty::I32, 0),
        end: int(Ty::I32, 4),
        body: vec![
            Stmt::StoreShared {
                offset: mine.clone(),
                value: cast(Ty::F32, bin(BinaryOp::Add, var(k), Expr::ThreadIdx)),
            },
            Stmt::Barrier,
            Stmt::Assign(
                acc,
                bin(
                    BinaryOp::Add,
                    var(acc),
                    Expr::LoadShared { offset: b(neighbour), ty: Ty::F32 },
                ),
            ),
            Stmt::Barrier,
        ],
    });
    p.body.push(Stmt::StoreGlobal {
        param: 0,
        index: cast(Ty::I64, Expr::ThreadIdx),
        value: var(acc),
    });
    compile_everywhere(
        &p,
        &["bar.sync 0", ".shared .align 16 .b8 smem[512]", "st.shared.b32", "ld.shared.b32"],
    );
}

#[test]
fn loop_with_runtime_bounds_and_assigned_variable() {
    let mut p = kernel(
        "count",
        vec![global("out", DType::I32), Param::Scalar { name: "n".into(), ty: Ty::I32 }],
        32,
        0,
    );
    let k = p.new_var(Ty::I32);
    let total = p.new_var(Ty::I32);
    p.body.push(Stmt::Assign(total, int(Ty::I32, 0)));
    p.body.push(Stmt::For {
        var: k,
        start: Expr::ThreadIdx,
        end: Expr::Param(1),
        body: vec![
            Stmt::Assign(total, bin(BinaryOp::Add, var(total), var(k))),
            // Does not change the trip count.
            Stmt::Assign(k, int(Ty::I32, 1000)),
        ],
    });
    p.body.push(Stmt::StoreGlobal {
        param: 0,
        index: cast(Ty::I64, Expr::ThreadIdx),
        value: var(total),
    });
    compile_everywhere(&p, &["st.global.b32"]);
}

const ALL_TYS: [Ty; 9] =
    [Ty::I1, Ty::I8, Ty::I16, Ty::I32, Ty::I64, Ty::F16, Ty::BF16, Ty::F32, Ty::F64];

fn dtype_of(ty: Ty) -> DType {
    match ty {
        Ty::I1 => DType::Bool,
        Ty::I8 => DType::I8,
        Ty::I16 => DType::I16,
        Ty::I32 => DType::I32,
        Ty::I64 => DType::I64,
        Ty::F16 => DType::F16,
        Ty::BF16 => DType::BF16,
        Ty::F32 => DType::F32,
        Ty::F64 => DType::F64,
        Ty::F16x2 | Ty::BF16x2 => unreachable!("packed pairs are no dtype and not in ALL_TYS"),
    }
}

/// Packed pairs: one i32 of the input bitcast to `f16x2`/`bf16x2`, then `-`, `*` and `fma`
/// on both halves, stored back as an i32. f16 pairs become `.f16x2` instructions (the
/// subtraction of a constant as the addition of its negation; with `.rn`:
/// no contraction into an fma that the LIR did not ask for); ptxas accepts both.
#[test]
fn packed_half_pairs_use_the_paired_instructions() {
    for (packed, markers) in [(Ty::F16x2, &["add.rn.f16x2", "mul.rn.f16x2", "fma.rn.f16x2"][..]), (Ty::BF16x2, &[][..])] {
        let mut p = kernel("pairs", vec![global("x", DType::I32), global("y", DType::I32)], 32, 0);
        let tid = cast(Ty::I64, Expr::ThreadIdx);
        let word = p.new_var(Ty::I32);
        let pair = p.new_var(packed);
        let result = p.new_var(packed);
        let as_pair = |e: Expr| Expr::Bitcast { to: packed, value: Box::new(e) };
        let constant = as_pair(Expr::Int(Ty::I32, 0x3c00_4000));
        p.body = vec![
            Stmt::Assign(word, Expr::LoadGlobal { param: 0, index: Box::new(tid.clone()), ty: Ty::I32 }),
            Stmt::Assign(pair, as_pair(var(word))),
            Stmt::Assign(result, Expr::Binary(BinaryOp::Mul, Box::new(Expr::Binary(BinaryOp::Sub, Box::new(var(pair)), Box::new(constant.clone()))), Box::new(var(pair)))),
            Stmt::Assign(result, Expr::Fma(Box::new(var(result)), Box::new(constant.clone()), Box::new(var(pair)))),
            Stmt::StoreGlobal { param: 1, index: tid, value: Expr::Bitcast { to: Ty::I32, value: Box::new(var(result)) } },
        ];
        tl_compiler::lir::verify::verify(&p).unwrap_or_else(|e| panic!("{e:?}"));
        compile_everywhere(&p, markers);
    }
}

#[test]
fn casts_between_every_pair_of_types() {
    // Inputs 0..9 and outputs 9..18, one tensor per type; each (from, to, signedness) case
    // writes its own element so that none is optimized away.
    let mut params: Vec<Param> =
        ALL_TYS.iter().map(|t| global(&format!("in_{}", t.name()), dtype_of(*t))).collect();
    params.extend(ALL_TYS.iter().map(|t| global(&format!("out_{}", t.name()), dtype_of(*t))));
    let mut p = kernel("casts", params, 32, 0);
    let tid = cast(Ty::I64, Expr::ThreadIdx);
    let mut slot = [0i64; 9];
    for (fi, from) in ALL_TYS.iter().enumerate() {
        for (ti, to) in ALL_TYS.iter().enumerate() {
            for from_unsigned in [false, true] {
                for to_unsigned in [false, true] {
                    let value = Expr::Cast {
                        to: *to,
                        value: b(load(fi, tid.clone(), *from)),
                        from_unsigned,
                        to_unsigned,
                    };
                    let index = bin(
                        BinaryOp::Add,
                        bin(BinaryOp::Mul, tid.clone(), int(Ty::I64, 1000)),
                        int(Ty::I64, slot[ti]),
                    );
                    slot[ti] += 1;
                    p.body.push(Stmt::StoreGlobal { param: 9 + ti, index, value });
                }
            }
        }
    }
    compile_everywhere(&p, &["cvt.rni", "cvt.rn.f16.f64", "cvt.rn.f32.s64"]);
}

#[test]
fn float_to_small_int_casts_saturate() {
    let params = vec![
        global("x", DType::F32),
        global("i", DType::I8),
        global("u", DType::U8),
        global("n", DType::I32),
    ];
    let mut p = kernel("saturate", params, 32, 0);
    let tid = cast(Ty::I64, Expr::ThreadIdx);
    let x = load(0, tid.clone(), Ty::F32);
    let to = |to, to_unsigned, value| Expr::Cast {
        to,
        value: b(value),
        from_unsigned: false,
        to_unsigned,
    };
    p.body.push(Stmt::StoreGlobal {
        param: 1,
        index: tid.clone(),
        value: to(Ty::I8, false, x.clone()),
    });
    p.body.push(Stmt::StoreGlobal { param: 2, index: tid.clone(), value: to(Ty::I8, true, x) });
    let n = load(3, tid.clone(), Ty::I32);
    let doubled = bin(BinaryOp::Add, tid.clone(), tid.clone());
    p.body.push(Stmt::StoreGlobal { param: 1, index: doubled, value: to(Ty::I8, false, n) });
    // 127.0 and 255.0 as PTX float literals: the clamps of float→i8 and float→u8;
    // NaN tests select 0; the i32→i8 clamp shows up as min/max with 127 and -128.
    compile_everywhere(
        &p,
        &["cvt.rni.f32.f32", "0f42FE0000", "0f437F0000", "0fC3000000", "127", "-128"],
    );
}

#[test]
fn bool_logic_and_select() {
    let params = vec![
        global("flags", DType::Bool),
        global("x", DType::F32),
        global("out", DType::F32),
        global("out_flags", DType::Bool),
        Param::Scalar { name: "invert".into(), ty: Ty::I1 },
    ];
    let mut p = kernel("bools", params, 64, 0);
    let i = global_thread_index(&mut p);
    let flag = p.new_var(Ty::I1);
    p.body.push(Stmt::Assign(flag, load(0, var(i), Ty::I1)));
    let positive = cmp(CmpOp::Gt, load(1, var(i), Ty::F32), float(Ty::F32, 0.0));
    let mixed = bin(
        BinaryOp::Or,
        bin(BinaryOp::And, var(flag), un(UnaryOp::Not, positive.clone())),
        cmp(CmpOp::Ne, Expr::Param(4), bin(BinaryOp::Max, var(flag), positive)),
    );
    p.body.push(Stmt::Assign(flag, mixed));
    let chosen =
        Expr::Select(b(var(flag)), b(load(1, var(i), Ty::F32)), b(float(Ty::F32, -1.0)));
    p.body.push(Stmt::If {
        cond: cmp(CmpOp::Lt, var(i), int(Ty::I64, 1 << 20)),
        then_body: vec![Stmt::StoreGlobal { param: 2, index: var(i), value: chosen }],
        else_body: vec![Stmt::StoreGlobal { param: 3, index: var(i), value: var(flag) }],
    });
    compile_everywhere(&p, &["ld.global.b8", "st.global.b8", "selp", "setp"]);
}

#[test]
fn block_index_axes() {
    let mut p = kernel("grid3d", vec![global("out", DType::I32)], 32, 0);
    let flat = bin(
        BinaryOp::Add,
        Expr::BlockIdx(0),
        bin(
            BinaryOp::Mul,
            int(Ty::I32, 64),
            bin(
                BinaryOp::Add,
                Expr::BlockIdx(1),
                bin(BinaryOp::Mul, int(Ty::I32, 64), Expr::BlockIdx(2)),
            ),
        ),
    );
    let value = bin(
        BinaryOp::Min,
        Expr::ThreadIdx,
        un(UnaryOp::Abs, bin(BinaryOp::Sub, Expr::BlockIdx(2), Expr::BlockIdx(1))),
    );
    p.body.push(Stmt::StoreGlobal { param: 0, index: cast(Ty::I64, flat), value });
    compile_everywhere(&p, &["%ctaid.x", "%ctaid.y", "%ctaid.z"]);
}

#[test]
fn invalid_programs_are_errors_not_panics() {
    let good = vector_add();
    let mut cases: Vec<(Program, &str)> = Vec::new();

    let mut p = good.clone();
    p.name = "1bad-name".into();
    cases.push((p, "not a PTX identifier"));

    let mut p = good.clone();
    p.block_threads = 0;
    cases.push((p, "block_threads"));

    let mut p = good.clone();
    p.body.push(Stmt::Assign(Var(0), float(Ty::F32, 1.0)));
    cases.push((p, "expected i64"));

    let mut p = good.clone();
    p.body.push(Stmt::Assign(Var(7), int(Ty::I64, 1)));
    cases.push((p, "r7"));

    let mut p = good.clone();
    p.body.push(Stmt::StoreShared { offset: int(Ty::I32, 0), value: int(Ty::I32, 0) });
    cases.push((p, "shared_bytes is 0"));

    let mut p = good.clone();
    p.body.push(Stmt::StoreGlobal { param: 3, index: int(Ty::I64, 0), value: int(Ty::I32, 0) });
    cases.push((p, "not a global tensor"));

    let mut p = good.clone();
    p.body.push(Stmt::Assign(Var(0), bin(BinaryOp::Add, int(Ty::I64, 1), int(Ty::I32, 1))));
    cases.push((p, "different types"));

    let mut p = good.clone();
    p.body.push(Stmt::Assign(Var(0), cast(Ty::I64, un(UnaryOp::Exp, int(Ty::I32, 1)))));
    cases.push((p, "Exp applied to i32"));

    let mut p = good.clone();
    p.body.push(Stmt::Assign(Var(0), cast(Ty::I64, Expr::BlockIdx(3))));
    cases.push((p, "axis 3"));

    let mut p = good.clone();
    let prmt = Expr::Prmt { a: b(int(Ty::I64, 1)), b: b(int(Ty::I32, 2)), selector: b(int(Ty::I32, 0x3210)) };
    p.body.push(Stmt::Assign(Var(0), cast(Ty::I64, prmt)));
    cases.push((p, "a prmt operand has type i64"));

    let mut p = good;
    let lop3 = Expr::Lop3 { a: b(int(Ty::I32, 1)), b: b(int(Ty::I32, 2)), c: b(float(Ty::F32, 3.0)), lut: 0x96 };
    p.body.push(Stmt::Assign(Var(0), cast(Ty::I64, lop3)));
    cases.push((p, "a lop3 operand has type f32"));

    for (p, expected) in cases {
        let err = lir_to_ptx(&p, Arch::Sm80).expect_err(expected).to_string();
        assert!(err.contains(expected), "`{err}` should mention `{expected}`");
        assert!(matches!(
            lir_to_llvm_ir(&p, Arch::Sm90a),
            Err(BackendError::InvalidProgram { .. })
        ));
    }
}
