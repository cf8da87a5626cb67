//! The ingress's budget for responses not yet sent: a response holds its
//! bytes of it from the moment it is made until its body is sent or
//! dropped, so clients that read slowly (or never, with HTTP/2's flow
//! control) cannot make the node hold more than the budget in answers.
//! A response that finds the budget spent is replaced by a 503.
//!
//! ```
//! use fabric_host::serve::unsent::Unsent;
//! let budget = Unsent::new(1 << 20);
//! let response = axum::response::Response::new(axum::body::Body::from(vec![0u8; 4096]));
//! let held = budget.hold(response);
//! assert_eq!(held.status(), 200);
//! assert_eq!(budget.held_bytes(), 4096);
//! let over = axum::response::Response::new(axum::body::Body::from(vec![0u8; 2 << 20]));
//! assert_eq!(budget.hold(over).status(), 503, "past the budget");
//! drop(held);
//! assert_eq!(budget.held_bytes(), 0);
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a body of unknown length (a stateless deployment's, streamed from
/// its instance) is charged: about what the host buffers of it.
const STREAMED: u64 = 256 << 10;

/// The budget, counted in KiB.
pub struct Unsent {
    kib: Arc<Semaphore>,
    total_kib: usize,
}

impl Unsent {
    /// A budget of `bytes` (at least 1 KiB).
    pub fn new(bytes: u64) -> Self {
        let total_kib = (bytes / 1024).clamp(1, Semaphore::MAX_PERMITS as u64) as usize;
        Unsent {
            kib: Arc::new(Semaphore::new(total_kib)),
            total_kib,
        }
    }

    /// `response`, holding its share of the budget until its body is done
    /// with; or a 503 when the budget cannot take it.
    pub fn hold(&self, response: Response) -> Response {
        let (parts, body) = response.into_parts();
        let bytes = body.size_hint().exact().unwrap_or(STREAMED);
        let kib = bytes.div_ceil(1024).clamp(1, u32::MAX as u64) as u32;
        match self.kib.clone().try_acquire_many_owned(kib) {
            Ok(held) => Response::from_parts(parts, Body::new(Held { body, _held: held })),
            Err(_) => {
                tracing::info!(
                    bytes,
                    "the ingress holds its budget of unsent responses: 503"
                );
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the ingress holds too many unsent responses",
                )
                    .into_response()
            }
        }
    }

    /// Bytes held now (in whole KiB).
    pub fn held_bytes(&self) -> u64 {
        (self.total_kib - self.kib.available_permits()) as u64 * 1024
    }
}

/// A body and its share of the budget.
struct Held {
    body: Body,
    _held: OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
