//! Refusals paced per tenant: how a flood on one tenant's route is kept
//! from taking the ingress's CPU from the other tenants' routes.
//!
//! A refusal (a 503 because every place and the queue are full, a 401, a
//! 404, a 413 ...) costs the ingress little, but a client that is refused
//! asks again at once: a closed-loop flood of 64 connections on a route
//! with one place made about 69,000 requests a second on two cores, three
//! quarters of them refused, and the CPU they took raised another tenant's
//! p99 3.8x. So each tenant (the route's; requests that found no route
//! count as no one's, the empty name) answers at most `rate` refusals a
//! second at once, after a burst of `rate / 10`; a refusal past that waits
//! its turn, at most [`MAX_WAIT`], before it is sent. An HTTP/1.1
//! connection asks nothing more until it has its answer (and an HTTP/2 one
//! holds at most its streams), so a flooder's request rate falls to about
//! the rate plus what its deployment serves, while what the deployment
//! serves is bounded by its places as before. The wait is the cost of the
//! refused, never of a request that is served.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let pacer = fabric_host::serve::pacing::Pacer::new(1000);
//! // The first refusals of a tenant go out at once ...
//! assert_eq!(pacer.delay("tenant-a"), std::time::Duration::ZERO);
//! # }
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use parking_lot::Mutex;

/// The longest a refusal waits for its turn: a wait bounds a flooder's
/// rate at its connections (each asks again only once answered) per
/// `MAX_WAIT`, and a refused client waits no longer than its `Retry-After`.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// The longest waits are spread over this much below [`MAX_WAIT`].
const MAX_WAIT_SPREAD_MS: u64 = 250;

/// The tenants' refusal schedules (a generic cell rate algorithm per
/// tenant: `due` is when the tenant's next refusal may go at the rate).
pub struct Pacer {
    /// Between two refusals of one tenant at the rate; `None`: unpaced.
    interval: Option<Duration>,
    /// How far ahead of the rate a tenant may be (its burst).
    burst: Duration,
    due: Mutex<HashMap<String, Instant>>,
}

impl Pacer {
    /// Paces each tenant's refusals at `rate` a second (0: not at all).
    pub fn new(rate: u32) -> Self {
        let interval = (rate > 0).then(|| Duration::from_secs(1) / rate);
        Pacer {
            interval,
            burst: interval.unwrap_or_default() * (rate / 10).max(1),
            due: Mutex::new(HashMap::new()),
        }
    }

    /// How long `tenant`'s refusal made now waits before it is sent, and
    /// its place in the tenant's schedule taken.
    pub fn delay(&self, tenant: &str) -> Duration {
        let Some(interval) = self.interval else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let mut due = self.due.lock();
        // A tenant's entry exists only while it refuses faster than its
        // rate; entries left behind are dropped by `forget_idle`.
        let next = due.get(tenant).copied().unwrap_or(now).max(now);
        let wait = next.saturating_duration_since(now + self.burst);
        if wait >= MAX_WAIT {
            // Past the longest wait the schedule does not move on: the
            // tenant's flood is as slow as its connections allow already.
            // The wait is spread over its last quarter: connections refused
            // together (a flood's, opened at once) would otherwise be
            // answered together every second, a burst of wakeups that
            // delays every other tenant's requests at once.
            let spread = rand::Rng::random_range(&mut rand::rng(), 0..MAX_WAIT_SPREAD_MS);
            return MAX_WAIT - Duration::from_millis(spread);
        }
        match due.get_mut(tenant) {
            Some(at) => *at = next + interval,
            None => {
                due.insert(tenant.to_string(), next + interval);
            }
        }
        wait
    }

    /// Drops the schedules of tenants that are back within their rate, so
    /// the map holds the tenants refusing right now (whose names come
    /// from the routes, or are the empty name), not every one seen.
    pub fn forget_idle(&self) {
        let now = Instant::now();
        self.due.lock().retain(|_, at| *at > now);
    }
}

/// Sends `response` once `tenant`'s refusals allow, when it is one (see
/// the module docs); a paced 503 says when to ask again. An HTTP/2 client that
/// resets the stream rather than wait has it noted in `skipped`.
pub(super) async fn pace(
    pacer: &Pacer,
    tenant: &str,
    mut response: Response,
    skipped: Option<crate::http2::SkippedWaits>,
) -> Response {
    if response.extensions().get::<Refusal>().is_none() {
        return response;
    }
    let wait = pacer.delay(tenant);
    if wait.is_zero() {
        return response;
    }
    /// Notes the wait as skipped unless it ran to its end.
    struct Waiting(Option<crate::http2::SkippedWaits>);
    impl Drop for Waiting {
        fn drop(&mut self) {
            if let Some(skipped) = self.0.take() {
                skipped.note();
            }
        }
    }
    let mut waiting = Waiting(skipped);
    tokio::time::sleep(wait).await;
    waiting.0 = None;
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Marks a response the ingress made without a handler's work: a refusal,
/// which [`pace`] paces.
#[derive(Clone, Copy)]
pub(super) struct Refusal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_refusals_past_its_burst_wait_their_turn_and_others_do_not() {
        let pacer = Pacer::new(100); // 10 ms apart, a burst of 10
        let waits: Vec<Duration> = (0..30).map(|_| pacer.delay("a")).collect();
        assert!(waits[..10].iter().all(|w| w.is_zero()), "{waits:?}");
        // The 30th is about 20 intervals past the burst.
        assert!(waits[29] > Duration::from_millis(150), "{waits:?}");
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert!(pacer.delay("b").is_zero(), "another tenant's first refusal");
    }

    #[test]
    fn a_wait_never_passes_the_longest_and_the_schedule_stops_there() {
        let pacer = Pacer::new(10); // 100 ms apart, a burst of 1
        let waits: Vec<Duration> = (0..40).map(|_| pacer.delay("a")).collect();
        assert!(waits.iter().all(|w| *w <= MAX_WAIT), "{waits:?}");
        // The longest waits are spread, so refusals made together are not
        // all sent together.
        let longest = &waits[20..];
        let spread = Duration::from_millis(MAX_WAIT_SPREAD_MS);
        assert!(longest.iter().all(|w| *w > MAX_WAIT - spread), "{waits:?}");
        assert!(longest.windows(2).any(|w| w[0] != w[1]), "{waits:?}");
        let entries = pacer.due.lock().len();
        assert_eq!(entries, 1);
    }

    #[test]
    fn unpaced_is_never_a_wait() {
        let pacer = Pacer::new(0);
        assert!((0..1000).all(|_| pacer.delay("a").is_zero()));
        assert!(pacer.due.lock().is_empty());
    }
}
