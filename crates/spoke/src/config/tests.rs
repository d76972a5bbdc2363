//! Unit tests of the spoke's config parsing and validation.

use super::*;

const GOOD: &str = r#"
listen = "127.0.0.1:0"
account = "111111111111"
provider = "openai"
[[regions]]
name = "a"
endpoint = "http://127.0.0.1:1/v1"
[[regions]]
name = "b"
endpoint = "http://127.0.0.1:2/v1"
[[models]]
id = "m1"
requests_per_minute = 10
[[models]]
id = "m2"
regions = ["b"]
"#;

#[test]
fn good_config_parses_with_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.models[0].regions, vec!["a", "b"]);
    assert_eq!(c.models[1].regions, vec!["b"]);
    assert_eq!(c.models[0].upstream_id, "m1");
    assert_eq!(c.default_timeout, Duration::from_secs(60));
    assert_eq!(c.provider.kind(), "openai");
    assert_eq!(c.connection_age, ConnectionAge::default());
    assert_eq!(c.connection_age.max_age, Some(Duration::from_secs(60)));
}

#[test]
fn connection_age_may_be_set_or_turned_off() {
    let with = |extra: &str| parse(&format!("{extra}\n{GOOD}"));
    let c = with("max_connection_age = \"30s\"\nmax_connection_age_grace = \"90s\"").unwrap();
    assert_eq!(c.connection_age.max_age, Some(Duration::from_secs(30)));
    assert_eq!(c.connection_age.grace, Duration::from_secs(90));
    assert_eq!(
        with("max_connection_age = \"0s\"")
            .unwrap()
            .connection_age
            .max_age,
        None
    );
    let err = with("max_connection_age_grace = \"0s\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_connection_age_grace"), "{err}");
}

#[test]
fn every_problem_is_listed_by_path() {
    let bad = r#"
listen = "nowhere"
account = ""
provider = "openai"
default_timeout = "soon"
colour = "blue"
[backoff]
base = "1x"
[[regions]]
name = "a"
[[models]]
id = "m1"
regions = ["a", "z"]
requests_per_minute = 0
typo = 1
"#;
    let err = parse(bad).unwrap_err();
    // Unknown keys are reported first, all of them, before values are checked.
    assert_eq!(
        err.0,
        vec!["colour: unknown key", "models.0.typo: unknown key"]
    );
    let bad = bad
        .replace("colour = \"blue\"\n", "")
        .replace("typo = 1\n", "");
    let err = parse(&bad).unwrap_err();
    let text = err.0.join("\n");
    for needle in [
        "listen:",
        "account: must not be empty",
        "default_timeout: invalid duration",
        "backoff.base: invalid duration",
        "regions[0].endpoint: required",
        "models[0].regions[1]: \"z\" is not one of",
        "models[0].requests_per_minute: must be at least 1",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(err.0.len(), 7, "{text}");
}

#[test]
fn section_for_another_provider_is_rejected() {
    let t = GOOD.to_string() + "[simulated]\nlatency = \"1ms\"\n";
    let err = parse(&t).unwrap_err();
    assert!(
        err.0[0].starts_with("simulated: section given"),
        "{:?}",
        err.0
    );
}
