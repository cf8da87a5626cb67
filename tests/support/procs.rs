//! A cluster of real `fabric` processes on 127.0.0.1, for the tests that
//! must cross process boundaries: each node is a `fabric start --block`
//! child with its own data directory; jobs go in with `fabric submit`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One node process.
pub struct ProcNode {
    pub child: Child,
    pub id: String,
    pub address: String,
    pub log: PathBuf,
}

/// Nodes started by a test; all are killed when it is dropped.
pub struct ProcCluster {
    pub dir: PathBuf,
    pub nodes: Vec<ProcNode>,
    bin: PathBuf,
    log_level: String,
}

fn scratch_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fabric-procs-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl ProcCluster {
    /// Starts a head with `flags` (nodes log at debug level).
    pub fn start(bin: &str, flags: &[&str]) -> Self {
        Self::start_logging(bin, "fabric_host=debug,info", flags)
    }

    /// Starts a head with `flags`; nodes log with `log_level`.
    pub fn start_logging(bin: &str, log_level: &str, flags: &[&str]) -> Self {
        let mut c = ProcCluster {
            dir: scratch_dir(),
            nodes: Vec::new(),
            bin: PathBuf::from(bin),
            log_level: log_level.to_string(),
        };
        let mut all = vec!["--head", "--port", "0"];
        all.extend_from_slice(flags);
        c.spawn_node(&all);
        c
    }

    pub fn head_address(&self) -> &str {
        &self.nodes[0].address
    }

    /// Adds a worker with `flags`; returns its index.
    pub fn add(&mut self, flags: &[&str]) -> usize {
        let head = self.head_address().to_string();
        let join = self.join_file();
        let mut all = vec!["--address", head.as_str(), "--join-file", join.as_str()];
        all.extend_from_slice(flags);
        self.spawn_node(&all);
        self.nodes.len() - 1
    }

    fn spawn_node(&mut self, flags: &[&str]) {
        let node = self.spawn_at(self.nodes.len(), flags);
        self.nodes.push(node);
        self.wait_for_alive(self.nodes.len());
    }

    /// Kills the head (SIGKILL) and starts it again with `flags` on the same
    /// data directory and port, as a head that crashed and was restarted.
    /// Waits until `alive` nodes are alive again.
    pub fn restart_head(&mut self, flags: &[&str], alive: usize) {
        self.kill(0);
        let port = self.nodes[0]
            .address
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        let mut all = vec!["--head", "--port", port.as_str()];
        all.extend_from_slice(flags);
        self.nodes[0] = self.spawn_at(0, &all);
        self.wait_for_alive(alive);
    }

    /// Starts node process `i` (its data directory is `node{i}`).
    fn spawn_at(&self, i: usize, flags: &[&str]) -> ProcNode {
        let data = self.dir.join(format!("node{i}"));
        // A restarted node logs to a new file.
        let mut log = self.dir.join(format!("node{i}.log"));
        let mut n = 1;
        while log.exists() {
            log = self.dir.join(format!("node{i}.{n}.log"));
            n += 1;
        }
        let child = Command::new(&self.bin)
            .args([
                "--log-level",
                &self.log_level,
                "start",
                "--block",
                "--heartbeat-ms",
                "100",
                "--node-timeout-ms",
                "1000",
            ])
            .args(flags)
            .arg("--data-dir")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning a node");
        let pid = child.id();
        let record = data.join("nodes").join(pid.to_string());
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&record) {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} did not start; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut parts = text.split_whitespace();
        let id = parts.next().unwrap().to_string();
        let address = parts.next().unwrap().to_string();
        ProcNode {
            child,
            id,
            address,
            log,
        }
    }

    /// The head's join file (what a worker needs to join).
    pub fn join_file(&self) -> String {
        self.dir
            .join("node0/security/cluster.join")
            .display()
            .to_string()
    }

    /// The admin token the head made on its first start.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("node0/security/admin.token"))
            .expect("the head wrote its admin token")
    }

    /// `fabric` with the admin's credentials in its environment.
    pub fn command(&self) -> Command {
        self.command_as(&self.admin_token())
    }

    /// `fabric` with `token` (and the cluster's CA) in its environment.
    pub fn command_as(&self, token: &str) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env_remove("FABRIC_ADDRESS")
            .env("FABRIC_TOKEN", token)
            .env("FABRIC_CA_CERT", self.dir.join("node0/security/ca.crt"));
        cmd
    }

    /// Runs `fabric` with `args`, as the admin.
    pub fn fabric(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("running fabric")
    }

    /// Runs `fabric` with `args`, with `token`.
    pub fn fabric_as(&self, token: &str, args: &[&str]) -> Output {
        self.command_as(token)
            .args(args)
            .output()
            .expect("running fabric")
    }

    /// Adds tenant `name` (with quota flags `extra`) as the admin; returns
    /// its token.
    pub fn add_tenant(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["tenant", "add", name, "--address", self.head_address()];
        args.extend_from_slice(extra);
        let out = self.fabric(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines()
            .nth(1)
            .map(|l| l.trim().to_string())
            .expect("the token line")
    }

    pub fn status(&self) -> String {
        let out = self.fabric(&["status", "--address", self.head_address()]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `fabric status` shows `n` live nodes.
    pub fn wait_for_alive(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.status();
            if s.contains(&format!(": {n} of ")) && s.contains(" nodes alive") {
                // Give every node a heartbeat to learn of the newcomer.
                std::thread::sleep(Duration::from_millis(300));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach {n} live nodes:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Submits `app` with `args`; (stdout, stderr, success).
    pub fn submit(&self, app: &str, args: &[&str]) -> (String, String, bool) {
        let mut all = vec!["submit", "--address", self.head_address(), app, "--"];
        all.extend_from_slice(args);
        let out = self.fabric(&all);
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.success(),
        )
    }

    /// Starts a submit in the background; its stdout lines arrive in the vector.
    pub fn submit_in_background(
        &self,
        app: &str,
        args: &[&str],
    ) -> (Child, Arc<Mutex<Vec<String>>>) {
        let mut child = self
            .command()
            .args(["submit", "--address", self.head_address(), app, "--"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("running fabric submit");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        (child, lines)
    }

    /// Kills node `i` at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, i: usize) {
        let _ = self.nodes[i].child.kill();
        let _ = self.nodes[i].child.wait();
    }

    /// Stops node `i` (SIGSTOP) without closing its connections, as a hung
    /// machine or a network partition would: only its missed heartbeats
    /// tell. Dropping the cluster still kills it.
    pub fn freeze(&mut self, i: usize) {
        let pid = self.nodes[i].child.id().to_string();
        let stopped = Command::new("kill").args(["-STOP", &pid]).status();
        assert!(stopped.is_ok_and(|s| s.success()), "kill -STOP {pid}");
    }

    /// Kills worker `i` (SIGKILL) and starts a new worker with `flags` in
    /// its place, as a crashed machine that comes back would; returns the
    /// new worker's index (indices after `i` shift down by one).
    pub fn replace(&mut self, i: usize, flags: &[&str]) -> usize {
        self.kill(i);
        self.nodes.remove(i);
        self.add(flags)
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Resident memory of node `i`'s process, in bytes.
    pub fn rss(&self, i: usize) -> u64 {
        rss_of(self.nodes[i].child.id())
    }

    /// A `Control` client of the head holding `token` (over TLS, as the CLI).
    pub async fn control(
        &self,
        token: &str,
    ) -> wasmfabric_proto::v1::control_client::ControlClient<
        tonic::codegen::InterceptedService<
            tonic::transport::Channel,
            fabric_host::security::AddToken,
        >,
    > {
        let ca = std::fs::read_to_string(self.dir.join("node0/security/ca.crt")).unwrap();
        let channel =
            tonic::transport::Endpoint::from_shared(format!("https://{}", self.head_address()))
                .unwrap()
                .tls_config(fabric_host::security::client_tls(&ca))
                .unwrap()
                .connect()
                .await
                .expect("TLS connection to the head");
        wasmfabric_proto::v1::control_client::ControlClient::with_interceptor(
            channel,
            fabric_host::security::AddToken::new(token).unwrap(),
        )
        .max_encoding_message_size(fabric_host::cluster::MAX_MESSAGE)
        .max_decoding_message_size(fabric_host::cluster::MAX_MESSAGE)
    }

    /// A node settings file in the cluster's directory, for `--config`.
    pub fn settings_file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

/// Resident memory of process `pid`, in bytes (`VmRSS`).
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb << 10)
        .unwrap_or(0)
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
