//! Human-readable durations in config files (`"250ms"`, `"10s"`, `"1m"`).

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// `#[serde(with = "switchyard_core::duration")]` for a `Duration` field.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
}

pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*v).to_string())
}

/// The same for `Option<Duration>`.
pub mod option {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                humantime::parse_duration(&s)
                    .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
            })
            .transpose()
    }

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::serialize(v, s),
            None => s.serialize_none(),
        }
    }
}
