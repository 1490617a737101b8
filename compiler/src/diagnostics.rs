//! Diagnostics: an error or warning with a primary source span, secondary labels and notes,
//! rendered once, at the edge, with the file name, line, column, the source line and a marker
//! under the offending text.
//!
//! Every layer (lexer, parser, sema, lowering) reports `Diagnostic`s; none of them prints.

use std::fmt;

/// A half-open byte range into one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end: end.max(start) }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// A secondary place that explains the primary one ("first defined here").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// Where the problem is; `None` for problems that concern the whole file or invocation.
    pub span: Option<Span>,
    pub labels: Vec<Label>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span: Some(span),
            labels: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn error_nowhere(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span: None,
            labels: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { span, message: message.into() });
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Renders this diagnostic against the source it refers to.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        self.render_with(file_name, &LineIndex::new(source))
    }

    /// [`Diagnostic::render`] with the line starts of the source already indexed.
    pub fn render_with(&self, file_name: &str, index: &LineIndex) -> String {
        let mut out = String::new();
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.push_str(&format!("{kind}: {}\n", self.message));
        if let Some(span) = self.span {
            render_snippet(&mut out, file_name, index, span, "", true);
        } else {
            out.push_str(&format!("  --> {file_name}\n"));
        }
        for label in &self.labels {
            render_snippet(&mut out, file_name, index, label.span, &label.message, false);
        }
        for note in &self.notes {
            out.push_str(&format!("  = note: {note}\n"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Line starts of one source, computed once, so that finding the line and column of an offset
/// costs a binary search instead of a scan from the start of the file.
pub struct LineIndex<'a> {
    source: &'a str,
    /// Byte offset of the first character of every line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(source: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0).chain(source.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { source, starts }
    }

    /// 1-based line and column (in characters) of byte `offset` (clamped to the source and to
    /// a character boundary), and the byte range of its line without the newline.
    pub fn line_col(&self, offset: usize) -> (usize, usize, std::ops::Range<usize>) {
        let source = self.source;
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let line_start = self.starts[line - 1];
        let line_end = self.starts.get(line).map_or(source.len(), |&next| next - 1);
        let col = source[line_start..offset].chars().count() + 1;
        (line, col, line_start..line_end)
    }
}

/// Line and column of increasing offsets (the tokens of a file, in order) in time linear in
/// the source: each call continues counting characters where the previous one stopped.
pub struct PositionCursor<'a> {
    source: &'a str,
    offset: usize,
    line: usize,
    col: usize,
}

impl<'a> PositionCursor<'a> {
    pub fn new(source: &'a str) -> PositionCursor<'a> {
        PositionCursor { source, offset: 0, line: 1, col: 1 }
    }

    /// 1-based line and column of `offset`; offsets below the previous one restart the count.
    pub fn line_col(&mut self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.source.len());
        while !self.source.is_char_boundary(offset) {
            offset -= 1;
        }
        if offset < self.offset {
            *self = PositionCursor::new(self.source);
        }
        for c in self.source[self.offset..offset].chars() {
            if c == '\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
        }
        self.offset = offset;
        (self.line, self.col)
    }
}

/// 1-based line and column of byte `offset` in `source`, and the byte range of its line. Scans
/// the source: to place many offsets, build a [`LineIndex`] once.
pub fn line_col(source: &str, offset: usize) -> (usize, usize, std::ops::Range<usize>) {
    LineIndex::new(source).line_col(offset)
}

/// At most this many diagnostics are rendered by [`render_all`]; a last line counts the rest.
pub const MAX_RENDERED_DIAGNOSTICS: usize = 100;

fn render_snippet(
    out: &mut String,
    file_name: &str,
    index: &LineIndex,
    span: Span,
    label: &str,
    primary: bool,
) {
    let source = index.source;
    let (line, col, range) = index.line_col(span.start);
    let text = source[range.clone()].trim_end_matches('\r');
    // Replace tabs so that the marker lines up; keep control characters from garbling a terminal.
    let shown: String = text
        .chars()
        .map(|c| if c == '\t' { ' ' } else if c.is_control() { '?' } else { c })
        .collect();
    let gutter = line.to_string().len();
    let pad = " ".repeat(gutter);
    let arrow = if primary { "-->" } else { ":::" };
    out.push_str(&format!("{pad}{arrow} {file_name}:{line}:{col}\n"));
    out.push_str(&format!("{pad} |\n"));
    out.push_str(&format!("{line} | {shown}\n"));
    let span_end = span.end.min(range.end).max(span.start);
    let mut width = source
        .get(span.start.min(range.end)..span_end)
        .map_or(1, |s| s.chars().count());
    if width == 0 {
        width = 1;
    }
    let marker = if primary { "^" } else { "-" };
    out.push_str(&format!(
        "{pad} | {}{}{}{}\n",
        " ".repeat(col - 1),
        marker.repeat(width),
        if label.is_empty() { "" } else { " " },
        label
    ));
}

/// Renders a list of diagnostics, separated by blank lines, with a summary line.
/// Past [`MAX_RENDERED_DIAGNOSTICS`], the rest are counted, not shown.
pub fn render_all(diagnostics: &[Diagnostic], file_name: &str, source: &str) -> String {
    let index = LineIndex::new(source);
    let mut out = String::new();
    for d in diagnostics.iter().take(MAX_RENDERED_DIAGNOSTICS) {
        out.push_str(&d.render_with(file_name, &index));
        out.push('\n');
    }
    if diagnostics.len() > MAX_RENDERED_DIAGNOSTICS {
        let more = diagnostics.len() - MAX_RENDERED_DIAGNOSTICS;
        out.push_str(&format!(
            "note: {more} more diagnostic{} not shown (only the first {MAX_RENDERED_DIAGNOSTICS} are)\n",
            if more == 1 { "" } else { "s" }
        ));
    }
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    if errors > 0 {
        out.push_str(&format!(
            "error: {file_name}: {errors} error{} found\n",
            if errors == 1 { "" } else { "s" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_and_marker() {
        let src = "kernel k() {\n    let x = foo;\n}\n";
        let start = src.find("foo").unwrap();
        let d = Diagnostic::error("unknown name `foo`", Span::new(start, start + 3));
        let text = d.render("k.tl", src);
        assert!(text.contains("k.tl:2:13"), "{text}");
        assert!(text.contains("2 |     let x = foo;"), "{text}");
        assert!(text.contains("^^^"), "{text}");
    }

    #[test]
    fn spans_past_the_end_do_not_panic() {
        let d = Diagnostic::error("eof", Span::new(100, 200));
        let text = d.render("k.tl", "abc");
        assert!(text.contains("k.tl:1:4"), "{text}");
    }

    /// Line and column by a scan from the start, written from the definition.
    fn scanned(source: &str, offset: usize) -> (usize, usize) {
        let before = &source[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap().chars().count() + 1;
        (line, col)
    }

    #[test]
    fn line_index_and_cursor_agree_with_a_scan() {
        let src = "ab\r\n\nµx = 1;\n\tq\n\n€€ end";
        let index = LineIndex::new(src);
        let mut cursor = PositionCursor::new(src);
        for (offset, _) in src.char_indices().chain(std::iter::once((src.len(), ' '))) {
            let (line, col, range) = index.line_col(offset);
            assert_eq!((line, col), scanned(src, offset), "offset {offset}");
            assert_eq!(cursor.line_col(offset), (line, col), "offset {offset}");
            assert!(range.start <= offset && offset <= range.end && !src[range].contains('\n'));
        }
        // Backwards and into the middle of a character.
        assert_eq!(cursor.line_col(1), (1, 2));
        let inside = src.find('€').unwrap() + 1;
        assert_eq!(index.line_col(inside).0, 6);
    }

    #[test]
    fn render_all_shows_at_most_the_cap_and_counts_the_rest() {
        let src = "x\n".repeat(MAX_RENDERED_DIAGNOSTICS + 7);
        let diagnostics: Vec<Diagnostic> =
            (0..MAX_RENDERED_DIAGNOSTICS + 7).map(|i| Diagnostic::error(format!("bad {i}"), Span::new(2 * i, 2 * i + 1))).collect();
        let text = render_all(&diagnostics, "k.tl", &src);
        assert_eq!(text.matches("error: bad").count(), MAX_RENDERED_DIAGNOSTICS);
        assert!(text.contains(&format!("k.tl:{}:1", MAX_RENDERED_DIAGNOSTICS)), "{text}");
        assert!(text.contains("7 more diagnostics not shown"), "{text}");
        assert!(text.contains(&format!("{} errors found", MAX_RENDERED_DIAGNOSTICS + 7)), "{text}");
    }
}
