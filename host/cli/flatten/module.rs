//! One core module of the component, read into the parts the merge needs:
//! what it imports, defines and exports, and the sections it re-encodes.

use anyhow::{Context, bail, ensure};
use wasmparser::{
    CompositeInnerType, Data, Element, Export, ExternalKind, FuncType, FunctionBody, Global,
    Import, MemoryType, Name, Parser, Payload, Table, TypeRef,
};

/// The kinds of item a core module indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Func,
    Table,
    Memory,
    Global,
}

impl Kind {
    pub(super) fn of_export(kind: ExternalKind) -> anyhow::Result<Kind> {
        Ok(match kind {
            ExternalKind::Func | ExternalKind::FuncExact => Kind::Func,
            ExternalKind::Table => Kind::Table,
            ExternalKind::Memory => Kind::Memory,
            ExternalKind::Global => Kind::Global,
            ExternalKind::Tag => bail!("exception tags are not merged"),
        })
    }

    pub(super) fn of_import(ty: &TypeRef) -> anyhow::Result<Kind> {
        Ok(match ty {
            TypeRef::Func(_) | TypeRef::FuncExact(_) => Kind::Func,
            TypeRef::Table(_) => Kind::Table,
            TypeRef::Memory(_) => Kind::Memory,
            TypeRef::Global(_) => Kind::Global,
            TypeRef::Tag(_) => bail!("exception tags are not merged"),
        })
    }

    pub(super) const ALL: [Kind; 4] = [Kind::Func, Kind::Table, Kind::Memory, Kind::Global];

    pub(super) fn slot(self) -> usize {
        self as usize
    }
}

/// A parsed core module; its readers borrow the component's bytes.
pub(super) struct CoreModule<'a> {
    pub(super) types: Vec<FuncType>,
    pub(super) imports: Vec<Import<'a>>,
    /// Positions in `imports` of each kind's imports, in index order.
    by_kind: [Vec<usize>; 4],
    /// The type of each function the module defines.
    pub(super) funcs: Vec<u32>,
    pub(super) tables: Vec<Table<'a>>,
    pub(super) memories: Vec<MemoryType>,
    pub(super) globals: Vec<Global<'a>>,
    pub(super) exports: Vec<Export<'a>>,
    pub(super) elements: Vec<Element<'a>>,
    pub(super) data: Vec<Data<'a>>,
    pub(super) bodies: Vec<FunctionBody<'a>>,
    /// Names of functions, by the module's own function index.
    pub(super) func_names: Vec<(u32, &'a str)>,
}

impl<'a> CoreModule<'a> {
    pub(super) fn parse(bytes: &'a [u8]) -> anyhow::Result<Self> {
        let mut m = CoreModule {
            types: Vec::new(),
            imports: Vec::new(),
            by_kind: Default::default(),
            funcs: Vec::new(),
            tables: Vec::new(),
            memories: Vec::new(),
            globals: Vec::new(),
            exports: Vec::new(),
            elements: Vec::new(),
            data: Vec::new(),
            bodies: Vec::new(),
            func_names: Vec::new(),
        };
        for payload in Parser::new(0).parse_all(bytes) {
            m.take(payload?)?;
        }
        ensure!(
            m.bodies.len() == m.funcs.len(),
            "code and function sections disagree"
        );
        for (at, import) in m.imports.iter().enumerate() {
            m.by_kind[Kind::of_import(&import.ty)?.slot()].push(at);
        }
        Ok(m)
    }

    fn take(&mut self, payload: Payload<'a>) -> anyhow::Result<()> {
        match payload {
            Payload::TypeSection(r) => {
                for group in r {
                    self.types.push(plain_func_type(group?)?);
                }
            }
            Payload::ImportSection(r) => {
                for i in r.into_imports() {
                    self.imports.push(i?);
                }
            }
            Payload::FunctionSection(r) => self.funcs = r.into_iter().collect::<Result<_, _>>()?,
            Payload::TableSection(r) => self.tables = r.into_iter().collect::<Result<_, _>>()?,
            Payload::MemorySection(r) => self.memories = r.into_iter().collect::<Result<_, _>>()?,
            Payload::GlobalSection(r) => self.globals = r.into_iter().collect::<Result<_, _>>()?,
            Payload::ExportSection(r) => self.exports = r.into_iter().collect::<Result<_, _>>()?,
            Payload::ElementSection(r) => {
                self.elements = r.into_iter().collect::<Result<_, _>>()?
            }
            Payload::DataSection(r) => self.data = r.into_iter().collect::<Result<_, _>>()?,
            Payload::CodeSectionEntry(body) => self.bodies.push(body),
            Payload::StartSection { .. } => bail!("a start function is not merged"),
            Payload::TagSection(_) => bail!("exception tags are not merged"),
            Payload::CustomSection(c) => self.take_names(c)?,
            _ => {}
        }
        Ok(())
    }

    fn take_names(&mut self, custom: wasmparser::CustomSectionReader<'a>) -> anyhow::Result<()> {
        let wasmparser::KnownCustom::Name(names) = custom.as_known() else {
            return Ok(());
        };
        for name in names {
            // A malformed name section only loses names, as in wasmtime.
            let Ok(Name::Function(map)) = name else {
                continue;
            };
            for naming in map.into_iter().flatten() {
                self.func_names.push((naming.index, naming.name));
            }
        }
        Ok(())
    }

    /// How many items of `kind` the module imports (they come first in its
    /// index space).
    pub(super) fn imported(&self, kind: Kind) -> u32 {
        self.by_kind[kind.slot()].len() as u32
    }

    /// How many items of `kind` the module defines.
    pub(super) fn defined(&self, kind: Kind) -> u32 {
        let n = match kind {
            Kind::Func => self.funcs.len(),
            Kind::Table => self.tables.len(),
            Kind::Memory => self.memories.len(),
            Kind::Global => self.globals.len(),
        };
        n as u32
    }

    /// The import that `index` (of `kind`) names, if it is imported.
    pub(super) fn import_of(&self, kind: Kind, index: u32) -> Option<&Import<'a>> {
        let at = *self.by_kind[kind.slot()].get(index as usize)?;
        self.imports.get(at)
    }

    pub(super) fn export(&self, name: &str) -> Option<&Export<'a>> {
        self.exports.iter().find(|e| e.name == name)
    }

    /// The type of item `index` of `kind`, imported or defined.
    pub(super) fn item_type(&self, kind: Kind, index: u32) -> anyhow::Result<TypeRef> {
        if let Some(import) = self.import_of(kind, index) {
            return Ok(import.ty);
        }
        let at = (index - self.imported(kind)) as usize;
        Ok(match kind {
            Kind::Func => TypeRef::Func(*self.funcs.get(at).context("function out of range")?),
            Kind::Table => TypeRef::Table(self.tables.get(at).context("table out of range")?.ty),
            Kind::Memory => TypeRef::Memory(*self.memories.get(at).context("memory out of range")?),
            Kind::Global => {
                TypeRef::Global(self.globals.get(at).context("global out of range")?.ty)
            }
        })
    }

    /// The function type of function `index` (imported or defined).
    pub(super) fn func_type(&self, index: u32) -> anyhow::Result<&FuncType> {
        let (TypeRef::Func(ty) | TypeRef::FuncExact(ty)) = self.item_type(Kind::Func, index)?
        else {
            bail!("function {index} is not imported as a function");
        };
        self.types
            .get(ty as usize)
            .context("type index out of range")
    }
}

/// A type of the MVP's kind: a function type alone in its recursion group,
/// final, with no supertype and no typed references (wasm GC's type
/// identity is not kept across the merge, so such types stop it).
fn plain_func_type(group: wasmparser::RecGroup) -> anyhow::Result<FuncType> {
    let mut types = group.into_types();
    let (Some(sub), None) = (types.next(), types.next()) else {
        bail!("a recursion group of several types is not merged");
    };
    ensure!(
        sub.is_final && sub.supertype_idx.is_none() && !sub.composite_type.shared,
        "a subtyped or shared type is not merged"
    );
    let CompositeInnerType::Func(f) = sub.composite_type.inner else {
        bail!("only function types are merged");
    };
    let typed_ref = f.params().iter().chain(f.results()).any(|t| {
        matches!(t, wasmparser::ValType::Ref(r) if !matches!(r.heap_type(), wasmparser::HeapType::Abstract { .. }))
    });
    ensure!(!typed_ref, "a typed reference is not merged");
    Ok(f)
}
