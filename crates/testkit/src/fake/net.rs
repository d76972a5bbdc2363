//! The fakes' listener: every accepted connection is registered (as a duplicated socket) so
//! that [`super::FakeServer::stop`] can sever open connections like a crashed upstream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Open connections of a running server, by id, as duplicated sockets we can shut down.
type ConnRegistry = Arc<Mutex<HashMap<u64, std::net::TcpStream>>>;

/// A `TcpListener` that registers every accepted connection so [`FakeServer::stop`] can sever it.
struct TrackingListener {
    inner: TcpListener,
    conns: ConnRegistry,
    next: u64,
}

impl axum::serve::Listener for TrackingListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    self.next += 1;
                    let id = self.next;
                    // A dup of the socket: shutting it down ends the connection for hyper too.
                    if let Some(dup) = dup_socket(&stream) {
                        self.conns.lock().insert(id, dup);
                    }
                    let tracked = TrackedStream {
                        inner: stream,
                        id,
                        conns: self.conns.clone(),
                    };
                    return (tracked, addr);
                }
                Err(e) => {
                    tracing::debug!("fake upstream: accept failed: {e}");
                    // Back off a little (e.g. EMFILE) instead of spinning.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(unix)]
fn dup_socket(stream: &TcpStream) -> Option<std::net::TcpStream> {
    use std::os::fd::AsFd;
    let owned = stream.as_fd().try_clone_to_owned().ok()?;
    Some(std::net::TcpStream::from(owned))
}

#[cfg(not(unix))]
fn dup_socket(_stream: &TcpStream) -> Option<std::net::TcpStream> {
    None
}

/// An accepted connection; unregisters itself when hyper drops it.
struct TrackedStream {
    inner: TcpStream,
    id: u64,
    conns: ConnRegistry,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        self.conns.lock().remove(&self.id);
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[derive(Debug)]
pub(super) struct Running {
    task: JoinHandle<()>,
    conns: ConnRegistry,
}

impl Running {
    pub(super) fn stop(self) {
        self.task.abort();
        for (_, conn) in self.conns.lock().drain() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
}

pub(super) fn spawn_server(listener: TcpListener, app: Router) -> Running {
    let conns: ConnRegistry = Arc::new(Mutex::new(HashMap::new()));
    let listener = TrackingListener {
        inner: listener,
        conns: conns.clone(),
        next: 0,
    };
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("fake upstream server ended: {e}");
        }
    });
    Running { task, conns }
}
