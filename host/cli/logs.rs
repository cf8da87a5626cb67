//! `fabric logs JOB`: the output a job printed (its most recent lines).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wasmfabric_proto::v1 as pb;

use crate::head_client::{self, ClientArgs};

#[derive(Args)]
pub struct LogsArgs {
    /// The job id, as `fabric submit` and `fabric status` show it.
    pub job: String,

    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn parse_id(s: &str) -> anyhow::Result<Vec<u8>> {
    let s = s.trim();
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!("`{s}` is not a job id (32 hex digits)");
    }
    Ok((0..16)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("checked hex"))
        .collect())
}

pub fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&args.job)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = runtime.block_on(async {
        let mut head = head_client::connect(&args.client).await?;
        let reply = head
            .job_logs(pb::JobLogsRequest { job_id: id.into() })
            .await
            .map_err(head_client::status_error)
            .with_context(|| format!("cannot read the logs of job {}", args.job))?;
        anyhow::Ok(reply.into_inner())
    })?;
    if reply.dropped > 0 {
        eprintln!("[{} earlier lines were dropped]", reply.dropped);
    }
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for l in reply.lines {
        let w: &mut dyn Write = if l.stderr { &mut err } else { &mut out };
        let _ = w.write_all(l.prefix.as_bytes());
        let _ = w.write_all(&l.line);
        let _ = w.write_all(b"\n");
    }
    Ok(ExitCode::SUCCESS)
}
