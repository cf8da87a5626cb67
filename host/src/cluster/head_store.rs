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
//! # use fabric_host::cluster::HeadStore;
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

use crate::error::NodeError;

const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("nodes");
const ACTORS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("actors");
const JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jobs");

/// One change to the durable state.
#[derive(Debug)]
pub enum Record {
    Node(pb::NodeInfo),
    Actor(pb::ActorInfo),
    Job(pb::JobRecord),
    /// A job dropped from the history.
    ForgetJob(bytes::Bytes),
    /// A dead actor dropped from the directory.
    ForgetActor(bytes::Bytes),
}

/// What the store held when it was opened.
#[derive(Debug, Default)]
pub struct Loaded {
    pub nodes: Vec<pb::NodeInfo>,
    pub actors: Vec<pb::ActorInfo>,
    pub jobs: Vec<pb::JobRecord>,
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
    txn.commit()?;
    let read = db.begin_read()?;
    fn all<M: Message + Default>(
        t: &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    ) -> Result<Vec<M>, redb::Error> {
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            match M::decode(v.value()) {
                Ok(m) => out.push(m),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unreadable record in the head's state")
                }
            }
        }
        Ok(out)
    }
    Ok(Loaded {
        nodes: all(&read.open_table(NODES)?)?,
        actors: all(&read.open_table(ACTORS)?)?,
        jobs: all(&read.open_table(JOBS)?)?,
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
        for r in batches.iter().flat_map(|b| &b.records) {
            match r {
                Record::Node(n) => {
                    nodes.insert(&n.node_id[..], &n.encode_to_vec()[..])?;
                }
                Record::Actor(a) => {
                    actors.insert(&a.actor_id[..], &a.encode_to_vec()[..])?;
                }
                Record::Job(j) => {
                    jobs.insert(&j.job_id[..], &j.encode_to_vec()[..])?;
                }
                Record::ForgetJob(id) => {
                    jobs.remove(&id[..])?;
                }
                Record::ForgetActor(id) => {
                    actors.remove(&id[..])?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
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

    #[tokio::test]
    async fn what_was_saved_is_there_after_reopening() {
        let dir = std::env::temp_dir().join(format!("head-store-{}", rand::random::<u64>()));
        let path = dir.join("head.redb");
        let actor = pb::ActorInfo {
            actor_id: vec![7u8; 16].into(),
            name: "keeper".into(),
            detached: true,
            ..Default::default()
        };
        let job = |n: u8| pb::JobRecord {
            job_id: vec![n; 16].into(),
            ..Default::default()
        };
        {
            let (store, loaded) = HeadStore::open(&path).unwrap();
            assert!(loaded.actors.is_empty() && loaded.jobs.is_empty());
            store.save_later(vec![Record::Job(job(1)), Record::Job(job(2))]);
            store
                .save(vec![
                    Record::Actor(actor.clone()),
                    Record::ForgetJob(job(1).job_id),
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
        assert_eq!(reopened.jobs, vec![job(2)]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
