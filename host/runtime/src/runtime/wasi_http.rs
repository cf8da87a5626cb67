//! `wasi:http/incoming-handler`: an unchanged `wasi:http` proxy component
//! (what `wasmtime serve` and Spin run) answers HTTP requests, a fresh
//! instance for each request.
//!
//! An [`HttpApp`] is such a component compiled and pre-instantiated
//! (imports resolved once), so a request costs one instantiation from the
//! engine's pool, copy-on-write from its memory image. An [`HttpService`]
//! runs requests for one tenant under one manifest, as a job would: each
//! instance takes a slot of the pool (the tenant's share, the job's
//! `live_instances`), its linear memory is charged to the tenant and bounded
//! by the manifest's `memory`, its CPU time by `cpu_time` (epoch ticks, as
//! any guest's), and the whole request, body included, by its deadline.
//! The proxy world imports no filesystem and no sockets; outgoing requests
//! (`wasi:http/outgoing-handler`) are refused with `HTTP-request-denied`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use fabric_runtime::{Node, NodeConfig, logs::TerminalSink};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::default())?;
//! let app = node.load_http(&std::fs::read("proxy.wasm")?, None).await?;
//! let service = node.start_http_service(app, Arc::new(TerminalSink), Default::default()).await?;
//! let request = http::Request::get("http://example.com/hello").body(bytes::Bytes::new())?;
//! let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
//! let response = service.handle(request, deadline, ()).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::error::{FabricError, FailureKind, LoadError};
use crate::ids::JobId;
use crate::limits::{Limits, exceeded};
use crate::logs::{GuestOutput, LogSink, LogSource, Stream};
use crate::runtime::NodeCore;
use crate::runtime::cpu_share::TenantShare;
use crate::runtime::engine::EPOCH_TICK;
use crate::runtime::instance::{count_tick, ticks_in};
use crate::runtime::limiter::{Limiter, MemoryCharge};
use crate::runtime::slots::{Holder, InstanceSlot};
use crate::tenants::{JobBooks, TenantAccount};

/// A response body as it streams from an instance.
pub type HttpBody = HyperOutgoingBody;

/// The export a proxy component must have.
const HANDLER: &str = "wasi:http/incoming-handler";

/// A compiled `wasi:http` proxy component, ready to instantiate.
pub struct HttpApp {
    digest: String,
    pre: ProxyPre<HttpState>,
    /// Host memory it holds: its bytes and its compiled code.
    held: u64,
    slot_weight: u64,
}

impl HttpApp {
    /// Hex SHA-256 of the component bytes (custom sections dropped).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Host memory it holds: its bytes and its compiled code.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }
}

/// The linker a proxy component links against: WASI 0.2 and `wasi:http`.
/// WASI as a whole, not the proxy world's part of it alone, because
/// toolchains import more than they use (Rust's standard library imports
/// `wasi:cli/environment` and `wasi:filesystem`); what those interfaces
/// reach is the store's to grant, and a request's store grants no
/// directory and no socket.
pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HttpState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// Loads a proxy component compiled by this engine's compiler (see
/// [`super::component::load_precompiled`] for why the artifact is trusted).
pub(crate) fn load_precompiled(
    engine: &wasmtime::Engine,
    linker: &Linker<HttpState>,
    bytes: &[u8],
    artifact: &[u8],
) -> Result<Arc<HttpApp>, LoadError> {
    // SAFETY: as in `component::load_precompiled`: the artifact is what
    // this engine's own compiler made, from its bounded child process or
    // the node's private, checksummed disk cache.
    let component = unsafe { Component::deserialize(engine, artifact) }
        .map_err(|e| LoadError::Compile(format!("the compiled artifact does not load: {e:#}")))?;
    prepare(linker, bytes, component)
}

/// Compiles and links `bytes` in this process (trusted code only).
pub(crate) fn load(
    engine: &wasmtime::Engine,
    linker: &Linker<HttpState>,
    bytes: &[u8],
) -> Result<Arc<HttpApp>, LoadError> {
    let component =
        Component::new(engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
    prepare(linker, bytes, component)
}

fn prepare(
    linker: &Linker<HttpState>,
    bytes: &[u8],
    component: Component,
) -> Result<Arc<HttpApp>, LoadError> {
    let pre = linker.instantiate_pre(&component).map_err(|e| {
        LoadError::NotHttpProxy(format!(
            "{e:#} (it may import only `wasi:http` and WASI 0.2)"
        ))
    })?;
    let pre = ProxyPre::new(pre)
        .map_err(|e| LoadError::NotHttpProxy(format!("it does not export `{HANDLER}`: {e:#}")))?;
    let image = component.image_range();
    let code = (image.end as usize).saturating_sub(image.start as usize);
    Ok(Arc::new(HttpApp {
        digest: super::component::digest(bytes),
        pre,
        held: (code + bytes.len()) as u64,
        slot_weight: super::engine::slot_weight(&component),
    }))
}

/// One request's instance state.
pub(crate) struct HttpState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: NoOutgoing,
    limiter: Limiter,
    /// Epoch ticks of running wasm so far, and the most allowed.
    ticks: u64,
    max_ticks: u64,
    /// The bound that stopped it, if one did.
    breach: Option<FabricError>,
    /// Its fuel and wasm stack bounds, to name them when they stop it.
    fuel: u64,
    stack: u64,
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Refuses every outgoing request: a deployment reaches no network.
struct NoOutgoing;

type Sent = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for NoOutgoing {
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        BODY_CHUNKS
    }

    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Sent {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// Requests of one tenant under one manifest: a job whose instances are
/// requests. Dropping it ends the job (requests in flight finish).
pub struct HttpService {
    core: Arc<NodeCore>,
    app: Arc<HttpApp>,
    id: JobId,
    tenant: Arc<str>,
    limits: Limits,
    env: Vec<(String, String)>,
    account: Arc<TenantAccount>,
    books: Arc<JobBooks>,
    logs: Arc<dyn LogSink>,
    /// Its tenant's share of the node's threads, which its instances run
    /// within: a tenant's many requests do not take every thread.
    cpu_share: Arc<TenantShare>,
}

impl Drop for HttpService {
    fn drop(&mut self) {
        self.core.tenants().job_finished(self.id);
    }
}

impl HttpService {
    /// Admits a service of `app` for `tenant` under `manifest` (TOML; empty
    /// for none): its limits within the node's, its capabilities within
    /// the node's policy (only environment variables mean anything here).
    pub(crate) async fn start(
        core: Arc<NodeCore>,
        app: Arc<HttpApp>,
        logs: Arc<dyn LogSink>,
        tenant: Arc<str>,
        manifest: &str,
    ) -> Result<Self, FabricError> {
        let manifest = if manifest.trim().is_empty() {
            crate::manifest::JobManifest::default()
        } else {
            crate::manifest::JobManifest::parse(manifest)?
        };
        let cfg = core.config();
        let limits = cfg.limits.for_job(&cfg.max_limits, &manifest.limits)?;
        cfg.policy.check(&manifest.capabilities)?;
        let granted =
            crate::manifest::Granted::resolve(&manifest.capabilities, &cfg.policy).await?;
        let id = JobId::random();
        let account = core.tenants().account(&tenant);
        let books = core.tenants().add_job(id, account.clone(), limits.objects);
        let cpu_share = core.cpu_shares().tenant(&tenant);
        Ok(HttpService {
            cpu_share,
            core,
            app,
            id,
            tenant,
            limits,
            env: granted.env,
            account,
            books,
            logs,
        })
    }

    /// The tenant it runs for.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The component it runs.
    pub fn app(&self) -> &Arc<HttpApp> {
        &self.app
    }

    /// Answers `request` with a fresh instance. The response comes back
    /// once the guest has set it; its body streams from the instance, which
    /// lives until it finished the body or `deadline` passed (then the body
    /// ends early, and the instance with it). `hold` (the caller's place,
    /// say) is kept as long as the instance lives.
    pub async fn handle<G: Send + 'static>(
        &self,
        request: http::Request<Bytes>,
        deadline: Instant,
        hold: G,
    ) -> Result<http::Response<HttpBody>, FabricError> {
        let slot = InstanceSlot::take(
            self.core.engine().slots(),
            &self.books,
            (self.limits.live_instances, self.limits.live_actors),
            Holder::Task,
            self.app.slot_weight,
        )?;
        // The manifest's wall time bounds a request as it bounds a call.
        let deadline = deadline.min(Instant::now() + self.limits.wall_time);
        let charge = MemoryCharge::new(Some(self.account.clone()));
        let mut store = self.store(charge.clone());
        let (sender, answered) = tokio::sync::oneshot::channel();
        let view = &mut store.data_mut().http();
        let incoming = view
            .new_incoming_request(Scheme::Http, request.map(Full::new))
            .map_err(|e| FabricError::InvalidArgument(format!("{e:#}")))?;
        let out = view
            .new_response_outparam(sender)
            .map_err(|e| FabricError::InvalidArgument(format!("{e:#}")))?;
        let (ended, outcome) = tokio::sync::oneshot::channel();
        let instance = Instance {
            pre: self.app.pre.clone(),
            store,
            account: self.account.clone(),
            deadline,
        };
        // The instance runs on a task of its own: it may go on writing the
        // body after the response's head went back. Its store (and so its
        // memory) goes first, then its charge, its slot and `hold`. It runs
        // within its tenant's share of the threads.
        tokio::spawn(self.cpu_share.run(async move {
            instance.run(incoming, out, ended).await;
            drop((charge, slot, hold));
        }));
        match answered.await {
            Ok(Ok(response)) => Ok(response.map(|body| {
                http_body_util::BodyExt::boxed_unsync(Checked {
                    body,
                    outcome: Some(outcome),
                })
            })),
            Ok(Err(code)) => Err(FabricError::failure(
                "handle",
                FailureKind::ApplicationError,
                format!("the handler answered with an error: {}", brief(&code)),
            )),
            // The outparam went with the store, unset.
            Err(_) => match outcome.await {
                Ok(Ok(())) => Err(FabricError::failure(
                    "handle",
                    FailureKind::BadValue,
                    "the handler returned without a response",
                )),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(FabricError::failure(
                    "handle",
                    FailureKind::System,
                    "the instance's task ended",
                )),
            },
        }
    }

    /// A store for one request: output to the service's logs, the granted
    /// environment, the manifest's memory and CPU-time bounds.
    fn store(&self, charge: Arc<MemoryCharge>) -> Store<HttpState> {
        let limits = &self.limits;
        let source = LogSource {
            prefix: Arc::from("(http request) "),
        };
        let output =
            |stream| GuestOutput::new(self.logs.clone(), source.clone(), stream, limits.log_bytes);
        let wasi = WasiCtx::builder()
            .stdout(output(Stream::Stdout))
            .stderr(output(Stream::Stderr))
            .envs(&self.env)
            // wasmtime-wasi's defaults, stated: no socket, no name lookup.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        // Bounds what a guest can make the host hold in handles (fields,
        // bodies, futures) within its one request.
        table.set_max_capacity(HANDLES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELD_BYTES);
        let state = HttpState {
            wasi,
            http,
            table,
            hooks: NoOutgoing,
            limiter: Limiter::new(limits, charge),
            ticks: 0,
            max_ticks: ticks_in(limits.cpu_time),
            breach: None,
            fuel: limits.fuel.unwrap_or(0),
            stack: self.core.engine().settings().max_wasm_stack as u64,
        };
        let mut store = Store::new(self.core.engine().engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(HOST_CALL_BYTES);
        if self.core.engine().settings().fuel_metering {
            let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        }
        // At every tick: count the guest's CPU time, stop it past its
        // limit, else yield so other requests run.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            count_tick(&mut s.ticks, s.max_ticks, &mut s.breach, "request")
        });
        store
    }
}

/// Handles one request's instance may hold at once.
const HANDLES: usize = 256;
/// The most bytes of header fields a guest may build in one `fields`.
const FIELD_BYTES: usize = 64 << 10;
/// What an outgoing body buffers in the host: chunks of this size, and
/// how many beyond the one being sent. With [`HANDLES`] and
/// [`FIELD_BYTES`], a request's instance can make the host hold at most
/// about 256 × (64 KiB + 2 × 64 KiB) = 48 MiB besides its linear memory.
const BODY_CHUNK: usize = 64 << 10;
const BODY_CHUNKS: usize = 1;
/// The most bytes one host call copies between the guest and the host
/// (a field, a chunk of a body, an error's text).
const HOST_CALL_BYTES: usize = 1 << 20;

/// One request's instance, before it runs.
struct Instance {
    pre: ProxyPre<HttpState>,
    store: Store<HttpState>,
    account: Arc<TenantAccount>,
    deadline: Instant,
}

impl Instance {
    /// Instantiates and calls the handler, within the deadline; tells
    /// `ended` how it went *before* the store goes, so that a body cut
    /// short by the store's end is known to be cut short (see [`Checked`]).
    async fn run(
        mut self,
        incoming: wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>,
        out: wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostResponseOutparam>,
        ended: tokio::sync::oneshot::Sender<Result<(), FabricError>>,
    ) {
        let store = &mut self.store;
        let pre = self.pre;
        let run = async {
            let proxy = pre.instantiate_async(&mut *store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, incoming, out)
                .await
        };
        let outcome = match tokio::time::timeout_at(self.deadline, run).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failure(store, e)),
            Err(_) => Err(FabricError::Timeout),
        };
        let ticks = store.data().ticks;
        self.account
            .add_cpu(EPOCH_TICK * ticks.min(u32::MAX as u64) as u32);
        let _ = ended.send(outcome);
    }
}

/// A response body that ends with an error, not cleanly, when its
/// instance failed: a store that goes (a trap, a limit, the deadline)
/// ends the body as if it were finished, and a client must not take a
/// cut-off body for a whole one.
struct Checked {
    body: HttpBody,
    outcome: Option<tokio::sync::oneshot::Receiver<Result<(), FabricError>>>,
}

impl http_body::Body for Checked {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let frame = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if !matches!(frame, Poll::Ready(None)) {
            return frame;
        }
        // The body ended: cleanly if the guest finished it (its instance
        // then is still running, or ended well), else the instance failed
        // and told so before its store went.
        let Some(mut outcome) = self.outcome.take() else {
            return Poll::Ready(None);
        };
        use tokio::sync::oneshot::error::TryRecvError;
        match outcome.try_recv() {
            // Still running, or ended well: the guest finished its body.
            Err(TryRecvError::Empty) | Ok(Ok(())) => Poll::Ready(None),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "a wasi:http instance failed while it sent its body");
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseIncomplete)))
            }
            // Its task ended without a word (a panic): not a whole body.
            Err(TryRecvError::Closed) => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseIncomplete)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// An error code the handler set, for a log line: its variant and at most
/// 256 bytes of what it says (the text is the guest's, of any size).
fn brief(code: &ErrorCode) -> String {
    struct Bounded(String);
    impl std::fmt::Write for Bounded {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            if self.0.len() + s.len() > 256 {
                return Err(std::fmt::Error);
            }
            self.0.push_str(s);
            Ok(())
        }
    }
    let mut out = Bounded(String::new());
    if std::fmt::write(&mut out, format_args!("{code:?}")).is_err() {
        out.0.push_str("...");
    }
    out.0
}

/// A trap as a typed failure: a broken bound names the bound.
fn failure(store: &mut Store<HttpState>, e: wasmtime::Error) -> FabricError {
    let state = store.data_mut();
    if let Some(breach) = state.breach.take().or_else(|| state.limiter.take_breach()) {
        return breach;
    }
    let trap = e.downcast_ref::<wasmtime::Trap>().copied();
    match trap {
        Some(wasmtime::Trap::OutOfFuel) => {
            return exceeded("fuel", state.fuel, "the request ran out of fuel");
        }
        Some(wasmtime::Trap::StackOverflow) => {
            return exceeded(
                "wasm-stack",
                state.stack,
                "the request overflowed its stack",
            );
        }
        _ => {}
    }
    let message = format!("{e:#}");
    let message = match trap {
        Some(t) if !message.starts_with(&t.to_string()) => format!("{t}: {message}"),
        _ => message,
    };
    FabricError::failure("handle", FailureKind::Trap, message)
}
