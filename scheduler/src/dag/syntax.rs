//! The YAML (or JSON) layer: text to a `serde_yaml::Value`, with syntax errors, duplicate
//! keys and empty files reported at their line and column.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde_yaml::Value;

use super::error::{SpecError, SpecErrors};

/// Parses the text; an empty document is an error.
pub(crate) fn parse_yaml(text: &str) -> Result<Value, SpecErrors> {
    let root: Value = serde_yaml::from_str(text).map_err(yaml_error)?;
    if root.is_null() {
        return Err(SpecError::new("line 1, column 1", "the DAG file is empty").into());
    }
    // `Value` keeps the last of duplicate keys silently; a second pass refuses them.
    serde_yaml::from_str::<NoDuplicates>(text).map_err(yaml_error)?;
    Ok(root)
}

fn yaml_error(e: serde_yaml::Error) -> SpecErrors {
    let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
    let message = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = message.strip_suffix(&suffix).unwrap_or(&message);
    SpecError::new(
        format!("line {line}, column {column}"),
        format!("not valid YAML or JSON: {message}"),
    )
    .into()
}

/// Any YAML value, refusing maps with duplicate keys.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E: de::Error>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_none<E: de::Error>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NoDuplicates, D::Error> {
        NoDuplicates::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<Value>()? {
            if !seen.insert(key.clone()) {
                let name = match &key {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
                };
                return Err(de::Error::custom(format_args!("duplicate key `{name}`")));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<NoDuplicates, A::Error> {
        let (_, variant) = data.variant::<Value>()?;
        variant.newtype_variant::<NoDuplicates>()
    }
}
