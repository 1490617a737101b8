//! Conversions between dtypes: the cast semantics of docs/language.md §7 on registers, the
//! fast dequantizing casts to f16/bf16 (`lower_numerics`), and the codes of low-precision
//! values held in their containers.

use super::*;

impl Lower<'_> {
    /// The code of a register of `dtype` as an i32 (bits above the width are zero).
    pub(super) fn code_of_register(&mut self, body: &mut Vec<lir::Stmt>, register: Expr, dtype: DType) -> Var {
        use crate::lower_numerics::container_to_code;
        let e = match Ty::of(dtype) {
            Ty::I8 => container_to_code(register, dtype),
            Ty::I16 | Ty::F16 | Ty::BF16 => {
                let raw = if Ty::of(dtype) == Ty::I16 { register } else { Expr::Bitcast { to: Ty::I16, value: Box::new(register) } };
                Expr::Cast { to: Ty::I32, value: Box::new(raw), from_unsigned: true, to_unsigned: false }
            }
            Ty::F32 => Expr::Bitcast { to: Ty::I32, value: Box::new(register) },
            _ => register,
        };
        self.assign(body, Ty::I32, e)
    }

    /// A register of `dtype` holding `code` (an i32 variable with the code in its low bits and
    /// zeros above).
    pub(super) fn register_of_code(&mut self, body: &mut Vec<lir::Stmt>, code: Var, dtype: DType) -> Var {
        use crate::lower_numerics::{narrow_code, sign_extend};
        let register = match Ty::of(dtype) {
            Ty::I8 if dtype.is_signed_int() => {
                let extended = sign_extend(var(code), dtype.bits());
                Expr::Cast { to: Ty::I8, value: Box::new(extended), from_unsigned: false, to_unsigned: false }
            }
            Ty::I8 => narrow_code(var(code), Ty::I8),
            Ty::I16 => narrow_code(var(code), Ty::I16),
            Ty::F16 | Ty::BF16 => Expr::Bitcast { to: Ty::of(dtype), value: Box::new(narrow_code(var(code), Ty::I16)) },
            Ty::F32 => Expr::Bitcast { to: Ty::F32, value: Box::new(var(code)) },
            _ => var(code),
        };
        self.assign(body, Ty::of(dtype), register)
    }

    /// Converts `e` (a register of `from`) to `to` with the cast semantics, through
    /// statements; returns the register holding the result. Handles low-precision formats:
    /// floats decode to f32 and encode from f32, integers below 8 bits widen to i32 and
    /// saturate back.
    pub(super) fn cast_into(&mut self, body: &mut Vec<lir::Stmt>, e: Expr, from: DType, to: DType) -> Var {
        use crate::lower_numerics::{code_to_container, container_to_code, decode_float, encode_float};
        if from == to {
            return self.assign(body, Ty::of(to), e);
        }
        if crate::lower_numerics::fast_half_cast(from, to).is_some() {
            let r = self.assign(body, Ty::of(from), e);
            let out = self.cast_to_half_fast(body, &[r], from, to).expect("fast_half_cast applies");
            return out[0];
        }
        // Widen the source to a standard dtype.
        let (wide, wide_dtype) = match from.float_format() {
            Some(f) if from.is_low_precision() => {
                let code = self.assign(body, Ty::I32, container_to_code(e, from));
                (self.assign(body, Ty::F32, decode_float(var(code), f)), DType::F32)
            }
            _ if from.is_low_precision() => {
                let widened = Expr::Cast { to: Ty::I32, value: Box::new(e), from_unsigned: false, to_unsigned: false };
                (self.assign(body, Ty::I32, widened), DType::I32)
            }
            _ => (self.assign(body, Ty::of(from), e), from),
        };
        if !to.is_low_precision() {
            let converted = self.cast_expr(var(wide), wide_dtype, to);
            return self.assign(body, Ty::of(to), converted);
        }
        match to.float_format() {
            Some(f) => {
                let x = self.to_f32_for_encoding(body, wide, wide_dtype);
                let code = self.assign(body, Ty::I32, encode_float(var(x), f));
                self.assign(body, Ty::I8, code_to_container(var(code)))
            }
            None => {
                let as_i32 = self.cast_expr(var(wide), wide_dtype, DType::I32);
                let (lo, hi) = to.int_range().expect("integer");
                let clamped = bin(
                    lir::BinaryOp::Min,
                    bin(lir::BinaryOp::Max, as_i32, int(Ty::I32, lo as i64)),
                    int(Ty::I32, hi as i64),
                );
                let narrowed = Expr::Cast { to: Ty::I8, value: Box::new(clamped), from_unsigned: false, to_unsigned: false };
                self.assign(body, Ty::I8, narrowed)
            }
        }
    }

    /// Fast dequantizing casts to f16 or bf16 (`regs` are i8 containers of `from`): integers
    /// of at most 8 bits with the magic-number trick, floats of at most 8 bits by placing
    /// their bits under the destination's fields, special codes (infinity, NaN) replaced after
    /// ([`crate::lower_numerics::FastHalfCast`]). Consecutive registers are taken in pairs:
    /// one `prmt` packs both containers into bytes 0 and 2 of an i32, one `lop3` builds both
    /// 16-bit patterns, and each half is reinterpreted as f16/bf16 and corrected by one exact
    /// subtraction or multiplication (none when the scale is 1). A last, unpaired register takes the same steps alone
    /// (without the `prmt`). Returns the result registers in the order of `regs`,
    /// bit-identical to the generic conversion (every source value is exact in the
    /// destination); `None`, with nothing emitted, for the pairs without an exact plan (see
    /// `fast_half_cast`), which take the generic path.
    pub(super) fn cast_to_half_fast(&mut self, body: &mut Vec<lir::Stmt>, regs: &[Var], from: DType, to: DType) -> Option<Vec<Var>> {
        self.cast_to_half_fast_packed(body, regs, &adjacent_pairs(regs.len()), from, to).map(|cast| cast.regs)
    }

    /// [`Self::cast_to_half_fast`], and also the results as packed pairs (`packed.rs`) when
    /// `pairing` covers the registers (every register once) and the plan has a packed form,
    /// with the pairs before their last correction where the plan ends in one.
    pub(super) fn cast_to_half_fast_packed(&mut self, body: &mut Vec<lir::Stmt>, regs: &[Var], pairing: &[(usize, usize)], from: DType, to: DType) -> Option<FastCast> {
        use crate::lower_numerics::{fast_half_cast, pack_pair, widen_container};
        if let Some(cast) = self.cast_bytes_to_bf16(body, regs, pairing, from, to) {
            return Some(cast);
        }
        let plan = fast_half_cast(from, to)?;
        let ty = Ty::of(to);
        let covered = !regs.is_empty() && pairing.len() * 2 == regs.len();
        if covered && let Some(cast) = self.cast_codes_in_words(body, regs, pairing, from, to) {
            return Some(cast);
        }
        // Whole pairs and no special codes: both halves of each pair in one packed operation,
        // the scalar registers its halves.
        let in_pairs = covered && plan.packs(ty);
        if in_pairs {
            let (mut pairs, mut raw) = (Vec::with_capacity(pairing.len()), Vec::with_capacity(pairing.len()));
            for &(low, high) in pairing {
                let packed = self.assign(body, Ty::I32, pack_pair(var(regs[low]), var(regs[high])));
                let (pair, raw_pair) = self.fast_pair(&plan, plan.patterns(var(packed)), packed, ty, body);
                pairs.push(pair);
                raw.push(raw_pair);
            }
            let halves = self.halves_of(&pairs, pairing, body);
            return Some(FastCast { regs: halves, pairs: Some(pairs), raw: raw.into_iter().collect::<Option<_>>().map(RawPairs::Halves) });
        }
        let mut out = Vec::with_capacity(regs.len());
        for pair in regs.chunks(2) {
            let packed = match pair {
                [low, high] => pack_pair(var(*low), var(*high)),
                [single] => widen_container(var(*single)),
                _ => unreachable!("chunks of one or two"),
            };
            let packed = self.assign(body, Ty::I32, packed);
            let patterns = self.assign(body, Ty::I32, plan.patterns(var(packed)));
            for high in [false, true].into_iter().take(pair.len()) {
                let mut value = self.assign(body, ty, plan.half(var(patterns), high, ty));
                if let Some(fixed) = plan.fix_specials(var(value), var(packed), high, ty) {
                    value = self.assign(body, ty, fixed);
                }
                out.push(value);
            }
        }
        Some(FastCast { regs: out, pairs: None, raw: None })
    }

    /// 8-bit integers to bf16, whose 8 significand bits hold them but leave no room for a
    /// 16-bit magic number: through f32's, `2^23 + u` being the f32 pattern `0x4B000000 | u`.
    /// One `prmt` per code builds it, taking the code's byte from its word (`code_sources`)
    /// or its container and the other three bytes from the magic constant; signed codes are
    /// biased to unsigned by flipping their top bits first (once per word). One exact f32
    /// subtraction gives the value, and the conversion to bf16 is exact too; the pairs are
    /// packed for the packed arithmetic that follows, and the f32 patterns recorded, so that
    /// an integer zero point joins the subtraction (`packed.rs`). `None`, with nothing
    /// emitted, for other casts and when `pairing` does not cover the registers.
    fn cast_bytes_to_bf16(&mut self, body: &mut Vec<lir::Stmt>, regs: &[Var], pairing: &[(usize, usize)], from: DType, to: DType) -> Option<FastCast> {
        if to != DType::BF16 || !from.is_int() || from.bits() != 8 || regs.is_empty() || pairing.len() * 2 != regs.len() {
            return None;
        }
        const MAGIC: i64 = 0x4B00_0000;
        let signed = from.is_signed_int();
        let offset = 8_388_608.0 + if signed { 128.0 } else { 0.0 };
        // Each word (or container) once, its top bits flipped for signed codes.
        let mut flipped: HashMap<Var, Var> = HashMap::new();
        let mut biased = |s: &mut Self, body: &mut Vec<lir::Stmt>, word: Var| -> Var {
            if !signed {
                return word;
            }
            *flipped.entry(word).or_insert_with(|| s.assign(body, Ty::I32, bin(lir::BinaryOp::Xor, var(word), int(Ty::I32, 0x8080_8080u32 as i32 as i64))))
        };
        let (mut values, mut patterns) = (Vec::with_capacity(regs.len()), Vec::with_capacity(regs.len()));
        for r in regs {
            // The code's byte in its word (8-bit codes start their bytes), or its container.
            let (word, byte) = match self.code_sources.get(r) {
                Some(&source) => {
                    let (word, bit) = self.code_word(source);
                    (word, (bit / 8) as i64)
                }
                None => (self.assign(body, Ty::I32, crate::lower_numerics::widen_container(var(*r))), 0),
            };
            let word = biased(self, body, word);
            // Byte 0 from the code's byte, bytes 1..3 from the magic constant (source bytes 5..7).
            let selector = byte | 0x7650;
            let pattern = self.assign(body, Ty::I32, Expr::Prmt { a: Box::new(var(word)), b: Box::new(int(Ty::I32, MAGIC)), selector: Box::new(int(Ty::I32, selector)) });
            patterns.push(pattern);
            values.push(self.bf16_of_f32_pattern(pattern, Expr::Float(Ty::F32, offset), body));
        }
        let pairs: Vec<Var> = pairing.iter().map(|&(low, high)| self.pack_halves(values[low], values[high], Ty::BF16, body)).collect();
        let patterns = pairing.iter().map(|&(low, high)| [patterns[low], patterns[high]]).collect();
        Some(FastCast { regs: values, pairs: Some(pairs), raw: Some(RawPairs::F32 { patterns, offset }) })
    }

    /// `f32(pattern) − subtrahend` (an exact f32 subtraction for the 8-bit integer patterns of
    /// [`Self::cast_bytes_to_bf16`]), rounded to bf16.
    pub(super) fn bf16_of_f32_pattern(&mut self, pattern: Var, subtrahend: Expr, body: &mut Vec<lir::Stmt>) -> Var {
        let float = Expr::Bitcast { to: Ty::F32, value: Box::new(var(pattern)) };
        let value = self.assign(body, Ty::F32, bin(lir::BinaryOp::Sub, float, subtrahend));
        self.assign(body, Ty::BF16, self.cast_expr(var(value), DType::F32, DType::BF16))
    }

    /// The fast cast of codes straight from the words they were loaded in (`code_sources`),
    /// pair by pair, without unpacking them first:
    /// * where the pair's two codes lie about 16 bits apart in a run of words (the fragment
    ///   order of `qmatmul_fragment` puts them `PW · bits` bits apart, `PW` the power of two
    ///   nearest `16 / bits`), one 32-bit window of the run (the word itself, shifted, or two
    ///   words funnel-shifted) holds each code inside its 16-bit half: for integers, `r` bits
    ///   up in each half (the low and the high code may differ), where one `lop3` builds both
    ///   patterns (`raw_code_magic`); for floats, exactly 16 bits apart, the windows that start
    ///   `field_shift` and `sign_shift` bits below the low code already hold each code's fields
    ///   and sign bit where the placement (`FloatPlacement::patterns_of`) puts them, its masks
    ///   dropping the rest; floats whose codes cannot sit 16 bits apart (3, 5, 6 and 7 bits)
    ///   take each half's fields from a window of its own, joined by one `prmt`, the sign bit
    ///   from just above the fields; bytes that are the top bytes of their patterns (f8e5m2
    ///   to f16) go in place by one `prmt` of their word;
    /// * otherwise, for codes each inside a byte of its word, one `prmt` first brings the byte
    ///   of each code (each word shifted so the code starts its byte) into bytes 0 and 2.
    ///
    /// Pairs whose codes were loaded in two words at the same place (rows k and k + 1 of a
    /// `[k, n]` tile) are first joined into one word (`join_pair_words`), which makes them 16
    /// bits apart. The windows and shifts are shared: a pair takes a window already made where
    /// its codes fit in it. One packed subtraction (or `fma`, where a code is placed above the bottom
    /// of its half) finishes an integer pair, the placement's packed correction a float pair;
    /// the result also records the pairs before that correction where it is the last step,
    /// for a subtraction that can absorb it (`packed.rs`). `None`, with nothing emitted,
    /// unless every register has a known source, every pair one of the two forms and the
    /// plan a packed form.
    fn cast_codes_in_words(&mut self, body: &mut Vec<lir::Stmt>, regs: &[Var], pairing: &[(usize, usize)], from: DType, to: DType) -> Option<FastCast> {
        use crate::lower_numerics::{fast_half_cast, raw_code_capacity, raw_code_magic, FastHalfCast};
        let capacity = raw_code_capacity(to)?;
        let ty = Ty::of(to);
        let placement = match fast_half_cast(from, to)? {
            FastHalfCast::Float(p) => Some(p).filter(|p| FastHalfCast::Float(*p).packs(ty)),
            FastHalfCast::Magic(_) => None,
        };
        let integers = raw_code_magic(from, to, [0, 0]).is_some();
        if !integers && placement.is_none() {
            return None;
        }
        let bits = from.bits();
        let sources: Vec<CodeSource> = regs.iter().map(|r| self.code_sources.get(r).copied()).collect::<Option<_>>()?;
        // Every pair planned before anything is emitted; the joined words (below) are runs
        // whose variables exist once the plan holds.
        let runs_before = self.code_runs.len();
        let (pair_sources, joins) = self.join_pair_words(pairing, &sources, bits);
        let mut windows: Vec<CodeWindow> = Vec::new();
        let mut plans = Vec::with_capacity(pairing.len());
        for &(low, high) in &pair_sources {
            let in_window = match placement {
                Some(p) => self.placed_pair_windows(low, high, bits, &p, ty, &mut windows),
                None => self.pair_window(low, high, bits, capacity, &mut windows),
            };
            match in_window.or_else(|| self.pair_bytes(low, high, bits)) {
                Some(plan) => plans.push(plan),
                None => {
                    self.code_runs.truncate(runs_before);
                    return None;
                }
            }
        }
        for join in joins {
            body.push(lir::Stmt::Assign(join.word, Expr::Prmt { a: Box::new(var(join.low)), b: Box::new(var(join.high)), selector: Box::new(int(Ty::I32, join.selector())) }));
        }
        let mut made: HashMap<usize, Var> = HashMap::new();
        let mut window_var = |s: &mut Self, body: &mut Vec<lir::Stmt>, window: usize| -> Var {
            *made.entry(window).or_insert_with(|| s.code_window(body, windows[window]))
        };
        let mut shifted: HashMap<(Var, u32), Var> = HashMap::new();
        let (mut pairs, mut raw) = (Vec::with_capacity(pairing.len()), Vec::with_capacity(pairing.len()));
        for plan in plans {
            let (fast, patterns, codes) = match plan {
                PairCodes::Window { window, r } => {
                    let codes = window_var(self, body, window);
                    let plan = FastHalfCast::Magic(raw_code_magic(from, to, r).expect("planned within the mantissa"));
                    (plan, plan.patterns(var(codes)), codes)
                }
                PairCodes::Placed { fields, sign, codes } => {
                    let p = placement.expect("placed pairs of a placement");
                    let fields = window_var(self, body, fields);
                    let sign = sign.map(|w| var(window_var(self, body, w)));
                    // The codes themselves only for special codes not marked in the patterns.
                    let codes = codes.map_or(fields, |w| window_var(self, body, w));
                    debug_assert!(codes != fields || !p.reads_codes(ty));
                    (FastHalfCast::Float(p), p.patterns_of(var(fields), sign), codes)
                }
                PairCodes::TopBytes { word, low_byte } => {
                    let p = placement.expect("placed pairs of a placement");
                    // Result bytes: zero (byte 4 of the zero register), the low code, zero, the high code.
                    let selector = 4 | low_byte << 4 | 4 << 8 | (low_byte + 2) << 12;
                    let prmt = Expr::Prmt { a: Box::new(var(word)), b: Box::new(int(Ty::I32, 0)), selector: Box::new(int(Ty::I32, selector)) };
                    (FastHalfCast::Float(p), prmt, word)
                }
                PairCodes::PlacedHalves { low, high } => {
                    let p = placement.expect("placed pairs of a placement");
                    let (low, high) = (window_var(self, body, low), window_var(self, body, high));
                    // The low half of `low` and the high half of `high` (prmt bytes 0, 1, 6, 7).
                    let selector = int(Ty::I32, 0x7610);
                    let fields = self.assign(body, Ty::I32, Expr::Prmt { a: Box::new(var(low)), b: Box::new(var(high)), selector: Box::new(selector) });
                    // Each sign bit sits just above its fields: `sign_shift − field_shift` below bit 15.
                    let sign = p.sign_shift.map(|shift| bin(lir::BinaryOp::Shl, var(fields), int(Ty::I32, shift - p.field_shift)));
                    (FastHalfCast::Float(p), p.patterns_of(var(fields), sign), fields)
                }
                PairCodes::Bytes { low: (low_word, low_bit), high: (high_word, high_bit) } => {
                    let mut shift_word = |s: &mut Self, body: &mut Vec<lir::Stmt>, word: Var, by: u32| -> Var {
                        if by == 0 {
                            return word;
                        }
                        *shifted.entry((word, by)).or_insert_with(|| s.assign(body, Ty::I32, bin(lir::BinaryOp::LShr, var(word), int(Ty::I32, by as i64))))
                    };
                    let a = shift_word(self, body, low_word, low_bit % 8);
                    let b = shift_word(self, body, high_word, high_bit % 8);
                    // Result bytes 0 and 1 from byte low/8 of `a`, bytes 2 and 3 from byte high/8
                    // of `b` (selector values 4..7); the masks keep only the codes.
                    let (lo_byte, hi_byte) = ((low_bit / 8) as i64, 4 + (high_bit / 8) as i64);
                    let selector = lo_byte | (lo_byte << 4) | (hi_byte << 8) | (hi_byte << 12);
                    let codes = self.assign(body, Ty::I32, Expr::Prmt { a: Box::new(var(a)), b: Box::new(var(b)), selector: Box::new(int(Ty::I32, selector)) });
                    let plan = match placement {
                        Some(p) => FastHalfCast::Float(p),
                        None => FastHalfCast::Magic(raw_code_magic(from, to, [0, 0]).expect("integers")),
                    };
                    (plan, plan.patterns(var(codes)), codes)
                }
            };
            let (pair, raw_pair) = self.fast_pair(&fast, patterns, codes, ty, body);
            pairs.push(pair);
            raw.push(raw_pair);
        }
        let out = self.halves_of(&pairs, pairing, body);
        Some(FastCast { regs: out, pairs: Some(pairs), raw: raw.into_iter().collect::<Option<_>>().map(RawPairs::Halves) })
    }

    /// The sources of each pair's two codes, with pairs whose codes were loaded in different
    /// words at the same place (rows k and k + 1 of a `[k, n]` tile, a thread's piece of each
    /// row one load) moved to a joined word: the 16-bit slices of the two words that hold them,
    /// side by side (one `prmt` per pair of slices, shared by the pairs in them), so that the
    /// codes sit 16 bits apart as in fragment order and the windows serve them. The joined
    /// words are new runs of `code_runs` whose variables the caller assigns once the plan
    /// holds ([`WordJoin`]; a plan that fails drops the runs and leaves the variables unused).
    fn join_pair_words(&mut self, pairing: &[(usize, usize)], sources: &[CodeSource], bits: u32) -> (Vec<(CodeSource, CodeSource)>, Vec<WordJoin>) {
        let mut joins: Vec<WordJoin> = Vec::new();
        let mut pair_sources = Vec::with_capacity(pairing.len());
        for &(low, high) in pairing {
            let (low, high) = (sources[low], sources[high]);
            let ((low_word, low_bit), (high_word, high_bit)) = (self.code_word(low), self.code_word(high));
            if low.run == high.run || low_bit != high_bit || low_bit % 16 + bits > 16 {
                pair_sources.push((low, high));
                continue;
            }
            let slice = low_bit / 16;
            let run = match joins.iter().find(|j| (j.low, j.high, j.slice) == (low_word, high_word, slice)) {
                Some(join) => join.run,
                None => {
                    let run = self.code_runs.len();
                    let word = self.new_var(Ty::I32);
                    self.code_runs.push((vec![word], 32));
                    joins.push(WordJoin { low: low_word, high: high_word, slice, word, run });
                    run
                }
            };
            let bit = low_bit % 16;
            pair_sources.push((CodeSource { run, bit }, CodeSource { run, bit: bit + 16 }));
        }
        (pair_sources, joins)
    }

    /// The window of a pair of integer codes (of `bits` bits) in one run, each inside its half
    /// of the window `r` bits up (`r[0]` for the low code, `r[1]` for the high one), `r + bits`
    /// within `capacity`. A window in `windows` where the codes fit is reused (its reach
    /// extended to them); otherwise the one with the low code lowest is added. `None` where
    /// there is none.
    fn pair_window(&self, low: CodeSource, high: CodeSource, bits: u32, capacity: u32, windows: &mut Vec<CodeWindow>) -> Option<PairCodes> {
        if low.run != high.run || bits > capacity {
            return None;
        }
        // The high code sits `skew` bits above where the low code's place in the high half is.
        let skew = high.bit as i64 - low.bit as i64 - 16;
        let (lowest, mut highest) = (0.max(-skew), (capacity - bits) as i64 - 0.max(skew));
        if lowest > highest {
            return None;
        }
        // Codes below the largest power of two under the capacity where they can be: windows
        // then start on byte boundaries where the codes allow it (one shift for the codes of a
        // byte pair), with fewer distinct correction constants.
        let preferred = 1i64 << capacity.ilog2();
        if lowest < preferred {
            highest = highest.min(preferred - 1);
        }
        let end = (high.bit + bits) as i64;
        let fits = |start: i64| (lowest..=highest).contains(&(low.bit as i64 - start)) && self.window_holds(low.run, start, end);
        let start = match windows.iter().find(|w| w.run == low.run && fits(w.start)) {
            Some(w) => w.start,
            None => (lowest..=highest).map(|r| low.bit as i64 - r).find(|&start| fits(start))?,
        };
        let r = low.bit as i64 - start;
        Some(PairCodes::Window { window: CodeWindow::claim(windows, low.run, start, end), r: [r as u32, (r + skew) as u32] })
    }

    /// The windows of a pair of float codes placed by `placement`, exactly 16 bits apart in
    /// one run: the fields window starts `field_shift` bits below the low code (so each code's
    /// fields already sit under the destination's), the sign window `sign_shift` bits below
    /// it, and, where the conversion to `ty` reads the codes themselves (special codes not
    /// marked in the patterns), a window at the low code. Windows with the same start are
    /// shared. `None` where the codes are not so placed.
    fn placed_pair_windows(&self, low: CodeSource, high: CodeSource, bits: u32, placement: &crate::lower_numerics::FloatPlacement, ty: Ty, windows: &mut Vec<CodeWindow>) -> Option<PairCodes> {
        if low.run != high.run {
            return None;
        }
        let mut window_at = |start: i64, end: i64| self.window_holds(low.run, start, end).then(|| CodeWindow::claim(windows, low.run, start, end));
        let (low_end, end) = ((low.bit + bits) as i64, (high.bit + bits) as i64);
        if high.bit != low.bit + 16 {
            // Codes of widths that cannot sit 16 bits apart: each half's fields from a window of
            // its own, the sign from the fields (just above them).
            if placement.reads_codes(ty) || high.bit < low.bit {
                return None;
            }
            let low_fields = window_at(low.bit as i64 - placement.field_shift, low_end)?;
            let high_fields = window_at(high.bit as i64 - 16 - placement.field_shift, end)?;
            return Some(PairCodes::PlacedHalves { low: low_fields, high: high_fields });
        }
        let (word, bit) = self.code_word(low);
        if bits == 8 && placement.field_shift == 8 && placement.sign_shift == Some(8) && !placement.reads_codes(ty) && self.code_runs[low.run].1 == 32 && bit < 16 && bit % 8 == 0 {
            // Bytes that are the top bytes of their patterns (f8e5m2 to f16): one `prmt` puts
            // them there, zero bytes under them.
            return Some(PairCodes::TopBytes { word, low_byte: (bit / 8) as i64 });
        }
        let fields = window_at(low.bit as i64 - placement.field_shift, end)?;
        let sign = match placement.sign_shift {
            Some(shift) => Some(window_at(low.bit as i64 - shift, end)?),
            None => None,
        };
        let codes = match placement.reads_codes(ty) {
            true => Some(window_at(low.bit as i64, end)?),
            false => None,
        };
        Some(PairCodes::Placed { fields, sign, codes })
    }

    /// A pair whose codes each lie inside one byte of a word: taken by the byte.
    fn pair_bytes(&self, low: CodeSource, high: CodeSource, bits: u32) -> Option<PairCodes> {
        let in_byte = |source: CodeSource| Some(self.code_word(source)).filter(|(_, bit)| bit % 8 + bits <= 8);
        Some(PairCodes::Bytes { low: in_byte(low)?, high: in_byte(high)? })
    }

    /// The word (an i32 variable) that holds the code at `source`, and the code's bit in it.
    fn code_word(&self, source: CodeSource) -> (Var, u32) {
        let (words, word_bits) = &self.code_runs[source.run];
        (words[(source.bit / word_bits) as usize], source.bit % word_bits)
    }

    /// Whether the 32-bit window of run `run` from bit `start` (below 0: the first word
    /// shifted up) holds the run's bits up to `end` (exclusive).
    fn window_holds(&self, run: usize, start: i64, end: i64) -> bool {
        let (words, word_bits) = &self.code_runs[run];
        let word_bits = *word_bits as i64;
        if end - start > 32 {
            return false;
        }
        if start < 0 {
            return start > -32 && end <= word_bits;
        }
        let word = start / word_bits;
        word < words.len() as i64 && (end <= (word + 1) * word_bits || (word_bits == 32 && word + 1 < words.len() as i64))
    }

    /// The bits of `window` (see [`Self::window_holds`]) in an i32: a word, a word shifted, or
    /// two words funnel-shifted where its reach goes into the next.
    fn code_window(&mut self, body: &mut Vec<lir::Stmt>, window: CodeWindow) -> Var {
        let CodeWindow { run, start, reach } = window;
        let (words, word_bits) = self.code_runs[run].clone();
        if start < 0 {
            return self.assign(body, Ty::I32, bin(lir::BinaryOp::Shl, var(words[0]), int(Ty::I32, -start)));
        }
        let (word, offset) = ((start / word_bits as i64) as usize, start % word_bits as i64);
        if offset == 0 {
            return words[word];
        }
        let mut window = bin(lir::BinaryOp::LShr, var(words[word]), int(Ty::I32, offset));
        if reach > (word as i64 + 1) * word_bits as i64 {
            window = bin(lir::BinaryOp::Or, window, bin(lir::BinaryOp::Shl, var(words[word + 1]), int(Ty::I32, 32 - offset)));
        }
        self.assign(body, Ty::I32, window)
    }

    /// One pair of a fast cast by `plan` (one that packs) from `patterns`, the i32 of both
    /// halves' patterns (`FastHalfCast::patterns`, or a placement's from its windows), and
    /// `codes`, an i32 with the pair's codes at the bottom of their halves where the plan's
    /// special codes read them: the packed pair, and the pair before its last correction where
    /// the plan ends in one ([`crate::lower_numerics::FastHalfCast::correction`]).
    fn fast_pair(&mut self, plan: &crate::lower_numerics::FastHalfCast, patterns: Expr, codes: Var, ty: Ty, body: &mut Vec<lir::Stmt>) -> (Var, Option<RawPair>) {
        let mut patterns = self.assign(body, Ty::I32, patterns);
        if let Some(marked) = plan.marked_specials(var(patterns), ty) {
            patterns = self.assign(body, Ty::I32, marked);
        }
        let value = plan.packed(var(patterns), var(codes), ty).expect("a plan that packs, to f16 or bf16");
        let pair = self.assign(body, ty.packed().expect("f16 or bf16"), value);
        (pair, plan.correction(ty).map(|(scale, offset)| RawPair { pattern: patterns, scale, offset }))
    }

    /// `wide` (a register of `wide_dtype`) as an f32 that rounds into every low-precision
    /// format exactly like the value itself: exact conversions stay as they are; f64 (and
    /// integers, through f64) are narrowed by rounding to odd, which makes the later rounding
    /// into a format of at most 11 significand bits a single correct rounding.
    pub(super) fn to_f32_for_encoding(&mut self, body: &mut Vec<lir::Stmt>, wide: Var, wide_dtype: DType) -> Var {
        let exact_in_f32 = wide_dtype == DType::F32
            || (wide_dtype.is_float() && wide_dtype.bits() <= 16)
            || (wide_dtype.is_int() && wide_dtype.bits() <= 16)
            || wide_dtype == DType::Bool;
        if exact_in_f32 {
            let e = self.cast_expr(var(wide), wide_dtype, DType::F32);
            return self.assign(body, Ty::F32, e);
        }
        let as_f64 = self.cast_expr(var(wide), wide_dtype, DType::F64);
        let x = self.assign(body, Ty::F64, as_f64);
        let nearest = Expr::Cast { to: Ty::F32, value: Box::new(var(x)), from_unsigned: false, to_unsigned: false };
        let t = self.assign(body, Ty::F32, nearest);
        let back = Expr::Cast { to: Ty::F64, value: Box::new(var(t)), from_unsigned: false, to_unsigned: false };
        let back = self.assign(body, Ty::F64, back);
        // Inexact: step to the f32 below in magnitude if nearest rounded away from zero, then
        // set the last bit (round to odd). NaN compares unequal and keeps its (odd or even) bits
        // harmlessly: every NaN encodes to the format's NaN.
        let bits = self.assign(body, Ty::I32, Expr::Bitcast { to: Ty::I32, value: Box::new(var(t)) });
        let away = cmp(
            CmpOp::Gt,
            Expr::Unary(lir::UnaryOp::Abs, Box::new(var(back))),
            Expr::Unary(lir::UnaryOp::Abs, Box::new(var(x))),
        );
        let toward_zero = Expr::Select(Box::new(away), Box::new(bin(lir::BinaryOp::Sub, var(bits), int(Ty::I32, 1))), Box::new(var(bits)));
        let odd = bin(lir::BinaryOp::Or, toward_zero, int(Ty::I32, 1));
        let exact = cmp(CmpOp::Eq, var(back), var(x));
        let chosen = Expr::Select(Box::new(exact), Box::new(var(bits)), Box::new(odd));
        self.assign(body, Ty::F32, Expr::Bitcast { to: Ty::F32, value: Box::new(chosen) })
    }

    pub(super) fn cast_expr(&self, e: Expr, from: DType, to: DType) -> Expr {
        if from == to {
            return e;
        }
        if to == DType::Bool {
            let zero = float_or_int(Ty::of(from), 0.0);
            return cmp(CmpOp::Ne, e, zero);
        }
        Expr::Cast {
            to: Ty::of(to),
            value: Box::new(e),
            from_unsigned: from == DType::Bool || (from.is_int() && !from.is_signed_int()),
            to_unsigned: to.is_int() && !to.is_signed_int(),
        }
    }
}

/// Two words joined into one run (`join_pair_words`): 16-bit slice `slice` of `low` in the
/// low half, the same slice of `high` in the high half.
struct WordJoin {
    low: Var,
    high: Var,
    slice: u32,
    /// The joined word, the one word of run `run`.
    word: Var,
    run: usize,
}

impl WordJoin {
    /// The `prmt` selector: bytes `2·slice`, `2·slice + 1` of `low`, then the same of `high`
    /// (selector values 4..7).
    fn selector(&self) -> i64 {
        let byte = 2 * self.slice as i64;
        byte | (byte + 1) << 4 | (byte + 4) << 8 | (byte + 5) << 12
    }
}

/// 32 bits of a run of words (`Lower::code_runs`) from bit `start` (below 0: the first word
/// shifted up), of which the codes read reach up to bit `reach` (exclusive).
#[derive(Clone, Copy, Debug)]
struct CodeWindow {
    run: usize,
    start: i64,
    reach: i64,
}

impl CodeWindow {
    /// The index in `windows` of the window of run `run` from bit `start`, its reach extended
    /// to `end`, added if there is none.
    fn claim(windows: &mut Vec<CodeWindow>, run: usize, start: i64, end: i64) -> usize {
        match windows.iter().position(|w| w.run == run && w.start == start) {
            Some(i) => {
                windows[i].reach = windows[i].reach.max(end);
                i
            }
            None => {
                windows.push(CodeWindow { run, start, reach: end });
                windows.len() - 1
            }
        }
    }
}

/// How a pair of codes reaches the fast cast (`cast_codes_in_words`).
enum PairCodes {
    /// Integers in window `window` of the cast's windows, `r` bits up in each half.
    Window { window: usize, r: [u32; 2] },
    /// Floats: the windows with the codes' fields and sign bits in place, and the window with
    /// the codes at the bottom of their halves where the conversion reads them.
    Placed { fields: usize, sign: Option<usize>, codes: Option<usize> },
    /// Floats whose codes are the top bytes of their patterns: the word, and the byte of the
    /// low code in it (the high code's is two above).
    TopBytes { word: Var, low_byte: i64 },
    /// Floats whose codes do not sit 16 bits apart: the window with the low code's fields in
    /// place in its low half, and the one with the high code's in its high half.
    PlacedHalves { low: usize, high: usize },
    /// Each in a byte of its word: the word and the code's bit in it, low code and high code.
    Bytes { low: (Var, u32), high: (Var, u32) },
}
