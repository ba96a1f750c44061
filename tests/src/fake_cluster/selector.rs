//! Label selectors as the API server reads them: `a=b`, `a==b`, `a!=b`, `a`, `!a`,
//! `a in (x,y)`, `a notin (x,y)`, joined by commas.

use std::collections::BTreeMap;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; the empty one matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses a selector, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part).ok_or_else(|| format!("unable to parse requirement: {part:?}"))?);
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether labels satisfy every requirement.
    pub fn matches(&self, labels: BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

/// Splits at commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Option<Requirement> {
    let key_ok = |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if let Some(key) = part.strip_prefix('!') {
        return key_ok(key.trim()).then(|| Requirement::Absent(key.trim().to_string()));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return key_ok(k.trim()).then(|| Requirement::NotEquals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return key_ok(k.trim()).then(|| Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    for (word, notin) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = part.split_once(word) {
            let values = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
            let values = values.split(',').map(|v| v.trim().to_string()).collect();
            let k = k.trim().to_string();
            if !key_ok(&k) {
                return None;
            }
            return Some(if notin { Requirement::NotIn(k, values) } else { Requirement::In(k, values) });
        }
    }
    key_ok(part).then(|| Requirement::Exists(part.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_the_forms_kubernetes_accepts() {
        let s = LabelSelector::parse("a=1,b!=2,c,!d,e in (x, y),f notin (z)").unwrap();
        assert!(s.matches(labels(&[("a", "1"), ("c", ""), ("e", "y")])));
        assert!(!s.matches(labels(&[("a", "1"), ("c", ""), ("e", "y"), ("d", "")])));
        assert!(!s.matches(labels(&[("a", "1"), ("c", ""), ("e", "q")])));
        assert!(!s.matches(labels(&[("a", "1"), ("b", "2"), ("c", ""), ("e", "x")])));
        assert!(LabelSelector::parse("a in x").is_err());
        assert!(LabelSelector::parse("").unwrap().matches(BTreeMap::new()));
    }
}
