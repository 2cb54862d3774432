//! Config errors with their place in the file, so `sluice check` can print every problem as
//! `FILE:LINE:COLUMN: message`, the way compilers do.

use std::fmt;
use std::ops::Range;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `FILE:LINE:COLUMN` (or just `FILE` when the problem has no single place).
    pub location: String,
    pub message: String,
}

/// Every problem found in one config file (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: error: {}", e.location, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Turns byte offsets into `FILE:LINE:COLUMN` for one source text.
pub(crate) struct Locator<'a> {
    name: &'a str,
    text: &'a str,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(name: &'a str, text: &'a str) -> Self {
        Self { name, text }
    }

    /// `FILE:LINE:COLUMN` of the start of `span` (1-based, column in characters).
    pub(crate) fn at(&self, span: Option<Range<usize>>) -> String {
        let Some(span) = span else {
            return self.name.to_owned();
        };
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        format!("{}:{line}:{column}", self.name)
    }

    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            location: self.at(span),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_lines_and_character_columns() {
        let text = "a = 1\nné = \"x\"\n";
        let l = Locator::new("f.toml", text);
        assert_eq!(l.at(Some(0..1)), "f.toml:1:1");
        let x = text.find('"').unwrap();
        assert_eq!(l.at(Some(x..x + 1)), "f.toml:2:6");
        assert_eq!(l.at(Some(1000..1001)), "f.toml:3:1");
        assert_eq!(l.at(None), "f.toml");
    }

    #[test]
    fn display_lists_every_error() {
        let errs = ConfigErrors(vec![
            ConfigError {
                location: "a:1:1".into(),
                message: "one".into(),
            },
            ConfigError {
                location: "a:2:1".into(),
                message: "two".into(),
            },
        ]);
        assert_eq!(errs.to_string(), "a:1:1: error: one\na:2:1: error: two");
    }
}
