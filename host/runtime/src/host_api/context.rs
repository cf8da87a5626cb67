//! `context` (where the code runs) and `report-panic`.

use wasmtime::StoreContextMut;
use wasmtime::component::LinkerInstance;

use crate::bindings::fabric::core::types::RuntimeContext;
use crate::runtime::instance::{InstanceState, Role};

type Ctx<'a> = StoreContextMut<'a, InstanceState>;

/// Longest panic message kept.
const MAX_PANIC_MESSAGE: usize = 64 * 1024;

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.func_wrap("context", |store: Ctx, (): ()| {
        let exec = store.data().exec()?;
        let (task_id, actor_id) = match &exec.role {
            Role::Driver => (None, None),
            Role::Task { id, .. } => (Some(id.to_string()), None),
            Role::Actor { id, .. } => (None, Some(id.to_wit())),
        };
        Ok((RuntimeContext {
            job_id: exec.job.id.to_string(),
            node_id: exec.core.id().to_string(),
            task_id,
            actor_id,
            gpu_ids: gpu_ids(exec),
        },))
    })?;
    host.func_wrap(
        "report-panic",
        |mut store: Ctx, (mut message,): (String,)| {
            if message.len() > MAX_PANIC_MESSAGE {
                let mut cut = MAX_PANIC_MESSAGE;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
                message.push_str(" [truncated]");
            }
            store.data_mut().panic = Some(message);
            Ok(())
        },
    )?;
    Ok(())
}

/// The GPUs the running call's work holds whole (a model is put on a GPU
/// only for work that has it to itself, never on one shared by fractions):
/// its lease's when it asks for one or more, or, in a bundle, its
/// bundle's when it asks for one or more.
pub(crate) fn whole_gpu_ids(exec: &crate::runtime::instance::ExecContext) -> Vec<u32> {
    use crate::resources::UNIT;
    let Some(l) = exec.lease.as_ref() else {
        return Vec::new();
    };
    let demand = l.demand();
    let bundle_gpus = demand
        .custom
        .iter()
        .filter(|(n, _)| n.ends_with(":GPU"))
        .map(|(_, amount)| *amount)
        .max();
    match bundle_gpus {
        Some(amount) if amount >= UNIT => gpu_ids(exec),
        Some(_) => Vec::new(),
        None if demand.gpu >= UNIT => l.gpu_ids().to_vec(),
        None => Vec::new(),
    }
}

/// The GPUs the running call's work was given (its lease's, or, in a
/// bundle that asks for GPUs, its bundle's).
pub(crate) fn gpu_ids(exec: &crate::runtime::instance::ExecContext) -> Vec<u32> {
    exec.lease.as_ref().map_or_else(Vec::new, |l| {
        let demand = l.demand();
        let asks_gpus = demand.custom.iter().any(|(n, _)| n.ends_with(":GPU"));
        match crate::bundles::bundle_of(demand) {
            // Work in a bundle that asks for GPUs has its bundle's.
            Some((group, index)) if asks_gpus => exec.core.groups().gpu_ids(group, index),
            Some(_) => Vec::new(),
            None => l.gpu_ids().to_vec(),
        }
    })
}
