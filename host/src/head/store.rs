//! The head's durable state: nodes, actors (named and detached ones
//! included) and jobs, in a redb database in the head's data directory, so
//! that a head killed and started again on the same directory knows the
//! cluster it had. (Tenants and tokens live in `security/tokens.toml`
//! beside it, written atomically on every change.)
//!
//! Writes go to one writer thread that commits whatever has queued up in
//! one transaction (group commit), durably (`fsync`) before acknowledging:
//! a directory change the head confirmed survives its crash. Heartbeats are
//! not written: a restarted head gives every worker it knew one death
//! timeout to heartbeat again.
//!
//! ```no_run
//! # use fabric_host::head::HeadStore;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (store, loaded) = HeadStore::open(std::path::Path::new("/var/lib/fabric/head.redb"))?;
//! println!("{} actors known", loaded.actors.len());
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use prost::Message;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;
use wasmfabric_proto::v1 as pb;

use super::records::{ActorRecord, JobRecord, NodeRecord, Record};
use super::wire;

use crate::error::NodeError;

const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("nodes");
const ACTORS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("actors");
const JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jobs");
const GROUPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("groups");
/// Serve deployments, keyed by tenant, a zero byte and name.
const SERVE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("serve");

/// What the store held when it was opened.
#[derive(Debug, Default)]
pub struct Loaded {
    pub nodes: Vec<NodeRecord>,
    pub actors: Vec<ActorRecord>,
    pub jobs: Vec<JobRecord>,
    pub groups: Vec<crate::runtime::groups::GroupInfo>,
    pub serve: Vec<super::serve_dir::ServeRecord>,
    /// Which of them an older head saved with their route token itself:
    /// the head saves them again, with its digest alone.
    pub serve_plain_tokens: Vec<(String, String)>,
}

struct Batch {
    records: Vec<Record>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// The head's database and its writer thread.
pub struct HeadStore {
    tx: parking_lot::Mutex<mpsc::Sender<Batch>>,
}

fn db_error(path: &Path, e: impl std::fmt::Display) -> NodeError {
    NodeError::Config(format!("the head's state in {}: {e}", path.display()))
}

impl HeadStore {
    /// Opens (or creates) the database at `path` and reads what it holds.
    pub fn open(path: &Path) -> Result<(Arc<HeadStore>, Loaded), NodeError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| db_error(path, e))?;
        }
        let db = Database::create(path).map_err(|e| db_error(path, e))?;
        // Tenants' job and actor records: for the operator's eyes only.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| db_error(path, e))?;
        }
        let loaded = load(&db).map_err(|e| db_error(path, e))?;
        let (tx, rx) = mpsc::channel();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("head-store".into())
            .spawn(move || writer(db, rx, shown))
            .map_err(|e| db_error(path, e))?;
        Ok((
            Arc::new(HeadStore {
                tx: parking_lot::Mutex::new(tx),
            }),
            loaded,
        ))
    }

    /// Writes `records`; returns once they are on disk.
    pub async fn save(&self, records: Vec<Record>) -> Result<(), NodeError> {
        let (done, wait) = oneshot::channel();
        self.send(Batch {
            records,
            done: Some(done),
        });
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(NodeError::Config(e)),
            Err(_) => Err(NodeError::Config("the head's state writer stopped".into())),
        }
    }

    /// Writes `records` soon, in order with every other write.
    pub fn save_later(&self, records: Vec<Record>) {
        if !records.is_empty() {
            self.send(Batch {
                records,
                done: None,
            });
        }
    }

    fn send(&self, batch: Batch) {
        if self.tx.lock().send(batch).is_err() {
            tracing::error!("the head's state writer stopped: a change was not saved");
        }
    }
}

fn load(db: &Database) -> Result<Loaded, redb::Error> {
    let txn = db.begin_write()?;
    // Create the tables on first use, so that reading finds them.
    txn.open_table(NODES)?;
    txn.open_table(ACTORS)?;
    txn.open_table(JOBS)?;
    txn.open_table(GROUPS)?;
    txn.open_table(SERVE)?;
    txn.commit()?;
    let read = db.begin_read()?;
    /// Every record of a table that decodes and converts; others are
    /// skipped (with a warning), not fatal.
    fn all<M: Message + Default, R>(
        t: &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
        convert: fn(M) -> Result<R, tonic::Status>,
    ) -> Result<Vec<R>, redb::Error> {
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            match M::decode(v.value())
                .map_err(|e| e.to_string())
                .and_then(|m| convert(m).map_err(|s| s.message().to_string()))
            {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unreadable record in the head's state")
                }
            }
        }
        Ok(out)
    }
    let serve = all::<pb::ServeDeployment, _>(&read.open_table(SERVE)?, |d| {
        let plain = !d.token.is_empty();
        wire::serve_from_pb(d).map(|r| (r, plain))
    })?;
    let serve_plain_tokens = serve
        .iter()
        .filter(|(_, plain)| *plain)
        .map(|(r, _)| (r.tenant.clone(), r.name.clone()))
        .collect();
    Ok(Loaded {
        nodes: all::<pb::NodeInfo, _>(&read.open_table(NODES)?, wire::node_from_pb)?,
        actors: all::<pb::ActorInfo, _>(&read.open_table(ACTORS)?, wire::actor_from_pb)?,
        jobs: all::<pb::JobRecord, _>(&read.open_table(JOBS)?, wire::job_from_pb)?,
        groups: all::<pb::GroupInfo, _>(&read.open_table(GROUPS)?, |g| {
            crate::group_wire::group_from_pb(&g)
        })?,
        serve: serve.into_iter().map(|(r, _)| r).collect(),
        serve_plain_tokens,
    })
}

fn commit(db: &Database, batches: &[Batch]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
    {
        let mut nodes = txn.open_table(NODES)?;
        let mut actors = txn.open_table(ACTORS)?;
        let mut jobs = txn.open_table(JOBS)?;
        let mut groups = txn.open_table(GROUPS)?;
        let mut serve = txn.open_table(SERVE)?;
        for r in batches.iter().flat_map(|b| &b.records) {
            // Keyed by the id's 16 bytes, valued by the protocol's encoding.
            match r {
                Record::Node(n) => {
                    let info = wire::node_to_pb(n);
                    nodes.insert(&info.node_id[..], &info.encode_to_vec()[..])?;
                }
                Record::Actor(a) => {
                    let info = wire::actor_to_pb(a);
                    actors.insert(&info.actor_id[..], &info.encode_to_vec()[..])?;
                }
                Record::Job(j) => {
                    let record = wire::job_to_pb(j);
                    jobs.insert(&record.job_id[..], &record.encode_to_vec()[..])?;
                }
                Record::ForgetJob(id) => {
                    jobs.remove(&id.as_u128().to_be_bytes()[..])?;
                }
                Record::ForgetActor(id) => {
                    actors.remove(&id.as_u128().to_be_bytes()[..])?;
                }
                Record::Group(g) => {
                    let info = crate::group_wire::group_to_pb(g);
                    groups.insert(&info.group_id[..], &info.encode_to_vec()[..])?;
                }
                Record::ForgetGroup(id) => {
                    groups.remove(&id.as_u128().to_be_bytes()[..])?;
                }
                Record::Serve(d) => {
                    let key = serve_key(&d.tenant, &d.name);
                    serve.insert(&key[..], &wire::serve_to_pb(d).encode_to_vec()[..])?;
                }
                Record::ForgetServe(tenant, name) => {
                    serve.remove(&serve_key(tenant, name)[..])?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// A Serve deployment's key: tenant names hold no zero byte.
fn serve_key(tenant: &str, name: &str) -> Vec<u8> {
    [tenant.as_bytes(), &[0], name.as_bytes()].concat()
}

/// Commits what queued up, one transaction at a time, until the head goes.
fn writer(db: Database, rx: mpsc::Receiver<Batch>, path: String) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
            if batches.len() >= 1024 {
                break;
            }
        }
        let outcome = commit(&db, &batches).map_err(|e| format!("saving to {path}: {e}"));
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "the head could not save its state");
        }
        for b in batches {
            if let Some(done) = b.done {
                let _ = done.send(outcome.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::records::{ActorState, JobStatus};
    use crate::ids::{ActorId, JobId, NodeId};

    #[tokio::test]
    async fn what_was_saved_is_there_after_reopening() {
        let dir = std::env::temp_dir().join(format!("head-store-{}", rand::random::<u64>()));
        let path = dir.join("head.redb");
        let actor = ActorRecord {
            id: ActorId::random(),
            class: "Keeper".into(),
            name: "keeper".into(),
            namespace: String::new(),
            node: NodeId::random(),
            owner: NodeId::random(),
            job: JobId::random(),
            detached: true,
            tenant: "acme".into(),
            max_restarts: 0,
            max_task_retries: 0,
            restarts: 0,
            state: ActorState::Alive,
            created_unix_ms: 1_700_000_000_000,
        };
        let job = |n: u64| JobRecord {
            id: JobId::random(),
            digest: String::new(),
            driver: NodeId::random(),
            started_ms: n,
            ended_ms: n + 1,
            tenant: "acme".into(),
            status: JobStatus::Succeeded,
        };
        let (one, two) = (job(1), job(2));
        {
            let (store, loaded) = HeadStore::open(&path).unwrap();
            assert!(loaded.actors.is_empty() && loaded.jobs.is_empty());
            store.save_later(vec![Record::Job(one.clone()), Record::Job(two.clone())]);
            store
                .save(vec![
                    Record::Actor(actor.clone()),
                    Record::ForgetJob(one.id),
                ])
                .await
                .unwrap();
        }
        // The writer thread of the first store may still hold the file.
        let mut tries = 0;
        let reopened = loop {
            match HeadStore::open(&path) {
                Ok((_, loaded)) => break loaded,
                Err(e) if tries > 250 => panic!("{e}"),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
            tries += 1;
        };
        assert_eq!(reopened.actors, vec![actor]);
        assert_eq!(reopened.jobs, vec![two]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_route_token_an_older_head_saved_loads_as_its_digest_and_is_marked() {
        let dir = std::env::temp_dir().join(format!("head-store-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("head.redb");
        let token = "an-older-heads-route-token";
        {
            // What a head before the digest saved.
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut serve = txn.open_table(SERVE).unwrap();
                let old = pb::ServeDeployment {
                    tenant: "acme".into(),
                    name: "echo".into(),
                    token: token.into(),
                    ..Default::default()
                };
                let key = serve_key("acme", "echo");
                serve.insert(&key[..], &old.encode_to_vec()[..]).unwrap();
            }
            txn.commit().unwrap();
        }
        let (_store, loaded) = HeadStore::open(&path).unwrap();
        let digest = crate::serve::token_sha256(token);
        assert_eq!(loaded.serve[0].token_sha256, Some(digest));
        assert_eq!(
            loaded.serve_plain_tokens,
            vec![("acme".into(), "echo".into())]
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
