//! Prompt templates: named, versioned system prompts and user templates with `{{variables}}`,
//! configured in `[[prompts]]`. A template may split traffic between two versions (A/B). Pure:
//! parsing, validation, version choice and rendering; the surfaces use it
//! (`surface::prompts`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Map, Value};

/// `[[prompts]]`: one named template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    pub name: String,
    /// Alias `POST /v1/prompts/{name}` uses when the body names no `model`.
    pub model: Option<String>,
    pub versions: Vec<PromptVersionConfig>,
    /// Version served when a request pins none and there is no split; default: the last listed.
    pub default_version: Option<String>,
    /// A/B split: version → percent of the unpinned requests (two versions, adding up to 100).
    #[serde(default)]
    pub split: BTreeMap<String, u32>,
}

/// `[[prompts.versions]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptVersionConfig {
    pub version: String,
    /// System prompt (may use `{{variables}}` too); empty = none.
    #[serde(default)]
    pub system: String,
    /// The user message template.
    pub user: String,
}

/// The `prompt` field of a chat request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptRef {
    pub name: String,
    /// Pin a version (no A/B split applies then).
    pub version: Option<String>,
    #[serde(default)]
    pub variables: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Var(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template(Vec<Segment>);

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                out.push(Segment::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err("`{{` without a closing `}}`".into());
            };
            let name = after[..close].trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                return Err(format!(
                    "`{{{{{name}}}}}`: a variable name is letters, digits, `_`, `-` or `.`"
                ));
            }
            out.push(Segment::Var(name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            out.push(Segment::Text(rest.to_string()));
        }
        Ok(Template(out))
    }

    fn variables(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|s| match s {
            Segment::Var(v) => Some(v.as_str()),
            Segment::Text(_) => None,
        })
    }

    /// Substitutes every variable; the first missing one is the error.
    pub(crate) fn render(&self, vars: &Map<String, Value>) -> Result<String, String> {
        let mut out = String::new();
        for s in &self.0 {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Var(v) => match vars.get(v) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(Value::Null) | None => return Err(v.clone()),
                    Some(other) => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub(crate) system: Template,
    pub(crate) user: Template,
}

/// A validated prompt template.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub name: String,
    pub model: Option<String>,
    versions: BTreeMap<String, Version>,
    default: String,
    /// (version, percent), adding up to 100; empty = always `default`.
    split: Vec<(String, u32)>,
}

impl Prompt {
    /// The version for a request: the pinned one, else by the A/B split (`roll` in 0..100), else
    /// the default.
    pub(crate) fn choose(
        &self,
        pinned: Option<&str>,
        roll: u32,
    ) -> Result<(&str, &Version), String> {
        let name = match pinned {
            Some(v) => v,
            None => {
                let mut acc = 0;
                let mut chosen = self.default.as_str();
                for (v, pct) in &self.split {
                    acc += pct;
                    if roll < acc {
                        chosen = v;
                        break;
                    }
                }
                chosen
            }
        };
        self.versions
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| {
                format!(
                    "prompt.version: prompt {:?} has no version {name:?}",
                    self.name
                )
            })
    }
}

/// Validates `[[prompts]]`, pushing every problem with its path.
pub fn validate<A>(
    list: &[PromptConfig],
    aliases: &BTreeMap<String, A>,
    errs: &mut Vec<String>,
) -> BTreeMap<String, Prompt> {
    let mut out = BTreeMap::new();
    for (i, p) in list.iter().enumerate() {
        let base = format!("prompts[{i}]");
        if p.name.is_empty() || p.name.contains('/') {
            errs.push(format!("{base}.name: must be non-empty and without `/`"));
        }
        if out.contains_key(&p.name) {
            errs.push(format!("{base}.name: duplicate prompt {:?}", p.name));
        }
        if let Some(m) = &p.model
            && !aliases.contains_key(m)
        {
            errs.push(format!("{base}.model: unknown alias {m:?}"));
        }
        if p.versions.is_empty() {
            errs.push(format!("{base}.versions: needs at least one version"));
        }
        let mut versions = BTreeMap::new();
        for (j, v) in p.versions.iter().enumerate() {
            let vbase = format!("{base}.versions[{j}]");
            if v.version.is_empty() {
                errs.push(format!("{vbase}.version: must not be empty"));
            }
            if versions.contains_key(&v.version) {
                errs.push(format!(
                    "{vbase}.version: duplicate version {:?}",
                    v.version
                ));
            }
            let mut parse = |field: &str, text: &str| {
                Template::parse(text).unwrap_or_else(|e| {
                    errs.push(format!("{vbase}.{field}: {e}"));
                    Template(Vec::new())
                })
            };
            let system = parse("system", &v.system);
            let user = parse("user", &v.user);
            if v.user.trim().is_empty() {
                errs.push(format!("{vbase}.user: must not be empty"));
            }
            versions.insert(v.version.clone(), Version { system, user });
        }
        let default = match &p.default_version {
            Some(d) => {
                if !versions.contains_key(d) {
                    errs.push(format!("{base}.default_version: unknown version {d:?}"));
                }
                d.clone()
            }
            None => p
                .versions
                .last()
                .map(|v| v.version.clone())
                .unwrap_or_default(),
        };
        let mut split = Vec::new();
        if !p.split.is_empty() {
            if p.split.len() != 2 {
                errs.push(format!(
                    "{base}.split: an A/B split names exactly two versions"
                ));
            }
            let total: u32 = p.split.values().sum();
            if total != 100 {
                errs.push(format!("{base}.split: percents add up to {total}, not 100"));
            }
            for (v, pct) in &p.split {
                if !versions.contains_key(v) {
                    errs.push(format!("{base}.split.{v}: unknown version"));
                }
                split.push((v.clone(), *pct));
            }
        }
        out.insert(
            p.name.clone(),
            Prompt {
                name: p.name.clone(),
                model: p.model.clone(),
                versions,
                default,
                split,
            },
        );
    }
    out
}

/// Variables a version uses (for docs and tests).
pub fn variables_of(p: &Prompt, version: &str) -> BTreeSet<String> {
    p.versions
        .get(version)
        .map(|v| {
            v.system
                .variables()
                .chain(v.user.variables())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn renders_and_reports_missing_variables() {
        let t = Template::parse("Summarise {{ doc }} in {{n}} words, {{doc}}!").unwrap();
        assert_eq!(
            t.render(&vars(json!({"doc": "X", "n": 5}))).unwrap(),
            "Summarise X in 5 words, X!"
        );
        assert_eq!(t.render(&vars(json!({"doc": "X"}))).unwrap_err(), "n");
        assert!(Template::parse("a {{ b").is_err());
        assert!(Template::parse("a {{ b c }}").is_err());
        assert_eq!(
            Template::parse("plain")
                .unwrap()
                .render(&Map::new())
                .unwrap(),
            "plain"
        );
    }

    #[test]
    fn split_pins_and_validation() {
        let cfg: PromptConfig = toml::from_str(
            r#"
name = "p"
split = { "1" = 30, "2" = 70 }
versions = [{ version = "1", user = "a {{x}}" }, { version = "2", system = "s {{y}}", user = "b" }]
"#,
        )
        .unwrap();
        let mut errs = Vec::new();
        let map = validate(
            std::slice::from_ref(&cfg),
            &BTreeMap::<String, ()>::new(),
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let p = &map["p"];
        assert_eq!(p.choose(None, 0).unwrap().0, "1");
        assert_eq!(p.choose(None, 29).unwrap().0, "1");
        assert_eq!(p.choose(None, 30).unwrap().0, "2");
        assert_eq!(p.choose(Some("1"), 99).unwrap().0, "1");
        assert!(p.choose(Some("9"), 0).is_err());
        assert_eq!(
            variables_of(p, "2").into_iter().collect::<Vec<_>>(),
            vec!["y".to_string()]
        );

        let mut bad = cfg;
        bad.split = BTreeMap::from([("1".into(), 50), ("3".into(), 40)]);
        bad.model = Some("ghost".into());
        bad.versions[1].user = "{{ broken".into();
        let mut errs = Vec::new();
        validate(&[bad], &BTreeMap::<String, ()>::new(), &mut errs);
        let joined = errs.join("\n");
        for needle in [
            "prompts[0].model",
            "prompts[0].split: percents add up to 90",
            "prompts[0].split.3",
            "prompts[0].versions[1].user",
        ] {
            assert!(joined.contains(needle), "missing {needle} in {joined}");
        }
    }
}
