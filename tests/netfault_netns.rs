//! Network faults between real hosts: the hub and three spokes each run in their own network
//! namespace, the hub joined to every spoke by a veth pair (and to the test, which plays the
//! client, by one more). Faults are made in the kernel, on real packets:
//!
//! 1. **black hole** — spoke A drops every packet it is sent and sends none (iptables `DROP`;
//!    no RST, no ICMP): 0 client errors, and A is out of routing within `attempt_timeout` plus
//!    one health interval;
//! 2. **latency and loss** — packets to spoke B wait 50 ms ± 10 ms (uniform) and 5 % are lost
//!    (iptables `statistic` `DROP`, then an NFQUEUE held by `nfq-delay`: this kernel has no
//!    `sch_netem`); 0 client errors, and the p99 latency added to calls B serves is printed;
//!    B's faults are then lifted, and B must return to routing;
//! 3. **partition** — spoke C drops packets from and to the hub only, while its own `/healthz`
//!    still answers inside its host (its load balancer would keep it): 0 client errors, C out of
//!    routing within the same bound. B, clean again, is the route left: were it still lossy, a
//!    lost health probe would leave no route at all, and the 503s that follow would be right.
//!
//! Addresses come from 198.18.0.0/15 (RFC 2544, for testing network devices) and exist only in
//! the namespaces this test makes; nothing leaves the machine. Needs root (namespaces,
//! iptables); without it the test says it is skipped and returns. Namespaces and veths are
//! removed on drop. Real binaries (`cargo build --workspace --bins`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chaos_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chaos_common::*;
use switchyard_testkit::process::{Proc, binary_path, eventually, write_config};

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
const HEALTH_TIMEOUT: Duration = Duration::from_millis(500);

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn run(program: &Path, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {}: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces and links of one test run; removed on drop.
struct Net {
    ip: PathBuf,
    iptables: PathBuf,
    tag: String,
    namespaces: Vec<String>,
    /// Address of the test (client) end of the client link, and the hub's end.
    client_ip: String,
    hub_client_ip: String,
}

impl Net {
    /// `hub` and `s1..=s3`, hub ↔ spoke i on 198.18.i.0/30 (hub .1, spoke .2), client ↔ hub on
    /// a /30 of 198.19.0.0/16 picked from the process id (tests run in parallel processes).
    fn create() -> Result<Net, String> {
        let ip = tool("ip").ok_or("iproute2 (`ip`) not installed")?;
        let iptables = tool("iptables").ok_or("iptables not installed")?;
        let pid = std::process::id();
        let tag = format!("sy{}", pid % 10_000_000);
        let base = (pid % 16_384) * 4;
        let client_ip = format!("198.19.{}.{}", base / 256, base % 256 + 1);
        let hub_client_ip = format!("198.19.{}.{}", base / 256, base % 256 + 2);
        let mut net = Net {
            ip,
            iptables,
            tag: tag.clone(),
            namespaces: Vec::new(),
            client_ip,
            hub_client_ip,
        };
        for n in ["h", "s1", "s2", "s3"] {
            let ns = format!("{tag}{n}");
            net.ipc(&["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            net.ipc(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        let hub = net.ns("h");
        // Client link: one end stays here (root namespace), the other goes to the hub.
        let (c_root, c_hub) = (format!("{tag}c"), format!("{tag}d"));
        net.ipc(&[
            "link", "add", &c_root, "type", "veth", "peer", "name", &c_hub,
        ])?;
        net.ipc(&["link", "set", &c_hub, "netns", &hub])?;
        let client = format!("{}/30", net.client_ip);
        let hub_side = format!("{}/30", net.hub_client_ip);
        net.ipc(&["addr", "add", &client, "dev", &c_root])?;
        net.ipc(&["link", "set", &c_root, "up"])?;
        net.ipc(&["-n", &hub, "addr", "add", &hub_side, "dev", &c_hub])?;
        net.ipc(&["-n", &hub, "link", "set", &c_hub, "up"])?;
        for i in 1..=3 {
            let spoke = net.ns(&format!("s{i}"));
            let (a, b) = (format!("{tag}a{i}"), format!("{tag}b{i}"));
            net.ipc(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
            net.ipc(&["link", "set", &a, "netns", &hub])?;
            net.ipc(&["link", "set", &b, "netns", &spoke])?;
            let (ha, sa) = (format!("198.18.{i}.1/30"), format!("198.18.{i}.2/30"));
            net.ipc(&["-n", &hub, "addr", "add", &ha, "dev", &a])?;
            net.ipc(&["-n", &hub, "link", "set", &a, "up"])?;
            net.ipc(&["-n", &spoke, "addr", "add", &sa, "dev", &b])?;
            net.ipc(&["-n", &spoke, "link", "set", &b, "up"])?;
        }
        // Can iptables change this kernel's tables here?
        net.iptables_in("s1", &["-L", "INPUT", "-n"])?;
        Ok(net)
    }

    fn ns(&self, n: &str) -> String {
        format!("{}{n}", self.tag)
    }

    fn ipc(&self, args: &[&str]) -> Result<(), String> {
        run(&self.ip, args)
    }

    fn iptables_in(&self, n: &str, rule: &[&str]) -> Result<(), String> {
        let ns = self.ns(n);
        let ipt = self.iptables.to_string_lossy().into_owned();
        let mut args = vec!["netns", "exec", ns.as_str(), ipt.as_str()];
        args.extend_from_slice(rule);
        run(&self.ip, &args)
    }

    /// Spoke i's link device inside its namespace.
    fn spoke_dev(&self, i: u32) -> String {
        format!("{}b{i}", self.tag)
    }

    /// Starts `bin` (a workspace binary) inside namespace `n`, waiting for `listening on`.
    async fn spawn(&self, n: &str, bin: &str, name: &str, config: &Path) -> Proc {
        let path = binary_path(bin).unwrap();
        Proc::spawn_path(
            &self.ip,
            name,
            &[
                "netns".into(),
                "exec".into(),
                self.ns(n),
                path.to_string_lossy().into_owned(),
                "--config".into(),
                config.to_string_lossy().into_owned(),
            ],
            &[],
            Duration::from_secs(60),
        )
        .await
        .unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace removes its veth ends, and with them their peers.
        for ns in self.namespaces.iter().rev() {
            let _ = run(&self.ip, &["netns", "del", ns]);
        }
        let _ = run(&self.ip, &["link", "del", &format!("{}c", self.tag)]);
    }
}

/// `nfq-delay` inside a namespace, killed on drop.
struct Delay(tokio::process::Child);

impl Drop for Delay {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn start_delay(net: &Net, n: &str, queue: u16) -> Delay {
    let bin = binary_path("nfq-delay").unwrap();
    let mut child = tokio::process::Command::new(&net.ip)
        .args(["netns", "exec", &net.ns(n)])
        .arg(bin)
        .args([
            "--queue",
            &queue.to_string(),
            "--delay-ms",
            "50",
            "--jitter-ms",
            "10",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line),
    )
    .await
    .expect("nfq-delay did not start")
    .unwrap();
    assert!(line.contains("bound to queue"), "nfq-delay: {line}");
    Delay(child)
}

/// The spoke's `/healthz` status asked from inside its own namespace (where its load balancer's
/// checks would come from), by a Python one-liner run there.
fn healthz_inside(net: &Net, n: &str, addr: SocketAddr) -> Option<u16> {
    let py = format!(
        "import urllib.request as u\ntry:\n  print(u.urlopen('http://{addr}/healthz', timeout=2).status)\n\
         except Exception as e:\n  print(getattr(e, 'code', 0))"
    );
    let out = std::process::Command::new(&net.ip)
        .args(["netns", "exec", &net.ns(n), "python3", "-c", &py])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The `q` quantile (0..=1) of `ms`, nearest rank.
fn quantile(mut ms: Vec<f64>, q: f64) -> f64 {
    if ms.is_empty() {
        return 0.0;
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1]
}

fn took_ms(recs: &[&Rec]) -> Vec<f64> {
    recs.iter()
        .map(|r| r.took().as_secs_f64() * 1000.0)
        .collect()
}

/// The hub's log lines about `spoke` joining or leaving routing, in order.
fn routing_lines(hub: &Proc, spoke: SocketAddr) -> Vec<String> {
    let needle = format!("spoke={spoke}");
    hub.logs()
        .lines()
        .filter(|l| {
            l.contains(&needle)
                && (l.contains("spoke healthy")
                    || l.contains("spoke unhealthy")
                    || l.contains("spoke ejected"))
        })
        .map(str::to_string)
        .collect()
}

/// How many times the hub has taken `spoke` out of routing (unhealthy or ejected).
fn left_routing(hub: &Proc, spoke: SocketAddr) -> usize {
    routing_lines(hub, spoke)
        .iter()
        .filter(|l| !l.contains("spoke healthy"))
        .count()
}

/// Whether `spoke` is in routing by the hub's log: its last join-or-leave line is a join.
fn in_routing(hub: &Proc, spoke: SocketAddr) -> bool {
    routing_lines(hub, spoke)
        .last()
        .is_some_and(|l| l.contains("spoke healthy"))
}

/// Waits until the hub logs that `spoke` left routing (ejected or unhealthy); the time it took.
async fn out_of_routing(
    hub: &Proc,
    spoke: SocketAddr,
    since: Instant,
    within: Duration,
) -> Duration {
    let gone = eventually(within, || async { left_routing(hub, spoke) > 0 }).await;
    assert!(
        gone,
        "hub still routes to {spoke} after {within:?}:\n{}",
        hub.logs()
    );
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_latency_loss_and_partition_between_namespaces() {
    let net = match Net::create() {
        Ok(n) => n,
        Err(why) => {
            println!("SKIPPED: network namespaces cannot be made here (needs root): {why}");
            return;
        }
    };

    let mut spokes = Vec::new();
    let mut configs = Vec::new();
    for (i, acct) in [(1, "acct-a"), (2, "acct-b"), (3, "acct-c")] {
        let toml = format!(
            "listen = \"198.18.{i}.2:0\"\naccount = \"{acct}\"\nprovider = \"simulated\"\n\
             default_timeout = \"20s\"\ndrain_timeout = \"5s\"\n[simulated]\nlatency = \"5ms\"\n\
             [[regions]]\nname = \"us-east-1\"\nendpoint = \"http://unused.invalid\"\n[[models]]\nid = \"m1\"\nstreaming = true\n"
        );
        let cfg = write_config(&toml, "toml").unwrap();
        spokes.push(
            net.spawn(&format!("s{i}"), "spoke", &format!("spoke-{acct}"), &cfg)
                .await,
        );
        configs.push(cfg);
    }
    let hub_toml = format!(
        "listen = \"{}:0\"\nattempt_timeout = \"{}ms\"\n{DEMO_M1}\
         [[providers]]\nname = \"p1\"\nspokes = [{}]\n\
         health = {{ interval = \"{}ms\", timeout = \"{}ms\", unhealthy_threshold = 1 }}\n\
         [[tenants]]\nname = \"chaos\"\napi_key_sha256 = [\"{KEY_SHA256}\"]\naliases = [\"*\"]\n",
        net.hub_client_ip,
        ATTEMPT_TIMEOUT.as_millis(),
        spokes
            .iter()
            .map(|s| format!("{{ addr = \"{}\" }}", s.addr()))
            .collect::<Vec<_>>()
            .join(", "),
        HEALTH_INTERVAL.as_millis(),
        HEALTH_TIMEOUT.as_millis(),
    );
    let hub_cfg = write_config(&hub_toml, "toml").unwrap();
    let hub = net.spawn("h", "hub", "hub", &hub_cfg).await;
    let ok = eventually(Duration::from_secs(20), || async {
        hub.count_log("spoke healthy") >= 3
    })
    .await;
    assert!(ok, "spokes never healthy behind veths:\n{}", hub.logs());
    println!(
        "client {} -> hub {} in its own namespace",
        net.client_ip,
        hub.addr()
    );

    let url = format!("http://{}/v1/chat/completions", hub.addr());
    let load = LoadLoop::start_bounded(&url, 6, false, Duration::from_millis(10), 5_000);

    // 0. Baseline.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 1. Black hole: spoke A gets nothing through and sends nothing out.
    let bound = ATTEMPT_TIMEOUT + HEALTH_INTERVAL;
    let dev_a = net.spoke_dev(1);
    net.iptables_in("s1", &["-I", "INPUT", "-i", &dev_a, "-j", "DROP"])
        .unwrap();
    net.iptables_in("s1", &["-I", "OUTPUT", "-o", &dev_a, "-j", "DROP"])
        .unwrap();
    let holed = Instant::now();
    let a_gone = out_of_routing(
        &hub,
        spokes[0].addr(),
        holed,
        bound + Duration::from_secs(2),
    )
    .await;
    tokio::time::sleep_until((holed + bound).into()).await;
    let after_hole = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 2. Latency 50 ms ± 10 ms and 5 % loss on the packets to spoke B.
    let dev_b = net.spoke_dev(2);
    let delay = start_delay(&net, "s2", 7).await;
    net.iptables_in(
        "s2",
        &[
            "-A",
            "INPUT",
            "-i",
            &dev_b,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.25",
            "-j",
            "DROP",
        ],
    )
    .unwrap();
    net.iptables_in(
        "s2",
        &[
            "-A",
            "INPUT",
            "-i",
            &dev_b,
            "-j",
            "NFQUEUE",
            "--queue-num",
            "7",
            "--queue-bypass",
        ],
    )
    .unwrap();
    let slowed = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;

    // B's faults are lifted before the partition, and B is back in routing: with A and C cut
    // off, B is the only route left, and a lossy B may fail a health probe (the hub's threshold
    // here is 1) and leave none, an outage the hub answers with 503 as it should. Each fault is
    // measured with a clean spoke left to serve.
    net.iptables_in("s2", &["-F", "INPUT"]).unwrap();
    let lifted = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(delay);
    let b_flaps = left_routing(&hub, spokes[1].addr());
    let b_back = eventually(Duration::from_secs(10), || async {
        in_routing(&hub, spokes[1].addr())
    })
    .await;
    assert!(
        b_back,
        "spoke B did not return to routing after its faults were lifted:\n{}",
        hub.logs()
    );

    // 3. Partition: spoke C cut off from the hub only.
    let hub_side_c = "198.18.3.1";
    net.iptables_in("s3", &["-I", "INPUT", "-s", hub_side_c, "-j", "DROP"])
        .unwrap();
    net.iptables_in("s3", &["-I", "OUTPUT", "-d", hub_side_c, "-j", "DROP"])
        .unwrap();
    let parted = Instant::now();
    let c_gone = out_of_routing(
        &hub,
        spokes[2].addr(),
        parted,
        bound + Duration::from_secs(2),
    )
    .await;
    tokio::time::sleep_until((parted + bound).into()).await;
    let after_part = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let c_health = healthz_inside(&net, "s3", spokes[2].addr());
    let recs = load.stop().await;

    // Report.
    println!("netfault: {}", summary(&recs));
    let base: Vec<&Rec> = recs.iter().filter(|r| r.ended < holed && r.ok()).collect();
    let via_b: Vec<&Rec> = recs
        .iter()
        .filter(|r| {
            r.started >= slowed
                && r.ended < lifted
                && r.ok()
                && r.account == "acct-b"
                && r.attempts == 1
        })
        .collect();
    let (p99_base, p99_b) = (
        quantile(took_ms(&base), 0.99),
        quantile(took_ms(&via_b), 0.99),
    );
    let (p50_base, p50_b) = (
        quantile(took_ms(&base), 0.5),
        quantile(took_ms(&via_b), 0.5),
    );
    println!(
        "black hole: spoke A out of routing after {:.2} s (bound attempt_timeout {} s + health interval {} s = {} s)",
        a_gone.as_secs_f64(),
        ATTEMPT_TIMEOUT.as_secs(),
        HEALTH_INTERVAL.as_secs(),
        bound.as_secs()
    );
    println!(
        "latency 50±10 ms + 5 % loss on spoke B: p99 {p99_b:.1} ms over {} calls vs baseline p99 {p99_base:.1} ms over {} calls: p99 added latency {:.1} ms (p50 added {:.1} ms)",
        via_b.len(),
        base.len(),
        p99_b - p99_base,
        p50_b - p50_base
    );
    println!(
        "spoke B left routing {b_flaps} time(s) while slow and lossy (health timeout {} ms, unhealthy_threshold 1)",
        HEALTH_TIMEOUT.as_millis()
    );
    println!(
        "partition: spoke C out of routing after {:.2} s; its /healthz inside its host answers {c_health:?}",
        c_gone.as_secs_f64()
    );

    assert!(
        recs.iter().all(Rec::ok),
        "client errors although another spoke could serve:\n{}",
        failures(&recs)
    );
    assert!(
        a_gone <= bound,
        "black-holed spoke left routing after {a_gone:?} (bound {bound:?})"
    );
    assert!(
        c_gone <= bound,
        "partitioned spoke left routing after {c_gone:?} (bound {bound:?})"
    );
    // Between the bound and the next fault, no call tried A (a retry would show in its attempts).
    let late_a = recs
        .iter()
        .filter(|r| {
            r.started >= after_hole
                && r.started < slowed
                && (r.account == "acct-a" || r.attempts > 1)
        })
        .count();
    assert_eq!(
        late_a, 0,
        "calls still tried the black-holed spoke after the bound"
    );
    let late_c = recs
        .iter()
        .filter(|r| r.started >= after_part && (r.account == "acct-c" || r.attempts > 1))
        .count();
    assert_eq!(
        late_c, 0,
        "calls still tried the partitioned spoke after the bound"
    );
    assert!(
        via_b.len() >= 20,
        "too few calls through the slow spoke: {}",
        via_b.len()
    );
    // Every call through B crosses the delayed direction at least once (≥ 40 ms); the median
    // shows it whatever the machine's load does to the tails.
    assert!(
        p50_b - p50_base >= 30.0,
        "the added latency did not show: p50 {p50_b:.1} ms vs {p50_base:.1} ms"
    );
    assert_eq!(
        c_health,
        Some(200),
        "the partitioned spoke must stay healthy inside its host"
    );
    drop(hub);
    drop(spokes);
    drop(net);
}
