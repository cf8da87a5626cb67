//! Connecting to a cluster's head, with a clear error when it is not there.

use std::time::Duration;

use anyhow::Context;
use fabric_host::cluster::MAX_MESSAGE;
use tonic::transport::{Channel, Endpoint};
use wasmfabric_proto::v1::head_client::HeadClient;

/// Why the CLI could not reach the head (for the hint).
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the head at {address}: {cause}")]
pub struct Unreachable {
    pub address: String,
    pub cause: String,
}

pub async fn connect(address: &str) -> anyhow::Result<HeadClient<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .with_context(|| format!("`{address}` is not a valid HOST:PORT"))?
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| {
        // The innermost cause says what happened (e.g. connection refused).
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let cause = cause.to_string();
        Unreachable {
            address: address.to_string(),
            cause,
        }
    })?;
    Ok(HeadClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}
