//! The upstream exchange, on Pingora's connector pool: one path for every body size (Pingora's
//! proxy path replays only 64 KiB of a body read in `request_filter`). DNS is resolved
//! asynchronously and cached; `HttpPeer::new` with a host name would block and may panic.

mod dns;
pub mod images;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora_core::connectors::http::Connector;
use pingora_core::connectors::ConnectorOptions;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;

use crate::error::{GatewayError, Result};
use crate::providers::UpstreamRequest;
use crate::table::Provider;

pub use dns::DnsCache;

/// Shared by every request of the data plane: the connection pool and the DNS cache.
pub struct Upstreams {
    connector: Connector,
    pub dns: DnsCache,
    ca_cache: std::sync::Mutex<std::collections::HashMap<String, Arc<[pingora_core::utils::tls::WrappedX509]>>>,
}

/// A future on the heap (see `Upstreams::send`).
pub type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What `Upstreams::send` gives: the answer's headers, or why there are none.
pub type Sent = std::result::Result<Exchange, (FailKind, GatewayError)>;

/// An upstream answer whose headers have arrived; the body is read with `read_chunk`.
pub struct Exchange {
    /// On the heap: the connection is over a KiB, and an exchange moves from the attempt into
    /// the stream relay, whose states would otherwise each reserve room for it.
    conn: Box<Conn>,
    pub status: u16,
    pub headers: http::HeaderMap,
}

struct Conn {
    session: HttpSession,
    peer: HttpPeer,
    idle: Duration,
    /// The last chunk read, when the protocol hands out owned buffers (HTTP/2).
    held: Bytes,
}

/// How a connection attempt failed, for health accounting and failover reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    Connect,
    Timeout,
    Io,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    pub fn new() -> Self {
        let mut opts = ConnectorOptions::new(256);
        opts.keepalive_pool_size = 1024;
        Upstreams {
            connector: Connector::new(Some(opts)),
            dns: DnsCache::new(Duration::from_secs(60)),
            ca_cache: Default::default(),
        }
    }

    async fn peer(&self, p: &Provider) -> Result<HttpPeer> {
        let addr = self.dns.resolve(&p.base.host, p.base.port).await.map_err(|e| {
            GatewayError::bad_upstream(format!("cannot resolve provider {} host: {e}", p.name))
                .with_code("upstream_connect_error")
        })?;
        let mut peer = HttpPeer::new(addr, p.base.tls, p.base.host.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(p.timeouts.connect);
        o.total_connection_timeout = Some(p.timeouts.connect * 2);
        o.idle_timeout = Some(Duration::from_secs(60));
        o.tcp_keepalive = None;
        if p.base.tls && p.http2 {
            o.alpn = ALPN::H2H1;
            o.max_h2_streams = 100;
        } else {
            o.alpn = ALPN::H1;
        }
        if let Some(ca) = &p.ca_file {
            o.ca = Some(self.load_ca(ca)?);
            // The pool key ignores the CA: keep connections verified by different CAs apart.
            peer.group_key = fxhash(ca);
        }
        Ok(peer)
    }

    fn load_ca(&self, path: &str) -> Result<Arc<[pingora_core::utils::tls::WrappedX509]>> {
        if let Ok(cache) = self.ca_cache.lock() {
            if let Some(c) = cache.get(path) {
                return Ok(c.clone());
            }
        }
        let pem =
            std::fs::read(path).map_err(|e| GatewayError::internal(format!("cannot read CA file {path}: {e}")))?;
        let mut certs = Vec::new();
        let mut store = rustls::RootCertStore::empty();
        for der in rustls_pemfile::certs(&mut pem.as_slice()) {
            let der = der.map_err(|e| GatewayError::internal(format!("invalid CA file {path}: {e}")))?;
            // Validate before handing it to Pingora, whose parser panics on bad DER.
            store
                .add(der.clone())
                .map_err(|e| GatewayError::internal(format!("invalid CA certificate in {path}: {e}")))?;
            certs.push(pingora_core::utils::tls::WrappedX509::new(
                der.to_vec(),
                pingora_core::utils::tls::parse_x509,
            ));
        }
        if certs.is_empty() {
            return Err(GatewayError::internal(format!("no certificate in CA file {path}")));
        }
        let ca: Arc<[pingora_core::utils::tls::WrappedX509]> = Arc::from(certs);
        if let Ok(mut cache) = self.ca_cache.lock() {
            cache.insert(path.to_string(), ca.clone());
        }
        Ok(ca)
    }

    /// Connect (or reuse), send the request, and wait for the response headers within the
    /// provider's first-byte timeout. A stale pooled connection is retried once on a new one.
    ///
    /// Boxed, as are `release` and `abort`: Pingora's connect, pool and shutdown futures run
    /// to several KiB, and held inline they would size the state of every request, a
    /// long-lived stream's included, though they are done before its first byte or after its
    /// last.
    pub fn send<'a>(&'a self, p: &'a Provider, req: &'a UpstreamRequest) -> Boxed<'a, Sent> {
        Box::pin(self.send_inner(p, req))
    }

    async fn send_inner(&self, p: &Provider, req: &UpstreamRequest) -> Sent {
        let peer = self.peer(p).await.map_err(|e| (FailKind::Connect, e))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (session, reused) = match self.connector.get_http_session(&peer).await {
                Ok(s) => s,
                Err(e) => {
                    let timeout = matches!(e.etype(), pingora_error::ErrorType::ConnectTimedout);
                    let kind = if timeout { FailKind::Timeout } else { FailKind::Connect };
                    return Err((
                        kind,
                        GatewayError::bad_upstream(format!(
                            "cannot connect to provider {}: {}",
                            p.name,
                            e.etype().as_str()
                        ))
                        .with_code("upstream_connect_error"),
                    ));
                }
            };
            match self.exchange(p, req, session, peer.clone()).await {
                Ok(x) => return Ok(x),
                // A pooled connection the server closed meanwhile: the request never reached
                // it, so one fresh attempt is safe.
                Err((FailKind::Io, _)) if reused && attempt == 1 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn exchange(
        &self,
        p: &Provider,
        req: &UpstreamRequest,
        mut session: HttpSession,
        peer: HttpPeer,
    ) -> std::result::Result<Exchange, (FailKind, GatewayError)> {
        let header = request_header(p, req).map_err(|e| (FailKind::Io, e))?;
        // The first byte has one timer, the `timeout` around the whole send below; the
        // session's read timeout becomes the idle timeout once the headers are in. A write
        // that stalls past the idle timeout is a timeout too.
        session.set_write_timeout(Some(p.timeouts.idle));
        let io = |e: Box<pingora_error::Error>| {
            if is_timeout(&e) {
                return (
                    FailKind::Timeout,
                    GatewayError::upstream_timeout(format!(
                        "provider {} stalled for {:?} while the request was sent",
                        p.name, p.timeouts.idle
                    )),
                );
            }
            (
                FailKind::Io,
                GatewayError::bad_upstream(format!(
                    "connection to provider {} failed: {}",
                    p.name,
                    e.etype().as_str()
                )),
            )
        };
        let send = async {
            session.write_request_header(Box::new(header)).await.map_err(io)?;
            if let Some((last, init)) = req.body.parts().split_last() {
                for part in init {
                    session.write_request_body(part.clone(), false).await.map_err(io)?;
                }
                if !last.is_empty() {
                    session.write_request_body(last.clone(), true).await.map_err(io)?;
                }
            }
            session.finish_request_body().await.map_err(io)?;
            session.read_response_header().await.map_err(io)?;
            Ok::<_, (FailKind, GatewayError)>(())
        };
        match tokio::time::timeout(p.timeouts.first_byte, send).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                session.shutdown().await;
                return Err(e);
            }
            Err(_) => {
                session.shutdown().await;
                return Err((
                    FailKind::Timeout,
                    GatewayError::upstream_timeout(format!(
                        "provider {} did not answer within {:?}",
                        p.name, p.timeouts.first_byte
                    )),
                ));
            }
        }
        let Some(resp) = session.response_header() else {
            return Err((
                FailKind::Io,
                GatewayError::bad_upstream("upstream sent no response header"),
            ));
        };
        let status = resp.status.as_u16();
        let headers = resp.headers.clone();
        session.set_read_timeout(Some(p.timeouts.idle));
        Ok(Exchange {
            conn: Box::new(Conn {
                session,
                peer,
                idle: p.timeouts.idle,
                held: Bytes::new(),
            }),
            status,
            headers,
        })
    }

    /// Return a fully read connection to the pool.
    pub fn release(&self, x: Exchange) -> Boxed<'_, ()> {
        Box::pin(self.release_inner(x))
    }

    async fn release_inner(&self, x: Exchange) {
        let Conn { mut session, peer, .. } = *x.conn;
        if session.response_done() {
            self.connector
                .release_http_session(session, &peer, Some(Duration::from_secs(60)))
                .await;
        } else {
            session.shutdown().await;
        }
    }
}

impl Exchange {
    /// The next body chunk, `None` at the end, borrowed from the connection's buffer (HTTP/1:
    /// no copy). A silence longer than the idle timeout is an error: that is the session's
    /// own read timeout, set to the idle timeout once the headers are in, so no timer is
    /// armed here per chunk.
    pub async fn read_chunk(&mut self) -> Result<Option<&[u8]>> {
        let c = &mut *self.conn;
        let read = match &mut c.session {
            HttpSession::H1(h1) => h1.read_body_ref().await,
            other => match other.read_response_body().await {
                Ok(Some(b)) => {
                    c.held = b;
                    Ok(Some(&c.held[..]))
                }
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            },
        };
        read.map_err(|e| {
            if is_timeout(&e) {
                GatewayError::upstream_timeout(format!("upstream sent nothing for {:?}", c.idle))
            } else {
                GatewayError::truncated_stream(format!(
                    "upstream connection failed while reading the body: {}",
                    e.etype().as_str()
                ))
            }
        })
    }

    /// The next chunk if it is there now (already buffered, or readable without waiting);
    /// `None` when reading would wait. Reads are cancel-safe in Pingora, so giving up on a
    /// pending read loses nothing.
    pub async fn ready_chunk(&mut self) -> Option<Result<Option<&[u8]>>> {
        let mut read = std::pin::pin!(self.read_chunk());
        std::future::poll_fn(move |cx| {
            std::task::Poll::Ready(match std::future::Future::poll(read.as_mut(), cx) {
                std::task::Poll::Ready(r) => Some(r),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    /// The whole body, refused past `limit` bytes.
    pub async fn read_all(&mut self, limit: usize) -> Result<Bytes> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.read_chunk().await? {
            if buf.len() + chunk.len() > limit {
                return Err(GatewayError::bad_upstream(format!(
                    "upstream answer exceeds {limit} bytes"
                )));
            }
            buf.extend_from_slice(chunk);
        }
        Ok(buf.freeze())
    }

    /// Close the connection without reading the rest of the answer.
    pub fn abort(mut self) -> Boxed<'static, ()> {
        Box::pin(async move { self.conn.session.shutdown().await })
    }
}

fn request_header(p: &Provider, req: &UpstreamRequest) -> Result<RequestHeader> {
    let mut path = String::with_capacity(p.base.path.len() + req.path.len() + 1);
    path.push_str(&p.base.path);
    path.push_str(&req.path);
    if path.is_empty() {
        path.push('/');
    }
    // No case map: header names go out in lower case (HTTP/1.1 names are case-insensitive,
    // HTTP/2 requires lower case), and nothing is allocated per header for it.
    let mut h = RequestHeader::build_no_case(req.method, path.as_bytes(), Some(8 + req.headers.len()))
        .map_err(|e| GatewayError::internal(format!("cannot build upstream request: {}", e.etype().as_str())))?;
    let fixed = |h: &mut RequestHeader, k: &http::HeaderName, v: &http::HeaderValue| {
        // A valid name and value cannot be refused.
        let _ = h.insert_header(k.clone(), v.clone());
    };
    for (k, v) in &p.wire_base {
        fixed(&mut h, k, v);
    }
    if req.method != "GET" {
        let _ = h.insert_header(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let _ = h.insert_header(http::header::CONTENT_LENGTH, http::HeaderValue::from(req.body.len()));
    }
    for (k, v) in &req.headers {
        h.insert_header(k.to_string(), v.as_str())
            .map_err(|_| GatewayError::internal(format!("invalid value for upstream header {k}")))?;
    }
    for (k, v) in &p.wire_extra {
        fixed(&mut h, k, v);
    }
    Ok(h)
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A socket read or write that Pingora gave up on after its own timeout.
fn is_timeout(e: &pingora_error::Error) -> bool {
    matches!(
        e.etype(),
        pingora_error::ErrorType::ReadTimedout | pingora_error::ErrorType::WriteTimedout
    )
}
