//! Refusals as the API server sends them: `Status` objects with an HTTP code and a reason.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::store::Kind;

/// A refused request.
#[derive(Debug)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl Refusal {
    pub fn not_found(kind: Kind, name: &str) -> Refusal {
        Refusal {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", qualified(kind)),
            details: details(kind, name),
        }
    }

    pub fn already_exists(kind: Kind, name: &str) -> Refusal {
        Refusal {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", qualified(kind)),
            details: details(kind, name),
        }
    }

    pub fn conflict(kind: Kind, name: &str) -> Refusal {
        Refusal {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(kind)
            ),
            details: details(kind, name),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal { code: 400, reason: "BadRequest", message: message.into(), details: Value::Null }
    }

    pub fn invalid(kind: Kind, name: &str, causes: &[String]) -> Refusal {
        Refusal {
            code: 422,
            reason: "Invalid",
            message: format!("{} \"{name}\" is invalid: {}", kind.name(), causes.join(", ")),
            details: details(kind, name),
        }
    }

    pub fn gone(message: impl Into<String>) -> Refusal {
        Refusal { code: 410, reason: "Expired", message: message.into(), details: Value::Null }
    }

    pub fn unsupported_media(message: impl Into<String>) -> Refusal {
        Refusal { code: 415, reason: "UnsupportedMediaType", message: message.into(), details: Value::Null }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if !self.details.is_null() {
            status["details"] = self.details.clone();
        }
        status
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(self.to_status())).into_response()
    }
}

/// `jobs.batch`, `pods`: the resource as the API server names it in messages.
fn qualified(kind: Kind) -> String {
    if kind.group().is_empty() { kind.plural().to_string() } else { format!("{}.{}", kind.plural(), kind.group()) }
}

fn details(kind: Kind, name: &str) -> Value {
    json!({"name": name, "group": kind.group(), "kind": kind.plural()})
}

/// A `Status` of success for a deletion.
pub fn deleted(kind: Kind, name: &str, uid: &Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": kind.group(), "kind": kind.plural(), "uid": uid}})
}
