//! Job manifests and what they may grant: limits and capabilities.
//!
//! A guest starts with nothing: no files, no environment, no sockets. A job
//! manifest (TOML; unknown keys are errors) asks for limits (see
//! [`crate::limits`]) and grants capabilities: preopened directories
//! (read-only or read-write), environment variables, and outbound network
//! destinations. The operator's [`Policy`] says what may be granted at all;
//! a manifest asking for more is refused before the job starts.
//!
//! ```
//! use fabric_runtime::manifest::{JobManifest, Policy};
//! let m = JobManifest::parse(r#"
//!     [limits]
//!     memory = "256 MiB"
//!     cpu-time = "10s"
//!     [capabilities]
//!     env = { MODE = "test" }
//!     network = ["example.com:443"]
//!     [[capabilities.dir]]
//!     host = "/srv/data"
//!     guest = "/data"
//! "#).unwrap();
//! assert_eq!(m.limits.memory, Some(256 << 20));
//! assert!(Policy::default().check(&m.capabilities).is_err(), "nothing is grantable by default");
//! assert!(Policy::allow_all().check(&m.capabilities).is_ok());
//! assert!(JobManifest::parse("[limits]\nmemroy = 1").is_err(), "unknown keys are errors");
//! ```

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::FabricError;
use crate::limits::LimitsRequest;

/// A job's manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobManifest {
    #[serde(default)]
    pub limits: LimitsRequest,
    #[serde(default)]
    pub capabilities: Capabilities,
    /// The job's other components: name to path (read by the client that
    /// submits the job, relative to the manifest's directory; a `.py` file
    /// is built first). A call of `name/function` or `name/Class` runs in
    /// component `name`, whatever its language.
    #[serde(default)]
    pub components: BTreeMap<String, String>,
}

impl JobManifest {
    pub fn parse(text: &str) -> Result<Self, FabricError> {
        toml::from_str(text)
            .map_err(|e| FabricError::InvalidArgument(format!("invalid job manifest: {e}")))
    }
}

/// What a job's guests may touch beyond their sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Environment variables the guests see.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host directories the guests see.
    #[serde(default, rename = "dir")]
    pub dirs: Vec<DirGrant>,
    /// Outbound destinations, `host:port` (the host may be a name).
    #[serde(default)]
    pub network: Vec<String>,
    /// Model inference through `wasi:nn` (see [`crate::wasi_nn`]).
    #[serde(default)]
    pub nn: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// The directory on the node.
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
    #[serde(default)]
    pub mode: DirMode,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum DirMode {
    #[default]
    #[serde(rename = "ro")]
    ReadOnly,
    #[serde(rename = "rw")]
    ReadWrite,
}

/// What the operator lets manifests grant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Policy {
    /// Directories (and everything under them) that may be granted; a grant
    /// whose path goes through a symbolic link below one of them is refused.
    #[serde(default)]
    pub grant_dirs: Vec<PathBuf>,
    /// Network destinations that may be granted: `host:port`, where either
    /// part may be `*` and the host may be `*.domain` (any name under it).
    #[serde(default)]
    pub grant_network: Vec<String>,
    /// Whether environment variables may be granted.
    #[serde(default)]
    pub grant_env: bool,
    /// Whether guests see the cluster's load (what is free on each node and
    /// in all), which tells them how busy other tenants are. Unset, they see
    /// totals, and of what is free only what their own tenant may still use.
    #[serde(default)]
    pub show_cluster_load: bool,
    /// Whether `wasi:nn` may be granted: ONNX Runtime parses the tenant's
    /// models in native code outside the sandbox (see SECURITY.md).
    #[serde(default)]
    pub grant_nn: bool,
}

impl Policy {
    /// A policy that grants anything (a local `fabric run`, where the user
    /// is the operator).
    pub fn allow_all() -> Self {
        Policy {
            grant_dirs: vec![PathBuf::from("/")],
            grant_network: vec!["*:*".into()],
            grant_env: true,
            show_cluster_load: true,
            grant_nn: true,
        }
    }

    /// Refuses capabilities beyond the policy, naming the first.
    pub fn check(&self, caps: &Capabilities) -> Result<(), FabricError> {
        let refuse = |what: String| {
            Err(FabricError::InvalidArgument(format!(
                "the operator does not allow granting {what}"
            )))
        };
        if !caps.env.is_empty() && !self.grant_env {
            return refuse("environment variables".into());
        }
        if caps.nn && !self.grant_nn {
            return refuse("wasi-nn (model inference)".into());
        }
        if caps.dirs.len() > crate::dir_grants::MAX_DIR_GRANTS {
            return Err(FabricError::InvalidArgument(format!(
                "a job may grant at most {} directories, the manifest asks for {}",
                crate::dir_grants::MAX_DIR_GRANTS,
                caps.dirs.len()
            )));
        }
        for d in &caps.dirs {
            if let Err(why) = crate::dir_grants::allowed_by_text(&self.grant_dirs, &d.host) {
                return Err(FabricError::InvalidArgument(format!(
                    "directory grant {}: {why}",
                    d.host.display()
                )));
            }
        }
        for dest in &caps.network {
            let (host, port) = split_host_port(dest)?;
            let ok = self.grant_network.iter().any(|p| {
                let Ok((ph, pp)) = split_host_port(p) else {
                    return false;
                };
                let host_ok = ph == "*"
                    || ph.eq_ignore_ascii_case(host)
                    || ph.strip_prefix('*').is_some_and(|suffix| {
                        suffix.starts_with('.')
                            && host.len() > suffix.len()
                            && host
                                .to_ascii_lowercase()
                                .ends_with(&suffix.to_ascii_lowercase())
                    });
                host_ok && (pp == "*" || pp == port)
            });
            if !ok {
                return refuse(format!("network destination {dest}"));
            }
        }
        Ok(())
    }
}

fn split_host_port(s: &str) -> Result<(&str, &str), FabricError> {
    s.rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && !p.is_empty())
        .ok_or_else(|| FabricError::InvalidArgument(format!("`{s}` is not host:port")))
}

/// Capabilities ready to hand to each instance: directories opened (see
/// [`crate::dir_grants`]), network names resolved.
#[derive(Debug, Default)]
pub struct Granted {
    pub env: Vec<(String, String)>,
    pub dirs: Vec<crate::dir_grants::OpenedDir>,
    /// Outbound addresses the guests may connect to.
    pub network: HashSet<SocketAddr>,
    /// Whether guests may look names up (a name was granted).
    pub name_lookup: bool,
    /// Whether guests may run models (`wasi:nn`).
    pub nn: bool,
}

impl Granted {
    /// Resolves `caps` (after `policy` allowed them): opens each directory
    /// beneath the policy's roots, resolves each destination.
    pub async fn resolve(caps: &Capabilities, policy: &Policy) -> Result<Granted, FabricError> {
        let mut network = HashSet::new();
        let mut name_lookup = false;
        for dest in &caps.network {
            let (host, port) = split_host_port(dest)?;
            let port: u16 = port.parse().map_err(|_| {
                FabricError::InvalidArgument(format!("`{dest}`: a granted port must be a number"))
            })?;
            if host.parse::<std::net::IpAddr>().is_err() {
                name_lookup = true;
            }
            let addrs = tokio::net::lookup_host((host, port)).await.map_err(|e| {
                FabricError::InvalidArgument(format!(
                    "cannot resolve granted destination `{dest}`: {e}"
                ))
            })?;
            network.extend(addrs);
        }
        let dirs = caps
            .dirs
            .iter()
            .map(|d| crate::dir_grants::open_grant(&policy.grant_dirs, d))
            .collect::<Result<_, _>>()?;
        Ok(Granted {
            env: caps
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            dirs,
            network,
            name_lookup,
            nn: caps.nn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tenant's manifest nested 200,000 deep is refused by the TOML
    /// parser's own depth limit, within a stack the size of a tokio
    /// worker's (where the head and the Jobs API read manifests): kept as
    /// a guard against a `toml` upgrade that drops the limit.
    #[test]
    fn a_deeply_nested_manifest_is_refused_without_overflowing() {
        let deep = format!(
            "[capabilities]\nnetwork = {}\"x\"{}\n",
            "[".repeat(200_000),
            "]".repeat(200_000)
        );
        let read = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || JobManifest::parse(&deep).map(|_| ()))
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert!(read.unwrap_err().to_string().contains("TOML parse error"));
    }

    #[test]
    fn policy_refuses_what_it_does_not_list() {
        let policy = Policy {
            grant_dirs: vec!["/srv/data".into()],
            grant_network: vec![
                "api.svc:443".into(),
                "db:*".into(),
                "*.example.com:443".into(),
            ],
            grant_env: false,
            ..Policy::default()
        };
        let caps = |dirs: Vec<&str>, net: Vec<&str>| Capabilities {
            env: BTreeMap::new(),
            nn: false,
            dirs: dirs
                .into_iter()
                .map(|h| DirGrant {
                    host: h.into(),
                    guest: "/d".into(),
                    mode: DirMode::ReadOnly,
                })
                .collect(),
            network: net.into_iter().map(String::from).collect(),
        };
        assert!(
            policy
                .check(&caps(vec!["/srv/data/in"], vec!["db:5432"]))
                .is_ok()
        );
        assert!(
            policy
                .check(&caps(vec!["/srv/data/../../etc"], vec![]))
                .is_err(),
            "no escape with .."
        );
        assert!(policy.check(&caps(vec!["/etc"], vec![])).is_err());
        assert!(policy.check(&caps(vec![], vec!["evil:443"])).is_err());
        assert!(
            policy
                .check(&caps(vec![], vec!["a.example.com:443"]))
                .is_ok()
        );
        assert!(
            policy
                .check(&caps(vec![], vec!["example.com:443"]))
                .is_err()
        );
        assert!(
            policy
                .check(&caps(vec![], vec!["evilexample.com:443"]))
                .is_err()
        );
        assert!(
            policy
                .check(&caps(vec![], vec!["a.example.com:80"]))
                .is_err()
        );
        let mut env = caps(vec![], vec![]);
        env.env.insert("A".into(), "b".into());
        assert!(policy.check(&env).is_err());
    }
}
