//! Content controls applied at the hub before a request leaves it: per-tenant deny rules
//! (regular expressions) and PII detection (email addresses, phone numbers, Luhn-valid card
//! numbers, AWS access key ids) with the modes `block`, `redact` or `off`.
//!
//! The policy sees what the model will see ([`view`]): every text-bearing field of the request
//! (system prompt, message text, tool calls with their arguments decoded from JSON, tool
//! results, tool definitions with their parameter schemas, stop sequences), content blocks
//! joined as the upstream joins them, normalised ([`normalize`]: NFKC compatibility forms,
//! invisible characters removed, look-alike letters, any script's digits and spaces as ASCII,
//! accents stripped) — and matched again with message boundaries closed, so text split across
//! blocks, messages or the system prompt is seen whole. Redaction edits the original text in
//! place through the view's map back to it.
//!
//! Pure: no I/O, plain values in and out, so every rule is unit- and property-tested
//! (`policy/tests.rs`). Called by the gateway after the request is parsed (and a prompt template
//! rendered) and before quota admission, so a refused request neither reaches a spoke nor
//! consumes the tenant's quota.

mod normalize;
mod view;

use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use serde::Deserialize;
use switchyard_proto::v1 as pb;

use view::Fields;

/// `[tenants.policy]` in the hub config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicyConfig {
    /// Regular expressions (`regex` crate syntax); a request whose text matches any → 400
    /// `content_policy_violation`. Use `(?i)` for case-insensitive rules. Matched against the
    /// normalised request text (see `docs/security.md`): whitespace runs are one space, fields
    /// other than prose are separated by a line break.
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
// They run on normalised text (ASCII digits and spaces), with ASCII word boundaries: a letter of
// another script next to a number is a boundary (and the lazy DFA keeps working on non-ASCII).
type Pattern = LazyLock<Option<Regex>>;
static CARD: Pattern =
    LazyLock::new(|| Regex::new(r"(?-u:\b)[0-9](?:[ ./_-]?[0-9]){12,18}(?-u:\b)").ok());
static AWS_KEY: Pattern =
    LazyLock::new(|| Regex::new(r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)").ok());
static EMAIL: Pattern = LazyLock::new(|| {
    Regex::new(
        r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
    )
    .ok()
});
static PHONE: Pattern = LazyLock::new(|| {
    Regex::new(
        r"(?:\+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?|\([0-9]{1,4}\)[ .-]?|(?-u:\b))[0-9]{1,4}(?:[ .-]?[0-9]{2,4}){1,4}(?-u:\b)",
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
    /// The deny rules (normalised like the text, see [`normalize::rule`]), in config order.
    deny: Option<RegexSet>,
    pub pii: PiiMode,
    kinds: Vec<PiiKind>,
}

/// Why a request was refused by a [`Policy`]. Messages never contain the offending text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Deny rule number `rule` (0-based, in config order) matched.
    Denied { rule: usize },
    /// PII of these kinds was found (mode `block`; in mode `redact`, PII that redaction could
    /// not remove), sorted and without duplicates.
    Pii(Vec<PiiKind>),
}

impl PolicyConfig {
    /// Compiles the rules; problems are reported with `base` as the path prefix.
    pub fn build(&self, base: &str, errs: &mut Vec<String>) -> Policy {
        let mut rules = Vec::new();
        for (i, rule) in self.deny.iter().enumerate() {
            let normal = normalize::rule(rule);
            match regex::RegexBuilder::new(&normal)
                .size_limit(1 << 20)
                .build()
            {
                Ok(_) => rules.push(normal),
                Err(e) => errs.push(format!("{base}.deny[{i}]: invalid regular expression: {e}")),
            }
        }
        let deny = if rules.is_empty() || rules.len() != self.deny.len() {
            None
        } else {
            match regex::RegexSetBuilder::new(&rules)
                .size_limit(1 << 22)
                .build()
            {
                Ok(set) => Some(set),
                Err(e) => {
                    errs.push(format!(
                        "{base}.deny: the rules together are too large: {e}"
                    ));
                    None
                }
            }
        };
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
        self.deny.is_none() && self.pii == PiiMode::Off
    }

    /// The first deny rule that matches `text` (normalised first).
    pub fn denied(&self, text: &str) -> Option<usize> {
        self.first_rule(&normalize::text(text))
    }

    fn first_rule(&self, normal: &str) -> Option<usize> {
        self.deny.as_ref()?.matches(normal).into_iter().next()
    }

    /// The PII kinds present in `text` (among the configured ones), normalised first.
    pub fn detect(&self, text: &str) -> Vec<PiiKind> {
        detect(text, &self.kinds)
    }

    /// Applies the policy to the request as the model will see it ([`view`]): deny rules first,
    /// then PII in `block` or `redact` mode. In `redact` mode the request's own fields are
    /// changed in place (JSON fields re-encoded when a value in them was); PII that redaction
    /// cannot remove refuses the request as in `block` mode.
    pub fn apply(&self, req: &mut pb::InferRequest) -> Result<(), Violation> {
        if self.is_noop() {
            return Ok(());
        }
        let mut fields = Fields::of(req);
        let spaced = fields.view(false, false);
        let glued = (spaced.turns > 0).then(|| fields.view(true, false));
        let views = || std::iter::once(&spaced.text).chain(glued.as_ref().map(|v| &v.text));
        if self.deny.is_some()
            && let Some(rule) = views().find_map(|t| self.first_rule(t))
        {
            return Err(Violation::Denied { rule });
        }
        match self.pii {
            PiiMode::Off => Ok(()),
            PiiMode::Block => {
                let mut found: Vec<PiiKind> =
                    views().flat_map(|t| detect_in(t, &self.kinds)).collect();
                found.sort();
                found.dedup();
                if found.is_empty() {
                    Ok(())
                } else {
                    Err(Violation::Pii(found))
                }
            }
            PiiMode::Redact => {
                let any = views().any(|t| self.kinds.iter().any(|k| !accepted(t, *k).is_empty()));
                if !any {
                    return Ok(());
                }
                drop((spaced, glued));
                match redact_fields(&mut fields, &self.kinds) {
                    Redacted::Clean => Ok(()),
                    Redacted::Left(kinds) => Err(Violation::Pii(kinds)),
                }
            }
        }
    }
}

/// Replaces every PII value of `kinds` in the fields by its placeholder: a value spread over
/// several fields leaves the placeholder in the first and nothing of it in the others. Kinds in
/// redaction order, each looked for in both views (turns spaced, then glued) before the next
/// kind, so a card number split across messages is taken whole before a part of it could pass
/// for a phone number. Repeats until a pass finds nothing (a replacement can join neighbours
/// into a new match), at most 8 passes; a pass that finds nothing has checked both views.
fn redact_fields(fields: &mut Fields<'_>, kinds: &[PiiKind]) -> Redacted {
    for _ in 0..8 {
        let spaced = fields.view(false, true);
        let glued = (spaced.turns > 0).then(|| fields.view(true, true));
        let mut claimed: Vec<(u32, u32, u32)> = Vec::new();
        let mut edits = Vec::new();
        for &kind in kinds {
            for view in std::iter::once(&spaced).chain(glued.as_ref()) {
                for m in accepted(&view.text, kind) {
                    let pieces = view.pieces(m);
                    let taken = pieces.iter().any(|(slot, start, end)| {
                        claimed
                            .iter()
                            .any(|(s, a, b)| s == slot && *a < *end && *start < *b)
                    });
                    if taken {
                        continue;
                    }
                    for (i, &(slot, start, end)) in pieces.iter().enumerate() {
                        let with = if i == 0 { kind.placeholder() } else { "" };
                        edits.push((slot, start, end, with));
                    }
                    claimed.extend(pieces);
                }
            }
        }
        if edits.is_empty() {
            return Redacted::Clean;
        }
        fields.edit(edits);
    }
    let mut left: Vec<PiiKind> = [false, true]
        .into_iter()
        .flat_map(|glued| detect_in(&fields.view(glued, false).text, kinds))
        .collect();
    left.sort();
    left.dedup();
    if left.is_empty() {
        Redacted::Clean
    } else {
        Redacted::Left(left)
    }
}

/// What [`redact_fields`] left.
#[derive(Debug, PartialEq, Eq)]
enum Redacted {
    /// No PII in either view (whether or not anything was replaced).
    Clean,
    /// Still there after the last pass: these kinds.
    Left(Vec<PiiKind>),
}

/// The byte ranges of `text` where `kind` occurs (regex match that the kind's check accepts).
fn accepted(text: &str, kind: PiiKind) -> Vec<Range<usize>> {
    let Some(re) = kind.regex() else {
        return Vec::new();
    };
    re.find_iter(text)
        .filter(|m| kind.accepts(m.as_str()))
        .map(|m| m.range())
        .collect()
}

/// The kinds among `kinds` that occur in `text`, normalised first.
pub fn detect(text: &str, kinds: &[PiiKind]) -> Vec<PiiKind> {
    detect_in(&normalize::text(text), kinds)
}

/// The kinds among `kinds` that occur in already normalised text.
fn detect_in(text: &str, kinds: &[PiiKind]) -> Vec<PiiKind> {
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

/// `text` with every occurrence of `kinds` (found in its normalised form) replaced by its
/// placeholder, the rest of the text untouched. Idempotent: `redact(redact(x)) == redact(x)`;
/// borrowed when nothing was found.
pub fn redact<'a>(text: &'a str, kinds: &[PiiKind]) -> Cow<'a, str> {
    let mut owned = text.to_string();
    let _ = redact_fields(&mut Fields::single(&mut owned), kinds);
    if owned == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(owned)
    }
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
mod tests;
