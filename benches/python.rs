//! Python guests in the microbenchmark: Ray's task and actor-call shapes
//! written in Python (tests/programs/python/bench.py, built by `fabric
//! build` with componentize-py), against Ray's figures for the same Python
//! workloads, then the instantiation latency of a Python component and the
//! resident memory of idle Python actors.

use std::sync::Arc;
use std::time::Duration;

use fabric_host::runtime::engine::EngineSettings;
use fabric_host::{AppComponent, Node, NodeConfig};

use super::{Args, Figures, fmt_rate, loaded_node, mean_sd, mib, ops_secs};

/// Python rows: our name, Ray's row for the same Python workload, unit.
pub const PY_SUITE: &[(&str, &str, &str)] = &[
    (
        "python_single_client_tasks_sync",
        "single_client_tasks_sync",
        "tasks/s",
    ),
    (
        "python_single_client_tasks_async",
        "single_client_tasks_async",
        "tasks/s",
    ),
    (
        "python_1_1_actor_calls_sync",
        "1_1_actor_calls_sync",
        "calls/s",
    ),
    (
        "python_1_1_actor_calls_async",
        "1_1_actor_calls_async",
        "calls/s",
    ),
];

/// The Python benchmark component, built by `fabric build`; `None` (with a
/// note) when it cannot be built, e.g. without componentize-py
/// (`pip install componentize-py==0.25.1`). `FABRIC_BENCH_PYTHON_WASM`
/// names another build of it instead (to compare two builds in one binary,
/// e.g. one built before the core modules were merged).
pub fn python_bench() -> Option<Vec<u8>> {
    if let Some(path) = std::env::var_os("FABRIC_BENCH_PYTHON_WASM") {
        return Some(std::fs::read(&path).expect("FABRIC_BENCH_PYTHON_WASM names a component"));
    }
    let root = std::path::Path::new(super::support::REPO_ROOT);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fabric"))
        .current_dir(root)
        .env("XDG_CACHE_HOME", super::support::cache_dir())
        .args(["build", "tests/programs/python/bench.py"])
        .output()
        .expect("run fabric build");
    if !out.status.success() {
        println!(
            "  (Python rows skipped: fabric build tests/programs/python/bench.py failed: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    let path = String::from_utf8(out.stdout).unwrap();
    Some(std::fs::read(path.trim()).expect("the built component"))
}

fn wanted(args: &Args, name: &str) -> bool {
    args.only
        .as_ref()
        .is_none_or(|o| o.iter().any(|x| x == name))
}

/// Runs `name` with `reps` on the Python component; (ops, seconds).
async fn timed(node: &Node, app: &Arc<AppComponent>, name: &str, reps: usize) -> (f64, f64) {
    let lines = super::run(node, app, &[name.to_string(), reps.to_string()]).await;
    ops_secs(
        &lines
            .find(&format!("{name} "))
            .unwrap_or_else(|| panic!("{name}: no result")),
    )
}

/// The shortest run of a Python row. Half a second (the suite's default)
/// is one job of 1,000 Python tasks, whose first tasks fill fresh pool
/// slots page by page: measured, the async task row read 1,600 to 2,500
/// tasks/s in such runs and 3,640 in a 6 s run. Ray's `timeit` warms up
/// for 1 s, then times four runs of at least 2 s each.
const PY_MIN_RUN_SECONDS: f64 = 3.0;

/// Ray's Python shapes on `node` (the suite's node), each against Ray's
/// figure for the same workload.
pub async fn python_suite(node: &Node, args: &Args, figures: &mut Figures) {
    if !PY_SUITE.iter().any(|(n, _, _)| wanted(args, n)) {
        return;
    }
    let Some(wasm) = python_bench() else { return };
    let app = node.load(&wasm).await.expect("load");
    for (name, ray_row, unit) in PY_SUITE {
        if !wanted(args, name) {
            continue;
        }
        let ray = super::RAY_SUITE
            .iter()
            .find(|(n, _, _)| n == ray_row)
            .map_or(f64::NAN, |r| r.1);
        let (_, secs) = timed(node, &app, name, 1).await;
        let per_rep = secs.max(1e-7);
        let run_seconds = args.run_seconds.max(PY_MIN_RUN_SECONDS);
        let reps = ((run_seconds / per_rep) as usize).clamp(1, 1_000_000);
        let mut rates = Vec::new();
        for _ in 0..args.runs {
            let (ops, secs) = timed(node, &app, name, reps).await;
            rates.push(ops / secs);
        }
        let (m, sd) = mean_sd(&rates);
        println!(
            "{:<46} {:>22} {:>10} {:>8.1}x  {unit}",
            name,
            format!("{} ± {}", fmt_rate(m), fmt_rate(sd)),
            fmt_rate(ray),
            m / ray
        );
        figures.put(name, m, sd, unit);
    }
}

/// Instantiation latency of the Python component, and the resident memory
/// of `n` idle Python actors on a node of their own.
pub async fn python_scale(args: &Args, figures: &mut Figures) {
    if !wanted(args, "python_instantiate") && !wanted(args, "python_idle_actors") {
        return;
    }
    let Some(wasm) = python_bench() else { return };
    if wanted(args, "python_instantiate") {
        let (node, app) = loaded_node(NodeConfig::default(), &wasm).await;
        let mut lat: Vec<f64> = node
            .measure_instantiate(app, 2_000)
            .await
            .expect("instantiate")
            .iter()
            .map(|d| d.as_secs_f64() * 1e6)
            .collect();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (p50, p99) = (lat[lat.len() / 2], lat[lat.len() * 99 / 100]);
        println!(
            "{:<46} p50 {p50:.1} us, p99 {p99:.1} us   goal: at most 1 ms",
            "python instantiate latency"
        );
        figures.put("python_instantiate_p50_us", p50, 0.0, "us");
        figures.put("python_instantiate_p99_us", p99, 0.0, "us");
    }
    if wanted(args, "python_idle_actors") {
        idle_actors(&wasm, 200, figures).await;
    }
}

async fn idle_actors(wasm: &[u8], n: usize, figures: &mut Figures) {
    let (node, app) = loaded_node(
        NodeConfig {
            engine: EngineSettings {
                max_instances: n as u32 + 16,
                ..EngineSettings::default()
            },
            ..NodeConfig::default()
        },
        wasm,
    )
    .await;
    let args = vec!["python_idle_actors".into(), n.to_string(), "3".into()];
    let held = super::held_when_ready(&node, &app, args, Duration::from_secs(600)).await;
    held.outcome.result.expect("idle actors");
    assert!(held.ready, "the idle actors never came up");
    let (created, secs) = ops_secs(&held.lines.find("python_idle_actors ").unwrap());
    let per_actor = held.grown as f64 / n as f64;
    let physical = held.pss_grown as f64 / n as f64;
    println!(
        "{:<46} {:>22}   goal: at most 4 MiB each; Ray: 77.6 MiB each",
        format!("{n} idle Python actors on one node"),
        format!(
            "{:.0} actors/s, {:.2} MiB each (PSS; VmRSS counts the shared image in each: {:.2} MiB)",
            created / secs,
            mib(physical as u64),
            mib(per_actor as u64)
        )
    );
    figures.put("python_idle_actors_per_s", created / secs, 0.0, "actors/s");
    figures.put(
        "python_idle_actor_pss_mib",
        mib(physical as u64),
        0.0,
        "MiB",
    );
    figures.put(
        "python_idle_actor_rss_mib",
        mib(per_actor as u64),
        0.0,
        "MiB",
    );
}
