//! What a scrape reads: the node's own books (tasks, instances, actors,
//! objects, spills, compiles, tenants' usage, memory), its cluster
//! traffic, and on the head the cluster's records. Everything is read at
//! scrape time from counters the node keeps anyway, so metrics add nothing
//! to the paths tasks take.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::Node;
use crate::head::Head;
use crate::head::{ActorState, JobStatus, NodeState};
use crate::meters::{ClusterMeters, LatencyRead};
use crate::outcomes::Outcome;
use crate::resources::{ResourceSet, UNIT};
use crate::serve::stats::DeploymentReading as Reading;

type Fmt = Result<(), std::fmt::Error>;

/// What one node's scrape shows.
#[derive(Clone)]
pub struct Source {
    pub node: Node,
    /// Its cluster traffic, when it is in a cluster.
    pub meters: Option<Arc<ClusterMeters>>,
    /// The head's records, on the head.
    pub head: Option<Arc<Head>>,
    /// Serve's deployments, where this process runs an ingress.
    pub serve: Vec<crate::serve::Target>,
    /// An ingress whose deployments change (a node's `--ingress`): read at
    /// each scrape.
    pub ingress: Option<Arc<crate::serve::Serve>>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metrics::Source { .. }")
    }
}

/// Writes one metric family: a descriptor and its samples.
struct Family<'a, 'e> {
    encoder: &'a mut DescriptorEncoder<'e>,
}

impl Family<'_, '_> {
    fn one(&mut self, name: &str, help: &str, kind: MetricType, value: f64) -> Fmt {
        let m = self.encoder.encode_descriptor(name, help, None, kind)?;
        encode_value(m, kind, value)
    }

    fn labeled(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, f64)>,
    ) -> Fmt {
        let mut m = self.encoder.encode_descriptor(name, help, None, kind)?;
        for (labels, value) in samples {
            encode_value(m.encode_family(&labels)?, kind, value)?;
        }
        Ok(())
    }

    fn histograms(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        samples: Vec<(String, LatencyRead)>,
    ) -> Fmt {
        let mut m = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (value, h) in samples {
            let labels = [(label, value)];
            // The encoder sums the buckets itself: give it each bucket's own.
            let mut previous = 0;
            let own: Vec<(f64, u64)> = h
                .buckets
                .iter()
                .map(|(bound, cumulative)| {
                    let n = cumulative - previous;
                    previous = *cumulative;
                    (*bound, n)
                })
                .collect();
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                h.sum_seconds,
                h.count,
                &own,
                None,
            )?;
        }
        Ok(())
    }
}

fn encode_value(m: MetricEncoder<'_>, kind: MetricType, value: f64) -> Fmt {
    match kind {
        MetricType::Counter => ConstCounter::new(value).encode(m),
        _ => ConstGauge::new(value).encode(m),
    }
}

fn tenant(name: &str) -> Vec<(&'static str, String)> {
    vec![("tenant", name.to_string())]
}

type Samples = Vec<(Vec<(&'static str, String)>, f64)>;

/// One sample per tenant account, its value `v(i)` of account `i`.
fn per_tenant(
    accounts: &[Arc<crate::tenants::TenantAccount>],
    v: &dyn Fn(usize) -> f64,
) -> Samples {
    (0..accounts.len())
        .map(|i| (tenant(&accounts[i].name), v(i)))
        .collect()
}

const C: MetricType = MetricType::Counter;
const G: MetricType = MetricType::Gauge;

impl Collector for Source {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
        let mut f = Family {
            encoder: &mut encoder,
        };
        self.node_metrics(&mut f)?;
        self.tenant_metrics(&mut f)?;
        if let Some(m) = &self.meters {
            traffic_metrics(&mut f, m)?;
        }
        if let Some(h) = &self.head {
            head_metrics(&mut f, h)?;
        }
        let mut targets = self.serve.clone();
        if let Some(ingress) = &self.ingress {
            targets.extend(ingress.targets());
        }
        if !targets.is_empty() {
            let readings: Vec<_> = targets.iter().map(|d| d.reading()).collect();
            serve_metrics(&mut f, &readings)?;
        }
        Ok(())
    }
}

/// Serve's figures, one sample per deployment.
fn serve_metrics(f: &mut Family, readings: &[Reading]) -> Fmt {
    let name = |r: &Reading| vec![("deployment", r.name.clone())];
    let requests = readings.iter().flat_map(|r| {
        r.by_class.iter().map(|(class, n)| {
            let mut labels = name(r);
            labels.push(("class", class.to_string()));
            (labels, *n as f64)
        })
    });
    f.labeled(
        "fabric_serve_requests",
        "Requests a deployment answered, by status class",
        C,
        requests,
    )?;
    f.histograms(
        "fabric_serve_request_seconds",
        "Time from a request's head to its response, by deployment",
        "deployment",
        readings
            .iter()
            .map(|r| (r.name.clone(), r.latency.clone()))
            .collect(),
    )?;
    let gauges = [
        ("fabric_serve_replicas", "Replicas taking requests"),
        ("fabric_serve_replicas_starting", "Replicas being started"),
        ("fabric_serve_ongoing_requests", "Requests at replicas now"),
        (
            "fabric_serve_queued_requests",
            "Requests waiting for a replica",
        ),
    ];
    for (i, (metric, help)) in gauges.into_iter().enumerate() {
        let value = |r: &Reading| [r.replicas, r.starting, r.ongoing, r.queued][i] as f64;
        f.labeled(
            metric,
            help,
            G,
            readings.iter().map(|r| (name(r), value(r))),
        )?;
    }
    Ok(())
}

fn resources(set: &ResourceSet) -> [(Vec<(&'static str, String)>, f64); 3] {
    let r = |name: &str| vec![("resource", name.to_string())];
    [
        (r("CPU"), set.cpu as f64 / UNIT as f64),
        (r("GPU"), set.gpu as f64 / UNIT as f64),
        (r("memory"), set.memory as f64),
    ]
}

impl Source {
    fn node_metrics(&self, f: &mut Family) -> Fmt {
        let s = self.node.stats();
        let role = if self.head.is_some() { "head" } else { "node" };
        let info = vec![
            ("node", self.node.id().to_string()),
            ("role", role.to_string()),
        ];
        f.labeled(
            "fabric_node_info",
            "This node's id and role",
            G,
            [(info, 1.0)],
        )?;
        f.labeled(
            "fabric_node_resources",
            "Resources the node offers",
            G,
            resources(&s.total),
        )?;
        f.labeled(
            "fabric_node_resources_free",
            "Resources not held by running work",
            G,
            resources(&s.free),
        )?;
        f.one(
            "fabric_node_resident_memory_bytes",
            "The node process's resident memory",
            G,
            s.memory.resident as f64,
        )?;
        let part = |p: &str, v: u64| (vec![("part", p.to_string())], v as f64);
        f.labeled(
            "fabric_node_accounted_memory_bytes",
            "Memory the node accounts for, by part",
            G,
            [
                part("object_store", s.memory.object_store),
                part("instances", s.memory.instances),
                part("components", s.memory.components),
                part("pool_kept", s.memory.pool_kept),
            ],
        )?;
        f.one(
            "fabric_tasks_queued",
            "Tasks waiting for resources here (the scheduler's queue depth)",
            G,
            s.queued_tasks as f64,
        )?;
        f.one(
            "fabric_tasks_unfinished",
            "Tasks here that have not finished (queued, running, or sent elsewhere)",
            G,
            s.running_tasks as f64,
        )?;
        f.one(
            "fabric_instances_live",
            "Instance-pool slots in use (tasks running, actors, drivers)",
            G,
            s.instances.live as f64,
        )?;
        f.one(
            "fabric_instances_peak",
            "The most instance-pool slots in use at once",
            G,
            s.instances.peak as f64,
        )?;
        f.one(
            "fabric_instance_pool_slots",
            "Instance-pool slots in all",
            G,
            s.instances.slots as f64,
        )?;
        f.one(
            "fabric_streams",
            "Generator streams open here",
            G,
            s.streams as f64,
        )?;
        self.object_metrics(f, &s)?;
        self.compile_metrics(f)
    }

    fn object_metrics(&self, f: &mut Family, s: &crate::NodeStats) -> Fmt {
        f.one(
            "fabric_objects",
            "Objects in this node's store",
            G,
            s.objects as f64,
        )?;
        f.one(
            "fabric_object_store_used_bytes",
            "Bytes the object store holds in memory",
            G,
            s.object_store_used as f64,
        )?;
        f.one(
            "fabric_object_store_capacity_bytes",
            "The object store's capacity",
            G,
            s.object_store_capacity as f64,
        )?;
        let spill = self.node.objects().spill_counts();
        f.one(
            "fabric_object_store_spilled_objects",
            "Objects written to disk to make room",
            C,
            spill.spilled as f64,
        )?;
        f.one(
            "fabric_object_store_spilled_bytes",
            "Bytes written to disk to make room",
            C,
            spill.spilled_bytes as f64,
        )?;
        f.one(
            "fabric_object_store_restored_objects",
            "Spilled objects read back from disk",
            C,
            spill.restored as f64,
        )?;
        f.one(
            "fabric_object_store_restored_bytes",
            "Spilled bytes read back from disk",
            C,
            spill.restored_bytes as f64,
        )?;
        f.one(
            "fabric_object_store_spill_file_bytes",
            "Bytes in spill files now",
            G,
            spill.on_disk_bytes as f64,
        )
    }

    fn compile_metrics(&self, f: &mut Family) -> Fmt {
        let engine = self.node.engine();
        let c = engine.compile_stats();
        f.one("fabric_compiles", "Compiles started", C, c.started as f64)?;
        f.one(
            "fabric_compiles_from_disk",
            "Compiles answered from the disk cache",
            C,
            c.from_disk as f64,
        )?;
        f.one(
            "fabric_compile_functions_reused",
            "Functions compiles took from their tenant's function pack",
            C,
            c.functions_reused as f64,
        )?;
        f.one(
            "fabric_compile_functions_compiled",
            "Functions compiled (with a function pack to keep them in)",
            C,
            c.functions_compiled as f64,
        )?;
        f.one(
            "fabric_compiles_running",
            "Compiles running now",
            G,
            c.running as f64,
        )?;
        f.one(
            "fabric_compile_cache_memory_bytes",
            "Compiled components kept in memory beyond their use",
            G,
            engine.component_bytes() as f64,
        )?;
        let (files, bytes) = engine.disk_cache_size().unwrap_or((0, 0));
        f.one(
            "fabric_compile_cache_disk_components",
            "Compiled components in the disk cache",
            G,
            files as f64,
        )?;
        f.one(
            "fabric_compile_cache_disk_bytes",
            "Bytes in the disk cache (compiled components and function packs)",
            G,
            bytes as f64,
        )
    }

    fn tenant_metrics(&self, f: &mut Family) -> Fmt {
        let accounts = self.node.tenant_accounts();
        let usage: Vec<_> = accounts.iter().map(|a| a.usage()).collect();
        let counts: Vec<_> = accounts.iter().map(|a| a.task_counts().read()).collect();
        let per = |v: &dyn Fn(usize) -> f64| per_tenant(&accounts, v);
        f.labeled(
            "fabric_tasks_submitted",
            "Tasks submitted on this node",
            C,
            per(&|i| counts[i].submitted as f64),
        )?;
        let mut ended = Vec::new();
        for (a, c) in accounts.iter().zip(&counts) {
            for o in Outcome::ALL {
                let n = c.ended[o as usize];
                if n > 0 || o == Outcome::Succeeded {
                    let labels = vec![
                        ("tenant", a.name.to_string()),
                        ("outcome", o.label().into()),
                    ];
                    ended.push((labels, n as f64));
                }
            }
        }
        f.labeled(
            "fabric_tasks_finished",
            "Tasks submitted here that ended, by outcome (a failure by its kind)",
            C,
            ended,
        )?;
        f.labeled(
            "fabric_task_runs",
            "Task attempts run on this node",
            C,
            per(&|i| usage[i].tasks as f64),
        )?;
        f.labeled(
            "fabric_tenant_cpu_seconds",
            "Time tenants' guests ran here",
            C,
            per(&|i| usage[i].cpu_seconds),
        )?;
        f.labeled(
            "fabric_tenant_memory_byte_seconds",
            "Linear memory held over time",
            C,
            per(&|i| usage[i].memory_byte_seconds),
        )?;
        f.labeled(
            "fabric_tenant_object_byte_seconds",
            "Object bytes held over time",
            C,
            per(&|i| usage[i].object_byte_seconds),
        )?;
        f.labeled(
            "fabric_tenant_memory_bytes",
            "Linear memory of tenants' live instances",
            G,
            per(&|i| usage[i].memory_bytes as f64),
        )?;
        f.labeled(
            "fabric_tenant_object_bytes",
            "Tenants' objects in this node's store",
            G,
            per(&|i| usage[i].object_bytes as f64),
        )?;
        f.labeled(
            "fabric_tenant_instances_live",
            "Tenants' live instances here",
            G,
            per(&|i| usage[i].live_instances as f64),
        )?;
        self.actor_metrics(f, &accounts, &usage)
    }

    fn actor_metrics(
        &self,
        f: &mut Family,
        accounts: &[Arc<crate::tenants::TenantAccount>],
        usage: &[crate::tenants::TenantUsage],
    ) -> Fmt {
        let mut states = Vec::new();
        for (t, (alive, dead)) in self.node.actors_by_tenant() {
            for (state, n) in [("alive", alive), ("dead", dead)] {
                states.push((
                    vec![("tenant", t.to_string()), ("state", state.into())],
                    n as f64,
                ));
            }
        }
        f.labeled(
            "fabric_actors",
            "Actors hosted on this node, by state",
            G,
            states,
        )?;
        let per = |v: &dyn Fn(usize) -> f64| per_tenant(accounts, v);
        f.labeled(
            "fabric_actors_created",
            "Actors created on this node",
            C,
            per(&|i| usage[i].actors as f64),
        )?;
        f.labeled(
            "fabric_actor_restarts",
            "Actor restarts on this node",
            C,
            per(&|i| accounts[i].restarts() as f64),
        )
    }
}

fn traffic_metrics(f: &mut Family, m: &ClusterMeters) -> Fmt {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let dir = |d: &str, channel: &str, v: f64| {
        (
            vec![
                ("direction", d.to_string()),
                ("channel", channel.to_string()),
            ],
            v,
        )
    };
    f.labeled(
        "fabric_object_transfers",
        "Objects moved between this node and others (channel: tls, or local for a node on this machine)",
        C,
        [
            dir("sent", "tls", load(&m.objects_sent)),
            dir("received", "tls", load(&m.objects_received)),
            dir("sent", "local", load(&m.local_objects_sent)),
            dir("received", "local", load(&m.local_objects_received)),
        ],
    )?;
    f.labeled(
        "fabric_object_transfer_bytes",
        "Object bytes moved between this node and others (channel: tls, or local for a node on this machine)",
        C,
        [
            dir("sent", "tls", load(&m.object_bytes_sent)),
            dir("received", "tls", load(&m.object_bytes_received)),
            dir("sent", "local", load(&m.local_object_bytes_sent)),
            dir("received", "local", load(&m.local_object_bytes_received)),
        ],
    )?;
    f.histograms(
        "fabric_rpc_server_duration_seconds",
        "gRPC calls this node served, by method (streams: until their first reply)",
        "method",
        m.rpcs.read(),
    )?;
    f.histograms(
        "fabric_peer_message_duration_seconds",
        "Peer messages this node handled, by kind",
        "kind",
        m.peer_messages.read(),
    )
}

fn head_metrics(f: &mut Family, head: &Head) -> Fmt {
    let mut nodes = std::collections::BTreeMap::<&str, u64>::new();
    for n in head.nodes() {
        let state = match n.state {
            NodeState::Alive => "alive",
            NodeState::Draining => "draining",
            NodeState::Dead => "dead",
        };
        *nodes.entry(state).or_default() += 1;
    }
    let labeled = |m: std::collections::BTreeMap<Vec<(&'static str, String)>, u64>| {
        m.into_iter()
            .map(|(l, n)| (l, n as f64))
            .collect::<Vec<_>>()
    };
    f.labeled(
        "fabric_cluster_nodes",
        "Nodes the head knows, by state",
        G,
        nodes
            .into_iter()
            .map(|(s, n)| (vec![("state", s.to_string())], n as f64)),
    )?;
    let mut jobs = std::collections::BTreeMap::new();
    for j in head.jobs() {
        let status = match j.status {
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed(_) => "failed",
            JobStatus::Stopped => "stopped",
        };
        *jobs
            .entry(vec![
                ("tenant", j.tenant.clone()),
                ("status", status.into()),
            ])
            .or_default() += 1;
    }
    f.labeled(
        "fabric_cluster_jobs",
        "Jobs the head keeps, by tenant and status",
        G,
        labeled(jobs),
    )?;
    let mut actors = std::collections::BTreeMap::new();
    for a in head.actors() {
        let state = match a.state {
            ActorState::Alive => "alive",
            ActorState::Restarting => "restarting",
            ActorState::Dead(_) => "dead",
        };
        *actors
            .entry(vec![("tenant", a.tenant.clone()), ("state", state.into())])
            .or_default() += 1;
    }
    f.labeled(
        "fabric_cluster_actors",
        "Actors in the head's directory, by tenant and state",
        G,
        labeled(actors),
    )
}
