//! One connection to the shared Redis, whatever its shape: a single node (or a primary with
//! replicas behind one endpoint) or a Redis Cluster (ElastiCache / MemoryDB / Valkey in cluster
//! mode). Every shared store — tenant and account quotas, the hub's response cache, stored
//! responses — talks to Redis through [`RedisConn`], so each of them works on both.
//!
//! **Which shape** is not configured: [`connect`] asks the first seed node that answers
//! (`INFO cluster`, `cluster_enabled:1`). On a cluster the connection follows `MOVED` / `ASK`
//! redirections, learns the slot map from the seeds and refreshes it when a primary fails over.
//!
//! **Seeds**: the URL is one `redis://` / `rediss://` URL, or several separated by commas
//! (cluster seed nodes; one is enough, e.g. ElastiCache's configuration endpoint). TLS
//! (`rediss://`) and AUTH (`redis://user:password@…`) come from the URL, which usually comes from
//! an environment variable (`redis_url_env`) so no secret sits in a config file. All seeds must
//! share TLS mode and credentials.
//!
//! **Keys**: a cluster runs a script or a multi-key command only when all its keys hash to one
//! slot. Stores put the part that groups keys in a hash tag — `{prefix}:{<scope>}:<part>` — see
//! [`hash_tag`].

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;

/// A connection to a single Redis node or to a Redis Cluster. Cheap to clone (both kinds are
/// multiplexed and reconnect by themselves); clones share the connection.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    // Never the URL: it may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConn::Single",
            Self::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl RedisConn {
    /// True on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Why [`connect`] failed. The text never carries the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("redis URL: {0}")]
    Url(String),
    #[error("no Redis seed node answered within {0:?}")]
    Unreachable(Duration),
    #[error("redis: {0}")]
    Redis(String),
}

/// The seed URLs of `urls` (comma-separated), each parsed. Errors name the seed's position only.
pub fn seeds(urls: &str) -> Result<Vec<redis::ConnectionInfo>, ConnectError> {
    let list: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if list.is_empty() {
        return Err(ConnectError::Url("no URL given".into()));
    }
    list.iter()
        .enumerate()
        .map(|(i, u)| {
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                return Err(ConnectError::Url(format!(
                    "seed {} is not a redis:// or rediss:// URL",
                    i + 1
                )));
            }
            redis::IntoConnectionInfo::into_connection_info(*u)
                .map_err(|e| ConnectError::Url(format!("seed {}: {}", i + 1, e.kind_str())))
        })
        .collect()
}

trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for redis::RedisError {
    /// The error's category, without its detail (which may quote the URL).
    fn kind_str(&self) -> String {
        format!("{:?}", self.kind())
    }
}

/// Connects to the Redis at `urls` (see the module docs), a single node or a cluster, found out
/// by asking the seeds. `timeout` bounds connecting to each node and every operation's answer.
pub async fn connect(urls: &str, timeout: Duration) -> Result<RedisConn, ConnectError> {
    let seeds = seeds(urls)?;
    let mut cluster = None;
    for info in &seeds {
        match probe(info.clone(), timeout).await {
            Ok(enabled) => {
                cluster = Some(enabled);
                break;
            }
            Err(e) => tracing::debug!(error = %e, "redis seed did not answer"),
        }
    }
    let Some(cluster) = cluster else {
        return Err(ConnectError::Unreachable(timeout));
    };
    if cluster {
        let client = ClusterClientBuilder::new(seeds)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            // A failover takes a few seconds; the stores' own timeout bounds each call, and a
            // call that fails falls back (quota: local limits; cache: a miss).
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .build()
            .map_err(|e| ConnectError::Redis(e.kind_str()))?;
        let conn = tokio::time::timeout(timeout * 4, client.get_async_connection())
            .await
            .map_err(|_| ConnectError::Unreachable(timeout))?
            .map_err(|e| ConnectError::Redis(e.kind_str()))?;
        tracing::info!(seeds = seeds_count(urls), "connected to a Redis Cluster");
        Ok(RedisConn::Cluster(conn))
    } else {
        if seeds.len() > 1 {
            tracing::warn!(
                "several Redis URLs given but the node is not in cluster mode; using the first that answered"
            );
        }
        let mut last = ConnectError::Unreachable(timeout);
        for info in seeds {
            let client =
                redis::Client::open(info).map_err(|e| ConnectError::Redis(e.kind_str()))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            match tokio::time::timeout(
                timeout * 2,
                ConnectionManager::new_with_config(client, config),
            )
            .await
            {
                Ok(Ok(c)) => return Ok(RedisConn::Single(c)),
                Ok(Err(e)) => last = ConnectError::Redis(e.kind_str()),
                Err(_) => last = ConnectError::Unreachable(timeout),
            }
        }
        Err(last)
    }
}

fn seeds_count(urls: &str) -> usize {
    urls.split(',').filter(|u| !u.trim().is_empty()).count()
}

/// Asks one node whether it runs in cluster mode.
async fn probe(info: redis::ConnectionInfo, timeout: Duration) -> Result<bool, ConnectError> {
    let client = redis::Client::open(info).map_err(|e| ConnectError::Redis(e.kind_str()))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut conn = tokio::time::timeout(
        timeout * 2,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| ConnectError::Unreachable(timeout))?
    .map_err(|e| ConnectError::Redis(e.kind_str()))?;
    let info: String = tokio::time::timeout(
        timeout,
        redis::cmd("INFO").arg("cluster").query_async(&mut conn),
    )
    .await
    .map_err(|_| ConnectError::Unreachable(timeout))?
    .map_err(|e| ConnectError::Redis(e.kind_str()))?;
    Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
}

/// The hash tag of `key` by Redis Cluster's rule (the text between the first `{` and the next
/// `}`, when not empty), or the whole key: keys with the same result share a slot.
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_comma_separated_and_never_echoed() {
        assert_eq!(seeds("redis://a:7000, redis://b:7001,,").unwrap().len(), 2);
        let e = seeds("redis://a:7000,http://:hunter2@b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("seed 2"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(seeds(" , ").is_err());
    }

    #[test]
    fn hash_tags_follow_the_cluster_rule() {
        assert_eq!(hash_tag("p:{tenant:a}:rpm"), "tenant:a");
        assert_eq!(hash_tag("p:{}:rpm"), "p:{}:rpm");
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("a{b}{c}"), "b");
    }
}
