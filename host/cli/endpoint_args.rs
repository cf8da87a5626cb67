//! `fabric start`'s HTTP endpoints: where a node serves Prometheus metrics
//! (and who may scrape them), and where the head serves the Jobs API.

use std::path::Path;

use anyhow::Context;
use clap::Args;
use fabric_host::metrics::{self, Access, MetricsConfig, MetricsServer, Source};
use fabric_host::security::{ClusterSecurity, write_private};

use crate::data_dir;

#[derive(Args, Clone, Debug)]
pub struct EndpointArgs {
    /// Serve Prometheus metrics on this port (0: any free one), over HTTPS
    /// with the cluster's certificate, to scrapers that show the scrape
    /// token (the head writes it to <data-dir>/security/metrics.token).
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,

    /// IP address the metrics endpoint listens on (default: --host).
    #[arg(long, value_name = "IP", requires = "metrics_port")]
    pub metrics_host: Option<String>,

    /// Serve metrics over plain HTTP to anyone who can connect, without a
    /// token: only on a private network you trust.
    #[arg(long, requires = "metrics_port")]
    pub metrics_insecure: bool,

    /// (Head) serve the Jobs REST API on this port (0: any free one), over
    /// HTTPS with the cluster's certificate, to holders of the CLI's tokens.
    #[arg(long, value_name = "PORT")]
    pub api_port: Option<u16>,

    /// IP address the Jobs API listens on (default: --host).
    #[arg(long, value_name = "IP", requires = "api_port")]
    pub api_host: Option<String>,

    /// Host names (or IPs) browsers and clients may reach the Jobs API and
    /// dashboard under, besides wasmfabric.cluster, localhost, the listen
    /// IP and --advertise; any other `Host` is refused (DNS rebinding).
    #[arg(
        long,
        value_name = "HOST,...",
        value_delimiter = ',',
        requires = "api_port"
    )]
    pub api_allowed_hosts: Vec<String>,
}

/// An endpoint's listen address: `ip` (or `host`) and `port`.
fn listen_at(ip: Option<&str>, host: &str, port: u16) -> anyhow::Result<std::net::SocketAddr> {
    let ip = ip.unwrap_or(host);
    format!("{ip}:{port}")
        .parse()
        .with_context(|| format!("`{ip}` is not an IP address"))
}

impl EndpointArgs {
    /// Starts the Jobs API on the head, when asked for, and records its
    /// address in the data directory (`api_address`).
    pub async fn start_api(
        &self,
        host: &str,
        advertise: Option<&str>,
        security: &ClusterSecurity,
        head: Option<std::sync::Arc<fabric_host::head::Head>>,
        data_dir: &Path,
    ) -> anyhow::Result<Option<fabric_host::https::Endpoint>> {
        let Some(port) = self.api_port else {
            return Ok(None);
        };
        let Some(head) = head else {
            anyhow::bail!("--api-port is for the head: workers serve no API");
        };
        let listen = listen_at(self.api_host.as_deref(), host, port)?;
        let mut hosts = self.api_allowed_hosts.clone();
        hosts.push(listen.ip().to_string());
        hosts.extend(advertise.map(str::to_string));
        let hosts = fabric_host::head::dashboard::AllowedHosts::with_defaults(hosts);
        let tls = security.https_config()?;
        let api = fabric_host::head::rest::serve(listen, tls, head, hosts).await?;
        let url = format!("https://{}", api.address());
        data_dir::write_api_address(data_dir, &url)?;
        eprintln!("dashboard on {url}/ (Jobs API: {url}/api/jobs)");
        Ok(Some(api))
    }

    /// Starts the endpoint, when asked for, and records its address in the
    /// data directory (`metrics/<pid>`).
    pub async fn start(
        &self,
        host: &str,
        security: &ClusterSecurity,
        source: Source,
        data_dir: &Path,
    ) -> anyhow::Result<Option<MetricsServer>> {
        let Some(port) = self.metrics_port else {
            return Ok(None);
        };
        let listen = listen_at(self.metrics_host.as_deref(), host, port)?;
        let (access, scheme) = if self.metrics_insecure {
            tracing::warn!(
                "metrics are served over plain HTTP without a token (--metrics-insecure)"
            );
            (Access::Open, "http")
        } else {
            let tls = security.https_config()?;
            let token = security.scrape_token();
            (Access::Token { token, tls }, "https")
        };
        let server = metrics::serve(MetricsConfig { listen, access }, source).await?;
        let url = format!("{scheme}://{}/metrics", server.address());
        data_dir::write_metrics(data_dir, std::process::id(), &url)?;
        eprintln!("metrics on {url}");
        Ok(Some(server))
    }
}

/// Writes the scrape token beside the head's other credentials (mode 0600).
pub fn write_scrape_token(data_dir: &Path, security: &ClusterSecurity) -> anyhow::Result<()> {
    let path = data_dir::security_dir(data_dir).join("metrics.token");
    write_private(&path, security.scrape_token().as_bytes())?;
    Ok(())
}
