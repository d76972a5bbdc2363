//! What the machine is doing: resident memory of a process, load average, whether a compiler is
//! running next to the benchmark (Linux `/proc`).

use serde::Serialize;

/// `VmRSS` of `pid` in KiB, from `/proc/PID/status`; `None` if unreadable (process gone).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss(&status)
}

fn parse_vmrss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// CPU time (user + system, all threads) used so far by `pid`, in microseconds, from
/// `/proc/PID/stat` (clock ticks of 10 ms: `CLK_TCK` is 100 on Linux). `None` if unreadable.
pub fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks * 10_000)
}

/// CPU time (user + system) used so far by this process's children that have exited and been
/// waited for (`cutime` + `cstime` of `/proc/self/stat`), in microseconds (10 ms ticks). The
/// difference across a child's whole life (spawn → reaped) is that child's CPU time: how the
/// `wrk` phase measures wrk itself, whose `/proc/PID` is gone once it has exited.
pub fn children_cpu_micros() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_children_ticks(&stat).map(|ticks| ticks * 10_000)
}

fn parse_children_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // cutime (16) and cstime (17) are at 13 and 14 after ')'.
    let cutime: u64 = fields.get(13)?.parse().ok()?;
    let cstime: u64 = fields.get(14)?.parse().ok()?;
    Some(cutime + cstime)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces; fields after its closing ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': field 3 is at index 0, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A snapshot of how busy the machine is.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Load {
    /// 1-minute load average.
    pub loadavg_1m: f64,
    /// Number of `rustc` processes running (other engineers compiling).
    pub rustc_processes: usize,
}

impl Load {
    /// Reads `/proc/loadavg` and counts `rustc` processes in `/proc/*/comm`.
    pub fn now() -> Load {
        let loadavg_1m = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0.0);
        let rustc_processes = std::fs::read_dir("/proc")
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| {
                        std::fs::read_to_string(e.path().join("comm"))
                            .is_ok_and(|c| c.trim() == "rustc")
                    })
                    .count()
            })
            .unwrap_or(0);
        Load {
            loadavg_1m,
            rustc_processes,
        }
    }

    /// Quiet enough for a measured run: load < 1.5 and no compiler.
    pub fn is_quiet(&self) -> bool {
        self.loadavg_1m < 1.5 && self.rustc_processes == 0
    }
}

/// Logical CPUs available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmrss() {
        let s = "Name:\thub\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss(s), Some(12345));
        assert_eq!(parse_vmrss("Name: x\n"), None);
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
        let stat = "42 (my proc) S 1 42 42 0 -1 4194304 100 0 0 0 7 3 15 5 20 0 1 0 1 1 1";
        assert_eq!(parse_cpu_ticks(stat), Some(10));
        assert!(cpu_micros(std::process::id()).is_some());
        assert_eq!(parse_children_ticks(stat), Some(20));
        assert!(children_cpu_micros().is_some());
    }
}
