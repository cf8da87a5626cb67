//! The node's one port: TLS first, then peers and clients apart.
//!
//! Every connection is TLS. A node connecting to another presents the
//! cluster's node certificate (the join file holds it); a client (the
//! `fabric` CLI) presents none. So right after the handshake, before a
//! single HTTP/2 frame is read, the node knows which kind of caller it has,
//! and each kind gets its own HTTP/2 server:
//!
//! - **peers**: windows sized for object transfers, the `Node` and `Head`
//!   services (which still check the cluster secret on every call);
//! - **clients**: small windows, few concurrent streams and connections per
//!   address, and only the `Control` service, whose gate checks the token
//!   (and takes any quota) before a request's body is read (see
//!   [`super::gate`]). An unauthenticated client can make the node buffer at
//!   most a connection window per connection it may open.
//!
//! A connection that has not finished its handshake within
//! [`IngressLimits::handshake_timeout`](crate::config::IngressLimits::handshake_timeout) is closed, and handshakes in
//! progress are capped per address and in all, so idle or slow connections
//! cannot pile up.
//!
//! ```
//! use fabric_host::config::IngressLimits;
//! let limits = IngressLimits::default();
//! assert!(limits.client_connection_window < 16 << 20);
//! ```

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::config::IngressLimits;
use crate::error::NodeError;
use crate::security::ClusterSecurity;

/// A connection after its handshake, with the slot it holds.
pub(super) struct Conn {
    tls: TlsStream<TcpStream>,
    _slot: Option<Slot>,
}

/// Where accepted connections go: peers', and clients' (none on a node
/// that serves no client).
pub(super) struct Routes {
    pub peers: mpsc::Sender<std::io::Result<Conn>>,
    pub clients: Option<mpsc::Sender<std::io::Result<Conn>>>,
}

/// The server side of the cluster's TLS: the node certificate, and peers'
/// certificates (optional, so clients without one can connect) verified
/// against the cluster's CA.
pub(super) fn acceptor(security: &ClusterSecurity) -> Result<TlsAcceptor, NodeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        NodeError::Config(format!("bad TLS settings ({what}): {e}"))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(security.ca_cert.as_bytes()) {
        roots
            .add(ca.map_err(|e| bad("CA", &e))?)
            .map_err(|e| bad("CA", &e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| bad("peer verifier", &e))?;
    let certs = CertificateDer::pem_slice_iter(security.node_cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("node certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(security.node_key.as_bytes())
        .map_err(|e| bad("node key", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("protocols", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| bad("node certificate", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts on `listener` until `stop`: handshakes (bounded in time and
/// number), then hands each connection to its server.
pub(super) fn accept(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    limits: IngressLimits,
    routes: Routes,
    mut stop: watch::Receiver<bool>,
) {
    let handshakes = Counts::new(limits.handshakes_per_address, limits.handshakes);
    let clients = Counts::new(limits.client_connections_per_address, usize::MAX);
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.changed() => return,
            };
            let (tcp, from) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = handshakes.take(from.ip()) else {
                continue; // dropped: too many handshakes from there, or at all
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, routes, clients) = (acceptor.clone(), routes.clone(), clients.clone());
            let timeout = limits.handshake_timeout;
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(timeout, acceptor.accept(tcp)).await else {
                    return;
                };
                drop(slot);
                route(tls, from.ip(), &routes, &clients).await;
            });
        }
    });
}

/// Sends a connection to the peers' server or (within the per-address cap)
/// the clients'.
async fn route(tls: TlsStream<TcpStream>, from: IpAddr, routes: &Routes, clients: &Arc<Counts>) {
    let is_peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty());
    if is_peer {
        let _ = routes.peers.send(Ok(Conn { tls, _slot: None })).await;
        return;
    }
    let (Some(to), Some(slot)) = (&routes.clients, clients.take(from)) else {
        return; // no client service here, or too many from that address
    };
    let _ = to
        .send(Ok(Conn {
            tls,
            _slot: Some(slot),
        }))
        .await;
}

/// Connections counted per address and in all.
struct Counts {
    held: Mutex<Held>,
    max_per_address: usize,
    max_total: usize,
}

#[derive(Default)]
struct Held {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// One counted connection; dropping it gives the count back.
struct Slot {
    counts: Arc<Counts>,
    from: IpAddr,
}

impl Counts {
    fn new(max_per_address: usize, max_total: usize) -> Arc<Self> {
        Arc::new(Counts {
            held: Mutex::default(),
            max_per_address,
            max_total,
        })
    }

    fn take(self: &Arc<Self>, from: IpAddr) -> Option<Slot> {
        let mut held = self.held.lock();
        let n = held.per_address.get(&from).copied().unwrap_or(0);
        if n >= self.max_per_address || held.total >= self.max_total {
            return None;
        }
        held.per_address.insert(from, n + 1);
        held.total += 1;
        Some(Slot {
            counts: self.clone(),
            from,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.counts.held.lock();
        held.total -= 1;
        if let Some(n) = held.per_address.get_mut(&self.from) {
            *n -= 1;
            if *n == 0 {
                held.per_address.remove(&self.from);
            }
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tls.get_ref().0.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }
}
