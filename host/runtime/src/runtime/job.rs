//! A job: one run of an application's driver and everything it started.
//!
//! The job owns what outlives a single task: its component, its log sink,
//! its tenant, its namespace for named actors, its manifest (and the limits
//! and capabilities decided from it) and its count of pending tasks. When
//! the driver returns, [`crate::runtime::NodeCore::finish_job`] stops the
//! job's actors and cancels its queued and running tasks, as Ray does when a
//! driver exits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::FabricError;
use crate::ids::{JobId, NodeId};
use crate::limits::Limits;
use crate::logs::LogSink;
use crate::manifest::{Granted, JobManifest};
use crate::runtime::NodeCore;
use crate::runtime::component::AppComponent;
use crate::scheduler::Cancellable;

/// The tenant of a node's own, local jobs (`fabric run`).
pub const LOCAL_TENANT: &str = "local";

/// Named actors live in namespaces of their tenant: the same name in
/// another tenant is another actor, invisible to this one.
pub(crate) fn scoped_namespace(tenant: &str, namespace: &str) -> String {
    format!("{tenant}/{namespace}")
}

/// The namespace as its tenant wrote it.
pub fn shown_namespace(scoped: &str) -> &str {
    scoped.split_once('/').map_or(scoped, |(_, ns)| ns)
}

pub struct Job {
    pub id: JobId,
    /// The driver's component: where a bare function or class name is
    /// found from the driver.
    pub app: Arc<AppComponent>,
    /// The job's other components by name (its manifest's `[components]`):
    /// `name/function` and `name/Class` run there, in whatever language
    /// each is written.
    pub parts: Parts,
    pub logs: Arc<dyn LogSink>,
    /// The tenant the job runs for: everything it creates is theirs.
    pub tenant: Arc<str>,
    /// Where the job's named actors live unless a call names another.
    pub namespace: String,
    /// The node running the driver.
    pub driver: NodeId,
    /// The manifest as submitted (other nodes decide their limits from it).
    pub manifest_text: String,
    pub limits: Limits,
    /// The tenant's books on this node.
    pub account: Arc<crate::tenants::TenantAccount>,
    /// The job's books on this node (its objects, live instances, actors).
    pub books: Arc<crate::tenants::JobBooks>,
    pub granted: Arc<Granted>,
    /// What ran of the job here (see [`crate::task_events`]).
    pub events: Arc<crate::task_events::JobEvents>,
    /// Tasks submitted here and not yet finished (kept by the task table).
    pub(crate) pending: crate::runtime::task_table::PendingTasks,
    finished: AtomicBool,
    /// Set when someone stopped the job (its driver ends at once), and
    /// the driver's task, to abort: nothing is polled on the driver's
    /// path for it.
    stop: parking_lot::Mutex<DriverStop>,
}

#[derive(Default)]
struct DriverStop {
    stopped: bool,
    driver: Option<tokio::task::AbortHandle>,
}

/// A job's named components.
pub type Parts = Arc<BTreeMap<Arc<str>, Arc<AppComponent>>>;

/// The most components one job may name.
pub const MAX_PARTS: usize = 16;

/// Checks the names of a job's components before anything is loaded: at
/// most [`MAX_PARTS`], each named like an identifier (the name goes before
/// a `/` in calls), none twice.
pub fn check_part_names<'a>(
    names: impl ExactSizeIterator<Item = &'a str>,
) -> Result<(), FabricError> {
    if names.len() > MAX_PARTS {
        return Err(FabricError::InvalidArgument(format!(
            "a job may name at most {MAX_PARTS} components, not {}",
            names.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(FabricError::InvalidArgument(format!(
                "component name `{name}`: use 1 to 64 letters, digits, `_` or `-`"
            )));
        }
        if !seen.insert(name) {
            return Err(FabricError::InvalidArgument(format!(
                "component `{name}` is named twice"
            )));
        }
    }
    Ok(())
}

/// A job's components by name, checked (see [`check_part_names`]).
pub fn parts(components: &[(String, Arc<AppComponent>)]) -> Result<Parts, FabricError> {
    check_part_names(components.iter().map(|(n, _)| n.as_str()))?;
    Ok(Arc::new(
        components
            .iter()
            .map(|(n, app)| (Arc::from(n.as_str()), app.clone()))
            .collect(),
    ))
}

/// Why a name could not be qualified.
#[derive(Debug, PartialEq)]
enum Unqualified {
    Malformed(String),
    NoPart(String),
}

/// `name` as written by a caller in component `own` (`None`: the driver's)
/// of a job whose components `known` recognizes.
fn qualified(
    name: String,
    own: Option<&str>,
    known: impl Fn(&str) -> bool,
) -> Result<String, Unqualified> {
    match name.split_once('/') {
        Some((part, local)) => {
            if part.is_empty() || local.is_empty() || local.contains('/') {
                Err(Unqualified::Malformed(name))
            } else if !known(part) {
                Err(Unqualified::NoPart(part.to_string()))
            } else {
                Ok(name)
            }
        }
        None => Ok(match own {
            Some(part) => format!("{part}/{name}"),
            None => name,
        }),
    }
}

/// What a job is made from.
pub struct JobSpec {
    pub id: JobId,
    pub app: Arc<AppComponent>,
    pub parts: Parts,
    pub logs: Arc<dyn LogSink>,
    pub tenant: Arc<str>,
    pub namespace: String,
    pub driver: NodeId,
    /// Empty for none.
    pub manifest_text: String,
}

impl Job {
    /// Decides a job's limits and capabilities from its manifest, against
    /// this node's operator defaults, caps and policy.
    pub async fn prepare(core: &NodeCore, spec: JobSpec) -> Result<Arc<Job>, FabricError> {
        let manifest = if spec.manifest_text.trim().is_empty() {
            JobManifest::default()
        } else {
            JobManifest::parse(&spec.manifest_text)?
        };
        let cfg = &core.config();
        let limits = cfg.limits.for_job(&cfg.max_limits, &manifest.limits)?;
        cfg.policy.check(&manifest.capabilities)?;
        let granted = Granted::resolve(&manifest.capabilities, &cfg.policy).await?;
        let account = core.tenants().account(&spec.tenant);
        let books = core
            .tenants()
            .add_job(spec.id, account.clone(), limits.objects);
        let events = core.task_events().open(spec.id, &spec.tenant);
        Ok(Arc::new(Job {
            id: spec.id,
            app: spec.app,
            parts: spec.parts,
            logs: spec.logs,
            tenant: spec.tenant,
            namespace: spec.namespace,
            driver: spec.driver,
            manifest_text: spec.manifest_text,
            limits,
            account,
            books,
            granted: Arc::new(granted),
            events,
            pending: Default::default(),
            finished: AtomicBool::new(false),
            stop: Default::default(),
        }))
    }

    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Stops the job: its driver's instance goes, and with it (as when a
    /// driver returns) its tasks and actors everywhere.
    pub fn stop(&self) {
        let mut s = self.stop.lock();
        s.stopped = true;
        if let Some(driver) = &s.driver {
            driver.abort();
        }
    }

    /// The task running the job's driver (aborted at once if the job was
    /// stopped before it started); `None` once it ended (the handle would
    /// keep the finished task's memory).
    pub(crate) fn set_driver(&self, driver: Option<tokio::task::AbortHandle>) {
        let mut s = self.stop.lock();
        if s.stopped
            && let Some(d) = &driver
        {
            d.abort();
        }
        s.driver = driver;
    }

    /// Takes a slot of the node's instance pool for an instance of `app`,
    /// a component of the job (see [`crate::runtime::slots`]).
    pub fn take_slot(
        &self,
        core: &NodeCore,
        holder: crate::runtime::slots::Holder,
        app: &AppComponent,
    ) -> Result<crate::runtime::slots::InstanceSlot, FabricError> {
        crate::runtime::slots::InstanceSlot::take(
            core.engine().slots(),
            &self.books,
            (self.limits.live_instances, self.limits.live_actors),
            holder,
            app.slot_weight,
        )
    }

    /// [`Job::take_slot`] for an instance of the component that holds
    /// `name` (a function or an actor class).
    pub fn take_slot_for(
        &self,
        core: &NodeCore,
        holder: crate::runtime::slots::Holder,
        name: &str,
    ) -> Result<crate::runtime::slots::InstanceSlot, FabricError> {
        let (app, _) = self.component_of(name)?;
        self.take_slot(core, holder, app)
    }

    /// The component that holds `name` (a function or an actor class, as
    /// [`Job::qualify`] wrote it), and the name within it.
    pub fn component_of<'a>(
        &'a self,
        name: &'a str,
    ) -> Result<(&'a Arc<AppComponent>, &'a str), FabricError> {
        match name.split_once('/') {
            None => Ok((&self.app, name)),
            Some((part, local)) => match self.parts.get(part) {
                Some(app) => Ok((app, local)),
                None => Err(self.no_part(part)),
            },
        }
    }

    /// `name` as a call from `caller` means it: `part/name` names one of
    /// the job's components; a bare name is in the caller's own.
    pub(crate) fn qualify(
        &self,
        caller: &crate::runtime::instance::Role,
        name: String,
    ) -> Result<String, FabricError> {
        use crate::runtime::instance::Role;
        let own = match caller {
            Role::Driver => None,
            Role::Task { function, .. } => function.split_once('/').map(|(p, _)| p),
            Role::Actor { class, .. } => class.split_once('/').map(|(p, _)| p),
        };
        qualified(name, own, |p| self.parts.contains_key(p)).map_err(|e| match e {
            Unqualified::Malformed(name) => {
                FabricError::InvalidArgument(format!("`{name}` is not `component/name`"))
            }
            Unqualified::NoPart(part) => self.no_part(&part),
        })
    }

    fn no_part(&self, part: &str) -> FabricError {
        let names: Vec<&str> = self.parts.keys().map(|k| &**k).collect();
        FabricError::NotFound(format!(
            "the job has no component `{part}` (its components: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ))
    }

    pub(crate) fn mark_finished(&self) {
        self.finished.store(true, Ordering::Release);
    }
}

impl Cancellable for Job {
    fn is_cancelled(&self) -> bool {
        self.is_finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, own: Option<&str>) -> Result<String, Unqualified> {
        qualified(name.to_string(), own, |p| p == "py" || p == "rust")
    }

    #[test]
    fn names_are_qualified_in_the_callers_component() {
        // From the driver, a bare name is the driver's own.
        assert_eq!(q("add", None), Ok("add".into()));
        // From a task or actor of `py`, a bare name stays in `py`.
        assert_eq!(q("add", Some("py")), Ok("py/add".into()));
        assert_eq!(q("rust/double", Some("py")), Ok("rust/double".into()));
        assert_eq!(q("py/Scorer", None), Ok("py/Scorer".into()));
    }

    #[test]
    fn malformed_and_unknown_components_are_refused() {
        for bad in ["py/", "/add", "py/a/b", "/", "//"] {
            assert!(
                matches!(q(bad, None), Err(Unqualified::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            q("nowhere/x", None),
            Err(Unqualified::NoPart("nowhere".into()))
        );
        assert!(check_part_names(["py", "rust"].into_iter()).is_ok());
        for bad in [vec!["a/b"], vec![""], vec!["py", "py"], vec!["x y"]] {
            assert!(
                check_part_names(bad.clone().into_iter()).is_err(),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (0..=MAX_PARTS).map(|i| format!("p{i}")).collect();
        assert!(check_part_names(many.iter().map(String::as_str)).is_err());
    }
}
