//! Node configuration: what the node offers and how big its pools are.
//!
//! Unset amounts are detected: CPUs from the OS, GPUs from
//! `CUDA_VISIBLE_DEVICES` or `nvidia-smi`, memory from `/proc/meminfo`.
//!
//! ```
//! use fabric_runtime::config::NodeConfig;
//! let cfg = NodeConfig { num_cpus: Some(4.0), num_gpus: Some(1), ..NodeConfig::default() };
//! let total = cfg.resolve().unwrap().total;
//! assert_eq!(total.to_string().split(", ").take(2).collect::<Vec<_>>(), ["CPU: 4", "GPU: 1"]);
//! ```

use crate::error::NodeError;
use crate::limits::Limits;
use crate::manifest::Policy;
use crate::resources::{ResourceSet, detect, to_fixed};
use std::time::Duration;

use crate::runtime::engine::EngineSettings;

/// Settings for one node. `Default` detects everything.
#[derive(Clone, Debug, Default)]
pub struct NodeConfig {
    /// CPUs to offer (default: detected).
    pub num_cpus: Option<f64>,
    /// GPUs to offer (default: detected).
    pub num_gpus: Option<u32>,
    /// Memory to offer to tasks and actors, in bytes (default: 70% of RAM,
    /// less the object store).
    pub memory: Option<u64>,
    /// Custom resources, e.g. from `--resources ssd=1`.
    pub custom: ResourceSet,
    /// Object store capacity in bytes (default: 30% of RAM).
    pub object_store_memory: Option<u64>,
    /// Where values that do not fit go (default: a temporary directory).
    pub spill: crate::spill::Spill,
    /// Instance pool sizing (for a node with an engine of its own).
    pub engine: EngineSettings,
    /// What a job gets unless its manifest asks for other limits.
    pub limits: Limits,
    /// The most a manifest may ask for (default: the defaults).
    pub max_limits: Option<Limits>,
    /// What manifests may grant (default: nothing).
    pub policy: Policy,
    /// What an unauthenticated caller can make the node hold, once it
    /// serves a cluster.
    pub ingress: IngressLimits,
    /// How much of what ran the node keeps per job and tenant.
    pub task_events: crate::task_events::TaskEventBounds,
    /// Model inference for granted jobs (`wasi:nn`), off when unset.
    pub nn: Option<crate::wasi_nn::NnSettings>,
}

/// A configuration with every amount decided.
#[derive(Clone, Debug)]
pub struct ResolvedConfig {
    pub total: ResourceSet,
    pub num_gpus: usize,
    pub object_store_memory: u64,
    pub spill: crate::spill::Spill,
    pub engine: EngineSettings,
    pub limits: Limits,
    pub max_limits: Limits,
    pub policy: Policy,
    pub task_events: crate::task_events::TaskEventBounds,
    /// ONNX Runtime, loaded, when `[nn]` names it.
    pub nn: Option<std::sync::Arc<crate::wasi_nn::NnBackend>>,
}

impl NodeConfig {
    pub fn resolve(&self) -> Result<ResolvedConfig, NodeError> {
        let cpus = self.num_cpus.unwrap_or_else(|| detect::cpus() as f64);
        to_fixed("CPU", cpus).map_err(NodeError::Config)?;
        let gpus = self
            .num_gpus
            .map(|g| g as usize)
            .unwrap_or_else(detect::gpus);
        let ram = detect::memory_bytes();
        let store = self.object_store_memory.unwrap_or(ram / 10 * 3);
        if store == 0 {
            return Err(NodeError::Config(
                "object store memory must be above 0".into(),
            ));
        }
        let memory = self
            .memory
            .unwrap_or_else(|| (ram / 10 * 7).saturating_sub(store));
        let mut total = ResourceSet::default()
            .with_cpus(cpus)
            .with_gpus(gpus as f64)
            .with_memory(memory);
        total.custom = self.custom.custom.clone();
        Ok(ResolvedConfig {
            total,
            num_gpus: gpus,
            object_store_memory: store,
            spill: self.spill.clone(),
            engine: self.engine.clone(),
            limits: self.limits.clone(),
            max_limits: self
                .max_limits
                .clone()
                .unwrap_or_else(|| self.limits.clone()),
            policy: self.policy.clone(),
            task_events: self.task_events.clone(),
            nn: self
                .nn
                .as_ref()
                .map(|nn| crate::wasi_nn::NnBackend::load(nn, cpus))
                .transpose()?,
        })
    }
}

/// A node's operator settings file (TOML; unknown keys are errors): the
/// limits jobs get by default, the most a manifest may ask for, and what
/// manifests may grant.
///
/// ```
/// use fabric_runtime::config::{NodeConfig, NodeFile};
/// let file = NodeFile::parse(r#"
///     [limits]
///     memory = "512 MiB"
///     [max-limits]
///     memory = "1 GiB"
///     [policy]
///     grant-dirs = ["/srv/shared"]
/// "#).unwrap();
/// let mut cfg = NodeConfig::default();
/// file.apply(&mut cfg).unwrap();
/// assert_eq!(cfg.limits.memory, 512 << 20);
/// assert_eq!(cfg.max_limits.unwrap().memory, 1 << 30);
/// assert!(NodeFile::parse("[limit]\nmemory = 1").is_err());
///
/// // A dense node: 100,000 small instances.
/// let dense = NodeFile::parse("[instances]\nmax = 100000\nmax-memory = \"64 MiB\"").unwrap();
/// let mut cfg = NodeConfig::default();
/// dense.apply(&mut cfg).unwrap();
/// assert_eq!(cfg.engine.max_instances, 100_000);
/// assert_eq!(cfg.limits.memory, 64 << 20);
/// ```
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeFile {
    #[serde(default)]
    pub limits: crate::limits::LimitsRequest,
    #[serde(default)]
    pub max_limits: crate::limits::LimitsRequest,
    #[serde(default)]
    pub policy: Option<Policy>,
    /// Bounds on compiling a component (`time = "60s"`, `memory = "4 GiB"`).
    #[serde(default)]
    pub compile: Option<CompileBounds>,
    /// Sizing of the instance pool (`max = 100000`, `max-memory = "64 MiB"`).
    #[serde(default)]
    pub instances: Option<InstancePool>,
    /// Compiled components kept and compiles at once (`cache = "512 MiB"`,
    /// `cache-per-tenant = "128 MiB"`, `compiles = 2`, `compiles-per-tenant = 1`).
    #[serde(default)]
    pub components: Option<ComponentsTable>,
    /// Bounds on unauthenticated callers (`handshake-timeout = "10s"`,
    /// `client-connections-per-address = 32`, ...; see [`IngressLimits`]).
    #[serde(default)]
    pub ingress: Option<IngressLimits>,
    /// What ran, kept per job for the dashboard and `fabric timeline`
    /// (`enabled = true`, `per-job = 20000`, `per-tenant = "16 MiB"`,
    /// `keep-finished = 8`, `keep-for = "1h"`; see [`crate::task_events`]).
    #[serde(default)]
    pub task_events: Option<crate::task_events::TaskEventBounds>,
    /// Model inference (`onnxruntime = "/path/libonnxruntime.so.1.22.1"`,
    /// `max-model = "64 MiB"`, ...; see [`crate::wasi_nn`]).
    #[serde(default)]
    pub nn: Option<crate::wasi_nn::NnSettings>,
}

/// The `[components]` table of a node settings file (see
/// [`crate::runtime::component_cache`]).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ComponentsTable {
    #[serde(default, deserialize_with = "crate::limits::size::option")]
    pub cache: Option<u64>,
    #[serde(default, deserialize_with = "crate::limits::size::option")]
    pub cache_per_tenant: Option<u64>,
    pub compiles: Option<usize>,
    pub compiles_per_tenant: Option<usize>,
}

/// The `[instances]` table of a node settings file: how many instances
/// (tasks running, actors alive, drivers) the node holds at once, and the
/// largest linear memory of each. A dense node (say 100,000 actors) needs a
/// smaller `max-memory` (each slot reserves that much address space) and
/// `vm.max_map_count` of about 6 per instance. `guaranteed` gives tenants
/// shares of the slots nobody else can take (`guaranteed = { acme = 200 }`,
/// summing to no more than `max`; see [`crate::runtime::slots`]).
///
/// ```
/// use fabric_runtime::config::{NodeConfig, NodeFile};
/// let file = NodeFile::parse("[instances]\nmax = 100\nguaranteed = { acme = 60, beta = 40 }").unwrap();
/// let mut cfg = NodeConfig::default();
/// file.apply(&mut cfg).unwrap();
/// assert_eq!(cfg.engine.guaranteed_instances.len(), 2);
/// let over = NodeFile::parse("[instances]\nmax = 100\nguaranteed = { acme = 60, beta = 41 }").unwrap();
/// assert!(over.apply(&mut NodeConfig::default()).is_err());
/// ```
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InstancePool {
    pub max: Option<u32>,
    #[serde(default, deserialize_with = "crate::limits::size::option")]
    pub max_memory: Option<u64>,
    #[serde(default)]
    pub guaranteed: std::collections::BTreeMap<String, u32>,
}

impl InstancePool {
    /// Sets the guaranteed shares, which must fit the pool.
    fn apply_shares(
        &self,
        engine: &mut crate::runtime::engine::EngineSettings,
    ) -> Result<(), NodeError> {
        let sum: u64 = self.guaranteed.values().map(|n| u64::from(*n)).sum();
        if sum > u64::from(engine.max_instances) {
            return Err(NodeError::Config(format!(
                "[instances] guaranteed shares sum to {sum}, more than the pool's {} instances \
                 (`max`)",
                engine.max_instances
            )));
        }
        engine.guaranteed_instances = self
            .guaranteed
            .iter()
            .map(|(t, n)| (t.as_str().into(), *n))
            .collect();
        Ok(())
    }
}

/// The `[compile]` table of a node settings file.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CompileBounds {
    #[serde(default, with = "crate::limits::humantime_serde_opt")]
    pub time: Option<std::time::Duration>,
    #[serde(default, deserialize_with = "crate::limits::size::option")]
    pub memory: Option<u64>,
}

impl NodeFile {
    pub fn parse(text: &str) -> Result<Self, NodeError> {
        toml::from_str(text).map_err(|e| NodeError::Config(format!("invalid node settings: {e}")))
    }

    /// Applies the file over `cfg`: set limits replace `cfg.limits`, unset
    /// maximums default to the limits, a policy replaces `cfg.policy`.
    pub fn apply(&self, cfg: &mut NodeConfig) -> Result<(), NodeError> {
        let max = Limits::max();
        let bad = |e: crate::error::FabricError| NodeError::Config(e.to_string());
        let limits = cfg.limits.for_job(&max, &self.limits).map_err(bad)?;
        let caps = limits.for_job(&max, &self.max_limits).map_err(bad)?;
        if let Some(p) = &self.policy {
            cfg.policy = p.clone();
        }
        // The file's `[nn]` sets the bounds; its library, or else the one
        // `--onnxruntime` named.
        if let Some(nn) = &self.nn {
            let named = cfg.nn.take().and_then(|flag| flag.onnxruntime);
            cfg.nn = Some(crate::wasi_nn::NnSettings {
                onnxruntime: nn.onnxruntime.clone().or(named),
                ..nn.clone()
            });
        }
        if let (Some(bounds), Some(sandbox)) = (&self.compile, &mut cfg.engine.compile) {
            sandbox.time = bounds.time.unwrap_or(sandbox.time);
            sandbox.memory = bounds.memory.unwrap_or(sandbox.memory);
        }
        let (mut limits, mut caps) = (limits, caps);
        if let Some(pool) = &self.instances {
            if let Some(max) = pool.max {
                if max == 0 {
                    return Err(NodeError::Config(
                        "[instances] max must be at least 1".into(),
                    ));
                }
                cfg.engine.max_instances = max;
            }
            if let Some(mem) = pool.max_memory {
                if !(1 << 20..=4 << 30).contains(&mem) {
                    return Err(NodeError::Config(
                        "[instances] max-memory must be between 1 MiB and 4 GiB".into(),
                    ));
                }
                cfg.engine.max_instance_memory = mem;
                // No job may ask for more memory than a slot holds.
                limits.memory = limits.memory.min(mem);
                caps.memory = caps.memory.min(mem);
            }
            pool.apply_shares(&mut cfg.engine)?;
        }
        if let Some(c) = &self.components {
            let b = &mut cfg.engine.components;
            b.cache_bytes = c.cache.unwrap_or(b.cache_bytes);
            b.cache_bytes_per_tenant = c.cache_per_tenant.unwrap_or(b.cache_bytes_per_tenant);
            b.compiles = c.compiles.unwrap_or(b.compiles);
            b.compiles_per_tenant = c.compiles_per_tenant.unwrap_or(b.compiles_per_tenant);
            if b.compiles == 0 || b.compiles_per_tenant == 0 {
                return Err(NodeError::Config(
                    "[components] compiles and compiles-per-tenant must be at least 1".into(),
                ));
            }
        }
        if let Some(ingress) = &self.ingress {
            cfg.ingress = ingress.clone();
        }
        if let Some(events) = &self.task_events {
            if events.per_tenant < 64 << 10 {
                return Err(NodeError::Config(
                    "[task-events] per-tenant is a size in bytes (say \"16 MiB\"): at least 64 KiB"
                        .into(),
                ));
            }
            cfg.task_events = events.clone();
        }
        cfg.limits = limits;
        cfg.max_limits = Some(caps);
        Ok(())
    }
}

/// How much an unauthenticated caller can make a node hold.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct IngressLimits {
    /// A TLS handshake not done by then is dropped (`"10s"`).
    #[serde(deserialize_with = "crate::limits::humantime_serde")]
    pub handshake_timeout: Duration,
    /// Handshakes in progress from one address.
    pub handshakes_per_address: usize,
    /// Handshakes in progress in all.
    pub handshakes: usize,
    /// Open client (non-peer) connections from one address.
    pub client_connections_per_address: usize,
    /// Concurrent calls on one client connection.
    pub client_streams: u32,
    /// HTTP/2 flow-control windows of a client connection and of each of
    /// its calls: the most a client's unread bytes can take.
    pub client_connection_window: u32,
    pub client_stream_window: u32,
}

impl Default for IngressLimits {
    fn default() -> Self {
        IngressLimits {
            handshake_timeout: Duration::from_secs(10),
            handshakes_per_address: 32,
            handshakes: 512,
            client_connections_per_address: 32,
            client_streams: 16,
            client_connection_window: 1 << 20,
            client_stream_window: 256 << 10,
        }
    }
}
