//! The metrics endpoint: one route, `GET /metrics`, the scrape token
//! checked before anything else (no request body is ever read), served by
//! [`crate::https`] within tighter bounds than the API's (a scraper needs
//! few connections, and short ones).
//!
//! ```
//! assert_eq!(fabric_host::metrics::server::bounds().per_address, 4);
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Access, MetricsConfig, Source, render};
use crate::error::NodeError;
use crate::https::{Bounds, Endpoint};

/// What the metrics endpoint allows.
pub fn bounds() -> Bounds {
    Bounds {
        connections: 16,
        per_address: 4,
        lifetime: Duration::from_secs(60),
        ..Bounds::default()
    }
}

/// A running metrics endpoint; dropping it stops it.
pub struct MetricsServer {
    endpoint: Endpoint,
    source: Source,
}

impl MetricsServer {
    /// Where it listens.
    pub fn address(&self) -> std::net::SocketAddr {
        self.endpoint.address()
    }

    /// What it shows.
    pub fn source(&self) -> &Source {
        &self.source
    }
}

/// Serves `source`'s metrics as `config` says, until the returned server
/// is dropped.
pub async fn serve(config: MetricsConfig, source: Source) -> Result<MetricsServer, NodeError> {
    let (tls, token) = match config.access {
        Access::Token { token, tls } => (Some(tls), Some(Arc::<str>::from(token))),
        Access::Open => (None, None),
    };
    let router = Router::new()
        .route("/metrics", get(metrics))
        .with_state(source.clone())
        .layer(middleware::from_fn_with_state(token, check_token));
    let endpoint = crate::https::serve(config.listen, tls, bounds(), router).await?;
    tracing::info!(address = %endpoint.address(), "serving metrics");
    Ok(MetricsServer { endpoint, source })
}

async fn metrics(State(source): State<Source>) -> Response {
    // A scrape reads many locks briefly; off the async workers.
    let text = tokio::task::spawn_blocking(move || render(&source))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, super::CONTENT_TYPE)], text).into_response()
}

/// Lets a request through only with `Authorization: Bearer <token>` (when
/// there is a token), before routing.
async fn check_token(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = token
        && !crate::security::bearer_is(request.headers(), &token)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "metrics need `Authorization: Bearer <scrape token>` (the head's security/metrics.token)\n",
        )
            .into_response();
    }
    next.run(request).await
}
