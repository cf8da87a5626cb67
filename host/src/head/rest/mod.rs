//! The Jobs REST API: what `fabric submit`, `status`, `logs` do, over
//! HTTPS and JSON, for CI systems and notebooks (as Ray's Jobs API), a
//! thin adapter over [`Head`] like the gRPC `Control` service.
//!
//! Every request needs `Authorization: Bearer <token>` (the CLI's tokens),
//! checked from the headers before any body byte is read. A tenant sees
//! and acts on only its own jobs and uploads: another tenant's job is as
//! unknown as a missing one (404); the admin sees all. Uploads take their
//! room, and submissions their job slot (the jobs quota), before their
//! bodies are read; bodies are bounded. `docs/jobs-api.yaml` is the
//! OpenAPI description, with curl examples.
//!
//! ```no_run
//! # async fn demo(head: std::sync::Arc<fabric_host::head::Head>) -> Result<(), Box<dyn std::error::Error>> {
//! let security = fabric_host::security::ClusterSecurity::generate()?;
//! let hosts = fabric_host::head::dashboard::AllowedHosts::with_defaults(["10.0.0.1"]);
//! let tls = security.https_config()?;
//! let api = fabric_host::head::rest::serve("127.0.0.1:0".parse()?, tls, head, hosts).await?;
//! println!("curl -H 'Authorization: Bearer …' https://{}/api/jobs", api.address());
//! # Ok(()) }
//! ```

mod jobs;
mod tasks;
pub mod uploads;

use super::dashboard::session::{self, Sessions};
use super::dashboard::{AllowedHosts, check_host, pages, views};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tokio_rustls::rustls;

use super::{Head, HeadError};
use crate::error::{FabricError, NodeError};
use crate::https::{Bounds, Endpoint};
use crate::security::Principal;

/// The most a component upload may be.
pub const MAX_COMPONENT: u64 = crate::cluster::MAX_MESSAGE as u64;
/// The most a JSON request body may be.
pub const MAX_JSON: usize = 1 << 20;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) head: Arc<Head>,
    uploads: Arc<uploads::Uploads>,
    /// Logs being followed, per tenant.
    follows: Arc<parking_lot::Mutex<std::collections::HashMap<Arc<str>, usize>>>,
}

/// Logs one tenant may follow at once.
pub const FOLLOWS_PER_TENANT: usize = 8;

/// What finding the caller needs: the tokens (through the head) and the
/// dashboard's sessions.
#[derive(Clone)]
pub(crate) struct Auth {
    pub(crate) head: Arc<Head>,
    pub(crate) sessions: Arc<Sessions>,
}

/// The caller, as the token said (set before any handler runs).
#[derive(Clone)]
pub(crate) struct Caller(pub Principal);

/// Serves the Jobs API and the dashboard of `head` on `listen`, over TLS
/// with `tls`, to requests naming one of `hosts`.
pub async fn serve(
    listen: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    head: Arc<Head>,
    hosts: AllowedHosts,
) -> Result<Endpoint, NodeError> {
    let router = router(head, hosts);
    let endpoint = crate::https::serve(listen, Some(tls), Bounds::default(), router).await?;
    tracing::info!(address = %endpoint.address(), "serving the Jobs API and the dashboard");
    Ok(endpoint)
}

/// The routes: the API's behind the caller check, the dashboard's pages
/// beside them, everything behind the `Host` check.
pub fn router(head: Arc<Head>, hosts: AllowedHosts) -> Router {
    let api = Api {
        head: head.clone(),
        uploads: Arc::default(),
        follows: Arc::default(),
    };
    let auth = Auth {
        head,
        sessions: Arc::default(),
    };
    let pages = Router::new()
        .route("/", get(pages::index))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/static/app.js", get(pages::app_js))
        .route("/static/style.css", get(pages::style))
        .with_state(auth.clone());
    Router::new()
        .route("/api/components", post(jobs::upload).get(jobs::uploads))
        .route("/api/components/{digest}", delete(jobs::remove_upload))
        .route("/api/jobs", post(jobs::submit).get(jobs::list))
        .route("/api/jobs/{id}", get(jobs::one).delete(jobs::delete))
        .route("/api/jobs/{id}/logs", get(jobs::logs))
        .route("/api/jobs/{id}/stop", post(jobs::stop))
        .route("/api/jobs/{id}/tasks", get(tasks::summary))
        .route("/api/jobs/{id}/timeline", get(tasks::timeline))
        .route("/api/session", get(views::session))
        .route("/api/cluster", get(views::cluster))
        .route("/api/nodes", get(views::nodes))
        .route("/api/actors", get(views::actors))
        .route("/api/tenants", get(views::tenants))
        .route("/api/serve", get(super::dashboard::serve_view::serve))
        .with_state(api)
        .layer(middleware::from_fn_with_state(auth, authenticate))
        .merge(pages)
        .layer(middleware::map_response(private))
        .layer(middleware::from_fn_with_state(hosts, check_host))
}

/// What every answer carries: it is one tenant's, so no cache keeps it, no
/// browser guesses its type, no other site frames it.
async fn private(mut r: Response) -> Response {
    use axum::http::HeaderValue;
    let h = r.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("frame-ancestors 'none'"));
    r
}

/// Finds the caller, from a bearer token or a dashboard session (whose
/// requests that change anything must carry its CSRF token), or answers
/// 401 with the body unread.
async fn authenticate(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let who = match (crate::security::bearer(headers), session::cookie(headers)) {
        (Some(token), _) => auth.head.tokens().authenticate(token),
        (None, Some(id)) => match auth.sessions.find(id) {
            Some(s) => {
                let safe = matches!(request.method().as_str(), "GET" | "HEAD");
                let csrf = headers
                    .get(session::CSRF_HEADER)
                    .and_then(|v| v.to_str().ok());
                if !safe && !csrf.is_some_and(|c| s.csrf_is(c)) {
                    return error(
                        StatusCode::FORBIDDEN,
                        "a change from the dashboard needs its CSRF token (x-csrf-token)",
                    )
                    .into_response();
                }
                let who = s.principal.clone();
                request.extensions_mut().insert(s);
                Some(who)
            }
            None => None,
        },
        (None, None) => None,
    };
    match who {
        Some(who) => {
            request.extensions_mut().insert(Caller(who));
            next.run(request).await
        }
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "this API needs `Authorization: Bearer <token>` (an admin or tenant token)",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("ascii"));
            r
        }
    }
}

/// A refusal: its status, and why (sent as `{"error": "..."}`).
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

/// The status a refusal maps to.
fn fabric_status(e: &FabricError) -> StatusCode {
    match e {
        FabricError::LimitExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
        FabricError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<HeadError> for ApiError {
    fn from(e: HeadError) -> ApiError {
        let status = match &e {
            HeadError::Refused(e) => fabric_status(e),
            HeadError::Load(_) | HeadError::Find(_) => StatusCode::BAD_REQUEST,
            HeadError::NoSuchJob | HeadError::NotAlive(_) => StatusCode::NOT_FOUND,
            HeadError::JobRunning(_) | HeadError::HeadNotDrainable => StatusCode::CONFLICT,
            HeadError::Unsaved(_) => StatusCode::SERVICE_UNAVAILABLE,
            // The REST API makes no Serve call; kept exhaustive.
            HeadError::Serve(_) => StatusCode::BAD_REQUEST,
        };
        error(status, e.to_string())
    }
}
