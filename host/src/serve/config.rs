//! What `fabric serve CONFIG` reads: the ingress and the deployments.
//!
//! ```
//! let config: fabric_host::serve::config::ServeConfig = toml::from_str(r#"
//!     [[deployment]]
//!     name = "greeter"
//!     component = "greeter.py"
//!     class = "Greeter"
//!     route = "/greet"
//!     public = true
//! "#).unwrap();
//! // One replica unless `replicas` or `[deployment.autoscaling]` says more.
//! assert_eq!(config.deployment[0].replicas, None);
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A whole serve configuration. Unknown keys are errors.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    #[serde(default)]
    pub ingress: IngressConfig,
    #[serde(default)]
    pub deployment: Vec<DeploymentConfig>,
}

/// The HTTP listener in front of every deployment.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// Where it listens (port 0: any free port, printed at start).
    pub listen: SocketAddr,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once to one IP address.
    pub max_connections_per_address: usize,
    /// A file holding the token for `GET /-/metrics` (the node's metrics
    /// and Serve's); unset, the ingress serves no metrics.
    pub metrics_token_file: Option<PathBuf>,
    /// The certificate chain (PEM) the ingress serves TLS with; with
    /// `tls_key`, it speaks HTTPS only, HTTP/2 or HTTP/1.1 as ALPN picks.
    pub tls_certificate: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// On a plain listener, also take HTTP/2 from clients that start with
    /// it (h2c with prior knowledge): for private networks only.
    pub h2c: bool,
    /// Response bytes held for clients that have not read them yet, in
    /// all; a response past it is a 503.
    #[serde(deserialize_with = "byte_size")]
    pub max_unsent_response_bytes: u64,
    /// Refusals (503s of a full deployment, 401s, 404s ...) one tenant's
    /// routes answer at once per second; more wait their turn, up to a
    /// second (see [`super::pacing`]). 0: no pacing.
    pub refusals_per_second: u32,
}

/// An ingress file (`fabric start --ingress`): `[ingress]` alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IngressFile {
    #[serde(default)]
    ingress: IngressConfig,
}

impl IngressConfig {
    /// Reads an ingress file: `[ingress]` and nothing else.
    pub fn parse_file(text: &str) -> Result<Self, String> {
        let file: IngressFile = toml::from_str(text).map_err(|e| e.to_string())?;
        file.ingress.tls_files()?;
        Ok(file.ingress)
    }

    /// The TLS files, when it serves TLS.
    pub fn tls_files(&self) -> Result<Option<(&PathBuf, &PathBuf)>, String> {
        match (&self.tls_certificate, &self.tls_key, self.h2c) {
            (Some(_), Some(_), true) => {
                Err("h2c is for a plain listener; over TLS, HTTP/2 is chosen by ALPN".into())
            }
            (Some(cert), Some(key), false) => Ok(Some((cert, key))),
            (None, None, _) => Ok(None),
            _ => Err("tls_certificate and tls_key go together".into()),
        }
    }
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            max_connections: 1024,
            max_connections_per_address: 64,
            metrics_token_file: None,
            tls_certificate: None,
            tls_key: None,
            h2c: false,
            max_unsent_response_bytes: 256 << 20,
            refusals_per_second: super::DEFAULT_REFUSALS_PER_SECOND,
        }
    }
}

/// One deployment: an actor class whose replicas answer a route, or
/// (without `class`) a `wasi:http` proxy component that answers each
/// request with a fresh instance (see [`super::stateless`]).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Its name (in logs and status).
    pub name: String,
    /// The component: a `.wasm` file, a Cargo project or a `.py` file,
    /// relative to the configuration file.
    pub component: PathBuf,
    /// The actor class whose instances are its replicas; unset, the
    /// component is a `wasi:http` proxy, and the deployment is stateless.
    #[serde(default)]
    pub class: Option<String>,
    /// The method each request calls, with the request as its argument
    /// (`call` unless set; replicas only).
    #[serde(default)]
    pub method: Option<String>,
    /// The path prefix it answers (`/` for everything).
    pub route: String,
    /// The `Host` it answers (any when unset).
    #[serde(default)]
    pub host: Option<String>,
    /// Replicas kept running (1 unless set; not with `autoscaling`).
    #[serde(default)]
    pub replicas: Option<u32>,
    /// Replicas between a floor and a ceiling, following the load.
    #[serde(default)]
    pub autoscaling: Option<AutoscalingConfig>,
    /// Requests to one replica collected into one call.
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    /// Requests a replica has at once (Ray's `max_ongoing_requests`).
    #[serde(default = "default_ongoing")]
    pub max_ongoing_requests: u32,
    /// Requests a replica runs at once, interleaved (an actor class with
    /// `async` methods: Ray's async replicas); unset, it runs them one at a
    /// time. At most `max_ongoing_requests` reach a replica either way.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Requests waiting for a replica before more get 503.
    #[serde(default = "default_queued")]
    pub max_queued_requests: u32,
    /// The longest a request may take (504 after it).
    #[serde(default = "default_timeout", with = "humantime_serde_like")]
    pub request_timeout: Duration,
    /// The largest request body taken (413 above it).
    #[serde(default = "default_max_body", deserialize_with = "byte_size")]
    pub max_body: u64,
    /// The largest value a replica may answer with (500 above it).
    #[serde(default = "default_max_response", deserialize_with = "byte_size")]
    pub max_response: u64,
    /// CPUs each replica holds (1 unless set; replicas only).
    #[serde(default)]
    pub num_cpus: Option<f64>,
    /// Passed to each replica's constructor as its one argument.
    #[serde(default)]
    pub user_config: Option<toml::Value>,
    /// The job manifest (limits and capabilities), relative to this file.
    #[serde(default)]
    pub manifest: Option<PathBuf>,
    /// The tenant its replicas or instances run for: its compiles, slots,
    /// memory and CPU are that tenant's, within the node's quota for it
    /// (the node's local tenant when unset).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Answer without a token: the route is open to anyone who reaches it.
    #[serde(default)]
    pub public: bool,
    /// A file holding the bearer token a request must present.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// How a deployment's replica count follows its load (Ray's
/// `autoscaling_config`): the load is the requests its replicas have plus
/// those queued, averaged over `look_back`; the count wanted is the load
/// over `target_ongoing_requests`, rounded up, between `min_replicas` and
/// `max_replicas`. A count above the current one for `upscale_delay`
/// starts replicas, one below it for `downscale_delay` stops the idlest.
/// With `min_replicas = 0`, an idle deployment keeps no replica, and the
/// first request starts one at once.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalingConfig {
    #[serde(default = "one")]
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Replicas at start (`min_replicas` when unset, and at least one: a
    /// deployment proves its replicas start before it serves).
    #[serde(default)]
    pub initial_replicas: Option<u32>,
    #[serde(default = "default_target")]
    pub target_ongoing_requests: f64,
    #[serde(default = "default_upscale", with = "humantime_serde_like")]
    pub upscale_delay: Duration,
    #[serde(default = "default_downscale", with = "humantime_serde_like")]
    pub downscale_delay: Duration,
    #[serde(default = "default_look_back", with = "humantime_serde_like")]
    pub look_back: Duration,
}

/// Batching (Ray Serve's `@serve.batch`): the method takes a list of
/// requests and answers a list of responses, one per request, in order. A
/// batch goes to its replica when it holds `max_size` requests, or
/// `max_wait` after its first, whichever comes first.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub max_size: u32,
    #[serde(with = "humantime_serde_like")]
    pub max_wait: Duration,
}

impl BatchConfig {
    fn check(&self, max_ongoing: u32, request_timeout: Duration) -> Result<(), String> {
        if !(2..=MAX_BATCH).contains(&self.max_size) || self.max_wait > MAX_BATCH_WAIT {
            return Err(format!(
                "max_size is 2 to {MAX_BATCH}, max_wait at most {MAX_BATCH_WAIT:?}"
            ));
        }
        // A request waits up to max_wait for its batch to go: it must leave
        // the replica time to answer before the request's end.
        if self.max_wait >= request_timeout {
            return Err("max_wait must be under request_timeout".into());
        }
        // A replica takes at most max_ongoing_requests: a larger batch
        // could never fill.
        if self.max_size > max_ongoing {
            return Err("max_size is over max_ongoing_requests".into());
        }
        Ok(())
    }
}

/// The largest batch, and the longest a request waits for its batch.
pub const MAX_BATCH: u32 = 1_000;
pub const MAX_BATCH_WAIT: Duration = Duration::from_secs(10);

fn default_target() -> f64 {
    2.0
}
fn default_upscale() -> Duration {
    Duration::from_secs(3)
}
fn default_downscale() -> Duration {
    Duration::from_secs(60)
}
fn default_look_back() -> Duration {
    Duration::from_secs(2)
}

fn one() -> u32 {
    1
}
fn default_ongoing() -> u32 {
    5
}
fn default_queued() -> u32 {
    64
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_body() -> u64 {
    1 << 20
}
fn default_max_response() -> u64 {
    16 << 20
}

/// Sizes written as `"1 MiB"`, `"512 KiB"`.
fn byte_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    text.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(serde::de::Error::custom)
}

/// Durations written as `"30s"`, `"500ms"` (humantime).
mod humantime_serde_like {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// The most replicas, ongoing and queued requests one deployment may ask.
pub const MAX_REPLICAS: u32 = 256;
/// The longest route (path prefix).
pub const MAX_ROUTE: usize = 1024;
pub const MAX_ONGOING: u32 = 10_000;
pub const MAX_QUEUED: u32 = 100_000;
/// The largest `max_body` and `max_response`.
pub const MAX_BYTES: u64 = 256 << 20;

impl ServeConfig {
    /// Reads a configuration and checks each deployment.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: ServeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.deployment.is_empty() {
            return Err("no [[deployment]]".into());
        }
        config
            .ingress
            .tls_files()
            .map_err(|e| format!("[ingress]: {e}"))?;
        for (i, d) in config.deployment.iter().enumerate() {
            d.check()?;
            if config.deployment[..i].iter().any(|o| o.name == d.name) {
                return Err(format!("two deployments are named `{}`", d.name));
            }
            // As the ingress matches them: a reload must find a clash here,
            // before it touches a running deployment.
            if let Some(o) = config.deployment[..i].iter().find(|o| o.same_route(d)) {
                return Err(format!(
                    "deployments `{}` and `{}` claim the same route",
                    o.name, d.name
                ));
            }
        }
        let budget = config.ingress.max_unsent_response_bytes;
        let share = unsent_share(budget, config.tenants());
        if let Some(d) = config.deployment.iter().find(|d| d.max_response > share) {
            return Err(format!(
                "deployment `{}`: max_response is over what one tenant's answers may hold \
                 ([ingress] max_unsent_response_bytes, half of it with several tenants)",
                d.name
            ));
        }
        Ok(config)
    }

    /// Each `[[deployment]]` table of `text` on its own, as TOML, for the
    /// head to keep (`fabric serve deploy`); a file for the head has no
    /// `[ingress]`, which is a node's.
    pub fn deployment_tables(text: &str) -> Result<Vec<String>, String> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        if value.contains_key("ingress") {
            return Err(
                "[ingress] is a node's, not a deployment's: give it to `fabric start --ingress`"
                    .into(),
            );
        }
        let Some(toml::Value::Array(tables)) = value.remove("deployment") else {
            return Err("no [[deployment]]".into());
        };
        tables
            .iter()
            .map(|t| toml::to_string(t).map_err(|e| e.to_string()))
            .collect()
    }

    /// The tenants its deployments run for.
    pub fn tenants(&self) -> usize {
        let mut tenants: Vec<Option<&str>> = self
            .deployment
            .iter()
            .map(|d| d.tenant.as_deref())
            .collect();
        tenants.sort_unstable();
        tenants.dedup();
        tenants.len()
    }
}

/// What one tenant's answers may hold of an ingress's unsent-response
/// budget of `budget` bytes when its routes serve `tenants` tenants: all
/// of it for one, half for several (see [`super::unsent`]).
pub fn unsent_share(budget: u64, tenants: usize) -> u64 {
    if tenants <= 1 { budget } else { budget / 2 }
}

impl DeploymentConfig {
    /// Whether `other` claims the same host and path prefix.
    fn same_route(&self, other: &DeploymentConfig) -> bool {
        let host = |d: &DeploymentConfig| d.host.as_ref().map(|h| h.to_ascii_lowercase());
        let prefix = |d: &DeploymentConfig| d.route.trim_end_matches('/').to_string();
        host(self) == host(other) && prefix(self) == prefix(other)
    }
}

impl AutoscalingConfig {
    /// Replicas started with the deployment.
    pub fn initial(&self) -> u32 {
        self.initial_replicas.unwrap_or(self.min_replicas).max(1)
    }

    fn check(&self) -> Result<(), String> {
        if !(1..=MAX_REPLICAS).contains(&self.max_replicas) {
            return Err(format!("max_replicas must be 1 to {MAX_REPLICAS}"));
        }
        if self.min_replicas > self.max_replicas {
            return Err("min_replicas is above max_replicas".into());
        }
        if self.initial_replicas == Some(0)
            || !(self.min_replicas.max(1)..=self.max_replicas).contains(&self.initial())
        {
            return Err(
                "initial_replicas must be at least 1 and between min_replicas and max_replicas"
                    .into(),
            );
        }
        if !(self.target_ongoing_requests.is_finite() && self.target_ongoing_requests > 0.0) {
            return Err("target_ongoing_requests must be a number above 0".into());
        }
        let hour = Duration::from_secs(3600);
        if self.upscale_delay > hour || self.downscale_delay > hour || self.look_back > hour {
            return Err("delays and look_back are at most an hour".into());
        }
        if self.look_back < SAMPLE_EVERY {
            return Err(format!("look_back is at least {SAMPLE_EVERY:?}"));
        }
        // A replica stopped sooner than the load it answered leaves the
        // average would be started again at once: callers could make a
        // deployment churn replicas.
        if self.downscale_delay < self.look_back {
            return Err("downscale_delay is at least look_back".into());
        }
        Ok(())
    }
}

/// How often an autoscaled deployment's load is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

impl DeploymentConfig {
    /// Whether `other` runs the same replicas: only what the ingress
    /// applies per request (route, host, token, body and answer bounds)
    /// or what reaches replicas through `reconfigure` (`user_config`)
    /// differs. (The component's and manifest's contents are compared
    /// by the caller.)
    pub fn same_replicas(&self, other: &DeploymentConfig) -> bool {
        let plain = |d: &DeploymentConfig| DeploymentConfig {
            route: String::new(),
            host: None,
            public: false,
            token_file: None,
            max_body: 0,
            max_response: 0,
            user_config: None,
            ..d.clone()
        };
        plain(self) == plain(other)
    }

    /// Whether it is a `wasi:http` proxy component (no `class`).
    pub fn is_stateless(&self) -> bool {
        self.class.is_none()
    }

    /// The method each request calls.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("call")
    }

    /// CPUs each replica holds.
    pub fn num_cpus(&self) -> f64 {
        self.num_cpus.unwrap_or(1.0)
    }

    /// Keys that mean something only for replicas, set on a stateless
    /// deployment: an error, as an unknown key is.
    fn check_stateless(&self) -> Result<(), String> {
        let replica_only = [
            ("method", self.method.is_some()),
            ("replicas", self.replicas.is_some()),
            ("autoscaling", self.autoscaling.is_some()),
            ("batch", self.batch.is_some()),
            ("max_concurrency", self.max_concurrency.is_some()),
            ("num_cpus", self.num_cpus.is_some()),
            ("user_config", self.user_config.is_some()),
        ];
        match replica_only.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(format!(
                "deployment `{}` has no `class`, so it is a stateless `wasi:http` component: \
                 `{key}` is for replicas of an actor class",
                self.name
            )),
            None => Ok(()),
        }
    }

    /// The constructor's arguments: `user_config`, as MessagePack, when set.
    pub fn constructor_args(&self) -> Result<Vec<bytes::Bytes>, String> {
        match &self.user_config {
            None => Ok(Vec::new()),
            Some(value) => rmp_serde::to_vec_named(value)
                .map(|v| vec![v.into()])
                .map_err(|e| format!("deployment `{}`: user_config: {e}", self.name)),
        }
    }

    /// One `[[deployment]]` table, read alone and checked (a deployment the
    /// head keeps: `fabric serve deploy`).
    pub fn parse_one(text: &str) -> Result<Self, String> {
        let d: DeploymentConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        d.check()?;
        Ok(d)
    }

    /// The route's and host's shape and length.
    fn check_route(&self) -> Result<(), String> {
        let name = &self.name;
        if self.route.len() > MAX_ROUTE {
            return Err(format!(
                "deployment `{name}`: route is at most {MAX_ROUTE} bytes"
            ));
        }
        if self.host.as_ref().is_some_and(|h| h.len() > 253) {
            return Err(format!("deployment `{name}`: host is at most 253 bytes"));
        }
        if !self.route.starts_with('/') {
            return Err(format!("deployment `{name}`: route must start with `/`"));
        }
        if self.route == "/-" || self.route.starts_with("/-/") {
            return Err(format!(
                "deployment `{name}`: paths under `/-/` are the ingress's own"
            ));
        }
        Ok(())
    }

    /// Checks what serde cannot: ranges, the route's shape, and that the
    /// deployment says who may call it.
    pub fn check(&self) -> Result<(), String> {
        let name = &self.name;
        if self.name.is_empty() || self.name.len() > 64 {
            return Err("a deployment's name is 1 to 64 characters".into());
        }
        self.check_route()?;
        if self.replicas.is_some() && self.autoscaling.is_some() {
            return Err(format!(
                "deployment `{name}`: `replicas` and `autoscaling` contradict each other"
            ));
        }
        if !(1..=MAX_REPLICAS).contains(&self.replicas.unwrap_or(1)) {
            return Err(format!(
                "deployment `{name}`: replicas must be 1 to {MAX_REPLICAS}"
            ));
        }
        if let Some(b) = &self.batch {
            b.check(self.max_ongoing_requests, self.request_timeout)
                .map_err(|e| format!("deployment `{name}`: batch: {e}"))?;
        }
        if let Some(a) = &self.autoscaling {
            a.check()
                .map_err(|e| format!("deployment `{name}`: autoscaling: {e}"))?;
        }
        if !(1..=MAX_ONGOING).contains(&self.max_ongoing_requests) {
            return Err(format!(
                "deployment `{name}`: max_ongoing_requests must be 1 to {MAX_ONGOING}"
            ));
        }
        if self
            .max_concurrency
            .is_some_and(|n| !(1..=crate::runtime::actor::MAX_CONCURRENCY).contains(&n))
        {
            return Err(format!(
                "deployment `{name}`: max_concurrency must be 1 to {}",
                crate::runtime::actor::MAX_CONCURRENCY
            ));
        }
        if self.max_queued_requests > MAX_QUEUED {
            return Err(format!(
                "deployment `{name}`: max_queued_requests must be at most {MAX_QUEUED}"
            ));
        }
        if self.max_body > MAX_BYTES || self.max_response > MAX_BYTES {
            return Err(format!(
                "deployment `{name}`: max_body and max_response are at most 256 MiB"
            ));
        }
        if self.is_stateless() {
            self.check_stateless()?;
        }
        if let Some(tenant) = &self.tenant {
            crate::security::valid_tenant_name(tenant)
                .map_err(|e| format!("deployment `{name}`: tenant: {e}"))?;
        }
        if !(self.num_cpus().is_finite() && self.num_cpus() >= 0.0) {
            return Err(format!(
                "deployment `{name}`: num_cpus must be a number >= 0"
            ));
        }
        match (self.public, &self.token_file) {
            (true, Some(_)) => Err(format!(
                "deployment `{name}`: `public = true` and `token_file` contradict each other"
            )),
            (false, None) => Err(format!(
                "deployment `{name}` says nothing of who may call it: set `public = true` \
                 or `token_file`"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
        [[deployment]]
        name = "a"
        component = "a.py"
        class = "A"
        route = "/a"
        public = true
    "#;

    fn with(extra: &str) -> Result<ServeConfig, String> {
        ServeConfig::parse(&format!("{ONE}{extra}"))
    }

    /// The example files for a cluster read as their readers will: each
    /// deployment alone (the head's and the nodes'), and an ingress file.
    #[test]
    fn a_deploy_file_splits_into_tables_that_read_alone() {
        let text = include_str!("../../../examples/serve/deploy.toml");
        let whole = ServeConfig::parse(text).unwrap();
        let tables = ServeConfig::deployment_tables(text).unwrap();
        assert_eq!(tables.len(), whole.deployment.len());
        for (table, d) in tables.iter().zip(&whole.deployment) {
            assert_eq!(&DeploymentConfig::parse_one(table).unwrap(), d);
        }
        let with_ingress = format!("[ingress]\n{text}");
        assert!(ServeConfig::deployment_tables(&with_ingress).is_err());
        let ingress = include_str!("../../../examples/serve/ingress.toml");
        assert_eq!(
            IngressConfig::parse_file(ingress).unwrap().listen.port(),
            8000
        );
        assert!(IngressConfig::parse_file(ONE).is_err());
    }

    /// A tenant writes what the head and every ingress read: a table
    /// nested 200,000 deep is refused by the TOML parser's own depth limit,
    /// within a tokio worker's stack (a guard against a `toml` upgrade that
    /// drops it).
    #[test]
    fn a_deeply_nested_user_config_is_refused_without_overflowing() {
        let deep = format!(
            "name = \"a\"\ncomponent = \"a.wasm\"\nclass = \"A\"\nroute = \"/a\"\npublic = true\nuser_config = {}1{}\n",
            "[".repeat(200_000),
            "]".repeat(200_000)
        );
        let read = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || DeploymentConfig::parse_one(&deep).map(|_| ()))
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert!(read.unwrap_err().contains("TOML parse error"));
    }

    #[test]
    fn names_routes_and_autoscaling_bounds_are_checked() {
        assert!(with("").is_ok());
        let twice = ONE.replace("/a", "/b");
        assert!(
            with(&twice)
                .unwrap_err()
                .contains("two deployments are named `a`")
        );
        let own = ONE
            .replace("\"/a\"", "\"/-/metrics\"")
            .replace("\"a\"", "\"b\"");
        assert!(with(&own).unwrap_err().contains("ingress's own"));
        let scaled = |table: &str| with(&format!("[deployment.autoscaling]\n{table}"));
        assert!(scaled("min_replicas = 0\nmax_replicas = 2").is_ok());
        assert!(scaled("max_replicas = 2\ninitial_replicas = 0").is_err());
        assert!(scaled("min_replicas = 3\nmax_replicas = 2").is_err());
        let churn = "max_replicas = 2\nlook_back = \"2s\"\ndownscale_delay = \"1s\"";
        assert!(scaled(churn).unwrap_err().contains("downscale_delay"));
        assert!(
            scaled("max_replicas = 2\nbogus = 1").is_err(),
            "unknown keys"
        );
        let batched = |table: &str| with(&format!("[deployment.batch]\n{table}"));
        assert!(batched("max_size = 4\nmax_wait = \"10ms\"").is_ok());
        assert!(
            batched("max_size = 6\nmax_wait = \"10ms\"").is_err(),
            "over max_ongoing"
        );
        let short = ONE.replace("public = true", "public = true\nrequest_timeout = \"2s\"");
        let short = ServeConfig::parse(&format!(
            "{short}[deployment.batch]\nmax_size = 4\nmax_wait = \"5s\""
        ));
        assert!(short.unwrap_err().contains("request_timeout"));
        let both = ONE.replace("public = true", "public = true\nreplicas = 2");
        let both = ServeConfig::parse(&format!("{both}[deployment.autoscaling]\nmax_replicas = 2"));
        assert!(both.unwrap_err().contains("contradict"));
    }

    #[test]
    fn routes_may_not_clash_and_answers_must_fit_the_budget() {
        let clash = ONE
            .replace("name = \"a\"", "name = \"b\"")
            .replace("\"/a\"", "\"/a/\"");
        assert!(with(&clash).unwrap_err().contains("the same route"));
        let big = ONE.replace("public = true", "public = true\nmax_response = \"200MiB\"");
        assert!(
            ServeConfig::parse(&big).is_ok(),
            "one tenant: the whole budget"
        );
        let other = ONE
            .replace("name = \"a\"", "name = \"b\"")
            .replace("\"/a\"", "\"/b\"")
            .replace("public = true", "public = true\ntenant = \"other\"");
        let e = ServeConfig::parse(&format!("{big}{other}")).unwrap_err();
        assert!(e.contains("max_unsent_response_bytes"), "{e}");
    }

    #[test]
    fn a_stateless_deployment_takes_no_replica_keys() {
        let stateless = ONE.replace("class = \"A\"", "");
        let config = ServeConfig::parse(&stateless).unwrap();
        assert!(config.deployment[0].is_stateless());
        for key in [
            "method = \"go\"",
            "replicas = 2",
            "num_cpus = 1.0",
            "max_concurrency = 2",
        ] {
            let with_key = stateless.replace("public = true", &format!("public = true\n{key}"));
            let e = ServeConfig::parse(&with_key).unwrap_err();
            assert!(
                e.contains("stateless") && e.contains(key.split(' ').next().unwrap()),
                "{e}"
            );
        }
        let scaled = format!("{stateless}[deployment.autoscaling]\nmax_replicas = 2");
        assert!(
            ServeConfig::parse(&scaled)
                .unwrap_err()
                .contains("autoscaling")
        );
    }
}
