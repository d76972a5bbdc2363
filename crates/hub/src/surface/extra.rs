//! Top-level fields of a caller's body that the internal model does not carry, sorted into the
//! two states such a field may have (docs/api.md):
//! - **ignored** — on the surface's short list of fields that cannot change the answer (end-user
//!   ids, metadata tags, service-tier and cache-retention hints, a `null` value); accepted, not
//!   sent anywhere, named in the request's audit line (`"ignored"`);
//! - **passed through** — every other field, kept verbatim in `InferRequest.passthrough` with
//!   the caller's API, so the request goes only to spokes whose upstream speaks that API (the
//!   gateway's capability check and routing, [`crate::routing::Speaks`]). When the alias turned
//!   passthrough off (`passthrough = false`), such fields are refused: 400 naming them.

use serde_json::{Map, Value};
use switchyard_proto::v1 as pb;

use crate::error::HubError;
use crate::model::Alias;
use crate::routing::Api;

/// What became of a body's unknown fields.
#[derive(Debug, Default, PartialEq)]
pub struct Sorted {
    /// Field names accepted and not carried (for the audit line), sorted by name.
    pub ignored: Vec<String>,
    /// The fields kept for a same-API upstream; `None` when there are none.
    pub passthrough: Option<pb::Passthrough>,
}

/// Sorts the body's fields the surface did not decode (`unknown`) for a request
/// to `alias` on surface `api`. `ignorable`: the surface's list of fields that cannot change the
/// answer. Errors: 400 `unknown_parameter` naming the fields when some would be passed through
/// and the alias has passthrough off.
pub fn sort(
    api: Api,
    unknown: Map<String, Value>,
    ignorable: &[&str],
    alias: &Alias,
) -> Result<Sorted, HubError> {
    let mut ignored = Vec::new();
    let mut kept = Map::new();
    for (name, value) in unknown {
        if value.is_null() || ignorable.contains(&name.as_str()) {
            ignored.push(name);
        } else {
            kept.insert(name, value);
        }
    }
    if kept.is_empty() {
        return Ok(Sorted {
            ignored,
            passthrough: None,
        });
    }
    if !alias.passthrough {
        let names: Vec<&str> = kept.keys().map(String::as_str).collect();
        let first = names.first().copied().unwrap_or_default().to_owned();
        return Err(HubError::InvalidParam {
            message: format!(
                "{}: not a field this gateway carries, and passing such fields through to the \
                 upstream is turned off for model {:?}",
                names.join(", "),
                alias.name
            ),
            param: first.into(),
            code: "unknown_parameter",
        });
    }
    Ok(Sorted {
        ignored,
        passthrough: Some(pb::Passthrough {
            api: api.as_str().to_owned(),
            fields_json: Value::Object(kept).to_string(),
        }),
    })
}

impl Sorted {
    /// Records both lists on the request's record (the audit line's `ignored` and
    /// `passthrough`) and hands back the passthrough for the request.
    pub fn record(self, rec: &mut crate::observe::RequestRecord) -> Option<pb::Passthrough> {
        let passed = self
            .passthrough
            .as_ref()
            .and_then(|p| serde_json::from_str::<Map<String, Value>>(&p.fields_json).ok())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        rec.set_extra_fields(self.ignored, passed);
        self.passthrough
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alias(passthrough: bool) -> Alias {
        Alias {
            name: "demo".into(),
            candidates: vec![],
            needs: Default::default(),
            cache_ttl: None,
            passthrough,
        }
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn ignorable_and_null_fields_are_ignored_the_rest_passes_through() {
        let s = sort(
            Api::OpenAi,
            map(json!({"user": "u1", "verbosity": "low", "modalities": null, "store": true})),
            &["user", "store"],
            &alias(true),
        )
        .unwrap_or_default();
        assert_eq!(s.ignored, ["modalities", "store", "user"]);
        let p = s.passthrough.unwrap_or_default();
        assert_eq!(p.api, "openai");
        assert_eq!(p.fields_json, r#"{"verbosity":"low"}"#);
        let none = sort(Api::Anthropic, map(json!({})), &[], &alias(true)).unwrap_or_default();
        assert_eq!(none, Sorted::default());
    }

    #[test]
    fn passthrough_off_refuses_by_name() {
        let e = sort(
            Api::Converse,
            map(json!({"guardrailConfig": {}, "requestMetadata": {"a": "b"}})),
            &[],
            &alias(false),
        )
        .err()
        .map(|e| (e.names().param.map(str::to_owned), e.to_string()));
        let (param, msg) = e.unwrap_or_default();
        assert_eq!(param.as_deref(), Some("guardrailConfig"));
        assert!(
            msg.starts_with("guardrailConfig, requestMetadata: "),
            "{msg}"
        );
        // Ignorable fields are still accepted.
        assert!(sort(Api::Converse, map(json!({"x": 1})), &["x"], &alias(false)).is_ok());
    }
}
