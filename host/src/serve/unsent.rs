//! The ingress's budget for responses not yet sent: a response holds its
//! bytes of it from the moment it is made until its body is sent or
//! dropped, so clients that read slowly (or never, with HTTP/2's flow
//! control) cannot make the node hold more than the budget in answers.
//! Where the routes serve several tenants, one tenant's responses hold at
//! most half of it, so slow readers of one tenant's routes cannot spend all
//! the others' answers need. A response
//! that finds the budget (or its tenant's half) spent is replaced by a 503.
//!
//! ```
//! use fabric_host::serve::unsent::Unsent;
//! let budget = Unsent::new(1 << 20);
//! budget.set_tenants(2);
//! let response = axum::response::Response::new(axum::body::Body::from(vec![0u8; 4096]));
//! let held = budget.hold("a", response);
//! assert_eq!(held.status(), 200);
//! assert_eq!(budget.held_bytes(), 4096);
//! let big = || axum::response::Response::new(axum::body::Body::from(vec![0u8; 400 << 10]));
//! let a_big = budget.hold("a", big());
//! assert_eq!(budget.hold("a", big()).status(), 503, "past tenant a's half");
//! let b_big = budget.hold("b", big());
//! assert_eq!(b_big.status(), 200, "tenant b's answers still fit");
//! drop((held, a_big, b_big));
//! assert_eq!(budget.held_bytes(), 0);
//! ```

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a body of unknown length (a stateless deployment's, streamed from
/// its instance) is charged: about what the host buffers of it.
const STREAMED: u64 = 256 << 10;

/// The budget, counted in KiB.
pub struct Unsent {
    kib: Arc<Semaphore>,
    total_kib: usize,
    /// KiB held by each tenant's responses, at most `share_kib` each.
    by_tenant: Arc<Mutex<HashMap<String, u64>>>,
    share_kib_now: AtomicU64,
}

impl Unsent {
    /// A budget of `bytes` (at least 1 KiB).
    pub fn new(bytes: u64) -> Self {
        let total_kib = (bytes / 1024).clamp(1, Semaphore::MAX_PERMITS as u64) as usize;
        Unsent {
            kib: Arc::new(Semaphore::new(total_kib)),
            total_kib,
            by_tenant: Arc::default(),
            share_kib_now: AtomicU64::new((total_kib as u64 / 2).max(1)),
        }
    }

    /// Lets one tenant's answers hold all of the budget when its routes
    /// serve one tenant, half when they serve several.
    pub fn set_tenants(&self, tenants: usize) {
        let share = super::config::unsent_share(self.total_kib as u64, tenants);
        self.share_kib_now.store(share.max(1), Ordering::Relaxed);
    }

    /// `response` of `tenant`'s route, holding its share of the budget
    /// until its body is done with; or a 503 when the budget, or the
    /// tenant's half of it, cannot take it.
    pub fn hold(&self, tenant: &str, response: Response) -> Response {
        let (parts, body) = response.into_parts();
        let bytes = body.size_hint().exact().unwrap_or(STREAMED);
        let kib = bytes.div_ceil(1024).clamp(1, u32::MAX as u64) as u32;
        let Some(share) = self.take_share(tenant, kib as u64) else {
            return refused(tenant, bytes);
        };
        match self.kib.clone().try_acquire_many_owned(kib) {
            Ok(held) => {
                let held = Held {
                    body,
                    _held: (held, share),
                };
                Response::from_parts(parts, Body::new(held))
            }
            Err(_) => refused(tenant, bytes),
        }
    }

    fn take_share(&self, tenant: &str, kib: u64) -> Option<Share> {
        let share = self.share_kib_now.load(Ordering::Relaxed);
        let mut by_tenant = self.by_tenant.lock();
        let held = by_tenant.get(tenant).copied().unwrap_or(0);
        if held + kib > share {
            return None;
        }
        match by_tenant.get_mut(tenant) {
            Some(h) => *h += kib,
            None => {
                by_tenant.insert(tenant.to_string(), kib);
            }
        }
        Some(Share {
            by_tenant: self.by_tenant.clone(),
            tenant: tenant.to_string(),
            kib,
        })
    }

    /// Bytes held now (in whole KiB).
    pub fn held_bytes(&self) -> u64 {
        (self.total_kib - self.kib.available_permits()) as u64 * 1024
    }
}

fn refused(tenant: &str, bytes: u64) -> Response {
    tracing::info!(
        tenant,
        bytes,
        "the ingress holds its budget of unsent responses: 503"
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the ingress holds too many unsent responses",
    )
        .into_response()
}

/// A tenant's part of the budget, given back when dropped.
struct Share {
    by_tenant: Arc<Mutex<HashMap<String, u64>>>,
    tenant: String,
    kib: u64,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut by_tenant = self.by_tenant.lock();
        if let Some(held) = by_tenant.get_mut(&self.tenant) {
            *held -= self.kib;
            if *held == 0 {
                by_tenant.remove(&self.tenant);
            }
        }
    }
}

/// A body and its share of the budget.
struct Held {
    body: Body,
    _held: (OwnedSemaphorePermit, Share),
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
