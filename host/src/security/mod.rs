//! Who may talk to a cluster: TLS for every connection, a cluster secret
//! between nodes, and bearer tokens for clients.
//!
//! A cluster has one [`ClusterSecurity`]: a private certificate authority,
//! a node certificate it signed (for the name [`CLUSTER_DOMAIN`], shared by
//! every node), and a random secret. The head makes it on its first start
//! and writes it to a *join file*; a worker needs that file to join. Every
//! gRPC connection is TLS (rustls) verified against the cluster's CA; every
//! node-to-node call carries the secret in [`SECRET_HEADER`]; every client
//! call carries `authorization: Bearer <token>`, checked by [`Tokens`].
//! There is no switch that turns any of this off.
//!
//! ```
//! use fabric_host::security::ClusterSecurity;
//! let sec = ClusterSecurity::generate().unwrap();
//! let again = ClusterSecurity::from_join_file(&sec.to_join_file()).unwrap();
//! assert_eq!(sec, again);
//! assert!(ClusterSecurity::from_join_file("secret = 1").is_err());
//! ```

mod tokens;

pub use tokens::{AdminToken, Principal, TenantRecord, Tokens, valid_tenant_name, write_private};

use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};

use crate::error::NodeError;
use tokio_rustls::rustls;

/// The name every node's certificate is issued for (and every client
/// verifies), whatever address the node is reached at.
pub const CLUSTER_DOMAIN: &str = "wasmfabric.cluster";

/// The metadata key that carries the cluster secret between nodes.
pub const SECRET_HEADER: &str = "x-fabric-cluster-secret";

/// A cluster's shared credentials. Hold it as a secret: whoever has it can
/// join the cluster as a node.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterSecurity {
    /// Shared by the nodes; proves a caller is one of them.
    pub secret: String,
    /// The cluster's CA certificate (PEM): what clients trust.
    pub ca_cert: String,
    /// The nodes' certificate (PEM), signed by the CA.
    pub node_cert: String,
    /// The nodes' private key (PEM).
    pub node_key: String,
}

impl std::fmt::Debug for ClusterSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecurity { .. }")
    }
}

impl ClusterSecurity {
    /// Fresh credentials: a new CA, node certificate and secret.
    pub fn generate() -> Result<Self, NodeError> {
        let bad = |e: rcgen::Error| {
            NodeError::Config(format!("cannot make the cluster certificate: {e}"))
        };
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wasmfabric cluster CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate().map_err(bad)?;
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(bad)?;
        let mut node_params =
            rcgen::CertificateParams::new(vec![CLUSTER_DOMAIN.to_string()]).map_err(bad)?;
        node_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, CLUSTER_DOMAIN);
        let node_key = rcgen::KeyPair::generate().map_err(bad)?;
        let node_cert = node_params.signed_by(&node_key, &ca).map_err(bad)?;
        Ok(ClusterSecurity {
            secret: random_token("fcs_"),
            ca_cert: ca.pem(),
            node_cert: node_cert.pem(),
            node_key: node_key.serialize_pem(),
        })
    }

    /// The join file's text (TOML).
    pub fn to_join_file(&self) -> String {
        toml::to_string(self).expect("plain strings serialize")
    }

    /// Reads a join file; unknown keys are errors.
    pub fn from_join_file(text: &str) -> Result<Self, NodeError> {
        toml::from_str(text)
            .map_err(|e| NodeError::Config(format!("invalid cluster join file: {e}")))
    }

    /// What a node serves with.
    pub fn server_tls(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(Identity::from_pem(&self.node_cert, &self.node_key))
    }

    /// What a client holding the CA connects with.
    pub fn client_tls(&self) -> ClientTlsConfig {
        client_tls(&self.ca_cert)
    }

    /// What a node connects to its peers with: the cluster's CA, and the
    /// node certificate as its own (which tells peers it is a node).
    pub fn peer_tls(&self) -> ClientTlsConfig {
        client_tls(&self.ca_cert).identity(Identity::from_pem(&self.node_cert, &self.node_key))
    }
}

impl ClusterSecurity {
    /// The token a scraper shows a node's metrics endpoint: derived from
    /// the cluster secret (one way), so every node knows it without being
    /// told, and knowing it gives nothing else.
    pub fn scrape_token(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"wasmfabric metrics scrape token v1\0");
        h.update(self.secret.as_bytes());
        let digest = h.finalize();
        let mut s = String::from("fmt_");
        for b in digest {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// TLS for the node's HTTPS endpoints (metrics): the node certificate,
    /// HTTP/1.1, no client certificate asked.
    pub fn https_config(&self) -> Result<std::sync::Arc<rustls::ServerConfig>, NodeError> {
        crate::https::tls_config(
            self.node_cert.as_bytes(),
            self.node_key.as_bytes(),
            &[b"http/1.1"],
        )
    }
}

/// TLS settings that trust only the cluster CA `ca_pem`.
pub fn client_tls(ca_pem: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(CLUSTER_DOMAIN)
}

/// A random token: `prefix` and 64 hex digits (256 bits).
pub(crate) fn random_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    let mut s = String::with_capacity(prefix.len() + 64);
    s.push_str(prefix);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Equal without revealing where two secrets differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `headers` carry `Authorization: Bearer <token>` (compared in
/// constant time).
pub(crate) fn bearer_is(headers: &http::HeaderMap, token: &str) -> bool {
    bearer(headers).is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Adds the cluster secret to every call a node makes to another.
#[derive(Clone)]
pub(crate) struct AddSecret(pub MetadataValue<tonic::metadata::Ascii>);

impl AddSecret {
    pub(crate) fn new(secret: &str) -> Result<Self, NodeError> {
        secret
            .parse()
            .map(AddSecret)
            .map_err(|_| NodeError::Config("the cluster secret is not plain ASCII".into()))
    }
}

impl tonic::service::Interceptor for AddSecret {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert(SECRET_HEADER, self.0.clone());
        Ok(request)
    }
}

/// Admits only calls that carry the cluster secret (the calls nodes make).
#[derive(Clone)]
pub(crate) struct RequireSecret(pub std::sync::Arc<str>);

impl tonic::service::Interceptor for RequireSecret {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let given = request
            .metadata()
            .get(SECRET_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, self.0.as_bytes()) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "this is a node-to-node call: it needs the cluster secret",
            ))
        }
    }
}

/// Adds `authorization: Bearer <token>` to every call a client makes.
#[derive(Clone)]
pub struct AddToken(MetadataValue<tonic::metadata::Ascii>);

impl AddToken {
    pub fn new(token: &str) -> Result<Self, NodeError> {
        format!("Bearer {}", token.trim())
            .parse()
            .map(AddToken)
            .map_err(|_| NodeError::Config("the token is not plain ASCII".into()))
    }
}

impl tonic::service::Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        let t = random_token("x_");
        assert_eq!(t.len(), 66);
        assert_ne!(t, random_token("x_"));
    }
}
