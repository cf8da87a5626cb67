//! The dashboard in a real browser: Debian's headless Chromium, driven
//! through chromedriver (WebDriver) from this test, logs in to a live
//! 3-node cluster over HTTPS, trusting the cluster's `ca.crt` (added to the
//! browser's certificate store: no certificate error is ignored), and
//! finds the nodes, a running job and its log lines on the rendered pages;
//! another tenant's browser session does not show that job. Screenshots of
//! the overview and of the job page go to `target/tmp/screenshots/`
//! (`docs/screenshots/` holds copies for the README).
//!
//! Needs `chromium`, `chromium-driver` and `libnss3-tools` (`.ci/run`
//! installs them with apt).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::procs::ProcCluster;
use crate::support::programs;

/// A chromedriver process, killed on drop, and its browser's home (with
/// the cluster's CA in its NSS certificate store).
struct Driver {
    child: Child,
    port: u16,
    home: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install libnss3-tools)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver with a home whose NSS store trusts `ca`.
fn driver(dir: &Path, ca: &Path) -> Driver {
    let home = dir.join("browser-home");
    let nss = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nss).unwrap();
    let db = format!("sql:{}", nss.display());
    run(Command::new("certutil").args(["-N", "--empty-password", "-d", &db]));
    run(Command::new("certutil")
        .args([
            "-A",
            "-t",
            "C,,",
            "-n",
            "wasmfabric-cluster-ca",
            "-d",
            &db,
            "-i",
        ])
        .arg(ca));
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .env("HOME", &home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (install chromium-driver)");
    Driver { child, port, home }
}

/// A new browser (its own profile: no cookies shared with another).
async fn browser(d: &Driver, profile: &str) -> Client {
    let profile = d.home.join(profile);
    let args = serde_json::json!([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
        format!("--user-data-dir={}", profile.display()),
        // The certificate names `wasmfabric.cluster`; the browser finds it here.
        "--host-resolver-rules=MAP wasmfabric.cluster 127.0.0.1",
    ]);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "args": args }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    for attempt in 0.. {
        match ClientBuilder::new(connector.clone())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{}", d.port))
            .await
        {
            Ok(c) => return c,
            // chromedriver may still be starting.
            Err(_) if attempt < 50 => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("cannot start the browser: {e}"),
        }
    }
    unreachable!()
}

/// Waits until the page's text shows `needle`; returns the text.
async fn wait_for_text(c: &Client, css: &str, needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..150 {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            if t.contains(needle) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{css}` never showed `{needle}`; it showed:\n{last}");
}

async fn login(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    // No session: the app sends the browser to the login page.
    let field = c.wait().for_element(Locator::Css("#token")).await.unwrap();
    field.send_keys(token).await.unwrap();
    c.find(Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(c, "#view", "Overview").await;
}

fn screenshot(name: &str, png: &[u8]) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_and_sees_nodes_a_running_job_and_its_log_but_not_other_tenants() {
    let c = cluster_with_an_ingress();
    let acme = c.add_tenant("acme", &[]);
    let mallory = c.add_tenant("mallory", &[]);
    deploy_hello(&c, &acme);
    let api = std::fs::read_to_string(c.dir.join("node0/api_address")).unwrap();
    let port = api.trim().rsplit(':').next().unwrap().to_string();
    let base = format!("https://wasmfabric.cluster:{port}");

    let mut job = c
        .command_as(&acme)
        .args([
            "submit",
            "--address",
            c.head_address(),
            programs::BREACHES,
            "--",
        ])
        .args(["say-then-hold", "3", "120000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let id = wait_for_running_job(&c, &acme);

    let d = driver(&c.dir, &c.dir.join("node0/security/ca.crt"));
    let b = browser(&d, "acme").await;
    login(&b, &base, &acme).await;
    b.goto(&format!("{base}/#/nodes")).await.unwrap();
    let nodes = wait_for_text(&b, "#view", "(head)").await;
    for n in &c.nodes {
        assert!(
            nodes.contains(&n.id[..8]),
            "node {} missing:\n{nodes}",
            n.id
        );
    }
    b.goto(&format!("{base}/#/")).await.unwrap();
    wait_for_text(&b, "#view", "Nodes").await;
    screenshot("overview.png", &b.screenshot().await.unwrap());

    b.goto(&format!("{base}/#/jobs")).await.unwrap();
    wait_for_text(&b, "#view", &id[..8]).await;
    b.find(Locator::Css(&format!("tr[data-job-id='{id}'] a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&b, "#job", "RUNNING").await;
    wait_for_text(&b, "#log", "line 2 of a running job").await;
    // Its tasks, as the nodes kept them: 5 submitted, one refused.
    let count = |text: String| text.split_whitespace().next().unwrap().to_string();
    let submitted = wait_for_text(&b, "#tasks-submitted", "5").await;
    assert_eq!(count(submitted), "5");
    assert_eq!(count(wait_for_text(&b, "#tasks-failed", "1").await), "1");
    let failures = wait_for_text(&b, "#tasks", "a refusal for the dashboard").await;
    assert!(failures.contains("invalid_argument"), "{failures}");
    screenshot("job.png", &b.screenshot().await.unwrap());

    // Its Serve deployment, kept by the head and reported by the ingress.
    b.goto(&format!("{base}/#/serve")).await.unwrap();
    let serve = wait_for_text(&b, "tr[data-deployment='acme/hello']", "/hello").await;
    assert!(serve.contains("yes"), "kept by the head: {serve}");
    b.close().await.unwrap();

    // Another tenant's browser: no sign of acme's job, even by its address.
    let m = browser(&d, "mallory").await;
    login(&m, &base, &mallory).await;
    m.goto(&format!("{base}/#/jobs")).await.unwrap();
    let jobs = wait_for_text(&m, "#view", "Jobs").await;
    assert!(!jobs.contains(&id[..8]), "{jobs}");
    m.goto(&format!("{base}/#/jobs/{id}")).await.unwrap();
    let page = wait_for_text(&m, "#view", "no such job").await;
    assert!(!page.contains("line 0"), "{page}");
    m.goto(&format!("{base}/#/serve")).await.unwrap();
    let serve = wait_for_text(&m, "#view", "Replicas").await;
    assert!(!serve.contains("hello"), "{serve}");
    m.close().await.unwrap();

    let _ = job.kill();
    let _ = job.wait();
}

/// A head (2 CPUs, its REST API, an ingress) and two workers.
fn cluster_with_an_ingress() -> ProcCluster {
    let ingress = crate::support::unique_temp_path("dashboard-ingress.toml");
    std::fs::write(&ingress, "[ingress]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let mut c = ProcCluster::start(
        env!("CARGO_BIN_EXE_fabric"),
        &[
            "--num-cpus",
            "2",
            "--api-port",
            "0",
            "--ingress",
            ingress.to_str().unwrap(),
        ],
    );
    c.add(&["--num-cpus", "1"]);
    c.add(&["--num-cpus", "1"]);
    c
}

/// Deploys a stateless `hello` at `/hello` as the tenant of `token`.
fn deploy_hello(c: &ProcCluster, token: &str) {
    let deploy = format!(
        "[[deployment]]\nname = \"hello\"\ncomponent = \"{}\"\nhost = \"acme.example\"\nroute = \"/hello\"\npublic = true\n",
        programs::HTTP_PROXY
    );
    let deploy = c.settings_file("deploy.toml", &deploy);
    let out = c.fabric_as(
        token,
        &["serve", "deploy", &deploy, "--address", c.head_address()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The id of the tenant's one running job, once the head has it.
fn wait_for_running_job(c: &ProcCluster, token: &str) -> String {
    let api = std::fs::read_to_string(c.dir.join("node0/api_address")).unwrap();
    let ca = c.dir.join("node0/security/ca.crt");
    for _ in 0..300 {
        let (status, body) = crate::support::curl::request(
            &ca,
            "GET",
            &format!("{}/api/jobs", api.trim()),
            Some(token),
            crate::support::curl::Body::None,
        );
        if status == 200 {
            let jobs: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(j) = jobs
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["status"] == "RUNNING")
            {
                return j["job_id"].as_str().unwrap().to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the job never ran");
}
