//! MLproject text as PyYAML's `safe_load` reads it (YAML 1.1), for the values MLflow turns
//! into text with `str()`: plain scalars resolve as PyYAML resolves them (`yes`/`on` are
//! booleans, `1e-5` is text but `1.0e-5` a float, `010` is octal, `1_000` a thousand,
//! `1:30` sexagesimal), where the YAML 1.2 loader would read them otherwise.
//!
//! The text is first loaded by the YAML 1.2 loader, which finds syntax errors, duplicate keys
//! and alias bombs with its own messages; only a text it accepts is read again here, so the
//! alias expansion below is bounded by what it accepted.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_yaml::{Mapping, Number, Value};

/// The document of `text` with YAML 1.1 scalars, or `None` when the event parser disagrees
/// with the loader (then the loader's reading stands).
pub(super) fn load(text: &str) -> Option<Value> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, _) = event.ok()?;
        match event {
            Event::StreamEnd => break,
            Event::Scalar(value, style, anchor, tag) => {
                let node = if tag.is_some() || style != ScalarStyle::Plain {
                    Value::String(value.into_owned())
                } else {
                    resolve_plain(&value)
                };
                builder.node(node, anchor)?;
            }
            Event::Alias(id) => {
                let node = builder.anchors.get(&id)?.clone();
                builder.node(node, 0)?;
            }
            Event::SequenceStart(anchor, _) => builder.open.push((Open::Sequence(Vec::new()), anchor, None)),
            Event::MappingStart(anchor, _) => builder.open.push((Open::Mapping(Mapping::new()), anchor, None)),
            Event::SequenceEnd | Event::MappingEnd => {
                let (open, anchor, _) = builder.open.pop()?;
                let node = match open {
                    Open::Sequence(items) => Value::Sequence(items),
                    Open::Mapping(map) => Value::Mapping(map),
                };
                builder.node(node, anchor)?;
            }
            _ => {}
        }
    }
    builder.done
}

enum Open {
    Sequence(Vec<Value>),
    Mapping(Mapping),
}

#[derive(Default)]
struct Builder {
    /// Open collections, with their anchor and, for a mapping, the key awaiting its value.
    open: Vec<(Open, usize, Option<Value>)>,
    anchors: BTreeMap<usize, Value>,
    done: Option<Value>,
}

impl Builder {
    fn node(&mut self, node: Value, anchor: usize) -> Option<()> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.open.last_mut() {
            None => self.done = Some(node),
            Some((Open::Sequence(items), _, _)) => items.push(node),
            Some((Open::Mapping(map), _, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    map.insert(k, node);
                }
            },
        }
        Some(())
    }
}

/// A plain scalar as PyYAML's SafeLoader resolves it.
fn resolve_plain(text: &str) -> Value {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = boolean(text) {
        return Value::Bool(b);
    }
    if let Some(value) = int(text) {
        return value;
    }
    if let Some(f) = float(text) {
        return Value::Number(Number::from(f));
    }
    Value::String(text.to_owned())
}

fn boolean(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn split_sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

fn all(text: &str, allowed: impl Fn(u8) -> bool) -> bool {
    !text.is_empty() && text.bytes().all(allowed)
}

/// PyYAML's int: `0b…`, `0…` (octal), decimal, `0x…`, `1:20:30` (base 60); `_` ignored.
/// Values beyond 64 bits are kept as their decimal text (what `str()` prints).
fn int(text: &str) -> Option<Value> {
    let (negative, body) = split_sign(text);
    let digits: String = body.chars().filter(|c| *c != '_').collect();
    let magnitude: u128 = if let Some(bin) = body.strip_prefix("0b") {
        if !all(bin, |b| matches!(b, b'0' | b'1' | b'_')) {
            return None;
        }
        u128::from_str_radix(&bin.replace('_', ""), 2).ok()?
    } else if let Some(hex) = body.strip_prefix("0x") {
        if !all(hex, |b| b.is_ascii_hexdigit() || b == b'_') {
            return None;
        }
        u128::from_str_radix(&hex.replace('_', ""), 16).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        if !all(&body[1..], |b| matches!(b, b'0'..=b'7' | b'_')) {
            return None;
        }
        u128::from_str_radix(&digits, 8).ok()?
    } else if body.contains(':') {
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| matches!(c, '1'..='9')) || !all(first, |b| b.is_ascii_digit() || b == b'_') {
            return None;
        }
        let mut value: u128 = first.replace('_', "").parse().ok()?;
        for part in parts {
            if part.is_empty() || part.len() > 2 || !all(part, |b| b.is_ascii_digit()) || part.parse::<u8>().ok()? > 59
            {
                return None;
            }
            value = value.checked_mul(60)?.checked_add(part.parse().ok()?)?;
        }
        value
    } else {
        let valid = body == "0"
            || (body.starts_with(|c: char| matches!(c, '1'..='9')) && all(body, |b| b.is_ascii_digit() || b == b'_'));
        if !valid {
            return None;
        }
        match digits.parse::<u128>() {
            Ok(value) => value,
            // Wider than 128 bits: Python prints the digits as written, less `_` and `+`.
            Err(_) => return Some(Value::String(format!("{}{digits}", if negative { "-" } else { "" }))),
        }
    };
    let signed = i128::try_from(magnitude).ok().map(|m| if negative { -m } else { m });
    Some(match signed.and_then(|s| i64::try_from(s).ok()) {
        Some(small) => Value::Number(Number::from(small)),
        None => match signed.and_then(|s| u64::try_from(s).ok()) {
            Some(big) => Value::Number(Number::from(big)),
            None => Value::String(format!("{}{magnitude}", if negative && magnitude != 0 { "-" } else { "" })),
        },
    })
}

/// PyYAML's float: `1.5`, `1.`, `.5` (no sign), `1.0e+5` (the exponent needs its sign),
/// `1:30.5` (base 60), `.inf`, `.nan`; `_` ignored.
fn float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let (negative, body) = split_sign(text);
    let sign = if negative { -1.0 } else { 1.0 };
    if let Some(after_dot) = body.strip_prefix('.') {
        // `\.[0-9][0-9_]*([eE][-+][0-9]+)?`, without a sign.
        if text.starts_with(['+', '-']) || !after_dot.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        return decimal(body).map(|f| sign * f);
    }
    if !body.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if body.contains(':') {
        let (whole, fraction) = body.split_once('.')?;
        if !all(fraction, |b| b.is_ascii_digit() || b == b'_') && !fraction.is_empty() {
            return None;
        }
        let mut parts = whole.split(':');
        let mut value: f64 = parts.next()?.replace('_', "").parse().ok()?;
        for part in parts {
            if part.is_empty() || part.len() > 2 || !all(part, |b| b.is_ascii_digit()) || part.parse::<u8>().ok()? > 59
            {
                return None;
            }
            value = value * 60.0 + part.parse::<f64>().ok()?;
        }
        let fraction: f64 = format!("0.{}", fraction.replace('_', "")).parse().unwrap_or(0.0);
        return Some(sign * (value + fraction));
    }
    decimal(body).map(|f| sign * f)
}

/// `[0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?` or `\.[0-9][0-9_]*([eE][-+][0-9]+)?`.
fn decimal(body: &str) -> Option<f64> {
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (whole, fraction) = mantissa.split_once('.')?;
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    if !digits_ok(whole) || !digits_ok(fraction) {
        return None;
    }
    if let Some(exponent) = exponent {
        let digits = exponent.strip_prefix(['+', '-'])?;
        if !all(digits, |b| b.is_ascii_digit()) {
            return None;
        }
    }
    let cleaned = format!(
        "{}.{}{}",
        whole.replace('_', ""),
        fraction.replace('_', ""),
        exponent.map(|e| format!("e{e}")).unwrap_or_default()
    );
    let cleaned = if cleaned.starts_with('.') { format!("0{cleaned}") } else { cleaned };
    cleaned.parse().ok()
}
