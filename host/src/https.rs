//! The node's HTTP endpoints (metrics, the Jobs API, Serve's ingress):
//! HTTP/1.1 over TLS with the cluster's node certificate (or the operator's,
//! for the ingress), or plain HTTP where the operator chose it, serving an
//! axum [`Router`]. An endpoint with [`Versions::Http1And2`] also speaks
//! HTTP/2: over TLS where ALPN picks `h2`, and in plain text (h2c, for
//! private networks) to a client that starts with HTTP/2's preface.
//!
//! What a caller that never authenticates can make the node hold is
//! bounded here, before any route runs: at most [`Bounds::connections`]
//! connections at once, and [`Bounds::per_address`] from one address (more
//! are closed at accept, so one address cannot take every slot; an IPv6
//! address counts as its /64), a TLS
//! handshake within [`Bounds::handshake`], request headers within
//! [`Bounds::headers`] and in at most 16 KiB, and each connection closed
//! after [`Bounds::lifetime`]. Routes check credentials from the headers
//! before they read a body, and read bodies at a minimum rate
//! ([`read_body`]). HTTP/2's own bounds are [`crate::http2`]'s.
//!
//! ```
//! let b = fabric_host::https::Bounds::default();
//! assert!(b.per_address < b.connections && b.headers.as_secs() <= 10);
//! ```

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::rustls;

use crate::error::NodeError;
use crate::http2;

/// What one endpoint allows its callers.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// Connections served at once.
    pub connections: usize,
    /// Connections served at once to one IP address.
    pub per_address: usize,
    /// The most a TLS handshake may take.
    pub handshake: Duration,
    /// The most a request's headers may take to arrive.
    pub headers: Duration,
    /// The most one connection lives (a followed log ends with it; the
    /// client reconnects).
    pub lifetime: Duration,
    /// The HTTP versions it speaks.
    pub versions: Versions,
}

/// The HTTP versions an endpoint speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Versions {
    /// HTTP/1.1 only.
    #[default]
    Http1,
    /// HTTP/1.1 and HTTP/2: over TLS as ALPN chose (the TLS settings must
    /// offer `h2`), in plain text by the client's first bytes.
    Http1And2,
}

/// An endpoint's TLS settings (certificate, key, ALPN protocols).
pub type TlsSettings = Arc<rustls::ServerConfig>;

pub use crate::http2::{H2_CONNECTION_WINDOW, H2_STREAMS};

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            connections: 256,
            per_address: 16,
            handshake: Duration::from_secs(5),
            headers: Duration::from_secs(5),
            lifetime: Duration::from_secs(600),
            versions: Versions::Http1,
        }
    }
}

/// A running endpoint; dropping it stops accepting.
pub struct Endpoint {
    address: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Endpoint {
    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Serves `router` on `listen` (over TLS with `tls`, else plain HTTP)
/// within `bounds`, until the returned endpoint drops.
pub async fn serve(
    listen: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    bounds: Bounds,
    router: Router,
) -> Result<Endpoint, NodeError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| NodeError::Config(format!("cannot listen on {listen}: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| NodeError::Config(format!("cannot read the listen address: {e}")))?;
    let (stop, stopped) = watch::channel(false);
    let accepting = Accepting {
        tls: tls.map(tokio_rustls::TlsAcceptor::from),
        slots: Arc::new(Semaphore::new(bounds.connections)),
        by_address: Arc::default(),
        bounds,
        router,
    };
    tokio::spawn(accepting.run(listener, stopped));
    Ok(Endpoint { address, stop })
}

#[derive(Clone)]
struct Accepting {
    tls: Option<tokio_rustls::TlsAcceptor>,
    slots: Arc<Semaphore>,
    by_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    bounds: Bounds,
    router: Router,
}

/// The address a connection counts against: an IPv6 address's /64 (one
/// host's allocation, which it can draw addresses from at will), an IPv4
/// address itself.
fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// One connection's place among its address's; dropping it gives it back.
struct AddressSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

impl Accepting {
    async fn run(self, listener: TcpListener, mut stopped: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped.changed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(address_slot) = self.address_slot(network_of(peer.ip())) else {
                continue; // its address has its share: dropped, so closed
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                continue; // full
            };
            let me = self.clone();
            tokio::spawn(async move {
                let _slots = (slot, address_slot);
                let lifetime = me.bounds.lifetime;
                let _ = tokio::time::timeout(lifetime, me.connection(tcp)).await;
            });
        }
    }

    fn address_slot(&self, ip: IpAddr) -> Option<AddressSlot> {
        let mut counts = self.by_address.lock();
        let n = counts.entry(ip).or_default();
        if *n >= self.bounds.per_address {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            counts: self.by_address.clone(),
            ip,
        })
    }

    async fn connection(self, tcp: TcpStream) {
        let _ = tcp.set_nodelay(true);
        let idle = self.bounds.headers;
        match &self.tls {
            Some(acceptor) => {
                let handshake = tokio::time::timeout(self.bounds.handshake, acceptor.accept(tcp));
                let Ok(Ok(stream)) = handshake.await else {
                    return;
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                let io = TokioIo::new(stream);
                match (self.bounds.versions, h2) {
                    (Versions::Http1And2, true) => http2::serve(io, self.router, idle).await,
                    _ => self.http1(io).await,
                }
            }
            None => match self.bounds.versions {
                Versions::Http1 => self.http1(TokioIo::new(tcp)).await,
                // h2c with prior knowledge, told by the client's first bytes
                // (no `Upgrade: h2c`), which must come within the bound on
                // a request's head.
                Versions::Http1And2 => match http2::starts_with_preface(&tcp, idle).await {
                    Some(true) => http2::serve(TokioIo::new(tcp), self.router, idle).await,
                    Some(false) => self.http1(TokioIo::new(tcp)).await,
                    None => {}
                },
            },
        }
    }

    async fn http1<I>(&self, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.router.clone());
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.bounds.headers)
            .max_buf_size(16 << 10)
            .serve_connection(io, service)
            .await;
    }
}

/// TLS settings from a certificate chain and its key (PEM), offering
/// `alpn` (in order of preference).
pub fn tls_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, NodeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        NodeError::Config(format!("bad TLS settings ({what}): {e}"))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", &e))?;
    if certs.is_empty() {
        return Err(NodeError::Config(
            "bad TLS settings (certificate): no PEM certificate found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("key", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("protocols", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("certificate", &e))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The slowest a body may arrive once its first [`BODY_GRACE`] passed.
pub const MIN_BODY_RATE: u64 = 1 << 20;
/// How long a body may take before [`MIN_BODY_RATE`] applies.
pub const BODY_GRACE: Duration = Duration::from_secs(10);

/// Reads a body of `len` declared bytes, which must all arrive within
/// [`BODY_GRACE`] plus `len` at [`MIN_BODY_RATE`]: a caller that trickles
/// its body cannot hold what it reserved (or its connection) for long.
pub async fn read_body(body: axum::body::Body, len: u64) -> Result<bytes::Bytes, String> {
    let deadline = BODY_GRACE + Duration::from_secs(len / MIN_BODY_RATE);
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, len as usize)).await {
        Ok(Ok(bytes)) if bytes.len() as u64 == len => Ok(bytes),
        Ok(Ok(_)) => Err("the body is shorter than its Content-Length".into()),
        Ok(Err(e)) => Err(format!("cannot read the body: {e}")),
        Err(_) => Err(format!(
            "the body did not arrive within {} s",
            deadline.as_secs()
        )),
    }
}
