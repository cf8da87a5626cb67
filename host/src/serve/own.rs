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
    let list: Vec<serde_json::Value> = routes.iter().map(deployment).collect();
    let body = serde_json::json!({ "deployments": list });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn deployment(route: &Route) -> serde_json::Value {
    let reading = route.target.reading();
    let requests: serde_json::Map<String, serde_json::Value> = reading
        .by_class
        .iter()
        .map(|(class, n)| (class.to_string(), (*n).into()))
        .collect();
    // A stateless deployment has instances per request, no replicas.
    let (kind, replicas, starting) = match route.target {
        Target::Replicas(_) => ("replicas", Some(reading.replicas), Some(reading.starting)),
        Target::Stateless(_) => ("stateless", None, None),
    };
    serde_json::json!({
        "name": reading.name,
        "tenant": route.target.tenant(),
        "kind": kind,
        "host": route.host,
        "route": if route.prefix.is_empty() { "/" } else { route.prefix.as_str() },
        "replicas": replicas,
        "starting": starting,
        "ongoing": reading.ongoing,
        "queued": reading.queued,
        "requests": requests,
        "p50_ms": quantile_ms(&reading.latency, 0.5),
        "p99_ms": quantile_ms(&reading.latency, 0.99),
    })
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
