//! Services: jobs the host drives instead of a guest's `main` (Serve's
//! deployments are one each).
//!
//! A [`Service`] is a job without a driver. The host creates its actors and
//! calls their methods with encoded arguments, and they run as a guest's
//! would: admitted against the tenant's quota, under the job's manifest,
//! restarted by their policy, here or (through the node's port) elsewhere.
//! Its actors are neither named nor counted by handles: they live until
//! killed, or until the service stops (or is dropped), which ends the job.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use fabric_runtime::{Node, NodeConfig, logs::TerminalSink};
//! use fabric_runtime::runtime::service::ServiceActor;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::default())?;
//! let app = node.load(&std::fs::read("app.wasm")?).await?;
//! let service = node.start_service(app, Arc::new(TerminalSink), Default::default()).await?;
//! let actor = service.create_actor(ServiceActor::new("Counter")).await?;
//! // A method's one argument, as MessagePack: the integer 5.
//! let value = service.call(actor, "add", vec![Bytes::from_static(&[5])]).await?;
//! service.stop();
//! # Ok(()) }
//! ```

use std::sync::Arc;

use bytes::Bytes;

use crate::error::FabricError;
use crate::host_api;
use crate::ids::{ActorId, JobId, ObjectId};
use crate::placement::Strategy;
use crate::resources::ResourceSet;
use crate::runtime::NodeCore;
use crate::runtime::actor::{ActorCall, ActorSpec, Restarts};
use crate::runtime::instance::Role;
use crate::runtime::job::Job;
use crate::runtime::task::{Reply, TaskArg};

/// An actor a service asks for.
#[derive(Clone, Debug)]
pub struct ServiceActor {
    /// Its class (`component/Class` in a job of several components).
    pub class: String,
    /// The constructor's arguments, each encoded.
    pub args: Vec<Bytes>,
    /// What it holds while it lives (1 CPU unless said otherwise).
    pub demand: ResourceSet,
    /// Restarts, and calls at once (`max_concurrency`).
    pub policy: Restarts,
}

impl ServiceActor {
    /// An actor of `class` with no arguments, 1 CPU and no restarts.
    pub fn new(class: impl Into<String>) -> Self {
        ServiceActor {
            class: class.into(),
            args: Vec::new(),
            demand: ResourceSet::default().with_cpus(1.0),
            policy: Restarts::default(),
        }
    }
}

/// A call in flight: its result object, charged to the service's job
/// while this lives.
pub struct Pending {
    result: crate::object_store::ObjectRef,
}

impl Pending {
    /// The call's encoded result, or how it failed.
    pub async fn outcome(&self) -> Result<Bytes, FabricError> {
        self.result.get(None).await
    }
}

/// A job the host drives. Stopping it (or dropping it) ends the job and
/// its actors.
pub struct Service {
    core: Arc<NodeCore>,
    job: Arc<Job>,
}

impl Service {
    pub(crate) fn new(core: Arc<NodeCore>, job: Arc<Job>) -> Self {
        Service { core, job }
    }

    /// The service's job.
    pub fn job_id(&self) -> JobId {
        self.job.id
    }

    /// The tenant it runs for.
    pub fn tenant(&self) -> &str {
        &self.job.tenant
    }

    /// Creates an actor of the service's job, here or where it fits.
    pub async fn create_actor(&self, actor: ServiceActor) -> Result<ActorId, FabricError> {
        host_api::check_name("class", &actor.class)?;
        if self.job.is_finished() {
            return Err(FabricError::Cancelled);
        }
        let class = self.job.qualify(&Role::Driver, actor.class)?;
        self.core.port().check_feasible(&actor.demand)?;
        let spec = ActorSpec::new(
            ActorId::random(),
            self.job.clone(),
            class.into(),
            actor.args.into_iter().map(TaskArg::Value).collect(),
            Vec::new(),
            actor.demand,
            None,
            false,
            actor.policy,
        );
        self.core
            .port()
            .create_actor(spec, Strategy::Default, false)
            .await
    }

    /// Queues a call of `method` of `actor` with encoded `args`. An error
    /// here is the service's own (over its tenant's quota, say), not the
    /// actor's; the call's own outcome comes from [`Pending::outcome`].
    /// Dropping the [`Pending`] leaves the call to finish, uncharged: hold it
    /// until the call is done to keep its arguments and result counted.
    pub async fn submit(
        &self,
        actor: ActorId,
        method: &str,
        args: Vec<Bytes>,
    ) -> Result<Pending, FabricError> {
        host_api::check_name("method", method)?;
        let method: Arc<str> = method.into();
        let held = args.iter().map(|a| a.len() as u64).sum();
        let result = ObjectId::random();
        let result_ref =
            self.core
                .objects()
                .create_pending(result, self.job.id, method.clone(), held)?;
        let call = ActorCall {
            method,
            args: args.into_iter().map(TaskArg::Value).collect(),
            nested: Vec::new(),
            result,
            reply: Reply::Local,
            stream: None,
            keep: None,
            queued_us: 0,
        };
        host_api::actors::deliver(&self.core, actor, &self.job.tenant, call).await?;
        Ok(Pending { result: result_ref })
    }

    /// [`Service::submit`], then the call's outcome.
    pub async fn call(
        &self,
        actor: ActorId,
        method: &str,
        args: Vec<Bytes>,
    ) -> Result<Bytes, FabricError> {
        self.submit(actor, method, args).await?.outcome().await
    }

    /// Registers `router` as `name` in the tenant's `namespace`, where its
    /// guests find it as a named actor whose calls it routes (see
    /// [`crate::runtime::routers`]), until the registration is dropped;
    /// another router there keeps the name (`None`) unless `take_over`.
    pub fn register_router(
        &self,
        namespace: &str,
        name: &str,
        router: Arc<dyn crate::runtime::routers::CallRouter>,
        take_over: bool,
    ) -> Result<Option<crate::runtime::routers::RouterRegistration>, FabricError> {
        host_api::check_name("actor", name)?;
        let tenant = &self.job.tenant;
        crate::runtime::routers::register(&self.core, tenant, namespace, name, router, take_over)
    }

    /// Stops `actor` (its queued calls fail with `actor-died`).
    pub async fn kill(&self, actor: ActorId) -> Result<(), FabricError> {
        let why = "was stopped by its service";
        host_api::actors::kill_by_id(&self.core, actor, &self.job.tenant, why).await
    }

    /// Ends the job: its actors stop, calls in flight fail.
    pub fn stop(self) {}
}

impl Drop for Service {
    fn drop(&mut self) {
        self.core.end_driven_job(&self.job);
    }
}
