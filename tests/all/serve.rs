//! Serve: a real `fabric serve` process, its replicas Python actors built
//! from the SDK, answering a real HTTP client (curl).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::python::python_app;
use crate::support::curl::{self, Body};
use crate::support::unique_temp_path;

pub(crate) const ECHO: &str = "tests/programs/python/serve_echo.py";

/// A `fabric serve` process, killed when dropped.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) base: String,
    /// Its configuration file.
    pub(crate) config: std::path::PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `fabric serve` on `config` (TOML; `COMPONENT` stands for the
/// built echo component) and waits for the line that names its port.
async fn serve(config: &str, files: &[(&str, &str)]) -> Served {
    let wasm = python_app(ECHO).await;
    let dir = unique_temp_path("serve");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let path = dir.join("serve.toml");
    std::fs::write(&path, config.replace("COMPONENT", &wasm)).unwrap();
    start(&path)
}

/// Runs `fabric serve CONFIG` on any free port; returns once it serves.
pub(crate) fn start(path: &Path) -> Served {
    start_with(path, &[])
}

/// [`start`], with `extra` arguments.
pub(crate) fn start_with(path: &Path, extra: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fabric"))
        .env("XDG_CACHE_HOME", crate::support::cache_dir())
        .arg("serve")
        .arg(path)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fabric serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("serving on ")
        .unwrap_or_else(|| panic!("fabric serve did not start: {line:?}"))
        .to_string();
    Served {
        child,
        base,
        config: path.to_path_buf(),
    }
}

/// A Rust replica takes the SDK's `Request` and answers with its
/// `Response` (status, headers, body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_replica_answers_with_the_sdks_types() {
    let config = r#"
[[deployment]]
name = "greeter"
component = "ACTORS"
class = "Greeter"
route = "/hi"
num_cpus = 0.25
public = true

[[deployment]]
name = "greeter-two"
component = "ACTORS"
class = "Greeter"
route = "/two"
num_cpus = 0.25
public = true
"#
    .replace("ACTORS", crate::support::programs::ACTORS);
    let s = serve(&config, &[]).await;
    assert_eq!(
        get(&s, "/hi/there?x=1", None),
        (200, "GET /hi/there?x=1 0 bytes, agent true, #1".into())
    );
    let (status, body) = curl::request(
        Path::new(""),
        "POST",
        &format!("{}/hi", s.base),
        None,
        Body::Json("[1, 2, 3]"),
    );
    assert_eq!(
        (status, body.as_str()),
        (200, "POST /hi? 9 bytes, agent true, #2")
    );
    // A typed JSON handler: its input parsed, its output as JSON, a body
    // that is no input a 400.
    let post = |body: &str| {
        let url = format!("{}/hi/sum", s.base);
        curl::request(Path::new(""), "POST", &url, None, Body::Json(body))
    };
    assert_eq!(post("[1, 2, 39]"), (200, r#"{"sum":42}"#.into()));
    let (status, body) = post(r#"{"not": "numbers"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not the JSON this route takes"), "{body}");
    // A deployment's handle, from Rust: greeter relays to greeter-two.
    let (status, body) = get(&s, "/hi/via/greeter-two", None);
    assert_eq!(
        (status, body.as_str()),
        (200, "GET /relayed? 0 bytes, agent true, #1")
    );
    let (status, body) = get(&s, "/hi/via/nowhere", None);
    assert_eq!(status, 502);
    assert!(body.contains("nowhere"), "{body}");
}

/// An async Python replica with `max_concurrency` interleaves its
/// requests: one that waits is let through by a later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_replica_interleaves_its_requests() {
    let config = r#"
[[deployment]]
name = "latch"
component = "COMPONENT"
class = "Latch"
route = "/"
num_cpus = 0.25
max_concurrency = 8
max_ongoing_requests = 8
request_timeout = "20s"
public = true
"#;
    let s = serve(config, &[]).await;
    let waiting = get_in_background(&s, "/wait");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(&s, "/open", None), (200, "opened".into()));
    assert_eq!(waiting.join().unwrap(), (200, "went through".into()));
}

/// The README's example, as it is: `fabric serve examples/serve/serve.toml`
/// builds the Python file itself and answers as the README says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_serve_example_answers() {
    let config = std::path::Path::new(crate::support::REPO_ROOT).join("examples/serve/serve.toml");
    let s = tokio::task::spawn_blocking(move || start(&config))
        .await
        .unwrap();
    assert_eq!(
        get(&s, "/echo/json", None),
        (200, r#"{"bytes":0,"greeting":"hi"}"#.into())
    );
    assert_eq!(get(&s, "/echo/a", None), (200, "hi /echo/a".into()));
}

/// An autoscaled deployment grows under load, answering every request
/// meanwhile, and once idle shrinks to its floor of zero; the next request
/// starts a replica at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_follows_the_load_up_and_down_to_zero() {
    let config = r#"
[[deployment]]
name = "scaled"
component = "COMPONENT"
class = "Echo"
route = "/"
num_cpus = 0.25
max_ongoing_requests = 2
public = true

[deployment.autoscaling]
min_replicas = 0
max_replicas = 3
initial_replicas = 1
target_ongoing_requests = 1
upscale_delay = "200ms"
downscale_delay = "1s"
look_back = "500ms"
"#;
    let s = serve(config, &[]).await;
    let mut seen = std::collections::HashSet::from([get(&s, "/who", None).1]);
    // Six clients, each a request of 0.2 s at a time, for 4 s.
    let until = Instant::now() + Duration::from_secs(4);
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let url = format!("{}/nap", s.base);
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while Instant::now() < until {
                    answers.push(curl::request(Path::new(""), "GET", &url, None, Body::None));
                }
                answers
            })
        })
        .collect();
    let mut answered = 0;
    for client in clients {
        for (status, who) in client.join().unwrap() {
            assert_eq!(status, 200, "{who}");
            seen.insert(who);
            answered += 1;
        }
    }
    assert!(
        (2..=3).contains(&seen.len()),
        "replicas that answered {answered} requests: {seen:?}"
    );
    eprintln!("{answered} requests answered by {} replicas", seen.len());
    // Idle past the downscale delay and the look-back: none is left, so
    // the next answer comes from a replica started for it.
    std::thread::sleep(Duration::from_secs(3));
    let cold = Instant::now();
    let (status, who) = get(&s, "/who", None);
    let cold = cold.elapsed();
    assert_eq!(status, 200, "{who}");
    assert!(
        !seen.contains(&who),
        "{who} outlived the idle time: {seen:?}"
    );
    eprintln!("the first request after scaling to zero took {cold:?}");
}

const REDEPLOYED: &str = r#"
[[deployment]]
name = "echo"
component = "COMPONENT"
class = "Echo"
route = "/echo"
replicas = REPLICAS
num_cpus = 0.25
public = true
user_config = { greeting = "GREETING" }

[[deployment]]
name = "front"
component = "COMPONENT"
class = "Front"
route = "/front"
num_cpus = 0.25
public = true
"#;

/// Which replica of `echo` answers through `front`'s handle to it (one
/// looked up now, or with `kept`, the one its constructor took).
fn who_via_front(s: &Served, kept: bool) -> String {
    let path = if kept {
        "/front/-kept/echo/who"
    } else {
        "/front/echo/who"
    };
    let (status, body) = get(s, path, None);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["answer"].as_str().unwrap().to_string()
}

/// `SIGHUP` redeploys what changed in the file: a new `user_config` reaches
/// the running replicas through `reconfigure` (the same replicas answer),
/// and any other change starts new replicas, switched to once they are up,
/// while requests keep being answered: none fails across the switch. The
/// deployment's handles follow its route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reconfigures_or_rolls_replicas_without_dropping_requests() {
    let s = serve(&redeployed("2", "hi"), &[]).await;
    let written = std::fs::read_to_string(&s.config).unwrap();
    let wasm = written
        .lines()
        .find_map(|l| l.strip_prefix("component = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let rewrite = |text: String| {
        std::fs::write(&s.config, text.replace("COMPONENT", &wasm)).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) };
    };
    let before = replicas(&s, 20);
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(before.contains(&who_via_front(&s, true)));

    rewrite(redeployed("2", "hey"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&s, "/echo/x", None).1 != "hey /echo/x" {
        assert!(Instant::now() < deadline, "never reconfigured");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(replicas(&s, 20), before, "reconfigured, not restarted");

    // Requests all along, while a third replica is asked for.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (url, stop) = (format!("{}/echo/x", s.base), stop.clone());
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                answers.push(curl::request(Path::new(""), "GET", &url, None, Body::None));
            }
            answers
        })
    };
    rewrite(redeployed("3", "hey"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let now = replicas(&s, 30);
        if now.len() == 3 && now.is_disjoint(&before) {
            break now;
        }
        assert!(Instant::now() < deadline, "never rolled: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = client.join().unwrap();
    let failed: Vec<_> = answers.iter().filter(|a| a.0 != 200).collect();
    assert!(failed.is_empty(), "{failed:?} of {}", answers.len());
    assert!(answers.iter().all(|a| a.1 == "hey /echo/x"));
    eprintln!(
        "{} requests answered across the roll to {after:?}",
        answers.len()
    );
    // Handles reach the new deployment once it takes the route, the
    // ones kept from before too.
    assert!(after.contains(&who_via_front(&s, false)));
    assert!(after.contains(&who_via_front(&s, true)));

    // A version whose replicas cannot start never takes the route: the
    // running one goes on answering.
    rewrite(redeployed("3", "hey").replace("class = \"Echo\"", "class = \"Broken\""));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(get(&s, "/echo/x", None), (200, "hey /echo/x".into()));
    assert_eq!(replicas(&s, 30), after);
    assert!(after.contains(&who_via_front(&s, true)), "handles stay too");

    failed_reloads_change_nothing(&s, &rewrite, &after);
}

/// [`REDEPLOYED`] with `replicas` and `greeting`.
fn redeployed(replicas: &str, greeting: &str) -> String {
    REDEPLOYED
        .replace("REPLICAS", replicas)
        .replace("GREETING", greeting)
}

/// The replicas of `echo` that answer `n` requests.
fn replicas(s: &Served, n: usize) -> std::collections::HashSet<String> {
    (0..n).map(|_| get(s, "/echo/who", None).1).collect()
}

/// A reload that fails changes nothing (`after`: the replicas running).
fn failed_reloads_change_nothing(
    s: &Served,
    rewrite: &dyn Fn(String),
    after: &std::collections::HashSet<String>,
) {
    // A reload that fails changes nothing: not even the user config of a
    // deployment listed before the one that fails.
    let missing = "\n[[deployment]]\nname = \"gone\"\ncomponent = \"missing.wasm\"\n\
                   class = \"Echo\"\nroute = \"/gone\"\npublic = true\n";
    rewrite(redeployed("3", "ho") + missing);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(get(s, "/echo/x", None), (200, "hey /echo/x".into()));
    // ... nor where the handles go, when new deployments had started
    // (one of a new name: its handle name goes with it).
    let extra = "\n[[deployment]]\nname = \"extra\"\ncomponent = \"COMPONENT\"\n\
                 class = \"Echo\"\nroute = \"/extra\"\nnum_cpus = 0.25\npublic = true\n";
    rewrite(redeployed("2", "hey") + extra + missing);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(&replicas(s, 30), after);
    assert!(
        after.contains(&who_via_front(s, false)),
        "handles after a failed reload"
    );
    assert_eq!(get(s, "/front/extra/x", None).0, 404);
}

/// A batching deployment's method gets the requests waiting for a replica
/// as one list and answers each in order; a request alone goes after
/// `max_wait`; a list of the wrong length fails each of its requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batching_replica_answers_each_request_of_its_batch() {
    let config = r#"
[[deployment]]
name = "batched"
component = "COMPONENT"
class = "Batched"
route = "/"
num_cpus = 0.25
max_ongoing_requests = 4
public = true

[deployment.batch]
max_size = 4
max_wait = "1s"
"#;
    let s = serve(config, &[]).await;
    let alone = Instant::now();
    assert_eq!(get(&s, "/alone", None), (200, "1 /alone".into()));
    assert!(
        alone.elapsed() >= Duration::from_secs(1),
        "{:?}",
        alone.elapsed()
    );
    let four: Vec<_> = (0..4)
        .map(|i| get_in_background(&s, &format!("/b{i}")))
        .collect();
    for (i, request) in four.into_iter().enumerate() {
        assert_eq!(request.join().unwrap(), (200, format!("4 /b{i}")));
    }
    assert_eq!(get(&s, "/short", None).0, 500);
    assert_eq!(get(&s, "/after", None), (200, "1 /after".into()));
}

/// [`get`] on a thread of its own, for a request that waits.
pub(crate) fn get_in_background(s: &Served, path: &str) -> std::thread::JoinHandle<(u16, String)> {
    let url = format!("{}{path}", s.base);
    std::thread::spawn(move || curl::request(Path::new(""), "GET", &url, None, Body::None))
}

pub(crate) fn get(s: &Served, path: &str, token: Option<&str>) -> (u16, String) {
    curl::request(
        Path::new(""),
        "GET",
        &format!("{}{path}", s.base),
        token,
        Body::None,
    )
}

const ECHO_CONFIG: &str = r#"
[ingress]
metrics_token_file = "token"

[[deployment]]
name = "echo"
component = "COMPONENT"
class = "Echo"
route = "/echo"
replicas = 2
num_cpus = 0.25
public = true
user_config = { greeting = "hi" }

[[deployment]]
name = "private"
component = "COMPONENT"
class = "Echo"
route = "/private"
num_cpus = 0.25
token_file = "token"
"#;

/// Requests reach the replicas as dicts and their return values come back
/// as responses (text, JSON, a record with status and headers); the route
/// decides the deployment, and a token route refuses a caller without its
/// token before the replica is asked; a handler's exception is a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_answers_over_http() {
    let token = "a-token-of-some-length";
    let s = serve(ECHO_CONFIG, &[("token", token)]).await;
    assert_eq!(get(&s, "/echo/x", None), (200, "hi /echo/x".into()));
    let (status, json) = get(&s, "/echo/json?a=1", None);
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"greeting": "hi", "method": "GET", "query": "a=1", "body": 0, "agent": true, "token": false})
    );
    let (status, body) = curl::request(
        Path::new(""),
        "POST",
        &format!("{}/echo/json", s.base),
        None,
        Body::Json("{\"k\": 12345}"),
    );
    assert_eq!(
        (status, body.contains("\"body\":12")),
        (200, true),
        "{body}"
    );
    assert_eq!(get(&s, "/echo/record", None), (201, "made".into()));
    assert_eq!(get(&s, "/echo/boom", None).0, 500);
    // Values a handler may not answer with: 200,000 items, a 1xx status.
    assert_eq!(get(&s, "/echo/many", None).0, 500);
    assert_eq!(get(&s, "/echo/switch", None).0, 500);
    // A path a replica might resolve into another route's is refused.
    assert_eq!(get(&s, "/echo/%2e%2e/private/x", None).0, 400);
    assert_eq!(get(&s, "/echo/a%2Fb", None).0, 400);
    assert_eq!(get(&s, "/echoes", None).0, 404, "a prefix ends at a `/`");
    assert_eq!(get(&s, "/elsewhere", None).0, 404);
    assert_eq!(get(&s, "/private/x", None).0, 401);
    assert_eq!(
        get(&s, "/private/x", Some("a-wrong-token-of-length")).0,
        401
    );
    assert_eq!(
        get(&s, "/private/x", Some(token)),
        (200, "hello /private/x".into())
    );
    // The replica never sees the route's token.
    let (_, json) = get(&s, "/private/json", Some(token));
    assert!(json.contains("\"token\":false"), "{json}");
    // Both replicas take requests.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        seen.insert(get(&s, "/echo/who", None).1);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // The ingress's metrics: the node's and each deployment's, for the
    // holder of the metrics token only.
    assert_eq!(get(&s, "/-/metrics", None).0, 401);
    assert_eq!(
        get(&s, "/-/metrics", Some("a-wrong-token-of-length")).0,
        401
    );
    let (status, metrics) = get(&s, "/-/metrics", Some(token));
    assert_eq!(status, 200);
    let sample = |name: &str| -> f64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(sample("fabric_serve_requests_total{deployment=\"echo\",class=\"2xx\"}") >= 44.0);
    assert!(sample("fabric_serve_requests_total{deployment=\"echo\",class=\"5xx\"}") >= 3.0);
    assert!(sample("fabric_serve_requests_total{deployment=\"private\",class=\"4xx\"}") >= 2.0);
    assert!(sample("fabric_serve_request_seconds_count{deployment=\"echo\"}") >= 47.0);
    assert_eq!(sample("fabric_serve_replicas{deployment=\"echo\"}"), 2.0);
    assert_eq!(
        sample("fabric_serve_queued_requests{deployment=\"echo\"}"),
        0.0
    );
    assert!(metrics.contains("fabric_tasks_queued"), "the node's own");
    assert_eq!(get(&s, "/-/other", Some(token)).0, 404);
}

/// A replica that traps fails its request with 502 and is replaced; the
/// deployment goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_traps_is_replaced() {
    let s = serve(ECHO_CONFIG, &[("token", "a-token-of-some-length")]).await;
    let before: std::collections::HashSet<String> =
        (0..20).map(|_| get(&s, "/echo/who", None).1).collect();
    assert_eq!(get(&s, "/echo/crash", None).0, 502);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut after = std::collections::HashSet::new();
    while after.len() < 2 {
        assert!(Instant::now() < deadline, "no new replica: {after:?}");
        let (status, who) = get(&s, "/echo/who", None);
        if status == 200 {
            after.insert(who);
        }
    }
    assert_eq!(after.difference(&before).count(), 1, "{before:?} {after:?}");
}

/// With every replica busy and no room in the queue, a request is refused
/// at once (503); one past its deadline gets 504, and its replica's place
/// stays taken until the replica is done with it (a caller who leaves
/// frees nothing a busy replica still fills).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_deployment_sheds_and_times_out() {
    let config = r#"
[[deployment]]
name = "narrow"
component = "COMPONENT"
class = "Echo"
route = "/"
max_ongoing_requests = 1
max_queued_requests = 0
request_timeout = "1s"
public = true
"#;
    let s = serve(config, &[]).await;
    assert_eq!(get(&s, "/warm", None).0, 200);
    let slow = get_in_background(&s, "/slow");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&s, "/other", None).0, 503);
    assert_eq!(
        slow.join().unwrap().0,
        504,
        "3 s of work against a 1 s timeout"
    );
    assert_eq!(get(&s, "/other", None).0, 503, "the slow call still runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&s, "/other", None).0 != 200 {
        assert!(Instant::now() < deadline, "the place was never given back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Deployments compose through handles: a replica of `front` finds the
/// deployment `echo` in the namespace `serve` and calls its replica (a
/// method, and a generator streamed item by item); a
/// handle's call waits for a place as a request does and is refused past
/// the queue (here: none); a replica that crashes under a handle's call is
/// replaced; another tenant's deployment is not found; and no actor may
/// take a name in that namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_compose_through_handles() {
    let config = r#"
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
name = "elsewhere"
tenant = "tenant-b"
component = "COMPONENT"
class = "Echo"
route = "/elsewhere"
num_cpus = 0.25
public = true
"#;
    let s = serve(config, &[]).await;
    let (status, body) = get(&s, "/front/echo/x", None);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json, serde_json::json!({"via": "front", "answer": "hi /x"}));
    // A stream from narrow (one place, no queue) gives its place back
    // when it ends: narrow answers a request after it.
    let (status, body) = get(&s, "/front/-stream/narrow", None);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let items = serde_json::json!({"streamed": ["hello 0", "hello 1", "hello 2"]});
    assert_eq!(json, items);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&s, "/narrow/after-stream", None).0 != 200 {
        assert!(Instant::now() < deadline, "the stream kept its place");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Backpressure: narrow's one place is taken by a slow call through a
    // handle; the next handle call finds no place and no queue.
    let slow = get_in_background(&s, "/front/narrow/slow");
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = get(&s, "/front/narrow/x", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("max-queued-requests"), "{body}");
    assert_eq!(get(&s, "/narrow/y", None).0, 503, "HTTP shares the queue");
    let (status, body) = slow.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("slow done"), "{body}");
    assert!(get(&s, "/front/narrow/x", None).1.contains("/x"));

    // A replica that crashes under a handle's call is replaced.
    let before = get(&s, "/echo/who", None).1;
    assert_eq!(get(&s, "/front/echo/crash", None).0, 502);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, who) = get(&s, "/echo/who", None);
        if status == 200 {
            assert_ne!(who, before, "the crashed replica still answers");
            break;
        }
        assert!(Instant::now() < deadline, "echo was never replaced");
        std::thread::sleep(Duration::from_millis(200));
    }

    let (status, body) = get(&s, "/front/elsewhere/x", None);
    assert_eq!(status, 404, "another tenant's deployment: {body}");
    assert_eq!(get(&s, "/elsewhere/x", None).0, 200);
    let (status, body) = get(&s, "/front/-claim", None);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("Serve's deployments"), "{body}");
}
