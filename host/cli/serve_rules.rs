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
            let host =
                dns_name(h).map_err(|e| anyhow::anyhow!("--serve-reserved-host `{h}`: {e}"))?;
            reserved.push(host);
        }
        Ok(Rules { reserved })
    }
}

/// A host as the ingress compares them (lower case, no trailing dot), if
/// it is a DNS name: labels of letters, digits and `-`, no port.
fn dns_name(host: &str) -> Result<String, String> {
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err("a host is a DNS name: letters, digits, `-` and `.`, no port".into());
    }
    Ok(name)
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
        match (d.token_file.is_some(), r.token_sha256.is_some()) {
            (true, false) => return Err("its route wants a token, and none came".into()),
            (false, true) => return Err("a public route takes no token".into()),
            _ => {}
        }
        fabric_host::manifest::JobManifest::parse(&r.manifest)
            .map_err(|e| format!("its manifest: {e}"))?;
        let host = d.host.as_deref().map(dns_name).transpose()?;
        if r.tenant != "admin" {
            tenant_host(host.as_deref())?;
        }
        Ok(RouteClaim {
            host,
            prefix: d.route.trim_end_matches('/').to_string(),
        })
    }

    fn reserved_hosts(&self) -> &[String] {
        &self.reserved
    }
}

/// What a tenant's route may name: a host of its own. Only the operator's
/// (admin) deployments answer any host, and a tenant's host names a
/// domain: not a single label (`localhost`) nor an IP address, which are
/// how clients reach the ingress itself.
fn tenant_host(host: Option<&str>) -> Result<(), String> {
    let Some(host) = host else {
        return Err(
            "a tenant's route names its host (`host = \"...\"`): only the \
                    operator's deployments answer any host"
                .into(),
        );
    };
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 || labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "`{host}` is the ingress's own kind of name (one label or an IP address): a \
             tenant's host is a domain name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{dns_name, tenant_host};

    #[test]
    fn a_tenants_host_is_a_domain_name() {
        assert!(tenant_host(Some("acme.example")).is_ok());
        for bad in [None, Some("localhost"), Some("127.0.0.1"), Some("10.0.0.1")] {
            assert!(tenant_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hosts_are_dns_names() {
        assert_eq!(
            dns_name("Api.Example.COM.").as_deref(),
            Ok("api.example.com")
        );
        assert_eq!(dns_name("10.0.0.1").as_deref(), Ok("10.0.0.1"));
        for bad in [
            "",
            ".",
            "a..b",
            "a.example:80",
            "a b",
            "é.example",
            "a/b",
            "[::1]",
        ] {
            assert!(dns_name(bad).is_err(), "{bad:?}");
        }
    }
}
