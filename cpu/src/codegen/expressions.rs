//! Expressions of one thread: registers, constants, arithmetic, comparisons, conversions and
//! loads. Integer, f32 and f64 operations are inline where the machine computes exactly what
//! the simulator defines (the common conversions, shifts and divisions in i64 as the
//! simulator does, float min/max as IEEE `maximumNumber`/`minimumNumber`); 16-bit floats go
//! through f32; the rest calls the helpers, which are the simulator's own operations.

use super::{cl, native_float, native_int, Gen};
use crate::frame_offsets as off;
use crate::helpers;
use crate::{CpuError, FaultKind};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, FuncRef, InstBuilder, MemFlagsData, Value};
use tl_compiler::lir::{BinaryOp, CmpOp, Expr, Ty, UnaryOp};

impl Gen<'_, '_> {
    /// A register value as the i64 of its bits (helpers take and give these).
    pub(super) fn register_bits(&mut self, v: Value, ty: Ty) -> Value {
        match ty {
            Ty::F32 => {
                let i = self.b.ins().bitcast(types::I32, MemFlagsData::new(), v);
                self.b.ins().uextend(types::I64, i)
            }
            Ty::F64 => self.b.ins().bitcast(types::I64, MemFlagsData::new(), v),
            Ty::I64 => v,
            _ => self.b.ins().sextend(types::I64, v),
        }
    }

    pub(super) fn bits_to_register(&mut self, v: Value, ty: Ty) -> Value {
        match ty {
            Ty::F32 => {
                let i = self.b.ins().ireduce(types::I32, v);
                self.b.ins().bitcast(types::F32, MemFlagsData::new(), i)
            }
            Ty::F64 => self.b.ins().bitcast(types::F64, MemFlagsData::new(), v),
            Ty::I64 => v,
            t => self.b.ins().ireduce(cl(t), v),
        }
    }

    pub(super) fn call(&mut self, f: FuncRef, args: &[Value]) -> Value {
        let inst = self.b.ins().call(f, args);
        self.b.inst_results(inst)[0]
    }

    pub(super) fn expr(&mut self, e: &Expr) -> Result<Value, CpuError> {
        let ty = self.p.ty(e);
        Ok(match e {
            Expr::Int(t, v) => match t {
                Ty::F32 => self.b.ins().f32const(*v as f32),
                Ty::F64 => self.b.ins().f64const(*v as f64),
                t => self.b.ins().iconst(cl(*t), if *t == Ty::I1 { *v & 1 } else { *v }),
            },
            Expr::Float(t, v) => match t {
                Ty::F32 => self.b.ins().f32const(*v as f32),
                Ty::F64 => self.b.ins().f64const(*v),
                Ty::F16 => self.b.ins().iconst(types::I16, i64::from(tl_compiler::dtype::DType::F16.encode(*v) as u16 as i16)),
                Ty::BF16 => self.b.ins().iconst(types::I16, i64::from(tl_compiler::dtype::DType::BF16.encode(*v) as u16 as i16)),
                t => self.b.ins().iconst(cl(*t), *v as i64),
            },
            Expr::Var(v) => self.load_register(*v),
            Expr::Param(i) => {
                let bits = self.b.ins().load(types::I64, super::launch_constant(), self.scalars, *i as i32 * 8);
                self.bits_to_register(bits, ty)
            }
            Expr::ThreadIdx => self.thread(),
            Expr::BlockIdx(a) => self.b.ins().load(types::I32, super::launch_constant(), self.frame, off::BLOCK + 4 * i32::from((*a).min(2))),
            Expr::Unary(op, a) => {
                let x = self.expr(a)?;
                self.unary(*op, ty, x)
            }
            Expr::Binary(op, a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                self.binary(*op, self.p.ty(a), x, y)
            }
            Expr::Cmp(op, a, b) => {
                let operand = self.p.ty(a);
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                self.compare(*op, operand, x, y)
            }
            Expr::Select(c, a, b) => {
                let (c, x, y) = (self.expr(c)?, self.expr(a)?, self.expr(b)?);
                self.b.ins().select(c, x, y)
            }
            Expr::Fma(a, b, c) => {
                let (x, y, z) = (self.expr(a)?, self.expr(b)?, self.expr(c)?);
                if native_float(ty) {
                    self.b.ins().fma(x, y, z)
                } else {
                    let (x, y, z) = (self.register_bits(x, ty), self.register_bits(y, ty), self.register_bits(z, ty));
                    let code = self.b.ins().iconst(types::I64, helpers::ty_code(ty));
                    let r = self.call(self.helpers.fma, &[code, x, y, z]);
                    self.bits_to_register(r, ty)
                }
            }
            Expr::Cast { to, value, from_unsigned, to_unsigned } => {
                let from = self.p.ty(value);
                let x = self.expr(value)?;
                // The same register reads the same value (a change of signedness saturates).
                if from == *to && (from.is_float() || from_unsigned == to_unsigned) {
                    x
                } else if let Some(v) = self.native_cast(x, from, *to, *from_unsigned, *to_unsigned) {
                    v
                } else {
                    let bits = self.register_bits(x, from);
                    let (f, t) = (self.b.ins().iconst(types::I64, helpers::ty_code(from)), self.b.ins().iconst(types::I64, helpers::ty_code(*to)));
                    let flags = self.b.ins().iconst(types::I64, i64::from(*from_unsigned) | (i64::from(*to_unsigned) << 1));
                    let r = self.call(self.helpers.cast, &[bits, f, t, flags]);
                    self.bits_to_register(r, *to)
                }
            }
            Expr::Bitcast { to, value } => {
                let from = self.p.ty(value);
                let x = self.expr(value)?;
                if cl(from) == cl(*to) {
                    x
                } else {
                    self.b.ins().bitcast(cl(*to), MemFlagsData::new(), x)
                }
            }
            Expr::LoadGlobal { param, index, ty } => {
                let (at, _) = self.element_address(*param, index)?;
                let v = self.b.ins().load(cl(*ty), MemFlagsData::trusted(), at, 0);
                if *ty == Ty::I1 {
                    // Any non-zero byte reads as true.
                    self.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0)
                } else {
                    v
                }
            }
            Expr::LoadGlobalBits { param, bit_index, bits } => {
                let place = self.global_bits(*param, bit_index, *bits)?;
                self.read_packed(&place, *bits)
            }
            Expr::LoadShared { offset, ty } => {
                let offset = self.expr(offset)?;
                let at = self.shared_address(offset, ty.bytes() as i64, 1);
                let v = self.b.ins().load(cl(*ty), MemFlagsData::trusted(), at, 0);
                if *ty == Ty::I1 { self.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0) } else { v }
            }
            Expr::LoadSharedBits { bit_offset, bits } => {
                let place = self.shared_bits(bit_offset, *bits)?;
                self.read_packed(&place, *bits)
            }
            Expr::Prmt { a, b, selector } => {
                let (x, y, s) = (self.expr(a)?, self.expr(b)?, self.expr(selector)?);
                let (x, y, s) = (self.register_bits(x, Ty::I32), self.register_bits(y, Ty::I32), self.register_bits(s, Ty::I32));
                let r = self.call(self.helpers.prmt, &[x, y, s]);
                self.b.ins().ireduce(types::I32, r)
            }
            Expr::Lop3 { a, b, c, lut } => {
                let (x, y, z) = (self.expr(a)?, self.expr(b)?, self.expr(c)?);
                let (x, y, z) = (self.register_bits(x, Ty::I32), self.register_bits(y, Ty::I32), self.register_bits(z, Ty::I32));
                let l = self.b.ins().iconst(types::I64, i64::from(*lut));
                let r = self.call(self.helpers.lop3, &[x, y, z, l]);
                self.b.ins().ireduce(types::I32, r)
            }
        })
    }

    /// The conversions `Expr::Cast` defines, inline where the machine has them with the same
    /// rounding (`None`: the helper does it): integers widen by extension and narrow by
    /// saturation; integer → float and f64 → f32 round to nearest even once; float → integer
    /// rounds to nearest even and saturates, NaN → 0; anything → i1 is `!= 0`.
    fn native_cast(&mut self, x: Value, from: Ty, to: Ty, from_unsigned: bool, to_unsigned: bool) -> Option<Value> {
        // 16-bit floats: through f32 (exact widening; one rounding narrowing from f32 or f64).
        let half = |t: Ty| matches!(t, Ty::F16 | Ty::BF16);
        if half(from) && (native_float(to) || native_int(to) || half(to)) {
            let wide = self.widen16(x, from);
            return if to == Ty::F32 {
                Some(wide)
            } else if half(to) {
                Some(self.narrow16(wide, Ty::F32, to))
            } else if to == Ty::F64 {
                Some(self.b.ins().fpromote(types::F64, wide))
            } else {
                self.native_cast(wide, Ty::F32, to, false, to_unsigned)
            };
        }
        if native_float(from) && half(to) {
            return Some(self.narrow16(x, from, to));
        }
        let ins = self.b.ins();
        if to == Ty::I1 {
            return if native_int(from) {
                Some(ins.icmp_imm_s(IntCC::NotEqual, x, 0))
            } else if native_float(from) {
                let zero = if from == Ty::F32 { ins.f32const(0.0) } else { self.b.ins().f64const(0.0) };
                Some(self.b.ins().fcmp(FloatCC::NotEqual, x, zero))
            } else {
                None
            };
        }
        match (native_int(from) || from == Ty::I1, native_int(to), native_float(from), native_float(to)) {
            // Integer to integer.
            (true, true, _, _) => {
                // Exact in i64 (an i1 is 0 or 1; an unsigned source zero-extended).
                let wide = match from {
                    Ty::I64 => x,
                    _ if from_unsigned || from == Ty::I1 => self.b.ins().uextend(types::I64, x),
                    _ => self.b.ins().sextend(types::I64, x),
                };
                if from == Ty::I64 && to == Ty::I64 {
                    // Between the signed and unsigned readings: a negative i64 is 0 as a u64,
                    // a u64 from 2^63 up is i64::MAX.
                    return Some(match (from_unsigned, to_unsigned) {
                        (false, true) => {
                            let zero = self.b.ins().iconst(types::I64, 0);
                            self.b.ins().smax(wide, zero)
                        }
                        (true, false) => {
                            let negative = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, wide, 0);
                            let max = self.b.ins().iconst(types::I64, i64::MAX);
                            self.b.ins().select(negative, max, wide)
                        }
                        _ => wide,
                    });
                }
                let bits = to.bytes() as u32 * 8;
                let (lo, hi) = if to_unsigned { (0i64, if bits == 64 { i64::MAX } else { (1i64 << bits) - 1 }) } else { (if bits == 64 { i64::MIN } else { -(1i64 << (bits - 1)) }, if bits == 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 }) };
                // A source whose every value fits the target (a widening): no clamp.
                if from != Ty::I64 {
                    let source_bits = if from == Ty::I1 { 1 } else { from.bytes() as u32 * 8 };
                    let (source_lo, source_hi) = if from_unsigned || from == Ty::I1 { (0, (1i64 << source_bits) - 1) } else { (-(1i64 << (source_bits - 1)), (1i64 << (source_bits - 1)) - 1) };
                    if lo <= source_lo && source_hi <= hi {
                        return Some(if to == Ty::I64 { wide } else { self.b.ins().ireduce(cl(to), wide) });
                    }
                }
                // An unsigned 64-bit source from 2^63 up is beyond every target: the maximum.
                let huge = if from == Ty::I64 && from_unsigned { Some(self.b.ins().icmp_imm_s(IntCC::SignedLessThan, wide, 0)) } else { None };
                let (lo_v, hi_v) = (self.b.ins().iconst(types::I64, lo), self.b.ins().iconst(types::I64, hi));
                let clamped = self.b.ins().smax(wide, lo_v);
                let clamped = self.b.ins().smin(clamped, hi_v);
                let clamped = match huge {
                    Some(h) => self.b.ins().select(h, hi_v, clamped),
                    None => clamped,
                };
                Some(if to == Ty::I64 { clamped } else { self.b.ins().ireduce(cl(to), clamped) })
            }
            // Integer to f32/f64: one rounding from the exact value.
            (true, false, _, true) => {
                let wide = match from {
                    Ty::I64 | Ty::I32 => x,
                    _ if from_unsigned || from == Ty::I1 => self.b.ins().uextend(types::I32, x),
                    _ => self.b.ins().sextend(types::I32, x),
                };
                Some(if from_unsigned && from != Ty::I1 { self.b.ins().fcvt_from_uint(cl(to), wide) } else { self.b.ins().fcvt_from_sint(cl(to), wide) })
            }
            // Between f32 and f64.
            (_, _, true, true) => Some(if to == Ty::F64 { self.b.ins().fpromote(types::F64, x) } else { self.b.ins().fdemote(types::F32, x) }),
            // Float to integer: nearest even, then saturation (NaN → 0).
            (_, true, true, _) => {
                let rounded = self.b.ins().nearest(x);
                let wide = if to_unsigned { self.b.ins().fcvt_to_uint_sat(types::I64, rounded) } else { self.b.ins().fcvt_to_sint_sat(types::I64, rounded) };
                if to == Ty::I64 {
                    return Some(wide);
                }
                let bits = to.bytes() as u32 * 8;
                let (lo, hi) = if to_unsigned { (0i64, (1i64 << bits) - 1) } else { (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1) };
                let (lo_v, hi_v) = (self.b.ins().iconst(types::I64, lo), self.b.ins().iconst(types::I64, hi));
                let clamped = if to_unsigned {
                    self.b.ins().umin(wide, hi_v)
                } else {
                    let above = self.b.ins().smax(wide, lo_v);
                    self.b.ins().smin(above, hi_v)
                };
                Some(self.b.ins().ireduce(cl(to), clamped))
            }
            _ => None,
        }
    }

    /// Integer division and remainder (signed or not) and shifts on an integer register,
    /// computed in i64 as the simulator does (`None`: not one of them).
    fn native_integer_binary(&mut self, op: BinaryOp, ty: Ty, x: Value, y: Value) -> Option<Value> {
        use BinaryOp as B;
        if !native_int(ty) || !matches!(op, B::Div | B::Rem | B::UDiv | B::URem | B::Shl | B::LShr | B::AShr) {
            return None;
        }
        let signed = |g: &mut Self, v: Value| if ty == Ty::I64 { v } else { g.b.ins().sextend(types::I64, v) };
        let unsigned = |g: &mut Self, v: Value| if ty == Ty::I64 { v } else { g.b.ins().uextend(types::I64, v) };
        let result = match op {
            B::Shl | B::LShr | B::AShr => {
                let amount = unsigned(self, y);
                let amount = self.b.ins().band_imm_s(amount, 63);
                match op {
                    B::Shl => {
                        let v = signed(self, x);
                        self.b.ins().ishl(v, amount)
                    }
                    B::LShr => {
                        let v = unsigned(self, x);
                        self.b.ins().ushr(v, amount)
                    }
                    _ => {
                        let v = signed(self, x);
                        self.b.ins().sshr(v, amount)
                    }
                }
            }
            _ => {
                let is_unsigned = matches!(op, B::UDiv | B::URem);
                let (a, d) = if is_unsigned { (unsigned(self, x), unsigned(self, y)) } else { (signed(self, x), signed(self, y)) };
                let nonzero = self.b.ins().icmp_imm_s(IntCC::NotEqual, d, 0);
                let zero = self.b.ins().iconst(types::I64, 0);
                self.guard(nonzero, FaultKind::DivisionByZero, -1, zero, -1);
                match op {
                    B::UDiv => self.b.ins().udiv(a, d),
                    B::URem => self.b.ins().urem(a, d),
                    _ => {
                        // x / -1 wraps (i64::MIN / -1 is i64::MIN): no division there.
                        let minus_one = self.b.ins().icmp_imm_s(IntCC::Equal, d, -1);
                        let one = self.b.ins().iconst(types::I64, 1);
                        let safe = self.b.ins().select(minus_one, one, d);
                        if op == B::Div {
                            let q = self.b.ins().sdiv(a, safe);
                            let negated = self.b.ins().ineg(a);
                            self.b.ins().select(minus_one, negated, q)
                        } else {
                            let r = self.b.ins().srem(a, safe);
                            self.b.ins().select(minus_one, zero, r)
                        }
                    }
                }
            }
        };
        Some(if ty == Ty::I64 { result } else { self.b.ins().ireduce(cl(ty), result) })
    }

    fn unary(&mut self, op: UnaryOp, ty: Ty, x: Value) -> Value {
        match (op, ty) {
            (UnaryOp::Neg, Ty::F16 | Ty::BF16) => self.b.ins().bxor_imm_s(x, -0x8000),
            (UnaryOp::Abs, Ty::F16 | Ty::BF16) => self.b.ins().band_imm_s(x, 0x7fff),
            (UnaryOp::Neg, t) if native_int(t) => self.b.ins().ineg(x),
            (UnaryOp::Abs, t) if native_int(t) => self.b.ins().iabs(x),
            (UnaryOp::Not, t) if native_int(t) => self.b.ins().bnot(x),
            (UnaryOp::Not, Ty::I1) => self.b.ins().bxor_imm_s(x, 1),
            (UnaryOp::Neg, t) if native_float(t) => self.b.ins().fneg(x),
            (UnaryOp::Abs, t) if native_float(t) => self.b.ins().fabs(x),
            (UnaryOp::Sqrt, t) if native_float(t) => self.b.ins().sqrt(x),
            // 16-bit floats: the square root in f32 (rounded twice to the same result, see
            // `binary`), the approximation math from a table of the simulator's results.
            (UnaryOp::Sqrt, Ty::F16 | Ty::BF16) => {
                let wide = self.widen16(x, ty);
                let r = self.b.ins().sqrt(wide);
                self.narrow16(r, Ty::F32, ty)
            }
            (UnaryOp::Exp | UnaryOp::Exp2 | UnaryOp::Log | UnaryOp::Log2 | UnaryOp::Rsqrt | UnaryOp::Tanh | UnaryOp::Sin | UnaryOp::Cos, Ty::F16 | Ty::BF16) => {
                // A table of the simulator's results for all 65536 operands.
                let table = self.table(&format!("tl_table_{op:?}_{ty}"), || helpers::sixteen_bit_table(op, ty).iter().flat_map(|v| v.to_ne_bytes()).collect());
                let index = self.b.ins().uextend(types::I64, x);
                let offset = self.b.ins().ishl_imm_s(index, 1);
                let at = self.b.ins().iadd(offset, table);
                self.b.ins().load(types::I16, MemFlagsData::trusted(), at, 0)
            }
            // The approximation math: the exact function in f64 (`UnaryOp::float_f64`), rounded
            // once to f32; `rsqrt` inline (1 / sqrt in f64), the others by a call.
            (UnaryOp::Exp | UnaryOp::Exp2, Ty::F32) => self.exponential_f32(op, x),
            (UnaryOp::Exp | UnaryOp::Exp2 | UnaryOp::Log | UnaryOp::Log2 | UnaryOp::Rsqrt | UnaryOp::Tanh | UnaryOp::Sin | UnaryOp::Cos, t) if native_float(t) => {
                let wide = if t == Ty::F32 { self.b.ins().fpromote(types::F64, x) } else { x };
                let r = if op == UnaryOp::Rsqrt {
                    let root = self.b.ins().sqrt(wide);
                    let one = self.b.ins().f64const(1.0);
                    self.b.ins().fdiv(one, root)
                } else {
                    let f = self.helpers.math[helpers::unary_code(op) as usize];
                    self.call(f, &[wide])
                };
                if t == Ty::F32 { self.b.ins().fdemote(types::F32, r) } else { r }
            }
            _ => {
                let bits = self.register_bits(x, ty);
                let (o, t) = (self.b.ins().iconst(types::I64, helpers::unary_code(op)), self.b.ins().iconst(types::I64, helpers::ty_code(ty)));
                let r = self.call(self.helpers.unary, &[o, t, bits]);
                self.bits_to_register(r, ty)
            }
        }
    }

    fn binary(&mut self, op: BinaryOp, ty: Ty, x: Value, y: Value) -> Value {
        use BinaryOp as B;
        let ins = self.b.ins();
        if native_int(ty) || ty == Ty::I1 {
            match op {
                B::Add if ty != Ty::I1 => return ins.iadd(x, y),
                B::Sub if ty != Ty::I1 => return ins.isub(x, y),
                B::Mul if ty != Ty::I1 => return ins.imul(x, y),
                B::And => return ins.band(x, y),
                B::Or => return ins.bor(x, y),
                B::Xor => return ins.bxor(x, y),
                B::Min if ty != Ty::I1 => return ins.smin(x, y),
                B::Max if ty != Ty::I1 => return ins.smax(x, y),
                B::UMin if ty != Ty::I1 => return ins.umin(x, y),
                B::UMax if ty != Ty::I1 => return ins.umax(x, y),
                _ => {}
            }
        } else if native_float(ty) {
            match op {
                B::Add => return ins.fadd(x, y),
                B::Sub => return ins.fsub(x, y),
                B::Mul => return ins.fmul(x, y),
                B::Div => return ins.fdiv(x, y),
                B::Min | B::Max => return self.min_max_number(op == B::Max, x, y),
                _ => {}
            }
        }
        if let Some(v) = self.native_integer_binary(op, ty, x, y) {
            return v;
        }
        // 16-bit floats: in f32, rounded once more (the same result, see `helpers`).
        if matches!(ty, Ty::F16 | Ty::BF16) && matches!(op, B::Add | B::Sub | B::Mul | B::Div | B::Min | B::Max) {
            let (a, b) = (self.widen16(x, ty), self.widen16(y, ty));
            let r = self.binary(op, Ty::F32, a, b);
            return self.narrow16(r, Ty::F32, ty);
        }
        let (xb, yb) = (self.register_bits(x, ty), self.register_bits(y, ty));
        let (o, t) = (self.b.ins().iconst(types::I64, helpers::binary_code(op)), self.b.ins().iconst(types::I64, helpers::ty_code(ty)));
        let failed = self.b.ins().iadd_imm_s(self.frame, i64::from(off::FAILED));
        let r = self.call(self.helpers.binary, &[o, t, xb, yb, failed]);
        if matches!(op, B::Div | B::Rem | B::UDiv | B::URem) && !ty.is_float() {
            let flag = self.b.ins().load(types::I64, MemFlagsData::trusted(), self.frame, off::FAILED);
            let ok = self.b.ins().icmp_imm_s(IntCC::Equal, flag, 0);
            let zero = self.b.ins().iconst(types::I64, 0);
            self.guard(ok, FaultKind::DivisionByZero, -1, zero, -1);
        }
        self.bits_to_register(r, ty)
    }

    /// IEEE 754-2019 `maximumNumber`/`minimumNumber` (the simulator's): a NaN operand gives
    /// the other one, and +0 is above −0. Cranelift's `fmax`/`fmin` order the zeros the same
    /// way and give NaN for a NaN operand; their x86 code branches only on equal or unordered
    /// operands (rare, so predicted), where a select on `x > y` would branch on the data.
    fn min_max_number(&mut self, max: bool, x: Value, y: Value) -> Value {
        let both = if max { self.b.ins().fmax(x, y) } else { self.b.ins().fmin(x, y) };
        let x_nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
        let pick = self.b.ins().select(x_nan, y, both);
        let y_nan = self.b.ins().fcmp(FloatCC::Unordered, y, y);
        self.b.ins().select(y_nan, x, pick)
    }

    fn compare(&mut self, op: CmpOp, ty: Ty, x: Value, y: Value) -> Value {
        if native_int(ty) {
            let cc = match op {
                CmpOp::Lt => IntCC::SignedLessThan,
                CmpOp::Le => IntCC::SignedLessThanOrEqual,
                CmpOp::Gt => IntCC::SignedGreaterThan,
                CmpOp::Ge => IntCC::SignedGreaterThanOrEqual,
                CmpOp::Eq => IntCC::Equal,
                CmpOp::Ne => IntCC::NotEqual,
                CmpOp::ULt => IntCC::UnsignedLessThan,
                CmpOp::ULe => IntCC::UnsignedLessThanOrEqual,
                CmpOp::UGt => IntCC::UnsignedGreaterThan,
                CmpOp::UGe => IntCC::UnsignedGreaterThanOrEqual,
            };
            return self.b.ins().icmp(cc, x, y);
        }
        if matches!(ty, Ty::F16 | Ty::BF16) && !matches!(op, CmpOp::ULt | CmpOp::ULe | CmpOp::UGt | CmpOp::UGe) {
            let (a, b) = (self.widen16(x, ty), self.widen16(y, ty));
            return self.compare(op, Ty::F32, a, b);
        }
        if native_float(ty) && !matches!(op, CmpOp::ULt | CmpOp::ULe | CmpOp::UGt | CmpOp::UGe) {
            let cc = match op {
                CmpOp::Lt => FloatCC::LessThan,
                CmpOp::Le => FloatCC::LessThanOrEqual,
                CmpOp::Gt => FloatCC::GreaterThan,
                CmpOp::Ge => FloatCC::GreaterThanOrEqual,
                CmpOp::Eq => FloatCC::Equal,
                _ => FloatCC::NotEqual,
            };
            return self.b.ins().fcmp(cc, x, y);
        }
        let (xb, yb) = (self.register_bits(x, ty), self.register_bits(y, ty));
        let (o, t) = (self.b.ins().iconst(types::I64, helpers::cmp_code(op)), self.b.ins().iconst(types::I64, helpers::ty_code(ty)));
        let r = self.call(self.helpers.compare, &[o, t, xb, yb]);
        self.b.ins().ireduce(types::I8, r)
    }
}
