//! Which core instances merge, and where each of their items lands in the
//! merged module.
//!
//! The members are the instance that defines `__indirect_function_table`
//! (componentize-py's `main`, which also defines the memory) and every
//! instance whose module imports that table (libc, libpython, the
//! runtime, the bindings, `__init`). Every import of a member is followed,
//! through the component's export bundles, to the item that defines it: an
//! item of a member becomes that item in the merged module; a function from
//! outside (a lowered WASI or host function, the adapter, the stubs) becomes
//! a *late* import, called through a table the last member's replacement
//! fills once everything it needs exists.

use std::collections::HashMap;

use anyhow::{Context, bail, ensure};
use wasmparser::{FuncType, Instance, InstantiationArgKind, TypeRef};

use super::component::{Component, Origin};
use super::module::{CoreModule, Kind};

/// How many hops an import may take through re-exports before the merge
/// gives up (componentize-py's take at most three).
const MAX_HOPS: usize = 64;

/// The table `main` defines and the libraries import.
const TABLE: &str = "__indirect_function_table";

pub(super) struct Member<'a> {
    pub(super) instance: u32,
    pub(super) module_index: u32,
    pub(super) module: CoreModule<'a>,
    /// Instantiation arguments: import module name → core instance.
    args: HashMap<&'a str, u32>,
    /// Merged index of each item, by this module's own index, per kind.
    pub(super) maps: [Vec<u32>; 4],
    pub(super) type_base: u32,
    pub(super) elem_base: u32,
    pub(super) data_base: u32,
}

/// A function a member imports from outside the members.
pub(super) struct Late<'a> {
    /// The instance outside the members that has it, and its export name.
    pub(super) instance: u32,
    pub(super) name: &'a str,
    pub(super) ty: FuncType,
    /// Its type in the merged module.
    pub(super) merged_type: u32,
}

pub(super) struct Plan<'a> {
    pub(super) members: Vec<Member<'a>>,
    pub(super) late: Vec<Late<'a>>,
    /// Merged index of the first late stub function.
    pub(super) late_base: u32,
    pub(super) globals: u32,
    /// The other members' exports something outside the members uses
    /// (`None`: all of them).
    pub(super) live: Option<std::collections::HashSet<(u32, &'a str)>>,
}

impl<'a> Plan<'a> {
    /// Finds the members; `None` when the component is not dynamically
    /// linked around a shared table (nothing to merge).
    pub(super) fn find(component: &Component<'a>) -> anyhow::Result<Option<Plan<'a>>> {
        let Some(main) = find_main(component)? else {
            return Ok(None);
        };
        if let Some(why) = component.modules_escape {
            bail!("{why}");
        }
        let mut members = vec![member(component, main)?];
        for instance in main + 1..component.instances.len() as u32 {
            let Some(module_index) = component.module_of(instance) else {
                continue;
            };
            let bytes = component
                .modules
                .get(module_index as usize)
                .copied()
                .flatten();
            let bytes = bytes.context("an aliased module")?;
            if !imports_table(bytes)? {
                continue;
            }
            let candidate = member(component, instance)?;
            if imports_mains_table(component, &candidate, main)? {
                members.push(candidate);
            }
        }
        if members.len() < 2 {
            return Ok(None);
        }
        let last = members.last().map_or(main, |m| m.instance);
        refuse_writers_between(component, main, last, &members)?;
        let mut seen = std::collections::HashSet::new();
        for m in &members {
            ensure!(
                seen.insert(m.module_index),
                "a member module is instantiated twice"
            );
            let uses = (0..component.instances.len() as u32)
                .filter(|i| component.module_of(*i) == Some(m.module_index))
                .count();
            ensure!(uses == 1, "a member module is instantiated {uses} times");
        }
        let mut plan = Plan {
            members,
            late: Vec::new(),
            late_base: 0,
            globals: 0,
            live: None,
        };
        plan.lay_out(component)?;
        plan.live = super::live::live_exports(component, &plan)?;
        Ok(Some(plan))
    }

    /// Whether export `name` of member instance `instance` is used.
    pub(super) fn is_live(&self, instance: u32, name: &str) -> bool {
        self.live
            .as_ref()
            .is_none_or(|l| l.contains(&(instance, name)))
    }

    fn member_of(&self, instance: u32) -> Option<usize> {
        self.members.iter().position(|m| m.instance == instance)
    }

    /// Gives every member its bases and maps, and collects late imports.
    fn lay_out(&mut self, component: &Component<'a>) -> anyhow::Result<()> {
        let (mut types, mut elems, mut data) = (0u32, 0u32, 0u32);
        let mut bases = vec![[0u32; 4]; self.members.len()];
        let mut next = [0u32; 4];
        for (m, base) in self.members.iter_mut().zip(bases.iter_mut()) {
            m.type_base = types;
            m.elem_base = elems;
            m.data_base = data;
            types += m.module.types.len() as u32;
            elems += m.module.elements.len() as u32;
            data += m.module.data.len() as u32;
            for kind in Kind::ALL {
                base[kind.slot()] = next[kind.slot()];
                next[kind.slot()] += m.module.defined(kind);
            }
        }
        ensure!(
            next[Kind::Table.slot()] == 1,
            "the members define more than one table"
        );
        ensure!(
            next[Kind::Memory.slot()] == 1,
            "the members define more than one memory"
        );
        self.late_base = next[Kind::Func.slot()];
        self.globals = next[Kind::Global.slot()];
        for at in 0..self.members.len() {
            for kind in Kind::ALL {
                let map = self.map(component, &bases, at, kind)?;
                self.members[at].maps[kind.slot()] = map;
            }
        }
        Ok(())
    }

    fn map(
        &mut self,
        component: &Component<'a>,
        bases: &[[u32; 4]],
        at: usize,
        kind: Kind,
    ) -> anyhow::Result<Vec<u32>> {
        let module = &self.members[at].module;
        let imported = module.imported(kind);
        let defined = module.defined(kind);
        let mut map = Vec::with_capacity((imported + defined) as usize);
        for index in 0..imported {
            let merged = match self.resolve(component, at, kind, index)? {
                Resolved::Member { member, defined } => bases[member][kind.slot()] + defined,
                Resolved::Outside { instance, name } => {
                    ensure!(
                        kind == Kind::Func,
                        "a {kind:?} `{name}` from outside the members"
                    );
                    self.late_import(at, index, instance, name)?
                }
            };
            map.push(merged);
        }
        let base = bases[at][kind.slot()];
        map.extend((0..defined).map(|d| base + d));
        Ok(map)
    }

    fn late_import(
        &mut self,
        at: usize,
        index: u32,
        instance: u32,
        name: &'a str,
    ) -> anyhow::Result<u32> {
        let m = &self.members[at];
        let ty = m.module.func_type(index)?.clone();
        let type_index = match m.module.import_of(Kind::Func, index).map(|i| i.ty) {
            Some(TypeRef::Func(t)) => t,
            _ => bail!("a late import that is not a plain function"),
        };
        // The same function imported by two members is one late import
        // (a component refuses a module that imports a name twice).
        if let Some(at) = self
            .late
            .iter()
            .position(|l| l.instance == instance && l.name == name)
        {
            ensure!(
                self.late[at].ty == ty,
                "`{name}` is imported with two types"
            );
            return Ok(self.late_base + at as u32);
        }
        self.late.push(Late {
            instance,
            name,
            ty,
            merged_type: m.type_base + type_index,
        });
        Ok(self.late_base + self.late.len() as u32 - 1)
    }

    /// Follows import `index` (of `kind`) of member `at` to its definition.
    fn resolve(
        &self,
        component: &Component<'a>,
        at: usize,
        kind: Kind,
        index: u32,
    ) -> anyhow::Result<Resolved<'a>> {
        let (mut member, mut index) = (at, index);
        for _ in 0..MAX_HOPS {
            let m = &self.members[member];
            let imported = m.module.imported(kind);
            if index >= imported {
                let defined = index - imported;
                return Ok(Resolved::Member { member, defined });
            }
            let import = m
                .module
                .import_of(kind, index)
                .context("import out of range")?;
            let instance = *m
                .args
                .get(import.module)
                .with_context(|| format!("no instance given for `{}`", import.module))?;
            match self.follow(component, kind, instance, import.name)? {
                Hop::Member {
                    member: next,
                    index: i,
                } => (member, index) = (next, i),
                Hop::Outside { instance, name } => return Ok(Resolved::Outside { instance, name }),
            }
        }
        bail!("an import goes through more than {MAX_HOPS} re-exports")
    }

    /// Follows export `name` of `instance` through export bundles until it
    /// reaches a member's own index or leaves the members.
    fn follow(
        &self,
        component: &Component<'a>,
        kind: Kind,
        instance: u32,
        name: &'a str,
    ) -> anyhow::Result<Hop<'a>> {
        let (mut instance, mut name) = (instance, name);
        for _ in 0..MAX_HOPS {
            let def = component
                .instances
                .get(instance as usize)
                .context("no such instance")?;
            match def {
                Instance::Instantiate { .. } => {
                    let Some(member) = self.member_of(instance) else {
                        return Ok(Hop::Outside { instance, name });
                    };
                    let e = self.members[member].module.export(name);
                    let e = e.with_context(|| format!("no export `{name}`"))?;
                    ensure!(
                        Kind::of_export(e.kind)? == kind,
                        "`{name}` is not a {kind:?}"
                    );
                    return Ok(Hop::Member {
                        member,
                        index: e.index,
                    });
                }
                Instance::FromExports(exports) => {
                    let e = exports.iter().find(|e| e.name == name);
                    let e = e.with_context(|| format!("no export `{name}` in a bundle"))?;
                    match component.origin(kind, e.index)? {
                        Origin::Alias {
                            instance: i,
                            name: n,
                        } => (instance, name) = (i, n),
                        Origin::Other => return Ok(Hop::Outside { instance, name }),
                    }
                }
            }
        }
        bail!("an export goes through more than {MAX_HOPS} bundles")
    }
}

enum Resolved<'a> {
    Member { member: usize, defined: u32 },
    Outside { instance: u32, name: &'a str },
}

enum Hop<'a> {
    Member { member: usize, index: u32 },
    Outside { instance: u32, name: &'a str },
}

/// Refuses a module instantiated between `main` and the last member, not
/// merged, that writes `main`'s memory or table with active segments: the
/// members' segments all apply at `main`'s place now, so its writes would
/// come after theirs instead of between them.
fn refuse_writers_between(
    component: &Component<'_>,
    main: u32,
    last: u32,
    members: &[Member<'_>],
) -> anyhow::Result<()> {
    for instance in main + 1..last {
        if members.iter().any(|m| m.instance == instance) {
            continue;
        }
        let Instance::Instantiate { .. } = &component.instances[instance as usize] else {
            continue;
        };
        let other = member(component, instance)?;
        let writes_memory = other
            .module
            .data
            .iter()
            .any(|d| matches!(d.kind, wasmparser::DataKind::Active { .. }));
        let writes_table = other
            .module
            .elements
            .iter()
            .any(|e| matches!(e.kind, wasmparser::ElementKind::Active { .. }));
        for (kind, writes) in [(Kind::Memory, writes_memory), (Kind::Table, writes_table)] {
            for index in 0..other.module.imported(kind) {
                let import = other.module.import_of(kind, index).context("import")?;
                let Some(&arg) = other.args.get(import.module) else {
                    continue;
                };
                let from = comes_from(component, arg, import.name, kind)?;
                if writes && from.is_some_and(|(i, _)| i == main) {
                    bail!("a module between the members writes `main`'s {kind:?}");
                }
            }
        }
    }
    Ok(())
}

/// The core instantiation, and its export, that export `name` of
/// `instance` comes from, following export bundles.
fn comes_from<'a>(
    component: &Component<'a>,
    instance: u32,
    name: &'a str,
    kind: Kind,
) -> anyhow::Result<Option<(u32, &'a str)>> {
    let mut at = (instance, name);
    for _ in 0..MAX_HOPS {
        let def = component
            .instances
            .get(at.0 as usize)
            .context("no such instance")?;
        match def {
            Instance::Instantiate { .. } => return Ok(Some(at)),
            Instance::FromExports(exports) => {
                let Some(e) = exports.iter().find(|e| e.name == at.1) else {
                    return Ok(None);
                };
                match component.origin(kind, e.index)? {
                    Origin::Alias { instance, name } => at = (instance, name),
                    Origin::Other => return Ok(None),
                }
            }
        }
    }
    Ok(None)
}

/// Whether `candidate` imports a table, and that table is `main`'s.
fn imports_mains_table(
    component: &Component<'_>,
    candidate: &Member<'_>,
    main: u32,
) -> anyhow::Result<bool> {
    let Some(import) = candidate.module.import_of(Kind::Table, 0) else {
        return Ok(false);
    };
    let Some(&instance) = candidate.args.get(import.module) else {
        return Ok(false);
    };
    Ok(comes_from(component, instance, import.name, Kind::Table)? == Some((main, TABLE)))
}

/// The instance whose module defines and exports `__indirect_function_table`.
fn find_main(component: &Component<'_>) -> anyhow::Result<Option<u32>> {
    let mut found = None;
    for instance in 0..component.instances.len() as u32 {
        let Some(module_index) = component.module_of(instance) else {
            continue;
        };
        let Some(bytes) = component
            .modules
            .get(module_index as usize)
            .copied()
            .flatten()
        else {
            continue;
        };
        let module = CoreModule::parse(bytes)?;
        let defines = module
            .export(TABLE)
            .is_some_and(|e| e.index >= module.imported(Kind::Table));
        if defines {
            ensure!(found.is_none(), "two modules define `{TABLE}`");
            found = Some(instance);
        }
    }
    Ok(found)
}

fn member<'a>(component: &Component<'a>, instance: u32) -> anyhow::Result<Member<'a>> {
    let Instance::Instantiate { module_index, args } = &component.instances[instance as usize]
    else {
        bail!("instance {instance} is not an instantiation");
    };
    let bytes = component
        .modules
        .get(*module_index as usize)
        .copied()
        .flatten();
    let bytes = bytes.context("an aliased module")?;
    let mut by_name = HashMap::new();
    for arg in args.iter() {
        let InstantiationArgKind::Instance = arg.kind;
        by_name.insert(arg.name, arg.index);
    }
    Ok(Member {
        instance,
        module_index: *module_index,
        module: CoreModule::parse(bytes)?,
        args: by_name,
        maps: Default::default(),
        type_base: 0,
        elem_base: 0,
        data_base: 0,
    })
}

/// Whether a module imports a table (cheaper than parsing it whole).
fn imports_table(bytes: &[u8]) -> anyhow::Result<bool> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::ImportSection(r) = payload? {
            for import in r.into_imports() {
                if matches!(import?.ty, TypeRef::Table(_)) {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
    }
    Ok(false)
}
