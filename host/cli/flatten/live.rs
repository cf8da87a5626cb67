//! Which of the other members' exports are used once the members are
//! merged.
//!
//! Most of what the libraries export fed the next library's instantiation,
//! and those instantiations are gone. A replacement module that re-exported
//! all of it would import thousands of functions per instantiation (each a
//! function reference wasmtime builds, the very cost the merge removes), so
//! it imports only what something outside the members can reach: an
//! instantiation of another module, a lifted function, a canonical option,
//! a resource destructor. The rest it defines as traps, which nothing calls.

use std::collections::HashSet;

use anyhow::Context;
use wasmparser::{Instance, Parser, Payload};

use super::component::{Component, Origin};
use super::link::Plan;
use super::module::Kind;

/// `(member instance, export name)` pairs something outside the members
/// uses; `None` when the component uses items in ways not followed here
/// (then everything is kept).
pub(super) fn live_exports<'a>(
    component: &Component<'a>,
    plan: &Plan<'a>,
) -> anyhow::Result<Option<HashSet<(u32, &'a str)>>> {
    if component.uses_unknown {
        return Ok(None);
    }
    let members: HashSet<u32> = plan.members.iter().map(|m| m.instance).collect();
    let mut walk = Walk {
        component,
        members: &members,
        live: HashSet::new(),
        work: component.uses.clone(),
    };
    for (at, instance) in component.instances.iter().enumerate() {
        let Instance::Instantiate { module_index, args } = instance else {
            continue;
        };
        if members.contains(&(at as u32)) {
            continue;
        }
        let Some(bytes) = component
            .modules
            .get(*module_index as usize)
            .copied()
            .flatten()
        else {
            return Ok(None);
        };
        for (module, name) in imports(bytes)? {
            let arg = args.iter().find(|a| a.name == module);
            let arg = arg.with_context(|| format!("no instance given for `{module}`"))?;
            walk.hop(arg.index, name)?;
        }
    }
    let mut seen = HashSet::new();
    while let Some((kind, index)) = walk.work.pop() {
        if !seen.insert((kind, index)) {
            continue;
        }
        if let Origin::Alias { instance, name } = component.origin(kind, index)? {
            walk.hop(instance, name)?;
        }
    }
    Ok(Some(walk.live))
}

struct Walk<'c, 'a> {
    component: &'c Component<'a>,
    members: &'c HashSet<u32>,
    live: HashSet<(u32, &'a str)>,
    work: Vec<(Kind, u32)>,
}

impl<'a> Walk<'_, 'a> {
    /// Export `name` of `instance` is used.
    fn hop(&mut self, instance: u32, name: &'a str) -> anyhow::Result<()> {
        let def = self.component.instances.get(instance as usize);
        match def.context("no such instance")? {
            Instance::FromExports(exports) => {
                let e = exports.iter().find(|e| e.name == name);
                let e = e.with_context(|| format!("no export `{name}` in a bundle"))?;
                self.work.push((Kind::of_export(e.kind)?, e.index));
            }
            Instance::Instantiate { .. } => {
                if self.members.contains(&instance) {
                    self.live.insert((instance, name));
                }
            }
        }
        Ok(())
    }
}

/// A module's imports: (module, name); a tag import stops the merge.
fn imports(bytes: &[u8]) -> anyhow::Result<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::ImportSection(r) = payload? {
            for import in r.into_imports() {
                let import = import?;
                Kind::of_import(&import.ty)?;
                out.push((import.module, import.name));
            }
            break;
        }
    }
    Ok(out)
}
