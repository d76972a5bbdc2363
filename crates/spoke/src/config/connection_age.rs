//! `max_connection_age` and its grace, validated.

use std::time::Duration;

/// How long a hub connection lives. A TCP load balancer (NLB, HAProxy in TCP mode) balances
/// connections, not calls: ending each connection after `max_age` (±10 % jitter, so a fleet's
/// connections do not all reconnect at once) with a graceful GOAWAY makes every hub reconnect
/// through the balancer, so a task added by scaling out gets calls within `max_age × 1.1`, and
/// a task deregistered from the balancer is left by every hub within the same bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionAge {
    /// None = connections live until a side closes them.
    pub max_age: Option<Duration>,
    /// After the GOAWAY, calls in flight get this long; then the connection is closed.
    pub grace: Duration,
}

impl Default for ConnectionAge {
    fn default() -> Self {
        Self {
            max_age: Some(Duration::from_secs(60)),
            grace: Duration::from_secs(300),
        }
    }
}
