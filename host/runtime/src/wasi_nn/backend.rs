//! ONNX Runtime, loaded once per process from the operator's library, and
//! the `[nn]` bounds guests load and run models under.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::NodeError;

/// The `[nn]` table of a node's settings file.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NnSettings {
    /// The ONNX Runtime shared library (`libonnxruntime.so.1.22.x`, as the
    /// `onnxruntime` 1.22 wheel ships it in `onnxruntime/capi/`), or a
    /// directory holding it (the wheel's `onnxruntime` or its `capi`).
    /// Unset in a settings file, `--onnxruntime` names it.
    #[serde(default)]
    pub onnxruntime: Option<PathBuf>,
    /// The largest model a guest may load (at most 2 GiB less a byte: ONNX
    /// Runtime takes an `int` length).
    #[serde(
        default = "default_max_model",
        deserialize_with = "crate::limits::size::required"
    )]
    pub max_model: u64,
    /// Host memory one instance's models and tensors may hold (a model
    /// counts twice its size).
    #[serde(
        default = "default_max_held",
        deserialize_with = "crate::limits::size::required"
    )]
    pub max_held: u64,
    /// Models one instance may hold at once.
    #[serde(default = "default_max_graphs")]
    pub max_graphs: u32,
    /// Threads one inference uses (at most 64). One keeps an inference
    /// within the CPU its task or replica holds.
    #[serde(default = "default_threads")]
    pub threads: u16,
}

impl NnSettings {
    /// ONNX Runtime from `onnxruntime`, with the default bounds.
    pub fn new(onnxruntime: PathBuf) -> Self {
        NnSettings {
            onnxruntime: Some(onnxruntime),
            max_model: default_max_model(),
            max_held: default_max_held(),
            max_graphs: default_max_graphs(),
            threads: default_threads(),
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.threads == 0 || self.threads > 64 || self.max_graphs == 0 {
            return Err("threads must be 1 to 64 and max-graphs at least 1".into());
        }
        if self.max_model >= 1 << 31 {
            return Err("max-model must be below 2 GiB".into());
        }
        // ONNX Runtime would read session settings (threads, profiling to
        // files) from a tenant's model.
        if std::env::var_os("ORT_LOAD_CONFIG_FROM_MODEL").is_some() {
            return Err("unset ORT_LOAD_CONFIG_FROM_MODEL: a model may not configure it".into());
        }
        Ok(())
    }
}

fn default_max_model() -> u64 {
    64 << 20
}
fn default_max_held() -> u64 {
    256 << 20
}
fn default_max_graphs() -> u32 {
    4
}
fn default_threads() -> u16 {
    1
}

/// ONNX Runtime, loaded, with the bounds guests load models under.
#[derive(Debug)]
pub struct NnBackend {
    pub(crate) settings: NnSettings,
    /// ONNX Runtime's calls running at once on this node: at most one per
    /// CPU it offers (so models cannot take every blocking thread it has),
    /// at most half of them for one tenant.
    pub(crate) places: Arc<super::places::Places>,
    /// Whether it can run models on a GPU (see [`NnBackend::has_cuda`]).
    cuda: std::sync::OnceLock<bool>,
}

/// The library this process loaded: ONNX Runtime is loaded once per process.
static LOADED: Mutex<Option<PathBuf>> = Mutex::new(None);

impl NnBackend {
    /// Loads ONNX Runtime from `settings.onnxruntime` (once per process) and
    /// checks that it answers; a node offering `cpus` runs that many of its
    /// calls at once.
    pub fn load(settings: &NnSettings, cpus: f64) -> Result<Arc<NnBackend>, NodeError> {
        settings
            .check()
            .map_err(|e| NodeError::Config(format!("[nn] {e}")))?;
        let Some(named) = &settings.onnxruntime else {
            return Err(NodeError::Config(
                "[nn] names no ONNX Runtime: set its `onnxruntime`, or pass --onnxruntime".into(),
            ));
        };
        let bad =
            |why: String| NodeError::Config(format!("[nn] onnxruntime {}: {why}", named.display()));
        let path = library(named)
            .and_then(|p| p.canonicalize().ok())
            .ok_or_else(|| {
                bad(
                    "no libonnxruntime.so here (install the onnxruntime 1.22 wheel and name \
                     its capi directory)"
                        .into(),
                )
            })?;
        load_once(&path).map_err(bad)?;
        let places = (cpus.ceil() as usize).max(1);
        Ok(Arc::new(NnBackend {
            settings: settings.clone(),
            places: super::places::Places::new(places),
            cuda: std::sync::OnceLock::new(),
        }))
    }

    pub fn settings(&self) -> &NnSettings {
        &self.settings
    }

    /// Whether this ONNX Runtime can run models on a GPU (the
    /// onnxruntime-gpu build, with CUDA present), asked once.
    pub(crate) fn has_cuda(&self) -> bool {
        *self.cuda.get_or_init(|| {
            use ort::execution_providers::{CUDAExecutionProvider, ExecutionProvider};
            CUDAExecutionProvider::default()
                .is_available()
                .unwrap_or(false)
        })
    }
}

/// Loads the library at `path` into this process, unless it did already;
/// a process holds one ONNX Runtime.
fn load_once(path: &Path) -> Result<(), String> {
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    match &*loaded {
        Some(l) if l != path => Err(format!("this process already loaded {}", l.display())),
        Some(_) => Ok(()),
        None => {
            // `ort` panics on a library it cannot use (a wrong version).
            let answered = std::panic::catch_unwind(|| {
                ort::init_from(path.to_string_lossy())
                    .with_name("wasmfabric")
                    .commit()?;
                ort::session::Session::builder().map(drop)
            });
            match answered {
                Ok(Ok(())) => {
                    *loaded = Some(path.to_path_buf());
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("ONNX Runtime could not be loaded (it must be 1.22)".into()),
            }
        }
    }
}

/// The library at `path`: the file itself, or the `libonnxruntime.so.*` in
/// the directory (or its `capi/`), the wheel's layout.
fn library(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    [path.to_path_buf(), path.join("capi")]
        .iter()
        .find_map(|dir| {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libonnxruntime.so"))
                })
                .collect();
            // The versioned name (`.so.1.22.1`) sorts after a bare `.so`.
            found.sort();
            found.pop()
        })
}
