//! The floor relay's stream end to end: the testkit's OpenAI fake (in this process, pausing
//! before each content chunk) → `floor-relay back` → `floor-relay front` (this crate's binary,
//! as `switchyard-bench` starts them), read as SSE by a plain client.

use std::time::{Duration, Instant};

use switchyard_bench::stack::{MODEL, request_body, start_floor};
use switchyard_testkit::{FakeOpenAi, completion_text};

/// The fake's pause before each content chunk: long enough that a relay which forwarded the
/// chunks as they came cannot show two of them in one read.
const CHUNK_DELAY: Duration = Duration::from_millis(50);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_relay_streams_chunk_by_chunk() -> anyhow::Result<()> {
    let fake = FakeOpenAi::start().await?;
    fake.set_chunk_delay(CHUNK_DELAY);
    let floor_bin = std::path::Path::new(env!("CARGO_BIN_EXE_floor-relay"));
    let (_back, front) = start_floor(floor_bin, &fake.base_url(), None, &[]).await?;

    let started = Instant::now();
    let mut resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", front.url()))
        .header("content-type", "application/json")
        .body(request_body(true))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );

    // (content, when its read arrived, which read) for every content event, in order.
    let mut contents: Vec<(String, Instant, usize)> = Vec::new();
    let mut finish = None;
    let (mut done, mut after_done, mut reads) = (false, 0, 0);
    let mut buf = String::new();
    while let Some(chunk) = resp.chunk().await? {
        let now = Instant::now();
        reads += 1;
        buf.push_str(std::str::from_utf8(&chunk)?);
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let data = event.trim().strip_prefix("data: ").unwrap_or_default();
            if done {
                after_done += 1;
            } else if data == "[DONE]" {
                done = true;
            } else {
                let v: serde_json::Value = serde_json::from_str(data)?;
                assert_eq!(v["object"], "chat.completion.chunk", "{data}");
                assert_eq!(v["model"], MODEL);
                let choice = &v["choices"][0];
                if let Some(text) = choice["delta"]["content"].as_str() {
                    contents.push((text.to_string(), now, reads));
                }
                if let Some(f) = choice["finish_reason"].as_str() {
                    finish = Some(f.to_string());
                }
            }
        }
    }
    assert!(done, "no [DONE]; rest {buf:?}");
    assert_eq!((after_done, buf.as_str()), (0, ""), "bytes after [DONE]");
    assert_eq!(finish.as_deref(), Some("stop"));

    let expected = completion_text(
        &fake.label(),
        MODEL,
        "one two three four five six seven eight",
    );
    let text: String = contents.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(text, expected);
    // One event per word, as the fake sent them, each in a read of its own.
    let words = expected.split_whitespace().count();
    assert_eq!(contents.len(), words, "{contents:?}");
    let mut which: Vec<usize> = contents.iter().map(|(_, _, r)| *r).collect();
    which.dedup();
    assert_eq!(which.len(), words, "content events shared a read");
    // And as they came: the first well before the last (the fake pauses before each one).
    let first = contents[0].1.duration_since(started);
    let spread = contents[words - 1].1.duration_since(contents[0].1);
    assert!(
        spread >= CHUNK_DELAY * (words as u32 - 1) * 8 / 10,
        "first content after {first:?}, last {spread:?} later: the relay buffered the stream"
    );

    // The back asked the upstream for a stream with usage, as the spoke does.
    let call = fake.last_request().expect("the fake saw the call");
    assert_eq!(call.body["stream"], true);
    assert_eq!(call.body["stream_options"]["include_usage"], true);
    Ok(())
}
