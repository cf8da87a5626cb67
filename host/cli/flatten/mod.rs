//! Merges a dynamically linked component's core modules into one, so that
//! wasmtime fills its function table lazily instead of on every
//! instantiation.
//!
//! componentize-py links CPython the way a shared-library loader would:
//! `main` defines the memory and `__indirect_function_table` (5,712 slots),
//! and libc, libpython, componentize-py's runtime, its bindings and
//! `__init` import them and place their functions in the table with
//! element segments at `global.get __table_base`. wasmtime 48 precomputes
//! (and then fills on first use) only a table the module itself defines,
//! with constant offsets, so every instantiation of such a component wrote
//! all 5,712 function references: most of a Python task's instantiation.
//!
//! [`flatten`] merges those modules into one module that defines the table,
//! with every offset folded to a constant. The component around it is kept:
//! the merged module is instantiated where `main` was, and each other
//! member's place is taken by a module that re-exports its items from the
//! merged one, so every alias in the component still resolves. Functions
//! the members import from outside (WASI, the host, the adapter) are called
//! through a second table that the last member's replacement fills.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let component = std::fs::read("app.wasm")?;
//! if let Some(flat) = flatten::flatten(&component)? {
//!     std::fs::write("app.wasm", flat)?;
//! }
//! # Ok(())
//! # }
//! ```

mod component;
mod link;
mod live;
mod merge;
mod module;
mod shims;

use std::collections::HashMap;

use anyhow::Context;
use wasm_encoder::{Encode, ExportKind, InstanceSection, ModuleArg};
use wasmparser::{ExternalKind, Instance};

use component::{Component, Section};
use link::Plan;

/// The merged component, or `None` when it has no dynamically linked
/// modules to merge. An error means the shape was not understood; the
/// caller keeps the component as it was.
pub fn flatten(bytes: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    // Everything below trusts the input's indices and types.
    wasmparser::Validator::new()
        .validate_all(bytes)
        .context("the component does not validate")?;
    let component = Component::parse(bytes)?;
    let Some(plan) = Plan::find(&component)? else {
        return Ok(None);
    };
    let mut modules: HashMap<u32, Vec<u8>> = HashMap::new();
    modules.insert(plan.members[0].module_index, merge::merged_module(&plan)?);
    let last = plan.members.len() - 1;
    for at in 1..plan.members.len() {
        let module = shims::replacement(&plan, at, at == last)?;
        modules.insert(plan.members[at].module_index, module);
    }
    let mut out = bytes.get(..8).context("truncated component")?.to_vec();
    for section in &component.sections {
        match section {
            Section::Raw(range) => out.extend_from_slice(&bytes[range.clone()]),
            Section::Module { index, full } => match modules.get(index) {
                Some(module) => {
                    out.push(wasm_encoder::ComponentSectionId::CoreModule as u8);
                    module.as_slice().encode(&mut out);
                }
                None => out.extend_from_slice(&bytes[full.clone()]),
            },
            Section::CoreInstances { first, count } => {
                let section = instances(&component, &plan, *first, *count)?;
                out.push(wasm_encoder::ComponentSectionId::CoreInstance as u8);
                section.encode(&mut out);
            }
        }
    }
    wasmparser::Validator::new()
        .validate_all(&out)
        .context("the merged component does not validate")?;
    Ok(Some(out))
}

/// Core instances `first..first + count`, the members' instantiations
/// rewritten.
fn instances(
    component: &Component<'_>,
    plan: &Plan<'_>,
    first: u32,
    count: u32,
) -> anyhow::Result<InstanceSection> {
    let main = plan.members[0].instance;
    let last = plan.members.len() - 1;
    let mut section = InstanceSection::new();
    for instance in first..first + count {
        let member = plan.members.iter().position(|m| m.instance == instance);
        match (member, &component.instances[instance as usize]) {
            (Some(0), _) => {
                let none: [(&str, ModuleArg); 0] = [];
                section.instantiate(plan.members[0].module_index, none);
            }
            (Some(at), _) => {
                let mut args = vec![(shims::MERGED_ARG.to_string(), ModuleArg::Instance(main))];
                if at == last {
                    for source in shims::late_sources(plan) {
                        args.push((shims::source_arg(source), ModuleArg::Instance(source)));
                    }
                }
                section.instantiate(plan.members[at].module_index, args);
            }
            (None, Instance::Instantiate { module_index, args }) => {
                let args = args.iter().map(|a| (a.name, ModuleArg::Instance(a.index)));
                section.instantiate(*module_index, args.collect::<Vec<_>>());
            }
            (None, Instance::FromExports(exports)) => {
                let mut items = Vec::new();
                for e in exports.iter() {
                    items.push((e.name, export_kind(e.kind)?, e.index));
                }
                section.export_items(items);
            }
        }
    }
    Ok(section)
}

fn export_kind(kind: ExternalKind) -> anyhow::Result<ExportKind> {
    Ok(match kind {
        ExternalKind::Func => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
        ExternalKind::FuncExact => anyhow::bail!("an exact function export"),
    })
}

#[cfg(test)]
mod tests {
    use super::flatten;

    #[test]
    fn a_component_without_a_shared_table_is_left_as_it_is() {
        let rust = std::fs::read(fabric_test_artifacts::examples::HELLO).unwrap();
        assert!(flatten(&rust).unwrap().is_none());
    }

    #[test]
    fn what_is_not_a_component_is_an_error() {
        let module = wasm_encoder::Module::new().finish();
        assert!(flatten(&module).is_err());
        assert!(flatten(b"not wasm").is_err());
        let rust = std::fs::read(fabric_test_artifacts::examples::HELLO).unwrap();
        assert!(flatten(&rust[..rust.len() / 2]).is_err());
    }
}
