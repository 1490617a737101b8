//! The accurate math functions as LIR sequences: `exp`, `exp2`, `log`, `log2`, `sin`, `cos`,
//! `tanh`, `erf`, `rsqrt`, `sigmoid` and `pow`, each built from IEEE operations only (adds,
//! multiplies and `fma`s rounded once each, correctly rounded division and square root,
//! conversions and bit operations).
//!
//! Expects: an f32, f16, bf16 or f64 register holding the operand. Guarantees: the sequence
//! computes the same bits on the GPU as in the simulator (no hardware approximation and no
//! contraction takes part), so the ulp bounds that `tests/tests/math_accuracy.rs` measures on
//! the simulator are the GPU's. f16 and bf16 compute in f32 and round once more; f64 computes
//! in f32 too (f32 accuracy), except that `sin`/`cos` reduce an f64 argument in f64.
//!
//! The hardware approximations (`approx = true`) are single LIR operations (`lir::UnaryOp::Exp`
//! and its kind), not sequences; `unary_expr` lowers them.
//!
//! Method: the argument is reduced to a small interval by an exact or nearly exact step, a
//! polynomial evaluated with `fma` (Horner) gives the function there, and a reconstruction
//! scales back; special values (NaN, infinities, zeros, huge arguments) are selected at the
//! end. Coefficients are truncated Taylor series (exp, sin, cos, the atanh series of log) or
//! Chebyshev fits of the function made for this file (tanh near 0, erf, log2 of erfc),
//! rounded to f32.

use super::*;

/// The pieces of `ln x` (`Sequence::log_parts`): x = 2^e·(1 + f), ln(1 + f) = f − half_square
/// + tail.
struct LogParts {
    e: Expr,
    f: Expr,
    half_square: Expr,
    tail: Expr,
}

/// Emits the statements of one element's math function; expressions are trees, so a value
/// used twice is first bound to a register.
struct Sequence<'a, 'k> {
    lower: &'a mut Lower<'k>,
    body: &'a mut Vec<lir::Stmt>,
}

fn f32c(v: f64) -> Expr {
    Expr::Float(Ty::F32, v as f32 as f64)
}

fn f64c(v: f64) -> Expr {
    Expr::Float(Ty::F64, v)
}

fn bx(e: Expr) -> Box<Expr> {
    Box::new(e)
}

fn add(a: Expr, b: Expr) -> Expr {
    bin(lir::BinaryOp::Add, a, b)
}

fn sub(a: Expr, b: Expr) -> Expr {
    bin(lir::BinaryOp::Sub, a, b)
}

fn mul(a: Expr, b: Expr) -> Expr {
    bin(lir::BinaryOp::Mul, a, b)
}

fn div(a: Expr, b: Expr) -> Expr {
    bin(lir::BinaryOp::Div, a, b)
}

fn fma(a: Expr, b: Expr, c: Expr) -> Expr {
    Expr::Fma(bx(a), bx(b), bx(c))
}

fn select(c: Expr, a: Expr, b: Expr) -> Expr {
    Expr::Select(bx(c), bx(a), bx(b))
}

fn neg(a: Expr) -> Expr {
    Expr::Unary(lir::UnaryOp::Neg, bx(a))
}

fn abs(a: Expr) -> Expr {
    Expr::Unary(lir::UnaryOp::Abs, bx(a))
}

fn and(a: Expr, b: Expr) -> Expr {
    bin(lir::BinaryOp::And, a, b)
}

fn or(a: Expr, b: Expr) -> Expr {
    bin(lir::BinaryOp::Or, a, b)
}

fn not(a: Expr) -> Expr {
    Expr::Unary(lir::UnaryOp::Not, bx(a))
}

/// Signed conversion (float → integer rounds to nearest even and saturates).
fn convert(to: Ty, e: Expr) -> Expr {
    Expr::Cast { to, value: bx(e), from_unsigned: false, to_unsigned: false }
}

fn bitcast(to: Ty, e: Expr) -> Expr {
    Expr::Bitcast { to, value: bx(e) }
}

/// `c[0]·x^(n−1) + ... + c[n−1]` by Horner's rule with one `fma` a step (`x` is used many
/// times: pass a register).
fn horner(x: &Expr, coefficients: &[f64], constant: fn(f64) -> Expr) -> Expr {
    let mut p = constant(coefficients[0]);
    for &c in &coefficients[1..] {
        p = fma(p, x.clone(), constant(c));
    }
    p
}

/// ln 2 split so that `n · LN2_HI` is exact inside an `fma` and `LN2_HI + LN2_LO` is ln 2 to
/// about 2^-49.
const LN2_HI: f64 = 0.693_147_182_464_599_6;
const LN2_LO: f64 = -1.904_654_212_125_933_6e-9;
/// π/2 as three f64 parts: the first two of 28 significant bits each (so `k · part` is exact
/// for |k| < 2^25 and the first reduction step cancels exactly), the third the rest.
const HALF_PI_1: f64 = 1.570_796_325_802_803;
const HALF_PI_2: f64 = 9.920_935_808_982_456e-10;
const HALF_PI_3: f64 = -1.217_705_177_797_396_6e-18;

/// tanh(x) = x + x³·T(x²) for |x| < 0.55: T fitted on [0, 0.3025] (error 4e-10).
const TANH_SMALL: [f64; 6] = [0.002_526_390_599_086_880_7, -0.008_526_332_676_410_675, 0.021_818_449_720_740_32, -0.053_964_700_549_840_93, 0.133_333_235_979_080_2, -0.333_333_343_267_440_8];
/// erf(x) = x + x·E(x²) for |x| < 0.9: E fitted on [0, 0.81] (error 3e-10), its constant
/// term 2/√π − 1.
const ERF_SMALL: [f64; 7] = [8.529_401_384_294_033e-5, -8.179_632_131_941_617e-4, 5.204_226_821_660_995_5e-3, -0.026_860_665_529_966_354, 0.112_837_180_495_262_15, -0.376_126_348_972_320_56, 0.128_379_166_126_251_22];
/// log2(erfc(x)) on [0.9, 3.95], a polynomial in x fitted there (error 5e-9); past 3.95
/// erfc(x) < 2^-25 and erf rounds to 1.
const LOG2_ERFC: [f64; 11] = [-8.106_035_664_923_184e-8, 1.934_575_266_204_774_4e-6, -1.795_664_138_626_307_2e-5, 5.710_312_689_188_868e-5, 3.797_308_891_080_32e-4, -5.612_499_546_259_642e-3, 0.035_904_306_918_382_645, -0.156_199_946_999_549_87, -0.913_505_554_199_218_8, -1.629_720_091_819_763_2, 2.963_552_833_534_777e-4];

/// `1/k!` for k = `high` down to 0, times `scale^k` (Taylor coefficients of e^(scale·r)).
fn exp_taylor(high: i32, scale: f64) -> Vec<f64> {
    (0..=high).rev().map(|k| scale.powi(k) / (1..=k).map(f64::from).product::<f64>()).collect()
}

impl Sequence<'_, '_> {
    /// `e` in a new register of type `ty`, as an expression.
    fn bind(&mut self, ty: Ty, e: Expr) -> Expr {
        var(self.lower.assign(self.body, ty, e))
    }

    fn bind_f32(&mut self, e: Expr) -> Expr {
        self.bind(Ty::F32, e)
    }

    fn bind_bool(&mut self, e: Expr) -> Expr {
        self.bind(Ty::I1, e)
    }

    /// `p · 2^n` for an i32 `n` in [-160, 130] and `p` in [0.5, 2]: two exact scalings by
    /// powers of two that are normal numbers, so only the last one rounds (into the
    /// subnormals or to infinity).
    fn scale_by_power_of_two(&mut self, p: Expr, n: Expr) -> Expr {
        let half = self.bind(Ty::I32, bin(lir::BinaryOp::AShr, n.clone(), int(Ty::I32, 1)));
        let rest = sub(n, half.clone());
        let power = |k: Expr| bitcast(Ty::F32, bin(lir::BinaryOp::Shl, add(k, int(Ty::I32, 127)), int(Ty::I32, 23)));
        mul(mul(p, power(half)), power(rest))
    }

    /// NaN stays NaN (the clamps of the reductions would lose it).
    fn keep_nan(&mut self, x: &Expr, result: Expr) -> Expr {
        select(cmp(CmpOp::Ne, x.clone(), x.clone()), x.clone(), result)
    }

    /// 2^x = 2^n · 2^r with n = round(x) and r = x − n in [−1/2, 1/2] (exact).
    fn exp2(&mut self, x: &Expr) -> Expr {
        let clamped = self.bind_f32(bin(lir::BinaryOp::Min, bin(lir::BinaryOp::Max, x.clone(), f32c(-160.0)), f32c(130.0)));
        let n = self.bind(Ty::I32, convert(Ty::I32, clamped.clone()));
        let r = self.bind_f32(sub(clamped, convert(Ty::F32, n.clone())));
        let p = self.bind_f32(horner(&r, &exp_taylor(7, std::f64::consts::LN_2), f32c));
        let scaled = self.scale_by_power_of_two(p, n);
        self.keep_nan(x, scaled)
    }

    /// e^x = 2^n · e^r with n = round(x·log2 e) and r = x − n·ln 2 (Cody and Waite: the
    /// first `fma` is exact, the second adds the low part of ln 2).
    fn exp(&mut self, x: &Expr) -> Expr {
        let clamped = self.bind_f32(bin(lir::BinaryOp::Min, bin(lir::BinaryOp::Max, x.clone(), f32c(-104.0)), f32c(89.0)));
        let n = self.bind(Ty::I32, convert(Ty::I32, mul(clamped.clone(), f32c(std::f64::consts::LOG2_E))));
        let nf = self.bind_f32(neg(convert(Ty::F32, n.clone())));
        let r = self.bind_f32(fma(nf.clone(), f32c(LN2_HI), clamped));
        let r = self.bind_f32(fma(nf, f32c(LN2_LO), r));
        let p = self.bind_f32(horner(&r, &exp_taylor(7, 1.0), f32c));
        let scaled = self.scale_by_power_of_two(p, n);
        self.keep_nan(x, scaled)
    }

    /// x = 2^e·m with m in [√½, √2) and f = m − 1 (exact); ln(1 + f) = f − f²/2 + s·(f²/2 + R)
    /// with s = f/(2 + f) and R = 2s²/3 + 2s⁴/5 + ... (the atanh series), so the rounding of
    /// s only touches a small term. Zeros, negatives, infinities and NaN are the caller's.
    fn log_parts(&mut self, x: &Expr) -> LogParts {
        // Subnormals are scaled into the normal range first.
        let subnormal = self.bind_bool(cmp(CmpOp::Lt, x.clone(), f32c(f64::from(f32::MIN_POSITIVE))));
        let scaled = select(subnormal.clone(), mul(x.clone(), f32c(8_388_608.0)), x.clone());
        let bits = self.bind(Ty::I32, bitcast(Ty::I32, scaled));
        let sqrt_half_bits = int(Ty::I32, i64::from(std::f32::consts::FRAC_1_SQRT_2.to_bits()));
        let exponent = self.bind(Ty::I32, bin(lir::BinaryOp::AShr, sub(bits.clone(), sqrt_half_bits), int(Ty::I32, 23)));
        let m = bitcast(Ty::F32, sub(bits, bin(lir::BinaryOp::Shl, exponent.clone(), int(Ty::I32, 23))));
        let e = self.bind_f32(convert(Ty::F32, sub(exponent, select(subnormal, int(Ty::I32, 23), int(Ty::I32, 0)))));
        let f = self.bind_f32(sub(m, f32c(1.0)));
        let s = self.bind_f32(div(f.clone(), add(f32c(2.0), f.clone())));
        let z = self.bind_f32(mul(s.clone(), s.clone()));
        let series = self.bind_f32(mul(z.clone(), horner(&z, &[2.0 / 9.0, 2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0], f32c)));
        let half_square = self.bind_f32(mul(mul(f32c(0.5), f.clone()), f.clone()));
        // The small term s·(f²/2 + R) of ln(1 + f).
        let tail = self.bind_f32(mul(s, add(half_square.clone(), series)));
        LogParts { e, f, half_square, tail }
    }

    /// The special values of log and log2: −inf at ±0, NaN below 0 and for NaN, +inf at +inf.
    fn log_specials(&mut self, x: &Expr, result: Expr) -> Expr {
        let inf = f32c(f64::INFINITY);
        let r = select(cmp(CmpOp::Eq, x.clone(), inf.clone()), inf.clone(), result);
        let r = select(cmp(CmpOp::Eq, x.clone(), f32c(0.0)), neg(inf), r);
        select(cmp(CmpOp::Ge, x.clone(), f32c(0.0)), r, f32c(f64::NAN))
    }

    /// ln x = e·ln 2 + ln(1 + f), the product exact inside the `fma`s.
    fn log(&mut self, x: &Expr) -> Expr {
        let p = self.log_parts(x);
        let log1p = self.bind_f32(sub(p.f, sub(p.half_square, p.tail)));
        let low = fma(p.e.clone(), f32c(LN2_LO), log1p);
        let result = self.bind_f32(fma(p.e, f32c(LN2_HI), low));
        self.log_specials(x, result)
    }

    /// log2 x = e + ln(1 + f)·log2 e. ln(1 + f) is split into hi = f − f²/2 cut to 12
    /// significant bits and the rest lo (exact but for the last roundings), so that hi times
    /// the 12-bit head of log2 e is exact; e + that sum is added with its rounding error kept
    /// (|e| ≥ 1 exceeds the other term, or e is 0), and the small products come last.
    fn log2(&mut self, x: &Expr) -> Expr {
        let p = self.log_parts(x);
        let rounded = bitcast(Ty::I32, sub(p.f.clone(), p.half_square.clone()));
        let hi = self.bind_f32(bitcast(Ty::F32, bin(lir::BinaryOp::And, rounded, int(Ty::I32, 0xffff_f000_u32 as i32 as i64))));
        let lo = self.bind_f32(add(sub(sub(p.f, hi.clone()), p.half_square), p.tail));
        let head = f64::from(f32::from_bits(std::f32::consts::LOG2_E.to_bits() & 0xffff_f000));
        let rest = std::f64::consts::LOG2_E - head;
        let product_hi = self.bind_f32(mul(hi.clone(), f32c(head)));
        let product_lo = fma(add(lo.clone(), hi), f32c(rest), mul(lo, f32c(head)));
        let sum = self.bind_f32(add(p.e.clone(), product_hi.clone()));
        let error = add(sub(p.e, sum.clone()), product_hi);
        let result = self.bind_f32(add(add(product_lo, error), sum));
        self.log_specials(x, result)
    }

    /// x = k·π/2 + r for |x| < 2^25 (and every f64): k = round(x·2/π) and r = x − k·π/2 in
    /// f64, π/2 in three parts, each step an `fma` (the first cancels exactly). Assigns k
    /// mod 4 and r (as f32) to `quadrant` and `r`.
    fn reduce_by_half_pi(&mut self, x: &Expr, x_ty: Ty, quadrant: Var, r: Var) {
        let wide = if x_ty == Ty::F64 { x.clone() } else { convert(Ty::F64, x.clone()) };
        let wide = self.bind(Ty::F64, wide);
        // Rounding by adding 1.5·2^52: the sum's low mantissa bits are k (two's complement).
        let magic = 6_755_399_441_055_744.0;
        let shifted = self.bind(Ty::F64, fma(wide.clone(), f64c(std::f64::consts::FRAC_2_PI), f64c(magic)));
        let minus_k = self.bind(Ty::F64, neg(sub(shifted.clone(), f64c(magic))));
        self.body.push(lir::Stmt::Assign(quadrant, convert(Ty::I32, bin(lir::BinaryOp::And, bitcast(Ty::I64, shifted), Expr::Int(Ty::I64, 3)))));
        let reduced = self.bind(Ty::F64, fma(minus_k.clone(), f64c(HALF_PI_1), wide));
        let reduced = self.bind(Ty::F64, fma(minus_k.clone(), f64c(HALF_PI_2), reduced));
        self.body.push(lir::Stmt::Assign(r, convert(Ty::F32, fma(minus_k, f64c(HALF_PI_3), reduced))));
    }

    /// The same for an f32 |x| ≥ 2^25 (Payne and Hanek): with |x| = M·2^E (M of 24 bits),
    /// |x|·2/π mod 4 in 64-bit fixed point (2 integer bits, 62 fraction bits) as the wrapping
    /// sum of M·P_j·2^(E − 24(j+1)) over the 24-bit chunks P_j of 2/π (those that fall
    /// wholly above the point are multiples of 4; those below 2^-62 vanish), exact but for
    /// a few units of 2^-62 truncated; then k and r = (fraction)·π/2, and the sign of x.
    fn reduce_large_by_half_pi(&mut self, x: &Expr, quadrant: Var, r: Var) {
        const TWO_OVER_PI_CHUNKS: [i64; 8] = [0xa2f983, 0x6e4e44, 0x1529fc, 0x2757d1, 0xf534dd, 0xc0db62, 0x95993c, 0x439041];
        let long = |v: i64| Expr::Int(Ty::I64, v);
        let bits = self.bind(Ty::I32, bitcast(Ty::I32, abs(x.clone())));
        let exponent = self.bind(Ty::I64, convert(Ty::I64, sub(bin(lir::BinaryOp::LShr, bits.clone(), int(Ty::I32, 23)), int(Ty::I32, 150))));
        let mantissa = self.bind(Ty::I64, convert(Ty::I64, bin(lir::BinaryOp::Or, bin(lir::BinaryOp::And, bits, int(Ty::I32, 0x7f_ffff)), int(Ty::I32, 0x80_0000))));
        let mut sum = long(0);
        for (j, chunk) in TWO_OVER_PI_CHUNKS.into_iter().enumerate() {
            let product = self.bind(Ty::I64, mul(mantissa.clone(), long(chunk)));
            let shift = self.bind(Ty::I64, add(exponent.clone(), long(38 - 24 * j as i64)));
            let masked = |amount: Expr| bin(lir::BinaryOp::And, amount, long(63));
            let left = select(cmp(CmpOp::Lt, shift.clone(), long(64)), bin(lir::BinaryOp::Shl, product.clone(), masked(shift.clone())), long(0));
            let right = select(cmp(CmpOp::Gt, shift.clone(), long(-64)), bin(lir::BinaryOp::LShr, product, masked(neg(shift.clone()))), long(0));
            let term = select(cmp(CmpOp::Ge, shift, long(0)), left, right);
            sum = self.bind(Ty::I64, add(sum, term));
        }
        // k = round(sum / 2^62) mod 4; the fraction sum − k·2^62 is in [−2^61, 2^61).
        let k = self.bind(Ty::I64, bin(lir::BinaryOp::LShr, add(sum.clone(), long(1 << 61)), long(62)));
        let fraction = sub(sum, bin(lir::BinaryOp::Shl, k.clone(), long(62)));
        let reduced = self.bind_f32(convert(Ty::F32, mul(convert(Ty::F64, fraction), f64c(std::f64::consts::FRAC_PI_2 / 2f64.powi(62)))));
        let k = self.bind(Ty::I32, convert(Ty::I32, k));
        let negative = self.bind_bool(cmp(CmpOp::Lt, x.clone(), f32c(0.0)));
        self.body.push(lir::Stmt::Assign(quadrant, select(negative.clone(), bin(lir::BinaryOp::And, neg(k.clone()), int(Ty::I32, 3)), k)));
        self.body.push(lir::Stmt::Assign(r, select(negative, neg(reduced.clone()), reduced)));
    }

    /// sin or cos: x = k·π/2 + r with |r| ≤ π/4 (`reduce_by_half_pi`, or for f32 arguments
    /// from 2^25 up `reduce_large_by_half_pi`, under a branch), then sin r or cos r by Taylor
    /// polynomials in f32, chosen and signed by the quadrant k mod 4 (k + 1 for cos).
    fn sin_or_cos(&mut self, x: &Expr, x_ty: Ty, cosine: bool) -> Expr {
        let sine_wanted = !cosine;
        let quadrant = self.lower.new_var(Ty::I32);
        let r = self.lower.new_var(Ty::F32);
        if x_ty == Ty::F32 {
            let large = self.bind_bool(cmp(CmpOp::Ge, abs(x.clone()), f32c(33_554_432.0)));
            let (mut then_body, mut else_body) = (Vec::new(), Vec::new());
            Sequence { lower: &mut *self.lower, body: &mut then_body }.reduce_large_by_half_pi(x, quadrant, r);
            Sequence { lower: &mut *self.lower, body: &mut else_body }.reduce_by_half_pi(x, x_ty, quadrant, r);
            self.body.push(lir::Stmt::If { cond: large, then_body, else_body });
        } else {
            self.reduce_by_half_pi(x, x_ty, quadrant, r);
        }
        let (r, quadrant) = (var(r), var(quadrant));
        let quadrant = if cosine { self.bind(Ty::I32, add(quadrant, int(Ty::I32, 1))) } else { quadrant };
        let z = self.bind_f32(mul(r.clone(), r.clone()));
        // sin r = r + r³·S(r²), cos r = 1 + r²·(−1/2 + r²·C(r²)).
        let factorial = |n: i32| (1..=n).map(f64::from).product::<f64>();
        let sine_terms: Vec<f64> = [9, 7, 5, 3].iter().map(|&n| if n % 4 == 1 { 1.0 } else { -1.0 } / factorial(n)).collect();
        let cosine_terms: Vec<f64> = [10, 8, 6, 4].iter().map(|&n| if n % 4 == 0 { 1.0 } else { -1.0 } / factorial(n)).collect();
        let sine = fma(mul(r.clone(), z.clone()), horner(&z, &sine_terms, f32c), r);
        let cosine = fma(z.clone(), fma(z.clone(), horner(&z, &cosine_terms, f32c), f32c(-0.5)), f32c(1.0));
        let odd = cmp(CmpOp::Ne, bin(lir::BinaryOp::And, quadrant.clone(), int(Ty::I32, 1)), int(Ty::I32, 0));
        let value = self.bind_f32(select(odd, cosine, sine));
        let negative = cmp(CmpOp::Ne, bin(lir::BinaryOp::And, quadrant, int(Ty::I32, 2)), int(Ty::I32, 0));
        let result = select(negative, neg(value.clone()), value);
        // sin ±0 is ±0: r³·S(r²) is +0 for r = -0 (S(0) < 0), which would lose the sign. (An
        // f64 argument too small for f32 gives the zero of its sign.)
        let result = if sine_wanted {
            let narrowed = if x_ty == Ty::F32 { x.clone() } else { convert(Ty::F32, x.clone()) };
            select(cmp(CmpOp::Eq, narrowed.clone(), f32c(0.0)), narrowed, result)
        } else {
            result
        };
        // ±inf gives NaN (NaN already propagates through the reduction).
        let infinite = cmp(CmpOp::Eq, abs(x.clone()), Expr::Float(x_ty, f64::INFINITY));
        select(infinite, f32c(f64::NAN), result)
    }

    /// tanh: x + x³·T(x²) below 0.55, 1 − 2/(e^(2|x|) + 1) with the sign of x above.
    fn tanh(&mut self, x: &Expr) -> Expr {
        let a = self.bind_f32(abs(x.clone()));
        let z = self.bind_f32(mul(x.clone(), x.clone()));
        let small = fma(mul(x.clone(), z.clone()), horner(&z, &TANH_SMALL, f32c), x.clone());
        let twice = self.bind_f32(add(a.clone(), a.clone()));
        let e = self.exp(&twice);
        let large = self.bind_f32(sub(f32c(1.0), div(f32c(2.0), add(e, f32c(1.0)))));
        let signed = select(cmp(CmpOp::Lt, x.clone(), f32c(0.0)), neg(large.clone()), large);
        // A zero is its own tanh: x³·P(x²) is +0 for x = -0 (P(0) < 0), which would lose the sign.
        let small = select(cmp(CmpOp::Eq, x.clone(), f32c(0.0)), x.clone(), small);
        select(cmp(CmpOp::Lt, a, f32c(0.55)), small, signed)
    }

    /// erf: x + x·E(x²) below 0.9, 1 − 2^(P(|x|)) with the sign of x above (P fits log2 erfc).
    fn erf(&mut self, x: &Expr) -> Expr {
        let a = self.bind_f32(abs(x.clone()));
        let z = self.bind_f32(mul(x.clone(), x.clone()));
        let small = fma(x.clone(), horner(&z, &ERF_SMALL, f32c), x.clone());
        let clamped = self.bind_f32(bin(lir::BinaryOp::Min, a.clone(), f32c(3.95)));
        let p = self.bind_f32(horner(&clamped, &LOG2_ERFC, f32c));
        let tail = self.exp2(&p);
        let large = self.bind_f32(sub(f32c(1.0), tail));
        let signed = select(cmp(CmpOp::Lt, x.clone(), f32c(0.0)), neg(large.clone()), large);
        let result = select(cmp(CmpOp::Lt, a, f32c(0.9)), small, signed);
        self.keep_nan(x, result)
    }

    /// log2 |x| in f64 for an f32 `x`, accurate to about 2^-50 relative: the atanh series of
    /// `log_parts` carried to s²⁰, in f64. Zeros, infinities and NaN give −inf, +inf, NaN.
    fn log2_wide(&mut self, x: &Expr) -> Expr {
        let ax = self.bind(Ty::F64, convert(Ty::F64, abs(x.clone())));
        let bits = self.bind(Ty::I64, bitcast(Ty::I64, ax.clone()));
        let sqrt_half_bits = Expr::Int(Ty::I64, std::f64::consts::FRAC_1_SQRT_2.to_bits() as i64);
        let exponent = self.bind(Ty::I64, bin(lir::BinaryOp::AShr, sub(bits.clone(), sqrt_half_bits), Expr::Int(Ty::I64, 52)));
        let m = bitcast(Ty::F64, sub(bits, bin(lir::BinaryOp::Shl, exponent.clone(), Expr::Int(Ty::I64, 52))));
        let f = self.bind(Ty::F64, sub(m, f64c(1.0)));
        let s = self.bind(Ty::F64, div(f.clone(), add(f64c(2.0), f)));
        let z = self.bind(Ty::F64, mul(s.clone(), s.clone()));
        let odd_reciprocals: Vec<f64> = (1..=10).rev().map(|k| 1.0 / f64::from(2 * k + 1)).collect();
        let two_s = self.bind(Ty::F64, add(s.clone(), s));
        let log1p = fma(mul(two_s.clone(), z.clone()), horner(&z, &odd_reciprocals, f64c), two_s);
        let log2 = fma(log1p, f64c(std::f64::consts::LOG2_E), convert(Ty::F64, exponent));
        let inf = f64c(f64::INFINITY);
        let r = select(cmp(CmpOp::Eq, ax.clone(), inf.clone()), inf.clone(), log2);
        let r = select(cmp(CmpOp::Eq, ax.clone(), f64c(0.0)), neg(inf), r);
        let r = select(cmp(CmpOp::Ne, ax.clone(), ax.clone()), ax, r);
        self.bind(Ty::F64, r)
    }

    /// 1/√x: s = √x and y = 1/s, both correctly rounded, then one correction step from the
    /// exact residuals x − s² and 1 − y·s (each exact through an `fma`):
    /// 1/√x ≈ y·(1 + (1 − y·s) − (x − s²)·y²/2).
    fn rsqrt(&mut self, x: &Expr) -> Expr {
        // Tiny arguments (subnormals) are scaled by 2^50 first, which keeps the residuals exact
        // and y² finite; the result scales back by 2^25.
        let tiny = self.bind_bool(cmp(CmpOp::Lt, x.clone(), f32c(2f64.powi(-100))));
        let x = &self.bind_f32(select(tiny.clone(), mul(x.clone(), f32c(2f64.powi(50))), x.clone()));
        let root = self.bind_f32(Expr::Unary(lir::UnaryOp::Sqrt, bx(x.clone())));
        let y = self.bind_f32(div(f32c(1.0), root.clone()));
        let square_residual = fma(neg(root.clone()), root.clone(), x.clone());
        let division_residual = fma(neg(y.clone()), root, f32c(1.0));
        let correction = sub(division_residual, mul(mul(f32c(0.5), square_residual), mul(y.clone(), y.clone())));
        let corrected = fma(y.clone(), correction, y.clone());
        // Zeros, infinities, negatives and NaN: the correctly rounded steps' own result.
        let finite_positive = and(cmp(CmpOp::Gt, x.clone(), f32c(0.0)), cmp(CmpOp::Lt, x.clone(), f32c(f64::INFINITY)));
        let result = self.bind_f32(select(finite_positive, corrected, y));
        select(tiny, mul(result.clone(), f32c(2f64.powi(25))), result)
    }

    /// With e = e^−|x| (which cannot overflow): 1/(1 + e) for x ≥ 0, e/(1 + e) below (down to
    /// the subnormal results); the rounding error c of d = 1 + e (exact: 1 ≥ e) corrects the
    /// quotient q: n/(d + c) ≈ q − q·c/d.
    fn sigmoid(&mut self, x: &Expr) -> Expr {
        let minus = self.bind_f32(neg(abs(x.clone())));
        let e = self.exp(&minus);
        let e = self.bind_f32(e);
        let d = self.bind_f32(add(f32c(1.0), e.clone()));
        let c = add(sub(f32c(1.0), d.clone()), e.clone());
        let numerator = select(cmp(CmpOp::Lt, x.clone(), f32c(0.0)), e, f32c(1.0));
        let q = self.bind_f32(div(numerator, d.clone()));
        fma(neg(q.clone()), div(c, d), q)
    }

    /// Whether the f32 `v` (≥ 0 or NaN) is an integer: every f32 from 2^23 up is one.
    fn is_integer(&mut self, v: &Expr) -> Expr {
        let rounded = convert(Ty::F32, convert(Ty::I32, v.clone()));
        or(cmp(CmpOp::Ge, v.clone(), f32c(8_388_608.0)), cmp(CmpOp::Eq, rounded, v.clone()))
    }

    /// pow(x, y) as C's `pow`: 2^(y·log2|x|) in f64 (log2 to about 2^-50, 2^t by a Taylor
    /// series of degree 13 after an exact reduction), rounded once to f32; then the signs and
    /// special cases of C99 (F.10.4.4).
    fn pow(&mut self, x: &Expr, y: &Expr) -> Expr {
        let log2 = self.log2_wide(x);
        let t = self.bind(Ty::F64, mul(convert(Ty::F64, y.clone()), log2));
        let clamped = self.bind(Ty::F64, bin(lir::BinaryOp::Min, bin(lir::BinaryOp::Max, t.clone(), f64c(-200.0)), f64c(200.0)));
        let n = self.bind(Ty::I64, convert(Ty::I64, clamped.clone()));
        let r = self.bind(Ty::F64, sub(clamped, convert(Ty::F64, n.clone())));
        let p = horner(&r, &exp_taylor(13, std::f64::consts::LN_2), f64c);
        let power = bitcast(Ty::F64, bin(lir::BinaryOp::Shl, add(n, Expr::Int(Ty::I64, 1023)), Expr::Int(Ty::I64, 52)));
        let magnitude = convert(Ty::F32, mul(p, power));
        let magnitude = select(cmp(CmpOp::Ne, t.clone(), t), f32c(f64::NAN), magnitude);
        let magnitude = self.bind_f32(magnitude);
        let ax = self.bind_f32(abs(x.clone()));
        let ay = self.bind_f32(abs(y.clone()));
        let y_integer = self.is_integer(&ay);
        let y_integer = self.bind_bool(y_integer);
        let half = self.bind_f32(mul(ay.clone(), f32c(0.5)));
        let half_integer = self.is_integer(&half);
        let y_odd = self.bind_bool(and(y_integer.clone(), not(half_integer)));
        let sign_bit = cmp(CmpOp::Lt, bitcast(Ty::I32, x.clone()), int(Ty::I32, 0));
        let signed = select(and(sign_bit, y_odd), neg(magnitude.clone()), magnitude);
        let inf = f32c(f64::INFINITY);
        // A finite negative base to a finite non-integer power.
        let finite_x = cmp(CmpOp::Ne, ax.clone(), inf.clone());
        let finite_y = cmp(CmpOp::Ne, ay.clone(), inf.clone());
        let invalid = and(and(cmp(CmpOp::Lt, x.clone(), f32c(0.0)), finite_x), and(not(y_integer), finite_y));
        let result = select(invalid, f32c(f64::NAN), signed);
        // pow(x, ±0) = pow(1, y) = pow(−1, ±inf) = 1, NaN operands included.
        let one = or(
            or(cmp(CmpOp::Eq, y.clone(), f32c(0.0)), cmp(CmpOp::Eq, x.clone(), f32c(1.0))),
            and(cmp(CmpOp::Eq, ax, f32c(1.0)), cmp(CmpOp::Eq, ay, inf)),
        );
        select(one, f32c(1.0), result)
    }
}

/// Whether `op` on a float operand lowers to an accurate sequence of this file.
pub(super) fn has_sequence(op: UnaryOp) -> bool {
    matches!(op, UnaryOp::Exp | UnaryOp::Exp2 | UnaryOp::Log | UnaryOp::Log2 | UnaryOp::Sin | UnaryOp::Cos | UnaryOp::Tanh | UnaryOp::Erf | UnaryOp::Rsqrt | UnaryOp::Sigmoid)
}

impl Lower<'_> {
    /// The accurate `op` (see [`has_sequence`]) of the register `x` of float type `ty`; the
    /// result has type `ty`.
    pub(super) fn math_unary(&mut self, body: &mut Vec<lir::Stmt>, op: UnaryOp, x: Expr, ty: Ty) -> Var {
        let x = match x {
            Expr::Var(v) => v,
            other => self.assign(body, ty, other),
        };
        let mut s = Sequence { lower: self, body };
        // sin and cos reduce an f64 argument in f64; everything else computes in f32.
        let f32_value = if matches!(op, UnaryOp::Sin | UnaryOp::Cos) && ty == Ty::F64 {
            s.sin_or_cos(&var(x), Ty::F64, op == UnaryOp::Cos)
        } else {
            let narrow = if ty == Ty::F32 { var(x) } else { s.bind_f32(convert(Ty::F32, var(x))) };
            match op {
                UnaryOp::Exp => s.exp(&narrow),
                UnaryOp::Exp2 => s.exp2(&narrow),
                UnaryOp::Log => s.log(&narrow),
                UnaryOp::Log2 => s.log2(&narrow),
                UnaryOp::Sin => s.sin_or_cos(&narrow, Ty::F32, false),
                UnaryOp::Cos => s.sin_or_cos(&narrow, Ty::F32, true),
                UnaryOp::Tanh => s.tanh(&narrow),
                UnaryOp::Erf => s.erf(&narrow),
                UnaryOp::Rsqrt => s.rsqrt(&narrow),
                // With e = e^−|x| (which cannot overflow): 1/(1 + e) for x ≥ 0, e/(1 + e) below
                // (down to the subnormal results).
                UnaryOp::Sigmoid => s.sigmoid(&narrow),
                _ => unreachable!("has_sequence"),
            }
        };
        let result = if ty == Ty::F32 { f32_value } else { convert(ty, f32_value) };
        self.assign(body, ty, result)
    }

    /// The accurate `pow(x, y)` of two registers of float type `ty`.
    pub(super) fn math_pow(&mut self, body: &mut Vec<lir::Stmt>, x: Expr, y: Expr, ty: Ty) -> Var {
        let mut s = Sequence { lower: self, body };
        let (x, y) = if ty == Ty::F32 { (x, y) } else { (convert(Ty::F32, x), convert(Ty::F32, y)) };
        let (x, y) = (s.bind_f32(x), s.bind_f32(y));
        let r = s.pow(&x, &y);
        let result = if ty == Ty::F32 { r } else { convert(ty, r) };
        self.assign(body, ty, result)
    }
}
