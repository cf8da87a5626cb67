//! Building a Python application into a component with componentize-py.
//!
//! `fabric run app.py` (and `submit`, `build`) hands the file to
//! componentize-py together with the Python SDK and the WIT, both embedded
//! in this binary, so the build needs nothing but componentize-py itself.
//! A build takes about ten seconds (it embeds and pre-initializes CPython),
//! so its output is kept under the user's cache directory, keyed by a
//! digest of everything that goes into it: componentize-py's version, the
//! SDK, the application's directory and the dependencies. Dependencies come
//! only from directories the user names (`--python-path`, a directory of
//! packages or a virtualenv): the build never reads the machine's
//! site-packages and never downloads.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use clap::Args;

/// The componentize-py release the SDK is built and tested with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The Python SDK and the WIT it targets, as (relative path, text).
const SDK: &[(&str, &str)] = &[
    (
        "fabric/__init__.py",
        include_str!("../../guest-sdk/python/fabric/__init__.py"),
    ),
    (
        "fabric/_aio.py",
        include_str!("../../guest-sdk/python/fabric/_aio.py"),
    ),
    (
        "fabric/_api.py",
        include_str!("../../guest-sdk/python/fabric/_api.py"),
    ),
    (
        "fabric/_groups.py",
        include_str!("../../guest-sdk/python/fabric/_groups.py"),
    ),
    (
        "fabric/_guest.py",
        include_str!("../../guest-sdk/python/fabric/_guest.py"),
    ),
    (
        "fabric/_preload.py",
        include_str!("../../guest-sdk/python/fabric/_preload.py"),
    ),
    (
        "fabric/_resources.py",
        include_str!("../../guest-sdk/python/fabric/_resources.py"),
    ),
    (
        "fabric/_msgpack.py",
        include_str!("../../guest-sdk/python/fabric/_msgpack.py"),
    ),
    (
        "fabric/_values.py",
        include_str!("../../guest-sdk/python/fabric/_values.py"),
    ),
    (
        "fabric/_wit.py",
        include_str!("../../guest-sdk/python/fabric/_wit.py"),
    ),
    (
        "fabric/errors.py",
        include_str!("../../guest-sdk/python/fabric/errors.py"),
    ),
    (
        "fabric/nn.py",
        include_str!("../../guest-sdk/python/fabric/nn.py"),
    ),
    (
        "fabric/util.py",
        include_str!("../../guest-sdk/python/fabric/util.py"),
    ),
    ("wit/fabric.wit", include_str!("../../wit/fabric.wit")),
    (
        "wit/python.wit",
        include_str!("../../guest-sdk/python/python.wit"),
    ),
    (
        "wit/deps/wasi-nn/wasi-nn.wit",
        include_str!("../../wit/deps/wasi-nn/wasi-nn.wit"),
    ),
];

/// The most files and bytes of Python sources one build bundles.
const MAX_FILES: usize = 10_000;
const MAX_BYTES: u64 = 256 << 20;

/// Where a Python application's dependencies come from.
#[derive(Args, Clone, Debug, Default)]
pub struct PythonArgs {
    /// For a Python application: a directory of pure-Python packages, or a
    /// virtualenv, to bundle (repeatable). Nothing else is bundled, and
    /// nothing is downloaded.
    #[arg(long = "python-path", value_name = "DIR")]
    pub python_path: Vec<PathBuf>,
}

/// Whether `path` names a Python application.
pub fn is_python(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "py")
}

/// Builds the Python application `app` (or finds its earlier build) and
/// returns the component's path.
pub fn build(app: &Path, deps: &PythonArgs) -> anyhow::Result<PathBuf> {
    let module = module_name(app)?;
    let app_dir = app
        .canonicalize()
        .with_context(|| format!("cannot read {}", app.display()))?
        .parent()
        .map(Path::to_path_buf)
        .context("the application has no directory")?;
    let deps = deps
        .python_path
        .iter()
        .map(|d| dependency_dir(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache = build_dir()?;
    let sdk = write_sdk(&cache)?;
    let mut inputs = Inputs::default();
    inputs.add(format!("componentize-py {COMPONENTIZE_PY}|module {module}|{MERGE}").as_bytes());
    inputs.add(sdk.file_name().unwrap().as_encoded_bytes());
    inputs.add(entry_module(&module).as_bytes());
    inputs.add_python_files(&app_dir, false)?;
    for d in &deps {
        inputs.add_python_files(d, true)?;
    }
    let out = cache.join(format!("{}.wasm", inputs.digest()));
    if out.exists() {
        return Ok(out);
    }
    check_componentize_py()?;
    componentize(&module, &inputs, &sdk, &cache, &out)?;
    Ok(out)
}

/// The module name of `app.py`: its stem, which must be a Python name.
fn module_name(app: &Path) -> anyhow::Result<String> {
    let stem = app
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the application's file name is not UTF-8")?;
    let valid = stem
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && stem.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !valid {
        bail!(
            "`{stem}` is not a Python module name: rename {}",
            app.display()
        );
    }
    if [
        "fabric",
        "fabric_entry",
        "wit_world",
        "componentize_py_types",
        "poll_loop",
    ]
    .contains(&stem)
    {
        bail!(
            "the module name `{stem}` is taken by the SDK: rename {}",
            app.display()
        );
    }
    Ok(stem.to_string())
}

/// A directory of packages as given, or a virtualenv's site-packages.
fn dependency_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot read the python path {}", dir.display()))?;
    if !dir.join("pyvenv.cfg").exists() {
        return Ok(dir);
    }
    let lib = std::fs::read_dir(dir.join("lib"))
        .with_context(|| format!("{} is a virtualenv without a lib directory", dir.display()))?;
    for entry in lib.flatten() {
        let site = entry.path().join("site-packages");
        if site.is_dir() {
            return Ok(site);
        }
    }
    bail!("{} is a virtualenv without site-packages", dir.display())
}

/// The user's cache directory for fabric (`$XDG_CACHE_HOME/wasmfabric` or
/// `~/.cache/wasmfabric`).
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set: no cache directory")?;
    Ok(base.join("wasmfabric"))
}

/// Where builds are kept: `~/.cache/wasmfabric/python`, when it is private
/// to this user (a component found there is run as it is found). Else a
/// fresh private temporary directory, which no later build looks in, with
/// a warning.
fn build_dir() -> anyhow::Result<PathBuf> {
    let kept = cache_dir().map(|d| d.join("python")).and_then(|d| {
        fabric_host::runtime::disk_cache::private_dir(&d)
            .map(|()| d)
            .map_err(anyhow::Error::msg)
    });
    match kept {
        Ok(dir) => Ok(dir),
        Err(e) => {
            eprintln!("warning: Python builds are not kept: {e:#}");
            let dir = std::env::temp_dir().join(format!("fabric-build-{:016x}", rand_u64()));
            fabric_host::runtime::disk_cache::private_dir(&dir).map_err(anyhow::Error::msg)?;
            Ok(dir)
        }
    }
}

/// Writes the embedded SDK and WIT under `cache` (once per SDK version)
/// and returns their directory.
fn write_sdk(cache: &Path) -> anyhow::Result<PathBuf> {
    let mut all = Vec::new();
    for (path, text) in SDK {
        all.extend_from_slice(path.as_bytes());
        all.push(0);
        all.extend_from_slice(text.as_bytes());
        all.push(0);
    }
    let digest = fabric_host::runtime::component::digest(&all);
    let dir = cache.join(format!("sdk-{}", &digest[..16]));
    if dir.is_dir() {
        return Ok(dir);
    }
    // Written aside and renamed into place whole: builds running at once
    // never see a half-written SDK.
    let tmp = cache.join(format!(".sdk-{:016x}", rand_u64()));
    let _cleanup = RemoveOnDrop(tmp.clone());
    for (path, text) in SDK {
        let file = tmp.join(path);
        std::fs::create_dir_all(file.parent().unwrap())?;
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    // An empty virtualenv, so componentize-py bundles no site-packages of
    // this machine.
    std::fs::create_dir_all(tmp.join("no-venv/lib/python3/site-packages"))?;
    if let Err(e) = std::fs::rename(&tmp, &dir)
        && !dir.is_dir()
    {
        return Err(e).with_context(|| format!("cannot write {}", dir.display()));
    }
    Ok(dir)
}

/// What goes into a build: digested, and copied into the build's own
/// directory, so componentize-py builds exactly what was digested and
/// writes nothing (such as `__pycache__`) into the user's directories.
#[derive(Default)]
struct Inputs {
    bytes: Vec<u8>,
    /// Per root (the application's directory, then each dependency
    /// directory): its files, by path within it.
    roots: Vec<Vec<(PathBuf, Vec<u8>)>>,
    files: usize,
    total: u64,
}

impl Inputs {
    fn add(&mut self, part: &[u8]) {
        self.bytes
            .extend_from_slice(&(part.len() as u64).to_le_bytes());
        self.bytes.extend_from_slice(part);
    }

    /// Adds the Python sources under `dir`: its `.py` files and its
    /// packages' (or, with `all`, every file), in a fixed order. Symbolic
    /// links to directories are not followed.
    fn add_python_files(&mut self, dir: &Path, all: bool) -> anyhow::Result<()> {
        self.roots.push(Vec::new());
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let d = dir.join(&rel);
            let mut entries: Vec<_> = std::fs::read_dir(&d)
                .with_context(|| format!("cannot read {}", d.display()))?
                .flatten()
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries.into_iter().rev() {
                let name = entry.file_name().to_string_lossy().to_string();
                if name.starts_with('.') || name == "__pycache__" {
                    continue;
                }
                let path = entry.path();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir {
                    if all || !rel.as_os_str().is_empty() || path.join("__init__.py").exists() {
                        stack.push(rel.join(&name));
                    }
                } else if path.is_file() && (all || name.ends_with(".py")) {
                    self.add_file(&path, rel.join(&name))?;
                }
            }
        }
        Ok(())
    }

    fn add_file(&mut self, path: &Path, rel: PathBuf) -> anyhow::Result<()> {
        self.files += 1;
        self.total += std::fs::metadata(path).map_or(0, |m| m.len());
        if self.files > MAX_FILES || self.total > MAX_BYTES {
            bail!(
                "more than {MAX_FILES} files or {} MiB of Python sources to bundle (at {}): \
                 move the application into a directory of its own",
                MAX_BYTES >> 20,
                path.display()
            );
        }
        let text =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        self.add(format!("{}|", self.roots.len()).as_bytes());
        self.add(rel.as_os_str().as_encoded_bytes());
        self.add(&text);
        self.roots.last_mut().expect("a root").push((rel, text));
        Ok(())
    }

    fn digest(&self) -> String {
        fabric_host::runtime::component::digest(&self.bytes)
    }

    /// Writes each root's files under `work/src<i>`; returns those paths.
    fn write_to(&self, work: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut dirs = Vec::with_capacity(self.roots.len());
        for (i, files) in self.roots.iter().enumerate() {
            let dir = work.join(format!("src{i}"));
            std::fs::create_dir_all(&dir)?;
            for (rel, text) in files {
                let file = dir.join(rel);
                std::fs::create_dir_all(file.parent().unwrap_or(&dir))?;
                std::fs::write(&file, text)?;
            }
            dirs.push(dir);
        }
        Ok(dirs)
    }
}

const INSTALL: &str = "pip install componentize-py==0.25.1";

/// componentize-py: its script on PATH, or its module in `python3` (a
/// `pip install --user` puts the script where PATH may not look).
fn componentize_py() -> Command {
    let on_path = Command::new("componentize-py")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if on_path {
        return Command::new("componentize-py");
    }
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import sys, componentize_py; sys.argv[0] = 'componentize-py'; sys.exit(componentize_py.script())",
    ]);
    cmd
}

/// Fails with how to install componentize-py when it is missing or another
/// version.
fn check_componentize_py() -> anyhow::Result<()> {
    let out = componentize_py().arg("--version").output();
    let version = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => bail!(
            "building a Python application needs componentize-py {COMPONENTIZE_PY}, which \
             is not installed (or not on PATH): install it with `{INSTALL}`"
        ),
    };
    if version != format!("componentize-py {COMPONENTIZE_PY}") {
        bail!(
            "found {version}, but the Python SDK is built for componentize-py \
             {COMPONENTIZE_PY}: install it with `{INSTALL}`"
        );
    }
    Ok(())
}

/// The entry module componentize-py builds from: it imports the
/// application, which registers its functions, classes and driver, and
/// exports the SDK's `Guest`.
///
/// `warm` then runs what a call does short of the host and the
/// application, so the snapshot holds it done (see `fabric._guest.warm`).
///
/// Everything alive once the application is imported goes into the
/// collector's permanent generation (`gc.freeze`): the snapshot holds it,
/// and a collection in an instance then never walks it, which would write
/// to (and so copy out of the shared image) every page of the snapshot's
/// heap.
///
/// Before that, `weakref.finalize` is swapped for the SDK's, which
/// componentize-py's runtime looks up right after this module is imported:
/// the host's resources are then dropped by their wrapper's `__del__`, not
/// by a `weakref.finalize` made for each handle (see `fabric._resources`).
fn entry_module(module: &str) -> String {
    format!(
        "# Generated by fabric.\n\
         import fabric._preload\n\
         import {module}\n\
         from fabric._guest import Guest, warm\n\
         warm()\n\
         import fabric._resources\n\
         fabric._resources.install()\n\
         import gc\n\
         gc.collect()\n\
         gc.freeze()\n"
    )
}

/// Runs componentize-py on the digested sources and `entry_module`.
fn componentize(
    module: &str,
    inputs: &Inputs,
    sdk: &Path,
    cache: &Path,
    out: &Path,
) -> anyhow::Result<()> {
    let work = cache.join(format!("build-{:016x}", rand_u64()));
    std::fs::create_dir_all(&work)?;
    let _cleanup = RemoveOnDrop(work.clone());
    let roots = inputs.write_to(&work)?;
    std::fs::write(work.join("fabric_entry.py"), entry_module(module))?;
    eprintln!("building {module}.py with componentize-py (about 10 s; kept for the next run)");
    let tmp = work.join("app.wasm");
    let mut cmd = componentize_py();
    cmd.env("VIRTUAL_ENV", sdk.join("no-venv"))
        .env_remove("PYTHONPATH")
        .arg("-q")
        .arg("-d")
        .arg(sdk.join("wit"))
        .args(["-w", "python-app", "componentize"])
        .arg("-p")
        .arg(&work)
        .arg("-p")
        .arg(sdk);
    for d in &roots {
        cmd.arg("-p").arg(d);
    }
    let output = cmd
        .arg("fabric_entry")
        .arg("-o")
        .arg(&tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .context("cannot run componentize-py")?;
    if !output.status.success() {
        bail!(
            "componentize-py could not build {module}.py:\n{}",
            python_error(&String::from_utf8_lossy(&output.stderr))
        );
    }
    merge_core_modules(&tmp)?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Names the merge in the build's digest, so a build from before it (or
/// from another version of it) is not reused.
const MERGE: &str = "core modules merged (4)";

/// Merges the component's dynamically linked core modules into one
/// (`flatten`): its instances then fill their function table lazily. A
/// component whose shape the merge does not understand is kept as it is,
/// with a warning: it runs the same, only its instantiation is slower.
fn merge_core_modules(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    match crate::flatten::flatten(&bytes) {
        Ok(Some(merged)) => {
            std::fs::write(path, merged).with_context(|| format!("cannot write {}", path.display()))
        }
        Ok(None) => Ok(()),
        Err(e) => {
            tracing::warn!("kept the component's core modules unmerged: {e:#}");
            Ok(())
        }
    }
}

/// The Python traceback in componentize-py's error output, without the
/// Rust backtrace that follows it.
fn python_error(stderr: &str) -> String {
    let end = stderr.find("\nStack backtrace:").unwrap_or(stderr.len());
    let text = stderr[..end].trim();
    text.lines()
        .filter(|l| !l.contains("/bin/componentize-py") && !l.contains("sys.exit(script())"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
