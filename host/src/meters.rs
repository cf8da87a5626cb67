//! What a node counts about its cluster traffic, for its metrics: bytes of
//! objects moved between nodes, and how long its RPCs and peer messages
//! take to serve.
//!
//! The histograms are lock-free (an atomic add per bucket, sum and count):
//! they sit on the paths every peer message and RPC takes, where a lock
//! would be shared by every core. `prometheus-client`'s own histogram
//! takes a write lock per observation, so the exporter encodes these
//! through its encoder instead.
//!
//! ```
//! use std::time::Duration;
//! use fabric_host::meters::Latency;
//! let h = Latency::default();
//! h.observe(Duration::from_micros(300));
//! h.observe(Duration::from_millis(20));
//! let r = h.read();
//! assert_eq!(r.count, 2);
//! // Cumulative: 300 µs is under the 0.5 ms bound, 20 ms under 25 ms.
//! assert_eq!(r.buckets[3], (0.0005, 1));
//! assert_eq!(r.buckets.last().unwrap().1, 2);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Upper bounds of the latency buckets, in seconds (50 µs to 10 s).
pub const BOUNDS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// A latency histogram with fixed buckets.
pub struct Latency {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

/// A reading of a [`Latency`]: cumulative buckets, as Prometheus wants them.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyRead {
    pub sum_seconds: f64,
    pub count: u64,
    /// (upper bound, observations at or under it); the `+Inf` bucket is
    /// `count`.
    pub buckets: Vec<(f64, u64)>,
}

impl Latency {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> LatencyRead {
        let mut running = 0;
        let buckets = BOUNDS
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| {
                running += n.load(Ordering::Relaxed);
                (*b, running)
            })
            .collect();
        LatencyRead {
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            // Never fewer than the buckets hold (they are read first).
            count: self.count.load(Ordering::Relaxed).max(running),
            buckets,
        }
    }
}

/// Latencies by name, for a bounded set of names: a name past the bound
/// counts under `other`, so callers cannot grow the set (an RPC path is
/// the caller's text).
pub struct LatencyFamily {
    by_name: RwLock<BTreeMap<String, Arc<Latency>>>,
    max_names: usize,
}

impl LatencyFamily {
    pub fn new(max_names: usize) -> Self {
        LatencyFamily {
            by_name: RwLock::default(),
            max_names,
        }
    }

    /// The histogram of `name` (or of `other`, when the set is full).
    pub fn get(&self, name: &str) -> Arc<Latency> {
        if let Some(h) = self.by_name.read().get(name) {
            return h.clone();
        }
        let mut names = self.by_name.write();
        let key = if names.len() < self.max_names {
            name
        } else {
            "other"
        };
        names.entry(key.to_string()).or_default().clone()
    }

    pub fn read(&self) -> Vec<(String, LatencyRead)> {
        self.by_name
            .read()
            .iter()
            .map(|(n, h)| (n.clone(), h.read()))
            .collect()
    }
}

/// A node's cluster meters.
pub struct ClusterMeters {
    /// gRPC calls this node served, by method path.
    pub rpcs: LatencyFamily,
    /// Peer messages this node handled, by kind.
    pub peer_messages: LatencyFamily,
    pub objects_sent: AtomicU64,
    pub object_bytes_sent: AtomicU64,
    pub objects_received: AtomicU64,
    pub object_bytes_received: AtomicU64,
    /// The same, for objects that went over a local socket to or from a
    /// node on this machine (not counted above).
    pub local_objects_sent: AtomicU64,
    pub local_object_bytes_sent: AtomicU64,
    pub local_objects_received: AtomicU64,
    pub local_object_bytes_received: AtomicU64,
}

impl Default for ClusterMeters {
    fn default() -> Self {
        ClusterMeters {
            // The protocol has fewer methods than this; the rest is `other`.
            rpcs: LatencyFamily::new(48),
            peer_messages: LatencyFamily::new(32),
            objects_sent: AtomicU64::new(0),
            object_bytes_sent: AtomicU64::new(0),
            objects_received: AtomicU64::new(0),
            object_bytes_received: AtomicU64::new(0),
            local_objects_sent: AtomicU64::new(0),
            local_object_bytes_sent: AtomicU64::new(0),
            local_objects_received: AtomicU64::new(0),
            local_object_bytes_received: AtomicU64::new(0),
        }
    }
}

impl ClusterMeters {
    pub(crate) fn sent(&self, bytes: usize) {
        self.objects_sent.fetch_add(1, Ordering::Relaxed);
        self.object_bytes_sent
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.objects_received.fetch_add(1, Ordering::Relaxed);
        self.object_bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn sent_local(&self, bytes: usize) {
        self.local_objects_sent.fetch_add(1, Ordering::Relaxed);
        self.local_object_bytes_sent
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn received_local(&self, bytes: usize) {
        self.local_objects_received.fetch_add(1, Ordering::Relaxed);
        self.local_object_bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_the_bound_count_as_other() {
        let f = LatencyFamily::new(2);
        f.get("a").observe(Duration::from_millis(1));
        f.get("b").observe(Duration::from_millis(1));
        for i in 0..100 {
            f.get(&format!("x{i}")).observe(Duration::from_millis(1));
        }
        let names: Vec<String> = f.read().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "other"]);
        assert_eq!(f.get("other").read().count, 100);
    }

    #[test]
    fn a_latency_past_every_bound_counts_only_in_the_total() {
        let h = Latency::default();
        h.observe(Duration::from_secs(60));
        let r = h.read();
        assert_eq!(r.count, 1);
        assert_eq!(r.buckets.last().unwrap().1, 0);
        assert!((r.sum_seconds - 60.0).abs() < 1e-9);
    }
}

/// A tower layer that times each call a server answers, by its path, into
/// [`ClusterMeters::rpcs`] (for a streaming reply, until its first bytes).
/// The path is the caller's text: a call the server did not know
/// (`unimplemented`) counts as `unknown`, and one refused for its
/// credentials as `refused`, so only real methods name series.
#[derive(Clone)]
pub(crate) struct TimeRpcs(pub Arc<ClusterMeters>);

impl<S> tower::Layer<S> for TimeRpcs {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Timed<S> {
        Timed {
            inner,
            meters: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Timed<S> {
    inner: S,
    meters: Arc<ClusterMeters>,
}

type BoxFuture<T, E> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        let meters = self.meters.clone();
        let started = std::time::Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let out = answer.await;
            let status = out
                .as_ref()
                .ok()
                .and_then(|r| r.headers().get("grpc-status"));
            let name = match status.map(|s| s.as_bytes()) {
                Some(b"12") => "unknown",
                Some(b"16") => "refused",
                _ => path.as_str(),
            };
            meters.rpcs.get(name).observe(started.elapsed());
            out
        })
    }
}
