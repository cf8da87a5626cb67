//! The wasmtime engine every instance on a node shares.
//!
//! One [`Engine`] per node, configured once: the pooling instance allocator
//! (instances come from pre-reserved slots, so creating a store and
//! instantiating costs tens of microseconds), async support (a guest blocked
//! in `get` parks its fiber, not a thread), and epoch interruption (a ticker
//! thread advances the epoch every [`EPOCH_TICK`]; running guests yield to
//! the scheduler at each tick, so a busy guest cannot monopolise a thread).
//!
//! The engine also owns the linker (the host functions every instance
//! imports) and the compiled components (see [`super::component_cache`]),
//! so nodes that share an engine (an in-process test cluster) compile each
//! component once.
//!
//! ```no_run
//! use fabric_runtime::runtime::engine::{EngineSettings, FabricEngine};
//! let engine = FabricEngine::new(&EngineSettings::default()).unwrap();
//! let _ = engine.engine();
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::{LoadError, NodeError};
use crate::runtime::compile_stats::CompileCounts;
pub use crate::runtime::compile_stats::CompileStats;
use crate::runtime::component::{self, AppComponent};
use crate::runtime::component_cache::ComponentCache;
use crate::runtime::disk_cache::{self, DiskCache};
pub use crate::runtime::engine_settings::EngineSettings;
use crate::runtime::instance::InstanceState;
use crate::runtime::slots::InstancePool;

/// How often the epoch advances: the time slice of a running guest.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Elements of one table in the instance pool: the most any job's
/// `table-elements` limit may allow (the limit names the breach first).
pub const MAX_TABLE_ELEMENTS: usize = 20_000;

/// Bytes of a freed instance's linear memory reset in place (and kept
/// resident for the next instance in its slot) rather than returned to the
/// kernel: the pages it dirtied, wherever they lie (found with PAGEMAP_SCAN
/// where the kernel has it). A small Rust task dirties about 16 KiB; a
/// Python task about 800 KiB, scattered over its 8 MiB heap (CPython writes
/// reference counts all over it), which cost it ~200 page faults, an
/// madvise and TLB shootdowns per task when only 64 KiB were kept. Some
/// Python tasks dirty far more (most of the heap): with 2 MiB kept, about
/// one task in ten in the microbenchmark's node gave back a 4.7 MiB range,
/// and the tasks after it in that slot faulted its pages in again (12
/// faults a task on average, half the async task rate; 4 MiB was not
/// enough either). What a task dirties beyond this goes back to the
/// kernel as soon as it ends.
const KEEP_RESIDENT_MEMORY: usize = 8 << 20;
/// Slots whose kept memory may stay resident while unused, in all: once
/// unused slots keep [`WARM_SLOTS`] x [`KEEP_RESIDENT_MEMORY`] (64 MiB), a
/// freed slot keeps nothing (at least one warm slot per allocator shard:
/// see [`pool_shards`]), and a slot left unused for a whole
/// [`POOL_RELEASE_INTERVAL`] gives back what it keeps (both are patches to
/// wasmtime, see vendor/README.md: without them every slot an instance
/// ever used kept its share for good, up to 20 GiB on a node of 10,000
/// slots). Also how many unused slots wasmtime prefers to reuse before it
/// takes a fresh one: 8, so that the bound stays 64 MiB with 8 MiB kept a
/// slot (a 2-core node runs two or three tasks at once; an affine slot is
/// reused whatever this is).
const WARM_SLOTS: u32 = 8;
/// Where the kernel has no PAGEMAP_SCAN (before Linux 6.7), a freed memory
/// is reset by copying the first `keep` bytes whatever the task dirtied,
/// and all of them count as kept: 8 MiB would copy 8 MiB after every
/// Python task. There, slots keep what they kept before (2 MiB, 32 warm
/// slots: the same 64 MiB in all).
const KEEP_RESIDENT_MEMORY_WITHOUT_SCAN: usize = 2 << 20;
const WARM_SLOTS_WITHOUT_SCAN: u32 = 32;

/// (bytes a freed slot keeps, unused slots that keep them) on this kernel
/// and machine.
fn pool_keep() -> (usize, u32) {
    let (keep, warm) = if PoolingAllocationConfig::is_pagemap_scan_available() {
        (KEEP_RESIDENT_MEMORY, WARM_SLOTS)
    } else {
        (KEEP_RESIDENT_MEMORY_WITHOUT_SCAN, WARM_SLOTS_WITHOUT_SCAN)
    };
    (keep, warm.max(pool_shards()))
}

/// The shards of the pool's slot allocator: one per CPU, at most 16
/// (wasmtime's `default_shard_count`). Each shard gets its share of the
/// warm slots, and a thread takes and frees slots in its own shard first:
/// with fewer warm slots than shards, some shards would keep none, and
/// their tasks would take a slot that gave its pages back (a Python task
/// then faults in its heap again). So there are at least as many warm
/// slots as shards; on a machine of more than 8 CPUs the unused slots then
/// keep up to one `keep` per shard (128 MiB at 16 CPUs), not 64 MiB.
fn pool_shards() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16)) as u32
}
/// How often unused slots give back what they keep (see
/// [`FabricEngine::release_idle_pool_memory`]).
const POOL_RELEASE_INTERVAL: Duration = Duration::from_secs(1);
/// Likewise for tables: a small Rust task dirties about 8 KiB of them, a
/// Python task most of CPython's 5,712-slot funcref table (45 KiB). A table
/// page given back and then filled lazily again costs a page fault and a
/// TLB shootdown (a read maps the zero page, the write that follows copies
/// it): 3% of a Python task's time when 16 KiB were kept. Only the pages a
/// task dirtied are reset (PAGEMAP_SCAN), so keeping more costs a small
/// task nothing.
const KEEP_RESIDENT_TABLE: usize = 64 << 10;
// Async stacks are not zeroed on reuse (zeroing cost 10-20% of a small
// task's time, measured): a stack slot keeps the pages its deepest call
// touched.
/// Decommits are not batched: a batch holds the memory of every instance
/// in it until it fills (sixteen tasks that each read a 100 MB object once
/// held 3.3 GB).
const DECOMMIT_BATCH: usize = 1;

/// Core instances, memories and tables one component may have.
const MAX_CORE_INSTANCES: u32 = 32;
const MAX_MEMORIES: u32 = 4;
const MAX_TABLES: u32 = 8;
/// Tables the pool holds per slot: a component with more weighs more.
const TABLES_PER_SLOT: u32 = 3;

/// Slots of the pool an instance of `component` takes: one, or more for a
/// component with several memories or many tables (the pool has one memory
/// and [`TABLES_PER_SLOT`] tables per slot).
pub(crate) fn slot_weight(component: &wasmtime::component::Component) -> u64 {
    match component.resources_required() {
        Some(r) => {
            u64::from(r.num_memories.max(1)).max(u64::from(r.num_tables.div_ceil(TABLES_PER_SLOT)))
        }
        // Not known before instantiation: the most a component may use.
        None => u64::from(MAX_MEMORIES.max(MAX_TABLES.div_ceil(TABLES_PER_SLOT))),
    }
}

/// A shared engine, its linker and component cache, and the ticker that
/// drives its epochs. Cheap to clone.
#[derive(Clone)]
pub struct FabricEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<InstanceState>,
    /// What `wasi:http` proxy components link against.
    http_linker: Linker<super::wasi_http::HttpState>,
    settings: EngineSettings,
    /// Compiled components by content digest.
    components: ComponentCache,
    /// Compiled artifacts kept on disk, when configured.
    disk: Option<Arc<DiskCache>>,
    compiles: CompileCounts,
    /// The pool's slots, by tenant.
    slots: Arc<InstancePool>,
    /// When the pool's unused slots last gave back what they keep.
    pool_released: parking_lot::Mutex<std::time::Instant>,
    _ticker: EpochTicker,
}

impl FabricEngine {
    pub fn new(settings: &EngineSettings) -> Result<Self, NodeError> {
        if settings.max_instances == 0 {
            return Err(NodeError::Config("max_instances must be at least 1".into()));
        }
        let asked = settings.max_instances;
        let settings = &fit_to_mapping_limit(settings);
        let slots = InstancePool::new(settings.max_instances, &settings.guaranteed_instances)
            .map_err(|e| match settings.max_instances < asked {
                true => NodeError::Config(format!(
                    "{e} (the pool was cut from {asked} instances to fit vm.max_map_count)"
                )),
                false => NodeError::Config(e),
            })?;
        let config = engine_config(settings);
        let engine = Engine::new(&config).map_err(|e| NodeError::Engine(format!("{e:#}")))?;
        let disk = match &settings.compiled_dir {
            Some(dir) => Some(Arc::new(
                DiskCache::open(
                    dir,
                    disk_cache::DEFAULT_BYTES,
                    &engine_key(&engine, settings),
                )
                .map_err(NodeError::Config)?,
            )),
            None => None,
        };
        let mut linker = Linker::new(&engine);
        crate::host_api::add_to_linker(&mut linker)
            .map_err(|e| NodeError::Engine(format!("{e:#}")))?;
        let http_linker =
            super::wasi_http::linker(&engine).map_err(|e| NodeError::Engine(format!("{e:#}")))?;
        let ticker = EpochTicker::start(engine.clone())
            .map_err(|e| NodeError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(FabricEngine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                http_linker,
                settings: settings.clone(),
                components: ComponentCache::new(settings.components.clone()),
                disk,
                compiles: Default::default(),
                slots: Arc::new(slots),
                pool_released: parking_lot::Mutex::new(std::time::Instant::now()),
                _ticker: ticker,
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    /// The instance pool's slots, by tenant.
    pub fn slots(&self) -> &Arc<InstancePool> {
        &self.inner.slots
    }

    /// The compiled component with this digest, if this engine has it.
    pub fn cached(&self, digest: &str) -> Option<Arc<AppComponent>> {
        self.inner.components.get(digest)
    }

    /// Bytes of compiled components kept for `tenant` beyond their use.
    pub fn component_bytes_of(&self, tenant: &str) -> u64 {
        self.inner.components.bytes_of(tenant)
    }

    /// Bytes of compiled components kept beyond their use, all tenants.
    pub fn component_bytes(&self) -> u64 {
        self.inner.components.kept_bytes()
    }

    /// The most linear memory the pool's unused slots keep together (two
    /// frees at once may each pass it by what they keep): one slot's keep
    /// for each warm slot.
    pub fn pool_keep_bound(&self) -> u64 {
        let (keep, warm) = pool_keep();
        keep as u64 * u64::from(warm)
    }

    /// Bytes the pool's unused slots keep resident for their next instances
    /// (see [`KEEP_RESIDENT_MEMORY`]): the node's to account for, as a cache.
    pub fn pool_kept_bytes(&self) -> u64 {
        self.inner
            .engine
            .pooling_allocator_metrics()
            .map_or(0, |m| {
                (m.unused_memory_bytes_resident() + m.unused_table_bytes_resident()) as u64
            })
    }

    /// Gives back what the pool's slots keep resident once they have been
    /// unused for a whole [`POOL_RELEASE_INTERVAL`] (a pass at most once
    /// per interval marks the unused slots; the next releases those still
    /// unused): the pages kept for a slot's next instance are worth keeping
    /// while work streams through it, not once the work has stopped.
    pub(crate) fn release_idle_pool_memory(&self) {
        {
            let mut last = self.inner.pool_released.lock();
            if last.elapsed() < POOL_RELEASE_INTERVAL {
                return;
            }
            *last = std::time::Instant::now();
        }
        let bytes = self.inner.engine.release_unused_pool_memory();
        tracing::trace!(bytes, "gave back what unused pool slots kept");
    }

    /// [`FabricEngine::load_for`] the node's local tenant.
    pub async fn load(&self, bytes: &[u8]) -> Result<Arc<AppComponent>, LoadError> {
        self.load_for(bytes, crate::runtime::job::LOCAL_TENANT)
            .await
    }

    /// Compiles `bytes` as an application for `tenant` (who is charged for
    /// keeping it), or returns the compile of the same component. Custom
    /// sections are dropped first (see [`super::strip`]); compiling waits
    /// for a slot of the node and of the tenant, and runs off the async
    /// threads.
    pub async fn load_for(
        &self,
        bytes: &[u8],
        tenant: &str,
    ) -> Result<Arc<AppComponent>, LoadError> {
        let (stripped, digest) = stripped(bytes).await?;
        if let Some(app) = self.inner.components.get(&digest) {
            return Ok(app);
        }
        let slot = self.inner.components.compile_slot(tenant).await;
        // Compiled by another load while this one waited?
        if let Some(app) = self.inner.components.get(&digest) {
            return Ok(app);
        }
        // The count and the compile slot go with the blocking work: if this
        // caller goes away, the compile and the load (which instantiates
        // once to check the component, from the pool's slots kept for that)
        // still hold them until they are done, so compiles and checks never
        // outnumber their slots. Fields drop in order: the count falls
        // before the slot frees.
        let held = (self.inner.compiles.start(), slot);
        let app = self
            .compile_and_load(stripped, &digest, tenant, held, APP_LOADER)
            .await?;
        self.inner.components.keep(&app, tenant);
        Ok(app)
    }

    /// Compiles `bytes`, a `wasi:http` proxy component, for `tenant`, with
    /// the same bounds, compiler process and disk cache as
    /// [`FabricEngine::load_for`]. It is not kept in the node's component
    /// cache: the service that runs it holds it.
    pub async fn load_http_for(
        &self,
        bytes: &[u8],
        tenant: &str,
    ) -> Result<Arc<super::wasi_http::HttpApp>, LoadError> {
        let (stripped, digest) = stripped(bytes).await?;
        let slot = self.inner.components.compile_slot(tenant).await;
        let held = (self.inner.compiles.start(), slot);
        self.compile_and_load(stripped, &digest, tenant, held, HTTP_LOADER)
            .await
    }

    /// Loads `stripped` (whose digest is `digest`) with `loader`: from the
    /// disk cache, else compiled (in the bounded child process when the
    /// node has one) and kept on disk once it proved to load. `held` (the
    /// compile's count and slot) is released only when the work is done.
    async fn compile_and_load<A: Send + Sync + 'static, H: Send + 'static>(
        &self,
        stripped: Vec<u8>,
        digest: &str,
        tenant: &str,
        held: H,
        loader: Loader<A>,
    ) -> Result<Arc<A>, LoadError> {
        let (stripped, held) = match self.load_from_disk(digest, stripped, held, loader).await? {
            Ok(app) => return Ok(app),
            Err(missed) => missed,
        };
        let (artifact, pack) = match &self.inner.settings.compile {
            Some(sandbox) => {
                let (artifact, pack) = self.compile_in_child(sandbox, &stripped, tenant).await?;
                (Some(artifact), pack)
            }
            None => (None, None),
        };
        let (inner, digest) = (self.inner.clone(), digest.to_string());
        tokio::task::spawn_blocking(move || {
            let _held = held;
            // To keep it on disk, compile to an artifact here.
            let artifact = match (artifact, &inner.disk) {
                (Some(a), _) => Some(a),
                (None, Some(_)) => Some(
                    inner
                        .engine
                        .precompile_component(&stripped)
                        .map_err(|e| LoadError::Invalid(format!("{e:#}")))?,
                ),
                (None, None) => None,
            };
            let app = match &artifact {
                Some(a) => (loader.precompiled)(&inner, &stripped, a),
                None => (loader.in_process)(&inner, &stripped),
            }?;
            // Kept once it proved to load, so a broken one is never kept.
            if let (Some(disk), Some(a)) = (&inner.disk, &artifact) {
                disk.store(&digest, a);
            }
            if let (Some(disk), Some((name, pack))) = (&inner.disk, &pack) {
                disk.store(name, pack);
            }
            Ok::<_, LoadError>(app)
        })
        .await
        .map_err(|e| LoadError::Compile(e.to_string()))?
    }

    /// Compiles in the bounded child process, with `tenant`'s function
    /// pack when there is a disk cache to keep it in (see
    /// [`super::function_pack`]). Returns the artifact and the pack to
    /// keep (by name), once the artifact has proved to load. A compile that
    /// breaks a bound with a pack drops the pack, so a pack that made a
    /// tenant's compiles too big cannot keep failing them.
    async fn compile_in_child(
        &self,
        sandbox: &super::compile::CompileSandbox,
        stripped: &[u8],
        tenant: &str,
    ) -> Result<(Vec<u8>, Option<(String, Vec<u8>)>), LoadError> {
        use super::function_pack::pack_name;
        let disk = self.inner.disk.clone();
        let name = pack_name(tenant);
        let pack = match disk.clone() {
            Some(disk) => {
                let name = name.clone();
                let kept = tokio::task::spawn_blocking(move || disk.load(&name))
                    .await
                    .map_err(|e| LoadError::Compile(e.to_string()))?;
                Some(kept.unwrap_or_default())
            }
            None => None,
        };
        let had_pack = pack.as_ref().is_some_and(|p| !p.is_empty());
        let compiled =
            match super::compile::compile_in_child(sandbox, &self.inner.settings, stripped, pack)
                .await
            {
                Ok(compiled) => compiled,
                Err(e @ LoadError::CompileBound(_)) => {
                    if let (Some(disk), true) = (&disk, had_pack) {
                        disk.forget(&name);
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
        let (reused, made) = compiled.functions;
        let counts = &self.inner.compiles;
        counts.functions_reused.fetch_add(reused, Ordering::Relaxed);
        counts.functions_compiled.fetch_add(made, Ordering::Relaxed);
        Ok((compiled.artifact, compiled.pack.map(|p| (name, p))))
    }

    /// The component with `digest` loaded from the disk cache (`Ok(Ok)`),
    /// or, when it is not there or its artifact does not load (then it is
    /// removed), the bytes and guards back to compile it (`Ok(Err)`). An
    /// artifact that loads but does not link as `loader` wants is kept, and
    /// its error returned.
    #[allow(clippy::type_complexity)]
    async fn load_from_disk<A: Send + Sync + 'static, H: Send + 'static>(
        &self,
        digest: &str,
        stripped: Vec<u8>,
        held: H,
        loader: Loader<A>,
    ) -> Result<Result<Arc<A>, (Vec<u8>, H)>, LoadError> {
        let Some(disk) = self.inner.disk.clone() else {
            return Ok(Err((stripped, held)));
        };
        let (inner, key) = (self.inner.clone(), digest.to_string());
        tokio::task::spawn_blocking(move || {
            let Some(kept) = disk.load(&key) else {
                return Ok(Err((stripped, held)));
            };
            match (loader.precompiled)(&inner, &stripped, &kept) {
                Ok(app) => {
                    inner.compiles.from_disk.fetch_add(1, Ordering::Relaxed);
                    Ok(Ok(app))
                }
                // It loads, but is not what this loader wants (the other kind
                // of component, or a full pool): compiling again would not
                // help, and the entry is good.
                Err(e) if !matches!(e, LoadError::Compile(_)) => Err(e),
                Err(e) => {
                    tracing::warn!(digest = %key, "a kept compiled component does not load ({e}); compiling it again");
                    disk.forget(&key);
                    Ok(Err((stripped, held)))
                }
            }
        })
        .await
        .map_err(|e| LoadError::Compile(e.to_string()))?
    }

    /// Compiled components in the disk cache and their bytes, when there is
    /// one.
    pub fn disk_cache_size(&self) -> Option<(u64, u64)> {
        self.inner.disk.as_ref().map(|d| d.size())
    }

    /// Compiles so far, and how many ran at once.
    pub fn compile_stats(&self) -> CompileStats {
        self.inner.compiles.stats()
    }
}

/// `bytes`, checked to be a component, without its custom sections (see
/// [`super::strip`]), and the digest that names it.
async fn stripped(bytes: &[u8]) -> Result<(Vec<u8>, String), LoadError> {
    component::check_header(bytes)?;
    let owned = bytes.to_vec();
    let stripped = tokio::task::spawn_blocking(move || super::strip::strip_custom_sections(&owned))
        .await
        .map_err(|e| LoadError::Compile(e.to_string()))?
        .map_err(LoadError::Invalid)?;
    let digest = component::digest(&stripped);
    Ok((stripped, digest))
}

/// How a compiled component becomes what the node runs: an application
/// or a `wasi:http` proxy.
struct Loader<A> {
    /// From an artifact this engine's compiler made for the bytes.
    precompiled: fn(&EngineInner, &[u8], &[u8]) -> Loaded<A>,
    /// Compiled here (trusted code only).
    in_process: fn(&EngineInner, &[u8]) -> Loaded<A>,
}

type Loaded<A> = Result<Arc<A>, LoadError>;

impl<A> Clone for Loader<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for Loader<A> {}

const APP_LOADER: Loader<AppComponent> = Loader {
    precompiled: |i, bytes, artifact| {
        component::load_precompiled(&i.engine, &i.linker, bytes, artifact)
    },
    in_process: |i, bytes| component::load(&i.engine, &i.linker, bytes),
};

const HTTP_LOADER: Loader<super::wasi_http::HttpApp> = Loader {
    precompiled: |i, bytes, artifact| {
        super::wasi_http::load_precompiled(&i.engine, &i.http_linker, bytes, artifact)
    },
    in_process: |i, bytes| super::wasi_http::load(&i.engine, &i.http_linker, bytes),
};

/// What names this engine's compiled code in the disk cache: the settings
/// that shape it and wasmtime's own compatibility hash (its version and
/// flags).
fn engine_key(engine: &Engine, settings: &EngineSettings) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{}|{:016x}", settings.to_arg(), h.finish())
}

/// Memory mappings a live instance adds (its memory, table and stack slots
/// split the pool's reservations; measured: 182,249 for 30,000 actors).
const MAPPINGS_PER_INSTANCE: u64 = 6;
/// Mappings left for everything else in the process.
const OTHER_MAPPINGS: u64 = 5_000;

/// `settings` with no more instances than the kernel's limit on memory
/// mappings allows. Past that limit every allocation in the process fails
/// and it aborts; a full pool instead refuses the next instance with a
/// typed error.
fn fit_to_mapping_limit(settings: &EngineSettings) -> EngineSettings {
    let mut fitted = settings.clone();
    let Some(limit) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return fitted;
    };
    let room = (limit.saturating_sub(OTHER_MAPPINGS) / MAPPINGS_PER_INSTANCE).max(1);
    if u64::from(settings.max_instances) > room {
        tracing::warn!(
            configured = settings.max_instances,
            allowed = room,
            "vm.max_map_count ({limit}) allows about {room} live instances; raise it with \
             `sysctl -w vm.max_map_count={}` to host {} instances",
            (u64::from(settings.max_instances) * MAPPINGS_PER_INSTANCE + OTHER_MAPPINGS)
                .next_power_of_two(),
            settings.max_instances
        );
        fitted.max_instances = room as u32;
    }
    fitted
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
/// The wasmtime configuration of a node's engine (and of the compiler
/// process that compiles for it: the two must match).
pub(crate) fn engine_config(settings: &EngineSettings) -> Config {
    // Tenants' instances take `max_instances` slots, weighed by what each
    // uses of the pool (see `slots`); instantiations that check a loaded
    // component (one per compile running) have slots of their own.
    let n = settings.max_instances;
    let checks = settings.components.compiles.max(1) as u32;
    let all = n.saturating_add(checks);
    let (keep, warm_slots) = pool_keep();
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(all)
        // A Rust component has a handful of core instances (its module and
        // the shims that adapt imports); leave room for bigger ones. Core
        // instances are only counted (no memory is reserved for them), so
        // every component may have its most.
        .max_core_instances_per_component(MAX_CORE_INSTANCES)
        .total_core_instances(all.saturating_mul(MAX_CORE_INSTANCES))
        .max_memories_per_component(MAX_MEMORIES)
        .total_memories(n.saturating_add(checks.saturating_mul(MAX_MEMORIES)))
        .max_tables_per_component(MAX_TABLES)
        // A merged Python module defines its function table and the table
        // its imports from outside are called through (`fabric build`).
        .max_tables_per_module(2)
        .table_elements(MAX_TABLE_ELEMENTS)
        .total_tables(
            n.saturating_mul(TABLES_PER_SLOT)
                .saturating_add(checks.saturating_mul(MAX_TABLES)),
        )
        .total_stacks(all)
        .max_memory_size(settings.max_instance_memory as usize)
        // Reusing a slot must not cost an madvise and a TLB shootdown per
        // task: reset the pages a guest dirtied with memset instead (found
        // with PAGEMAP_SCAN where the kernel has it) and keep them mapped.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(keep)
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        .max_unused_warm_slots(warm_slots)
        .decommit_batch_size(DECOMMIT_BATCH);

    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .epoch_interruption(true)
        .async_stack_size(settings.async_stack_size)
        .max_wasm_stack(settings.max_wasm_stack)
        .consume_fuel(settings.fuel_metering)
        .parallel_compilation(true);
    // Each pool slot reserves address space for the largest memory (4 GiB
    // by default, which lets compiled code skip bounds checks). A dense
    // node (100,000 instances) cannot reserve that much: with a smaller
    // maximum, reserve only that, at the cost of explicit bounds checks.
    if settings.max_instance_memory < 4 << 30 {
        config.memory_reservation(settings.max_instance_memory);
    }
    config
}

struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // The thread holds only a weak engine reference in effect: it stops
        // when the ticker (owned by the engine's inner state) drops.
        std::thread::Builder::new()
            .name("fabric-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_larger_than_the_mapping_limit_allows_is_cut_to_fit() {
        let huge = EngineSettings {
            max_instances: u32::MAX,
            ..EngineSettings::default()
        };
        let fitted = fit_to_mapping_limit(&huge);
        if let Ok(limit) = std::fs::read_to_string("/proc/sys/vm/max_map_count") {
            let limit: u64 = limit.trim().parse().unwrap();
            assert!(u64::from(fitted.max_instances) * MAPPINGS_PER_INSTANCE <= limit);
            assert!(fitted.max_instances >= 1);
        }
        let small = EngineSettings {
            max_instances: 10,
            ..EngineSettings::default()
        };
        assert_eq!(fit_to_mapping_limit(&small).max_instances, 10);
    }
}
