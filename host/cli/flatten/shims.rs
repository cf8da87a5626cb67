//! The small modules that take the other members' places in the component:
//! each re-exports, under the member's own names, what the merged module
//! exports for it, so every alias of the member's instance still resolves.
//! The last member's replacement also fills the late table with the
//! functions the members import from outside.

use std::collections::BTreeSet;

use anyhow::bail;
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{
    CodeSection, ConstExpr, ElementSection, Elements, EntityType, ExportSection, Function,
    FunctionSection, GlobalSection, ImportSection, Instruction, Module, RefType, TableType,
    TypeSection, ValType,
};
use wasmparser::TypeRef;

use super::link::{Member, Plan};
use super::merge::{LATE_TABLE, export_kind, member_export};
use super::module::Kind;

/// The instantiation argument that names the merged module's instance.
pub(super) const MERGED_ARG: &str = "m";

/// The instantiation argument that names core instance `instance`.
pub(super) fn source_arg(instance: u32) -> String {
    format!("i{instance}")
}

/// The instances the late imports come from, each once.
pub(super) fn late_sources(plan: &Plan<'_>) -> BTreeSet<u32> {
    plan.late.iter().map(|l| l.instance).collect()
}

/// The replacement module for member `at`; `fills` for the last member.
pub(super) fn replacement(plan: &Plan<'_>, at: usize, fills: bool) -> anyhow::Result<Vec<u8>> {
    let member = &plan.members[at];
    let mut m = Replacement::default();
    if fills {
        let table = EntityType::Table(late_table(plan));
        m.imports.import(MERGED_ARG, LATE_TABLE, table);
        m.imported[Kind::Table.slot()] += 1;
    }
    // Imports first (their indices come first), then the traps.
    let (live, dead): (Vec<&wasmparser::Export<'_>>, Vec<_>) = member
        .module
        .exports
        .iter()
        .partition(|e| plan.is_live(member.instance, e.name));
    for e in live {
        let kind = Kind::of_export(e.kind)?;
        let entity = entity_type(member, kind, e.index, &mut m.types)?;
        m.imports
            .import(MERGED_ARG, &member_export(member.instance, e.name), entity);
        let index = m.imported[kind.slot()];
        m.imported[kind.slot()] += 1;
        m.exports.export(e.name, export_kind(kind), index);
    }
    if fills {
        m.import_late(plan)?;
    }
    for e in dead {
        m.define_unused(member, e)?;
    }
    Ok(m.finish())
}

/// A replacement module being built.
#[derive(Default)]
struct Replacement {
    types: TypeSection,
    imports: ImportSection,
    functions: FunctionSection,
    globals: GlobalSection,
    exports: ExportSection,
    elements: ElementSection,
    code: CodeSection,
    imported: [u32; 4],
    defined: [u32; 4],
}

impl Replacement {
    /// Imports every late function and fills the late table with them.
    fn import_late(&mut self, plan: &Plan<'_>) -> anyhow::Result<()> {
        let first = self.imported[Kind::Func.slot()];
        for late in &plan.late {
            let ty = RoundtripReencoder.func_type(late.ty.clone())?;
            let index = self.types.len();
            self.types.ty().func_type(&ty);
            let source = source_arg(late.instance);
            self.imports
                .import(&source, late.name, EntityType::Function(index));
        }
        self.imported[Kind::Func.slot()] += plan.late.len() as u32;
        let funcs: Vec<u32> = (first..first + plan.late.len() as u32).collect();
        self.elements.active(
            Some(0),
            &ConstExpr::i32_const(0),
            Elements::Functions(funcs.into()),
        );
        Ok(())
    }

    /// An export nothing uses: a function that traps, or a global of the
    /// same type (a table or memory is never unused here: they are imported).
    fn define_unused(
        &mut self,
        member: &Member<'_>,
        e: &wasmparser::Export<'_>,
    ) -> anyhow::Result<()> {
        let kind = Kind::of_export(e.kind)?;
        let index = self.imported[kind.slot()] + self.defined[kind.slot()];
        match entity_type(member, kind, e.index, &mut self.types)? {
            EntityType::Function(ty) => {
                self.functions.function(ty);
                let mut f = Function::new([]);
                f.instruction(&Instruction::Unreachable);
                f.instruction(&Instruction::End);
                self.code.function(&f);
            }
            EntityType::Global(ty) => {
                let zero = match ty.val_type {
                    ValType::I32 => ConstExpr::i32_const(0),
                    ValType::I64 => ConstExpr::i64_const(0),
                    ValType::F32 => ConstExpr::f32_const(0.0f32.into()),
                    ValType::F64 => ConstExpr::f64_const(0.0f64.into()),
                    _ => bail!("an unused global of type {:?}", ty.val_type),
                };
                self.globals.global(ty, &zero);
            }
            _ => bail!("an unused table or memory export `{}`", e.name),
        }
        self.defined[kind.slot()] += 1;
        self.exports.export(e.name, export_kind(kind), index);
        Ok(())
    }

    fn finish(self) -> Vec<u8> {
        let mut module = Module::new();
        module.section(&self.types);
        module.section(&self.imports);
        module.section(&self.functions);
        module.section(&self.globals);
        module.section(&self.exports);
        if !self.elements.is_empty() {
            module.section(&self.elements);
        }
        module.section(&self.code);
        module.finish()
    }
}

fn late_table(plan: &Plan<'_>) -> TableType {
    let n = plan.late.len() as u64;
    TableType {
        element_type: RefType::FUNCREF,
        minimum: n,
        maximum: Some(n),
        table64: false,
        shared: false,
    }
}

/// The type of item `index` (of `kind`) of `member`, as an import; function
/// types are added to `types`.
fn entity_type(
    member: &Member<'_>,
    kind: Kind,
    index: u32,
    types: &mut TypeSection,
) -> anyhow::Result<EntityType> {
    let mut rt = RoundtripReencoder;
    Ok(match member.module.item_type(kind, index)? {
        TypeRef::Func(_) | TypeRef::FuncExact(_) => {
            let ty = rt.func_type(member.module.func_type(index)?.clone())?;
            let at = types.len();
            types.ty().func_type(&ty);
            EntityType::Function(at)
        }
        TypeRef::Global(g) => EntityType::Global(rt.global_type(g)?),
        TypeRef::Table(t) => EntityType::Table(rt.table_type(t)?),
        TypeRef::Memory(m) => EntityType::Memory(rt.memory_type(m)?),
        TypeRef::Tag(_) => bail!("exception tags are not merged"),
    })
}
