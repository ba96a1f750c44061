//! The YAML (or JSON) layer: text to a `serde_yaml::Value`, with syntax errors, duplicate
//! keys and empty files reported at their line and column.
//!
//! `serde_yaml::Value` has no room for integers beyond `i64`/`u64` (it rejects the whole file),
//! so the text is read with a visitor of our own that keeps such an integer as its digits,
//! tagged [`BIG_INTEGER`]; the field readers then say what is wrong with it at its place.
//!
//! Nesting is bounded by [`yaml_limits::MAX_NESTING`], checked in linear time first.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};

use concurrent_mlflow::yaml_limits::{self, Scan};

use super::error::{SpecError, SpecErrors};
use super::quote::clip;

/// The tag of an integer too large for `i64`/`u64`, held as its decimal digits. It contains
/// spaces, so no YAML file can write it.
const BIG_INTEGER: &str = "concurrent big integer";

/// Parses the text; an empty document is an error, and so is nesting deeper than
/// [`yaml_limits::MAX_NESTING`], refused before the text is loaded.
pub(crate) fn parse_yaml(text: &str) -> Result<Value, SpecErrors> {
    let scanned = yaml_limits::scan(text);
    match &scanned {
        Scan::TooDeep(at) => return Err(SpecError::new(at.to_string(), yaml_limits::too_deep_message()).into()),
        Scan::Invalid(at, problem) if !scanned.loadable(text) => {
            return Err(SpecError::new(at.to_string(), format!("not valid YAML or JSON: {}", clip(problem))).into());
        }
        _ => {}
    }
    let invalid_at = match scanned {
        Scan::Invalid(at, _) => Some((at.line, at.column)),
        _ => None,
    };
    let Loaded(root) = serde_yaml::from_str(text).map_err(|e| yaml_error(text, &e, invalid_at))?;
    if root.is_null() {
        return Err(SpecError::new("line 1, column 1", "the DAG file is empty").into());
    }
    Ok(root)
}

/// The decimal digits (with a leading `-` when negative) of an integer too large for
/// `i64`/`u64`, when `v` is one.
pub(crate) fn big_integer(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) if t.tag == BIG_INTEGER => t.value.as_str(),
        _ => None,
    }
}

/// A `serde_yaml::Value` read by [`LoadVisitor`].
struct Loaded(Value);

impl<'de> Deserialize<'de> for Loaded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LoadVisitor).map(Loaded)
    }
}

/// `serde_yaml::Value`'s own visitor, plus 128-bit integers.
struct LoadVisitor;

impl<'de> Visitor<'de> for LoadVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_i128<E: de::Error>(self, n: i128) -> Result<Value, E> {
        Ok(big(n.to_string()))
    }

    fn visit_u128<E: de::Error>(self, n: u128) -> Result<Value, E> {
        Ok(big(n.to_string()))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Number(f.into()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Loaded::deserialize(deserializer).map(|Loaded(v)| v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Loaded(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut mapping = Mapping::new();
        while let Some(Loaded(key)) = map.next_key()? {
            if mapping.contains_key(&key) {
                return Err(de::Error::custom(duplicate_message(&key)));
            }
            let Loaded(value) = map.next_value()?;
            mapping.insert(key, value);
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, contents): (String, _) = data.variant()?;
        if tag.is_empty() {
            return Err(de::Error::custom("empty YAML tag is not allowed"));
        }
        let Loaded(value) = contents.newtype_variant()?;
        Ok(Value::Tagged(Box::new(TaggedValue { tag: Tag::new(tag), value })))
    }
}

fn big(digits: String) -> Value {
    Value::Tagged(Box::new(TaggedValue { tag: Tag::new(BIG_INTEGER), value: Value::String(digits) }))
}

/// serde_yaml's words for a duplicate key.
fn duplicate_message(key: &Value) -> String {
    match key {
        Value::Null => "duplicate entry with null key".into(),
        Value::Bool(b) => format!("duplicate entry with key `{b}`"),
        Value::Number(n) => format!("duplicate entry with key {n}"),
        Value::String(s) => format!("duplicate entry with key {s:?}"),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => "duplicate entry in YAML map".into(),
    }
}

/// The error at its place: where the loader says, else where the event scan found the text
/// invalid (the loader does not place every error, e.g. a control character).
fn yaml_error(text: &str, e: &serde_yaml::Error, invalid_at: Option<(usize, usize)>) -> SpecErrors {
    let message = e.to_string();
    // The reader's errors (a character YAML does not allow) carry no line: only a byte offset,
    // at the end of the message.
    let reader_offset = message
        .rsplit_once(" at position ")
        .and_then(|(head, offset)| Some((head.to_string(), offset.parse::<usize>().ok()?)));
    let (located, message) = match (reader_offset, e.location()) {
        (Some((head, offset)), _) => {
            let before = text.as_bytes().get(..offset).unwrap_or_default();
            (Some(super::line_column(before)), head)
        }
        (None, Some(l)) => {
            let at = format!(" at line {} column {}", l.line(), l.column());
            (Some((l.line(), l.column())), message.replace(&at, ""))
        }
        (None, None) => (None, message),
    };
    let (line, column) = duplicate_key_position(text, &message, located).or(located).or(invalid_at).unwrap_or((1, 1));
    SpecError::new(format!("line {line}, column {column}"), format!("not valid YAML or JSON: {}", clip(&message)))
        .into()
}

/// serde_yaml places a duplicate key (`stages: duplicate entry with key "a"`, after the path of
/// the map) at the map's start: find the key's second line in that map, that is the second line
/// from the map's start that begins with the key at the first one's indentation, before a line
/// indented less. A best guess; `None` for flow maps written on one line.
fn duplicate_key_position(text: &str, message: &str, map_start: Option<(usize, usize)>) -> Option<(usize, usize)> {
    const MARK: &str = "duplicate entry with key ";
    let quoted = &message[message.find(MARK)? + MARK.len()..];
    // The key, quoted; the message may go on (` at line L column C`).
    let key: String = serde_json::Deserializer::from_str(quoted).into_iter().next()?.ok()?;
    let starts_key = |line: &str| {
        let rest = line
            .strip_prefix(key.as_str())
            .or_else(|| line.strip_prefix(&format!("\"{key}\"")))
            .or_else(|| line.strip_prefix(&format!("'{key}'")));
        rest.is_some_and(|r| r.trim_start().starts_with(':'))
    };
    let first_line = map_start.map_or(1, |(line, _)| line);
    let mut indent = None;
    for (i, line) in text.lines().enumerate().skip(first_line.saturating_sub(1)) {
        let trimmed = line.trim_start();
        let here = line.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match indent {
            Some(first) if here < first => return None,
            Some(first) if here == first && starts_key(trimmed) => return Some((i + 1, here + 1)),
            None if starts_key(trimmed) => indent = Some(here),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_line(text: &str) -> String {
        parse_yaml(text).unwrap_err().to_string()
    }

    #[test]
    fn a_duplicate_key_is_placed_at_its_second_occurrence() {
        assert_eq!(
            error_line("name: x\ninput: none\nname: y\n"),
            "line 3, column 1: not valid YAML or JSON: duplicate entry with key \"name\""
        );
        assert_eq!(
            error_line("a: 1\nstages:\n  a:\n    project: p\n  b: 2\n  a:\n    project: q\n"),
            "line 6, column 3: not valid YAML or JSON: stages: duplicate entry with key \"a\""
        );
        assert_eq!(
            error_line("{\n\"name\": \"a\",\n\"name\": \"b\"\n}\n"),
            "line 3, column 1: not valid YAML or JSON: duplicate entry with key \"name\""
        );
    }

    #[test]
    fn a_character_yaml_does_not_allow_is_placed_where_it_is() {
        assert_eq!(
            error_line("name: x\nstages:\n  a: {project: \"./p\u{7}\"}\n"),
            "line 3, column 20: not valid YAML or JSON: control characters are not allowed"
        );
    }

    #[test]
    fn invalid_text_with_many_brackets_is_placed_without_loading_it() {
        let mut text = String::from("name: x\nstages:\n");
        for i in 0..70 {
            text.push_str(&format!("  s{i}: {{project: ./p}}\n"));
        }
        text.push_str("  bad: {project: ./p\n");
        assert_eq!(
            error_line(&text),
            "line 74, column 1: not valid YAML or JSON: while parsing a flow mapping, did not find expected ',' or '}'"
        );
    }

    #[test]
    fn integers_beyond_64_bits_are_kept_as_digits() {
        let v = parse_yaml("a: 99999999999999999999\nb: -99999999999999999999\nc: 7\n").unwrap();
        assert_eq!(big_integer(&v["a"]), Some("99999999999999999999"));
        assert_eq!(big_integer(&v["b"]), Some("-99999999999999999999"));
        assert_eq!(big_integer(&v["c"]), None);
        let tagged = parse_yaml("a: !int 3\n").unwrap();
        assert_eq!(big_integer(&tagged["a"]), None);
        assert!(matches!(&tagged["a"], Value::Tagged(t) if t.tag == "int"));
    }
}
