//! HTTP requests made with curl (a real HTTP client, as an operator's or a
//! CI system's): to a node's `https://127.0.0.1:PORT` endpoints under the
//! cluster's certificate name, trusting only the cluster's CA.

use std::path::Path;
use std::process::Command;

/// What a request sends.
pub enum Body<'a> {
    None,
    /// A file's bytes (`--data-binary @file`).
    File(&'a Path),
    /// JSON text.
    Json(&'a str),
}

/// Makes one request; returns (HTTP status, body). `ca` is the cluster's
/// `ca.crt`, for `https` URLs.
pub fn request(
    ca: &Path,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Body,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--max-time",
        "60",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    let url = match url.strip_prefix("https://127.0.0.1:") {
        Some(rest) => {
            let port = rest.split('/').next().unwrap();
            cmd.arg("--cacert")
                .arg(ca)
                .args(["--resolve", &format!("wasmfabric.cluster:{port}:127.0.0.1")]);
            format!("https://wasmfabric.cluster:{rest}")
        }
        None => url.to_string(),
    };
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    match body {
        Body::None => {}
        Body::File(path) => {
            cmd.arg("--data-binary").arg(format!("@{}", path.display()));
        }
        Body::Json(text) => {
            cmd.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                text,
            ]);
        }
    }
    let out = cmd.arg(&url).output().expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
