//! `fabric submit`: run a job on a cluster and stream its output back.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wasmfabric_proto::v1 as pb;

use crate::head_client::{self, ClientArgs};

#[derive(Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// The job manifest (TOML): the limits and capabilities it asks for.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// The application: a component, or a Cargo project or Python file to
    /// build first.
    pub app: PathBuf,

    #[command(flatten)]
    pub python: crate::python::PythonArgs,

    /// Arguments for the driver.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// One line of the job's output, around the progress line.
fn print_line(progress: &crate::progress::Progress, l: pb::LogLine) {
    let mut line = l.prefix.into_bytes();
    line.extend_from_slice(&l.line);
    line.push(b'\n');
    progress.around(|| {
        let _ = if l.stderr {
            std::io::stderr().write_all(&line)
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(&line).and_then(|()| out.flush())
        };
    });
}

pub fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let manifest = crate::run::read_manifest(args.manifest.as_deref())?;
    let components =
        crate::project::manifest_components(args.manifest.as_deref(), &manifest, &args.python)?
            .into_iter()
            .map(|(name, bytes)| pb::NamedComponent {
                name,
                component: bytes.into(),
            })
            .collect();
    let path = crate::project::component_path(&args.app, &args.python)?;
    let component =
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    fabric_host::runtime::component::check_header(&component)
        .with_context(|| format!("cannot submit {}", path.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let progress = crate::progress::Progress::on_terminal();
    runtime.block_on(async move {
        let mut head = head_client::connect(&args.client).await?;
        let request = pb::SubmitJobRequest {
            component: component.into(),
            args: args.args.clone(),
            manifest,
            components,
        };
        let mut events = head
            .submit_job(request)
            .await
            .map_err(head_client::status_error)
            .context("the head refused the job")?
            .into_inner();
        while let Some(event) = events
            .message()
            .await
            .context("the job's output stream broke")?
        {
            match event.kind {
                Some(pb::job_event::Kind::Started(s)) => {
                    let id: String = s.job_id.iter().map(|b| format!("{b:02x}")).collect();
                    tracing::info!(job = %id, "job started");
                    eprintln!("job {id} started (its output: fabric logs {id})");
                }
                Some(pb::job_event::Kind::Log(l)) => print_line(&progress, l),
                Some(pb::job_event::Kind::Progress(p)) => {
                    progress.update(crate::progress::Counts {
                        submitted: p.submitted,
                        succeeded: p.succeeded,
                        failed: p.failed,
                    });
                }
                Some(pb::job_event::Kind::Finished(f)) => {
                    progress.finish();
                    if f.ok {
                        return Ok(ExitCode::SUCCESS);
                    }
                    // Typed again, so a broken limit is named with its value.
                    match f.error {
                        Some(e) => {
                            eprintln!("error: the job failed: {}", fabric_host::error_from_pb(&e))
                        }
                        None => eprintln!("error: the job failed"),
                    }
                    return Ok(ExitCode::from(1));
                }
                None => {}
            }
        }
        anyhow::bail!("the head closed the job's stream before it finished")
    })
}
