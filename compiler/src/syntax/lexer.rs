//! The lexer (logos). It turns source text into spanned tokens and never fails hard: a bad
//! character or an unreadable literal becomes an error token that the parser reports and skips.
//!
//! One rewrite happens after lexing: in `name<dtype>(...)` the angle brackets become
//! `GenericOpen`/`GenericClose`, so the grammar can tell a dtype argument from a comparison
//! without more lookahead (a dtype is never an operand of `<`).

use crate::diagnostics::Span;
use crate::dtype::DType;
use logos::Logos;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Default)]
pub enum LexError {
    #[default]
    UnexpectedCharacter,
    IntegerTooLarge,
    BadFloat,
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LexError::UnexpectedCharacter => f.write_str("unexpected character"),
            LexError::IntegerTooLarge => {
                f.write_str("integer literal does not fit in a signed 64-bit integer")
            }
            LexError::BadFloat => f.write_str("malformed floating-point literal"),
        }
    }
}

fn parse_int(lex: &mut logos::Lexer<Tok>) -> Result<i64, LexError> {
    let s = lex.slice().replace('_', "");
    let parsed = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16)
    } else {
        s.parse::<i64>()
    };
    parsed.map_err(|_| LexError::IntegerTooLarge)
}

fn parse_float(lex: &mut logos::Lexer<Tok>) -> Result<f64, LexError> {
    let s = lex.slice().replace('_', "");
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(LexError::BadFloat),
    }
}

#[derive(Logos, Clone, Debug, PartialEq)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip(r"//[^\n]*", allow_greedy = true))]
#[logos(error = LexError)]
pub enum Tok {
    #[token("kernel")]
    Kernel,
    #[token("reference")]
    Reference,
    #[token("layout")]
    Layout,
    #[token("reg")]
    Reg,
    #[token("@")]
    At,
    #[token("let")]
    Let,
    #[token("for")]
    For,
    #[token("in")]
    In,
    #[token("if")]
    If,
    #[token("else")]
    Else,
    #[token("grid")]
    Grid,
    #[token("warps")]
    Warps,
    #[token("global")]
    Global,
    #[token("mut")]
    Mut,
    #[token("true")]
    True,
    #[token("false")]
    False,
    #[token("inf")]
    Inf,
    /// A dtype name (`f16`, `u4`, `f6e3m2`, ...). Produced from identifiers after lexing, so
    /// every name [`DType::from_name`] accepts is a dtype and nothing else is.
    DType(DType),
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice().to_string())]
    Ident(String),
    #[regex(r"[0-9][0-9_]*|0[xX][0-9a-fA-F_]+", parse_int)]
    Int(i64),
    #[regex(r"[0-9][0-9_]*\.[0-9][0-9_]*([eE][+-]?[0-9]+)?|[0-9][0-9_]*[eE][+-]?[0-9]+", parse_float)]
    Float(f64),
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("<")]
    Lt,
    #[token(">")]
    Gt,
    #[token("<=")]
    Le,
    #[token(">=")]
    Ge,
    #[token("==")]
    EqEq,
    #[token("!=")]
    Ne,
    #[token("=")]
    Assign,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("%")]
    Percent,
    #[token(",")]
    Comma,
    #[token(";")]
    Semi,
    #[token(":")]
    Colon,
    #[token("..")]
    DotDot,
    #[token(".")]
    Dot,
    #[token("&&")]
    AndAnd,
    #[token("||")]
    OrOr,
    #[token("!")]
    Bang,
    #[token("&")]
    Amp,
    #[token("|")]
    Pipe,
    #[token("^")]
    Caret,
    #[token("~")]
    Tilde,
    #[token("<<")]
    ShiftLeft,
    #[token(">>")]
    ShiftRight,
    /// `<` directly after a name and before a dtype: `cast<f16>`.
    GenericOpen,
    /// The matching `>`.
    GenericClose,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::DType(d) => write!(f, "dtype `{d}`"),
            Tok::Ident(s) => write!(f, "name `{s}`"),
            Tok::Int(v) => write!(f, "integer `{v}`"),
            Tok::Float(v) => write!(f, "number `{v}`"),
            other => {
                let text = match other {
                    Tok::Kernel => "kernel",
                    Tok::Reference => "reference",
                    Tok::Layout => "layout",
                    Tok::Reg => "reg",
                    Tok::At => "@",
                    Tok::Let => "let",
                    Tok::For => "for",
                    Tok::In => "in",
                    Tok::If => "if",
                    Tok::Else => "else",
                    Tok::Grid => "grid",
                    Tok::Warps => "warps",
                    Tok::Global => "global",
                    Tok::Mut => "mut",
                    Tok::True => "true",
                    Tok::False => "false",
                    Tok::Inf => "inf",
                    Tok::LParen => "(",
                    Tok::RParen => ")",
                    Tok::LBracket => "[",
                    Tok::RBracket => "]",
                    Tok::LBrace => "{",
                    Tok::RBrace => "}",
                    Tok::Lt | Tok::GenericOpen => "<",
                    Tok::Gt | Tok::GenericClose => ">",
                    Tok::Le => "<=",
                    Tok::Ge => ">=",
                    Tok::EqEq => "==",
                    Tok::Ne => "!=",
                    Tok::Assign => "=",
                    Tok::Plus => "+",
                    Tok::Minus => "-",
                    Tok::Star => "*",
                    Tok::Slash => "/",
                    Tok::Percent => "%",
                    Tok::Comma => ",",
                    Tok::Semi => ";",
                    Tok::Colon => ":",
                    Tok::DotDot => "..",
                    Tok::Dot => ".",
                    Tok::AndAnd => "&&",
                    Tok::OrOr => "||",
                    Tok::Bang => "!",
                    Tok::Amp => "&",
                    Tok::Pipe => "|",
                    Tok::Caret => "^",
                    Tok::Tilde => "~",
                    Tok::ShiftLeft => "<<",
                    Tok::ShiftRight => ">>",
                    _ => unreachable!("handled above"),
                };
                write!(f, "`{text}`")
            }
        }
    }
}

/// One lexed token or a lexing error, with its span.
pub type Spanned = (usize, Result<Tok, LexError>, usize);

/// Lexes the whole source. Errors stay in the stream at their place.
pub fn lex(source: &str) -> Vec<Spanned> {
    let mut tokens: Vec<Spanned> = Tok::lexer(source)
        .spanned()
        .map(|(tok, span)| (span.start, tok, span.end))
        .collect();
    for t in tokens.iter_mut() {
        if let Ok(Tok::Ident(name)) = &t.1 {
            if let Some(d) = DType::from_name(name) {
                t.1 = Ok(Tok::DType(d));
            }
        }
    }
    mark_generic_brackets(&mut tokens);
    tokens
}

fn mark_generic_brackets(tokens: &mut [Spanned]) {
    for i in 0..tokens.len().saturating_sub(3) {
        // `name<dtype>` always; `name<Name>(` too, for dtype parameters (`a < b > (c)` is not
        // an expression, because comparisons do not chain).
        let is_generic = matches!(tokens[i].1, Ok(Tok::Ident(_)))
            && matches!(tokens[i + 1].1, Ok(Tok::Lt))
            && (matches!(tokens[i + 2].1, Ok(Tok::DType(_)))
                || (matches!(tokens[i + 2].1, Ok(Tok::Ident(_)))
                    && matches!(tokens.get(i + 4).map(|t| &t.1), Some(Ok(Tok::LParen)))))
            && matches!(tokens[i + 3].1, Ok(Tok::Gt));
        if is_generic {
            tokens[i + 1].1 = Ok(Tok::GenericOpen);
            tokens[i + 3].1 = Ok(Tok::GenericClose);
        }
    }
}

/// The span of a token.
pub fn span_of(t: &Spanned) -> Span {
    Span::new(t.0, t.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Result<Tok, LexError>> {
        lex(s).into_iter().map(|t| t.1).collect()
    }

    #[test]
    fn keywords_dtypes_and_names() {
        assert_eq!(
            toks("kernel f16 f16x bf16 in_ u4 f6e3m2 f1 i9"),
            vec![
                Ok(Tok::Kernel),
                Ok(Tok::DType(DType::F16)),
                Ok(Tok::Ident("f16x".into())),
                Ok(Tok::DType(DType::BF16)),
                Ok(Tok::Ident("in_".into())),
                Ok(Tok::DType(DType::U4)),
                Ok(Tok::DType(DType::F6E3M2)),
                Ok(Tok::Ident("f1".into())),
                Ok(Tok::Ident("i9".into())),
            ]
        );
    }

    #[test]
    fn generic_brackets_are_marked() {
        let t = toks("cast<f16>(x) a < b");
        assert_eq!(t[1], Ok(Tok::GenericOpen));
        assert_eq!(t[3], Ok(Tok::GenericClose));
        assert_eq!(t[8], Ok(Tok::Lt));
    }

    #[test]
    fn literals_and_errors() {
        assert_eq!(toks("0x10 1.5 2e3"), vec![Ok(Tok::Int(16)), Ok(Tok::Float(1.5)), Ok(Tok::Float(2000.0))]);
        assert_eq!(toks("99999999999999999999"), vec![Err(LexError::IntegerTooLarge)]);
        assert_eq!(toks("1e999"), vec![Err(LexError::BadFloat)]);
        assert_eq!(toks("$"), vec![Err(LexError::UnexpectedCharacter)]);
        assert_eq!(toks("0..4"), vec![Ok(Tok::Int(0)), Ok(Tok::DotDot), Ok(Tok::Int(4))]);
    }
}
