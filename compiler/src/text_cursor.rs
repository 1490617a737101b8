//! A cursor over the text forms the IRs print, shared by their parsers (`ir::parse`,
//! `lir::parse`): whitespace, words, punctuation, integers, quoted strings, and errors placed
//! at a line and column.

/// Malformed IR text, at a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct TextError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

pub type TextResult<T> = Result<T, TextError>;

/// Nesting deeper than this (statements, expressions) is refused, which bounds the parsers'
/// recursion.
pub const MAX_DEPTH: usize = 200;

/// A position in a text.
pub struct Cursor<'t> {
    pub text: &'t str,
    /// Byte offset of the next character.
    pub at: usize,
    /// How deep the parser is in nested statements or expressions.
    depth: usize,
}

impl<'t> Cursor<'t> {
    pub fn new(text: &'t str) -> Cursor<'t> {
        Cursor { text, at: 0, depth: 0 }
    }

    /// One level deeper into nested statements or expressions; beyond [`MAX_DEPTH`] an error.
    pub fn enter(&mut self) -> TextResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { Err(self.error("nesting too deep")) } else { Ok(()) }
    }

    /// Back out of one level of [`Cursor::enter`].
    pub fn leave(&mut self) {
        self.depth -= 1;
    }

    pub fn error(&self, message: impl Into<String>) -> TextError {
        let before = &self.text[..self.at];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.chars().count(), |i| before[i + 1..].chars().count()) + 1;
        TextError { line, column, message: message.into() }
    }

    pub fn rest(&self) -> &'t str {
        &self.text[self.at..]
    }

    pub fn at_end(&self) -> bool {
        self.at >= self.text.len()
    }

    /// Nothing but whitespace may follow `what`.
    pub fn finish(&mut self, what: &str) -> TextResult<()> {
        self.skip_space();
        if self.at_end() { Ok(()) } else { Err(self.error(format!("text after the end of the {what}"))) }
    }

    /// Skips spaces and newlines.
    pub fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    /// Skips spaces, not newlines.
    pub fn skip_blanks(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    /// Consumes `s` (after blanks) if it comes next.
    pub fn eat(&mut self, s: &str) -> bool {
        self.skip_blanks();
        if self.rest().starts_with(s) {
            self.at += s.len();
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, s: &str) -> TextResult<()> {
        if self.eat(s) { Ok(()) } else { Err(self.error(format!("expected `{s}`"))) }
    }

    /// A word (after blanks): letters, digits, `_` and `.`; empty when none.
    pub fn word(&mut self) -> &'t str {
        self.skip_blanks();
        let rest = self.rest();
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    /// Consumes the word `w` if it comes next (and nothing else).
    pub fn eat_word(&mut self, w: &str) -> bool {
        self.skip_blanks();
        let at = self.at;
        if self.word() == w {
            return true;
        }
        self.at = at;
        false
    }

    /// The word `w` must come next.
    pub fn expect_word(&mut self, w: &str) -> TextResult<()> {
        if self.eat_word(w) { Ok(()) } else { Err(self.error(format!("expected `{w}`"))) }
    }

    /// The next word, turned into a `T` by `lookup`; when it does not, an error at the word
    /// saying `message(word)`.
    pub fn word_as<T>(&mut self, lookup: impl FnOnce(&str) -> Option<T>, message: impl FnOnce(&str) -> String) -> TextResult<T> {
        self.skip_blanks();
        let at = self.at;
        let word = self.word();
        match lookup(word) {
            Some(value) => Ok(value),
            None => {
                self.at = at;
                Err(self.error(message(word)))
            }
        }
    }

    /// The rest of the line, without the newline.
    pub fn line_rest(&mut self) -> &'t str {
        let rest = self.rest();
        let len = rest.find('\n').unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    /// The text of a number (after blanks): letters, digits, sign and `.` (so `-1.5e-7`,
    /// `inf`, `NaN`).
    pub fn number_text(&mut self) -> &'t str {
        self.skip_blanks();
        let rest = self.rest();
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '+' || c == '.')).unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    /// A decimal integer, optionally negative.
    pub fn integer<T: std::str::FromStr>(&mut self, what: &str) -> TextResult<T> {
        self.skip_blanks();
        let rest = self.rest();
        let sign = usize::from(rest.starts_with('-'));
        let len = sign + rest[sign..].find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len() - sign);
        let text = &rest[..len];
        let value = text.parse().map_err(|_| self.error(format!("expected {what}, found `{}`", self.line_rest_peek())))?;
        self.at += len;
        Ok(value)
    }

    fn line_rest_peek(&self) -> &'t str {
        let rest = self.rest();
        let end = rest.find([' ', '\n', ',', ')', ']']).unwrap_or(rest.len());
        &rest[..end]
    }

    /// A double-quoted string with the escapes Rust's `{:?}` writes.
    pub fn string(&mut self) -> TextResult<String> {
        self.skip_blanks();
        if !self.rest().starts_with('"') {
            return Err(self.error("expected a string"));
        }
        self.at += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += i + 1;
                    return Ok(out);
                }
                '\\' => {
                    let escaped = match chars.next().map(|(_, e)| e) {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('0') => '\0',
                        Some('\\') => '\\',
                        Some('"') => '"',
                        Some('\'') => '\'',
                        Some('u') => {
                            if chars.next().map(|(_, c)| c) != Some('{') {
                                return Err(self.error("expected `\\u{...}`"));
                            }
                            let mut hex = String::new();
                            for (_, h) in chars.by_ref() {
                                if h == '}' {
                                    break;
                                }
                                hex.push(h);
                            }
                            u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).ok_or_else(|| self.error("bad `\\u{...}` escape"))?
                        }
                        _ => return Err(self.error("unknown escape in a string")),
                    };
                    out.push(escaped);
                }
                c => out.push(c),
            }
        }
        Err(self.error("unterminated string"))
    }
}

/// `open item, item, ... close`, for any parser built on a [`Cursor`].
pub fn list<'t, P, T>(p: &mut P, open: &str, close: &str, mut item: impl FnMut(&mut P) -> TextResult<T>) -> TextResult<Vec<T>>
where
    P: std::ops::DerefMut<Target = Cursor<'t>>,
{
    p.expect(open)?;
    let mut items = Vec::new();
    if p.eat(close) {
        return Ok(items);
    }
    loop {
        items.push(item(p)?);
        if p.eat(close) {
            return Ok(items);
        }
        p.expect(",")?;
    }
}

/// Items up to a closing `}` (not consumed), one nesting level deeper.
pub fn items_until_brace<'t, P, T>(p: &mut P, mut item: impl FnMut(&mut P) -> TextResult<T>) -> TextResult<Vec<T>>
where
    P: std::ops::DerefMut<Target = Cursor<'t>>,
{
    p.enter()?;
    let mut items = Vec::new();
    loop {
        p.skip_space();
        if p.rest().is_empty() || p.rest().starts_with('}') {
            break;
        }
        items.push(item(p)?);
    }
    p.leave();
    Ok(items)
}

/// `{ items }`.
pub fn braced<'t, P, T>(p: &mut P, item: impl FnMut(&mut P) -> TextResult<T>) -> TextResult<Vec<T>>
where
    P: std::ops::DerefMut<Target = Cursor<'t>>,
{
    p.expect("{")?;
    let items = items_until_brace(p, item)?;
    p.expect("}")?;
    Ok(items)
}
