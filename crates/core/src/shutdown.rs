//! Process shutdown: resolve on SIGTERM or Ctrl-C (SIGINT).

/// Completes when the process is asked to stop. Used as the graceful-shutdown trigger of the
/// servers; they then stop accepting, drain in-flight calls and streams, and return.
pub async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("received Ctrl-C, shutting down"),
        _ = term => tracing::info!("received SIGTERM, shutting down"),
    }
}
