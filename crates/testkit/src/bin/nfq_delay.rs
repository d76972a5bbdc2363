//! `nfq-delay`: adds latency to real packets. Binds netfilter queue `--queue` (packets sent
//! there by `iptables … -j NFQUEUE --queue-num N --queue-bypass`) and accepts each packet only
//! after `--delay-ms` ± `--jitter-ms` (uniform), like `tc qdisc netem delay D J` — for kernels
//! built without `sch_netem`. Runs inside the network namespace whose rules queue the packets
//! (`ip netns exec NS nfq-delay …`); prints `nfq-delay bound to queue N` once ready. With
//! `--queue-bypass` on the rule, packets flow undelayed when this process is gone.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    queue: u16,
    #[arg(long, default_value_t = 50)]
    delay_ms: u64,
    #[arg(long, default_value_t = 10)]
    jitter_ms: u64,
}

/// A held packet, released at `at`.
struct Held {
    at: Instant,
    seq: u64,
    msg: nfq::Message,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut queue = nfq::Queue::open().context("open netfilter queue socket")?;
    queue.bind(args.queue).context("bind queue")?;
    queue.set_fail_open(args.queue, true)?;
    queue.set_nonblocking(true);
    let mut out = std::io::stdout();
    writeln!(out, "nfq-delay bound to queue {}", args.queue)?;
    out.flush()?;

    let delay = args.delay_ms as f64;
    let jitter = args.jitter_ms as f64;
    let mut held: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    let ms = (delay + rand::random_range(-jitter..=jitter)).max(0.0);
                    msg.set_verdict(nfq::Verdict::Accept);
                    seq += 1;
                    held.push(Reverse(Held {
                        at: Instant::now() + Duration::from_secs_f64(ms / 1000.0),
                        seq,
                        msg,
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context("receive from queue"),
            }
        }
        let now = Instant::now();
        while held.peek().is_some_and(|h| h.0.at <= now) {
            if let Some(Reverse(h)) = held.pop() {
                queue.verdict(h.msg).context("verdict")?;
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}
