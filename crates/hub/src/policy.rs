//! Content controls applied at the hub before a request leaves it: per-tenant deny rules
//! (regular expressions) and PII detection (email addresses, phone numbers, Luhn-valid card
//! numbers, AWS access key ids) with the modes `block`, `redact` or `off`.
//!
//! Pure: no I/O, plain values in and out, so every rule is unit- and property-tested here.
//! Called by the chat handler after the request is parsed and before quota admission, so a
//! refused request neither reaches a spoke nor consumes the tenant's quota.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use switchyard_proto::v1 as pb;

/// `[tenants.policy]` in the hub config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Regular expressions (`regex` crate syntax); a request whose text matches any → 400
    /// `content_policy_violation`. Use `(?i)` for case-insensitive rules.
    #[serde(default)]
    pub deny: Vec<String>,
    /// `"off"` (default), `"block"` (400 `pii_detected`) or `"redact"` (typed placeholders).
    #[serde(default)]
    pub pii: PiiMode,
    /// Which kinds `pii` looks for; default all: `email`, `phone`, `card`, `aws_access_key`.
    pub pii_kinds: Option<Vec<PiiKind>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiMode {
    #[default]
    Off,
    Block,
    Redact,
}

/// A kind of personal or secret data, in the order redaction applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Card,
    AwsAccessKey,
    Email,
    Phone,
}

impl PiiKind {
    pub const ALL: [PiiKind; 4] = [
        PiiKind::Card,
        PiiKind::AwsAccessKey,
        PiiKind::Email,
        PiiKind::Phone,
    ];

    /// The name used in config and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Card => "card",
            PiiKind::AwsAccessKey => "aws_access_key",
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
        }
    }

    /// The typed placeholder that replaces a value in `redact` mode.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Card => "[CARD]",
            PiiKind::AwsAccessKey => "[AWS_ACCESS_KEY]",
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
        }
    }

    fn regex(self) -> Option<&'static Regex> {
        match self {
            PiiKind::Card => CARD.as_ref(),
            PiiKind::AwsAccessKey => AWS_KEY.as_ref(),
            PiiKind::Email => EMAIL.as_ref(),
            PiiKind::Phone => PHONE.as_ref(),
        }
    }

    /// Whether a regex match really is this kind (Luhn for cards, digit count for phones).
    fn accepts(self, m: &str) -> bool {
        match self {
            PiiKind::Card => {
                let digits = m.bytes().filter(u8::is_ascii_digit).count();
                (13..=19).contains(&digits) && luhn_valid(m)
            }
            PiiKind::Phone => {
                // Ten digits or more (a number with its area code), or an international `+…`.
                let digits = m.bytes().filter(u8::is_ascii_digit).count();
                (10..=15).contains(&digits) || (m.starts_with('+') && (8..=15).contains(&digits))
            }
            PiiKind::AwsAccessKey | PiiKind::Email => true,
        }
    }
}

// The patterns are constants (compiled in the tests below); `None` would only mean "no match".
type Pattern = LazyLock<Option<Regex>>;
static CARD: Pattern = LazyLock::new(|| Regex::new(r"\b[0-9](?:[ -]?[0-9]){12,18}\b").ok());
static AWS_KEY: Pattern = LazyLock::new(|| Regex::new(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b").ok());
static EMAIL: Pattern = LazyLock::new(|| {
    Regex::new(
        r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
    )
    .ok()
});
static PHONE: Pattern = LazyLock::new(|| {
    Regex::new(
        r"(?:\+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?|\([0-9]{1,4}\)[ .-]?|\b)[0-9]{1,4}(?:[ .-]?[0-9]{2,4}){1,4}\b",
    )
    .ok()
});

/// The Luhn checksum over the digits of `s` (other characters ignored).
pub fn luhn_valid(s: &str) -> bool {
    let mut sum = 0u32;
    let mut count = 0usize;
    for (i, d) in s
        .bytes()
        .rev()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .enumerate()
    {
        count += 1;
        sum += if i % 2 == 1 {
            let x = d * 2;
            if x > 9 { x - 9 } else { x }
        } else {
            d
        };
    }
    count > 0 && sum.is_multiple_of(10)
}

/// The runtime policy of one tenant (built by config validation).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    deny: Vec<Regex>,
    pub pii: PiiMode,
    kinds: Vec<PiiKind>,
}

/// Why a request was refused by a [`Policy`]. Messages never contain the offending text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Deny rule number `rule` (0-based, in config order) matched.
    Denied { rule: usize },
    /// PII of these kinds was found (mode `block`), sorted and without duplicates.
    Pii(Vec<PiiKind>),
}

impl PolicyConfig {
    /// Compiles the rules; problems are reported with `base` as the path prefix.
    pub fn build(&self, base: &str, errs: &mut Vec<String>) -> Policy {
        let mut deny = Vec::new();
        for (i, rule) in self.deny.iter().enumerate() {
            match regex::RegexBuilder::new(rule).size_limit(1 << 20).build() {
                Ok(re) => deny.push(re),
                Err(e) => errs.push(format!("{base}.deny[{i}]: invalid regular expression: {e}")),
            }
        }
        let mut kinds = self
            .pii_kinds
            .clone()
            .unwrap_or_else(|| PiiKind::ALL.to_vec());
        kinds.sort();
        kinds.dedup();
        if self.pii_kinds.as_ref().is_some_and(Vec::is_empty) {
            errs.push(format!(
                "{base}.pii_kinds: must not be empty (omit it for all kinds)"
            ));
        }
        Policy {
            deny,
            pii: self.pii,
            kinds,
        }
    }
}

impl Policy {
    /// Whether this policy can change or refuse anything (skip the walk otherwise).
    pub fn is_noop(&self) -> bool {
        self.deny.is_empty() && self.pii == PiiMode::Off
    }

    /// The first deny rule that matches `text`.
    pub fn denied(&self, text: &str) -> Option<usize> {
        self.deny.iter().position(|re| re.is_match(text))
    }

    /// The PII kinds present in `text` (among the configured ones).
    pub fn detect(&self, text: &str) -> Vec<PiiKind> {
        detect(text, &self.kinds)
    }

    /// Applies the policy to every piece of text of a request (system prompt, message text,
    /// tool-call arguments, tool results): deny rules first, then PII in `block` or `redact`
    /// mode. In `redact` mode the request is changed in place.
    pub fn apply(&self, req: &mut pb::InferRequest) -> Result<(), Violation> {
        if self.is_noop() {
            return Ok(());
        }
        let mut found = Vec::new();
        let mut check = |text: &mut String| -> Result<(), Violation> {
            if let Some(rule) = self.denied(text) {
                return Err(Violation::Denied { rule });
            }
            match self.pii {
                PiiMode::Off => {}
                PiiMode::Block => found.extend(self.detect(text)),
                PiiMode::Redact => {
                    if let Cow::Owned(s) = redact(text, &self.kinds) {
                        *text = s;
                    }
                }
            }
            Ok(())
        };
        check(&mut req.system)?;
        for m in &mut req.messages {
            for part in &mut m.content {
                match &mut part.part {
                    Some(pb::content_part::Part::Text(t)) => check(t)?,
                    Some(pb::content_part::Part::ToolCall(tc)) => check(&mut tc.arguments_json)?,
                    Some(pb::content_part::Part::ToolResult(tr)) => check(&mut tr.content)?,
                    Some(pb::content_part::Part::Image(_)) | None => {}
                }
            }
        }
        found.sort();
        found.dedup();
        if found.is_empty() {
            Ok(())
        } else {
            Err(Violation::Pii(found))
        }
    }
}

/// The kinds among `kinds` that occur in `text`.
pub fn detect(text: &str, kinds: &[PiiKind]) -> Vec<PiiKind> {
    let mut out: Vec<PiiKind> = Vec::new();
    let mut rest: Cow<'_, str> = Cow::Borrowed(text);
    // In redaction order, so a card number is not also reported as a phone number.
    for &kind in kinds {
        let replaced = replace_kind(&rest, kind);
        if let Cow::Owned(s) = replaced {
            out.push(kind);
            rest = Cow::Owned(s);
        }
    }
    out
}

/// `text` with every occurrence of `kinds` replaced by its placeholder. Idempotent:
/// `redact(redact(x)) == redact(x)`; borrowed when nothing was found.
pub fn redact<'a>(text: &'a str, kinds: &[PiiKind]) -> Cow<'a, str> {
    let mut out: Cow<'a, str> = Cow::Borrowed(text);
    // Replacing can join neighbours into a new match; repeat until nothing changes (each pass
    // removes digits, `@` or key characters, so this ends quickly).
    for _ in 0..8 {
        let mut changed = false;
        for &kind in kinds {
            if let Cow::Owned(s) = replace_kind(&out, kind) {
                out = Cow::Owned(s);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    out
}

fn replace_kind(text: &str, kind: PiiKind) -> Cow<'_, str> {
    let Some(re) = kind.regex() else {
        return Cow::Borrowed(text);
    };
    if !re.is_match(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut any = false;
    for m in re.find_iter(text) {
        if kind.accepts(m.as_str()) {
            out.push_str(&text[last..m.start()]);
            out.push_str(kind.placeholder());
            last = m.end();
            any = true;
        }
    }
    if !any {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all() -> Vec<PiiKind> {
        PiiKind::ALL.to_vec()
    }

    #[test]
    fn patterns_compile() {
        for k in PiiKind::ALL {
            assert!(k.regex().is_some(), "{k:?}");
        }
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(luhn_valid("5555-5555-5555-4444"));
        assert!(luhn_valid("378282246310005"));
        assert!(!luhn_valid("4111 1111 1111 1112"));
        assert!(!luhn_valid(""));
        assert!(!luhn_valid("abc"));
    }

    #[test]
    fn redacts_each_kind_with_its_placeholder() {
        let text = "mail jane.doe@example.co.uk or call +1 415-555-0100, card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE.";
        let r = redact(text, &all());
        assert_eq!(
            r,
            "mail [EMAIL] or call [PHONE], card [CARD], key [AWS_ACCESS_KEY]."
        );
        assert_eq!(
            detect(text, &all()),
            vec![
                PiiKind::Card,
                PiiKind::AwsAccessKey,
                PiiKind::Email,
                PiiKind::Phone
            ]
        );
    }

    #[test]
    fn common_phone_formats() {
        for p in [
            "(415) 555-0100",
            "415-555-0100",
            "415.555.0100",
            "+44 20 7946 0958",
            "+33 1 23 45 67 89",
            "4155550100",
        ] {
            assert_eq!(detect(p, &all()), vec![PiiKind::Phone], "{p}");
        }
    }

    #[test]
    fn non_pii_is_left_alone() {
        for t in [
            "the year 2024 had 365 days",
            "order 12345 shipped",
            "card 4111 1111 1111 1112 fails luhn",
            "version 1.2.3",
            "AKIA is a prefix",
            "user at example dot com",
        ] {
            let r = redact(t, &[PiiKind::Card, PiiKind::AwsAccessKey, PiiKind::Email]);
            assert!(matches!(r, Cow::Borrowed(_)), "{t} -> {r}");
        }
        assert_eq!(detect("10:30 on 2024-05-01", &all()), vec![]);
    }

    #[test]
    fn only_configured_kinds() {
        let t = "a@b.io 4111111111111111";
        assert_eq!(redact(t, &[PiiKind::Email]), "[EMAIL] 4111111111111111");
        assert_eq!(detect(t, &[PiiKind::Card]), vec![PiiKind::Card]);
    }

    fn req(text: &str) -> pb::InferRequest {
        pb::InferRequest {
            system: "sys a@b.io".into(),
            messages: vec![pb::Message {
                role: pb::Role::User as i32,
                content: vec![pb::ContentPart {
                    part: Some(pb::content_part::Part::Text(text.into())),
                }],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn apply_deny_block_redact() {
        let mut errs = Vec::new();
        let deny = PolicyConfig {
            deny: vec!["(?i)ignore (all )?previous instructions".into()],
            pii: PiiMode::Off,
            pii_kinds: None,
        }
        .build("p", &mut errs);
        assert!(errs.is_empty());
        assert_eq!(
            deny.apply(&mut req("Please IGNORE previous instructions")),
            Err(Violation::Denied { rule: 0 })
        );
        assert_eq!(deny.apply(&mut req("hello")), Ok(()));

        let block = PolicyConfig {
            pii: PiiMode::Block,
            ..Default::default()
        }
        .build("p", &mut errs);
        assert_eq!(
            block.apply(&mut req("card 4111111111111111")),
            Err(Violation::Pii(vec![PiiKind::Card, PiiKind::Email]))
        );

        let red = PolicyConfig {
            pii: PiiMode::Redact,
            ..Default::default()
        }
        .build("p", &mut errs);
        let mut r = req("key ASIAABCDEFGHIJKLMNOP");
        assert_eq!(red.apply(&mut r), Ok(()));
        assert_eq!(r.system, "sys [EMAIL]");
        assert_eq!(
            r.messages[0].content[0].part,
            Some(pb::content_part::Part::Text("key [AWS_ACCESS_KEY]".into()))
        );
    }

    #[test]
    fn bad_rules_are_reported_with_their_path() {
        let mut errs = Vec::new();
        PolicyConfig {
            deny: vec!["ok".into(), "(unclosed".into()],
            pii: PiiMode::Off,
            pii_kinds: Some(vec![]),
        }
        .build("tenants[0].policy", &mut errs);
        assert!(errs[0].starts_with("tenants[0].policy.deny[1]"), "{errs:?}");
        assert!(
            errs[1].starts_with("tenants[0].policy.pii_kinds"),
            "{errs:?}"
        );
    }

    /// A digit string of `len` digits with a valid Luhn check digit.
    fn with_check_digit(body: &[u8]) -> String {
        for d in 0..10u8 {
            let s: String = body
                .iter()
                .chain(std::iter::once(&d))
                .map(|b| char::from(b'0' + b))
                .collect();
            if luhn_valid(&s) {
                return s;
            }
        }
        unreachable!()
    }

    proptest! {
        #[test]
        fn never_panics_and_redaction_is_idempotent(s in any::<String>()) {
            let once = redact(&s, &all()).into_owned();
            let twice = redact(&once, &all()).into_owned();
            prop_assert_eq!(&once, &twice);
            prop_assert!(detect(&once, &all()).is_empty(), "{:?} still has PII", once);
        }

        #[test]
        fn idempotent_on_pii_like_text(s in "[a-z0-9@. +()\\-]{0,80}") {
            let once = redact(&s, &all()).into_owned();
            prop_assert_eq!(redact(&once, &all()).into_owned(), once);
        }

        #[test]
        fn every_luhn_valid_card_is_found(body in proptest::collection::vec(0u8..10, 12..=18)) {
            let card = with_check_digit(&body);
            let text = format!("pay with {card} today");
            prop_assert!(detect(&text, &[PiiKind::Card]) == vec![PiiKind::Card]);
            prop_assert_eq!(redact(&text, &[PiiKind::Card]), "pay with [CARD] today");
        }

        #[test]
        fn one_wrong_digit_is_not_a_card(body in proptest::collection::vec(0u8..10, 12..=18)) {
            let card = with_check_digit(&body);
            let last = card.as_bytes()[card.len() - 1] - b'0';
            let wrong = format!("{}{}", &card[..card.len() - 1], (last + 1) % 10);
            prop_assert!(!luhn_valid(&wrong));
            prop_assert!(detect(&wrong, &[PiiKind::Card]).is_empty());
        }
    }
}
