//! Per-tenant quotas: how much of the cluster one tenant may hold at once.
//!
//! A quota caps a tenant's concurrent CPUs, GPUs and memory (what its
//! running tasks and actors hold), the bytes its objects occupy in object
//! stores, its running jobs, and its live instances and actors. Unset fields
//! are unlimited. Work over a CPU, GPU or memory quota waits in the tenant's
//! queue; an object, a job, an instance or an actor over quota fails with a
//! `limit-exceeded` error naming the quota.
//!
//! ```
//! use fabric_runtime::quota::Quota;
//! let q: Quota = toml::from_str(r#"cpus = 2
//! object-store = "1 GiB"
//! jobs = 3"#).unwrap();
//! assert_eq!(q.object_store, Some(1 << 30));
//! assert!(toml::from_str::<Quota>("cpu = 2").is_err(), "unknown keys are errors");
//! ```

use serde::{Deserialize, Serialize};

use crate::resources::{ResourceSet, to_fixed};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Quota {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<f64>,
    /// Bytes of memory its tasks and actors may reserve.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::limits::size::option"
    )]
    pub memory: Option<u64>,
    /// Bytes its objects may occupy.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::limits::size::option"
    )]
    pub object_store: Option<u64>,
    /// Jobs it may run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u32>,
    /// Instances it may hold alive at once (tasks running, actors,
    /// drivers), across the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u64>,
    /// Actors it may hold alive at once (detached ones included, until
    /// killed), across the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actors: Option<u64>,
}

impl Quota {
    /// Whether any field is set.
    pub fn is_unlimited(&self) -> bool {
        *self == Quota::default()
    }

    /// The CPU, GPU and memory caps as a resource set (unset: unlimited).
    pub fn resource_cap(&self) -> ResourceCap {
        let fixed = |name: &str, v: Option<f64>| v.map(|v| to_fixed(name, v).unwrap_or(i64::MAX));
        ResourceCap {
            cpu: fixed("cpus", self.cpus),
            gpu: fixed("gpus", self.gpus),
            memory: self.memory.map(|m| m.min(i64::MAX as u64) as i64),
        }
    }

    /// Checks the values (not negative, not NaN).
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [("cpus", self.cpus), ("gpus", self.gpus)] {
            if let Some(v) = v
                && (!v.is_finite() || v < 0.0)
            {
                return Err(format!(
                    "quota {name} must be a non-negative number, got {v}"
                ));
            }
        }
        Ok(())
    }
}

/// CPU, GPU and memory caps in the scheduler's fixed-point units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceCap {
    pub cpu: Option<i64>,
    pub gpu: Option<i64>,
    pub memory: Option<i64>,
}

impl ResourceCap {
    /// Whether `used + demand` stays within the caps.
    pub(crate) fn admits(&self, used: &ResourceSet, demand: &ResourceSet) -> bool {
        let ok = |cap: Option<i64>, used: i64, want: i64| {
            want <= 0 || cap.is_none_or(|c| used + want <= c)
        };
        ok(self.cpu, used.cpu, demand.cpu)
            && ok(self.gpu, used.gpu, demand.gpu)
            && ok(self.memory, used.memory, demand.memory)
    }

    /// Whether `demand` alone is over the caps (it could never run).
    pub(crate) fn never_admits(&self, demand: &ResourceSet) -> Option<String> {
        let over = |cap: Option<i64>, want: i64| cap.is_some_and(|c| want > c);
        if over(self.cpu, demand.cpu) {
            return Some("cpus".into());
        }
        if over(self.gpu, demand.gpu) {
            return Some("gpus".into());
        }
        if over(self.memory, demand.memory) {
            return Some("memory".into());
        }
        None
    }
}
