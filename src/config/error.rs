//! Config errors: file, line:column, field path and reason.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A line and column in the config file, both counted from 1 (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

/// A bad config: which file, where, which field, and why.
///
/// Displays as `FILE:LINE:COL: FIELD: REASON`, e.g.
/// `boards/qemu-virt/demo.toml:7:10: vm.demo.memory: 3M is not a multiple of 2M ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file's name as given to [`super::SystemConfig::parse`].
    pub file: String,
    /// Where in the file, when the error is about a particular place.
    pub position: Option<Position>,
    /// The field, as a dotted path with VMs named by their `name`: `vm.demo.memory`,
    /// `vm.demo.passthrough[0].base`, `console.switch_key`. Empty for the whole file.
    pub field: String,
    /// What is wrong, for a person.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(Position { line, column }) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl core::error::Error for ConfigError {}

/// Turns byte offsets in the config text into positions and errors.
pub(crate) struct Source<'t> {
    pub(crate) file: &'t str,
    text: &'t str,
    /// Byte offset at which each line starts.
    line_starts: Vec<usize>,
}

impl<'t> Source<'t> {
    pub(crate) fn new(text: &'t str, file: &'t str) -> Self {
        let line_starts = core::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            file,
            text,
            line_starts,
        }
    }

    pub(crate) fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Position {
            line: (line + 1) as u32,
            column: (column + 1) as u32,
        }
    }

    pub(crate) fn error_at(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.into(),
            position: span.map(|s| self.position(s.start)),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A `toml` error (syntax, type, unknown or missing key) as a [`ConfigError`], with the
    /// field path found by locating the error's span in the document's tree.
    pub(crate) fn toml_error(
        &self,
        error: &toml::de::Error,
        tree: Option<&DeTable<'_>>,
    ) -> ConfigError {
        let span = error.span();
        let field = match (&span, tree) {
            (Some(span), Some(tree)) => path_at(tree, span.start).unwrap_or_default(),
            _ => String::new(),
        };
        // serde names Rust types; a person writing TOML thinks in TOML types.
        let reason = error
            .message()
            .trim_end()
            .replace('\n', "; ")
            .replace("expected i64", "expected an integer")
            .replace("expected a sequence", "expected an array");
        self.error_at(span, field, reason)
    }
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The dotted path of the deepest key or value whose text contains `offset`.
/// Elements of the `vm` array are named `vm.NAME` when they have a string `name`.
/// When nothing contains `offset` (an error the parser recovered from by dropping the
/// offending text, like a duplicate key), the table holding the nearest key before it.
pub(crate) fn path_at(tree: &DeTable<'_>, offset: usize) -> Option<String> {
    find_in_table(tree, offset, "").or_else(|| {
        let mut keys = Vec::new();
        collect_keys(tree, "", &mut keys);
        let (_, path) = keys
            .into_iter()
            .filter(|(start, _)| *start <= offset)
            .max_by_key(|(start, _)| *start)?;
        path.rsplit_once('.').map(|(table, _)| table.to_string())
    })
}

/// Every key in the tree as (start offset, dotted path), named as [`path_at`] names them.
fn collect_keys(table: &DeTable<'_>, prefix: &str, out: &mut Vec<(usize, String)>) {
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        out.push((key.span().start, path.clone()));
        match value.get_ref() {
            DeValue::Table(inner) => collect_keys(inner, &path, out),
            DeValue::Array(array) => {
                for (index, element) in array.iter().enumerate() {
                    if let Some(inner) = element.get_ref().as_table() {
                        let element_path = element_name(inner, &path, index);
                        collect_keys(inner, &element_path, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `vm.NAME` for a `[[vm]]` with a string name, else `PATH[INDEX]`.
fn element_name(table: &DeTable<'_>, path: &str, index: usize) -> String {
    match table.get("name").and_then(|n| n.get_ref().as_str()) {
        Some(name) if path == "vm" => format!("vm.{name}"),
        _ => format!("{path}[{index}]"),
    }
}

fn find_in_table(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        if covers(&key.span(), offset) {
            return Some(path);
        }
        if let Some(found) = find_in_value(value, offset, &path) {
            return Some(found);
        }
    }
    None
}

fn find_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &str) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(table) => {
            if let Some(found) = find_in_table(table, offset, path) {
                return Some(found);
            }
        }
        DeValue::Array(array) => {
            for (index, element) in array.iter().enumerate() {
                let element_path = match element.get_ref().as_table() {
                    Some(table) => element_name(table, path, index),
                    None => format!("{path}[{index}]"),
                };
                if let Some(found) = find_in_value(element, offset, &element_path) {
                    return Some(found);
                }
            }
        }
        _ => {}
    }
    covers(&value.span(), offset).then(|| path.to_string())
}
