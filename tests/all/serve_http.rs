//! Stateless deployments: a `wasi:http` proxy component built with the
//! `wasi` crate alone (nothing of wasmfabric), served unchanged by a real
//! `fabric serve` process to a real HTTP client (curl), a fresh instance
//! for each request, under its manifest's limits.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::serve::{Served, start};
use crate::support::{programs, unique_temp_path};

const PROXY_CONFIG: &str = r#"
[ingress]
metrics_token_file = "metrics-token"

[[deployment]]
name = "proxy"
component = "COMPONENT"
route = "/"
public = true
manifest = "limits.toml"
max_ongoing_requests = 8
max_body = "4MiB"
request_timeout = "20s"
"#;

/// A route bound to the certificate's host name, behind a token.
const HOSTED: &str = r#"
[[deployment]]
name = "hosted"
component = "COMPONENT"
host = "wasmfabric.cluster"
route = "/hosted"
token_file = "metrics-token"
"#;

const LIMITS: &str = r#"
[limits]
memory = "64MiB"
cpu-time = "300ms"
"#;

const METRICS_TOKEN: &str = "a-metrics-token-of-length";

/// `fabric serve` with the proxy component behind `/`.
fn serve_proxy(config: &str) -> Served {
    let dir = unique_temp_path("serve-http");
    std::fs::create_dir_all(&dir).unwrap();
    serve_proxy_in(&dir, config)
}

fn serve_proxy_in(dir: &Path, config: &str) -> Served {
    std::fs::write(dir.join("limits.toml"), LIMITS).unwrap();
    std::fs::write(dir.join("metrics-token"), METRICS_TOKEN).unwrap();
    let path = dir.join("serve.toml");
    std::fs::write(&path, config.replace("COMPONENT", programs::HTTP_PROXY)).unwrap();
    start(&path)
}

/// One request with curl: (status, response headers in lower case, body).
fn fetch(url: &str, extra: &[&str]) -> (u16, String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "60"])
        .args(extra)
        .arg(url)
        .output()
        .expect("running curl");
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no response head: {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
    let head = String::from_utf8_lossy(&out.stdout[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, out.stdout[split + 4..].to_vec())
}

fn text(url: &str) -> (u16, String) {
    let (status, _, body) = fetch(url, &[]);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// An unchanged `wasi:http` component answers over HTTP: its status,
/// headers and a streamed body; a 1 MiB body echoed back whole; many
/// requests at once, each on its own instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_wasi_http_component_serves() {
    let s = serve_proxy(PROXY_CONFIG);
    let (status, head, body) = fetch(&format!("{}/hello?x=1", s.base), &[]);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("x-proxy: yes"), "{head}");
    assert_eq!(body, b"hello from wasi:http at /hello?x=1");

    let payload: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let file = unique_temp_path("payload");
    std::fs::write(&file, &payload).unwrap();
    let data = format!("@{}", file.display());
    let url = format!("{}/echo", s.base);
    let (status, _, echoed) = fetch(&url, &["-X", "POST", "--data-binary", &data]);
    assert_eq!(status, 200);
    assert!(echoed == payload, "{} bytes back", echoed.len());

    let many: Vec<_> = (0..24)
        .map(|i| {
            let url = format!("{}/hello/{i}", s.base);
            std::thread::spawn(move || text(&url))
        })
        .collect();
    for (i, h) in many.into_iter().enumerate() {
        assert_eq!(
            h.join().unwrap(),
            (200, format!("hello from wasi:http at /hello/{i}"))
        );
    }
}

/// Each request's instance is bounded by the deployment's manifest and
/// fails alone: a trap, an endless loop (CPU time) and a memory bomb each
/// get 502 while requests beside them are answered; a body cut off by a
/// trap reaches the client as broken; outgoing requests are refused; the
/// metrics count it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_request_fails_alone_within_its_limits() {
    let s = serve_proxy(PROXY_CONFIG);
    assert_eq!(text(&format!("{}/warm", s.base)).0, 200);
    let started = Instant::now();
    let hostile: Vec<_> = ["/trap", "/spin", "/grow"]
        .iter()
        .map(|path| {
            let url = format!("{}{path}", s.base);
            std::thread::spawn(move || text(&url).0)
        })
        .collect();
    // Beside them, requests are answered.
    for i in 0..10 {
        let (status, body) = text(&format!("{}/beside/{i}", s.base));
        assert_eq!(
            (status, body),
            (200, format!("hello from wasi:http at /beside/{i}"))
        );
    }
    for (h, path) in hostile.into_iter().zip(["/trap", "/spin", "/grow"]) {
        assert_eq!(h.join().unwrap(), 502, "{path}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the CPU-time limit stopped the loop: {:?}",
        started.elapsed()
    );
    // A body cut off by a trap is not a whole body to the client: curl
    // reports the transfer as broken (exit code 18 or 56), not complete.
    let cut = Command::new("curl")
        .args(["-s", "--max-time", "20", "-o", "/dev/null"])
        .arg(format!("{}/cut", s.base))
        .status()
        .unwrap();
    assert!(!cut.success(), "a cut-off body ended cleanly: {cut:?}");
    // What a handler may not answer with: an informational status, an
    // error code (its 512 KiB of text stays out of the answer).
    assert_eq!(text(&format!("{}/switch", s.base)).0, 502);
    let (status, body) = text(&format!("{}/error", s.base));
    assert_eq!((status, body.len() < 100), (500, true), "{}", body.len());
    // A request that names no host (HTTP/1.0, no `Host`) is refused.
    let (status, _, _) = fetch(&format!("{}/hi", s.base), &["--http1.0", "-H", "Host:"]);
    assert_eq!(status, 400);
    let (status, body) = text(&format!("{}/fetch", s.base));
    assert_eq!(status, 200);
    assert!(
        body.contains("refused") && body.contains("HttpRequestDenied"),
        "{body}"
    );

    // Every place is given back once its instance is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = scrape(&s);
        if sample(
            &metrics,
            "fabric_serve_ongoing_requests{deployment=\"proxy\"}",
        ) == 0.0
        {
            break metrics;
        }
        assert!(Instant::now() < deadline, "places kept:\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let requests = |class: &str| {
        let name = format!("fabric_serve_requests_total{{deployment=\"proxy\",class=\"{class}\"}}");
        sample(&metrics, &name)
    };
    assert_eq!(requests("5xx"), 5.0, "trap, spin, grow, switch, error");
    // The cut-off one counts as its head said: its status went first.
    assert_eq!(requests("2xx"), 13.0);
    assert_eq!(requests("4xx"), 1.0, "no host");
}

fn scrape(s: &Served) -> String {
    let token = format!("Authorization: Bearer {METRICS_TOKEN}");
    let (status, _, metrics) = fetch(&format!("{}/-/metrics", s.base), &["-H", &token]);
    assert_eq!(status, 200);
    String::from_utf8(metrics).unwrap()
}

fn sample(metrics: &str, name: &str) -> f64 {
    let line = metrics
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A component that is not a `wasi:http` proxy is refused at deploy time
/// with the reason, and `fabric serve` exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_is_no_proxy_is_refused() {
    let dir = unique_temp_path("serve-http-wrong");
    std::fs::create_dir_all(&dir).unwrap();
    let config = PROXY_CONFIG
        .replace("COMPONENT", programs::NOT_FABRIC)
        .replace("manifest = \"limits.toml\"\n", "");
    std::fs::write(dir.join("metrics-token"), METRICS_TOKEN).unwrap();
    let path = dir.join("serve.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fabric"))
        .env("XDG_CACHE_HOME", crate::support::cache_dir())
        .arg("serve")
        .arg(Path::new(&path))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("wasi:http"), "{stderr}");
}

/// HTTP/2 at the ingress: over TLS (the operator's certificate) as ALPN
/// picks, h2 or HTTP/1.1 on the same port; a 1 MiB body through HTTP/2's
/// flow control; 40 requests multiplexed on one connection, past the
/// deployment's 8 places, all answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_speaks_http2_over_tls_by_alpn() {
    let dir = unique_temp_path("serve-h2");
    std::fs::create_dir_all(&dir).unwrap();
    let tls = fabric_host::security::ClusterSecurity::generate().unwrap();
    std::fs::write(dir.join("cert.pem"), &tls.node_cert).unwrap();
    std::fs::write(dir.join("key.pem"), &tls.node_key).unwrap();
    std::fs::write(dir.join("ca.pem"), &tls.ca_cert).unwrap();
    let config = PROXY_CONFIG.replace(
        "[ingress]\n",
        "[ingress]\ntls_certificate = \"cert.pem\"\ntls_key = \"key.pem\"\n",
    ) + HOSTED;
    let s = serve_proxy_in(&dir, &config);
    let port = s.base.rsplit(':').next().unwrap().to_string();
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let base = format!("https://wasmfabric.cluster:{port}");
    let resolve = format!("wasmfabric.cluster:{port}:127.0.0.1");
    let ca = dir.join("ca.pem").display().to_string();
    let tls_args = ["--cacert", ca.as_str(), "--resolve", resolve.as_str()];
    let over = |version: &str, path: &str| {
        let mut args = tls_args.to_vec();
        args.extend([version, "-w", "\n%{http_version}"]);
        let (status, _, body) = fetch(&format!("{base}{path}"), &args);
        let body = String::from_utf8(body).unwrap();
        let (text, version) = body.rsplit_once('\n').unwrap();
        (status, version.to_string(), text.to_string())
    };
    let hello = "hello from wasi:http at /hello".to_string();
    assert_eq!(over("--http2", "/hello"), (200, "2".into(), hello.clone()));
    assert_eq!(over("--http1.1", "/hello"), (200, "1.1".into(), hello));
    // A host-bound route matches HTTP/2's `:authority` as HTTP/1.1's
    // `Host`: it wants its token.
    assert_eq!(over("--http2", "/hosted/x").0, 401);
    assert_eq!(over("--http1.1", "/hosted/x").0, 401);

    let payload: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 13 % 251) as u8).collect();
    let file = dir.join("payload");
    std::fs::write(&file, &payload).unwrap();
    let data = format!("@{}", file.display());
    let mut args = tls_args.to_vec();
    args.extend(["--http2", "-X", "POST", "--data-binary", &data]);
    let (status, _, echoed) = fetch(&format!("{base}/echo"), &args);
    assert_eq!(status, 200);
    assert!(echoed == payload, "{} bytes back", echoed.len());

    let urls: Vec<String> = (0..40).map(|i| format!("{base}/many/{i}")).collect();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2",
            "--parallel",
            "--parallel-max",
            "40",
            "--max-time",
            "60",
        ])
        .args(tls_args)
        .args(["-w", "%{http_code} %{http_version} %{num_connects}\n"])
        .args(urls.iter().flat_map(|u| ["-o", "/dev/null", u.as_str()]))
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout).unwrap();
    let statuses: Vec<&str> = lines.lines().collect();
    assert_eq!(statuses.len(), 40, "{lines}");
    assert!(statuses.iter().all(|l| l.starts_with("200 2 ")), "{lines}");
    let connects: u32 = statuses
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u32>().unwrap())
        .sum();
    assert!(
        connects < 40,
        "streams share connections (16 at once each; curl opens more when one is full): \
         {connects} connects\n{lines}"
    );
}

/// A plain listener takes HTTP/2 with prior knowledge (h2c) only when the
/// operator turned it on; HTTP/1.1 goes on either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_listener_takes_h2c_only_when_asked() {
    let version = |s: &Served, flag: &str| {
        let (status, _, body) = fetch(
            &format!("{}/hi", s.base),
            &[flag, "-w", "\n%{http_version}"],
        );
        let body = String::from_utf8_lossy(&body).into_owned();
        (
            status,
            body.rsplit_once('\n')
                .map(|(_, v)| v.to_string())
                .unwrap_or(body),
        )
    };
    let plain = serve_proxy(PROXY_CONFIG);
    assert_eq!(version(&plain, "--http1.1"), (200, "1.1".into()));
    let refused = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("{}/hi", plain.base))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&refused.stdout),
        "000",
        "no HTTP/2 without h2c"
    );

    let h2c = serve_proxy(&PROXY_CONFIG.replace("[ingress]\n", "[ingress]\nh2c = true\n"));
    assert_eq!(version(&h2c, "--http2-prior-knowledge"), (200, "2".into()));
    assert_eq!(version(&h2c, "--http1.1"), (200, "1.1".into()));

    // The host a route is chosen by is the one its handler sees: an
    // absolute-form target whose host differs from `Host` is refused.
    let url = format!("{}/hi", h2c.base);
    let target = ["--request-target", "http://elsewhere.example/hi"];
    assert_eq!(fetch(&url, &target).0, 400);
    // A connection that sends part of HTTP/2's preface and stops is
    // closed within the bound on a request's head (5 s), as one that
    // sends nothing is: it cannot hold a connection slot for long.
    for sent in [&b"PRI * HTTP/2"[..], b""] {
        let address = h2c.base.trim_start_matches("http://").to_string();
        let mut tcp = std::net::TcpStream::connect(&address).unwrap();
        std::io::Write::write_all(&mut tcp, sent).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        // Closed: an end of stream, or a reset (the bytes it sent were
        // left unread); a read timeout is no close.
        let read = std::io::Read::read(&mut tcp, &mut buf);
        let closed = match &read {
            Ok(n) => *n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        let took = started.elapsed();
        assert!(
            closed && took < Duration::from_secs(12),
            "{read:?} after {took:?}"
        );
    }
}

/// Two tenants' deployments on one ingress: a flood on one (more
/// requests than its places, each burning CPU until its limit) gets 503s
/// and 502s, and nothing else, while the other tenant's route answers
/// every request; each tenant's CPU is counted as its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_one_tenants_route_leaves_anothers_answering() {
    let config = r#"
[ingress]
metrics_token_file = "metrics-token"

[[deployment]]
name = "flooded"
tenant = "tenant-a"
component = "COMPONENT"
route = "/a"
public = true
manifest = "limits.toml"
max_ongoing_requests = 2
max_queued_requests = 0

[[deployment]]
name = "steady"
tenant = "tenant-b"
component = "COMPONENT"
route = "/b"
public = true
max_ongoing_requests = 8
"#;
    let s = serve_proxy(config);
    let flood: Vec<_> = (0..24)
        .map(|_| {
            let url = format!("{}/a/spin", s.base);
            std::thread::spawn(move || text(&url).0)
        })
        .collect();
    for i in 0..20 {
        let (status, body) = text(&format!("{}/b/{i}", s.base));
        assert_eq!(
            (status, body),
            (200, format!("hello from wasi:http at /b/{i}"))
        );
    }
    let statuses: Vec<u16> = flood.into_iter().map(|h| h.join().unwrap()).collect();
    let shed = statuses.iter().filter(|&&s| s == 503).count();
    assert!(
        statuses.iter().all(|s| [502, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(shed >= 12, "at most 2 at once, none queued: {statuses:?}");

    let metrics = scrape(&s);
    let cpu = |tenant: &str| {
        sample(
            &metrics,
            &format!("fabric_tenant_cpu_seconds_total{{tenant=\"{tenant}\"}}"),
        )
    };
    assert!(
        cpu("tenant-a") >= 0.3,
        "the spinning requests are tenant-a's"
    );
    assert!(cpu("tenant-a") > cpu("tenant-b"));
}

/// A flood of refusals (here 401s: requests without the route's token)
/// is paced per tenant: past its burst, each of tenant-a's refusals waits
/// its turn at `refusals_per_second`, so its clients ask again no faster;
/// tenant-b's refusal in the meantime goes at once, and its route answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_refusals_past_its_rate_wait_their_turn() {
    let config = r#"
[ingress]
refusals_per_second = 20

[[deployment]]
name = "guarded"
tenant = "tenant-a"
component = "COMPONENT"
route = "/a"
token_file = "metrics-token"

[[deployment]]
name = "other"
tenant = "tenant-b"
component = "COMPONENT"
route = "/b"
token_file = "metrics-token"
"#;
    let s = serve_proxy(config);
    let auth = format!("Authorization: Bearer {METRICS_TOKEN}");
    assert_eq!(fetch(&format!("{}/b/warm", s.base), &["-H", &auth]).0, 200);
    let started = Instant::now();
    // Ten at once: were the schedule shared, tenant-b's refusal would
    // wait behind about ten of them (half a second).
    let flood: Vec<_> = (0..10)
        .map(|_| {
            let url = format!("{}/a/x", s.base);
            std::thread::spawn(move || (0..3).map(|_| text(&url).0).collect::<Vec<u16>>())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    assert_eq!(text(&format!("{}/b/x", s.base)).0, 401);
    let other_refusal = asked.elapsed();
    assert_eq!(fetch(&format!("{}/b/y", s.base), &["-H", &auth]).0, 200);
    let statuses: Vec<u16> = flood.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let flood_took = started.elapsed();
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    // 30 refusals at 20 a second after a burst of 2: about 1.4 s at least.
    assert!(
        flood_took >= Duration::from_millis(1200),
        "30 refusals in {flood_took:?}"
    );
    assert!(
        other_refusal < Duration::from_millis(300),
        "tenant-b's first refusal waited {other_refusal:?}"
    );
}

/// `SIGHUP` reads the metrics token's file again: a rotated token takes
/// over from the old one without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rotates_the_metrics_token() {
    let s = serve_proxy(PROXY_CONFIG);
    let status = |token: &str| {
        let auth = format!("Authorization: Bearer {token}");
        fetch(&format!("{}/-/metrics", s.base), &["-H", &auth]).0
    };
    assert_eq!(status(METRICS_TOKEN), 200);
    let rotated = "a-rotated-metrics-token";
    let file = s.config.parent().unwrap().join("metrics-token");
    std::fs::write(file, rotated).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(rotated) != 200 {
        assert!(
            Instant::now() < deadline,
            "the rotated token never took over"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(METRICS_TOKEN), 401);
    assert_eq!(
        text(&format!("{}/hello", s.base)).0,
        200,
        "routes unchanged"
    );
}

/// `fabric serve status` shows each deployment of a running ingress (its
/// `GET /-/deployments`, behind the metrics token): what it serves, its
/// tenant, and its requests so far by status class.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_status_shows_each_deployment_and_its_requests() {
    let s = serve_proxy(&format!("{PROXY_CONFIG}{HOSTED}"));
    for i in 0..3 {
        assert_eq!(text(&format!("{}/{i}", s.base)).0, 200);
    }
    let hosted = format!("{}/hosted", s.base);
    assert_eq!(fetch(&hosted, &["-H", "Host: wasmfabric.cluster"]).0, 401);
    let token = s.config.parent().unwrap().join("metrics-token");
    let status = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fabric"))
            .args(["serve", "status", &s.base, "--token-file"])
            .arg(&token)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = status(&["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |name: &str| {
        answer["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {answer}"))
            .clone()
    };
    let proxy = by_name("proxy");
    assert_eq!(
        (&proxy["kind"], &proxy["tenant"], &proxy["route"]),
        (&"stateless".into(), &"local".into(), &"/".into())
    );
    assert_eq!(proxy["requests"]["2xx"], 3, "{proxy}");
    let hosted = by_name("hosted");
    assert_eq!(hosted["host"], "wasmfabric.cluster");
    assert_eq!(hosted["requests"]["4xx"], 1, "{hosted}");
    // The table: a line per deployment under its header.
    let out = status(&[]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{table}");
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0][..3], ["NAME", "TENANT", "ROUTE"], "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l[..4] == ["proxy", "local", "/", "-"] && l[6] == "3"),
        "{table}"
    );
    // Without the token, no status.
    let wrong = unique_temp_path("wrong-token");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fabric"))
        .args(["serve", "status", &s.base, "--token-file"])
        .arg(&wrong)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("401"), "{err}");
}
