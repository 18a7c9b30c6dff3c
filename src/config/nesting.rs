//! How deeply a config nests, measured before any parser recurses into it.
//!
//! The TOML parser and the typed deserializer recurse once per level of array,
//! inline table and dotted key, and the hypervisor parses its config on a
//! fixed-size EL2 stack (64 KiB in release builds). The `toml` crate stops at 80
//! levels, but a frame of the deserializer is large enough that 80 levels is not
//! a bound this stack is known to survive in every build. So the text is scanned
//! first, without recursion, and a config deeper than [`MAX_NESTING`] is refused
//! as an error naming the line — the deepest real config nests four levels
//! (`[vm.cpu.id]` with a dotted key in it).

use super::error::{ConfigError, Source};

/// The deepest nesting accepted: arrays, inline tables, and table or key path
/// segments, counted together.
pub(crate) const MAX_NESTING: usize = 16;

#[derive(Clone, Copy, PartialEq)]
enum Open {
    Array,
    Inline,
}

/// Refuses `text` if anything in it nests deeper than [`MAX_NESTING`]. Strings and
/// comments are skipped; syntax errors are left to the parser.
pub(crate) fn check(src: &Source<'_>, text: &str) -> Result<(), ConfigError> {
    let bytes = text.as_bytes();
    // The open arrays and inline tables, innermost last (a count, not a stack,
    // per kind would not tell which one a `,` belongs to; the stack is bounded
    // by MAX_NESTING since deeper text is refused as soon as it is seen).
    let mut open: [Open; MAX_NESTING + 1] = [Open::Array; MAX_NESTING + 1];
    let mut depth = 0usize;
    // Segments of the key (or table header) being read, when reading one.
    let mut key_segments: Option<usize> = Some(1);
    // Inside a `[header]` or `[[header]]` at the top level.
    let mut header = false;
    // How deep the current table header put the keys below it.
    let mut base = 0usize;
    let mut i = 0;
    let too_deep = |at: usize| {
        src.error_at(
            Some(at..at + 1),
            "",
            alloc::format!(
                "nested more than {MAX_NESTING} levels deep (arrays, inline tables and \
                 dotted keys together); no config needs that many"
            ),
        )
    };
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' => {
                let triple = bytes.get(i..i + 3) == Some(&[c, c, c][..]);
                i += if triple { 3 } else { 1 };
                while i < bytes.len() {
                    if c == b'"' && bytes[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if triple {
                        if bytes.get(i..i + 3) == Some(&[c, c, c][..]) {
                            i += 3;
                            // A closing run may be up to five quotes long.
                            while i < bytes.len() && bytes[i] == c {
                                i += 1;
                            }
                            break;
                        }
                    } else if bytes[i] == c || bytes[i] == b'\n' {
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                continue;
            }
            b'\n' if depth == 0 => {
                key_segments = Some(1);
                header = false;
            }
            b'[' if depth == 0 && key_segments.is_some() && !header => {
                // A table header: `[a.b]` or `[[a.b]]`.
                header = true;
                base = 0;
                if bytes.get(i + 1) == Some(&b'[') {
                    i += 1;
                }
            }
            b']' if header => {
                header = false;
                base = key_segments.unwrap_or(1);
                key_segments = None;
            }
            b'[' | b'{' => {
                if depth == MAX_NESTING {
                    return Err(too_deep(i));
                }
                open[depth] = if c == b'[' { Open::Array } else { Open::Inline };
                depth += 1;
                key_segments = (c == b'{').then_some(1);
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                key_segments = None;
            }
            b',' if depth > 0 && open[depth - 1] == Open::Inline => key_segments = Some(1),
            b'=' => key_segments = None,
            b'.' => {
                if let Some(n) = key_segments.as_mut() {
                    *n += 1;
                    let from = if header { 0 } else { base };
                    if from + depth + *n > MAX_NESTING {
                        return Err(too_deep(i));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}
