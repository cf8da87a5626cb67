//! The integration tests: real components built from the SDK (see
//! tests/artifacts), run through the real host and the real `fabric` binary.

#[path = "../support/mod.rs"]
mod support;

mod actors;
mod admission;
mod bench_guest;
mod breaches;
mod calls;
mod cli;
mod cluster;
mod coverage;
mod dashboard;
mod examples;
mod fairness;
mod footprint;
mod groups;
mod hostile;
mod jobs_api;
mod metrics;
mod processes;
mod python;
mod python_merge;
mod serve;
mod serve_cluster;
mod serve_http;
mod serve_kept;
mod serve_nn;
mod tasks;
mod tenants;
mod timeline;
mod watching;
