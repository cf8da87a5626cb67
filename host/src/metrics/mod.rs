//! Prometheus metrics: every node serves its own at `GET /metrics`, on a
//! port of its own, in Prometheus's text format (0.0.4).
//!
//! The endpoint is HTTPS with the cluster's node certificate (a scraper
//! trusts the cluster's `ca.crt` and names the server `wasmfabric.cluster`)
//! and wants `Authorization: Bearer <scrape token>`, a token every node
//! derives from the cluster secret ([`ClusterSecurity::scrape_token`]; the
//! head writes it to `security/metrics.token`). The operator may instead
//! serve plain HTTP without a token, for a private network, but must say so
//! ([`Access::Open`], `fabric start --metrics-insecure`). The token is
//! checked before anything else is read or done; no request body is ever
//! read; connections are few and short-lived (see [`server`] and
//! [`crate::https`]).
//!
//! What a scrape shows is read then from the node's own books
//! ([`collect`]), so metrics cost the paths tasks take nothing beyond the
//! counters the node keeps anyway.
//!
//! ```no_run
//! use fabric_host::metrics::{self, Access, MetricsConfig, Source};
//! use fabric_host::security::ClusterSecurity;
//! # async fn demo(node: fabric_host::Node) -> Result<(), Box<dyn std::error::Error>> {
//! let security = ClusterSecurity::generate()?;
//! let access = Access::Token { token: security.scrape_token(), tls: security.https_config()? };
//! let config = MetricsConfig { listen: "127.0.0.1:0".parse()?, access };
//! let source = Source { node, meters: None, head: None, serve: Vec::new(), ingress: None };
//! let server = metrics::serve(config, source).await?;
//! println!("scrape https://{}/metrics", server.address());
//! assert!(metrics::render(server.source()).contains("fabric_tasks_queued"));
//! # Ok(()) }
//! ```

pub mod collect;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio_rustls::rustls;

pub use collect::Source;
pub use server::{MetricsServer, serve};

/// Who may scrape.
#[derive(Clone)]
pub enum Access {
    /// HTTPS, and `Authorization: Bearer <token>`.
    Token {
        token: String,
        tls: Arc<rustls::ServerConfig>,
    },
    /// Plain HTTP, anyone who can connect: only for a private network,
    /// and only when the operator says so.
    Open,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Token { .. } => f.write_str("Access::Token { .. }"),
            Access::Open => f.write_str("Access::Open"),
        }
    }
}

/// Where and how a node serves its metrics.
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
    pub access: Access,
}

/// The Content-Type of what [`render`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One scrape's text.
pub fn render(source: &Source) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(source.clone()));
    let mut text = String::with_capacity(16 << 10);
    // Writing to a String cannot fail; a collector's error would be ours.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
        tracing::error!("cannot encode the metrics: {e}");
    }
    text
}
