//! Config loading that reports every problem, by path, before the process exits.
//!
//! Files are parsed in two passes. [`parse_toml`] deserializes the raw `*Config` structs and
//! collects *all* unknown keys (through `serde_ignored`, rather than `deny_unknown_fields`, which
//! would stop at the first). Raw structs keep durations, enums and addresses as strings, so the
//! second pass — each binary's `validate()` — can report every bad value with [`Problems`].

use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

/// Every problem found in a config file, each as `path: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Parses TOML into `T`, rejecting unknown keys (all of them listed) and values of the wrong
/// type (with their path).
pub fn parse_toml<T: DeserializeOwned>(text: &str) -> Result<T, ConfigErrors> {
    let value: toml::Value =
        toml::from_str(text).map_err(|e| ConfigErrors(vec![format!("syntax: {e}")]))?;
    let mut unknown = Vec::new();
    let parsed: Result<T, _> = {
        let mut on_unknown = |path: serde_ignored::Path<'_>| {
            unknown.push(format!("{path}: unknown key"));
        };
        let de = serde_ignored::Deserializer::new(value, &mut on_unknown);
        serde_path_to_error::deserialize(de)
    };
    match parsed {
        Ok(v) if unknown.is_empty() => Ok(v),
        Ok(_) => Err(ConfigErrors(unknown)),
        Err(e) => {
            let path = e.path().to_string();
            unknown.push(format!("{path}: {}", e.into_inner()));
            Err(ConfigErrors(unknown))
        }
    }
}

/// Collects validation problems so a file's every mistake is reported at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, path: impl fmt::Display, problem: impl fmt::Display) {
        self.0.push(format!("{path}: {problem}"));
    }

    /// Parses a human duration (`"250ms"`, `"10s"`); records a problem and returns `None` when
    /// it is not one.
    pub fn duration(&mut self, path: impl fmt::Display, text: &str) -> Option<Duration> {
        match humantime::parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.push(path, format!("invalid duration {text:?} ({e})"));
                None
            }
        }
    }

    /// Like [`Self::duration`] with a default when the value is absent.
    pub fn duration_or(
        &mut self,
        path: impl fmt::Display,
        text: Option<&str>,
        default: Duration,
    ) -> Duration {
        text.and_then(|t| self.duration(path, t)).unwrap_or(default)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Outer {
        port: u16,
        #[serde(default)]
        items: Vec<Inner>,
    }

    #[test]
    fn lists_every_unknown_key_by_path() {
        let err = parse_toml::<Outer>(
            "port = 1\nbogus = 2\n[[items]]\nname = \"a\"\nextra = true\n[[items]]\nname = \"b\"\nalso = 1\n",
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            vec![
                "bogus: unknown key",
                "items.0.extra: unknown key",
                "items.1.also: unknown key"
            ]
        );
    }

    #[test]
    fn wrong_type_names_its_path() {
        let err = parse_toml::<Outer>("port = 1\n[[items]]\nname = 5\n").unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert!(
            err.0[0].starts_with("items[0].name: invalid type"),
            "{:?}",
            err.0
        );
    }

    #[test]
    fn problems_collect_all() {
        let mut p = Problems::new();
        assert!(p.duration("a", "10s").is_some());
        assert!(p.duration("b", "ten seconds").is_none());
        p.push("c", "must be positive");
        let e = p.finish().unwrap_err();
        assert_eq!(e.0.len(), 2);
        assert!(e.0[0].starts_with("b: invalid duration"));
    }
}
