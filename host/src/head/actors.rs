//! The actor directory: every actor in the cluster, its name, and the dead
//! ones kept to say why they died, under one lock (a name never points at
//! an actor the directory does not hold).
//!
//! Each tenant keeps the records of its last [`DEAD_ACTORS_KEPT`] dead
//! actors; older ones are forgotten, so a tenant creating and killing
//! actors forever holds a bounded part of the head.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};

use super::records::{ActorRecord, ActorState, Record};
use crate::error::FabricError;
use crate::ids::{ActorId, NodeId};

/// Dead actors whose records (and death reasons) the head keeps, per tenant.
pub(crate) const DEAD_ACTORS_KEPT: usize = 1000;

#[derive(Default)]
struct Directory {
    actors: HashMap<ActorId, ActorRecord>,
    /// (namespace, name) of live and restarting actors.
    names: HashMap<(String, String), ActorId>,
    /// Each tenant's dead actors, oldest first.
    dead: HashMap<String, VecDeque<ActorId>>,
    /// Each tenant's live (and restarting) actors: what its `actors` quota
    /// counts, checked here as each actor registers.
    live: HashMap<String, u64>,
}

/// What registering an actor came to.
pub(crate) enum Registration {
    Registered,
    /// Its name was taken and the caller asked for the existing actor.
    Existing(ActorRecord),
    /// Its name is taken by this actor.
    NameTaken(ActorRecord),
    /// Its tenant holds its quota of live actors (the quota).
    OverQuota(u64),
}

/// The head's actors.
#[derive(Default)]
pub(crate) struct ActorDirectory(Mutex<Directory>);

impl Directory {
    /// Notes that `id` (of `tenant`) is dead, forgetting that tenant's
    /// oldest dead actors beyond [`DEAD_ACTORS_KEPT`]; returns what to save.
    fn note_dead(&mut self, tenant: &str, id: ActorId) -> Vec<Record> {
        let list = self.dead.entry(tenant.to_string()).or_default();
        if !list.contains(&id) {
            list.push_back(id);
        }
        let mut forgotten = Vec::new();
        while list.len() > DEAD_ACTORS_KEPT {
            let Some(old) = list.pop_front() else { break };
            if self.actors.get(&old).is_some_and(ActorRecord::is_dead) {
                self.actors.remove(&old);
                forgotten.push(Record::ForgetActor(old));
            }
        }
        forgotten
    }

    /// Marks `id` dead for `why`, freeing its name; returns what to save.
    fn kill(&mut self, id: ActorId, why: String) -> Vec<Record> {
        let Some(a) = self.actors.get_mut(&id) else {
            return Vec::new();
        };
        if !a.is_dead()
            && let Some(n) = self.live.get_mut(&a.tenant)
        {
            *n = n.saturating_sub(1);
        }
        a.die(why);
        let (record, key, tenant) = (a.clone(), a.name_key(), a.tenant.clone());
        if let Some(key) = key
            && self.names.get(&key) == Some(&id)
        {
            self.names.remove(&key);
        }
        let mut saved = vec![Record::Actor(record)];
        saved.extend(self.note_dead(&tenant, id));
        saved
    }
}

impl ActorDirectory {
    /// Takes back the actors a previous head saved; returns the dead ones
    /// forgotten past the per-tenant bound.
    pub(crate) fn restore(&self, records: Vec<ActorRecord>) -> Vec<Record> {
        let mut d = self.0.lock();
        let mut dead = Vec::new();
        for a in records {
            match (&a.state, a.name_key()) {
                (ActorState::Dead(_), _) => dead.push((a.tenant.clone(), a.id)),
                (_, Some(key)) => {
                    d.names.insert(key, a.id);
                }
                (_, None) => {}
            }
            if !a.is_dead() {
                *d.live.entry(a.tenant.clone()).or_default() += 1;
            }
            d.actors.insert(a.id, a);
        }
        dead.into_iter()
            .flat_map(|(tenant, id)| d.note_dead(&tenant, id))
            .collect()
    }

    /// Registers a new actor under its name (if it has one and the name is
    /// free), unless its tenant already holds `max_live` live actors.
    pub(crate) fn register(
        &self,
        actor: ActorRecord,
        get_if_exists: bool,
        max_live: Option<u64>,
    ) -> Registration {
        let mut d = self.0.lock();
        let key = actor.name_key();
        if let Some(key) = &key {
            let existing = d.names.get(key).and_then(|id| d.actors.get(id));
            if let Some(existing) = existing {
                return match get_if_exists {
                    true => Registration::Existing(existing.clone()),
                    false => Registration::NameTaken(existing.clone()),
                };
            }
        }
        let live = d.live.get(&actor.tenant).copied().unwrap_or(0);
        if let Some(max) = max_live
            && live >= max
        {
            return Registration::OverQuota(max);
        }
        if let Some(key) = key {
            d.names.insert(key, actor.id);
        }
        *d.live.entry(actor.tenant.clone()).or_default() += 1;
        d.actors.insert(actor.id, actor);
        Registration::Registered
    }

    /// A restarting actor's creator placed it again on `node`: its entry
    /// moves there (keeping its name). Only an actor whose node died, and
    /// only its creator, may be moved; a killed actor stays dead.
    pub(crate) fn move_restarted(
        &self,
        moved: &ActorRecord,
        alive: &HashSet<NodeId>,
    ) -> Result<ActorRecord, FabricError> {
        let mut d = self.0.lock();
        let id = moved.id;
        let Some(a) = d.actors.get_mut(&id) else {
            return Err(FabricError::NotFound(format!("actor {id}")));
        };
        if let ActorState::Dead(why) = &a.state {
            return Err(FabricError::ActorDied(why.clone()));
        }
        if a.owner != moved.owner {
            return Err(FabricError::InvalidArgument(format!(
                "only the node that created actor {id} may restart it"
            )));
        }
        if a.state != ActorState::Restarting && alive.contains(&a.node) {
            return Err(FabricError::InvalidArgument(format!(
                "actor {id} is alive on its node"
            )));
        }
        a.node = moved.node;
        a.restarts = moved.restarts;
        a.state = ActorState::Alive;
        Ok(a.clone())
    }

    pub(crate) fn by_id(&self, id: ActorId) -> Option<ActorRecord> {
        self.0.lock().actors.get(&id).cloned()
    }

    pub(crate) fn by_name(&self, namespace: String, name: String) -> Option<ActorRecord> {
        let d = self.0.lock();
        let id = d.names.get(&(namespace, name))?;
        d.actors.get(id).cloned()
    }

    /// An actor died (killed, or its last restart failed); returns what to
    /// save.
    pub(crate) fn died(&self, id: ActorId, why: String) -> Vec<Record> {
        self.0.lock().kill(id, why)
    }

    /// The actors of a dead node: those with restarts left whose creator
    /// lives are *restarting* (they keep their names; the creator places
    /// them again), the others are dead and free their names. Actors that
    /// the dead node created and that were waiting for it to restart them
    /// are dead too. Returns what to save.
    pub(crate) fn node_gone(
        &self,
        node: NodeId,
        why: &str,
        alive: &HashSet<NodeId>,
    ) -> Vec<Record> {
        let mut d = self.0.lock();
        let mut restarting = Vec::new();
        let mut dying = Vec::new();
        for a in d.actors.values() {
            let hosted = a.node == node;
            let orphaned = a.state == ActorState::Restarting && a.owner == node;
            if a.is_dead() || (!hosted && !orphaned) {
                continue;
            }
            let owner_alive = a.owner != node && alive.contains(&a.owner);
            if hosted && a.restarts < a.max_restarts && owner_alive {
                restarting.push(a.id);
                continue;
            }
            let death = if orphaned {
                format!(
                    "actor {}({}) died: its node died and so did the node that would restart it",
                    a.class,
                    a.id.short()
                )
            } else {
                format!("actor {}({}) died: {why}", a.class, a.id.short())
            };
            dying.push((a.id, death));
        }
        let mut saved = Vec::new();
        for id in restarting {
            if let Some(a) = d.actors.get_mut(&id) {
                a.state = ActorState::Restarting;
                saved.push(Record::Actor(a.clone()));
            }
        }
        for (id, death) in dying {
            saved.extend(d.kill(id, death));
        }
        saved
    }

    pub(crate) fn all(&self) -> Vec<ActorRecord> {
        self.0.lock().actors.values().cloned().collect()
    }
}

/// What a registration or restart came to, as the registering node hears.
pub(crate) enum ActorOutcome {
    Registered,
    /// Its name was taken and the caller asked for the existing actor.
    Existing(ActorRecord),
    Refused(FabricError),
}

impl super::Head {
    /// Registers a new actor; confirmed only once saved, so a head that
    /// restarts still knows it.
    pub(crate) async fn register_actor(
        &self,
        actor: ActorRecord,
        get_if_exists: bool,
    ) -> Result<ActorOutcome, super::HeadError> {
        let saved = Record::Actor(actor.clone());
        let tenant = actor.tenant.clone();
        let max_live = self.tokens.quota(&tenant).actors;
        match self.actors.register(actor, get_if_exists, max_live) {
            Registration::Registered => {
                self.save(vec![saved]).await?;
                Ok(ActorOutcome::Registered)
            }
            Registration::Existing(a) => Ok(ActorOutcome::Existing(a)),
            Registration::OverQuota(max) => Ok(ActorOutcome::Refused(FabricError::limit(
                "actors-quota",
                max,
                format!("tenant `{tenant}` holds its quota of {max} live actors in the cluster"),
            ))),
            Registration::NameTaken(a) => Ok(ActorOutcome::Refused(FabricError::InvalidArgument(
                format!(
                    "an actor named `{}` already exists in namespace `{}`",
                    a.name,
                    crate::runtime::job::shown_namespace(&a.namespace)
                ),
            ))),
        }
    }

    /// A restarting actor was placed again by its creator (`actor` names
    /// its new node and restart count).
    pub(crate) async fn restart_actor(
        &self,
        actor: ActorRecord,
    ) -> Result<ActorOutcome, super::HeadError> {
        let alive = self.nodes.alive();
        match self.actors.move_restarted(&actor, &alive) {
            Ok(moved) => {
                self.save(vec![Record::Actor(moved)]).await?;
                Ok(ActorOutcome::Registered)
            }
            Err(e) => Ok(ActorOutcome::Refused(e)),
        }
    }

    pub(crate) fn actor_by_id(&self, id: ActorId) -> Option<ActorRecord> {
        self.actors.by_id(id)
    }

    pub(crate) fn actor_by_name(&self, namespace: String, name: String) -> Option<ActorRecord> {
        self.actors.by_name(namespace, name)
    }

    /// An actor died for good (killed, or out of restarts).
    pub(crate) async fn actor_died(
        &self,
        id: ActorId,
        why: String,
    ) -> Result<(), super::HeadError> {
        let saved = self.actors.died(id, why);
        if saved.is_empty() {
            return Ok(());
        }
        self.save(saved).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;

    fn actor(tenant: &str, name: &str) -> ActorRecord {
        ActorRecord {
            id: ActorId::random(),
            class: "Idle".into(),
            name: name.into(),
            namespace: "ns".into(),
            node: NodeId::random(),
            owner: NodeId::random(),
            job: JobId::random(),
            detached: true,
            tenant: tenant.into(),
            max_restarts: 0,
            max_task_retries: 0,
            restarts: 0,
            state: ActorState::Alive,
            created_unix_ms: 1,
        }
    }

    #[test]
    fn a_tenants_live_actors_stay_within_its_quota_until_one_dies() {
        let dir = ActorDirectory::default();
        let (a, b) = (actor("acme", "a"), actor("acme", "b"));
        let first = a.id;
        for x in [a, b] {
            assert!(matches!(
                dir.register(x, false, Some(2)),
                Registration::Registered
            ));
        }
        let over = dir.register(actor("acme", "c"), false, Some(2));
        assert!(matches!(over, Registration::OverQuota(2)));
        // The refused one took no name; another tenant is not held up, and
        // an existing name is still found at the quota.
        assert!(matches!(
            dir.register(actor("acme", "a"), true, Some(2)),
            Registration::Existing(_)
        ));
        assert!(matches!(
            dir.register(actor("beta", "e"), false, Some(1)),
            Registration::Registered
        ));
        dir.died(first, "killed".into());
        assert!(matches!(
            dir.register(actor("acme", "d"), false, Some(2)),
            Registration::Registered
        ));
    }
}
