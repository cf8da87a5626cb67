//! `fabric build`: build an application into a component without running
//! it (a Cargo project with cargo, a Python file with componentize-py), and
//! print where the component is.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Args)]
pub struct BuildArgs {
    /// The application: a Cargo project directory or a Python file.
    pub app: PathBuf,

    #[command(flatten)]
    pub python: crate::python::PythonArgs,

    /// Copy the component here as well.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let built = crate::project::component_path(&args.app, &args.python)?;
    let bytes =
        std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
    fabric_host::runtime::component::check_header(&bytes)
        .with_context(|| format!("{} is not a component", built.display()))?;
    let path = match args.output {
        Some(out) => {
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            out
        }
        None => built,
    };
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}
