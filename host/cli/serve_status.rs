//! `fabric serve status URL`: the deployments a running `fabric serve`
//! answers for, and how each is doing: its replicas (running and starting),
//! requests at them and queued, requests answered by status class, and
//! latency. It reads the ingress's `GET /-/deployments`, which needs the
//! ingress's metrics token (`[ingress] metrics_token_file`).
//!
//! ```text
//! $ fabric serve status http://127.0.0.1:8000 --token-file token
//! NAME  TENANT  ROUTE  REPLICAS  ONGOING  QUEUED  2XX  4XX  5XX  P50 MS  P99 MS
//! echo  local   /echo  2         0        0       12   1    0    0.5     2.5
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use http_body_util::BodyExt;

#[derive(Args)]
pub struct ServeStatusArgs {
    /// The ingress (`http://HOST:PORT`, as `fabric serve` printed it).
    #[arg(value_name = "URL")]
    pub url: String,

    /// The file holding the ingress's metrics token.
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,

    /// Print the ingress's JSON as it came.
    #[arg(long)]
    pub json: bool,
}

pub fn status(args: ServeStatusArgs) -> anyhow::Result<ExitCode> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read {}", args.token_file.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = runtime
        .block_on(get(&args.url, "/-/deployments", token.trim()))
        .with_context(|| format!("cannot read the deployments of {}", args.url))?;
    if args.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let answer: serde_json::Value =
        serde_json::from_str(&body).context("the ingress answered no deployments")?;
    print_table(answer["deployments"].as_array().map_or(&[][..], |d| d));
    Ok(ExitCode::SUCCESS)
}

/// `GET path` of the ingress at `url` with `token`, its body as text.
async fn get(url: &str, path: &str, token: &str) -> anyhow::Result<String> {
    let Some(authority) = url.strip_prefix("http://") else {
        bail!(
            "`{url}` is not an http:// URL (for an HTTPS ingress, ask it with curl: \
             curl --cacert CA -H 'Authorization: Bearer TOKEN' URL/-/deployments)"
        );
    };
    let authority = authority.trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        bail!("the ingress answered {status}: {}", text.trim());
    }
    Ok(text)
}

fn print_table(deployments: &[serde_json::Value]) {
    if deployments.is_empty() {
        println!("no deployments");
        return;
    }
    let header = [
        "NAME", "TENANT", "ROUTE", "REPLICAS", "ONGOING", "QUEUED", "2XX", "4XX", "5XX", "P50 MS",
        "P99 MS",
    ];
    let rows: Vec<Vec<String>> = deployments.iter().map(row).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn row(d: &serde_json::Value) -> Vec<String> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let route = match d["host"].as_str() {
        Some(host) => format!("{host}{}", text(&d["route"])),
        None => text(&d["route"]),
    };
    let replicas = match d["starting"].as_u64() {
        Some(n) if n > 0 => format!("{} (+{n} starting)", text(&d["replicas"])),
        _ => text(&d["replicas"]),
    };
    let ms = |v: &serde_json::Value| v.as_f64().map_or("-".into(), |ms| format!("{ms}"));
    vec![
        text(&d["name"]),
        text(&d["tenant"]),
        route,
        replicas,
        text(&d["ongoing"]),
        text(&d["queued"]),
        text(&d["requests"]["2xx"]),
        text(&d["requests"]["4xx"]),
        text(&d["requests"]["5xx"]),
        ms(&d["p50_ms"]),
        ms(&d["p99_ms"]),
    ]
}
