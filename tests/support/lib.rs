//! Shared helpers for the workspace-level end-to-end tests: start real `spoke` processes on
//! generated configs and talk to them over gRPC and HTTP.

use std::time::Duration;
use switchyard_proto::v1::spoke_client::SpokeClient;
use switchyard_proto::v1::{
    ContentPart, GenerationParams, InferRequest, Message, Role, content_part::Part,
};
use switchyard_testkit::process::{Proc, write_config};
use tonic::transport::Channel;

/// A running spoke process and the config file it was started with.
pub struct Spoke {
    pub proc: Proc,
    /// The temporary config file, removed when the spoke is dropped.
    _config: tempfile::TempPath,
}

impl Spoke {
    /// Starts `spoke --config <toml>` and waits for `listening on`.
    pub async fn start(toml: &str) -> anyhow::Result<Spoke> {
        Self::start_with_env(toml, &[]).await
    }

    /// [`Spoke::start`] with extra environment variables.
    pub async fn start_with_env(toml: &str, env: &[(&str, &str)]) -> anyhow::Result<Spoke> {
        let path = write_config(toml, "toml")?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let proc = Proc::spawn(
            "spoke",
            &["--config".to_string(), path.to_string_lossy().into_owned()],
            &env,
        )
        .await?;
        Ok(Spoke {
            proc,
            _config: path,
        })
    }

    pub fn url(&self) -> String {
        self.proc.url()
    }

    pub async fn grpc(&self) -> anyhow::Result<SpokeClient<Channel>> {
        Ok(SpokeClient::connect(self.url()).await?)
    }
}

/// A running hub process and the config file it was started with.
pub struct Hub {
    pub proc: Proc,
    _config: tempfile::TempPath,
}

impl Hub {
    /// Starts `hub --config <toml>` and waits for `listening on`.
    pub async fn start(toml: &str) -> anyhow::Result<Hub> {
        let path = write_config(toml, "toml")?;
        let proc = Proc::spawn(
            "hub",
            &["--config".to_string(), path.to_string_lossy().into_owned()],
            &[],
        )
        .await?;
        Ok(Hub {
            proc,
            _config: path,
        })
    }

    /// [`Hub::start`], then waits (15 s at most) until `/readyz` answers 200: a spoke of some
    /// pool is healthy.
    pub async fn start_ready(toml: &str) -> anyhow::Result<Hub> {
        let hub = Self::start(toml).await?;
        let ready = hub.url("/readyz");
        let seen = switchyard_testkit::process::eventually(Duration::from_secs(15), || {
            let r = ready.clone();
            async move { reqwest::get(&r).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        anyhow::ensure!(seen, "hub never ready: {}", hub.proc.logs());
        Ok(hub)
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.proc.url())
    }

    /// Waits (15 s at most) until the hub logged `spoke healthy` `n` times.
    pub async fn wait_healthy(&self, n: usize) -> anyhow::Result<()> {
        let seen = switchyard_testkit::process::eventually(Duration::from_secs(15), || async {
            self.proc.count_log("spoke healthy") >= n
        })
        .await;
        anyhow::ensure!(
            seen,
            "the hub did not see {n} healthy spokes:\n{}",
            self.proc.logs()
        );
        Ok(())
    }
}

/// The JSON lines of an audit file (none while it does not exist).
pub fn audit_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// An `InferRequest` with one user message.
pub fn request(models: &[&str], text: &str) -> InferRequest {
    InferRequest {
        request_id: String::new(),
        models: models.iter().map(|m| m.to_string()).collect(),
        system: String::new(),
        messages: vec![Message {
            role: Role::User as i32,
            content: vec![ContentPart {
                part: Some(Part::Text(text.to_string())),
            }],
        }],
        params: Some(GenerationParams {
            max_tokens: Some(100),
            ..Default::default()
        }),
        allowed_regions: vec![],
        timeout_ms: 10_000,
        tools: vec![],
        ..Default::default()
    }
}

/// `(model, region, outcome)` of each attempt, for asserting on the route plan a request took.
#[allow(clippy::unwrap_used)] // test support: an unknown outcome fails the test
pub fn outcomes(
    attempts: &[switchyard_proto::v1::Attempt],
) -> Vec<(String, String, switchyard_proto::v1::Outcome)> {
    attempts
        .iter()
        .map(|a| {
            let t = a.target.clone().unwrap_or_default();
            (
                t.model,
                t.region,
                switchyard_proto::v1::Outcome::try_from(a.outcome).unwrap(),
            )
        })
        .collect()
}

/// One expected entry of [`outcomes`].
pub fn o(
    model: &str,
    region: &str,
    outcome: switchyard_proto::v1::Outcome,
) -> (String, String, switchyard_proto::v1::Outcome) {
    (model.to_string(), region.to_string(), outcome)
}

/// The text of a response message.
pub fn text_of(m: Option<&Message>) -> String {
    m.iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match &p.part {
            Some(Part::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// TOML for a spoke with `provider`, regions `(name, endpoint)` and raw `[[models]]` blocks.
pub fn spoke_toml(provider: &str, regions: &[(&str, &str)], models: &str, extra: &str) -> String {
    let mut t = format!(
        "listen = \"127.0.0.1:0\"\naccount = \"111111111111\"\nprovider = \"{provider}\"\n\
         default_timeout = \"20s\"\ndrain_timeout = \"20s\"\n{extra}\n"
    );
    for (name, ep) in regions {
        t.push_str(&format!(
            "[[regions]]\nname = \"{name}\"\nendpoint = \"{ep}\"\n"
        ));
    }
    t.push_str(models);
    t
}

pub const SECOND: Duration = Duration::from_secs(1);

/// Prometheus text as the tests read it: samples by `name{labels}`, sums over label subsets,
/// and a scrape that waits until nothing is in flight.
#[allow(clippy::expect_used, clippy::panic)] // test support: a failed scrape fails the test
pub mod prom {
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// `name{labels}` → value.
    pub type Samples = BTreeMap<String, f64>;

    /// Parses Prometheus text into (name{labels} → value).
    pub fn samples(text: &str) -> Samples {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    /// Sum of the samples of metric `name` whose labels include every `want` pair.
    pub fn sum(m: &Samples, name: &str, want: &[(&str, &str)]) -> f64 {
        m.iter()
            .filter(|(k, _)| {
                k.strip_prefix(name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
                    && want
                        .iter()
                        .all(|(l, v)| k.contains(&format!("{l}=\"{v}\"")))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// `GET url` (a `/metrics` endpoint): must be 200 Prometheus text.
    pub async fn scrape(url: &str) -> Samples {
        let r = reqwest::get(url).await.expect("scrape /metrics");
        assert_eq!(r.status(), 200, "GET {url}");
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ct.starts_with("text/plain"), "content-type {ct}");
        samples(&r.text().await.expect("metrics body"))
    }

    /// Scrapes `url` until gauge `in_flight` is 0 (every request record, streams included, has
    /// finished); panics after 10 s.
    pub async fn settled(url: &str, in_flight: &str) -> Samples {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let m = scrape(url).await;
            if sum(&m, in_flight, &[]) == 0.0 {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{in_flight} never reached 0 at {url}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An upstream provider kind, for tests that run one scenario against each provider's fake.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UpstreamKind {
    Bedrock,
    OpenAi,
    Anthropic,
}

/// The wire-faithful fake of one provider kind (Bedrock, OpenAI, Anthropic), used as a
/// [`switchyard_testkit::FakeServer`].
pub enum FakeUpstream {
    Bedrock(switchyard_testkit::FakeBedrock),
    OpenAi(switchyard_testkit::FakeOpenAi),
    Anthropic(switchyard_testkit::FakeAnthropic),
}

impl std::ops::Deref for FakeUpstream {
    type Target = switchyard_testkit::FakeServer;

    fn deref(&self) -> &switchyard_testkit::FakeServer {
        match self {
            FakeUpstream::Bedrock(f) => f,
            FakeUpstream::OpenAi(f) => f,
            FakeUpstream::Anthropic(f) => f,
        }
    }
}

impl FakeUpstream {
    /// Starts the fake of kind `p`, labelled `label` in its answers.
    #[expect(
        clippy::expect_used,
        reason = "a test fixture: a fake that cannot bind fails the test"
    )]
    pub async fn start(p: UpstreamKind, label: &str) -> FakeUpstream {
        let f = match p {
            UpstreamKind::Bedrock => FakeUpstream::Bedrock(
                switchyard_testkit::FakeBedrock::start()
                    .await
                    .expect("fake upstream starts"),
            ),
            UpstreamKind::OpenAi => FakeUpstream::OpenAi(
                switchyard_testkit::FakeOpenAi::start()
                    .await
                    .expect("fake upstream starts"),
            ),
            UpstreamKind::Anthropic => FakeUpstream::Anthropic(
                switchyard_testkit::FakeAnthropic::start()
                    .await
                    .expect("fake upstream starts"),
            ),
        };
        f.set_label(label);
        f
    }

    /// The fake's base URL.
    pub fn url(&self) -> String {
        match self {
            FakeUpstream::Bedrock(f) => f.url(),
            FakeUpstream::OpenAi(f) => f.url(),
            FakeUpstream::Anthropic(f) => f.url(),
        }
    }
}
