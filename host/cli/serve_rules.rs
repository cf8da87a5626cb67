//! What a head started by `fabric start --head` knows of Serve: how to read
//! a deployment a tenant deploys (`fabric serve deploy`), the route it
//! claims, and the hosts the operator reserved (`--serve-reserved-host`).
//! The head reaches it through its `ServeRules` port.

use fabric_host::head::{RouteClaim, ServeRecord, ServeRules};
use fabric_host::serve::config::DeploymentConfig;

/// The rules of the Serve layer, for the head.
pub struct Rules {
    reserved: Vec<String>,
}

impl Rules {
    /// Rules reserving `hosts` for the operator's deployments.
    pub fn new(hosts: &[String]) -> anyhow::Result<Self> {
        let mut reserved = Vec::with_capacity(hosts.len());
        for h in hosts {
            let host = normal_host(h);
            if host.is_empty() || host.contains(['/', ' ', ':']) {
                anyhow::bail!("`{h}` is not a host name (--serve-reserved-host)");
            }
            reserved.push(host);
        }
        Ok(Rules { reserved })
    }
}

/// A host as the ingress compares them: lower case, no trailing dot.
fn normal_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl ServeRules for Rules {
    fn claim(&self, r: &ServeRecord) -> Result<RouteClaim, String> {
        let d = DeploymentConfig::parse_one(&r.config)?;
        if d.name != r.name {
            return Err(format!("its table is named `{}`", d.name));
        }
        if d.tenant.is_some() {
            return Err("`tenant` is set by the token that deploys it: leave it out".into());
        }
        match (d.token_file.is_some(), &r.token) {
            (true, None) => return Err("its route wants a token, and none came".into()),
            (false, Some(_)) => return Err("a public route takes no token".into()),
            (true, Some(t)) if t.trim().len() < 16 => {
                return Err("its route's token is under 16 characters".into());
            }
            _ => {}
        }
        fabric_host::manifest::JobManifest::parse(&r.manifest)
            .map_err(|e| format!("its manifest: {e}"))?;
        Ok(RouteClaim {
            host: d.host.as_deref().map(normal_host),
            prefix: d.route.trim_end_matches('/').to_string(),
        })
    }

    fn reserved_hosts(&self) -> &[String] {
        &self.reserved
    }
}
