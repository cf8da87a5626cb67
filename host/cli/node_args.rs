//! Node options shared by `fabric run` and `fabric start`.

use anyhow::Context;
use clap::Args;
use fabric_host::NodeConfig;
use fabric_host::config::NodeFile;
use fabric_host::limits::Limits;
use fabric_host::manifest::Policy;
use fabric_host::resources::ResourceSet;
use fabric_host::runtime::compile::CompileSandbox;
use fabric_host::spill::Spill;
use fabric_host::wasi_nn::NnSettings;

#[derive(Args, Clone, Debug)]
pub struct NodeArgs {
    /// CPUs the node offers (default: all of this machine's).
    #[arg(long, value_name = "N")]
    pub num_cpus: Option<f64>,

    /// GPUs the node offers (default: detected with nvidia-smi).
    #[arg(long, value_name = "N")]
    pub num_gpus: Option<u32>,

    /// Custom resources the node offers, e.g. `ssd=1,tpu=4`.
    #[arg(long, value_name = "NAME=AMOUNT,...", value_parser = ResourceSet::parse_custom)]
    pub resources: Option<ResourceSet>,

    /// Memory offered to tasks and actors, in bytes (default: 70% of RAM
    /// less the object store).
    #[arg(long, value_name = "BYTES")]
    pub memory: Option<u64>,

    /// Object store capacity in bytes (default: 30% of memory).
    #[arg(long, value_name = "BYTES")]
    pub object_store_memory: Option<u64>,

    /// Where objects that do not fit in the store spill (default: a fresh
    /// directory under the system's temporary directory).
    #[arg(long, value_name = "DIR", conflicts_with = "no_spill")]
    pub spill_dir: Option<std::path::PathBuf>,

    /// Never spill: a put that does not fit fails with a limit error.
    #[arg(long)]
    pub no_spill: bool,

    /// Where compiled components are kept across runs (default: the
    /// user's cache directory, `~/.cache/wasmfabric/compiled`). A node
    /// loads machine code from it, so it must be private to the node's
    /// user (it is created mode 0700, and refused when others may write it).
    #[arg(long, value_name = "DIR", conflicts_with = "no_compile_cache")]
    pub compile_cache: Option<std::path::PathBuf>,

    /// Keep compiled components in memory only.
    #[arg(long)]
    pub no_compile_cache: bool,

    /// Operator settings (TOML): default job limits (`[limits]`), the most
    /// a manifest may ask for (`[max-limits]`), what it may grant
    /// (`[policy]`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// ONNX Runtime's shared library (`libonnxruntime.so.1.22.x`), or the
    /// directory of an `onnxruntime` 1.22 wheel holding it: model inference
    /// (`wasi:nn`) for jobs granted it. `[nn]` in `--config` sets its bounds.
    #[arg(long, value_name = "FILE-OR-DIR", env = "FABRIC_ONNXRUNTIME")]
    pub onnxruntime: Option<std::path::PathBuf>,
}

impl NodeArgs {
    /// The node's settings; `local` (a `fabric run`, where the user is the
    /// operator) lets manifests grant anything and raise any limit, unless
    /// `--config` says otherwise.
    pub fn config(&self, local: bool) -> anyhow::Result<NodeConfig> {
        let mut cfg = NodeConfig {
            num_cpus: self.num_cpus,
            num_gpus: self.num_gpus,
            memory: self.memory,
            custom: self.resources.clone().unwrap_or_default(),
            object_store_memory: self.object_store_memory,
            spill: match (&self.spill_dir, self.no_spill) {
                (_, true) => Spill::Off,
                (Some(dir), false) => Spill::Dir(dir.clone()),
                (None, false) => Spill::Temporary,
            },
            ..NodeConfig::default()
        };
        if local {
            cfg.policy = Policy::allow_all();
            cfg.max_limits = Some(Limits::max());
        }
        // Components are compiled in a bounded child process of this binary.
        let exe = std::env::current_exe().context("cannot find the fabric executable")?;
        cfg.engine.compile = Some(CompileSandbox::new(exe));
        if !self.no_compile_cache {
            cfg.engine.compiled_dir = match &self.compile_cache {
                // Named: it must be usable, or the node does not start.
                Some(dir) => Some(dir.clone()),
                // The default: where it cannot be used (no home, a
                // read-only disk, another user's directory), compiled
                // components stay in memory.
                None => default_compile_cache(),
            };
        }
        cfg.nn = self.onnxruntime.clone().map(NnSettings::new);
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let file = NodeFile::parse(&text).with_context(|| format!("in {}", path.display()))?;
            file.apply(&mut cfg)
                .with_context(|| format!("in {}", path.display()))?;
        }
        Ok(cfg)
    }
}

/// `~/.cache/wasmfabric/compiled`, when it can be made private to this user.
fn default_compile_cache() -> Option<std::path::PathBuf> {
    let dir = crate::python::cache_dir().ok()?.join("compiled");
    match fabric_host::runtime::disk_cache::private_dir(&dir) {
        Ok(()) => Some(dir),
        Err(e) => {
            tracing::warn!("compiled components are kept in memory only: {e}");
            None
        }
    }
}

/// The multi-threaded runtime a node runs on (`fabric run`, `start`,
/// `serve`).
pub fn node_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fabric-worker")
        .build()
        .context("cannot start the async runtime")
}
