//! Builds every guest program (the examples and the test programs) as a
//! WebAssembly component and emits a path constant for each, as wasmtime's
//! test-programs crate does.
//!
//! The guests build in release mode with their own target directory
//! (`target/guests`): a nested cargo must not share the outer build's lock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let target_dir = root.join("target").join("guests");

    ensure_target();
    let mut out = String::new();
    for (group, dir) in [
        ("examples", root.join("examples")),
        ("programs", root.join("tests/programs")),
    ] {
        watch(&dir);
        let members = members(&dir);
        build(&dir, &target_dir);
        out.push_str(&format!(
            "/// Guest components under `{}`.\npub mod {group} {{\n",
            dir.strip_prefix(&root).unwrap().display()
        ));
        let mut all = Vec::new();
        for (package, wasm_name) in &members {
            let path = target_dir
                .join(TARGET)
                .join("release")
                .join(format!("{wasm_name}.wasm"));
            assert!(
                path.exists(),
                "guest {package} did not produce {}",
                path.display()
            );
            let konst = wasm_name.to_uppercase();
            out.push_str(&format!(
                "    pub const {konst}: &str = {:?};\n",
                path.display().to_string()
            ));
            all.push(format!("({package:?}, {konst})"));
        }
        out.push_str(&format!("    /// Every program: (package name, path).\n    pub const ALL: &[(&str, &str)] = &[{}];\n}}\n", all.join(", ")));
    }
    out.push_str(&wat_programs(&root, &target_dir.join("wat")));
    watch(&root.join("guest-sdk"));
    watch(&root.join("wit"));
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("artifacts.rs");
    std::fs::write(dest, out).unwrap();
}

/// Package names and their component file names, from each member's Cargo.toml.
fn members(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let manifest = path.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).unwrap();
        let name = text
            .lines()
            .find_map(|l| {
                let l = l.trim();
                l.strip_prefix("name")
                    .map(str::trim)
                    .and_then(|r| r.strip_prefix('='))
                    .map(|r| r.trim().trim_matches('"').to_string())
            })
            .unwrap_or_else(|| panic!("no package name in {}", manifest.display()));
        out.insert(name.clone(), name.replace('-', "_"));
    }
    out
}

/// Installs the wasm32-wasip2 standard library with rustup when it is
/// missing, so `cargo test` works on a fresh machine.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let installed = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|dir| dir.is_dir());
    if installed {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target: rustup target add {TARGET}");
    let ok = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        panic!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed; install it and retry"
        );
    }
}

fn build(dir: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--workspace")
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    // Flags meant for the host build (coverage, sanitizers) must not leak in.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo to build the guest programs");
    if !status.success() {
        panic!(
            "building the guests in {} failed; is the target installed? (`rustup target add {TARGET}`)",
            dir.display()
        );
    }
}

fn watch(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if name == "target" || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            watch(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// Wraps each core module in `tests/programs/wat` into a component of the
/// `fabric:core/app` world (for attacks Rust cannot express) and returns
/// the `wat` module of path constants.
fn wat_programs(root: &Path, out_dir: &Path) -> String {
    let dir = root.join("tests/programs/wat");
    watch(&dir);
    std::fs::create_dir_all(out_dir).unwrap();
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(root.join("wit")).expect("parsing wit/");
    let world = resolve
        .select_world(&[pkg], Some("app"))
        .expect("the app world");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wat"))
        .collect();
    files.sort();
    // A compile bomb: one function of a million instructions, generated
    // here rather than kept as a 10 MB file.
    let bomb = out_dir.join("compile-bomb.wat");
    std::fs::write(&bomb, compile_bomb(50_000)).unwrap();
    files.push(bomb);
    let mut out = String::from(
        "/// Attack guests written in WAT under `tests/programs/wat`.\npub mod wat {\n",
    );
    let mut all = Vec::new();
    for file in files {
        let stem = file
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .replace('-', "_");
        let mut module =
            wat::parse_file(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
            false,
        )
        .expect("embedding the world");
        let component = wit_component::ComponentEncoder::default()
            .module(&module)
            .and_then(|e| e.validate(true).encode())
            .unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
        let path = out_dir.join(format!("{stem}.wasm"));
        std::fs::write(&path, component).unwrap();
        let konst = stem.to_uppercase();
        out.push_str(&format!(
            "    pub const {konst}: &str = {:?};\n",
            path.display().to_string()
        ));
        all.push(format!(
            "({:?}, {konst})",
            file.file_name().unwrap().to_string_lossy()
        ));
    }
    out.push_str(&format!(
        "    /// Every program: (file name, path).\n    pub const ALL: &[(&str, &str)] = &[{}];\n}}\n",
        all.join(", ")
    ));
    out
}

/// The text of a valid app component's core module whose driver is one
/// function of `n` four-instruction steps: cheap to write, costly to compile.
fn compile_bomb(n: usize) -> String {
    let table_bomb = include_str!("../programs/wat/table-bomb.wat");
    let start = table_bomb.find("  ;; The driver").expect("driver marker");
    let end = table_bomb
        .find("  (func (export \"fabric:core/guest@0.1.0#dispatch\")")
        .expect("dispatch");
    // `n` values live at once, each computed from the argument (nothing
    // folds away), then summed: the register allocator's worst case.
    let mut body = String::with_capacity(n * 80);
    body.push_str(
        "  (func (export \"fabric:core/guest@0.1.0#main\") (param i32 i32) (result i32)\n",
    );
    for i in 0..n {
        body.push_str(&format!("    local.get 0 i32.const {i} i32.xor\n"));
    }
    for _ in 1..n {
        body.push_str("    i32.add\n");
    }
    // Returned, so no dead-code pass can drop the work.
    body.push_str("  )\n\n");
    format!("{}{}{}", &table_bomb[..start], body, &table_bomb[end..])
}
