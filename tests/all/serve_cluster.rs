//! Serve on a cluster of real processes: `fabric serve --address HEAD`
//! joins a head (which runs nothing) and a worker as a node of its own, and
//! its replicas are placed where there is room: one on the serve node, one
//! on the worker. Requests go straight from the ingress to the replicas.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::python::python_app;
use crate::serve::{ECHO, Served, get, get_in_background, start_with};
use crate::support::procs::ProcCluster;
use crate::support::unique_temp_path;

const SPREAD: &str = r#"
[[deployment]]
name = "echo"
component = "COMPONENT"
class = "Echo"
route = "/echo"
replicas = 2
num_cpus = 1
max_ongoing_requests = 4
public = true
"#;

/// The nodes that answer `n` requests.
fn nodes_answering(s: &Served, n: usize) -> HashSet<String> {
    (0..n)
        .map(|_| {
            let (status, node) = get(s, "/echo/node", None);
            assert_eq!(status, 200, "{node}");
            node
        })
        .collect()
}

/// Under load from four clients, the worker holding one replica is killed:
/// only the requests that replica held fail (502, at most its
/// `max_ongoing_requests`), and the replica on the serve node answers the
/// rest. Then the head is killed: the route keeps answering, since no
/// request crosses the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_serves_through_a_node_kill_and_with_its_head_down() {
    let mut c = ProcCluster::start(env!("CARGO_BIN_EXE_fabric"), &["--num-cpus", "0"]);
    let worker = c.add(&["--num-cpus", "1"]);
    let wasm = python_app(ECHO).await;
    let dir = unique_temp_path("serve-cluster");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serve.toml");
    std::fs::write(&path, SPREAD.replace("COMPONENT", &wasm)).unwrap();
    let join = c.join_file();
    let head = c.head_address().to_string();
    let s = start_with(
        &path,
        &["--address", &head, "--join-file", &join, "--num-cpus", "1"],
    );
    let nodes = nodes_answering(&s, 30);
    assert_eq!(nodes.len(), 2, "a replica on each node: {nodes:?}");
    let worker_id = c.nodes[worker].id.clone();
    assert!(nodes.contains(&worker_id), "{nodes:?} {worker_id}");

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (format!("{}/echo/x", s.base), stop.clone());
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let path = std::path::Path::new("");
                    let none = crate::support::curl::Body::None;
                    let answer = crate::support::curl::request(path, "GET", &url, None, none);
                    answers.push((Instant::now(), answer.0));
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    c.kill(worker);
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    let answers: Vec<(Instant, u16)> = clients
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let failed: Vec<u16> = answers.iter().map(|a| a.1).filter(|&s| s != 200).collect();
    assert!(failed.iter().all(|&s| s == 502), "{failed:?}");
    assert!(
        failed.len() <= 4,
        "at most the requests it held: {failed:?}"
    );
    let before = answers.iter().filter(|a| a.0 < killed).count();
    assert!(before > 20, "{before} answered before the kill");
    // Once the lost replica's requests have failed, the serve node's
    // replica answers every request on its own.
    let last_failure = answers
        .iter()
        .filter(|a| a.1 != 200)
        .map(|a| a.0)
        .max()
        .unwrap_or(killed);
    let after = answers.iter().filter(|a| a.0 > last_failure).count();
    assert!(after > 20, "{after} answered after the last failure");
    eprintln!(
        "{} requests, {} failed with the worker",
        answers.len(),
        failed.len()
    );

    c.kill(0);
    std::thread::sleep(Duration::from_secs(1));
    let nodes = nodes_answering(&s, 20);
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert!(!nodes.contains(&worker_id));
}

const COMPOSED: &str = r#"
[[deployment]]
name = "echo"
component = "COMPONENT"
class = "Echo"
route = "/echo"
num_cpus = 0.25
public = true
user_config = { greeting = "hi" }

[[deployment]]
name = "narrow"
component = "COMPONENT"
class = "Echo"
route = "/narrow"
max_ongoing_requests = 1
max_queued_requests = 0
num_cpus = 0.25
public = true

[[deployment]]
name = "front"
component = "COMPONENT"
class = "Front"
route = "/front"
replicas = 2
max_ongoing_requests = 1
num_cpus = 0.25
public = true

[[deployment]]
name = "elsewhere"
tenant = "tenant-b"
component = "COMPONENT"
class = "Echo"
route = "/elsewhere"
num_cpus = 0.25
public = true
"#;

/// The serve node has no CPUs for replicas, so every replica runs on the
/// worker, and each handle's call asks the serve node (its job's driver)
/// for its place: handles are found from another node, in a constructor
/// and in a call, with the place given back after a stream and after a
/// crash, the queue bounding handle calls and requests alike, and another
/// tenant's deployment not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_reach_deployments_from_replicas_on_other_nodes() {
    let mut c = ProcCluster::start(env!("CARGO_BIN_EXE_fabric"), &["--num-cpus", "0"]);
    let worker = c.add(&["--num-cpus", "2"]);
    let wasm = python_app(ECHO).await;
    let dir = unique_temp_path("serve-cluster-handles");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serve.toml");
    std::fs::write(&path, COMPOSED.replace("COMPONENT", &wasm)).unwrap();
    let (join, head) = (c.join_file(), c.head_address().to_string());
    let s = start_with(
        &path,
        &["--address", &head, "--join-file", &join, "--num-cpus", "0"],
    );
    let worker_id = c.nodes[worker].id.clone();
    assert_eq!(get(&s, "/front/-node", None).1, worker_id);
    let (status, body) = get(&s, "/front/echo/node", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&worker_id), "{body}");
    let (status, body) = get(&s, "/front/echo/x", None);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json, serde_json::json!({"via": "front", "answer": "hi /x"}));
    let (status, body) = get(&s, "/front/-kept/echo/y", None);
    assert_eq!(status, 200, "the constructor's handle: {body}");
    assert!(body.contains("hi /y"), "{body}");

    // A stream from narrow (one place, no queue) gives its place back when
    // it ends: narrow answers a request after it.
    let (status, body) = get(&s, "/front/-stream/narrow", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello 2"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&s, "/narrow/after-stream", None).0 != 200 {
        assert!(Instant::now() < deadline, "the stream kept its place");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Backpressure: a slow call through a handle holds narrow's place, and
    // HTTP requests share its queue (none).
    let slow = get_in_background(&s, "/front/narrow/slow");
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&s, "/narrow/y", None).0 != 503 {
        assert!(Instant::now() < deadline, "the slow call took no place");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = get(&s, "/front/narrow/x", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("max-queued-requests"), "{body}");
    let (status, body) = slow.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(get(&s, "/front/narrow/x", None).1.contains("/x"));

    // A replica that crashes under a handle's call from another node is
    // replaced.
    let before = get(&s, "/echo/who", None).1;
    assert_eq!(get(&s, "/front/echo/crash", None).0, 502);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, who) = get(&s, "/echo/who", None);
        if status == 200 && who != before {
            break;
        }
        assert!(Instant::now() < deadline, "echo was never replaced");
        std::thread::sleep(Duration::from_millis(200));
    }

    let (status, body) = get(&s, "/front/elsewhere/x", None);
    assert_eq!(status, 404, "another tenant's deployment: {body}");
    assert_eq!(get(&s, "/elsewhere/x", None).0, 200);
}
