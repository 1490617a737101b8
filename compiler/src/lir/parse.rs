//! Reads the text form of the thread-level IR (what `Display for Program` prints) back into a
//! [`Program`], so that a test can start from LIR written by hand or saved from a run.
//!
//! **Expects** any text. **Guarantees**: for every program `p` the lowering produces,
//! `parse(&p.to_string())` prints exactly `p.to_string()` again (tested over every shipped
//! kernel), and malformed text is a [`LirParseError`] at a line and column, never a panic.
//! Parsing does not check the IR's rules: run [`super::verify::verify`] on the result.

use super::{BinaryOp, CmpOp, Expr, MmaKind, Param, Program, Stmt, Ty, UnaryOp, Var};
use crate::diagnostics::Span;
use crate::dtype::DType;
use crate::text_cursor::{braced, items_until_brace, list, Cursor};

/// Malformed LIR text, at a 1-based line and column.
pub type LirParseError = crate::text_cursor::TextError;

/// Parses one program.
pub fn parse(text: &str) -> Result<Program, LirParseError> {
    let mut p = Parser { cursor: Cursor::new(text) };
    let program = p.program()?;
    p.finish("program")?;
    Ok(program)
}

struct Parser<'t> {
    cursor: Cursor<'t>,
}

impl<'t> std::ops::Deref for Parser<'t> {
    type Target = Cursor<'t>;
    fn deref(&self) -> &Cursor<'t> {
        &self.cursor
    }
}

impl std::ops::DerefMut for Parser<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.cursor
    }
}

type R<T> = Result<T, LirParseError>;

fn ty_named(name: &str) -> Option<Ty> {
    Ty::ALL.into_iter().find(|t| t.name() == name)
}

fn unary_named(name: &str) -> Option<UnaryOp> {
    UnaryOp::ALL.into_iter().find(|op| op.name() == name)
}

fn binary_named(name: &str) -> Option<BinaryOp> {
    BinaryOp::ALL.into_iter().find(|op| op.name() == name)
}

fn cmp_named(name: &str) -> Option<CmpOp> {
    CmpOp::ALL.into_iter().find(|op| op.name() == name)
}

impl<'t> Parser<'t> {
    fn ty(&mut self) -> R<Ty> {
        self.word_as(ty_named, |w| format!("expected a register type, found `{w}`"))
    }

    /// `rN`.
    fn register(&mut self) -> R<Var> {
        self.word_as(|w| w.strip_prefix('r')?.parse().ok().map(Var), |w| format!("expected a register `rN`, found `{w}`"))
    }

    /// `pN`.
    fn param_index(&mut self) -> R<usize> {
        self.word_as(|w| w.strip_prefix('p')?.parse().ok(), |w| format!("expected a parameter `pN`, found `{w}`"))
    }

    fn program(&mut self) -> R<Program> {
        self.skip_space();
        if self.word() != "lir" {
            return Err(self.error("expected `lir NAME(...)`"));
        }
        let name = self.word().to_string();
        if name.is_empty() {
            return Err(self.error("expected the program's name"));
        }
        self.expect("(")?;
        let mut params = Vec::new();
        if !self.eat(")") {
            loop {
                let pname = self.word().to_string();
                self.expect(":")?;
                if self.eat_word("ptr") {
                    let dtype = self.word_as(DType::from_name, |w| format!("unknown dtype `{w}`"))?;
                    params.push(Param::Global { name: pname, dtype });
                } else {
                    params.push(Param::Scalar { name: pname, ty: self.ty()? });
                }
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        self.expect("threads(")?;
        let block_threads = self.integer("a thread count")?;
        self.expect(")")?;
        self.expect("shared(")?;
        let shared_bytes = self.integer("a byte count")?;
        self.expect(")")?;
        self.expect("{")?;
        let mut vars = Vec::new();
        loop {
            self.skip_space();
            if !self.rest().starts_with("reg ") {
                break;
            }
            self.word();
            let v = self.register()?;
            if v.0 as usize != vars.len() {
                return Err(self.error(format!("expected register r{} next", vars.len())));
            }
            self.expect(":")?;
            vars.push(self.ty()?);
        }
        let body = items_until_brace(self, |p| p.stmt())?;
        self.expect("}")?;
        Ok(Program { name, params, block_threads, shared_bytes, vars, body })
    }

    fn var_list(&mut self) -> R<Vec<Var>> {
        list(self, "{", "}", |p| p.register())
    }

    fn expr_list(&mut self, open: &str, close: &str) -> R<Vec<Expr>> {
        list(self, open, close, |p| p.expr())
    }

    fn stmt(&mut self) -> R<Stmt> {
        if self.rest().starts_with("//") {
            self.at += 2;
            let start = self.integer("a source offset")?;
            self.expect("..")?;
            let end = self.integer("a source offset")?;
            self.expect(":")?;
            self.skip_blanks();
            let what = self.line_rest().to_string();
            return Ok(Stmt::Source { span: Span { start, end }, what });
        }
        if self.rest().starts_with('{') {
            let dst = self.var_list()?;
            self.expect("=")?;
            let at = self.at;
            let op = self.word();
            if let Some(shape) = op.strip_prefix("ldmatrix.x") {
                let (count, trans) = match shape.strip_suffix(".trans") {
                    Some(c) => (c, true),
                    None => (shape, false),
                };
                if count.parse::<usize>().ok() != Some(dst.len()) {
                    return Err(self.error("the ldmatrix count does not match its destinations"));
                }
                self.expect("[")?;
                let row_offset = self.expr()?;
                self.expect("]")?;
                return Ok(Stmt::LdMatrix { dst, row_offset, trans });
            }
            for space in ["global", "shared"] {
                let Some(rest) = op.strip_prefix(&format!("ld.{space}.v")) else { continue };
                let (count, tyname) = rest.split_once('.').ok_or_else(|| self.error(format!("expected `ld.{space}.vN.TY`")))?;
                let ty = ty_named(tyname).ok_or_else(|| self.error(format!("unknown type `{tyname}`")))?;
                if count.parse::<usize>().ok() != Some(dst.len()) {
                    return Err(self.error("the vector width does not match its destinations"));
                }
                if space == "global" {
                    let param = self.param_index()?;
                    self.expect("[byte")?;
                    let byte_offset = self.expr()?;
                    self.expect("]")?;
                    return Ok(Stmt::LoadGlobalVector { dst, param, byte_offset, ty });
                }
                self.expect("[")?;
                let offset = self.expr()?;
                self.expect("]")?;
                return Ok(Stmt::LoadSharedVector { dst, offset, ty });
            }
            self.at = at;
            return Err(self.error(format!("expected `ldmatrix`, `ld.global.vN` or `ld.shared.vN`, found `{op}`")));
        }
        self.skip_blanks();
        let at = self.at;
        let word = self.word();
        match word {
            "if" => {
                let cond = self.expr()?;
                let then_body = braced(self, |p| p.stmt())?;
                let else_body = if self.eat("else") { braced(self, |p| p.stmt())? } else { Vec::new() };
                Ok(Stmt::If { cond, then_body, else_body })
            }
            "for" => {
                let var = self.register()?;
                self.expect_word("in")?;
                let start = self.expr()?;
                self.expect("..")?;
                let end = self.expr()?;
                let body = braced(self, |p| p.stmt())?;
                Ok(Stmt::For { var, start, end, body })
            }
            "barrier" => Ok(Stmt::Barrier),
            "cp.async.commit_group" => Ok(Stmt::CommitGroup),
            "cp.async.wait_group" => Ok(Stmt::WaitGroup(self.integer("a group count")?)),
            "print" | "print.u64" => {
                self.skip_blanks();
                let label = self.string()?;
                let coords = self.expr_list("[", "]")?;
                self.expect("=")?;
                let value = self.expr()?;
                Ok(Stmt::Print { label, coords, value, unsigned: word == "print.u64" })
            }
            "check" | "check.cpu" => {
                let cond = self.expr()?;
                self.expect("//")?;
                self.skip_blanks();
                let message = self.line_rest().to_string();
                Ok(Stmt::Check { cond, message, device: word == "check" })
            }
            "st.global" => {
                let param = self.param_index()?;
                self.expect("[")?;
                let index = self.expr()?;
                self.expect("]")?;
                self.expect("=")?;
                Ok(Stmt::StoreGlobal { param, index, value: self.expr()? })
            }
            "red.add.global" => {
                let param = self.param_index()?;
                self.expect("[")?;
                let index = self.expr()?;
                self.expect("]")?;
                self.expect("+=")?;
                Ok(Stmt::AtomicAddGlobal { param, index, value: self.expr()? })
            }
            "st.shared" => {
                self.expect("[")?;
                let offset = self.expr()?;
                self.expect("]")?;
                self.expect("=")?;
                Ok(Stmt::StoreShared { offset, value: self.expr()? })
            }
            w if w.starts_with("mma.") => {
                let kind = match w {
                    "mma.m16n8k16.f16" => MmaKind::F16,
                    "mma.m16n8k16.bf16" => MmaKind::BF16,
                    "mma.m16n8k32.s8" => MmaKind::S8,
                    _ => return Err(self.error(format!("unknown mma `{w}`"))),
                };
                let c = self.var_list()?;
                self.expect("+=")?;
                let a = self.expr_list("{", "}")?;
                self.expect("*")?;
                let b = self.expr_list("{", "}")?;
                let c: [Var; 4] = c.try_into().map_err(|_| self.error("an mma has four accumulators"))?;
                let a: [Expr; 4] = a.try_into().map_err(|_| self.error("an mma has four A registers"))?;
                let b: [Expr; 2] = b.try_into().map_err(|_| self.error("an mma has two B registers"))?;
                Ok(Stmt::Mma { kind, a, b, c })
            }
            w if w.starts_with("cp.async.") => {
                let bytes = w["cp.async.".len()..].parse().map_err(|_| self.error(format!("unknown `{w}`")))?;
                self.expect("[")?;
                let offset = self.expr()?;
                self.expect("]")?;
                self.expect(",")?;
                let param = self.param_index()?;
                self.expect("[byte")?;
                let byte_index = self.expr()?;
                self.expect("]")?;
                self.expect(",")?;
                self.expect_word("src_bytes")?;
                let src_bytes = self.expr()?;
                Ok(Stmt::CopyAsync { offset, param, byte_index, bytes, src_bytes })
            }
            w if w.starts_with("st.global.v") => {
                let (count, tyname) = w["st.global.v".len()..].split_once('.').ok_or_else(|| self.error("expected `st.global.vN.TY`"))?;
                let ty = ty_named(tyname).ok_or_else(|| self.error(format!("unknown type `{tyname}`")))?;
                let param = self.param_index()?;
                self.expect("[byte")?;
                let byte_offset = self.expr()?;
                self.expect("]")?;
                self.expect("=")?;
                let values = self.expr_list("{", "}")?;
                if count.parse::<usize>().ok() != Some(values.len()) {
                    return Err(self.error("the vector width does not match its values"));
                }
                Ok(Stmt::StoreGlobalVector { param, byte_offset, values, ty })
            }
            w if w.starts_with("st.global.b") => {
                let bits = w["st.global.b".len()..].parse().map_err(|_| self.error(format!("unknown `{w}`")))?;
                let param = self.param_index()?;
                self.expect("[bit")?;
                let bit_index = self.expr()?;
                self.expect("]")?;
                self.expect("=")?;
                Ok(Stmt::StoreGlobalBits { param, bit_index, bits, value: self.expr()? })
            }
            w if w.starts_with("st.shared.b") => {
                let bits = w["st.shared.b".len()..].parse().map_err(|_| self.error(format!("unknown `{w}`")))?;
                self.expect("[bit")?;
                let bit_offset = self.expr()?;
                self.expect("]")?;
                self.expect("=")?;
                Ok(Stmt::StoreSharedBits { bit_offset, bits, value: self.expr()? })
            }
            w if w.starts_with('r') => {
                self.at = at;
                let dst = self.register()?;
                self.expect("=")?;
                if self.eat_word("shfl.bfly") {
                    let src = self.register()?;
                    self.expect(",")?;
                    let lane_mask = self.integer("a lane mask")?;
                    return Ok(Stmt::ShuffleXor { dst, src, lane_mask });
                }
                if self.eat_word("uniform") {
                    return Ok(Stmt::AssignUniform(dst, self.expr()?));
                }
                Ok(Stmt::Assign(dst, self.expr()?))
            }
            w => {
                self.at = at;
                Err(self.error(format!("expected a statement, found `{w}`")))
            }
        }
    }

    fn expr(&mut self) -> R<Expr> {
        self.enter()?;
        let e = self.expr_inner();
        self.leave();
        e
    }

    fn args<const N: usize>(&mut self) -> R<[Box<Expr>; N]> {
        let list = self.expr_list("(", ")")?;
        let n = list.len();
        list.into_iter().map(Box::new).collect::<Vec<_>>().try_into().map_err(|_| self.error(format!("expected {N} operands, found {n}")))
    }

    fn expr_inner(&mut self) -> R<Expr> {
        self.skip_blanks();
        let at = self.at;
        let starts_number = self.rest().starts_with(|c: char| c.is_ascii_digit() || c == '-') || self.rest().starts_with("NaN") || self.rest().starts_with("inf");
        if starts_number {
            let rest = self.rest();
            let len = rest.find(':').ok_or_else(|| self.error("expected `VALUE:TYPE`"))?;
            let text = &rest[..len];
            self.at += len + 1;
            let ty = self.ty()?;
            return if ty.is_float() {
                text.parse().map(|v| Expr::Float(ty, v)).map_err(|_| self.error(format!("bad float `{text}`")))
            } else {
                text.parse().map(|v| Expr::Int(ty, v)).map_err(|_| self.error(format!("bad integer `{text}`")))
            };
        }
        let word = self.word();
        let bits_of = |s: &str| s.strip_prefix('b').and_then(|n| n.parse::<u32>().ok());
        Ok(match word {
            "tid" => Expr::ThreadIdx,
            "ctaid.x" => Expr::BlockIdx(0),
            "ctaid.y" => Expr::BlockIdx(1),
            "ctaid.z" => Expr::BlockIdx(2),
            "select" => {
                let [c, a, b] = self.args()?;
                Expr::Select(c, a, b)
            }
            "fma" => {
                let [a, b, c] = self.args()?;
                Expr::Fma(a, b, c)
            }
            "prmt" => {
                let [a, b, selector] = self.args()?;
                Expr::Prmt { a, b, selector }
            }
            w if w.starts_with('r') && w[1..].parse::<u32>().is_ok() => Expr::Var(Var(w[1..].parse().expect("checked"))),
            w if w.starts_with('p') && w[1..].parse::<usize>().is_ok() => Expr::Param(w[1..].parse().expect("checked")),
            w if unary_named(w).is_some() => {
                let [a] = self.args()?;
                Expr::Unary(unary_named(w).expect("checked"), a)
            }
            w if binary_named(w).is_some() => {
                let [a, b] = self.args()?;
                Expr::Binary(binary_named(w).expect("checked"), a, b)
            }
            w if cmp_named(w).is_some() => {
                let [a, b] = self.args()?;
                Expr::Cmp(cmp_named(w).expect("checked"), a, b)
            }
            w if w.starts_with("lop3.") => {
                let lut = w["lop3.".len()..].strip_prefix("0x").and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(|| self.error(format!("bad lop3 table in `{w}`")))?;
                let [a, b, c] = self.args()?;
                Expr::Lop3 { a, b, c, lut }
            }
            w if w.starts_with("bitcast.") => {
                let to = ty_named(&w["bitcast.".len()..]).ok_or_else(|| self.error(format!("unknown type in `{w}`")))?;
                let [value] = self.args()?;
                Expr::Bitcast { to, value }
            }
            w if w.starts_with("cast.") => {
                let mut parts = w["cast.".len()..].split('.');
                let to = parts.next().and_then(ty_named).ok_or_else(|| self.error(format!("unknown type in `{w}`")))?;
                let (mut from_unsigned, mut to_unsigned) = (false, false);
                for flag in parts {
                    match flag {
                        "from_u" => from_unsigned = true,
                        "to_u" => to_unsigned = true,
                        _ => return Err(self.error(format!("unknown cast flag `{flag}`"))),
                    }
                }
                let [value] = self.args()?;
                Expr::Cast { to, value, from_unsigned, to_unsigned }
            }
            w if w.starts_with("ld.global.") => {
                let kind = &w["ld.global.".len()..];
                let param = self.param_index()?;
                self.expect("[")?;
                if let Some(bits) = bits_of(kind) {
                    self.expect_word("bit")?;
                    let bit_index = Box::new(self.expr()?);
                    self.expect("]")?;
                    Expr::LoadGlobalBits { param, bit_index, bits }
                } else {
                    let ty = ty_named(kind).ok_or_else(|| self.error(format!("unknown type in `{w}`")))?;
                    let index = Box::new(self.expr()?);
                    self.expect("]")?;
                    Expr::LoadGlobal { param, index, ty }
                }
            }
            w if w.starts_with("ld.shared.") => {
                let kind = &w["ld.shared.".len()..];
                self.expect("[")?;
                if let Some(bits) = bits_of(kind) {
                    self.expect_word("bit")?;
                    let bit_offset = Box::new(self.expr()?);
                    self.expect("]")?;
                    Expr::LoadSharedBits { bit_offset, bits }
                } else {
                    let ty = ty_named(kind).ok_or_else(|| self.error(format!("unknown type in `{w}`")))?;
                    let offset = Box::new(self.expr()?);
                    self.expect("]")?;
                    Expr::LoadShared { offset, ty }
                }
            }
            w => {
                self.at = at;
                return Err(self.error(format!("expected an expression, found `{w}`")));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_and_expression_prints_and_parses_back() {
        let text = r#"lir k(x: ptr f32, q: ptr u4, n: i32) threads(64) shared(128) {
  reg r0: i32
  reg r1: f32
  reg r2: i64
  reg r3: i32
  reg r4: i32
  reg r5: i32
  reg r6: i32
  r0 = rem(div(tid, 1:i32), 64:i32)
  // 10..20: load x[%2] pad 0.0
  if and(ge(r0, 0:i32), lt(r0, p2)) {
    r1 = ld.global.f32 p0[cast.i64.from_u(r0)]
  } else {
    r1 = -inf:f32
  }
  r1 = fma(r1, NaN:f32, select(eq(r0, 3:i32), 1.5:f32, 2e-7:f32))
  r3 = lop3.0x96(prmt(r0, ctaid.y, 12816:i32), ld.global.b4 p1[bit cast.i64(r0)], ld.shared.b3 [bit r0])
  r1 = bitcast.f32(r3)
  r3 = cast.i32.from_u.to_u(ld.shared.f32 [mul(r0, 4:i32)])
  st.global p0[cast.i64(r0)] = neg(r1)
  st.global.b4 p1[bit cast.i64(r0)] = r3
  st.shared [0:i32] = r1
  st.shared.b2 [bit 7:i32] = r3
  for r4 in 0:i32 .. p2 {
    barrier
    cp.async.16 [16:i32], p0[byte 0:i64], src_bytes 16:i32
    cp.async.commit_group
    cp.async.wait_group 1
  }
  {r3, r4} = ldmatrix.x2.trans [0:i32]
  {r5, r6} = ld.global.v2.i32 p0[byte 8:i64]
  st.global.v2.i32 p0[byte 8:i64] = {r5, r6}
  mma.m16n8k16.f16 {r1, r1, r1, r1} += {r3, r4, r5, r6} * {r3, r4}
  r1 = shfl.bfly r1, 16
  print.u64 "t \"q\"" [r0, 1:i32] = cast.i64(r0)
  print "row" [] = cast.f64(r1)
  check.cpu lt(r0, 64:i32) // a tile outside: its shared tensor
  check ge(r0, 0:i32) // negative
}
"#;
        let program = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(program.to_string(), text);
        assert_eq!(program.params[1], Param::Global { name: "q".into(), dtype: DType::U4 });
        assert!(matches!(program.body[1], Stmt::Source { span: Span { start: 10, end: 20 }, .. }));
    }

    #[test]
    fn malformed_text_is_an_error_at_its_place() {
        let cases = [
            ("", "1:1: expected `lir NAME(...)`"),
            ("lir k() threads(32) shared(0) {\n  r0 = 1:i32\n}\n", ""),
            ("lir k() threads(32) shared(0) {\n  reg r1: i32\n}\n", "2:9: expected register r0 next"),
            ("lir k() threads(32) shared(0) {\n  reg r0: i32\n  r0 = frob(1:i32)\n}\n", "3:8: expected an expression, found `frob`"),
            ("lir k() threads(32) shared(0) {\n  reg r0: i32\n  r0 = 1:q32\n}\n", "expected a register type, found `q32`"),
            ("lir k() threads(32) shared(0) {\n  reg r0: i32\n  r0 = add(1:i32)\n}\n", "expected 2 operands, found 1"),
            ("lir k() threads(32) shared(0) {\n  reg r0: i32\n  if lt(r0, 1:i32) {\n", "expected `}`"),
            ("lir k() threads(32) shared(0) {\n}\nextra", "text after the end"),
        ];
        for (text, expected) in cases {
            match parse(text) {
                Ok(_) => assert!(expected.is_empty(), "{text:?} parsed"),
                Err(e) => {
                    assert!(!expected.is_empty(), "{text:?}: {e}");
                    assert!(e.to_string().contains(expected), "{text:?}: `{e}` should contain `{expected}`");
                }
            }
        }
        // Deep nesting is refused, not a stack overflow.
        let deep = format!("lir k() threads(32) shared(0) {{\n  reg r0: i32\n  r0 = {}1:i32{}\n}}\n", "neg(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).unwrap_err().message.contains("too deep"));
    }
}
