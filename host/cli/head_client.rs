//! Connecting to a cluster's head as a client: TLS against the cluster's CA
//! certificate, a token on every call, and a clear error when the head is
//! not there.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fabric_host::cluster::MAX_MESSAGE;
use fabric_host::security::{AddToken, client_tls};
use tonic::codegen::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use wasmfabric_proto::v1::control_client::ControlClient;

use crate::data_dir;

/// How a client finds and authenticates to the head.
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// The head's address (default: $FABRIC_ADDRESS, else the head started here).
    #[arg(long, env = "FABRIC_ADDRESS", value_name = "HOST:PORT", global = true)]
    pub address: Option<String>,

    /// Your token (default: $FABRIC_TOKEN, else the admin token of the head
    /// started here).
    #[arg(
        long,
        env = "FABRIC_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// The cluster's CA certificate (default: $FABRIC_CA_CERT, else the one
    /// of the head started here).
    #[arg(long, env = "FABRIC_CA_CERT", value_name = "FILE", global = true)]
    pub ca_cert: Option<PathBuf>,

    #[arg(long, default_value = data_dir::DEFAULT, value_name = "DIR", hide = true, global = true)]
    pub data_dir: PathBuf,
}

/// Why the CLI could not reach the head (for the hint).
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the head at {address}: {cause}")]
pub struct Unreachable {
    pub address: String,
    pub cause: String,
}

/// Why the CLI has no credentials (for the hint).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoCredentials(pub String);

pub type Client = ControlClient<InterceptedService<Channel, AddToken>>;

pub async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    let address = data_dir::head_address(args.address.clone(), &args.data_dir)?;
    let security = data_dir::security_dir(&args.data_dir);
    let token = match &args.token {
        Some(t) => t.clone(),
        None => {
            let path = security.join("admin.token");
            std::fs::read_to_string(&path).map_err(|_| {
                NoCredentials(format!(
                    "no token: pass --token (or set FABRIC_TOKEN); {} is not readable",
                    path.display()
                ))
            })?
        }
    };
    let ca_path = args
        .ca_cert
        .clone()
        .unwrap_or_else(|| security.join("ca.crt"));
    let ca = std::fs::read_to_string(&ca_path).map_err(|_| {
        NoCredentials(format!(
            "no CA certificate: pass --ca-cert (or set FABRIC_CA_CERT); {} is not readable",
            ca_path.display()
        ))
    })?;
    let endpoint = Endpoint::from_shared(format!("https://{address}"))
        .with_context(|| format!("`{address}` is not a valid HOST:PORT"))?
        .tls_config(client_tls(&ca))
        .context("the CA certificate is not usable")?
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| {
        // The innermost cause says what happened (e.g. connection refused).
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        Unreachable {
            address: address.clone(),
            cause: cause.to_string(),
        }
    })?;
    let auth = AddToken::new(&token)?;
    Ok(ControlClient::with_interceptor(channel, auth)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// A gRPC status as an error whose message is the head's.
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", s.message(), s.code())
}
