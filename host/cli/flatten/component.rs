//! The component's top level, read once: its sections in order (to copy or
//! rewrite), which core module each core module index names, how each core
//! instance is made, and where each core item (function, table, memory,
//! global) comes from, so that an import can be followed to its definition.

use std::ops::Range;

use anyhow::{Context, bail, ensure};
use wasmparser::{
    CanonicalFunction, CanonicalOption, Chunk, ComponentAlias, ComponentExternalKind,
    ComponentInstance, ComponentOuterAliasKind, ComponentType, ComponentTypeRef, Encoding,
    Instance, Parser, Payload,
};

use super::module::Kind;

/// One top-level section, as the rewrite sees it.
pub(super) enum Section {
    /// Copied as it is (its whole bytes, header included).
    Raw(Range<usize>),
    /// A core module: `index` in the core module index space, `full` its
    /// section bytes, `module` the module's own bytes.
    Module { index: u32, full: Range<usize> },
    /// Core instances `first..first + count`.
    CoreInstances { first: u32, count: u32 },
}

/// Where a core item in the component's index spaces comes from.
#[derive(Clone, Copy)]
pub(super) enum Origin<'a> {
    /// An export of a core instance.
    Alias { instance: u32, name: &'a str },
    /// Anything else (a lowered or built-in function).
    Other,
}

pub(super) struct Component<'a> {
    pub(super) sections: Vec<Section>,
    /// The bytes of each core module, by index (`None`: not defined here).
    pub(super) modules: Vec<Option<&'a [u8]>>,
    pub(super) instances: Vec<Instance<'a>>,
    items: [Vec<Origin<'a>>; 4],
    /// Core items the component's canonical functions and resource types
    /// use (lifted functions, their memories, reallocs and post-returns,
    /// destructors).
    pub(super) uses: Vec<(Kind, u32)>,
    /// Whether some canonical function may use core items `uses` misses.
    pub(super) uses_unknown: bool,
    /// Why a core module may be reached other than by a core instantiation
    /// of it (imported, exported, passed to a component, aliased from a
    /// nested one): the merge then refuses, since it replaces modules.
    pub(super) modules_escape: Option<&'static str>,
}

impl<'a> Component<'a> {
    pub(super) fn parse(bytes: &'a [u8]) -> anyhow::Result<Self> {
        let mut c = Component {
            sections: Vec::new(),
            modules: Vec::new(),
            instances: Vec::new(),
            items: Default::default(),
            uses: Vec::new(),
            uses_unknown: false,
            modules_escape: None,
        };
        let mut parser = Parser::new(0);
        let mut pos = 0;
        loop {
            let start = pos;
            let rest = bytes.get(pos..).context("truncated component")?;
            let (payload, consumed) = match parser.parse(rest, true)? {
                Chunk::Parsed { consumed, payload } => (payload, consumed),
                Chunk::NeedMoreData(_) => bail!("truncated component"),
            };
            pos += consumed;
            match payload {
                Payload::Version { encoding, .. } => {
                    ensure!(encoding == Encoding::Component, "not a component");
                    ensure!(start == 0, "a version in the middle");
                }
                Payload::ModuleSection {
                    unchecked_range, ..
                } => pos = c.take_module(bytes, start, pos, unchecked_range)?,
                // A nested component has index spaces of its own: copied.
                Payload::ComponentSection {
                    unchecked_range, ..
                } => {
                    ensure!(unchecked_range.start == pos, "a component out of place");
                    let nested = bytes.get(unchecked_range.clone());
                    let nested = nested.context("truncated component")?;
                    if aliases_outer_modules(nested)? {
                        c.modules_escape = Some("a nested component aliases a core module");
                    }
                    pos = unchecked_range.end;
                    c.sections.push(Section::Raw(start..pos));
                }
                Payload::InstanceSection(reader) => {
                    let first = c.instances.len() as u32;
                    for instance in reader {
                        c.instances.push(instance?);
                    }
                    let count = c.instances.len() as u32 - first;
                    c.sections.push(Section::CoreInstances { first, count });
                }
                Payload::End(_) => break,
                other => {
                    c.note(other)?;
                    c.sections.push(Section::Raw(start..pos));
                }
            }
        }
        ensure!(pos == bytes.len(), "bytes after the component's end");
        Ok(c)
    }

    /// Notes what a section copied as it is defines or uses.
    fn note(&mut self, payload: Payload<'a>) -> anyhow::Result<()> {
        match payload {
            Payload::ComponentAliasSection(reader) => {
                for alias in reader {
                    self.note_alias(alias?)?;
                }
            }
            Payload::ComponentCanonicalSection(reader) => {
                for canon in reader {
                    self.note_canon(canon?);
                }
            }
            Payload::ComponentTypeSection(reader) => {
                for ty in reader {
                    if let ComponentType::Resource { dtor: Some(f), .. } = ty? {
                        self.uses.push((Kind::Func, f));
                    }
                }
            }
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    if matches!(import?.ty, ComponentTypeRef::Module(_)) {
                        self.modules_escape = Some("a core module is imported");
                    }
                }
            }
            Payload::ComponentExportSection(reader) => {
                for export in reader {
                    if export?.kind == ComponentExternalKind::Module {
                        self.modules_escape = Some("a core module is exported");
                    }
                }
            }
            Payload::ComponentInstanceSection(reader) => {
                for instance in reader {
                    if passes_a_module(&instance?) {
                        self.modules_escape = Some("a core module is passed to a component");
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Notes a core module whose bytes are `range`; returns where the
    /// section after it starts.
    fn take_module(
        &mut self,
        bytes: &'a [u8],
        start: usize,
        pos: usize,
        range: Range<usize>,
    ) -> anyhow::Result<usize> {
        // The parser has counted the module's bytes already; the module's
        // own parse is skipped by moving past them.
        ensure!(range.start == pos, "a module section out of place");
        let end = range.end;
        let module = bytes.get(range).context("truncated module")?;
        let index = self.modules.len() as u32;
        self.modules.push(Some(module));
        self.sections.push(Section::Module {
            index,
            full: start..end,
        });
        Ok(end)
    }

    fn note_canon(&mut self, canon: CanonicalFunction) {
        let options = match &canon {
            CanonicalFunction::Lift {
                core_func_index,
                options,
                ..
            } => {
                self.uses.push((Kind::Func, *core_func_index));
                options
            }
            CanonicalFunction::Lower { options, .. } => options,
            CanonicalFunction::ResourceNew { .. }
            | CanonicalFunction::ResourceDrop { .. }
            | CanonicalFunction::ResourceRep { .. } => &Default::default(),
            _ => {
                self.uses_unknown = true;
                &Default::default()
            }
        };
        for option in options.iter() {
            match option {
                CanonicalOption::Memory(m) => self.uses.push((Kind::Memory, *m)),
                CanonicalOption::Realloc(f)
                | CanonicalOption::PostReturn(f)
                | CanonicalOption::Callback(f) => self.uses.push((Kind::Func, *f)),
                _ => {}
            }
        }
        if !matches!(canon, CanonicalFunction::Lift { .. }) {
            self.items[Kind::Func.slot()].push(Origin::Other);
        }
    }

    fn note_alias(&mut self, alias: ComponentAlias<'a>) -> anyhow::Result<()> {
        match alias {
            ComponentAlias::CoreInstanceExport {
                kind,
                instance_index,
                name,
            } => self.items[Kind::of_export(kind)?.slot()].push(Origin::Alias {
                instance: instance_index,
                name,
            }),
            ComponentAlias::InstanceExport {
                kind: ComponentExternalKind::Module,
                ..
            }
            | ComponentAlias::Outer {
                kind: ComponentOuterAliasKind::CoreModule,
                ..
            } => self.modules.push(None),
            _ => {}
        }
        Ok(())
    }

    /// Where core item `index` of `kind` comes from.
    pub(super) fn origin(&self, kind: Kind, index: u32) -> anyhow::Result<Origin<'a>> {
        self.items[kind.slot()]
            .get(index as usize)
            .copied()
            .with_context(|| format!("core {kind:?} {index} is not defined"))
    }

    /// The module a core instance instantiates, if it instantiates one.
    pub(super) fn module_of(&self, instance: u32) -> Option<u32> {
        match self.instances.get(instance as usize)? {
            Instance::Instantiate { module_index, .. } => Some(*module_index),
            Instance::FromExports(_) => None,
        }
    }
}

/// Whether a component instantiation is given a core module.
fn passes_a_module(instance: &ComponentInstance<'_>) -> bool {
    match instance {
        ComponentInstance::Instantiate { args, .. } => {
            args.iter().any(|a| a.kind == ComponentExternalKind::Module)
        }
        ComponentInstance::FromExports(exports) => exports
            .iter()
            .any(|e| e.kind == ComponentExternalKind::Module),
    }
}

/// Whether a nested component (at any depth) aliases an enclosing
/// component's core module.
fn aliases_outer_modules(nested: &[u8]) -> anyhow::Result<bool> {
    for payload in Parser::new(0).parse_all(nested) {
        if let Payload::ComponentAliasSection(reader) = payload? {
            for alias in reader {
                if let ComponentAlias::Outer {
                    kind: ComponentOuterAliasKind::CoreModule,
                    ..
                } = alias?
                {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}
