//! Browser sessions of the dashboard: a browser cannot send a bearer token
//! when it navigates, so the login page exchanges a token for a session
//! cookie (`HttpOnly`, `Secure`, `SameSite=Strict`), and every request
//! that changes something (stop, delete, submit) must also send the
//! session's CSRF token in a header, which another site cannot read.
//!
//! Sessions are bounded: at most [`PER_PRINCIPAL`] per tenant (the oldest
//! goes), [`MAX_SESSIONS`] in all (the least recently used goes, so no
//! one's logins, the admin's included, can be locked out), each ending
//! [`IDLE`] after its last use and [`LIFETIME`] after login.
//!
//! ```
//! use fabric_host::head::dashboard::session::Sessions;
//! use fabric_host::security::Principal;
//! let sessions = Sessions::default();
//! let (id, csrf) = sessions.open(Principal::Tenant("acme".into()));
//! let s = sessions.find(&id).unwrap();
//! assert_eq!(s.principal, Principal::Tenant("acme".into()));
//! assert!(s.csrf_is(&csrf) && !s.csrf_is("forged"));
//! sessions.close(&id);
//! assert!(sessions.find(&id).is_none());
//! ```

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::security::Principal;

/// The cookie that carries a session. The `__Host-` prefix makes browsers
/// refuse it unless it is `Secure`, for `Path=/` and this host only, so
/// another service on the same host cannot plant or shadow it.
pub const COOKIE: &str = "__Host-fabric_session";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions one tenant (or the admin) may hold.
pub const PER_PRINCIPAL: usize = 16;
/// Sessions in all.
pub const MAX_SESSIONS: usize = 1024;
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after its login, however used.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

struct Entry {
    principal: Principal,
    csrf: String,
    opened: Instant,
    used: Instant,
}

/// A session found by its cookie.
#[derive(Clone, Debug)]
pub struct Session {
    pub principal: Principal,
    csrf: String,
}

impl Session {
    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_is(&self, given: &str) -> bool {
        crate::security::constant_time_eq(given.as_bytes(), self.csrf.as_bytes())
    }

    /// The CSRF token, for the page to send back.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The head's dashboard sessions, by the SHA-256 of their ids (a session
/// id is a secret like a token).
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Entry>>);

fn key(id: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn live(e: &Entry) -> bool {
    e.used.elapsed() < IDLE && e.opened.elapsed() < LIFETIME
}

impl Sessions {
    /// Opens a session for `principal`; returns its id (the cookie's
    /// value) and its CSRF token.
    pub fn open(&self, principal: Principal) -> (String, String) {
        let mut all = self.0.lock();
        all.retain(|_, e| live(e));
        let mine: Vec<(String, Instant)> = all
            .iter()
            .filter(|(_, e)| e.principal == principal)
            .map(|(k, e)| (k.clone(), e.opened))
            .collect();
        if mine.len() >= PER_PRINCIPAL
            && let Some((oldest, _)) = mine.iter().min_by_key(|(_, opened)| *opened)
        {
            all.remove(oldest);
        }
        if all.len() >= MAX_SESSIONS
            && let Some(idlest) = all
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
        {
            all.remove(&idlest);
        }
        let id = crate::security::random_token("fss_");
        let csrf = crate::security::random_token("fcsrf_");
        let now = Instant::now();
        all.insert(
            key(&id),
            Entry {
                principal,
                csrf: csrf.clone(),
                opened: now,
                used: now,
            },
        );
        (id, csrf)
    }

    /// The live session with cookie value `id` (now counted as used).
    pub fn find(&self, id: &str) -> Option<Session> {
        let mut all = self.0.lock();
        let k = key(id);
        let e = all.get_mut(&k)?;
        if !live(e) {
            all.remove(&k);
            return None;
        }
        e.used = Instant::now();
        Some(Session {
            principal: e.principal.clone(),
            csrf: e.csrf.clone(),
        })
    }

    pub fn close(&self, id: &str) {
        self.0.lock().remove(&key(id));
    }
}

/// The session id in a request's `Cookie` headers.
pub fn cookie(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_keeps_its_newest_sessions_only() {
        let s = Sessions::default();
        let acme = || Principal::Tenant("acme".into());
        let first = s.open(acme()).0;
        for _ in 0..PER_PRINCIPAL {
            s.open(acme());
        }
        assert!(s.find(&first).is_none());
        // Another tenant's sessions are not pushed out by acme's.
        let other = s.open(Principal::Tenant("other".into())).0;
        for _ in 0..PER_PRINCIPAL * 2 {
            s.open(acme());
        }
        assert!(s.find(&other).is_some());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = http::HeaderMap::new();
        let c = format!("a=1; {COOKIE}=xyz; b=2");
        h.insert(http::header::COOKIE, c.parse().unwrap());
        assert_eq!(cookie(&h), Some("xyz"));
        h.insert(http::header::COOKIE, "fabric_session=1".parse().unwrap());
        assert_eq!(cookie(&h), None);
    }
}
