//! The `fabric` binary: output, exit status, and a clear error (with a hint,
//! never a panic) for every kind of bad input.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{examples, programs};

fn fabric(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fabric"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("running fabric")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A scratch file with `bytes` in it.
fn scratch(bytes: &[u8]) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "fabric-cli-{}-{}.wasm",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Exit status 2 and an error on stderr that contains each of `needles`.
fn assert_refused(out: &Output, needles: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

#[test]
fn run_prints_driver_lines_plain_and_actor_lines_prefixed() {
    let out = fabric(&["run", examples::PRODUCER_CONSUMER, "--num-cpus", "2"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("(Consumer actor=") && l.ends_with(") consumed message-3")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("producer sent 5")),
        "{stdout}"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = fabric(&["run", "/no/such/app.wasm"]);
    assert_refused(
        &out,
        &[
            "error: cannot read /no/such/app.wasm",
            "No such file",
            "hint:",
        ],
    );
}

#[test]
fn bytes_that_are_not_wasm_are_a_clear_error() {
    let path = scratch(b"#!/bin/sh\necho not wasm\n");
    let out = fabric(&["run", path.to_str().unwrap()]);
    assert_refused(&out, &["not WebAssembly", "hint:"]);
}

#[test]
fn a_core_module_is_a_clear_error() {
    // The smallest valid core module: magic and version 1.
    let path = scratch(b"\0asm\x01\0\0\0");
    let out = fabric(&["run", path.to_str().unwrap()]);
    assert_refused(
        &out,
        &["core WebAssembly module, not a component", "wasm32-wasip2"],
    );
}

#[test]
fn a_corrupt_component_is_a_clear_error() {
    let mut bytes = std::fs::read(examples::ADD).unwrap();
    bytes.truncate(bytes.len() / 2);
    let path = scratch(&bytes);
    let out = fabric(&["run", path.to_str().unwrap()]);
    assert_refused(&out, &["invalid or could not be compiled"]);
}

#[test]
fn a_component_of_another_world_is_a_clear_error() {
    let out = fabric(&["run", programs::NOT_FABRIC]);
    assert_refused(
        &out,
        &[
            "does not implement the `fabric:core/app` world",
            "fabric:core/guest",
            "#[fabric::main]",
        ],
    );
}

#[test]
fn calling_a_function_the_component_does_not_export_is_a_clear_error() {
    let out = fabric(&["run", programs::TASKS, "--call", "no_such_function"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no remote function named `no_such_function`"),
        "{err}"
    );
    assert!(err.contains("hint: check the function name"), "{err}");
}

#[test]
fn call_runs_one_remote_function_with_json_arguments() {
    let out = fabric(&["run", programs::TASKS, "--call", "combine", "--", "3", "4"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "304\n");
    let out = fabric(&[
        "run",
        programs::TASKS,
        "--call",
        "combine",
        "--",
        "3",
        "{oops",
    ]);
    assert_refused(&out, &["argument 1 is not JSON"]);
}

#[test]
fn a_failing_driver_exits_with_status_one() {
    let out = fabric(&["run", programs::TASKS, "--", "no-such-scenario"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: the job failed")
            && err.contains("unknown scenario `no-such-scenario`"),
        "{err}"
    );
}

#[test]
fn bad_flags_are_rejected_before_anything_runs() {
    let out = fabric(&["run", examples::ADD, "--resources", "ssd"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("expected `name=amount`"), "{err}");
    let out = fabric(&["run", examples::ADD, "--num-cpus=-3"]);
    assert_refused(
        &out,
        &[
            "cannot start the node",
            "`CPU` must be a finite amount >= 0",
        ],
    );
}

/// The README's first command: `fabric run` on a Cargo project builds it for
/// wasm32-wasip2 and runs the component.
#[test]
fn run_builds_a_cargo_project_directory_first() {
    let project = format!("{}/examples/add", crate::support::REPO_ROOT);
    let out = fabric(&["run", &project, "--num-cpus", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "3\n");
    // A library crate builds, but into no component.
    let out = fabric(&[
        "run",
        &format!(
            "{}/guest-sdk/macros/../Cargo.toml",
            crate::support::REPO_ROOT
        ),
    ]);
    assert_refused(&out, &["produced no component", "cdylib"]);
}

#[test]
fn an_infeasible_request_fails_fast_with_a_hint() {
    let out = fabric(&["run", examples::GPU, "--num-gpus", "0"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the driver returned an error: resources infeasible"),
        "{err}"
    );
    assert!(err.contains("GPU: 1 (node has 0)"), "{err}");
    assert!(
        err.contains("hint: give the node more with --num-cpus, --num-gpus or --resources"),
        "{err}"
    );
    let out = fabric(&["run", examples::GPU, "--num-gpus", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "task ran with GPU ids [0]\n");
}

/// A manifest file with `text` in it.
fn manifest(text: &str) -> PathBuf {
    let path = scratch(b"");
    let path = path.with_extension("toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_manifest_grants_capabilities_and_a_bad_one_is_refused_before_running() {
    // Without a manifest the guest sees no environment.
    let out = fabric(&["run", programs::HOSTILE, "--", "env"]);
    assert_eq!(
        text(&out.stdout),
        "task sees env []\ndriver sees env []\n",
        "{}",
        text(&out.stderr)
    );
    // A manifest grants one variable.
    let m = manifest("[capabilities]\nenv = { MODE = \"cli\" }\n");
    let out = fabric(&[
        "run",
        "--manifest",
        m.to_str().unwrap(),
        programs::HOSTILE,
        "--",
        "env",
    ]);
    assert_eq!(
        text(&out.stdout),
        "task sees env [\"MODE\"]\ndriver sees env [\"MODE\"]\n"
    );
    // A typo is an error naming the key, before anything runs.
    let bad = manifest("[limits]\nmemroy = \"1 GiB\"\n");
    let out = fabric(&[
        "run",
        "--manifest",
        bad.to_str().unwrap(),
        programs::HOSTILE,
        "--",
        "env",
    ]);
    assert_refused(&out, &["invalid job manifest", "memroy"]);
    // A limit from the manifest reaches the guest's calls.
    let tight = manifest("[limits]\nwall-time = \"1s\"\n");
    let out = fabric(&[
        "run",
        "--manifest",
        tight.to_str().unwrap(),
        programs::HOSTILE,
        "--",
        "sleep-forever",
    ]);
    assert_eq!(text(&out.stdout), "nap: limit-exceeded wall-time 1000\n");
}

/// A job asking for 1 GiB of memory on a node run with the settings file
/// `config` fails, naming the operator's cap.
fn assert_a_1_gib_manifest_is_above_the_cap(config: &std::path::Path) {
    let greedy = manifest("[limits]\nmemory = \"1 GiB\"\n");
    let out = fabric(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--manifest",
        greedy.to_str().unwrap(),
        programs::HOSTILE,
        "--",
        "env",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("above the operator's cap"), "{err}");
}

#[test]
fn node_settings_files_reject_unknown_keys_and_cap_manifests() {
    let settings = manifest("[max-limits]\nmemory = \"128 MiB\"\n");
    assert_a_1_gib_manifest_is_above_the_cap(&settings);
    let typo = manifest("[limitz]\n");
    let out = fabric(&["run", "--config", typo.to_str().unwrap(), programs::HOSTILE]);
    assert_refused(&out, &["invalid node settings", "limitz"]);
}

#[test]
fn node_settings_size_the_instance_pool() {
    // A small, dense pool still runs jobs; a job's memory limit follows it.
    let dense = manifest("[instances]\nmax = 64\nmax-memory = \"64 MiB\"\n");
    let out = fabric(&["run", "--config", dense.to_str().unwrap(), examples::ADD]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_a_1_gib_manifest_is_above_the_cap(&dense);
    let tiny = manifest("[instances]\nmax-memory = \"1 KiB\"\n");
    let out = fabric(&["run", "--config", tiny.to_str().unwrap(), examples::ADD]);
    assert_refused(&out, &["max-memory must be between"]);
}

/// Chaos, memory pressure, with a real node process: a store filled three
/// times over spills to the given directory, every read is right, and the
/// files are gone once the job's objects are; with `--no-spill` the same
/// job fails with the store's limit.
#[test]
fn a_node_spills_what_does_not_fit_and_cleans_up() {
    // 24 objects of 1 MiB on an 8 MiB store, with `spill` flags.
    let overfill = |spill: &[&str]| {
        let mut args = vec!["run", "--object-store-memory", "8388608"];
        args.extend_from_slice(spill);
        args.extend_from_slice(&[programs::TASKS, "--", "overfill", "24"]);
        fabric(&args)
    };
    let dir = crate::support::unique_temp_path("cli-spill");
    let out = overfill(&["--spill-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("overfill 24 correct 24"),
        "{}",
        text(&out.stdout)
    );
    let left = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "spill files left in {}", dir.display());
    let _ = std::fs::remove_dir_all(&dir);
    let out = overfill(&["--no-spill"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not fit"),
        "{}",
        text(&out.stderr)
    );
}

/// On a terminal (a pseudo-terminal made by `script`), `fabric run` shows
/// the job's progress on one line it redraws and clears, apart from the
/// job's output; piped, it shows none.
#[test]
fn run_shows_progress_on_a_terminal_only() {
    let bin = env!("CARGO_BIN_EXE_fabric");
    let cmd = format!("{bin} run {} --num-cpus 5", examples::SQUARES);
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("RUST_LOG")
        .output()
        .expect("script (util-linux) makes the terminal");
    let seen = text(&out.stdout);
    assert!(out.status.success(), "{seen}");
    // The first wave of five runs while the second waits.
    assert!(
        seen.contains("tasks: 5 finished, 5 pending, 0 failed"),
        "{seen:?}"
    );
    // The job's own line comes whole, right after the progress line was
    // cleared (erase-line), and the progress is cleared at the end.
    assert!(
        seen.contains("\x1b[2K[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\r\n"),
        "{seen:?}"
    );
    assert!(seen.ends_with("\r\x1b[2K"), "{seen:?}");
    let piped = fabric(&["run", examples::SQUARES, "--num-cpus", "5"]);
    assert!(piped.status.success());
    assert!(
        !text(&piped.stderr).contains("tasks:"),
        "{}",
        text(&piped.stderr)
    );
    assert_eq!(
        text(&piped.stdout),
        "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n"
    );
}
