//! `fabric run DIR` / `fabric run app.py`: build a Cargo project or a
//! Python application as a component, then run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

const TARGET: &str = "wasm32-wasip2";

/// The component to run: `path` itself, or (for a Cargo project directory
/// or manifest) the component that building it in release mode produces,
/// or (for a `.py` file) the component componentize-py builds from it.
pub fn component_path(path: &Path, python: &crate::python::PythonArgs) -> anyhow::Result<PathBuf> {
    if crate::python::is_python(path) {
        return crate::python::build(path, python);
    }
    let manifest = if path.is_dir() {
        path.join("Cargo.toml")
    } else if path.file_name().is_some_and(|n| n == "Cargo.toml") {
        path.to_path_buf()
    } else {
        return Ok(path.to_path_buf());
    };
    if !manifest.exists() {
        bail!("{} is a directory without a Cargo.toml", path.display());
    }
    ensure_target()?;
    build(&manifest)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Installs the wasm32-wasip2 standard library with rustup if it is missing.
fn ensure_target() -> anyhow::Result<()> {
    let libdir = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .context("cannot run rustc")?;
    let dir = PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim());
    if libdir.status.success() && dir.is_dir() {
        return Ok(());
    }
    eprintln!("installing the {TARGET} target (rustup target add {TARGET})");
    let ok = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("the {TARGET} target is missing and `rustup target add {TARGET}` failed");
    }
    Ok(())
}

/// Builds the package of `manifest` and returns the one `.wasm` it produced.
fn build(manifest: &Path) -> anyhow::Result<PathBuf> {
    eprintln!("building {} for {TARGET}", manifest.display());
    let out = Command::new(cargo())
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(manifest)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!(
            "building {} failed (see the compiler output above)",
            manifest.display()
        );
    }
    let mut wasm = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        for f in msg["filenames"].as_array().into_iter().flatten() {
            if let Some(f) = f.as_str().filter(|f| f.ends_with(".wasm")) {
                wasm.push(PathBuf::from(f));
            }
        }
    }
    match wasm.len() {
        1 => Ok(wasm.remove(0)),
        0 => bail!(
            "building {} produced no component; make it a `cdylib` crate",
            manifest.display()
        ),
        _ => bail!(
            "building {} produced several components: {wasm:?}; pass the one to run",
            manifest.display()
        ),
    }
}

/// The job's other components, named in its manifest's `[components]`
/// (paths relative to the manifest's directory), each built first when it
/// is a Cargo project or a Python file: (name, component bytes).
pub fn manifest_components(
    manifest: Option<&Path>,
    text: &str,
    python: &crate::python::PythonArgs,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let Some(manifest) = manifest else {
        return Ok(Vec::new());
    };
    let parsed = fabric_host::manifest::JobManifest::parse(text)?;
    let base = manifest.parent().unwrap_or(Path::new("."));
    let mut out = Vec::with_capacity(parsed.components.len());
    for (name, path) in &parsed.components {
        let path = base.join(path);
        let built = component_path(&path, python)
            .with_context(|| format!("building component `{name}` ({})", path.display()))?;
        let bytes = std::fs::read(&built)
            .with_context(|| format!("cannot read component `{name}` ({})", built.display()))?;
        out.push((name.clone(), bytes));
    }
    Ok(out)
}
