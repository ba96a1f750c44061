//! Strict decoding, as the API server does with `fieldValidation=Strict`: an object is decoded
//! into its k8s-openapi type, and every field of the request that the type does not know is
//! refused by name. Objects go on being stored as the type encodes them.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes `value` as `T`, refusing unknown fields and values of the wrong type.
pub fn decode<T: DeserializeOwned + Serialize>(value: &Value) -> Result<(T, Value), String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| format!("strict decoding error: {e}"))?;
    let encoded = serde_json::to_value(&typed).map_err(|e| format!("cannot encode: {e}"))?;
    let mut unknown = Vec::new();
    unknown_fields(value, &encoded, "", &mut unknown);
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
        return Err(format!("strict decoding error: {}", list.join(", ")));
    }
    Ok((typed, encoded))
}

/// Paths of fields in `given` that `kept` (the same object after a typed round trip) lacks.
fn unknown_fields(given: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (given, kept) {
        (Value::Object(given), Value::Object(kept)) => {
            for (key, value) in given {
                if value.is_null() {
                    continue;
                }
                let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match kept.get(key) {
                    Some(kept) => unknown_fields(value, kept, &here, out),
                    None => out.push(here),
                }
            }
        }
        (Value::Array(given), Value::Array(kept)) => {
            for (i, (g, k)) in given.iter().zip(kept).enumerate() {
                unknown_fields(g, k, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::Job;
    use serde_json::json;

    use super::*;

    #[test]
    fn names_every_unknown_field() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "a", "labelz": {}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "imag": "x"}]}}}});
        let error = decode::<Job>(&job).unwrap_err();
        assert!(error.contains("unknown field \"metadata.labelz\""), "{error}");
        assert!(error.contains("unknown field \"spec.template.spec.containers[0].imag\""), "{error}");
        let good = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "a"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        assert!(decode::<Job>(&good).is_ok());
        assert!(decode::<Job>(&json!({"spec": {"parallelism": "two"}})).is_err());
    }
}
