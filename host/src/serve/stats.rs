//! What Serve counts for its metrics: each deployment's requests by status
//! class and their latency, next to the replicas and queue it reports live.
//!
//! The counters are atomics bumped once per request (no lock on the request
//! path); a scrape reads them with the node's other metrics
//! ([`crate::metrics`]), served by the ingress at `GET /-/metrics` to the
//! holder of its metrics token.
//!
//! ```
//! use std::time::Duration;
//! use fabric_host::serve::stats::RequestStats;
//! let stats = RequestStats::default();
//! stats.record(200, Duration::from_millis(2));
//! stats.record(503, Duration::from_micros(40));
//! assert_eq!(stats.by_class(), [("2xx", 1), ("3xx", 0), ("4xx", 0), ("5xx", 1)]);
//! assert_eq!(stats.latency().count, 2);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::meters::{Latency, LatencyRead};

/// A deployment's answered requests.
#[derive(Default)]
pub struct RequestStats {
    /// By status class: 2xx to 5xx.
    classes: [AtomicU64; 4],
    latency: Latency,
}

const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

impl RequestStats {
    /// Counts a request answered with `status` after `took` (from its head
    /// read to its response made).
    pub fn record(&self, status: u16, took: Duration) {
        let class = (status / 100).clamp(2, 5) as usize - 2;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took);
    }

    /// Requests by status class.
    pub fn by_class(&self) -> [(&'static str, u64); 4] {
        std::array::from_fn(|i| (CLASSES[i], self.classes[i].load(Ordering::Relaxed)))
    }

    pub fn latency(&self) -> LatencyRead {
        self.latency.read()
    }
}

/// One deployment's figures at a scrape.
pub struct DeploymentReading {
    pub name: String,
    pub by_class: [(&'static str, u64); 4],
    pub latency: LatencyRead,
    pub replicas: usize,
    pub starting: usize,
    pub ongoing: usize,
    pub queued: usize,
}
