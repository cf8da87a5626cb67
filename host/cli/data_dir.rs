//! The data directory of the nodes started on this machine: one file per
//! running node (`nodes/<pid>`: its id and address; `metrics/<pid>`: where
//! it serves metrics, when it does), the head's address,
//! its credentials and durable state (`head.redb`), and the logs of nodes
//! started in the background.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The default data directory (like Ray's /tmp/ray).
pub const DEFAULT: &str = "/tmp/fabric";

pub fn nodes_dir(dir: &Path) -> PathBuf {
    dir.join("nodes")
}

/// The head's credentials: the cluster join file, CA certificate, tokens.
pub fn security_dir(dir: &Path) -> PathBuf {
    dir.join("security")
}

/// The head's durable cluster state (nodes, actors, jobs).
pub fn head_state_file(dir: &Path) -> PathBuf {
    dir.join("head.redb")
}

pub fn logs_dir(dir: &Path) -> PathBuf {
    dir.join("logs")
}

/// Records a running node (its process id, node id and address).
pub fn write_node(
    dir: &Path,
    pid: u32,
    node_id: &str,
    address: &str,
    is_head: bool,
) -> anyhow::Result<()> {
    let nodes = nodes_dir(dir);
    std::fs::create_dir_all(&nodes)
        .with_context(|| format!("cannot create {}", nodes.display()))?;
    let role = if is_head { "head" } else { "worker" };
    write_whole(
        &nodes.join(pid.to_string()),
        &format!("{node_id} {address} {role}\n"),
    )?;
    if is_head {
        write_whole(&dir.join("head_address"), &format!("{address}\n"))?;
    }
    Ok(())
}

/// Writes `text` to `path` so that a reader sees all of it or none (other
/// processes read these files while nodes start): a temporary file beside
/// it, then a rename.
fn write_whole(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub fn remove_node(dir: &Path, pid: u32) {
    let _ = std::fs::remove_file(nodes_dir(dir).join(pid.to_string()));
    let _ = std::fs::remove_file(dir.join("metrics").join(pid.to_string()));
}

/// Records where the head serves the Jobs API (`api_address`).
pub fn write_api_address(dir: &Path, url: &str) -> anyhow::Result<()> {
    write_whole(&dir.join("api_address"), &format!("{url}\n"))
}

/// Records where a running node serves its metrics (`metrics/<pid>`).
pub fn write_metrics(dir: &Path, pid: u32, url: &str) -> anyhow::Result<()> {
    let metrics = dir.join("metrics");
    std::fs::create_dir_all(&metrics)
        .with_context(|| format!("cannot create {}", metrics.display()))?;
    write_whole(&metrics.join(pid.to_string()), &format!("{url}\n"))
}

/// The nodes recorded as running here: (pid, node id, address, role).
pub fn read_nodes(dir: &Path) -> Vec<(u32, String, String, String)> {
    let Ok(entries) = std::fs::read_dir(nodes_dir(dir)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(e.path()).ok()?;
            let mut parts = text.split_whitespace();
            Some((
                pid,
                parts.next()?.to_string(),
                parts.next()?.to_string(),
                parts.next().unwrap_or("worker").to_string(),
            ))
        })
        .collect()
}

/// The head address: the flag, else $FABRIC_ADDRESS (clap fills it), else
/// the head started on this machine.
pub fn head_address(flag: Option<String>, dir: &Path) -> anyhow::Result<String> {
    if let Some(a) = flag {
        return Ok(a);
    }
    let file = dir.join("head_address");
    std::fs::read_to_string(&file)
        .map(|s| s.trim().to_string())
        .map_err(|_| anyhow::anyhow!("no head address: pass --address HOST:PORT (or set FABRIC_ADDRESS), or start a head here with `fabric start --head`"))
}
