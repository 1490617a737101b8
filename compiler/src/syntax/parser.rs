//! The parse driver. It guarantees that no input, however malformed, panics, hangs or blows the
//! stack: lexing errors become diagnostics and their tokens are dropped; nesting deeper than
//! `MAX_NESTING` brackets or a statement longer than `MAX_STATEMENT_TOKENS` tokens is refused
//! before the parser (and every recursive pass after it) sees the file; parse errors recover at
//! the next `;`, so one file can report several errors.

use crate::diagnostics::{Diagnostic, Span};
use crate::syntax::ast::File;
use crate::syntax::grammar::FileParser;
use crate::syntax::lexer::{self, LexError, Tok};
use lalrpop_util::ParseError;

/// Brackets (`(`, `[`, `{`) may nest this deep.
pub const MAX_NESTING: usize = 64;
/// A single statement (the tokens between `;`, `{` and `}`) may hold this many tokens; this
/// bounds the depth of any expression tree.
pub const MAX_STATEMENT_TOKENS: usize = 2048;

/// Turns raw bytes into source text, or reports where the bytes stop being UTF-8.
pub fn decode_source(bytes: &[u8]) -> Result<&str, Diagnostic> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        Diagnostic::error(
            format!("source is not valid UTF-8 (invalid byte 0x{:02x} at offset {at})", bytes[at]),
            Span::new(at, at + 1),
        )
    })
}

/// Parses a whole file. Returns the AST (partial when there were errors) and the diagnostics.
pub fn parse(source: &str) -> (File, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut tokens = Vec::new();
    let mut lex_error_starts = Vec::new();
    for (start, tok, end) in lexer::lex(source) {
        match tok {
            Ok(t) => tokens.push((start, t, end)),
            Err(e) => {
                let text = source.get(start..end).unwrap_or("");
                let message = match e {
                    LexError::UnexpectedCharacter => {
                        format!("unexpected character `{}`", text.escape_debug())
                    }
                    other => other.to_string(),
                };
                diagnostics.push(Diagnostic::error(message, Span::new(start, end)));
                lex_error_starts.push(start);
            }
        }
    }
    if let Some(d) = check_nesting(&tokens) {
        diagnostics.push(d);
        return (File { items: Vec::new() }, diagnostics);
    }
    let semicolons: Vec<usize> =
        tokens.iter().filter(|t| t.1 == Tok::Semi).map(|t| t.0).collect();
    let mut recovered = Vec::new();
    let eof = source.len();
    let result = FileParser::new().parse(&mut recovered, tokens.into_iter());
    let mut parse_errors: Vec<Diagnostic> =
        recovered.into_iter().map(|r| parse_error_to_diagnostic(r.error, eof)).collect();
    let file = match result {
        Ok(file) => file,
        Err(e) => {
            parse_errors.push(parse_error_to_diagnostic(e, eof));
            File { items: Vec::new() }
        }
    };
    // A token dropped by the lexer usually makes its statement unparsable; that parse error
    // says nothing new, so only the lexer's error is reported for the statement.
    parse_errors.retain(|d| {
        let at = d.span.map_or(eof, |s| s.start);
        !lex_error_starts.iter().any(|&l| {
            l <= at && !semicolons.iter().any(|&s| l < s && s < at)
        })
    });
    diagnostics.extend(parse_errors);
    diagnostics.sort_by_key(|d| d.span.map_or(usize::MAX, |s| s.start));
    (file, diagnostics)
}

fn check_nesting(tokens: &[(usize, Tok, usize)]) -> Option<Diagnostic> {
    let mut depth = 0usize;
    let mut run = 0usize;
    for (start, tok, end) in tokens {
        match tok {
            Tok::LParen | Tok::LBracket | Tok::LBrace => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(Diagnostic::error(
                        format!("brackets nest deeper than {MAX_NESTING} levels"),
                        Span::new(*start, *end),
                    ));
                }
            }
            Tok::RParen | Tok::RBracket | Tok::RBrace => depth = depth.saturating_sub(1),
            _ => {}
        }
        if matches!(tok, Tok::Semi | Tok::LBrace | Tok::RBrace) {
            run = 0;
        } else {
            run += 1;
            if run > MAX_STATEMENT_TOKENS {
                return Some(Diagnostic::error(
                    format!("statement is longer than {MAX_STATEMENT_TOKENS} tokens"),
                    Span::new(*start, *end),
                ));
            }
        }
    }
    None
}

fn expected_list(expected: &[String]) -> String {
    let mut names: Vec<String> = expected.iter().map(|e| pretty_expected(e)).collect();
    names.sort();
    names.dedup();
    match names.len() {
        0 => String::new(),
        1 => format!("; expected {}", names[0]),
        n if n <= 8 => format!("; expected one of {}", names.join(", ")),
        _ => String::new(),
    }
}

fn pretty_expected(terminal: &str) -> String {
    match terminal.trim_matches('"') {
        "ident" => "a name".into(),
        "int" => "an integer".into(),
        "float" => "a number".into(),
        "dtype" => "a dtype".into(),
        "generic<" => "`<`".into(),
        "generic>" => "`>`".into(),
        other => format!("`{other}`"),
    }
}

fn parse_error_to_diagnostic(e: ParseError<usize, Tok, LexError>, eof: usize) -> Diagnostic {
    match e {
        ParseError::InvalidToken { location } => {
            Diagnostic::error("invalid token", Span::new(location, location + 1))
        }
        ParseError::UnrecognizedEof { location, expected } => Diagnostic::error(
            format!("unexpected end of file{}", expected_list(&expected)),
            Span::new(location.min(eof), eof),
        ),
        ParseError::UnrecognizedToken { token: (l, tok, r), expected } => Diagnostic::error(
            format!("unexpected {tok}{}", expected_list(&expected)),
            Span::new(l, r),
        ),
        ParseError::ExtraToken { token: (l, tok, r) } => {
            Diagnostic::error(format!("unexpected {tok} after the end"), Span::new(l, r))
        }
        ParseError::User { error } => Diagnostic::error(error.to_string(), Span::new(eof, eof)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::ast::{Item, StmtKind};

    const VADD: &str = "kernel vadd<B = 128>(n: i32, a: global f32[n], c: global mut f32[n])
        grid(cdiv(n, B)) warps(4) {
        let x = load(a, [block.x * B], [B]);
        store(c, x + 1.0, [block.x * B]);
    }";

    #[test]
    fn parses_a_kernel() {
        let (file, diags) = parse(VADD);
        assert!(diags.is_empty(), "{diags:?}");
        let Item::Kernel(k) = &file.items[0] else { panic!("not a kernel") };
        assert_eq!(k.name.name, "vadd");
        assert_eq!(k.const_params.len(), 1);
        assert_eq!(k.params.len(), 3);
        assert_eq!(k.body.stmts.len(), 2);
    }

    #[test]
    fn recovers_and_reports_several_errors() {
        let src = "kernel k(n: i32) grid(1) warps(1) { let = 3; let y = ; let z = 1; }";
        let (file, diags) = parse(src);
        assert_eq!(diags.len(), 2, "{diags:?}");
        let Item::Kernel(k) = &file.items[0] else { panic!("not a kernel") };
        assert!(matches!(k.body.stmts[2].kind, StmtKind::Let { .. }));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = format!("kernel k() grid(1) warps(1) {{ let x = {}1{}; }}", "(".repeat(10000), ")".repeat(10000));
        let (_, diags) = parse(&src);
        assert!(diags[0].message.contains("nest"), "{diags:?}");
        let long = format!("kernel k() grid(1) warps(1) {{ let x = 1{}; }}", "+1".repeat(5000));
        let (_, diags) = parse(&long);
        assert!(diags[0].message.contains("longer"), "{diags:?}");
    }

    #[test]
    fn invalid_utf8_is_reported() {
        let d = decode_source(b"kernel \xff").unwrap_err();
        assert!(d.message.contains("offset 7"), "{}", d.message);
    }
}
