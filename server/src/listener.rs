//! The server's own accept loop, in front of tonic.
//!
//! tonic's loop retried a failing `accept` (EMFILE when the descriptors
//! ran out) at once, spinning a core and logging nothing, and held every
//! connection a client opened, even one that never sent a request. Here:
//! - a failing `accept` is logged and retried after a growing pause;
//! - connections are capped in total and per peer address (IPv6: per /64);
//!   one over a cap is closed at once;
//! - the TLS handshake, and then the first HTTP/2 request (a HEADERS
//!   frame), must each come within `limits.first_request_timeout`, or the
//!   connection is closed.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

/// Pauses after a failed `accept`: from the first to the last, doubling.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The caps of the accept loop (from `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_total: usize,
    pub max_per_peer: usize,
    pub first_request_timeout: Duration,
}

/// Open connections, in total and per peer.
#[derive(Debug)]
pub struct ConnectionCounter {
    limits: ConnectionLimits,
    open: Mutex<(usize, HashMap<String, usize>)>,
}

/// One counted connection; dropping it gives the place back.
#[derive(Debug)]
pub struct Slot {
    counter: Arc<ConnectionCounter>,
    peer: String,
}

impl ConnectionCounter {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(ConnectionCounter {
            limits,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// A place for a connection from `peer`, or why there is none.
    pub fn try_acquire(self: &Arc<Self>, peer: &str) -> Result<Slot, &'static str> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= self.limits.max_total {
            return Err("limits.max_connections reached");
        }
        let of_peer = open.1.get(peer).copied().unwrap_or(0);
        if of_peer >= self.limits.max_per_peer {
            return Err("limits.max_connections_per_peer reached");
        }
        open.0 += 1;
        open.1.insert(peer.to_owned(), of_peer + 1);
        Ok(Slot {
            counter: Arc::clone(self),
            peer: peer.to_owned(),
        })
    }

    /// Connections open now (total, from `peer`).
    pub fn open(&self, peer: &str) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        (open.0, open.1.get(peer).copied().unwrap_or(0))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.peer);
            }
        }
    }
}

/// Accepts connections on `listener` until `shutdown`, does the TLS
/// handshake and hands the connections to tonic through the returned
/// stream.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    counter: Arc<ConnectionCounter>,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<Connection, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(tls),
        counter,
        tx,
        shutdown,
    ));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    counter: Arc<ConnectionCounter>,
    tx: mpsc::Sender<Result<Connection, io::Error>>,
    shutdown: CancellationToken,
) {
    let timeout = counter.limits.first_request_timeout;
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    // Refusals are logged once per peer and minute at most.
    let mut refusal_log = crate::limits::RateLimiter::new(1, Duration::from_secs(60));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, addr) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_FIRST;
                accepted
            }
            Err(err) => {
                // EMFILE/ENFILE (descriptors used up), ENOBUFS, ...: retrying
                // at once would only spin. Pause, growing, and say so.
                tracing::warn!(error = %err, pause = ?backoff, "cannot accept connections; pausing");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let peer = crate::limits::peer_key(Some(addr));
        let slot = match counter.try_acquire(&peer) {
            Ok(slot) => slot,
            Err(why) => {
                if refusal_log.check(&peer).is_ok() {
                    tracing::warn!(%peer, reason = why, "connection refused");
                }
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Ok(Connection::new(tls, slot, timeout, addr))).await;
                }
                Ok(Err(err)) => tracing::debug!(%addr, error = %err, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        });
        // Keep the refusal log small.
        if refusal_log.tracked() > 10_000 {
            refusal_log = crate::limits::RateLimiter::new(1, Duration::from_secs(60));
        }
    }
}

/// A TLS connection that holds its place in the counter and is closed if
/// no request arrives in time.
pub struct Connection {
    inner: TlsStream<TcpStream>,
    _slot: Slot,
    /// Until the first request: when to give up, and where the HTTP/2
    /// frames read so far end.
    waiting: Option<(Pin<Box<tokio::time::Sleep>>, FirstRequest)>,
    addr: SocketAddr,
}

impl Connection {
    fn new(inner: TlsStream<TcpStream>, slot: Slot, timeout: Duration, addr: SocketAddr) -> Self {
        Connection {
            inner,
            _slot: slot,
            waiting: Some((
                Box::pin(tokio::time::sleep(timeout)),
                FirstRequest::default(),
            )),
            addr,
        }
    }
}

impl Connected for Connection {
    type ConnectInfo = TlsConnectInfo<TcpConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some((deadline, _)) = &mut this.waiting
            && deadline.as_mut().poll(cx).is_ready()
        {
            tracing::debug!(addr = %this.addr, "no request in time; closing the connection");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request in time",
            )));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some((_, first))) = (&result, &mut this.waiting)
            && first.feed(&buf.filled()[before..])
        {
            this.waiting = None;
        }
        result
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Follows the HTTP/2 frames a client sends (the 24-byte preface, then
/// 9-byte frame headers and their payloads) until the first HEADERS frame,
/// which opens a request.
#[derive(Debug, Default)]
struct FirstRequest {
    preface_seen: usize,
    header: [u8; 9],
    header_len: usize,
    payload_left: usize,
}

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE_LEN: usize = 24;
const FRAME_HEADERS: u8 = 0x1;

impl FirstRequest {
    /// Reads `bytes`; true once a HEADERS frame began.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.preface_seen < PREFACE_LEN {
                let n = (PREFACE_LEN - self.preface_seen).min(bytes.len());
                self.preface_seen += n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
            } else {
                let n = (9 - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == 9 {
                    if self.header[3] == FRAME_HEADERS {
                        return true;
                    }
                    self.payload_left = usize::from(self.header[0]) << 16
                        | usize::from(self.header[1]) << 8
                        | usize::from(self.header[2]);
                    self.header_len = 0;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![
            (payload >> 16) as u8,
            (payload >> 8) as u8,
            payload as u8,
            kind,
            0,
            0,
            0,
            0,
            0,
        ];
        f.extend(std::iter::repeat_n(0x01, payload));
        f
    }

    #[test]
    fn first_request_is_the_first_headers_frame() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // SETTINGS whose payload holds a byte 0x01, WINDOW_UPDATE, PING.
        bytes.extend(frame(0x4, 12));
        bytes.extend(frame(0x8, 4));
        bytes.extend(frame(0x6, 8));
        // Byte by byte, nothing before HEADERS counts as a request...
        let mut first = FirstRequest::default();
        assert!(!bytes.iter().any(|b| first.feed(std::slice::from_ref(b))));
        // ...and HEADERS does, even split.
        let headers = frame(FRAME_HEADERS, 20);
        assert!(!first.feed(&headers[..5]));
        assert!(first.feed(&headers[5..]));
    }

    #[test]
    fn caps_count_in_total_and_per_peer() {
        let counter = ConnectionCounter::new(ConnectionLimits {
            max_total: 3,
            max_per_peer: 2,
            first_request_timeout: Duration::from_secs(1),
        });
        let a1 = counter.try_acquire("a").unwrap();
        let _a2 = counter.try_acquire("a").unwrap();
        assert!(counter.try_acquire("a").is_err());
        let _b1 = counter.try_acquire("b").unwrap();
        assert_eq!(
            counter.try_acquire("c").unwrap_err(),
            "limits.max_connections reached"
        );
        drop(a1);
        assert_eq!(counter.open("a"), (2, 1));
        assert!(counter.try_acquire("c").is_ok());
    }
}
