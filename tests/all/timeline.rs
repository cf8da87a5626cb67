//! A job's tasks as the nodes kept them, on a real 3-node cluster: `fabric
//! timeline` writes a Chrome trace with every node's task attempts and an
//! actor's calls (their times, bytes and outcomes); `fabric job tasks`
//! and the Jobs API's `/tasks` count them by state, list the failures with
//! their errors, and say when a node's bounds dropped some; a running task
//! shows as running, and as cancelled once its job is stopped; another
//! tenant sees none of it.

use serde_json::Value;

use crate::jobs_api::Api;
use crate::support::curl::Body;
use crate::support::procs::ProcCluster;
use crate::support::programs;

/// The trace's slices (and instants) of `name`, with their node's pid.
fn slices<'a>(trace: &'a Value, name: &str) -> Vec<&'a Value> {
    trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] != "M" && e["name"] == name)
        .collect()
}

/// The pid the trace gives node `short`.
fn pid_of(trace: &Value, short: &str) -> u64 {
    trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "process_name" && e["args"]["name"] == format!("node {short}"))
        .unwrap_or_else(|| panic!("no process for node {short}"))["pid"]
        .as_u64()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The newest job of `token`'s tenant, once the API lists it.
fn newest_job(api: &Api, token: &str) -> String {
    let jobs = api.json("GET", "/api/jobs", token, Body::None, 200);
    let last = jobs.as_array().unwrap().last().expect("a job");
    last["job_id"].as_str().unwrap().to_string()
}

fn start_cluster() -> (ProcCluster, Vec<String>) {
    let mut c = ProcCluster::start(
        env!("CARGO_BIN_EXE_fabric"),
        &["--num-cpus", "2", "--api-port", "0"],
    );
    c.add(&["--num-cpus", "2"]);
    // This node keeps at most 6 events per job: it drops some, and says so.
    let small = c.settings_file("events.toml", "[task-events]\nper-job = 6\n");
    c.add(&["--num-cpus", "2", "--config", &small]);
    c.wait_for_alive(3);
    let ids = c.nodes.iter().map(|n| n.id.clone()).collect();
    (c, ids)
}

#[test]
fn the_timeline_and_task_view_show_every_nodes_calls_to_their_tenant_only() {
    let (c, ids) = start_cluster();
    let api = Api::of(&c);
    let acme = c.add_tenant("acme", &[]);
    let mallory = c.add_tenant("mallory", &[]);
    let head = c.head_address().to_string();
    let mut args = vec![
        "submit",
        "--address",
        &head,
        programs::CLUSTER,
        "--",
        "timeline",
        "8",
    ];
    args.extend(ids.iter().map(String::as_str));
    let out = c.fabric_as(&acme, &args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("timeline: 24 tasks ran, 2 failed, 5 actor calls"));
    let job = newest_job(&api, &acme);

    let trace_file = c.dir.join("trace.json");
    let trace_path = trace_file.display().to_string();
    let out = c.fabric_as(
        &acme,
        &["timeline", &job, "-o", &trace_path, "--address", &head],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("dropped"),
        "the bounded node says so: {}",
        text(&out)
    );
    let trace: Value = serde_json::from_slice(&std::fs::read(&trace_file).unwrap()).unwrap();

    check_trace(&trace, &ids);

    // The same, counted: 28 tasks submitted from the driver's node.
    let out = c.fabric_as(&acme, &["job", "tasks", &job, "--address", &head]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("28 tasks submitted: 26 succeeded, 2 failed"),
        "{said}"
    );
    assert!(
        said.contains("odd_fails") && said.contains("is odd"),
        "{said}"
    );
    let view = api.json(
        "GET",
        &format!("/api/jobs/{job}/tasks"),
        &acme,
        Body::None,
        200,
    );
    let tasks = &view["tasks"];
    assert_eq!(tasks["tasks"]["failed"], 2);
    assert_eq!(tasks["tasks"]["ended"]["application_error"], 2);
    assert_eq!(tasks["calls"]["actor_calls"], 5);
    assert_eq!(tasks["truncated"], true);
    assert!(tasks["slowest"][0]["run_ms"].as_f64().unwrap() >= 20.0);

    // Another tenant: exactly as an unknown job.
    let out = c.fabric_as(
        &mallory,
        &["timeline", &job, "-o", &trace_path, "--address", &head],
    );
    assert!(
        !out.status.success() && text(&out).contains("no such job"),
        "{}",
        text(&out)
    );
    for path in ["tasks", "timeline"] {
        let (status, _) = api.call(
            "GET",
            &format!("/api/jobs/{job}/{path}"),
            Some(&mallory),
            Body::None,
        );
        assert_eq!(status, 404, "{path}");
    }
}

/// The trace of the `timeline 8` scenario on the 3 nodes `ids` (the last
/// keeping 6 events per job).
fn check_trace(trace: &Value, ids: &[String]) {
    // Each node's tasks are in its own process; the bounded one kept 6.
    let ran = slices(trace, "where_am_i");
    for (i, id) in ids.iter().enumerate() {
        let pid = pid_of(trace, &id[..8]);
        let here = ran.iter().filter(|e| e["pid"] == pid).count();
        let want = if i == 2 { 6 } else { 8 };
        assert_eq!(here, want, "node {i} ran 8 where_am_i (keeping {want})");
    }
    assert!(trace["otherData"]["dropped"].as_u64().unwrap() >= 2);
    for e in &ran {
        assert_eq!(e["ph"], "X");
        assert!(
            e["dur"].as_u64().unwrap() >= 20_000,
            "each slept 20 ms: {e}"
        );
        assert!(e["args"]["bytes_in"].as_u64().unwrap() > 0, "{e}");
        assert!(e["args"]["bytes_out"].as_u64().unwrap() > 0, "{e}");
        assert_eq!(e["args"]["outcome"], "succeeded");
    }
    let failed: Vec<_> = slices(trace, "odd_fails")
        .into_iter()
        .filter(|e| e["args"]["outcome"] == "application_error")
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(
        failed
            .iter()
            .all(|e| e["args"]["error"].as_str().unwrap().contains("is odd"))
    );
    let calls = slices(trace, "Tally.add");
    assert_eq!(calls.len(), 5, "every actor call");
    assert!(
        calls.iter().all(|e| e["tid"] == calls[0]["tid"]),
        "one lane: the actor's"
    );
    assert_eq!(slices(trace, "Tally.new").len(), 1, "its construction");
}

/// Polls job `job`'s task view until `ready` holds.
fn wait_for_view(api: &Api, token: &str, job: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let view = api.json(
            "GET",
            &format!("/api/jobs/{job}/tasks"),
            token,
            Body::None,
            200,
        );
        if ready(&view["tasks"]) {
            return view["tasks"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "never: {view}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The task runs on a worker: the worker lists it running, and records
/// its cancel when the job is stopped (the head, which sent it, does not).
#[test]
fn a_running_task_shows_as_running_then_cancelled_when_its_job_stops() {
    let mut c = ProcCluster::start(
        env!("CARGO_BIN_EXE_fabric"),
        &["--num-cpus", "2", "--api-port", "0"],
    );
    c.add(&["--num-cpus", "2"]);
    c.wait_for_alive(2);
    let worker = c.nodes[1].id.clone();
    let api = Api::of(&c);
    let acme = c.add_tenant("acme", &[]);
    let mut submit = c
        .command_as(&acme)
        .args(["submit", "--address", c.head_address(), programs::CLUSTER])
        .args(["--", "hold-task", &worker])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let job = loop {
        let jobs = api.json("GET", "/api/jobs", &acme, Body::None, 200);
        if let Some(j) = jobs.as_array().unwrap().first() {
            break j["job_id"].as_str().unwrap().to_string();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let running = wait_for_view(&api, &acme, &job, |t| t["tasks"]["running"] == 1);
    assert_eq!(running["tasks"]["pending"], 1);
    assert_eq!(running["slowest"][0]["outcome"], "running");
    assert_eq!(running["slowest"][0]["function"], "where_am_i");
    assert_eq!(running["slowest"][0]["node"], worker.as_str());
    api.json(
        "POST",
        &format!("/api/jobs/{job}/stop"),
        &acme,
        Body::None,
        200,
    );
    let stopped = wait_for_view(&api, &acme, &job, |t| t["tasks"]["ended"]["cancelled"] == 1);
    assert_eq!(stopped["tasks"]["running"], 0);
    let cancelled = &stopped["failures"][0];
    assert_eq!(cancelled["outcome"], "cancelled");
    assert!(
        cancelled["started_us"].as_u64().is_some(),
        "it had started: {cancelled}"
    );
    assert_eq!(cancelled["node"], worker.as_str(), "recorded where it ran");
    assert_eq!(stopped["calls"]["ended"], 1, "once: {stopped}");
    let _ = submit.wait();
}
