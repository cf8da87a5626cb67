//! `GET /api/serve`, the dashboard's Serve page: the deployments the caller
//! may see (its own; every tenant's for the admin), those the head keeps
//! (`fabric serve deploy`) and those the nodes' ingresses report (a
//! `fabric serve --address` node's own file too), with what every ingress
//! reported of each in its last heartbeat summed: ingresses, replicas,
//! requests in flight and queued, answers by status class, and the worst
//! p99 of any ingress.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::head::rest::{Api, Caller};
use crate::head::{ServeLoad, ServeRecord};

/// One deployment as the page shows it.
#[derive(Serialize, Default)]
struct Row {
    tenant: String,
    name: String,
    host: Option<String>,
    route: String,
    /// The head keeps it (else only an ingress reports it).
    kept: bool,
    digest: Option<String>,
    deployed_unix_ms: Option<u64>,
    ingresses: u32,
    replicas: u64,
    starting: u64,
    ongoing: u64,
    queued: u64,
    requests: BTreeMap<&'static str, u64>,
    p99_ms: Option<f64>,
}

impl Row {
    fn kept(d: &ServeRecord) -> Row {
        Row {
            tenant: d.tenant.clone(),
            name: d.name.clone(),
            host: d.claim.host.clone(),
            route: route(&d.claim.prefix),
            kept: true,
            digest: Some(d.digest.clone()),
            deployed_unix_ms: Some(d.deployed_unix_ms),
            ..Row::default()
        }
    }

    fn reported(l: &ServeLoad) -> Row {
        Row {
            tenant: l.tenant.clone(),
            name: l.name.clone(),
            host: l.host.clone(),
            route: route(&l.route),
            ..Row::default()
        }
    }

    fn add(&mut self, l: &ServeLoad) {
        self.ingresses += 1;
        self.replicas += u64::from(l.replicas);
        self.starting += u64::from(l.starting);
        self.ongoing += l.ongoing;
        self.queued += l.queued;
        for (class, n) in ["2xx", "3xx", "4xx", "5xx"].into_iter().zip(l.requests) {
            *self.requests.entry(class).or_default() += n;
        }
        self.p99_ms = match (self.p99_ms, l.p99_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

fn route(prefix: &str) -> String {
    if prefix.is_empty() {
        "/".into()
    } else {
        prefix.into()
    }
}

pub(crate) async fn serve(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
) -> Response {
    let visible = |tenant: &str| who.is_admin() || who.tenant() == tenant;
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    for d in api.head.serve_deployments(None) {
        if visible(&d.tenant) {
            rows.insert((d.tenant.clone(), d.name.clone()), Row::kept(&d));
        }
    }
    for (_, l) in api.head.serve_loads() {
        if visible(&l.tenant) {
            let key = (l.tenant.clone(), l.name.clone());
            rows.entry(key).or_insert_with(|| Row::reported(&l)).add(&l);
        }
    }
    Json(rows.into_values().collect::<Vec<_>>()).into_response()
}
