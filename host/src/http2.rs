//! HTTP/2 connections of the node's endpoints (Serve's ingress): their
//! bounds, telling h2c from HTTP/1.1 by the client's first bytes, and
//! closing connections that carry no request.
//!
//! An HTTP/2 connection carries at most [`H2_STREAMS`] requests at once,
//! header lists within 16 KiB, and at most [`H2_CONNECTION_WINDOW`] of
//! request bodies not yet read (HTTP/2's flow control stands in for TCP's:
//! a body the handler has not asked for waits in the client); a client that
//! resets streams before they were answered faster than the server takes
//! them is cut off (the rapid-reset attack). A connection must send its
//! preface and first request within the endpoint's bound on a request's
//! head, and is closed once it has carried no request for [`H2_IDLE`], so
//! idle connections cannot hold the endpoint's connection slots.
//!
//! ```
//! assert!(fabric_host::http2::H2_STREAMS <= 16);
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;

/// Requests one HTTP/2 connection carries at once.
pub const H2_STREAMS: u32 = 16;
/// Request body bytes an HTTP/2 client may send ahead of the handler on
/// one connection, and on one stream.
pub const H2_CONNECTION_WINDOW: u32 = 128 << 10;
const H2_STREAM_WINDOW: u32 = 64 << 10;
/// Response bytes hyper buffers per stream for a client that reads slowly.
const H2_SEND_BUFFER: usize = 64 << 10;
/// Streams a client may reset before the server took them, at once.
const H2_PENDING_RESETS: usize = 16;
/// How long a connection may carry no request before it is closed.
pub const H2_IDLE: Duration = Duration::from_secs(60);
/// Waits a client may cut short on one connection (see [`SkippedWaits`])
/// before the connection is closed.
pub const H2_SKIPPED_WAITS: usize = 16;

/// HTTP/2's connection preface: how an h2c client with prior knowledge
/// starts.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection starts with HTTP/2's preface (`Some(true)`)
/// or with something else (`Some(false)`: HTTP/1.1), peeked within
/// `within`; `None` when it closed or sent too little in time.
pub async fn starts_with_preface(tcp: &TcpStream, within: Duration) -> Option<bool> {
    let mut buf = [0u8; PREFACE.len()];
    let sniff = async {
        loop {
            let n = tcp.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if buf[..n] != PREFACE[..n] {
                return Some(false);
            }
            if n == PREFACE.len() {
                return Some(true);
            }
            // Part of the preface so far: wait for the rest (a peek would
            // see the same bytes again at once).
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(within, sniff).await.ok().flatten()
}

/// Serves `router` over HTTP/2 on `io` within HTTP/2's bounds, until the
/// client closes, or it sent no request within `first` of connecting or
/// none for [`H2_IDLE`] since its last (then it is shut down gracefully).
pub async fn serve<I>(io: I, router: Router, first: Duration)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = TowerToHyperService::new(Tracked {
        router,
        activity: activity.clone(),
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_STREAMS)
        .max_header_list_size(16 << 10)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .max_send_buf_size(H2_SEND_BUFFER)
        .max_pending_accept_reset_streams(Some(H2_PENDING_RESETS))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = activity.skipped_too_often.notified() => {
                // It resets the streams it was made to wait on: no more
                // streams; those in flight finish.
                connection.as_mut().graceful_shutdown();
                let _ = connection.as_mut().await;
                return;
            }
            _ = check.tick() => {
                if activity.idle_past(first, H2_IDLE) {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                    return;
                }
            }
        }
    }
}

/// When a connection last carried a request, and how many it has now.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to the last request's answer (or its
    /// arrival); `u64::MAX` before the first.
    last: AtomicU64,
    /// Waits the client cut short by resetting their streams.
    skipped: AtomicUsize,
    skipped_too_often: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(u64::MAX),
            skipped: AtomicUsize::new(0),
            skipped_too_often: tokio::sync::Notify::new(),
        }
    }

    fn touch(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Release);
    }

    /// Whether it has been idle too long: no request within `first` of
    /// opening, or none for `idle` since the last one was answered.
    fn idle_past(&self, first: Duration, idle: Duration) -> bool {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return false;
        }
        let now = self.opened.elapsed();
        match self.last.load(Ordering::Acquire) {
            u64::MAX => now > first,
            last => now.saturating_sub(Duration::from_millis(last)) > idle,
        }
    }
}

/// In each HTTP/2 request's extensions: a handler that makes its client
/// wait on purpose (the ingress's paced refusals) notes here a wait the
/// client cut short by resetting the stream, which would otherwise get it
/// the refusal's work without the wait. After [`H2_SKIPPED_WAITS`] the
/// connection is closed (gracefully: its other streams finish).
#[derive(Clone)]
pub struct SkippedWaits(Arc<Activity>);

impl SkippedWaits {
    /// One more wait cut short.
    pub fn note(&self) {
        if self.0.skipped.fetch_add(1, Ordering::AcqRel) + 1 == H2_SKIPPED_WAITS {
            // A stored permit: the connection's loop sees it even if it
            // is not waiting right now.
            self.0.skipped_too_often.notify_one();
        }
    }
}

/// The router, counting the requests in flight on its connection.
#[derive(Clone)]
struct Tracked {
    router: Router,
    activity: Arc<Activity>,
}

/// A request in flight until dropped (its response's head is made).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

type Routed = Pin<
    Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>,
>;

impl tower::Service<axum::http::Request<hyper::body::Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Routed;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<axum::http::Request<hyper::body::Incoming>>::poll_ready(
            &mut self.router,
            cx,
        )
    }

    fn call(&mut self, mut request: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        request
            .extensions_mut()
            .insert(SkippedWaits(self.activity.clone()));
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        self.activity.touch();
        let in_flight = InFlight(self.activity.clone());
        let routed = self.router.call(request);
        Box::pin(async move {
            let response = routed.await;
            drop(in_flight);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_only_without_requests_in_flight() {
        let a = Activity::new();
        assert!(!a.idle_past(Duration::from_secs(5), H2_IDLE));
        assert!(
            a.idle_past(Duration::ZERO, H2_IDLE),
            "no first request in time"
        );
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        a.touch();
        assert!(
            !a.idle_past(Duration::ZERO, Duration::ZERO),
            "one in flight"
        );
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
        std::thread::sleep(Duration::from_millis(5));
        assert!(a.idle_past(Duration::ZERO, Duration::ZERO));
        assert!(!a.idle_past(Duration::ZERO, H2_IDLE));
    }

    #[tokio::test]
    async fn a_connection_that_skips_too_many_waits_is_told_to_close() {
        let a = Arc::new(Activity::new());
        let skipped = SkippedWaits(a.clone());
        for _ in 0..H2_SKIPPED_WAITS - 1 {
            skipped.note();
        }
        let told = tokio::time::timeout(Duration::from_millis(50), a.skipped_too_often.notified());
        assert!(told.await.is_err(), "one wait short of the bound");
        skipped.note();
        let told = tokio::time::timeout(Duration::from_millis(50), a.skipped_too_often.notified());
        assert!(
            told.await.is_ok(),
            "at the bound, even told before anyone waits"
        );
    }
}
