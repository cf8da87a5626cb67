//! `fabric`: run WebAssembly components as Ray-style tasks and actors.
//!
//! ```text
//! fabric run app.wasm [--num-cpus N] [--num-gpus N] [--resources k=v,..] [-- ARGS]
//! ```

mod allocator;
mod build_app;
mod cli;
mod compile;
mod data_dir;
mod drain;
mod endpoint_args;
mod flatten;
mod head_client;
mod job;
mod logs;
mod node_args;
mod progress;
mod project;
mod python;
mod run;
mod serve;
mod serve_delete;
mod serve_deploy;
mod serve_deployments;
mod serve_follow;
mod serve_list;
mod serve_rules;
mod serve_status;
mod start;
mod status;
mod stop;
mod submit;
mod tenant;
mod timeline;

use std::process::ExitCode;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() -> ExitCode {
    allocator::configure();
    let cli = cli::Cli::parse();
    cli::init_tracing(cli.log_level.as_deref());
    match cli.command.run() {
        Ok(code) => code,
        Err(err) => {
            cli::report(&err);
            ExitCode::from(2)
        }
    }
}
