//! A total deadline for each HTTP/1 request's header section, which Pingora 0.9 bounds only per read.
//!
//! Pingora reads a request header with a timeout on each read, so a client that trickles one header
//! line every few seconds keeps its connection (and a task) for as long as it likes. This wraps every
//! HTTP/1 connection's stream: from the moment a request's first byte arrives (or the connection is
//! accepted) the header must be complete within the deadline, else the read fails and Pingora closes
//! the connection. The end of the header is seen in the bytes read (the first empty line after a
//! non-empty one); the next request starts after the gateway writes a final (non-1xx) response.
//! HTTP/2 connections (ALPN `h2`) are not wrapped: their frames are bounded by the h2 layer.
//! Connections on the TLS listeners first complete their handshake here, within the same deadline.

use crate::listener::tls_accept::TlsTermination;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, UniqueID, UniqueIDType,
    ALPN,
};
use pingora::protocols::{SocketDigest, Stream, TimingDigest};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Wraps a Pingora app so every HTTP/1 connection it serves gets the header deadline.
pub struct HeaderDeadline<A> {
    inner: Arc<A>,
    limit: Duration,
    /// plain connections may be HTTP/2 with prior knowledge
    h2c: bool,
    /// the handshake for connections on the TLS listeners
    tls: Option<TlsTermination>,
}

impl<A> HeaderDeadline<A> {
    pub fn new(inner: A, limit: Duration, h2c: bool, tls: Option<TlsTermination>) -> Self {
        HeaderDeadline {
            h2c,
            inner: Arc::new(inner),
            limit,
            tls,
        }
    }
}

/// What an HTTP/2 connection with prior knowledge starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeaderDeadline<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut session = session;
        if let Some(tls) = self.tls.as_ref().filter(|t| t.applies_to(&session)) {
            // A handshake that fails or takes longer than a request header may closes the connection.
            let raw = DeadlineStream::transparent(session, self.limit);
            // Boxed: the handshake's state is large and would otherwise stay in this future, and so
            // in every idle connection's memory, long after the handshake.
            let handshake = Box::pin(tls.acceptor().tls_handshake(raw));
            match tokio::time::timeout(self.limit, handshake).await {
                Ok(Ok(encrypted)) => session = Box::new(encrypted),
                _ => return None,
            }
        }
        let h2 = matches!(session.selected_alpn_proto(), Some(ALPN::H2))
            || (self.h2c && session.get_ssl_digest().is_none() && {
                // HTTP/2 with prior knowledge (h2c) on a plain listener: its frames have no header
                // section to time; the first bytes must still come within the limit
                let mut buf = [0u8; H2_PREFACE.len()];
                match tokio::time::timeout(self.limit, session.try_peek(&mut buf)).await {
                    Ok(Ok(_)) => buf == *H2_PREFACE,
                    _ => return None,
                }
            });
        let session: Stream = if h2 {
            session
        } else {
            Box::new(DeadlineStream::new(session, self.limit))
        };
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// Finds the end of a header section in bytes that arrive in pieces.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeaderEnd {
    /// non-zero once the current line has a byte other than `\r`
    line_len: usize,
    seen_line: bool,
}

impl HeaderEnd {
    /// Feeds bytes; true once the empty line that ends the header has been read. A line counts
    /// as empty when it holds nothing but `\r`. Jumps from `\n` to `\n` (a token's line is
    /// hundreds of bytes) and looks back only until the line's last byte that is not `\r`.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let has_content = |seg: &[u8]| seg.iter().rev().any(|&b| b != b'\r');
        let mut rest = bytes;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(i);
            let filled = self.line_len > 0 || has_content(line);
            if !filled && self.seen_line {
                return true;
            }
            self.seen_line |= filled;
            self.line_len = 0;
            rest = after.get(1..).unwrap_or_default();
        }
        if has_content(rest) {
            self.line_len = 1;
        }
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// reading a header: the deadline runs
    Header,
    /// the header is complete: body and response flow without this deadline
    Done,
    /// a response was written: the next byte read starts a new request
    BetweenRequests,
    /// the encrypted stream under TLS: never timed here
    Transparent,
}

#[derive(Debug)]
struct DeadlineStream {
    inner: Stream,
    limit: Duration,
    phase: Phase,
    end: HeaderEnd,
    sleep: Pin<Box<Sleep>>,
}

impl DeadlineStream {
    fn new(inner: Stream, limit: Duration) -> Self {
        DeadlineStream {
            inner,
            limit,
            phase: Phase::Header,
            end: HeaderEnd::default(),
            sleep: Box::pin(tokio::time::sleep(limit)),
        }
    }

    /// The stream under a TLS session: passed through untouched (the handshake has its own timeout,
    /// and the HTTP inside is timed by the wrapper around the TLS stream).
    fn transparent(inner: Stream, limit: Duration) -> Self {
        DeadlineStream {
            phase: Phase::Transparent,
            ..Self::new(inner, limit)
        }
    }

    fn arrived(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.phase == Phase::Transparent {
            return;
        }
        if self.phase == Phase::BetweenRequests {
            self.phase = Phase::Header;
            self.end = HeaderEnd::default();
            self.sleep.as_mut().reset(Instant::now() + self.limit);
        }
        if self.phase == Phase::Header && self.end.feed(bytes) {
            self.phase = Phase::Done;
        }
    }

    /// A final response header (not `HTTP/1.x 1xx`) means the request it answers is over.
    fn wrote(&mut self, bytes: &[u8]) {
        if self.phase == Phase::Transparent {
            return;
        }
        if bytes.starts_with(b"HTTP/1.") && bytes.get(9) != Some(&b'1') {
            self.phase = Phase::BetweenRequests;
        }
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.phase == Phase::Header && this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request header took longer than server.request_header_timeout",
            )));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let filled = buf.filled();
            this.arrived(filled.get(before..).unwrap_or_default());
        }
        res
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.wrote(buf.get(..n).unwrap_or_default());
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(n)), Some(first)) = (&res, bufs.iter().find(|b| !b.is_empty())) {
            if *n > 0 {
                this.wrote(first);
            }
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for DeadlineStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_header_is_found_across_pieces() {
        let mut e = HeaderEnd::default();
        assert!(!e.feed(b"GET / HTTP/1.1\r\nHost: a\r"));
        assert!(!e.feed(b"\n"));
        assert!(e.feed(b"\r\n"));
        let mut lf = HeaderEnd::default();
        assert!(lf.feed(b"GET / HTTP/1.1\nHost: a\n\n"));
        // leading empty lines before the request line do not end anything
        let mut lead = HeaderEnd::default();
        assert!(!lead.feed(b"\r\n\r\n\r\nGET / HTTP/1.1\r\n"));
        assert!(lead.feed(b"\r\n"));
    }

    /// The byte-at-a-time definition the fast scanner must agree with.
    fn reference(pieces: &[&[u8]]) -> bool {
        let (mut len, mut seen) = (0usize, false);
        for &b in pieces.iter().flat_map(|p| p.iter()) {
            match b {
                b'\n' if len == 0 && seen => return true,
                b'\n' => {
                    seen |= len > 0;
                    len = 0;
                }
                b'\r' => {}
                _ => len += 1,
            }
        }
        false
    }

    #[test]
    fn the_scanner_agrees_with_the_byte_loop_on_every_split() {
        let inputs: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nA: b\r\n\r\n",
            b"\r\r\n\r\nx\r\r\n\r\r\n",
            b"x\n\r\r\r\n",
            b"GET /\r\nA: \r\n b\r\n\rc\n\n",
            b"\n\n\n",
            b"a\rb\n\r\n",
        ];
        for input in inputs {
            for i in 0..=input.len() {
                for j in i..=input.len() {
                    let pieces = [&input[..i], &input[i..j], &input[j..]];
                    let mut e = HeaderEnd::default();
                    let fast = pieces.iter().any(|p| e.feed(p));
                    assert_eq!(fast, reference(&pieces), "{input:?} split at {i}, {j}");
                }
            }
        }
    }
}
