//! Configuration errors that point at the file, line and column and say what to write instead.

use std::fmt;
use std::ops::Range;

/// One problem in a routes file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; `None` when the problem is the file as a whole (unreadable).
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    /// What to write instead.
    pub help: Option<String>,
}

impl ConfigError {
    /// An error at a byte range of `text`.
    pub fn at(file: &str, text: &str, span: Range<usize>, message: impl Into<String>, help: Option<String>) -> Self {
        Self::at_line_col(file, line_col(text, span.start), message, help)
    }

    /// An error at a (line, column) already found, e.g. by a [`LineIndex`].
    pub fn at_line_col(
        file: &str,
        (line, column): (usize, usize),
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        ConfigError { file: file.into(), line: Some(line), column: Some(column), message: message.into(), help }
    }

    /// An error about the file as a whole.
    pub fn file(file: &str, message: impl Into<String>, help: Option<String>) -> Self {
        ConfigError { file: file.into(), line: None, column: None, message: message.into(), help }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.message)?,
            _ => write!(f, "{}: {}", self.file, self.message)?,
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn single(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where each line of a text starts, so that finding the line of an offset is a binary search instead of a scan
/// from the top: validation asks once per route, and a scan made a big file quadratic (issue 24).
#[derive(Debug)]
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { text, starts }
    }

    /// 1-based line and column (in characters) of a byte offset; the same answer as [`line_col`].
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, text.find('=').map_or(0, |_| 10)), (2, 4));
        assert_eq!(line_col(text, 999), (3, 1));
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(index.line_col(offset), line_col(text, offset), "offset {offset}");
        }
    }

    #[test]
    fn display_includes_help_on_its_own_line() {
        let e = ConfigError::at("r.toml", "x = 1\n", 0..1, "bad key `x`", Some("remove it".into()));
        assert_eq!(e.to_string(), "r.toml:1:1: bad key `x`\n  help: remove it");
    }
}
