//! The ingress's own paths, under `/-/`, behind its metrics token:
//! `GET /-/metrics` (Prometheus text, the node's and Serve's) and
//! `GET /-/deployments` (each deployment's state as JSON, what `fabric
//! serve status` shows).
//!
//! ```text
//! $ curl -H "Authorization: Bearer $(cat token)" localhost:8000/-/deployments
//! {"deployments":[{"name":"echo","tenant":"local","kind":"replicas","host":null,
//!   "route":"/echo","replicas":2,"starting":0,"ongoing":1,"queued":0,
//!   "requests":{"2xx":10,"3xx":0,"4xx":1,"5xx":0},"p50_ms":0.5,"p99_ms":2.5}]}
//! ```

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;

use axum::extract::Request;
use axum::response::Response;

use super::{Ingress, Route, Target, bearer_digest_is, plain};

/// Answers a request for one of the ingress's own paths.
pub(super) async fn own(ingress: &Ingress, request: Request) -> Response {
    let Some((token, node)) = ingress.metrics.read().clone() else {
        return plain(StatusCode::NOT_FOUND, "this ingress serves no metrics");
    };
    if !bearer_digest_is(request.headers(), &token) {
        let mut refused = plain(StatusCode::UNAUTHORIZED, "metrics need their token");
        refused
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return refused;
    }
    if request.method() != axum::http::Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET is answered here");
    }
    match request.uri().path() {
        "/-/metrics" => metrics(ingress, node).await,
        "/-/deployments" => deployments(&ingress.routes()),
        _ => plain(
            StatusCode::NOT_FOUND,
            "only /-/metrics and /-/deployments are here",
        ),
    }
}

async fn metrics(ingress: &Ingress, node: crate::Node) -> Response {
    let source = crate::metrics::Source {
        node,
        meters: None,
        head: None,
        serve: ingress.routes().iter().map(|r| r.target.clone()).collect(),
        ingress: None,
    };
    // A scrape reads many locks briefly; off the async workers.
    let text = tokio::task::spawn_blocking(move || crate::metrics::render(&source))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

/// Each route's deployment: what it serves, its replicas and queue now,
/// and its requests so far.
fn deployments(routes: &[Route]) -> Response {
    let list: Vec<DeploymentState> = routes.iter().map(state).collect();
    let body = serde_json::json!({ "deployments": list });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// One deployment on an ingress, as it is now.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeploymentState {
    pub name: String,
    pub tenant: String,
    /// `replicas` or `stateless`.
    pub kind: &'static str,
    pub host: Option<String>,
    pub route: String,
    /// Replicas up and starting (`None` for a stateless deployment: its
    /// instances are per request).
    pub replicas: Option<u32>,
    pub starting: Option<u32>,
    pub ongoing: u64,
    pub queued: u64,
    /// Answers so far by status class (`2xx` ... `5xx`).
    pub requests: std::collections::BTreeMap<String, u64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// `route`'s deployment as it is now.
pub(super) fn state(route: &Route) -> DeploymentState {
    let reading = route.target.reading();
    let requests = reading
        .by_class
        .iter()
        .map(|(class, n)| (class.to_string(), *n))
        .collect();
    // A stateless deployment has instances per request, no replicas.
    let (kind, replicas, starting) = match route.target {
        Target::Replicas(_) => ("replicas", Some(reading.replicas), Some(reading.starting)),
        Target::Stateless(_) => ("stateless", None, None),
    };
    DeploymentState {
        name: reading.name.to_string(),
        tenant: route.target.tenant().to_string(),
        kind,
        host: route.host.clone(),
        route: match route.prefix.is_empty() {
            true => "/".to_string(),
            false => route.prefix.clone(),
        },
        replicas: replicas.map(|n| n as u32),
        starting: starting.map(|n| n as u32),
        ongoing: reading.ongoing as u64,
        queued: reading.queued as u64,
        requests,
        p50_ms: quantile_ms(&reading.latency, 0.5),
        p99_ms: quantile_ms(&reading.latency, 0.99),
    }
}

/// The upper bound of the latency bucket holding quantile `q`, in ms
/// (`null` before any request, or past the last bound).
fn quantile_ms(latency: &crate::meters::LatencyRead, q: f64) -> Option<f64> {
    let rank = (latency.count as f64 * q).ceil().max(1.0) as u64;
    (latency.count > 0)
        .then(|| {
            latency
                .buckets
                .iter()
                .find(|(_, seen)| *seen >= rank)
                .map(|(bound, _)| bound * 1000.0)
        })
        .flatten()
}
