//! Client tokens: the admin's, and one per tenant, each mapped to who it
//! speaks for. Only SHA-256 hashes of tokens are stored; the tokens
//! themselves are shown once, when made.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use super::random_token;
use crate::error::NodeError;
use crate::quota::Quota;

/// Who a client call speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The operator: manages tenants, sees everything, runs jobs as tenant
    /// `admin`.
    Admin,
    Tenant(Arc<str>),
}

impl Principal {
    /// The tenant the caller's jobs run as.
    pub fn tenant(&self) -> &str {
        match self {
            Principal::Admin => "admin",
            Principal::Tenant(t) => t,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }
}

/// A tenant as the operator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantRecord {
    pub name: String,
    pub quota: Quota,
}

/// A newly made admin token (shown once, then only its hash is kept).
pub struct AdminToken(pub String);

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Stored {
    admin_sha256: String,
    #[serde(default)]
    tenants: BTreeMap<String, StoredTenant>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct StoredTenant {
    token_sha256: String,
    #[serde(default)]
    quota: Quota,
}

/// The head's token registry, kept in a file (when it has one).
pub struct Tokens {
    stored: RwLock<Stored>,
    file: Option<PathBuf>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

fn hash(token: &str) -> String {
    Sha256::digest(token.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Tenant names: 1 to 63 of `a-z 0-9 - _`, starting with a letter or digit;
/// `admin` and `local` are taken.
pub fn valid_tenant_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(format!(
            "`{name}` is not a tenant name: use 1 to 63 of a-z, 0-9, `-`, `_`, starting with a letter or digit"
        ));
    }
    if matches!(name, "admin" | "local") {
        return Err(format!("`{name}` is reserved"));
    }
    Ok(())
}

impl Tokens {
    /// A registry in memory only, with `admin_token` as the admin's.
    pub fn in_memory(admin_token: &str) -> Self {
        Tokens {
            stored: RwLock::new(Stored {
                admin_sha256: hash(admin_token),
                tenants: BTreeMap::new(),
            }),
            file: None,
        }
    }

    /// The registry kept in `path`; on first use (no file yet) it makes the
    /// admin token and returns it, the only time it is ever shown.
    pub fn open(path: &Path) -> Result<(Self, Option<AdminToken>), NodeError> {
        let io = |what: &str, e: std::io::Error| {
            NodeError::Config(format!("cannot {what} {}: {e}", path.display()))
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let stored: Stored = toml::from_str(&text).map_err(|e| {
                    NodeError::Config(format!("invalid token file {}: {e}", path.display()))
                })?;
                Ok((
                    Tokens {
                        stored: RwLock::new(stored),
                        file: Some(path.to_path_buf()),
                    },
                    None,
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = random_token("fadm_");
                let tokens = Tokens {
                    stored: RwLock::new(Stored {
                        admin_sha256: hash(&token),
                        tenants: BTreeMap::new(),
                    }),
                    file: Some(path.to_path_buf()),
                };
                tokens.save()?;
                Ok((tokens, Some(AdminToken(token))))
            }
            Err(e) => Err(io("read", e)),
        }
    }

    fn save(&self) -> Result<(), NodeError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let text = toml::to_string(&*self.stored.read()).expect("plain data serializes");
        write_private(path, text.as_bytes())
    }

    /// Who `token` speaks for, if anyone.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let h = hash(token);
        let stored = self.stored.read();
        if super::constant_time_eq(h.as_bytes(), stored.admin_sha256.as_bytes()) {
            return Some(Principal::Admin);
        }
        stored
            .tenants
            .iter()
            .find(|(_, t)| super::constant_time_eq(h.as_bytes(), t.token_sha256.as_bytes()))
            .map(|(name, _)| Principal::Tenant(name.as_str().into()))
    }

    /// Who a client call speaks for, from its `authorization: Bearer` header.
    pub fn authorize<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.authorize_headers(request.metadata().as_ref())
    }

    /// [`Tokens::authorize`] from a request's HTTP headers alone (before its
    /// body is read).
    pub fn authorize_headers(&self, headers: &http::HeaderMap) -> Result<Principal, Status> {
        let header = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated("this call needs a token (authorization: Bearer ...)")
            })?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            Status::unauthenticated("the authorization header must be `Bearer <token>`")
        })?;
        self.authenticate(token)
            .ok_or_else(|| Status::unauthenticated("the token is not valid for this cluster"))
    }

    /// Makes tenant `name` and returns its token (shown only now).
    pub fn add_tenant(&self, name: &str, quota: Quota) -> Result<String, NodeError> {
        valid_tenant_name(name).map_err(NodeError::Config)?;
        quota.validate().map_err(NodeError::Config)?;
        let token = random_token("ften_");
        {
            let mut stored = self.stored.write();
            if stored.tenants.contains_key(name) {
                return Err(NodeError::Config(format!("tenant `{name}` already exists")));
            }
            stored.tenants.insert(
                name.to_string(),
                StoredTenant {
                    token_sha256: hash(&token),
                    quota,
                },
            );
        }
        self.save()?;
        Ok(token)
    }

    /// Replaces tenant `name`'s quota.
    pub fn set_quota(&self, name: &str, quota: Quota) -> Result<(), NodeError> {
        quota.validate().map_err(NodeError::Config)?;
        {
            let mut stored = self.stored.write();
            let t = stored
                .tenants
                .get_mut(name)
                .ok_or_else(|| NodeError::Config(format!("no tenant `{name}`")))?;
            t.quota = quota;
        }
        self.save()
    }

    /// Every tenant and its quota.
    pub fn tenants(&self) -> Vec<TenantRecord> {
        self.stored
            .read()
            .tenants
            .iter()
            .map(|(name, t)| TenantRecord {
                name: name.clone(),
                quota: t.quota.clone(),
            })
            .collect()
    }

    /// Tenant `name`'s quota (unlimited for `admin` and unknown names).
    pub fn quota(&self, name: &str) -> Quota {
        self.stored
            .read()
            .tenants
            .get(name)
            .map(|t| t.quota.clone())
            .unwrap_or_default()
    }
}

/// Writes `bytes` to `path` readable by its owner only (0600), atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| NodeError::Config(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_their_principal_and_persist_only_hashes() {
        let dir = std::env::temp_dir().join(format!("fabric-tokens-{}", rand::random::<u64>()));
        let path = dir.join("tokens.toml");
        let (tokens, admin) = Tokens::open(&path).unwrap();
        let admin = admin.expect("first open makes the admin token").0;
        assert_eq!(tokens.authenticate(&admin), Some(Principal::Admin));
        let t = tokens.add_tenant("acme", Quota::default()).unwrap();
        assert_eq!(
            tokens.authenticate(&t),
            Some(Principal::Tenant("acme".into()))
        );
        assert_eq!(tokens.authenticate("nope"), None);
        assert!(tokens.add_tenant("acme", Quota::default()).is_err());
        assert!(tokens.add_tenant("Bad Name", Quota::default()).is_err());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&admin) && !text.contains(&t),
            "tokens are never stored"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, none) = Tokens::open(&path).unwrap();
        assert!(none.is_none(), "the admin token is shown once");
        assert_eq!(
            again.authenticate(&t),
            Some(Principal::Tenant("acme".into()))
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
