//! `fabric __compile` (hidden): the bounded compiler process a node starts
//! to compile an untrusted component (see `fabric_host::runtime::compile`).

use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct CompileArgs {
    #[arg(long)]
    pub cpu_secs: u64,
    #[arg(long)]
    pub memory: u64,
    #[arg(long)]
    pub settings: String,
    /// The input starts with a function pack (see
    /// `fabric_host::runtime::function_pack`).
    #[arg(long)]
    pub functions: bool,
}

pub fn compile(args: CompileArgs) -> anyhow::Result<ExitCode> {
    let code = fabric_host::runtime::compile::child_main(
        args.cpu_secs,
        args.memory,
        &args.settings,
        args.functions,
    );
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
