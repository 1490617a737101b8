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
        let mut out = String::new();
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.push_str(&format!("{kind}: {}\n", self.message));
        if let Some(span) = self.span {
            render_snippet(&mut out, file_name, source, span, "", true);
        } else {
            out.push_str(&format!("  --> {file_name}\n"));
        }
        for label in &self.labels {
            render_snippet(&mut out, file_name, source, label.span, &label.message, false);
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

/// Line (1-based), column (1-based, in characters) and the byte range of the line holding `offset`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize, std::ops::Range<usize>) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[offset..].find('\n').map_or(source.len(), |i| offset + i);
    let line = source[..line_start].matches('\n').count() + 1;
    let col = source[line_start..offset].chars().count() + 1;
    (line, col, line_start..line_end)
}

fn render_snippet(
    out: &mut String,
    file_name: &str,
    source: &str,
    span: Span,
    label: &str,
    primary: bool,
) {
    let (line, col, range) = line_col(source, span.start);
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
pub fn render_all(diagnostics: &[Diagnostic], file_name: &str, source: &str) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.render(file_name, source));
        out.push('\n');
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
}
