//! What one invocation of guest code may use, and what breaching it costs.
//!
//! Every task call, actor method call, actor constructor and driver runs
//! under [`Limits`]: linear memory, CPU time (epoch ticks while wasm runs, or
//! fuel when the node meters deterministically), wall-clock time (which also
//! covers time spent in host calls, where epochs do not tick), table and
//! instance counts, argument, result and object sizes, and log output. A job
//! also has a bound on its pending tasks. The operator sets defaults and
//! caps; a job's manifest may choose other values up to the caps. A breach
//! reaches the caller as `limit-exceeded` naming the limit and its value,
//! and only the offending instance stops.
//!
//! ```
//! use fabric_runtime::limits::{Limits, LimitsRequest};
//! let defaults = Limits::default();
//! let caps = Limits { memory: 4 << 30, ..Limits::default() };
//! let job = LimitsRequest { memory: Some(64 << 20), ..Default::default() };
//! assert_eq!(defaults.for_job(&caps, &job).unwrap().memory, 64 << 20);
//! let greedy = LimitsRequest { memory: Some(8 << 30), ..Default::default() };
//! assert!(defaults.for_job(&caps, &greedy).is_err());
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::error::FabricError;

/// What one invocation may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory, in bytes.
    pub memory: u64,
    /// CPU time per task or actor call (measured in 10 ms epoch ticks of
    /// running wasm, or in fuel on a node that meters with fuel).
    pub cpu_time: Duration,
    /// Fuel per call on a node that meters with fuel (`None`: no fuel limit).
    pub fuel: Option<u64>,
    /// Wall-clock time per task or actor call, host calls included.
    pub wall_time: Duration,
    /// Wall-clock time of the driver (the whole job).
    pub driver_wall_time: Duration,
    /// Core instances per store.
    pub instances: u32,
    /// Tables per store.
    pub tables: u32,
    /// Elements per table.
    pub table_elements: u32,
    /// Encoded bytes of one call's arguments.
    pub argument_bytes: u64,
    /// Encoded bytes of one call's result.
    pub result_bytes: u64,
    /// Bytes of one `put`.
    pub object_bytes: u64,
    /// Tasks a job may have submitted and not yet finished. It also sizes
    /// the handle table of each instance: a guest may hold this many refs
    /// plus 100,000.
    pub pending_tasks: u64,
    /// Objects a job may hold on one node at once (its puts, task results
    /// and references it received): each costs host memory besides its
    /// bytes.
    pub objects: u64,
    /// Bytes of stdout and stderr one call may write.
    pub log_bytes: u64,
    /// Instances a job may hold alive on one node at once (its tasks
    /// running or blocked, its actors, its driver).
    pub live_instances: u64,
    /// Actors a job may hold alive on one node at once.
    pub live_actors: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 2 << 30,
            cpu_time: Duration::from_secs(300),
            fuel: None,
            wall_time: Duration::from_secs(600),
            driver_wall_time: Duration::from_secs(24 * 3600),
            instances: 100,
            tables: 100,
            table_elements: 10_000,
            argument_bytes: 256 << 20,
            result_bytes: 256 << 20,
            object_bytes: 2 << 30,
            pending_tasks: 1_000_000,
            objects: 2_000_000,
            log_bytes: 16 << 20,
            live_instances: 10_000,
            live_actors: 10_000,
        }
    }
}

impl Limits {
    /// Caps high enough to let a job ask for anything the runtime can do
    /// (for a local `fabric run`, where the user is the operator).
    pub fn max() -> Self {
        let month = Duration::from_secs(30 * 24 * 3600);
        Limits {
            memory: 4 << 30,
            cpu_time: month,
            fuel: None,
            wall_time: month,
            driver_wall_time: month,
            instances: 10_000,
            tables: 10_000,
            table_elements: crate::runtime::engine::MAX_TABLE_ELEMENTS as u32,
            argument_bytes: 4 << 30,
            result_bytes: 4 << 30,
            object_bytes: 4 << 30,
            pending_tasks: 1 << 40,
            objects: 1 << 40,
            log_bytes: 1 << 40,
            live_instances: 1 << 32,
            live_actors: 1 << 32,
        }
    }
}

/// Limits a job asks for (unset: the operator's default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsRequest {
    #[serde(default, deserialize_with = "size::option")]
    pub memory: Option<u64>,
    #[serde(default, with = "humantime_serde_opt")]
    pub cpu_time: Option<Duration>,
    #[serde(default)]
    pub fuel: Option<u64>,
    #[serde(default, with = "humantime_serde_opt")]
    pub wall_time: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub driver_wall_time: Option<Duration>,
    #[serde(default)]
    pub instances: Option<u32>,
    #[serde(default)]
    pub tables: Option<u32>,
    #[serde(default)]
    pub table_elements: Option<u32>,
    #[serde(default, deserialize_with = "size::option")]
    pub argument_bytes: Option<u64>,
    #[serde(default, deserialize_with = "size::option")]
    pub result_bytes: Option<u64>,
    #[serde(default, deserialize_with = "size::option")]
    pub object_bytes: Option<u64>,
    #[serde(default)]
    pub pending_tasks: Option<u64>,
    #[serde(default)]
    pub objects: Option<u64>,
    #[serde(default, deserialize_with = "size::option")]
    pub log_bytes: Option<u64>,
    #[serde(default)]
    pub live_instances: Option<u64>,
    #[serde(default)]
    pub live_actors: Option<u64>,
}

impl Limits {
    /// The limits of a job: each value it asks for (which must not exceed
    /// the operator's `caps`), else `self` (the operator's default).
    pub fn for_job(&self, caps: &Limits, job: &LimitsRequest) -> Result<Limits, FabricError> {
        fn pick<T: PartialOrd + Copy + std::fmt::Debug>(
            name: &str,
            default: T,
            cap: T,
            asked: Option<T>,
        ) -> Result<T, FabricError> {
            match asked {
                Some(v) if v > cap => Err(FabricError::InvalidArgument(format!(
                    "the job asks for {name} {v:?}, above the operator's cap of {cap:?}"
                ))),
                Some(v) => Ok(v),
                None => Ok(if default > cap { cap } else { default }),
            }
        }
        Ok(Limits {
            fuel: self.fuel_for_job(caps, job)?,
            live_instances: pick(
                "live-instances",
                self.live_instances,
                caps.live_instances,
                job.live_instances,
            )?,
            live_actors: pick(
                "live-actors",
                self.live_actors,
                caps.live_actors,
                job.live_actors,
            )?,
            memory: pick("memory", self.memory, caps.memory, job.memory)?,
            cpu_time: pick("cpu-time", self.cpu_time, caps.cpu_time, job.cpu_time)?,
            wall_time: pick("wall-time", self.wall_time, caps.wall_time, job.wall_time)?,
            driver_wall_time: pick(
                "driver-wall-time",
                self.driver_wall_time,
                caps.driver_wall_time,
                job.driver_wall_time,
            )?,
            instances: pick("instances", self.instances, caps.instances, job.instances)?,
            tables: pick("tables", self.tables, caps.tables, job.tables)?,
            table_elements: pick(
                "table-elements",
                self.table_elements,
                caps.table_elements,
                job.table_elements,
            )?,
            argument_bytes: pick(
                "argument-bytes",
                self.argument_bytes,
                caps.argument_bytes,
                job.argument_bytes,
            )?,
            result_bytes: pick(
                "result-bytes",
                self.result_bytes,
                caps.result_bytes,
                job.result_bytes,
            )?,
            object_bytes: pick(
                "object-bytes",
                self.object_bytes,
                caps.object_bytes,
                job.object_bytes,
            )?,
            pending_tasks: pick(
                "pending-tasks",
                self.pending_tasks,
                caps.pending_tasks,
                job.pending_tasks,
            )?,
            objects: pick("objects", self.objects, caps.objects, job.objects)?,
            log_bytes: pick("log-bytes", self.log_bytes, caps.log_bytes, job.log_bytes)?,
        })
    }

    /// The fuel of a job (see [`Limits::for_job`]).
    fn fuel_for_job(&self, caps: &Limits, job: &LimitsRequest) -> Result<Option<u64>, FabricError> {
        match (job.fuel, caps.fuel) {
            (Some(v), Some(cap)) if v > cap => Err(FabricError::InvalidArgument(format!(
                "the job asks for fuel {v}, above the operator's cap of {cap}"
            ))),
            (Some(v), _) => Ok(Some(v)),
            (None, cap) => Ok(self.fuel.or(cap)),
        }
    }

    /// The most one host call may copy out of a guest: wasmtime refuses a
    /// call that tries to move more (our own checks name the exact limit
    /// first, below this).
    pub fn host_call_bytes(&self) -> u64 {
        self.argument_bytes
            .max(self.object_bytes)
            .max(self.result_bytes)
            + (1 << 20)
    }
}

/// The error for breaching limit `name` of `value` (in its unit).
pub fn exceeded(name: &str, value: u64, what: impl Into<String>) -> FabricError {
    FabricError::limit(name, value, what)
}

/// Sizes in manifests: a number of bytes or a string like `"512 MiB"`.
pub mod size {
    use serde::{Deserialize, Deserializer};

    /// Parses `"64 MiB"`, `"2GB"`, `"1024"`.
    pub fn parse(s: &str) -> Result<u64, String> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| format!("`{s}` is not a size ({e})"))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }

    /// A size that must be there.
    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        option(d)?.ok_or_else(|| serde::de::Error::custom("a size is required"))
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Bytes(b)) => Ok(Some(b)),
            Some(Raw::Text(t)) => parse(&t).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written like `"30s"` or `"5m"`.
pub(crate) fn humantime_serde<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a duration ({e})")))
}

/// Durations in manifests: strings like `"30s"` or `"5m"`.
pub(crate) mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => humantime::parse_duration(&s)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a duration ({e})"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_choose_within_caps() {
        let defaults = Limits::default();
        let caps = Limits {
            cpu_time: Duration::from_secs(60),
            ..Limits::default()
        };
        let job = LimitsRequest {
            cpu_time: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let l = defaults.for_job(&caps, &job).unwrap();
        assert_eq!(l.cpu_time, Duration::from_secs(5));
        // A default above the cap is brought down to it.
        assert_eq!(
            defaults
                .for_job(&caps, &LimitsRequest::default())
                .unwrap()
                .cpu_time,
            Duration::from_secs(60)
        );
        let greedy = LimitsRequest {
            cpu_time: Some(Duration::from_secs(61)),
            ..Default::default()
        };
        let e = defaults.for_job(&caps, &greedy).unwrap_err().to_string();
        assert!(e.contains("cpu-time") && e.contains("cap"), "{e}");
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(size::parse("512 MiB").unwrap(), 512 << 20);
        assert_eq!(size::parse("2 GiB").unwrap(), 2 << 30);
        assert_eq!(size::parse("1024").unwrap(), 1024);
        assert!(size::parse("lots").is_err());
    }
}
