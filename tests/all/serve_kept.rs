//! Deployments the head keeps (`fabric serve deploy`), on a cluster of real
//! processes: the head and a worker each run an ingress (`fabric start
//! --ingress`), tenants deploy with their own tokens, and both ingresses
//! serve what the head keeps, through the head's death and restart.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::python::python_app;
use crate::serve::ECHO;
use crate::support::curl::Body;
use crate::support::procs::ProcCluster;
use crate::support::programs;

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `GET url` with `Host: host` when given; (status, body).
fn get(url: &str, host: Option<&str>, token: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "30", "-w", "\n%{http_code}", url]);
    if let Some(h) = host {
        cmd.args(["-H", &format!("Host: {h}")]);
    }
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.output().expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// acme's host: a tenant's routes name theirs.
const ACME_HOST: Option<&str> = Some("acme.example");

/// Waits until `GET url` (to `host`) answers `status` (within 60 s).
fn wait_for(url: &str, host: Option<&str>, status: u16, token: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (got, body) = get(url, host, token);
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "{url}: {got} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The head's state (in `data`) keeps a route token's SHA-256, not the
/// token: the client sends only the digest.
fn the_token_never_reached_the_head(data: &Path, token: &[u8]) {
    let state = std::fs::read(data.join("head.redb")).unwrap();
    let holds = |bytes: &[u8]| state.windows(bytes.len()).any(|w| w == bytes);
    let digest = fabric_host::serve::token_sha256(std::str::from_utf8(token).unwrap());
    assert!(
        holds(&digest),
        "the deployment is kept with its token's digest"
    );
    assert!(
        !holds(token),
        "the head's state holds the route token itself"
    );
}

/// `fabric serve ARGS` with `token`: (stdout and stderr, success).
fn serve_cli(c: &ProcCluster, token: &str, args: &[&str]) -> (String, bool) {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--address", c.head_address()]);
    let out = c.fabric_as(token, &all);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.success())
}

/// A deployment file of one stateless `name` at `host` (a `host = ...`
/// line, or nothing) and `route`.
fn proxy_file(c: &ProcCluster, name: &str, route: &str, host: &str) -> String {
    let text = format!(
        "[[deployment]]\nname = \"{name}\"\ncomponent = \"{}\"\nroute = \"{route}\"\n{host}public = true\n",
        programs::HTTP_PROXY
    );
    c.settings_file(&format!("{name}.toml"), &text)
}

/// Another tenant's deployments beside acme's: any path on acme's host,
/// the operator's host, a route for any host, an IP address or a port as
/// its host are refused; its own host serves. The admin's route for any
/// host answers any host but acme's and the other's.
fn another_tenants_claims(c: &ProcCluster, other: &str, worker_port: u16) {
    let refused = [
        (
            "inside",
            "/a/b",
            "host = \"acme.example\"\n",
            "another tenant holds",
        ),
        (
            "login",
            "/login",
            "host = \"ACME.example.\"\n",
            "another tenant holds",
        ),
        (
            "ops",
            "/",
            "host = \"Ops.Example\"\n",
            "reserved by the operator",
        ),
        (
            "any",
            "/any",
            "",
            "only the operator's deployments answer any host",
        ),
        (
            "ip",
            "/",
            "host = \"127.0.0.1\"\n",
            "a tenant's host is a domain name",
        ),
        ("port", "/", "host = \"b.example:80\"\n", "DNS name"),
    ];
    for (name, route, host, why) in refused {
        let (out, ok) = serve_cli(c, other, &["deploy", &proxy_file(c, name, route, host)]);
        assert!(!ok && out.contains(why), "{name}: {out}");
    }
    let mine = proxy_file(c, "b", "/b", "host = \"b.example\"\n");
    let (out, ok) = serve_cli(c, other, &["deploy", &mine]);
    assert!(ok, "{out}");
    let open = proxy_file(c, "open", "/", "");
    let (out, ok) = serve_cli(c, &c.admin_token(), &["deploy", &open]);
    assert!(ok, "{out}");
    let url = format!("http://127.0.0.1:{worker_port}/b/x");
    wait_for(&url, Some("b.example"), 200, None);
    wait_for(&url, Some("anything.example"), 200, None);
    wait_for(&url, None, 200, None);
    // acme's host answers only acme's routes, whatever the case or dot.
    for host in ["acme.example", "ACME.example."] {
        wait_for(&url, Some(host), 404, None);
    }
    let (out, _) = serve_cli(c, other, &["list"]);
    assert!(out.contains("other") && !out.contains("acme"), "{out}");
}

/// The dashboard's Serve view: acme's deployments, kept by the head and
/// reported by both ingresses with the answers they gave; none of them in
/// the other tenant's view.
fn dashboard_shows_each_tenant_its_own(c: &ProcCluster, acme: &str, other: &str) {
    let api = crate::jobs_api::Api::of(c);
    let deadline = Instant::now() + Duration::from_secs(30);
    let hello = loop {
        let all = api.json("GET", "/api/serve", acme, Body::None, 200);
        let rows = all.as_array().unwrap().clone();
        assert!(rows.iter().all(|r| r["tenant"] == "acme"), "{all}");
        let hello = rows.into_iter().find(|r| r["name"] == "hello").unwrap();
        if hello["ingresses"] == 2 && hello["requests"]["2xx"].as_u64() >= Some(2) {
            break hello;
        }
        assert!(Instant::now() < deadline, "{all}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(hello["kept"], true, "{hello}");
    assert_eq!(hello["route"], "/a", "{hello}");
    let theirs = api.json("GET", "/api/serve", other, Body::None, 200);
    let names: Vec<&str> = theirs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b"], "{theirs}");
    // The admin sees every tenant's, its own route for any host too.
    let all = api.json("GET", "/api/serve", &c.admin_token(), Body::None, 200);
    assert_eq!(all.as_array().unwrap().len(), 5, "{all}");
}

/// The worker's own `/metrics` (`--metrics-port`) carries its ingress's
/// deployments.
fn worker_metrics_show_its_deployments(c: &ProcCluster) {
    let metrics = c
        .dir
        .join(format!("node1/metrics/{}", c.nodes[1].child.id()));
    let url = std::fs::read_to_string(metrics).unwrap();
    let (status, text) = get(url.trim(), None, None);
    assert_eq!(status, 200, "{text}");
    let answered = text
        .lines()
        .any(|l| l.starts_with("fabric_serve_requests_total{") && l.contains("\"hello\""));
    assert!(
        answered,
        "the worker's /metrics lacks its deployments:\n{text}"
    );
}

/// acme's `echo` deployed again with a user config: every ingress's
/// replicas take it.
fn a_new_user_config_reaches_every_ingress(
    c: &ProcCluster,
    acme: &str,
    config: &str,
    ports: [u16; 2],
) {
    let token = Some("acme-route-token-0123456789");
    let again = config
        .replace(
            "token_file",
            "user_config = { greeting = \"hey\" }\ntoken_file",
        )
        .split("[[deployment]]")
        .last()
        .map(|echo| format!("[[deployment]]{echo}"))
        .unwrap();
    let (out, ok) = serve_cli(c, acme, &["deploy", &c.settings_file("again.toml", &again)]);
    assert!(ok, "{out}");
    for port in ports {
        let url = format!("http://127.0.0.1:{port}/echo/json");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !get(&url, ACME_HOST, token).1.contains("\"hey\"") {
            assert!(
                Instant::now() < deadline,
                "{:?}",
                get(&url, ACME_HOST, token)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const ACME: &str = r#"
[[deployment]]
name = "hello"
component = "PROXY"
host = "acme.example"
route = "/a"
public = true

[[deployment]]
name = "site"
component = "PROXY"
host = "acme.example"
route = "/site"
public = true

[[deployment]]
name = "echo"
component = "ECHO"
class = "Echo"
host = "acme.example"
route = "/echo"
num_cpus = 0
token_file = "route-token"
"#;

/// What acme deploys on its host reaches both ingresses (stateless routes
/// and a replica behind its token); another tenant's claims on acme's
/// host, the operator's, any host or an address are refused, and the
/// admin's route for any host leaves acme's host alone; the head killed,
/// the worker's ingress serves on;
/// the head restarted has the deployments still, a delete reaches the
/// worker's ingress, and a new user config reaches the replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_the_head_keeps_are_served_by_every_ingress() {
    let echo = python_app(ECHO).await;
    let (head_port, worker_port) = (free_port(), free_port());
    let mut c = ProcCluster::start(env!("CARGO_BIN_EXE_fabric"), &[]);
    let ingress = c.settings_file("ingress.toml", "[ingress]\n");
    let head_listen = format!("127.0.0.1:{head_port}");
    let head_flags = [
        "--ingress",
        &ingress,
        "--ingress-listen",
        &head_listen,
        "--serve-reserved-host",
        "ops.example",
        "--api-port",
        "0",
    ];
    c.restart_head(&head_flags, 1);
    let worker_listen = format!("127.0.0.1:{worker_port}");
    c.add(&[
        "--ingress",
        &ingress,
        "--ingress-listen",
        &worker_listen,
        "--metrics-port",
        "0",
        "--metrics-insecure",
    ]);
    let acme = c.add_tenant("acme", &[]);
    let other = c.add_tenant("other", &[]);

    let dir = Path::new(&ingress).parent().unwrap().to_path_buf();
    std::fs::write(dir.join("route-token"), "acme-route-token-0123456789").unwrap();
    let config = ACME
        .replace("PROXY", programs::HTTP_PROXY)
        .replace("ECHO", &echo);
    let acme_file = c.settings_file("acme.toml", &config);
    let (out, ok) = serve_cli(&c, &acme, &["deploy", &acme_file]);
    assert!(ok, "{out}");
    assert!(out.contains("deployed: hello, site, echo"), "{out}");
    the_token_never_reached_the_head(&dir.join("node0"), b"acme-route-token-0123456789");

    let token = Some("acme-route-token-0123456789");
    for port in [head_port, worker_port] {
        let base = format!("http://127.0.0.1:{port}");
        let body = wait_for(&format!("{base}/a/x"), ACME_HOST, 200, None);
        assert_eq!(body, "hello from wasi:http at /a/x");
        wait_for(&format!("{base}/echo/x"), ACME_HOST, 200, token);
        assert_eq!(get(&format!("{base}/echo/x"), ACME_HOST, None).0, 401);
    }

    another_tenants_claims(&c, &other, worker_port);
    dashboard_shows_each_tenant_its_own(&c, &acme, &other);
    worker_metrics_show_its_deployments(&c);

    // The head killed: the worker's ingress serves on.
    c.kill(0);
    std::thread::sleep(Duration::from_millis(1500));
    let worker = format!("http://127.0.0.1:{worker_port}");
    assert_eq!(get(&format!("{worker}/a/down"), ACME_HOST, None).0, 200);
    assert_eq!(get(&format!("{worker}/echo/down"), ACME_HOST, token).0, 200);

    // Restarted, the head has them still; a delete reaches the worker.
    c.restart_head(&head_flags, 2);
    let (out, ok) = serve_cli(&c, &acme, &["list"]);
    assert!(ok && out.contains("hello") && out.contains("echo"), "{out}");
    let (out, ok) = serve_cli(&c, &other, &["delete", "hello"]);
    assert!(!ok && out.contains("no deployment `hello`"), "{out}");
    let (out, ok) = serve_cli(&c, &acme, &["delete", "hello"]);
    assert!(ok, "{out}");
    // The admin's route for any host is kept off acme's host: a 404.
    wait_for(&format!("{worker}/a/x"), ACME_HOST, 404, None);
    assert_eq!(get(&format!("{worker}/echo/x"), ACME_HOST, token).0, 200);

    a_new_user_config_reaches_every_ingress(&c, &acme, &config, [head_port, worker_port]);
}
