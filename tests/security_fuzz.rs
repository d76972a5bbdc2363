//! Property tests for parsers of outside input that live outside the hub: the spoke's config
//! loader and the OpenAI SSE parser (upstream responses are outside input too). None may panic;
//! bad input is an error with a reason. (The hub's request parser, config loader and HTTP
//! surface are covered in `crates/hub/tests/hostile.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::StreamExt;
use proptest::prelude::*;
use switchyard_providers::Chunk;
use switchyard_providers::openai::sse_chunks;

const GOOD_SPOKE: &str = r#"
listen = "127.0.0.1:0"
account = "111111111111"
provider = "simulated"
[[regions]]
name = "us-east-1"
endpoint = "http://unused.invalid"
[[models]]
id = "m1"
requests_per_minute = 10
[simulated]
latency = "1ms"
"#;

/// Runs the SSE parser over `parts` (each one network read) and collects what it yields.
fn parse_sse(parts: Vec<Vec<u8>>) -> Vec<Result<Chunk, String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let body = futures::stream::iter(parts.into_iter().map(|p| Ok(bytes::Bytes::from(p))));
        sse_chunks(body.boxed(), 1)
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
            .await
    })
}

/// Splits `data` at the given cut points (any of them, in any order).
fn split(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for c in cuts {
        out.push(data[last..c].to_vec());
        last = c;
    }
    out.push(data[last..].to_vec());
    out
}

#[test]
fn sse_parser_reads_a_well_formed_stream() {
    let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
data: [DONE]\n\n";
    let out = parse_sse(vec![body.to_vec()]);
    assert!(matches!(&out[0], Ok(Chunk::Delta(t)) if t == "Hel"));
    assert!(matches!(&out[1], Ok(Chunk::Delta(t)) if t == "lo"));
    assert!(matches!(&out[2], Ok(Chunk::End { .. })));
    assert_eq!(out.len(), 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn spoke_config_loader_never_panics(text in ".{0,300}") {
        if let Err(e) = switchyard_spoke::config::parse(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn spoke_config_loader_never_panics_on_mutated_configs(
        cut in 0usize..400, insert in "[\\[\\]\"=a-z0-9_.\n -]{0,10}"
    ) {
        let at = cut.min(GOOD_SPOKE.len());
        let text = format!("{}{insert}{}", &GOOD_SPOKE[..at], &GOOD_SPOKE[at..]);
        if let Err(e) = switchyard_spoke::config::parse(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn sse_parser_never_panics_on_any_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let out = parse_sse(split(&data, &cuts));
        // It always ends: with [DONE] or with an error (never silently).
        prop_assert!(!out.is_empty());
        let ended = matches!(out.last(), Some(Ok(Chunk::End { .. }) | Err(_)));
        prop_assert!(ended, "{:?}", out);
    }

    #[test]
    fn sse_parser_never_panics_on_sse_like_lines(
        lines in proptest::collection::vec(prop_oneof![
            Just("data: [DONE]".to_string()),
            Just("data: {\"error\":{\"message\":7}}".to_string()),
            Just(": keep-alive".to_string()),
            "data: \\{\"choices\":\\[\\{\"delta\":\\{\"content\":\"[a-z\u{e9}\u{1F600}]{0,5}\"\\}\\}\\]\\}".prop_map(|s| s),
            "data: .{0,40}".prop_map(|s| s),
            ".{0,20}".prop_map(|s| s),
        ], 0..10),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let body = lines.join("\n") + "\n";
        let out = parse_sse(split(body.as_bytes(), &cuts));
        let ended = matches!(out.last(), Some(Ok(Chunk::End { .. }) | Err(_)));
        prop_assert!(ended, "{:?}", out);
        // Splitting the body into reads never changes the result.
        let whole = parse_sse(vec![body.into_bytes()]);
        prop_assert_eq!(format!("{out:?}"), format!("{whole:?}"));
    }
}
