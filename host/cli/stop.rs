//! `fabric stop`: stop the nodes started on this machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use crate::data_dir;

#[derive(Args)]
pub struct StopArgs {
    /// The data directory the nodes were started with.
    #[arg(long, default_value = data_dir::DEFAULT, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Kill at once (SIGKILL) instead of letting nodes leave the cluster.
    #[arg(long)]
    pub force: bool,
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

pub fn stop(args: StopArgs) -> anyhow::Result<ExitCode> {
    let nodes = data_dir::read_nodes(&args.data_dir);
    if nodes.is_empty() {
        println!("no nodes are running from {}", args.data_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let signal = if args.force {
        libc::SIGKILL
    } else {
        libc::SIGTERM
    };
    for (pid, id, address, role) in &nodes {
        if alive(*pid) {
            // SAFETY: sending a signal to a process id we recorded.
            unsafe { libc::kill(*pid as libc::pid_t, signal) };
            println!(
                "stopping {role} node {} at {address} (pid {pid})",
                &id[..8.min(id.len())]
            );
        } else {
            data_dir::remove_node(&args.data_dir, *pid);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes.iter().any(|n| alive(n.0)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (pid, ..) in &nodes {
        if alive(*pid) {
            // SAFETY: as above; it did not stop in time.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
        data_dir::remove_node(&args.data_dir, *pid);
    }
    let _ = std::fs::remove_file(args.data_dir.join("head_address"));
    Ok(ExitCode::SUCCESS)
}
