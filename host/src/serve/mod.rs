//! Serve: HTTP in front of deployments whose replicas are actors.
//!
//! A deployment is an actor class of a component; its replicas are actors
//! of a [`Service`](crate::runtime::service::Service) (a job the host
//! drives), so they run sandboxed, under the deployment's manifest and its
//! tenant's quota, like any actor. The ingress ([`Serve`]) reads a request,
//! finds its route (the `Host`, then the longest path prefix), checks the
//! route's token before it reads a byte of the body, and hands the request
//! to a replica as one value (see [`value`]); the method's return value is
//! the response. Which replica, and what waits, is [`deployment`]'s
//! business.
//!
//! Statuses of the ingress's own: 404 (no route), 401 (no or a wrong
//! token), 413 (body over the route's `max_body`), 503 (every replica busy
//! and the queue full, or no replica), 504 (past `request_timeout`), 502
//! (the replica trapped or died: it is replaced), 500 (the handler raised,
//! or returned what is no response). Paths under `/-/` are the ingress's
//! own: `GET /-/metrics` ([`IngressMetrics`]) when it has a metrics token.
//! Refusals (a client error, or a 503 of a full deployment) are paced per
//! tenant ([`pacing`]), so a flood of them costs the other tenants little.
//!
//! ```no_run
//! # async fn demo(node: fabric_host::Node, app: std::sync::Arc<fabric_host::AppComponent>)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use fabric_host::serve::{Route, Serve, deployment::{Deployment, DeploymentPlan}};
//! use fabric_host::runtime::service::ServiceActor;
//! let service = node.start_service(app, Arc::new(fabric_host::logs::TerminalSink), Default::default()).await?;
//! let plan = DeploymentPlan {
//!     name: "greeter".into(), replica: ServiceActor::new("Greeter"), replicas: 2,
//!     method: "call".into(), max_ongoing: 5, max_queued: 64,
//!     timeout: std::time::Duration::from_secs(30), autoscaling: None, batch: None,
//! };
//! let greeter = Deployment::start(service, plan).await?;
//! let route = Route::new(None, "/greet", greeter, None, 1 << 20, 16 << 20);
//! let serve = Serve::start("127.0.0.1:8000".parse()?, Default::default(), vec![route], Default::default()).await?;
//! println!("serving on http://{}", serve.address());
//! # Ok(()) }
//! ```

pub mod autoscale;
pub mod config;
pub mod deployment;
mod handles;
pub mod own;
pub mod pacing;
mod request_path;
mod starts;
pub mod stateless;
pub mod stats;
pub mod unsent;
pub mod value;

use parking_lot::RwLock;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::NodeError;
use crate::https::{self, Bounds, Endpoint};
use deployment::{Deployment, ServeError};
use stateless::Stateless;
use value::Incoming;

/// What a route reaches: replicas of an actor class, or a stateless
/// `wasi:http` component.
#[derive(Clone)]
pub enum Target {
    Replicas(Arc<Deployment>),
    Stateless(Arc<Stateless>),
}

impl Target {
    pub fn name(&self) -> &str {
        match self {
            Target::Replicas(d) => &d.name,
            Target::Stateless(d) => &d.name,
        }
    }

    /// Whether both are the same running deployment.
    pub fn is(&self, other: &Target) -> bool {
        match (self, other) {
            (Target::Replicas(a), Target::Replicas(b)) => Arc::ptr_eq(a, b),
            (Target::Stateless(a), Target::Stateless(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The tenant it runs for.
    pub fn tenant(&self) -> &str {
        match self {
            Target::Replicas(d) => d.tenant(),
            Target::Stateless(d) => d.tenant(),
        }
    }

    fn stats(&self) -> &stats::RequestStats {
        match self {
            Target::Replicas(d) => &d.stats,
            Target::Stateless(d) => &d.stats,
        }
    }

    /// Its figures for the metrics.
    pub fn reading(&self) -> stats::DeploymentReading {
        match self {
            Target::Replicas(d) => d.reading(),
            Target::Stateless(d) => d.reading(),
        }
    }
}

impl From<Arc<Deployment>> for Target {
    fn from(d: Arc<Deployment>) -> Self {
        Target::Replicas(d)
    }
}

impl From<Arc<Stateless>> for Target {
    fn from(d: Arc<Stateless>) -> Self {
        Target::Stateless(d)
    }
}

/// What a route keeps of its bearer token (and all an ingress of a
/// cluster is sent of it): its SHA-256.
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Where requests for one deployment come in.
#[derive(Clone)]
pub struct Route {
    /// The `Host` it answers, lower case, without a port (any when `None`).
    host: Option<String>,
    /// The path prefix, without a trailing `/` (empty for `/`).
    prefix: String,
    target: Target,
    /// SHA-256 of the bearer token a request must present (`None`: public).
    token: Option<[u8; 32]>,
    max_body: u64,
    max_response: u64,
    /// Hosts a route for any host does not answer (the operator's).
    not_for: Arc<[String]>,
}

impl Route {
    pub fn new(
        host: Option<&str>,
        prefix: &str,
        target: impl Into<Target>,
        token: Option<&str>,
        max_body: u64,
        max_response: u64,
    ) -> Self {
        Route {
            host: host.map(|h| h.trim_end_matches('.').to_ascii_lowercase()),
            prefix: prefix.trim_end_matches('/').to_string(),
            target: target.into(),
            token: token.map(token_sha256),
            max_body,
            max_response,
            not_for: Arc::new([]),
        }
    }

    /// The same route, wanting the bearer token whose SHA-256 is
    /// `token_sha256` (`None`: public), where only the digest is at hand
    /// (a deployment the head keeps: the token stays with its tenant).
    pub fn with_token_sha256(mut self, token_sha256: Option<[u8; 32]>) -> Self {
        self.token = token_sha256;
        self
    }

    /// The same route, which, answering any host, leaves `hosts` (lower
    /// case, no trailing dot) alone: hosts an operator reserved, or another
    /// tenant's, whose requests a tenant's route must not take even where
    /// no route of theirs matches.
    pub fn not_for_hosts(mut self, hosts: Arc<[String]>) -> Self {
        self.not_for = hosts;
        self
    }

    /// What it routes to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        // `a.example.` is `a.example` to DNS: the same host either way.
        let host = host.map(|h| h.trim_end_matches('.'));
        let host_ok = match &self.host {
            None => host.is_none_or(|h| !self.not_for.iter().any(|r| r == h)),
            Some(h) => host == Some(h.as_str()),
        };
        let rest = path.strip_prefix(self.prefix.as_str());
        host_ok && rest.is_some_and(|r| r.is_empty() || r.starts_with('/'))
    }

    /// Whether the request's `Authorization` is the route's bearer token.
    fn admits(&self, headers: &HeaderMap) -> bool {
        match &self.token {
            None => true,
            Some(want) => bearer_digest_is(headers, want),
        }
    }
}

/// Whether `headers` carry a bearer token whose SHA-256 is `want`. Digests
/// are compared, not the tokens: how long a comparison takes says nothing
/// of the token.
fn bearer_digest_is(headers: &HeaderMap, want: &[u8; 32]) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    given.is_some_and(|t| <[u8; 32]>::from(Sha256::digest(t.as_bytes())) == *want)
}

/// The ingress's own endpoint, `GET /-/metrics`: the node's metrics and
/// each deployment's (requests by status class, latency, replicas, ongoing
/// and queued requests), for the holder of `token` (compared as digests,
/// before anything else). Paths under `/-/` are the ingress's: no route
/// answers them.
pub struct IngressMetrics {
    pub token: String,
    pub node: crate::Node,
}

/// How an ingress serves, besides its listener and routes.
pub struct IngressOptions {
    /// Its TLS settings (HTTPS only; HTTP/2 by ALPN where they offer it).
    pub tls: Option<https::TlsSettings>,
    /// `GET /-/metrics`, for the holder of its token.
    pub metrics: Option<IngressMetrics>,
    /// Response bytes the ingress holds for clients that have not read
    /// them yet, in all (see [`unsent`]).
    pub unsent_response_bytes: u64,
    /// Refusals (503s of a full deployment, 401s, 404s ...) one tenant's
    /// routes answer at once per second; more wait their turn (see
    /// [`pacing`]). 0: no pacing.
    pub refusals_per_second: u32,
}

impl Default for IngressOptions {
    fn default() -> Self {
        IngressOptions {
            tls: None,
            metrics: None,
            unsent_response_bytes: 256 << 20,
            refusals_per_second: DEFAULT_REFUSALS_PER_SECOND,
        }
    }
}

/// Refusals a tenant's routes answer at once per second, unless the
/// operator says otherwise: more than clients that honour `Retry-After`
/// make, far fewer than a flood. (At 1,000, a flood of 64 connections on
/// a route with one place kept a few of them asking at once, enough on
/// two cores to raise another tenant's p99 2.8 to 17 times, median 7.7;
/// at 100, 0.9 to 2.6 times, median 2.1: benches/README.md.)
pub const DEFAULT_REFUSALS_PER_SECOND: u32 = 100;

/// What the ingress keeps of a metrics token: its digest only.
fn metrics_key(m: IngressMetrics) -> ([u8; 32], crate::Node) {
    (Sha256::digest(m.token.as_bytes()).into(), m.node)
}

/// What the handler routes with.
struct Ingress {
    /// Swapped whole by [`Serve::set_routes`]; a request works with the
    /// set it found.
    routes: RwLock<Arc<Vec<Route>>>,
    /// The metrics token's SHA-256, and the node a scrape reads (set
    /// again on a reload: a token can be rotated).
    metrics: RwLock<Option<([u8; 32], crate::Node)>>,
    unsent: unsent::Unsent,
    pacer: pacing::Pacer,
}

impl Ingress {
    fn routes(&self) -> Arc<Vec<Route>> {
        self.routes.read().clone()
    }
}

/// The tenants `routes` serve.
fn tenants(routes: &[Route]) -> usize {
    let mut tenants: Vec<&str> = routes.iter().map(|r| r.target.tenant()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    tenants.len()
}

/// Checks that no two routes claim the same host and prefix, and orders
/// them for matching: host-bound routes first, then longer prefixes, so
/// the most specific route that matches wins.
fn route_table(mut routes: Vec<Route>) -> Result<Vec<Route>, NodeError> {
    for (i, a) in routes.iter().enumerate() {
        if let Some(b) = routes[..i]
            .iter()
            .find(|b| a.host == b.host && a.prefix == b.prefix)
        {
            return Err(NodeError::Config(format!(
                "deployments `{}` and `{}` claim the same route",
                b.target.name(),
                a.target.name()
            )));
        }
    }
    routes.sort_by_key(|r| (r.host.is_none(), std::cmp::Reverse(r.prefix.len())));
    Ok(routes)
}

/// A running ingress; dropping it stops accepting.
pub struct Serve {
    endpoint: Endpoint,
    ingress: Arc<Ingress>,
}

impl Serve {
    /// Serves `routes` on `listen` within `bounds` (HTTP/2 too where
    /// `bounds.versions` says so), as `options` say. Two routes may not
    /// claim the same host and prefix.
    pub async fn start(
        listen: SocketAddr,
        bounds: Bounds,
        routes: Vec<Route>,
        options: IngressOptions,
    ) -> Result<Serve, NodeError> {
        let ingress = Arc::new(Ingress {
            routes: RwLock::new(Arc::new(route_table(routes)?)),
            metrics: RwLock::new(options.metrics.map(metrics_key)),
            unsent: unsent::Unsent::new(options.unsent_response_bytes),
            pacer: pacing::Pacer::new(options.refusals_per_second),
        });
        ingress.unsent.set_tenants(tenants(&ingress.routes()));
        let router = Router::new().fallback(handle).with_state(ingress.clone());
        let endpoint = https::serve(listen, options.tls, bounds, router).await?;
        Ok(Serve { endpoint, ingress })
    }

    /// Routes requests by `routes` from now on. A request already routed
    /// finishes where it was sent; a deployment no route names any more
    /// stops once its last request is answered (its replicas with it).
    pub fn set_routes(&self, routes: Vec<Route>) -> Result<(), NodeError> {
        let table = Arc::new(route_table(routes)?);
        self.ingress.unsent.set_tenants(tenants(&table));
        *self.ingress.routes.write() = table;
        self.ingress.pacer.forget_idle();
        Ok(())
    }

    /// Serves `GET /-/metrics` to the holder of `metrics`'s token from now
    /// on (`None`: no metrics).
    pub fn set_metrics(&self, metrics: Option<IngressMetrics>) {
        *self.ingress.metrics.write() = metrics.map(metrics_key);
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.endpoint.address()
    }

    /// What its routes reach now (for a node's metrics).
    pub fn targets(&self) -> Vec<Target> {
        self.ingress
            .routes()
            .iter()
            .map(|r| r.target.clone())
            .collect()
    }

    /// Each route's deployment as it is now (what `GET /-/deployments`
    /// shows).
    pub fn deployments(&self) -> Vec<own::DeploymentState> {
        self.ingress.routes().iter().map(own::state).collect()
    }
}

async fn handle(State(ingress): State<Arc<Ingress>>, request: Request) -> Response {
    let routes = ingress.routes();
    let skipped = request
        .extensions()
        .get::<crate::http2::SkippedWaits>()
        .cloned();
    let (response, tenant) = match dispatch(&ingress, &routes, request).await {
        Dispatched::Routed(route, response) => (response, route.target.tenant()),
        Dispatched::Unrouted(response) => (response, ""),
    };
    pacing::pace(&ingress.pacer, tenant, response, skipped).await
}

/// What became of a request: a route's answer, or the ingress's own.
enum Dispatched<'a> {
    Routed(&'a Route, Response),
    Unrouted(Response),
}

/// Finds the request's route among `routes` and answers it there.
async fn dispatch<'a>(
    ingress: &Ingress,
    routes: &'a [Route],
    mut request: Request,
) -> Dispatched<'a> {
    if request.uri().path().starts_with("/-/") {
        return Dispatched::Unrouted(own::own(ingress, request).await);
    }
    // A tunnel is no request for a deployment (and hyper would turn a 2xx
    // answer to it into one).
    if request.method() == axum::http::Method::CONNECT {
        let refused = plain(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not served here");
        return Dispatched::Unrouted(refused);
    }
    let host = match request_path::request_host(&request) {
        Ok(host) => host,
        Err(why) => return Dispatched::Unrouted(plain(StatusCode::BAD_REQUEST, why)),
    };
    // HTTP/2 carries the host as `:authority` only: replicas and handlers
    // see it as `Host`, the name the request was routed by.
    if let (Some(authority), false) = (
        request.uri().authority().cloned(),
        request.headers().contains_key(header::HOST),
    ) && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(header::HOST, value);
    }
    let path = request.uri().path();
    if !request_path::plain_path(path) {
        return Dispatched::Unrouted(plain(
            StatusCode::BAD_REQUEST,
            "the path has dot segments, `//` or encoded separators",
        ));
    }
    let Some(route) = routes.iter().find(|r| r.matches(host.as_deref(), path)) else {
        let refused = plain(StatusCode::NOT_FOUND, "no deployment answers this route");
        return Dispatched::Unrouted(refused);
    };
    let started = std::time::Instant::now();
    let tenant = route.target.tenant();
    let response = ingress.unsent.hold(tenant, answer(route, request).await);
    let took = started.elapsed();
    route
        .target
        .stats()
        .record(response.status().as_u16(), took);
    Dispatched::Routed(route, response)
}

/// A request to `route`, from its token check to the replica's answer.
async fn answer(route: &Route, request: Request) -> Response {
    if !route.admits(request.headers()) {
        let mut refused = plain(
            StatusCode::UNAUTHORIZED,
            "this route needs its bearer token",
        );
        refused
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return refused;
    }
    let deployment = match &route.target {
        Target::Replicas(d) => d,
        Target::Stateless(d) => return answer_stateless(route, d, request).await,
    };
    // A place at a replica first, then the body: the bodies the node holds
    // are bounded by the replicas' places, not by the connections.
    let deadline = deployment.deadline();
    let slot = match deployment.reserve(deadline).await {
        Ok(slot) => slot,
        Err(e) => return failed(&deployment.name, e),
    };
    // The body arrives within the request's deadline, so a slow upload
    // holds its place no longer than `request_timeout`.
    let reading = read(request, route.max_body, route.token.is_some());
    let incoming = match tokio::time::timeout_at(deadline, reading).await {
        Ok(Ok(incoming)) => incoming,
        Ok(Err(refused)) => return refused,
        Err(_) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            );
        }
    };
    match deployment.run(slot, incoming.encode(), deadline).await {
        Ok(answer) => respond(&deployment.name, &answer.value, route.max_response as usize),
        Err(e) => failed(&deployment.name, e),
    }
}

/// A request to a stateless deployment: a place, the body (read as for
/// replicas), then a fresh instance whose response streams back, cut off
/// past the route's `max_response`.
async fn answer_stateless(route: &Route, deployment: &Stateless, request: Request) -> Response {
    // `wasi:http` needs the request's host (`handle` checked and set it).
    if !request.headers().contains_key(header::HOST) {
        return plain(StatusCode::BAD_REQUEST, "the request names no host");
    }
    let deadline = deployment.deadline();
    let place = match deployment.reserve(deadline).await {
        Ok(place) => place,
        Err(e) => return failed(&deployment.name, e),
    };
    let reading = read_parts(request, route.max_body, route.token.is_some());
    let (parts, body) = match tokio::time::timeout_at(deadline, reading).await {
        Ok(Ok(read)) => read,
        Ok(Err(refused)) => return refused,
        Err(_) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            );
        }
    };
    let request = axum::http::Request::from_parts(parts, body);
    match deployment.run(place, request, deadline).await {
        // An informational status would make the connection something
        // else (101 switches protocols): not the handler's to choose.
        Ok(answer) if answer.status().is_informational() => {
            tracing::warn!(deployment = %deployment.name, status = answer.status().as_u16(),
                "a handler answered with an informational status");
            plain(StatusCode::BAD_GATEWAY, "Bad Gateway")
        }
        Ok(answer) => {
            let (mut parts, body) = answer.into_parts();
            // The ingress frames the body and owns the connection.
            for name in FRAMING {
                parts.headers.remove(*name);
            }
            let body = http_body_util::Limited::new(body, route.max_response as usize);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => failed(&deployment.name, e),
    }
}

/// The request as a replica gets it, its body read within the route's
/// bound (and at the node's minimum rate), without the route's token.
async fn read(request: Request, max_body: u64, strip_token: bool) -> Result<Incoming, Response> {
    let (parts, body) = read_parts(request, max_body, strip_token).await?;
    let headers = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    Ok(Incoming {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers,
        body,
    })
}

/// The request's head, without the route's token, and its body, read
/// within the route's bound (and at the node's minimum rate).
async fn read_parts(
    request: Request,
    max_body: u64,
    strip_token: bool,
) -> Result<(axum::http::request::Parts, bytes::Bytes), Response> {
    let (mut parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = match declared {
        Some(len) if len > max_body => return Err(too_large()),
        Some(len) => https::read_body(body, len)
            .await
            .map_err(|e| plain(StatusCode::BAD_REQUEST, &e))?,
        None => read_unsized(body, max_body).await?,
    };
    if strip_token {
        parts.headers.remove(header::AUTHORIZATION);
    }
    Ok((parts, body))
}

fn too_large() -> Response {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the body is over this route's bound",
    )
}

/// A body without a declared length (chunked): at most `max` bytes, within
/// the time [`https::read_body`] gives a body of `max` bytes.
async fn read_unsized(body: Body, max: u64) -> Result<bytes::Bytes, Response> {
    use http_body_util::BodyExt;
    let deadline = https::BODY_GRACE + Duration::from_secs(max / https::MIN_BODY_RATE);
    let limited = http_body_util::Limited::new(body, max as usize);
    match tokio::time::timeout(deadline, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(plain(
            StatusCode::BAD_REQUEST,
            &format!("cannot read the body: {e}"),
        )),
        Err(_) => Err(plain(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        )),
    }
}

/// The response a replica's value stands for.
fn respond(deployment: &str, value: &bytes::Bytes, max_response: usize) -> Response {
    if value.len() > max_response {
        tracing::warn!(
            deployment,
            bytes = value.len(),
            "a handler's value is over max_response"
        );
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the handler's response is too large",
        );
    }
    let reply = match value::response_of(value, max_response) {
        Ok(reply) => reply,
        Err(why) => {
            tracing::warn!(deployment, %why, "a handler returned no response");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the handler returned no response",
            );
        }
    };
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    for (name, value) in reply.headers {
        if FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            continue; // the ingress frames the body and owns the connection
        }
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                response.headers_mut().append(n, v);
            }
            _ => {
                tracing::warn!(deployment, "a handler returned a header that is not HTTP");
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the handler returned a bad header",
                );
            }
        }
    }
    response
}

/// Headers a handler may not set: they describe the connection and the
/// body's framing, which are the ingress's (a wrong `content-length` would
/// corrupt the connection for the requests after it).
const FRAMING: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

fn failed(deployment: &str, e: ServeError) -> Response {
    let status = match &e {
        ServeError::Overloaded | ServeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        ServeError::ReplicaFailed(_) => StatusCode::BAD_GATEWAY,
        ServeError::Handler(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // The cause goes to the operator's log; the caller, who may be anyone
    // on a public route, gets the status and its short reason.
    match &e {
        ServeError::Handler(_) | ServeError::ReplicaFailed(_) => {
            tracing::warn!(deployment, error = %e, status = status.as_u16(), "request failed")
        }
        _ => tracing::info!(deployment, error = %e, status = status.as_u16(), "request failed"),
    }
    plain(status, status.canonical_reason().unwrap_or("error"))
}

/// A short text answer of the ingress's own; a client error or a 503 (no
/// place, no replica) is a [`pacing::Refusal`].
fn plain(status: StatusCode, text: &str) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_string(),
    )
        .into_response();
    if status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE {
        response.extensions_mut().insert(pacing::Refusal);
    }
    response
}
