//! Prometheus metrics of real `fabric` processes, scraped with curl: the
//! head serves them over HTTPS to holders of the scrape token only, a
//! worker started with `--metrics-insecure` over plain HTTP; the counters
//! move with the jobs that run, the text parses as Prometheus text, and
//! every metric the shipped Grafana dashboard queries is in a live scrape.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::procs::ProcCluster;
use crate::support::{REPO_ROOT, programs};

/// Where node `i` serves its metrics (it records the URL at start).
fn metrics_url(c: &ProcCluster, i: usize) -> String {
    let pid = c.nodes[i].child.id();
    let path = c.dir.join(format!("node{i}/metrics/{pid}"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// GETs `url` with curl: (HTTP status, body).
fn curl(c: &ProcCluster, url: &str, token: Option<&str>) -> (u16, String) {
    let ca = c.dir.join("node0/security/ca.crt");
    crate::support::curl::request(&ca, "GET", url, token, crate::support::curl::Body::None)
}

/// Checks `text` line by line against the Prometheus text format (0.0.4):
/// comments are HELP or TYPE, every sample is `name{labels} value` of a
/// family whose TYPE came before it. Returns the families' types.
fn check_format(text: &str) -> BTreeMap<String, String> {
    let mut types = BTreeMap::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(valid_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "declared twice: {line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(valid_name(rest.split(' ').next().unwrap()), "{line}");
            continue;
        }
        assert!(
            !line.starts_with('#'),
            "a comment that is neither HELP nor TYPE: {line}"
        );
        let (series, value) = line.rsplit_once(' ').expect(line);
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "{line}"
        );
        let name = series.split('{').next().unwrap();
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "a sample before its TYPE: {line}"
        );
    }
    types
}

/// One scrape, checked and parsed.
struct Scrape {
    types: BTreeMap<String, String>,
    parsed: prometheus_parse::Scrape,
}

fn scrape(c: &ProcCluster, url: &str, token: Option<&str>) -> Scrape {
    let (status, body) = curl(c, url, token);
    assert_eq!(status, 200, "{url}: {body}");
    let types = check_format(&body);
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("parses as Prometheus text");
    Scrape { types, parsed }
}

impl Scrape {
    /// The sum of `name`'s samples whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.parsed
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(b) => {
                    b.iter().map(|h| h.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            })
            .sum()
    }

    /// The families this scrape declares, as queries name them (a
    /// histogram also by its `_bucket`, `_sum` and `_count` series).
    fn names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (name, kind) in &self.types {
            names.insert(name.clone());
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
        }
        names
    }
}

/// The metric names a Grafana dashboard's queries use.
fn dashboard_metrics(path: &Path) -> BTreeSet<String> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in json["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for v in json["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    let mut names = BTreeSet::new();
    for e in exprs {
        let mut word = String::new();
        for ch in e.chars().chain(std::iter::once(' ')) {
            if ch.is_ascii_alphanumeric() || ch == '_' {
                word.push(ch);
            } else {
                if word.starts_with("fabric_") {
                    names.insert(word.clone());
                }
                word.clear();
            }
        }
    }
    names
}

/// Without the token, or with another (the admin's), the head says 401
/// and shows nothing; plain HTTP to its TLS port gets no answer.
fn assert_only_the_token_holder_scrapes(c: &ProcCluster, head: &str, token: &str) {
    for t in [None, Some(c.admin_token()), Some(format!("{token}x"))] {
        let (status, body) = curl(c, head, t.as_deref());
        assert_eq!(status, 401, "{t:?}: {body}");
        assert!(!body.contains("fabric_"), "{body}");
    }
    let plain = head.replace("https://", "http://");
    assert_ne!(curl(c, &plain, Some(token)).0, 200);
    let (status, _) = curl(c, &head.replace("/metrics", "/other"), Some(token));
    assert_eq!(status, 404);
}

/// Every metric the dashboard queries is in a live scrape.
fn assert_the_dashboard_is_served(scrapes: &[Scrape]) {
    let live: BTreeSet<String> = scrapes.iter().flat_map(|s| s.names()).collect();
    let wanted = dashboard_metrics(&Path::new(REPO_ROOT).join("deploy/grafana/wasmfabric.json"));
    assert!(wanted.len() >= 20, "{wanted:?}");
    let missing: Vec<_> = wanted.difference(&live).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics no node serves: {missing:?}"
    );
}

#[test]
fn metrics_are_served_to_the_token_holder_move_with_jobs_and_cover_the_dashboard() {
    let mut c = ProcCluster::start(
        env!("CARGO_BIN_EXE_fabric"),
        &["--num-cpus", "2", "--metrics-port", "0"],
    );
    c.add(&[
        "--num-cpus",
        "2",
        "--metrics-port",
        "0",
        "--metrics-insecure",
    ]);
    let (head, worker) = (metrics_url(&c, 0), metrics_url(&c, 1));
    assert!(head.starts_with("https://"), "{head}");
    assert!(worker.starts_with("http://"), "{worker}");
    let token = std::fs::read_to_string(c.dir.join("node0/security/metrics.token")).unwrap();

    assert_only_the_token_holder_scrapes(&c, &head, &token);

    let before = [scrape(&c, &head, Some(&token)), scrape(&c, &worker, None)];
    let submitted = |s: &[Scrape; 2]| {
        s.iter()
            .map(|x| x.sum("fabric_tasks_submitted_total", &[]))
            .sum::<f64>()
    };
    let worker_id = c.nodes[1].id.clone();
    for (program, args) in [
        (programs::CLUSTER, vec!["fan-out", "200"]),
        (programs::CLUSTER, vec!["object-across", worker_id.as_str()]),
        (programs::TASKS, vec!["panic"]),
        (programs::TASKS, vec!["app-error"]),
    ] {
        let (out, err, ok) = c.submit(program, &args);
        assert!(ok, "{args:?}: {out}{err}");
    }
    let after = [scrape(&c, &head, Some(&token)), scrape(&c, &worker, None)];

    assert!(submitted(&after) - submitted(&before) >= 202.0);
    let ended = |s: &[Scrape; 2], outcome: &str| {
        s.iter()
            .map(|x| x.sum("fabric_tasks_finished_total", &[("outcome", outcome)]))
            .sum::<f64>()
    };
    assert!(ended(&after, "succeeded") - ended(&before, "succeeded") >= 201.0);
    assert!(ended(&after, "panic") - ended(&before, "panic") >= 1.0);
    assert!(ended(&after, "application_error") - ended(&before, "application_error") >= 1.0);
    // The 3 MiB object went from the head to the worker.
    let moved =
        |s: &Scrape, d: &str| s.sum("fabric_object_transfer_bytes_total", &[("direction", d)]);
    assert!(moved(&after[0], "sent") - moved(&before[0], "sent") >= (3 << 20) as f64);
    assert!(moved(&after[1], "received") - moved(&before[1], "received") >= (3 << 20) as f64);
    // Both nodes ran tasks, for some CPU time, and served peers' messages.
    for (b, a) in before.iter().zip(&after) {
        assert!(a.sum("fabric_task_runs_total", &[]) > b.sum("fabric_task_runs_total", &[]));
        assert!(a.sum("fabric_tenant_cpu_seconds_total", &[]) > 0.0);
        assert!(
            a.sum("fabric_peer_message_duration_seconds", &[])
                > b.sum("fabric_peer_message_duration_seconds", &[])
        );
    }
    // The head's records: two nodes alive, the jobs it ran.
    assert_eq!(
        after[0].sum("fabric_cluster_nodes", &[("state", "alive")]),
        2.0
    );
    assert_eq!(
        after[0].sum("fabric_cluster_jobs", &[("status", "succeeded")]),
        4.0
    );
    assert!(
        after[0].sum(
            "fabric_rpc_server_duration_seconds",
            &[("method", "/fabric.v1.Control/SubmitJob")]
        ) >= 4.0
    );
    assert!(after[0].sum("fabric_node_resident_memory_bytes", &[]) > 0.0);

    assert_the_dashboard_is_served(&after);
}

/// Between `fabric` processes on one machine a large object goes over the
/// holder's local socket, every byte in its place; to a node started with
/// `--no-local-transfers` it goes over TLS; and a small one always does.
#[test]
fn large_objects_to_a_node_on_this_machine_go_over_its_local_socket() {
    let worker = [
        "--num-cpus",
        "2",
        "--metrics-port",
        "0",
        "--metrics-insecure",
    ];
    let mut c = ProcCluster::start(env!("CARGO_BIN_EXE_fabric"), &["--num-cpus", "2"]);
    c.add(&worker);
    c.add(&[&worker[..], &["--no-local-transfers"]].concat());
    let received = |i: usize, channel: &str| {
        scrape(&c, &metrics_url(&c, i), None).sum(
            "fabric_object_transfer_bytes_total",
            &[("direction", "received"), ("channel", channel)],
        )
    };
    let mib = 24u64;
    for (i, channel, other) in [(1, "local", "tls"), (2, "tls", "local")] {
        let node = c.nodes[i].id.clone();
        let before = (received(i, channel), received(i, other));
        let (out, err, ok) = c.submit(
            programs::CLUSTER,
            &["object-pattern", &node, &mib.to_string()],
        );
        assert!(ok, "{out}{err}");
        assert_eq!(
            out,
            format!(
                "read on {node}: {} bytes, digest matches: true\n",
                mib << 20
            )
        );
        assert!(
            received(i, channel) - before.0 >= (mib << 20) as f64,
            "node {i} took the object over {other}"
        );
        assert_eq!(received(i, other), before.1, "node {i} used {other}");
    }
    // The head's socket goes (as it would in another mount namespace): the
    // value still arrives, over TLS.
    let head_pid = c.nodes[0].child.id().to_string();
    let head_dir = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("wasmfabric-"))
                && std::fs::read_to_string(p.join("pid")).is_ok_and(|owner| {
                    // "PID pid:[NAMESPACE]"
                    owner.split_whitespace().next() == Some(head_pid.as_str())
                })
        })
        .expect("the head's socket directory");
    std::fs::remove_file(head_dir.join("objects.sock")).unwrap();
    let node = c.nodes[1].id.clone();
    let before = received(1, "tls");
    let (out, err, ok) = c.submit(programs::CLUSTER, &["object-pattern", &node, "8"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out,
        format!("read on {node}: {} bytes, digest matches: true\n", 8 << 20)
    );
    assert!(received(1, "tls") - before >= (8 << 20) as f64);

    // A 3 MiB object is below the local socket's threshold.
    let before = received(1, "tls");
    let (out, err, ok) = c.submit(programs::CLUSTER, &["object-across", &node]);
    assert!(ok, "{out}{err}");
    assert!(received(1, "tls") - before >= (3 << 20) as f64);
}
