//! An autoscaled deployment's replica count following its load.
//!
//! Every [`SAMPLE_EVERY`] the scaler reads the deployment's load (the
//! requests its replicas have plus those queued), averages it over the
//! configuration's `look_back`, and wants `ceil(load / target)` replicas,
//! between `min_replicas` and `max_replicas`. Only a want that lasts (for
//! `upscale_delay` up, `downscale_delay` down) changes the count, so a
//! burst neither starts replicas it will not need nor stops ones it will.
//! One exception: a deployment scaled to zero starts a replica the moment
//! a request waits for one (the ingress wakes the scaler), since nothing
//! else could answer it.
//!
//! ```
//! use fabric_host::serve::autoscale::Scaler;
//! use fabric_host::serve::config::AutoscalingConfig;
//! let config: AutoscalingConfig = toml::from_str(
//!     "min_replicas = 0\nmax_replicas = 4\nupscale_delay = \"0s\"").unwrap();
//! let mut scaler = Scaler::new(config);
//! let now = tokio::time::Instant::now();
//! // 6 requests at a target of 2 each: 3 replicas wanted, at once.
//! assert_eq!(scaler.decide(now, 6, 1), 2);
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::config::{AutoscalingConfig, SAMPLE_EVERY};
use super::deployment::Deployment;

/// The decision half of the autoscaler: samples in, a change of replica
/// count out. Kept apart from the deployment so the rules can be read (and
/// tested) on their own.
pub struct Scaler {
    config: AutoscalingConfig,
    samples: VecDeque<(Instant, usize)>,
    /// Since when more replicas than there are have been wanted.
    above_since: Option<Instant>,
    /// Since when fewer have been wanted.
    below_since: Option<Instant>,
}

impl Scaler {
    pub fn new(config: AutoscalingConfig) -> Self {
        Scaler {
            config,
            samples: VecDeque::new(),
            above_since: None,
            below_since: None,
        }
    }

    /// Takes the load seen at `now` with `current` replicas (running or
    /// starting) and says how many to start (above 0) or stop (below 0).
    pub fn decide(&mut self, now: Instant, load: usize, current: usize) -> i64 {
        self.samples.push_back((now, load));
        while let Some(&(t, _)) = self.samples.front() {
            if now.duration_since(t) <= self.config.look_back {
                break;
            }
            self.samples.pop_front();
        }
        if current == 0 && load > 0 {
            // A request waits and nothing could answer it.
            self.above_since = None;
            return self.wanted(load as f64).max(1) as i64;
        }
        let total: usize = self.samples.iter().map(|&(_, l)| l).sum();
        let average = total as f64 / self.samples.len() as f64;
        let wanted = self.wanted(average);
        let change = wanted as i64 - current as i64;
        let (since, delay) = match change {
            0 => {
                self.above_since = None;
                self.below_since = None;
                return 0;
            }
            1.. => {
                self.below_since = None;
                (&mut self.above_since, self.config.upscale_delay)
            }
            _ => {
                self.above_since = None;
                (&mut self.below_since, self.config.downscale_delay)
            }
        };
        let start = *since.get_or_insert(now);
        if now.duration_since(start) < delay {
            return 0;
        }
        *since = None;
        change
    }

    /// Replicas wanted for an average load, within the bounds.
    fn wanted(&self, load: f64) -> usize {
        let wanted = if load > 0.0 {
            (load / self.config.target_ongoing_requests).ceil() as usize
        } else {
            0
        };
        wanted.clamp(
            self.config.min_replicas as usize,
            self.config.max_replicas as usize,
        )
    }
}

/// Runs `deployment`'s scaler until the deployment is dropped. `wake`
/// (the deployment's) cuts a wait short when a request found no replica.
pub(super) fn spawn(deployment: &Arc<Deployment>, config: AutoscalingConfig, wake: Arc<Notify>) {
    let me: Weak<Deployment> = Arc::downgrade(deployment);
    let mut scaler = Scaler::new(config);
    tokio::spawn(async move {
        loop {
            let woken = tokio::select! {
                _ = tokio::time::sleep(SAMPLE_EVERY) => false,
                _ = wake.notified() => true,
            };
            let Some(d) = me.upgrade() else { return };
            let (load, current) = d.scaling_inputs();
            if woken {
                // A request found no replica: only the rule for zero
                // applies between ticks (samples are taken on ticks, so
                // requests cannot weigh the average or grow the samples).
                if current == 0 && load > 0 {
                    tracing::info!(deployment = %d.name, "starting a replica from zero");
                    d.start_replica(Duration::ZERO);
                }
                continue;
            }
            match scaler.decide(Instant::now(), load, current) {
                0 => {}
                up @ 1.. => {
                    tracing::info!(deployment = %d.name, from = current, up, "scaling up");
                    for _ in 0..up {
                        d.start_replica(Duration::ZERO);
                    }
                }
                down => {
                    tracing::info!(deployment = %d.name, from = current, down = -down, "scaling down");
                    d.shrink(down.unsigned_abs() as usize);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaler(text: &str) -> Scaler {
        Scaler::new(toml::from_str(text).unwrap())
    }

    #[test]
    fn a_want_changes_the_count_only_once_it_has_lasted_its_delay() {
        let mut s = scaler(
            "min_replicas = 1\nmax_replicas = 4\nupscale_delay = \"1s\"\n\
             downscale_delay = \"3s\"\nlook_back = \"100ms\"",
        );
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(s.decide(at(0), 8, 1), 0, "wanted, not yet for long");
        assert_eq!(s.decide(at(500), 8, 1), 0);
        assert_eq!(s.decide(at(1000), 8, 1), 3, "4 wanted (the ceiling)");
        assert_eq!(s.decide(at(1100), 8, 4), 0);
        // Idle: back to the floor, after the longer delay.
        assert_eq!(s.decide(at(1200), 0, 4), 0);
        assert_eq!(s.decide(at(3000), 0, 4), 0);
        assert_eq!(s.decide(at(4200), 0, 4), -3);
        // A burst shorter than the delay starts nothing.
        assert_eq!(s.decide(at(5000), 20, 1), 0);
        assert_eq!(s.decide(at(5200), 0, 1), 0);
        assert_eq!(s.decide(at(6500), 20, 1), 0);
    }

    #[test]
    fn a_deployment_at_zero_starts_a_replica_for_its_first_request_at_once() {
        let mut s = scaler(
            "min_replicas = 0\nmax_replicas = 2\nupscale_delay = \"1h\"\n\
             downscale_delay = \"1s\"\nlook_back = \"500ms\"",
        );
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(s.decide(at(0), 0, 1), 0);
        assert_eq!(s.decide(at(1000), 0, 1), -1, "idle: down to zero");
        assert_eq!(s.decide(at(2000), 0, 0), 0, "zero stays zero");
        assert_eq!(s.decide(at(2100), 1, 0), 1, "no delay from zero");
        // The average still holds the request: the replica stays.
        assert_eq!(s.decide(at(2200), 0, 1), 0);
    }
}
