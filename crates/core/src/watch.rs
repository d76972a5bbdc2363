//! The config-file watcher both tiers use: wakes on SIGHUP and once a second, re-reads the file,
//! and hands it on when SIGHUP asked for it or its SHA-256 changed. What a reload means is the
//! caller's (`on_change`); the watcher only decides when.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// Why the file is handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP: reload even when the contents did not change.
    Hangup,
    /// The contents' SHA-256 changed.
    Changed,
}

impl Trigger {
    /// The log label: `SIGHUP` or `file changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Hangup => "SIGHUP",
            Trigger::Changed => "file changed",
        }
    }
}

/// What the watcher found.
#[derive(Debug)]
pub enum Change<'a> {
    /// The file's text (lossy UTF-8) and its SHA-256 (hex).
    Text {
        text: &'a str,
        hash: &'a str,
        trigger: Trigger,
    },
    /// SIGHUP asked for a reload and the file could not be read (the message names the path).
    Unreadable(String),
}

/// SHA-256 of `bytes`, lowercase hex: the config version both tiers report.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Watches `path` until `stop` completes. `seen` is the hash of the text in force. Must run
/// inside a tokio runtime.
pub async fn watch_file(
    path: PathBuf,
    mut seen: String,
    stop: impl Future<Output = ()>,
    mut on_change: impl FnMut(Change<'_>),
) {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP: {e}");
            None
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let forced = tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => false,
            () = hangup => true,
        };
        let bytes = match tokio::fs::read(&path).await {
            Ok(t) => t,
            Err(e) => {
                if forced {
                    on_change(Change::Unreadable(format!(
                        "cannot read {}: {e}",
                        path.display()
                    )));
                }
                continue;
            }
        };
        let hash = sha256_hex(&bytes);
        if !forced && hash == seen {
            continue;
        }
        seen.clone_from(&hash);
        let trigger = if forced {
            Trigger::Hangup
        } else {
            Trigger::Changed
        };
        on_change(Change::Text {
            text: &String::from_utf8_lossy(&bytes),
            hash: &hash,
            trigger,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hands_on_a_changed_file_once() {
        let dir = std::env::temp_dir().join(format!("sy-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "a = 1").unwrap();
        let seen = sha256_hex(b"a = 1");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = tokio_util_free_stop();
        let task = tokio::spawn(watch_file(path.clone(), seen, stop.1, move |c| {
            if let Change::Text { text, trigger, .. } = c {
                let _ = tx.send((text.to_string(), trigger));
            }
        }));
        std::fs::write(&path, "a = 2").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, ("a = 2".to_string(), Trigger::Changed));
        // Unchanged since: nothing more within two ticks.
        assert!(
            tokio::time::timeout(Duration::from_millis(2_500), rx.recv())
                .await
                .is_err()
        );
        let _ = stop.0.send(());
        task.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tokio_util_free_stop() -> (tokio::sync::oneshot::Sender<()>, impl Future<Output = ()>) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        (tx, async move {
            let _ = rx.await;
        })
    }
}
