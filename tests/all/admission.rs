//! What a caller must prove, and what it may spend, before a node works for
//! it: jobs quota before any compile, compiles that take turns, compiled
//! components kept within budgets, and connections that cannot pile up.

use std::time::{Duration, Instant};

use fabric_host::NodeConfig;
use fabric_host::config::IngressLimits;
use fabric_host::quota::Quota;
use fabric_host::runtime::component_cache::ComponentBounds;
use fabric_host::runtime::engine::{EngineSettings, FabricEngine};
use wasmfabric_proto::v1 as pb;

use crate::hostile::control;
use crate::support::{
    compile_sandbox, distinct_component, test_cluster_on, test_config, with_custom_section,
};

/// An engine of its own (so a test can count its compiles), compiling in
/// the bounded child process as a node does.
fn own_engine(components: ComponentBounds) -> FabricEngine {
    FabricEngine::new(&EngineSettings {
        max_instances: 200,
        compile: Some(compile_sandbox()),
        components,
        ..EngineSettings::default()
    })
    .expect("engine")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_jobs_quota_is_refused_before_its_component_is_compiled() {
    // Sixteen submits at once from a tenant allowed one job: each once got
    // past the quota check and started a compiler before fifteen were
    // refused.
    let engine = own_engine(ComponentBounds::default());
    let c = test_cluster_on(
        engine.clone(),
        vec![NodeConfig {
            num_cpus: Some(2.0),
            ..test_config()
        }],
    )
    .await;
    let quota = Quota {
        jobs: Some(1),
        ..Quota::default()
    };
    let token = c.tokens.add_tenant("bob", quota).unwrap();
    let before = engine.compile_stats().started;
    let mut submits = tokio::task::JoinSet::new();
    for n in 0..16 {
        let mut client = control(&c, &token).await;
        submits.spawn(async move {
            let request = pb::SubmitJobRequest {
                component: distinct_component(n).into(),
                args: vec!["hold".into(), "2000".into()],
                manifest: String::new(),
                components: Vec::new(),
            };
            client.submit_job(request).await
        });
    }
    let (mut started, mut refused) = (Vec::new(), 0);
    while let Some(r) = submits.join_next().await {
        match r.unwrap() {
            Ok(events) => started.push(events.into_inner()),
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                assert!(s.message().contains("jobs-quota"), "{s:?}");
                refused += 1;
            }
        }
    }
    assert_eq!((started.len(), refused), (1, 15));
    assert_eq!(
        engine.compile_stats().started - before,
        1,
        "only the admitted job's component was compiled"
    );
    // The admitted job runs to the end; then the slot is free again.
    let mut events = started.pop().unwrap();
    while let Some(e) = events.message().await.unwrap() {
        if let Some(pb::job_event::Kind::Finished(f)) = e.kind {
            assert!(f.ok, "{f:?}");
        }
    }
}

/// Loads `components` (component, tenant) at once on `engine`.
async fn load_all(engine: &FabricEngine, components: Vec<(Vec<u8>, &'static str)>) {
    let mut loads = tokio::task::JoinSet::new();
    for (wasm, tenant) in components {
        let engine = engine.clone();
        loads.spawn(async move { engine.load_for(&wasm, tenant).await.map(|_| ()) });
    }
    while let Some(r) = loads.join_next().await {
        r.unwrap().expect("loads");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiles_take_turns_within_a_tenant_and_within_the_node() {
    let bounds = ComponentBounds {
        compiles: 2,
        compiles_per_tenant: 1,
        ..ComponentBounds::default()
    };
    // One tenant's six components: one compile at a time.
    let engine = own_engine(bounds.clone());
    load_all(
        &engine,
        (0..6)
            .map(|n| (distinct_component(100 + n), "solo"))
            .collect(),
    )
    .await;
    let stats = engine.compile_stats();
    assert_eq!((stats.started, stats.most_at_once), (6, 1));
    // Three tenants' two each: two at a time, the node's bound.
    let engine = own_engine(bounds);
    let tenants = ["a", "b", "c"];
    load_all(
        &engine,
        (0..6)
            .map(|n| (distinct_component(200 + n), tenants[n as usize % 3]))
            .collect(),
    )
    .await;
    let stats = engine.compile_stats();
    assert_eq!((stats.started, stats.most_at_once), (6, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_are_kept_without_custom_sections_and_within_each_tenants_budget() {
    // What one compiled breaches component holds.
    let probe = own_engine(ComponentBounds::default());
    let one = probe.load_for(&distinct_component(300), "t").await.unwrap();
    let held = one.held_bytes();
    // A budget for three of them per tenant.
    let engine = own_engine(ComponentBounds {
        cache_bytes_per_tenant: held * 3 + held / 2,
        cache_bytes: held * 10,
        ..ComponentBounds::default()
    });
    let in_use = engine
        .load_for(&distinct_component(400), "t")
        .await
        .unwrap();
    for n in 0..8 {
        // Each with 48 MiB of custom section, none of it kept.
        let bloated = with_custom_section(distinct_component(500 + n), 48 << 20, n as u8);
        let app = engine.load_for(&bloated, "t").await.unwrap();
        assert!(
            app.held_bytes() < held + (64 << 10) && app.bytes().len() < bloated.len() - (48 << 20),
            "kept {} bytes of a {} byte component",
            app.held_bytes(),
            bloated.len()
        );
    }
    let kept = engine.component_bytes_of("t");
    assert!(
        (held * 3 - held / 2..=held * 3 + held / 2).contains(&kept),
        "tenant t is charged {kept} bytes of components (each {held})"
    );
    // Another tenant's components do not push t's out, within the node's budget.
    engine
        .load_for(&distinct_component(600), "u")
        .await
        .unwrap();
    assert_eq!(engine.component_bytes_of("t"), kept);
    assert!(engine.component_bytes() <= held * 10);
    // A component in use stays findable however full the cache is.
    assert!(engine.cached(in_use.digest()).is_some());
    let digest = in_use.digest().to_string();
    drop(in_use);
    assert!(engine.cached(&digest).is_none(), "evicted once unused");
}

/// Raises this process's open-file limit to its hard limit.
fn raise_fd_limit() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
    }
}

/// How many of `streams` the other side has not closed.
fn still_open(streams: &[std::net::TcpStream]) -> usize {
    use std::io::Read;
    streams
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            // `Read` is implemented for `&TcpStream`.
            matches!((&mut &**s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_a_handshake_are_capped_and_closed() {
    // Two thousand TCP connections that send nothing once stayed open forever.
    raise_fd_limit();
    let limits = IngressLimits {
        handshake_timeout: Duration::from_secs(1),
        ..IngressLimits::default()
    };
    let c = crate::support::test_cluster_with_ingress(
        limits.clone(),
        vec![
            NodeConfig {
                num_cpus: Some(1.0),
                ..test_config()
            },
            NodeConfig {
                num_cpus: Some(1.0),
                ..test_config()
            },
        ],
    )
    .await;
    // The peers connect to each other first (over their own connections,
    // as nodes on other hosts would: all of these share one address).
    crate::support::run_ok(c.head(), crate::support::programs::CLUSTER, &["spread"]).await;
    let address = c.handles[0].address().to_string();
    let idle: Vec<std::net::TcpStream> = (0..2000)
        .filter_map(|_| std::net::TcpStream::connect(&address).ok())
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open = still_open(&idle);
    assert!(
        open <= limits.handshakes_per_address,
        "{open} of {} idle connections still open",
        idle.len()
    );
    // The two nodes (peers, over their own connections) and a client still
    // work meanwhile: a job spread over both nodes succeeds.
    let out =
        crate::support::run_ok(c.head(), crate::support::programs::CLUSTER, &["spread"]).await;
    assert_eq!(
        out.lines().filter(|l| l.starts_with("node ")).count(),
        2,
        "{out}"
    );
    tokio::time::sleep(limits.handshake_timeout + Duration::from_millis(500)).await;
    assert_eq!(
        still_open(&idle),
        0,
        "the handshake timeout closed them all"
    );
    let mut client = control(&c, crate::support::TEST_ADMIN_TOKEN).await;
    client
        .cluster_state(pb::ClusterStateRequest {})
        .await
        .expect("a client is served after the flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_a_bounded_number_of_connections_per_address() {
    let limits = IngressLimits {
        client_connections_per_address: 8,
        ..IngressLimits::default()
    };
    let c = crate::support::test_cluster_with_ingress(
        limits,
        vec![NodeConfig {
            num_cpus: Some(1.0),
            ..test_config()
        }],
    )
    .await;
    let security = c.security.clone();
    let address = format!("https://{}", c.handles[0].address());
    // Each channel is one connection; a call on it tells whether the node
    // serves it.
    let call = |channel: tonic::transport::Channel| async move {
        let token = fabric_host::security::AddToken::new(crate::support::TEST_ADMIN_TOKEN).unwrap();
        let mut client =
            wasmfabric_proto::v1::control_client::ControlClient::with_interceptor(channel, token);
        client
            .cluster_state(pb::ClusterStateRequest {})
            .await
            .is_ok()
    };
    let connect = || async {
        tonic::transport::Endpoint::from_shared(address.clone())
            .unwrap()
            .tls_config(fabric_host::security::client_tls(&security.ca_cert))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        match connect().await {
            Ok(ch) if call(ch.clone()).await => held.push(ch),
            _ => refused += 1,
        }
        assert!(Instant::now() < deadline);
    }
    assert_eq!((held.len(), refused), (8, 12));
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = connect().await.expect("connects");
    assert!(call(again).await, "a connection is free again");
}

/// A node keeps what it compiled in its private disk cache: a second node
/// (a restart) loads the artifact instead of compiling, and a damaged file
/// fails its checksum and is compiled again, never loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_components_are_kept_on_disk_and_damaged_ones_compiled_again() {
    let dir = crate::support::unique_temp_path("compiled");
    let engine = || {
        FabricEngine::new(&EngineSettings {
            max_instances: 50,
            compile: Some(compile_sandbox()),
            compiled_dir: Some(dir.clone()),
            ..EngineSettings::default()
        })
        .expect("engine")
    };
    let bytes = distinct_component(7_001);
    let first = engine();
    first.load(&bytes).await.expect("load");
    assert_eq!(first.compile_stats().from_disk, 0);
    // The artifact, and the tenant's function pack.
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|f| !f.file_name().to_string_lossy().starts_with("functions-"))
        .collect();
    assert_eq!(files.len(), 1, "one artifact kept");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the cache is private");

    let second = engine();
    let app = second.load(&bytes).await.expect("load from disk");
    assert_eq!(second.compile_stats().from_disk, 1);
    let node = fabric_host::Node::start_with_engine(
        NodeConfig {
            num_cpus: Some(1.0),
            ..test_config()
        },
        second.clone(),
    )
    .unwrap();
    let out = node
        .run_job(
            app,
            vec!["list".into()],
            std::sync::Arc::new(fabric_host::logs::MemorySink::default()),
        )
        .await;
    assert!(out.result.is_ok(), "{:?}", out.result);

    // One flipped bit in the machine code: the checksum catches it.
    let path = files[0].path();
    let mut artifact = std::fs::read(&path).unwrap();
    let last = artifact.len() - 1;
    artifact[last] ^= 1;
    std::fs::write(&path, &artifact).unwrap();
    let third = engine();
    third.load(&bytes).await.expect("compiled again");
    assert_eq!(third.compile_stats().from_disk, 0);
    let again = std::fs::read(&path).unwrap();
    assert_ne!(again, artifact, "the damaged file was replaced");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A tenant's second component reuses the functions its first compiled
/// (Cranelift's cache, kept as the tenant's function pack in the private
/// disk cache); another tenant's compile reads nothing of that pack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_compiles_reuse_its_own_functions_and_no_one_elses() {
    let dir = crate::support::unique_temp_path("functions");
    let engine = FabricEngine::new(&EngineSettings {
        max_instances: 50,
        compile: Some(compile_sandbox()),
        compiled_dir: Some(dir.clone()),
        ..EngineSettings::default()
    })
    .expect("engine");
    // The same guest made distinct: the same functions, other digests.
    engine
        .load_for(&distinct_component(7_101), "alice")
        .await
        .expect("load");
    let first = engine.compile_stats();
    assert_eq!(first.functions_reused, 0);
    assert!(first.functions_compiled > 100, "{first:?}");
    engine
        .load_for(&distinct_component(7_102), "alice")
        .await
        .expect("load");
    let second = engine.compile_stats();
    let reused = second.functions_reused - first.functions_reused;
    let compiled = second.functions_compiled - first.functions_compiled;
    assert!(
        reused >= first.functions_compiled * 9 / 10 && compiled < reused / 10,
        "alice's second compile: {reused} reused, {compiled} compiled"
    );
    engine
        .load_for(&distinct_component(7_103), "mallory")
        .await
        .expect("load");
    let third = engine.compile_stats();
    assert_eq!(third.functions_reused, second.functions_reused, "{third:?}");
    assert!(third.functions_compiled - second.functions_compiled > 100);
    let packs = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().starts_with("functions-"))
        .count();
    assert_eq!(packs, 2, "a pack for each tenant");
    std::fs::remove_dir_all(&dir).unwrap();
}
