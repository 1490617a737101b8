//! Elementwise instructions: unary and binary operations register by register (on codes
//! decoded to f32 for formats narrower than 16 bits), constants, and the CPU-only overflow
//! checks of integer arithmetic.

use super::*;

impl Lower<'_> {
    /// Defines the registers of `id` as `f(i)` for each local index.
    pub(super) fn elementwise(&mut self, id: ValueId, body: &mut Vec<lir::Stmt>, f: impl Fn(&Self, usize) -> Expr) {
        let ty = Ty::of(self.dtype(id));
        let n = match &self.k.value(id).ty {
            Type::Tensor { .. } => self.layout(id).local_size(),
            _ => 1,
        };
        let regs: Vec<Var> = (0..n)
            .map(|i| {
                let e = f(self, i);
                self.assign(body, ty, e)
            })
            .collect();
        self.regs.insert(id, regs);
    }

    /// Unary and binary operations on low-precision operands: each operand is widened to its
    /// dtype's compute type (f32 or i32), the operation runs there, and the result is converted
    /// back with the cast rules (comparisons give bool directly).
    pub(super) fn low_precision_elementwise(&mut self, id: ValueId, body: &mut Vec<lir::Stmt>) {
        let data = self.k.value(id).clone();
        let operands: Vec<ValueId> = match &data.op {
            Op::Unary(_, a) => vec![*a],
            Op::Binary(_, a, b) => vec![*a, *b],
            _ => unreachable!("called for unary and binary operations"),
        };
        let d = self.dtype(operands[0]);
        let compute = d.compute_type();
        let cty = Ty::of(compute);
        let result = data.ty.dtype().expect("typed");
        let n = match &data.ty {
            Type::Tensor { .. } => self.layout(id).local_size(),
            _ => 1,
        };
        let mut out = Vec::new();
        for i in 0..n {
            let wide: Vec<Expr> = operands
                .iter()
                .map(|&v| {
                    let r = if self.regs(v).len() == 1 { self.regs(v)[0] } else { self.regs(v)[i] };
                    self.cast_into(body, var(r), d, compute)
                })
                .map(var)
                .collect();
            if let Op::Unary(op, _) = &data.op
                && super::math::has_sequence(*op)
            {
                let r = self.math_unary(body, *op, wide[0].clone(), cty);
                out.push(self.cast_into(body, var(r), compute, result));
                continue;
            }
            if let Op::Binary(BinaryOp::Pow, _, _) = &data.op {
                let r = self.math_pow(body, wide[0].clone(), wide[1].clone(), cty);
                out.push(self.cast_into(body, var(r), compute, result));
                continue;
            }
            let e = match &data.op {
                // `!` on unsigned integers flips the dtype's own bits (in i32 it would flip 32).
                Op::Unary(UnaryOp::Not, _) if d.is_unsigned_int() => {
                    bin(lir::BinaryOp::Xor, wide[0].clone(), int(Ty::I32, d.int_range().expect("integer").1 as i64))
                }
                Op::Unary(op, _) => unary_expr(*op, wide[0].clone(), cty),
                // Shifts on the dtype's own bits, in the i32 of the widened operands; the
                // result fits the dtype, so the cast back is exact.
                Op::Binary(op @ (BinaryOp::Shl | BinaryOp::Shr), _, _) => shift_expr(*op, wide[0].clone(), wide[1].clone(), d, cty),
                Op::Binary(op, _, _) => {
                    let (x, y) = (wide[0].clone(), wide[1].clone());
                    binary_expr(*op, x, y)
                }
                _ => unreachable!(),
            };
            let r = self.assign(body, Ty::of(if result == DType::Bool { DType::Bool } else { compute }), e);
            out.push(if result == DType::Bool { r } else { self.cast_into(body, var(r), compute, result) });
        }
        self.regs.insert(id, out);
    }

    /// Integer arithmetic of 8 bits and more whose exact result does not fit its dtype is an
    /// error of the kernel (docs/language.md §5; the VM computes exactly and faults). After
    /// `id = op(operands)` each element gets a [`lir::Stmt::Check`] for the CPU backends
    /// (the GPU wraps and pays nothing) that the exact result fits: through i64 for 8 to 32
    /// bits, from the wrapped result's signs (or an unsigned comparison) for 64 bits.
    pub(super) fn overflow_checks(&mut self, id: ValueId, operands: &[ValueId], body: &mut Vec<lir::Stmt>) {
        let data = self.k.value(id);
        let Some(d) = data.ty.dtype() else { return };
        let Some((symbol, op)) = overflow_checked(&data.op, d) else { return };
        let message = format!("integer overflow: the exact result of `{symbol}` does not fit {d}");
        let count = self.regs(id).len();
        for i in 0..count {
            let pick = |s: &Self, v: ValueId| {
                let r = s.regs(v);
                var(if r.len() == 1 { r[0] } else { r[i] })
            };
            let x = pick(self, operands[0]);
            let y = operands.get(1).map(|&b| pick(self, b));
            let result = var(self.regs(id)[i]);
            let cond = no_overflow(d, op, x, y, result);
            body.push(lir::Stmt::Check { cond, message: message.clone(), device: false });
        }
    }
}

/// The LIR of a unary operation on one element (`ty` is the element's register type) that is
/// one expression: everything but the accurate math functions (`math::has_sequence`), whose
/// sequences `Lower::math_unary` emits.
pub(super) fn unary_expr(op: UnaryOp, x: Expr, ty: Ty) -> Expr {
    let u = |o| Expr::Unary(o, Box::new(x.clone()));
    match op {
        UnaryOp::Neg => u(lir::UnaryOp::Neg),
        UnaryOp::Not => u(lir::UnaryOp::Not),
        UnaryOp::Abs => u(lir::UnaryOp::Abs),
        UnaryOp::Sqrt => u(lir::UnaryOp::Sqrt),
        // The hardware approximations.
        UnaryOp::ExpApprox => u(lir::UnaryOp::Exp),
        UnaryOp::Exp2Approx => u(lir::UnaryOp::Exp2),
        UnaryOp::LogApprox => u(lir::UnaryOp::Log),
        UnaryOp::Log2Approx => u(lir::UnaryOp::Log2),
        UnaryOp::RsqrtApprox => u(lir::UnaryOp::Rsqrt),
        UnaryOp::TanhApprox => u(lir::UnaryOp::Tanh),
        UnaryOp::SinApprox => u(lir::UnaryOp::Sin),
        UnaryOp::CosApprox => u(lir::UnaryOp::Cos),
        // 1 / (1 + exp(-x))
        UnaryOp::SigmoidApprox => bin(
            lir::BinaryOp::Div,
            Expr::Float(ty, 1.0),
            bin(
                lir::BinaryOp::Add,
                Expr::Float(ty, 1.0),
                Expr::Unary(lir::UnaryOp::Exp, Box::new(Expr::Unary(lir::UnaryOp::Neg, Box::new(x.clone())))),
            ),
        ),
        UnaryOp::Exp | UnaryOp::Exp2 | UnaryOp::Log | UnaryOp::Log2 | UnaryOp::Sin | UnaryOp::Cos | UnaryOp::Tanh | UnaryOp::Erf | UnaryOp::Rsqrt | UnaryOp::Sigmoid => {
            unreachable!("accurate math functions are sequences: `Lower::math_unary`")
        }
    }
}

/// `pow(x, y, approx = true)`: 2^(y·log2 x) through the hardware approximations.
pub(super) fn pow_approx_expr(x: Expr, y: Expr) -> Expr {
    let log2 = Expr::Unary(lir::UnaryOp::Log2, Box::new(x));
    Expr::Unary(lir::UnaryOp::Exp2, Box::new(bin(lir::BinaryOp::Mul, y, log2)))
}

/// The LIR of a binary operation on one element of a signed or float dtype.
pub(super) fn binary_expr(op: BinaryOp, x: Expr, y: Expr) -> Expr {
    use lir::BinaryOp as B;
    match op {
        BinaryOp::Add => bin(B::Add, x, y),
        BinaryOp::Sub => bin(B::Sub, x, y),
        BinaryOp::Mul => bin(B::Mul, x, y),
        BinaryOp::Div => bin(B::Div, x, y),
        BinaryOp::Rem => bin(B::Rem, x, y),
        BinaryOp::Max => bin(B::Max, x, y),
        BinaryOp::Min => bin(B::Min, x, y),
        BinaryOp::And => bin(B::And, x, y),
        BinaryOp::Or => bin(B::Or, x, y),
        BinaryOp::Xor => bin(B::Xor, x, y),
        BinaryOp::Shl | BinaryOp::Shr => unreachable!("shifts depend on the dtype: `shift_expr`"),
        BinaryOp::PowApprox => pow_approx_expr(x, y),
        BinaryOp::Pow => unreachable!("pow is a sequence: `Lower::math_pow`"),
        BinaryOp::Lt => cmp(CmpOp::Lt, x, y),
        BinaryOp::Le => cmp(CmpOp::Le, x, y),
        BinaryOp::Gt => cmp(CmpOp::Gt, x, y),
        BinaryOp::Ge => cmp(CmpOp::Ge, x, y),
        BinaryOp::Eq => cmp(CmpOp::Eq, x, y),
        BinaryOp::Ne => cmp(CmpOp::Ne, x, y),
    }
}

/// `x << y` or `x >> y` for integer dtype `d` held in registers of type `ty` (the dtype's
/// own, or i32 for the widened codes below 8 bits, sign- or zero-extended): the language's
/// rule (docs/language.md §5) on the dtype's bits. An amount outside `0 .. width` (a negative
/// one is a large unsigned number) shifts everything out, where LLVM's shifts are undefined;
/// a left shift in a wider register is wrapped back to the dtype's width.
pub(super) fn shift_expr(op: BinaryOp, x: Expr, y: Expr, d: DType, ty: Ty) -> Expr {
    use lir::BinaryOp as B;
    let width = i64::from(d.bits());
    let register_bits = 8 * ty.bytes() as i64;
    let select = |c: Expr, a: Expr, b: Expr| Expr::Select(Box::new(c), Box::new(a), Box::new(b));
    let in_range = cmp(CmpOp::ULt, y.clone(), int(ty, width));
    match op {
        BinaryOp::Shl => {
            let shifted = select(in_range, bin(B::Shl, x, y), int(ty, 0));
            match register_bits - width {
                0 => shifted,
                spare if d.is_signed_int() => bin(B::AShr, bin(B::Shl, shifted, int(ty, spare)), int(ty, spare)),
                _ => bin(B::And, shifted, int(ty, (1i64 << width) - 1)),
            }
        }
        // The sign fill of a signed value: shifting by width − 1 or more gives it.
        _ if d.is_signed_int() => bin(B::AShr, x, bin(B::UMin, y, int(ty, width - 1))),
        _ => select(in_range, bin(B::LShr, x, y), int(ty, 0)),
    }
}

/// The register holding the constant `value` of dtype `d`: low-precision floats hold the code
/// of the rounded value, everything else the value.
pub(super) fn constant_register(d: DType, value: Number) -> Expr {
    match d.round_number(value) {
        Number::Float(f) if d.is_low_precision() => {
            crate::lower_numerics::code_to_container(int(Ty::I32, d.encode(f) as i64))
        }
        Number::Float(f) => Expr::Float(Ty::of(d), f),
        // An integer register holds the bit pattern: a u64 beyond i64::MAX wraps.
        Number::Int(v) => Expr::Int(Ty::of(d), v as i64),
    }
}

/// The operations whose LIR differs for unsigned integers; `None` for the others.
pub(super) fn unsigned_binary(op: BinaryOp, x: Expr, y: Expr) -> Option<Expr> {
    use lir::BinaryOp as B;
    Some(match op {
        BinaryOp::Div => bin(B::UDiv, x, y),
        BinaryOp::Rem => bin(B::URem, x, y),
        BinaryOp::Max => bin(B::UMax, x, y),
        BinaryOp::Min => bin(B::UMin, x, y),
        BinaryOp::Lt => cmp(CmpOp::ULt, x, y),
        BinaryOp::Le => cmp(CmpOp::ULe, x, y),
        BinaryOp::Gt => cmp(CmpOp::UGt, x, y),
        BinaryOp::Ge => cmp(CmpOp::UGe, x, y),
        _ => return None,
    })
}

/// The integer operations whose result can overflow `d` and get a check for the CPU backends
/// (8 bits and more; below, arithmetic saturates): the operator as the message shows it, and
/// the binary operation (`None` for a unary minus or `abs`).
pub(super) fn overflow_checked(op: &Op, d: DType) -> Option<(&'static str, Option<BinaryOp>)> {
    if !d.is_int() || d.is_low_precision() {
        return None;
    }
    Some(match op {
        Op::Binary(BinaryOp::Add, ..) => ("+", Some(BinaryOp::Add)),
        Op::Binary(BinaryOp::Sub, ..) => ("-", Some(BinaryOp::Sub)),
        Op::Binary(BinaryOp::Mul, ..) => ("*", Some(BinaryOp::Mul)),
        Op::Binary(BinaryOp::Div, ..) if d.is_signed_int() => ("/", Some(BinaryOp::Div)),
        Op::Unary(UnaryOp::Neg, _) if d.is_signed_int() => ("unary -", None),
        Op::Unary(UnaryOp::Abs, _) if d.is_signed_int() => ("abs", None),
        _ => return None,
    })
}

/// Whether the exact result of `op` (a unary minus or `abs` when `None`) on registers `x` (and
/// `y`) of integer dtype `d` fits `d`; `result` holds the wrapped result.
pub(super) fn no_overflow(d: DType, op: Option<BinaryOp>, x: Expr, y: Option<Expr>, result: Expr) -> Expr {
    use lir::BinaryOp as B;
    let (lo, hi) = d.int_range().expect("integer dtype");
    let signed = d.is_signed_int();
    let ty = Ty::of(d);
    let Some(op) = op else {
        // Unary minus and `abs` overflow only on the most negative value.
        return cmp(CmpOp::Ne, x, int(ty, lo as i64));
    };
    let y = y.expect("binary");
    if op == BinaryOp::Div {
        // Signed division overflows only for MIN / -1 (division by zero is its own error).
        return Expr::Unary(lir::UnaryOp::Not, Box::new(and_all(vec![cmp(CmpOp::Eq, x, int(ty, lo as i64)), cmp(CmpOp::Eq, y, int(ty, -1))])));
    }
    if d.bits() <= 32 {
        let wide = |e: Expr| Expr::Cast { to: Ty::I64, value: Box::new(e), from_unsigned: !signed, to_unsigned: false };
        let (wx, wy) = (wide(x), wide(y));
        if op == BinaryOp::Mul && !signed {
            // x·y ≤ hi ⟺ y = 0 or x ≤ hi / y (the product itself may not fit an i64).
            let safe_y = Expr::Select(Box::new(cmp(CmpOp::Eq, wy.clone(), int(Ty::I64, 0))), Box::new(int(Ty::I64, 1)), Box::new(wy.clone()));
            return Expr::Select(
                Box::new(cmp(CmpOp::Eq, wy, int(Ty::I64, 0))),
                Box::new(int(Ty::I1, 1)),
                Box::new(cmp(CmpOp::Le, wx, bin(B::Div, int(Ty::I64, hi as i64), safe_y))),
            );
        }
        let exact = match op {
            BinaryOp::Add => bin(B::Add, wx, wy),
            BinaryOp::Sub => bin(B::Sub, wx, wy),
            _ => bin(B::Mul, wx, wy),
        };
        return and_all(vec![cmp(CmpOp::Ge, exact.clone(), int(Ty::I64, lo as i64)), cmp(CmpOp::Le, exact, int(Ty::I64, hi as i64))]);
    }
    // 64 bits: from the wrapped result.
    let zero = int(Ty::I64, 0);
    let xor = |a: Expr, b: Expr| bin(B::Xor, a, b);
    match (op, signed) {
        // Signed: overflow iff both operands' signs differ from the result's.
        (BinaryOp::Add, true) => cmp(CmpOp::Ge, bin(B::And, xor(x.clone(), result.clone()), xor(y, result)), zero),
        (BinaryOp::Sub, true) => cmp(CmpOp::Ge, bin(B::And, xor(x.clone(), y), xor(x, result)), zero),
        (BinaryOp::Add, false) => cmp(CmpOp::UGe, result, x),
        (BinaryOp::Sub, false) => cmp(CmpOp::UGe, x, y),
        (_, false) => {
            let y_is_zero = cmp(CmpOp::Eq, y.clone(), zero.clone());
            let safe_y = Expr::Select(Box::new(y_is_zero.clone()), Box::new(int(Ty::I64, 1)), Box::new(y));
            Expr::Select(Box::new(y_is_zero), Box::new(int(Ty::I1, 1)), Box::new(cmp(CmpOp::ULe, x, bin(B::UDiv, int(Ty::I64, -1), safe_y))))
        }
        (_, true) => {
            // x = 0 fits; x = -1 fits unless y = MIN; otherwise the wrapped product divided by
            // x gives y back exactly when nothing was lost.
            let x_is_zero = cmp(CmpOp::Eq, x.clone(), zero);
            let x_is_minus_one = cmp(CmpOp::Eq, x.clone(), int(Ty::I64, -1));
            let safe_x = Expr::Select(
                Box::new(Expr::Binary(B::Or, Box::new(x_is_zero.clone()), Box::new(x_is_minus_one.clone()))),
                Box::new(int(Ty::I64, 1)),
                Box::new(x),
            );
            let divides_back = cmp(CmpOp::Eq, bin(B::Div, result, safe_x), y.clone());
            Expr::Select(
                Box::new(x_is_zero),
                Box::new(int(Ty::I1, 1)),
                Box::new(Expr::Select(Box::new(x_is_minus_one), Box::new(cmp(CmpOp::Ne, y, int(Ty::I64, i64::MIN))), Box::new(divides_back))),
            )
        }
    }
}
