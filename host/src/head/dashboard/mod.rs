//! The dashboard: web pages embedded in the binary (plain HTML, CSS and
//! JavaScript under `assets/`; nothing is built at `cargo build`), served
//! beside the Jobs API, and the JSON views they read (`/api/cluster`,
//! `/api/nodes`, `/api/actors`, `/api/tenants`, `/api/session`, and the
//! Jobs API's own).
//!
//! Who sees what is the CLI's rule: a tenant sees its own jobs, actors,
//! logs and usage, the admin everything. A browser logs in once with its
//! token (`/login`) and holds a session cookie ([`session`]); requests
//! whose `Host` is not one the operator named are refused before anything
//! else ([`check_host`]): a page on another site that rebinds its DNS name
//! to the head's address cannot reach it under that name.
//!
//! ```
//! use fabric_host::head::dashboard::AllowedHosts;
//! let hosts = AllowedHosts::new(["wasmfabric.cluster", "10.0.0.1"]);
//! assert!(hosts.allows("wasmfabric.cluster:8265"));
//! assert!(hosts.allows("10.0.0.1"));
//! assert!(!hosts.allows("attacker.example:8265"));
//! let v6 = AllowedHosts::new(["fd00::5", "name.example:443"]);
//! assert!(v6.allows("[fd00::5]:8265") && v6.allows("name.example"));
//! ```

pub(crate) mod pages;
pub(crate) mod serve_view;
pub mod session;
pub(crate) mod views;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The host names (and IPs) a request may name in its `Host` header.
#[derive(Clone, Debug)]
pub struct AllowedHosts(Arc<Vec<String>>);

impl AllowedHosts {
    /// Names or IPs (an entry's port, if any, is ignored; an IPv6 address
    /// may be bracketed or not).
    pub fn new<S: AsRef<str>>(hosts: impl IntoIterator<Item = S>) -> Self {
        AllowedHosts(Arc::new(
            hosts
                .into_iter()
                .map(|h| name_of(h.as_ref()))
                .filter(|h| !h.is_empty())
                .collect(),
        ))
    }

    /// The defaults: the cluster certificate's name, loopback, and `extra`
    /// (the address the head listens on and is advertised at).
    pub fn with_defaults<S: AsRef<str>>(extra: impl IntoIterator<Item = S>) -> Self {
        let mut all: Vec<String> = [
            crate::security::CLUSTER_DOMAIN,
            "localhost",
            "127.0.0.1",
            "[::1]",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.extend(extra.into_iter().map(|s| s.as_ref().to_string()));
        AllowedHosts::new(all)
    }

    /// Whether `host` (a `Host` header: a name or IP, maybe with a port)
    /// is allowed.
    pub fn allows(&self, host: &str) -> bool {
        self.0.contains(&name_of(host))
    }
}

/// The name in a `Host` value (or an allowlist entry), lowercase, without
/// its port; an IPv6 address bracketed, as browsers send it.
fn name_of(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return format!("[{host}]");
    }
    match host.rsplit_once(':') {
        // `[::1]:8265`, `name:8265`.
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_string(),
        _ => host,
    }
}

/// Refuses (421) a request whose `Host` is not allowed, before anything
/// else runs.
pub(crate) async fn check_host(
    State(hosts): State<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    let mut given = request.headers().get_all(header::HOST).iter();
    let host = match (given.next(), given.next()) {
        (Some(h), None) => h.to_str().unwrap_or_default(),
        // None, or two (which RFC 9112 makes an error).
        _ => "",
    };
    // An absolute-form target names its own host, which must be allowed too.
    let target_ok = request
        .uri()
        .authority()
        .is_none_or(|a| hosts.allows(a.as_str()));
    if !hosts.allows(host) || !target_ok {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this host name is not one the cluster's operator allowed (--api-allowed-hosts)\n",
        )
            .into_response();
    }
    next.run(request).await
}
