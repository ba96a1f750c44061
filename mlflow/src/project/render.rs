//! Command rendering as MLflow does it: Python's `str.format` with keyword arguments, each
//! value quoted by `shlex.quote`.
//!
//! Supported: literal text with `{{`/`}}` escapes, `{name}`, the `!s` conversion and string
//! format specs (`[[fill]align][0][width][.precision][s]`), with Python's errors. Refused with
//! a clear error: positional fields (`{}`, `{0}`), attribute and index lookups (`{a.b}`,
//! `{a[0]}`), `!r`/`!a`, and nested fields in specs, which no MLproject needs.

use std::collections::BTreeMap;

use super::ParamError;

/// Quotes `value` for a POSIX shell exactly like Python's `shlex.quote`.
pub fn shell_quote(value: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if value.is_empty() {
        "''".to_owned()
    } else if value.chars().all(safe) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r#"'"'"'"#))
    }
}

/// A parsed command template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field { name: String, spec: Spec },
}

/// A string format spec: `[[fill]align][0][width][.precision][s]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    fill: char,
    align: char,
    width: usize,
    precision: Option<usize>,
}

/// Widths and precisions above this are refused rather than allocated.
const MAX_WIDTH: usize = 1 << 16;

fn template_error(reason: impl Into<String>) -> ParamError {
    ParamError::Template { reason: reason.into() }
}

impl Template {
    /// Parses `command` as Python's `string.Formatter` would.
    pub(crate) fn parse(command: &str) -> Result<Template, ParamError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = command.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' | '}' if chars.peek() == Some(&c) => {
                    chars.next();
                    literal.push(c);
                }
                '}' => return Err(template_error("Single '}' encountered in format string")),
                '{' if chars.peek().is_none() => return Err(template_error("Single '{' encountered in format string")),
                '{' => {
                    let mut depth = 1;
                    let mut field = String::new();
                    loop {
                        let next = chars.next().ok_or_else(|| template_error("expected '}' before end of string"))?;
                        match next {
                            '{' => depth += 1,
                            '}' if depth == 1 => break,
                            '}' => depth -= 1,
                            _ => {}
                        }
                        field.push(next);
                    }
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    pieces.push(parse_field(&field)?);
                }
                _ => literal.push(c),
            }
        }
        pieces.push(Piece::Literal(literal));
        pieces.retain(|p| !matches!(p, Piece::Literal(s) if s.is_empty()));
        Ok(Template { pieces })
    }
}

impl Template {
    /// The parameter names the template refers to, in order of appearance.
    pub(crate) fn field_names(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field { name, .. } => Some(name.as_str()),
            Piece::Literal(_) => None,
        })
    }

    /// Substitutes `values` (already quoted) into the template.
    pub(crate) fn render(&self, values: &BTreeMap<&str, String>) -> Result<String, ParamError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Field { name, spec } => {
                    let value =
                        values.get(name.as_str()).ok_or_else(|| ParamError::Undeclared { name: name.clone() })?;
                    spec.apply(value, &mut out);
                }
            }
        }
        Ok(out)
    }
}

/// Parses the inside of one `{...}`: `name[!conversion][:spec]`.
fn parse_field(field: &str) -> Result<Piece, ParamError> {
    let mut name_end = field.len();
    let mut in_brackets = false;
    for (i, c) in field.char_indices() {
        match c {
            '{' if !in_brackets => return Err(template_error("unexpected '{' in field name")),
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            ':' | '!' if !in_brackets => {
                name_end = i;
                break;
            }
            _ => {}
        }
    }
    let name = &field[..name_end];
    let mut rest = field[name_end..].chars();
    let spec_text = match rest.next() {
        None => "",
        Some(':') => rest.as_str(),
        Some(_) => {
            let conversion =
                rest.next().ok_or_else(|| template_error("end of string while looking for conversion specifier"))?;
            let spec_text = match rest.next() {
                None => "",
                Some(':') => rest.as_str(),
                Some(_) => return Err(template_error("expected ':' after conversion specifier")),
            };
            match conversion {
                's' => {}
                'r' | 'a' => {
                    return Err(template_error(format!(
                        "{{{name}!{conversion}}}: the !r and !a conversions are not supported"
                    )));
                }
                other => return Err(template_error(format!("Unknown conversion specifier {other}"))),
            }
            spec_text
        }
    };
    let first = name.split(['.', '[']).next().unwrap_or_default();
    if first.is_empty() || first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(template_error(format!(
            "{{{name}}}: positional fields are not supported; MLflow passes parameters by name"
        )));
    }
    if first.len() != name.len() {
        return Err(template_error(format!("{{{name}}}: attribute and index lookups are not supported")));
    }
    if spec_text.contains('{') {
        return Err(template_error(format!("{{{field}}}: nested fields in format specs are not supported")));
    }
    Ok(Piece::Field { name: name.to_owned(), spec: Spec::parse(spec_text)? })
}

/// Reads a run of ASCII digits at the front of `chars`.
fn take_number(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut digits = String::new();
    while let Some(d) = chars.next_if(char::is_ascii_digit) {
        digits.push(d);
    }
    if digits.is_empty() {
        None
    } else {
        // Too many digits to parse is as refused as too large a number.
        Some(digits.parse().unwrap_or(usize::MAX))
    }
}

impl Spec {
    /// Parses a format spec for a `str` value, with Python's error messages.
    fn parse(text: &str) -> Result<Spec, ParamError> {
        let is_align = |c: char| matches!(c, '<' | '>' | '^' | '=');
        let all: Vec<char> = text.chars().collect();
        let (mut fill, align, skip) = match all.as_slice() {
            [f, a, ..] if is_align(*a) => (Some(*f), Some(*a), 2),
            [a, ..] if is_align(*a) => (None, Some(*a), 1),
            _ => (None, None, 0),
        };
        let mut chars = text[text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i)..].chars().peekable();
        if chars.next_if(|c| matches!(c, '+' | '-' | ' ')).is_some() {
            return Err(template_error("Sign not allowed in string format specifier"));
        }
        if chars.next_if_eq(&'z').is_some() {
            return Err(template_error("Negative zero coercion (z) not allowed in format specifier"));
        }
        if chars.next_if_eq(&'#').is_some() {
            return Err(template_error("Alternate form (#) not allowed in string format specifier"));
        }
        if fill.is_none() && chars.next_if_eq(&'0').is_some() {
            fill = Some('0');
        }
        let width = take_number(&mut chars).unwrap_or(0);
        if let Some(sep) = chars.next_if(|c| matches!(c, ',' | '_')) {
            return Err(template_error(format!("Cannot specify '{sep}' with 's'.")));
        }
        let precision = match chars.next_if_eq(&'.') {
            Some(_) => {
                Some(take_number(&mut chars).ok_or_else(|| template_error("Format specifier missing precision"))?)
            }
            None => None,
        };
        let rest: String = chars.collect();
        match rest.as_str() {
            "" | "s" => {}
            code if code.chars().count() == 1 => {
                return Err(template_error(format!("Unknown format code '{code}' for object of type 'str'")));
            }
            _ => return Err(template_error(format!("Invalid format specifier '{text}' for object of type 'str'"))),
        }
        if align == Some('=') {
            return Err(template_error("'=' alignment not allowed in string format specifier"));
        }
        if width > MAX_WIDTH || precision.is_some_and(|p| p > MAX_WIDTH) {
            return Err(template_error(format!("width or precision above {MAX_WIDTH} in format spec '{text}'")));
        }
        Ok(Spec { fill: fill.unwrap_or(' '), align: align.unwrap_or('<'), width, precision })
    }

    /// Appends `value` formatted by this spec to `out`.
    fn apply(&self, value: &str, out: &mut String) {
        let value: String = match self.precision {
            Some(p) => value.chars().take(p).collect(),
            None => value.to_owned(),
        };
        let pad = self.width.saturating_sub(value.chars().count());
        let (left, right) = match self.align {
            '>' => (pad, 0),
            '^' => (pad / 2, pad - pad / 2),
            _ => (0, pad),
        };
        out.extend(std::iter::repeat_n(self.fill, left));
        out.push_str(&value);
        out.extend(std::iter::repeat_n(self.fill, right));
    }
}
