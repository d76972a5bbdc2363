//! Redaction of upstream error text before it is kept anywhere (logs, spans).
//!
//! Upstreams echo what they were sent: a masked or whole API key ("Incorrect API key provided:
//! sk-…"), the `Authorization` header, a SigV4 credential scope. Every upstream message an adapter
//! keeps goes through [`redact`], which removes
//! - the configured credentials given by the caller (exact matches),
//! - the token after `Bearer` / `Basic` / `x-api-key` / `api-key` (whatever its shape),
//! - anything shaped like a key: `sk-…` / `sk_…` (OpenAI, Anthropic `sk-ant-…`), `AKIA…` /
//!   `ASIA…` (AWS access key ids), and runs of 32 or more base64/hex characters (secret keys,
//!   session tokens, signatures),
//!
//! each replaced by `[redacted]`, then caps the text at [`MAX_MESSAGE_CHARS`] characters.

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";
/// Longest upstream message kept (characters, after redaction).
pub const MAX_MESSAGE_CHARS: usize = 500;
/// Runs of key-alphabet characters this long or longer are taken for secrets.
const LONG_RUN: usize = 32;

/// `text` without the `secrets` (configured credentials; empty and very short ones are ignored,
/// as they would match ordinary words) and without anything shaped like a key or a bearer
/// token, at most [`MAX_MESSAGE_CHARS`] characters long.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut s = text.to_owned();
    for secret in secrets {
        let secret = secret.trim();
        if secret.len() >= 8 {
            s = s.replace(secret, REDACTED);
        }
    }
    let s = redact_shapes(&s);
    if s.chars().count() > MAX_MESSAGE_CHARS {
        let mut cut: String = s.chars().take(MAX_MESSAGE_CHARS).collect();
        cut.push('…');
        cut
    } else {
        s
    }
}

/// Characters a key, token or signature is made of.
fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '_' | '-' | '.' | '~')
}

/// Whether the next token is a credential: after `Bearer` / `Basic`, and after
/// `authorization` / `x-api-key` / `api-key` / `api_key` / `apikey` followed by `:` or `=`.
fn introduces_credential(word: &str, separator: bool) -> bool {
    let w = word.to_ascii_lowercase();
    match w.as_str() {
        "bearer" | "basic" => true,
        "authorization" | "x-api-key" | "api-key" | "api_key" | "apikey" => separator,
        _ => false,
    }
}

/// Whether one run of key characters looks like a secret.
fn secret_shaped(run: &str) -> bool {
    let lower = run.to_ascii_lowercase();
    if (lower.starts_with("sk-") || lower.starts_with("sk_")) && run.len() >= 8 {
        return true;
    }
    // AWS access key ids: `AKIA` / `ASIA` and 16 more upper-case letters or digits.
    let lead = run
        .chars()
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        .count();
    if (run.starts_with("AKIA") || run.starts_with("ASIA")) && lead >= 16 {
        return true;
    }
    // Long runs that look random: mixed-case letters with digits (base64 keys and tokens), or
    // hex with digits (signatures, hashes). Model ids, ARNs and URLs are lower-case: kept.
    let core: Vec<char> = run
        .chars()
        .filter(|c| !matches!(c, '.' | '-' | '_'))
        .collect();
    if core.len() < LONG_RUN {
        return false;
    }
    let upper = core.iter().any(char::is_ascii_uppercase);
    let lower = core.iter().any(char::is_ascii_lowercase);
    let digit = core.iter().any(char::is_ascii_digit);
    let hex = core.iter().all(char::is_ascii_hexdigit);
    (upper && lower && (digit || core.iter().any(|c| matches!(c, '/' | '+')))) || (hex && digit)
}

fn redact_shapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // Whether the previous word asked for the next token to be hidden.
    let mut hide_next = false;
    while let Some(c) = rest.chars().next() {
        if key_char(c) {
            let end = rest.find(|c: char| !key_char(c)).unwrap_or(rest.len());
            let run = &rest[..end];
            rest = &rest[end..];
            let separator = rest.starts_with([':', '=']) || rest.starts_with("\":");
            if introduces_credential(run, separator) {
                out.push_str(run);
                hide_next = true;
            } else if (hide_next && run.len() >= 4) || secret_shaped(run) {
                out.push_str(REDACTED);
                hide_next = false;
            } else {
                out.push_str(run);
                hide_next = false;
            }
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            // A credential follows its keyword after spaces, quotes or a separator only.
            if !matches!(c, ' ' | ':' | '=' | '"' | '\'' | '\t') {
                hide_next = false;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_credentials_are_removed() {
        let key = "k3y-with-no-shape";
        let s = redact(&format!("bad key {key} given"), &[key]);
        assert_eq!(s, "bad key [redacted] given");
        // Short "secrets" would match ordinary words: ignored.
        assert_eq!(redact("a b c", &["b"]), "a b c");
    }

    #[test]
    fn key_shapes_and_bearer_tokens_are_removed() {
        for (input, secret) in [
            (
                "Incorrect API key provided: sk-proj-abc123DEF456. You can find…",
                "sk-proj-abc123DEF456",
            ),
            ("key sk-ant-api03-xyz789 revoked", "sk-ant-api03-xyz789"),
            ("Authorization: Bearer tok_live_1 was refused", "tok_live_1"),
            ("header was \"Bearer whatever\"", "whatever"),
            ("x-api-key: plainvalue rejected", "plainvalue"),
            (
                "Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/bedrock/aws4_request",
                "AKIAIOSFODNN7EXAMPLE",
            ),
            (
                "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
                "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            ),
            (
                "secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY here",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
        ] {
            let out = redact(input, &[]);
            assert!(!out.contains(secret), "{input:?} -> {out:?}");
            assert!(out.contains(REDACTED), "{input:?} -> {out:?}");
        }
    }

    #[test]
    fn ordinary_messages_survive() {
        for text in [
            "You exceeded your current quota, please check your plan and billing details.",
            "The provided model identifier is invalid.",
            "messages.0.content: Field required",
            "Your credit balance is too low to access the Anthropic API.",
            "model anthropic.claude-3-haiku-20240307-v1:0 in us-east-1",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20240620-v1:0",
            "See https://platform.openai.com/account/api-keys for details",
        ] {
            assert_eq!(redact(text, &[]), text);
        }
    }

    #[test]
    fn long_messages_are_cut() {
        let s = redact(&"word ".repeat(400), &[]);
        assert_eq!(s.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(s.ends_with('…'));
    }
}
