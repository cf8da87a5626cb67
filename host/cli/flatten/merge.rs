//! Encodes the merged core module: every member's types, functions,
//! globals, element and data segments in one index space, `main`'s table
//! and memory, and a stub per late import that calls through the late table.
//!
//! Segment offsets and global initializers are folded to constants: the
//! libraries place their functions at `global.get __table_base`, which
//! wasmtime cannot precompute, and a constant offset into a table the module
//! defines is what lets it fill the table lazily.

use std::borrow::Cow;

use anyhow::{Context, bail, ensure};
use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasm_encoder::{
    CodeSection, ConstExpr, DataCountSection, DataSection, ElementSection, Elements, ExportKind,
    ExportSection, Function, FunctionSection, GlobalSection, Instruction, MemorySection, Module,
    NameMap, NameSection, RefType, TableSection, TableType, TypeSection,
};
use wasmparser::{ElementItems, ElementKind, Operator};

use super::link::{Member, Plan};
use super::module::Kind;

/// The merged module's export of the late table.
pub(super) const LATE_TABLE: &str = "fabric-merged/late-table";

/// The merged module's export name for `name` of member `instance`.
pub(super) fn member_export(instance: u32, name: &str) -> String {
    format!("fabric-merged/{instance}/{name}")
}

/// A folded constant.
#[derive(Clone, Copy)]
enum Value {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
}

impl Value {
    fn expr(self) -> ConstExpr {
        match self {
            Value::I32(v) => ConstExpr::i32_const(v),
            Value::I64(v) => ConstExpr::i64_const(v),
            Value::F32(v) => ConstExpr::f32_const(f32::from_bits(v).into()),
            Value::F64(v) => ConstExpr::f64_const(f64::from_bits(v).into()),
        }
    }
}

/// Maps one member's indices into the merged module.
struct Remap<'p, 'a> {
    member: &'p Member<'a>,
}

impl Reencode for Remap<'_, '_> {
    type Error = String;

    fn type_index(&mut self, ty: u32) -> Result<u32, ReencodeError<String>> {
        Ok(self.member.type_base + ty)
    }
    fn function_index(&mut self, f: u32) -> Result<u32, ReencodeError<String>> {
        self.look(Kind::Func, f)
    }
    fn global_index(&mut self, g: u32) -> Result<u32, ReencodeError<String>> {
        self.look(Kind::Global, g)
    }
    fn table_index(&mut self, t: u32) -> Result<u32, ReencodeError<String>> {
        self.look(Kind::Table, t)
    }
    fn memory_index(&mut self, m: u32) -> Result<u32, ReencodeError<String>> {
        self.look(Kind::Memory, m)
    }
    fn data_index(&mut self, d: u32) -> Result<u32, ReencodeError<String>> {
        Ok(self.member.data_base + d)
    }
    fn element_index(&mut self, e: u32) -> Result<u32, ReencodeError<String>> {
        Ok(self.member.elem_base + e)
    }
    fn tag_index(&mut self, _: u32) -> Result<u32, ReencodeError<String>> {
        Err(ReencodeError::UserError(
            "exception tags are not merged".into(),
        ))
    }
}

impl Remap<'_, '_> {
    fn look(&self, kind: Kind, index: u32) -> Result<u32, ReencodeError<String>> {
        self.member.maps[kind.slot()]
            .get(index as usize)
            .copied()
            .ok_or_else(|| ReencodeError::UserError(format!("{kind:?} {index} out of range")))
    }
}

fn reencode_err(e: ReencodeError<String>) -> anyhow::Error {
    anyhow::anyhow!("re-encoding: {e}")
}

/// The merged module's bytes.
pub(super) fn merged_module(plan: &Plan<'_>) -> anyhow::Result<Vec<u8>> {
    let globals = fold_globals(plan)?;
    let mut module = Module::new();
    module.section(&types(plan)?);
    module.section(&functions(plan));
    module.section(&tables(plan)?);
    module.section(&memories(plan)?);
    module.section(&global_section(plan, &globals)?);
    module.section(&exports(plan)?);
    module.section(&elements(plan, &globals)?);
    let data_count: usize = plan.members.iter().map(|m| m.module.data.len()).sum();
    module.section(&DataCountSection {
        count: data_count as u32,
    });
    module.section(&code(plan)?);
    module.section(&data(plan, &globals)?);
    module.section(&names(plan));
    Ok(module.finish())
}

fn types(plan: &Plan<'_>) -> anyhow::Result<TypeSection> {
    let mut section = TypeSection::new();
    for member in &plan.members {
        let mut remap = Remap { member };
        for ty in &member.module.types {
            let ty = remap.func_type(ty.clone()).map_err(reencode_err)?;
            section.ty().func_type(&ty);
        }
    }
    Ok(section)
}

fn functions(plan: &Plan<'_>) -> FunctionSection {
    let mut section = FunctionSection::new();
    for member in &plan.members {
        for ty in &member.module.funcs {
            section.function(member.type_base + ty);
        }
    }
    for late in &plan.late {
        section.function(late.merged_type);
    }
    section
}

fn tables(plan: &Plan<'_>) -> anyhow::Result<TableSection> {
    let mut section = TableSection::new();
    let main = &plan.members[0];
    let table = main
        .module
        .tables
        .first()
        .context("main defines no table")?;
    ensure!(
        matches!(table.init, wasmparser::TableInit::RefNull),
        "main's table has an initializer"
    );
    let ty = Remap { member: main }
        .table_type(table.ty)
        .map_err(reencode_err)?;
    section.table(ty);
    let late = plan.late.len() as u64;
    section.table(TableType {
        element_type: RefType::FUNCREF,
        minimum: late,
        maximum: Some(late),
        table64: false,
        shared: false,
    });
    Ok(section)
}

fn memories(plan: &Plan<'_>) -> anyhow::Result<MemorySection> {
    let main = &plan.members[0];
    let memory = main
        .module
        .memories
        .first()
        .context("main defines no memory")?;
    let mut section = MemorySection::new();
    section.memory(
        Remap { member: main }
            .memory_type(*memory)
            .map_err(reencode_err)?,
    );
    Ok(section)
}

/// Every merged global's initial value, folded to a constant.
/// (All `Some`: a global that cannot be folded fails the merge.)
fn fold_globals(plan: &Plan<'_>) -> anyhow::Result<Vec<Option<Value>>> {
    let mut values: Vec<Option<Value>> = vec![None; plan.globals as usize];
    // Each pass folds the globals whose inputs are known; a global's input
    // is another member's global, so a few passes settle them all.
    loop {
        let mut progress = false;
        let mut missing = 0;
        for member in &plan.members {
            let imported = member.module.imported(Kind::Global);
            for (i, global) in member.module.globals.iter().enumerate() {
                let at = member.maps[Kind::Global.slot()][imported as usize + i] as usize;
                if values[at].is_some() {
                    continue;
                }
                match eval(member, &global.init_expr, &values)? {
                    Some(v) => (values[at], progress) = (Some(v), true),
                    None => missing += 1,
                }
            }
        }
        if missing == 0 {
            break;
        }
        ensure!(progress, "{missing} globals have no constant value");
    }
    Ok(values)
}

/// Evaluates a constant expression of `member`; `None` while a global it
/// reads is not folded yet.
fn eval(
    member: &Member<'_>,
    expr: &wasmparser::ConstExpr<'_>,
    values: &[Option<Value>],
) -> anyhow::Result<Option<Value>> {
    let mut stack: Vec<Value> = Vec::new();
    let mut ops = expr.get_operators_reader();
    while !ops.eof() {
        let value = match ops.read()? {
            Operator::I32Const { value } => Value::I32(value),
            Operator::I64Const { value } => Value::I64(value),
            Operator::F32Const { value } => Value::F32(value.bits()),
            Operator::F64Const { value } => Value::F64(value.bits()),
            Operator::GlobalGet { global_index } => {
                let at = member.maps[Kind::Global.slot()]
                    .get(global_index as usize)
                    .context("global out of range")?;
                match values[*at as usize] {
                    Some(v) => v,
                    None => return Ok(None),
                }
            }
            Operator::End => break,
            op => {
                let (b, a) = (stack.pop(), stack.pop());
                binary(&op, a, b)?
            }
        };
        stack.push(value);
    }
    ensure!(
        stack.len() == 1,
        "a constant expression leaves {} values",
        stack.len()
    );
    Ok(stack.pop())
}

/// `a op b` for the integer operators extended constant expressions allow
/// (the input is validated, so the operands have the operator's type).
fn binary(op: &Operator<'_>, a: Option<Value>, b: Option<Value>) -> anyhow::Result<Value> {
    let f: fn(i64, i64) -> i64 = match op {
        Operator::I32Add | Operator::I64Add => i64::wrapping_add,
        Operator::I32Sub | Operator::I64Sub => i64::wrapping_sub,
        Operator::I32Mul | Operator::I64Mul => i64::wrapping_mul,
        op => bail!("a constant expression with {op:?} is not folded"),
    };
    // Wrapping arithmetic on 64 bits, cut to 32, is the 32-bit result.
    Ok(match (a, b) {
        (Some(Value::I32(a)), Some(Value::I32(b))) => Value::I32(f(a.into(), b.into()) as i32),
        (Some(Value::I64(a)), Some(Value::I64(b))) => Value::I64(f(a, b)),
        _ => bail!("a constant expression's {op:?} has no integer operands"),
    })
}

fn global_section(plan: &Plan<'_>, values: &[Option<Value>]) -> anyhow::Result<GlobalSection> {
    let mut section = GlobalSection::new();
    for member in &plan.members {
        let imported = member.module.imported(Kind::Global);
        let mut remap = Remap { member };
        for (i, global) in member.module.globals.iter().enumerate() {
            let at = member.maps[Kind::Global.slot()][imported as usize + i] as usize;
            let ty = remap.global_type(global.ty).map_err(reencode_err)?;
            let value = values[at].context("a global was not folded")?;
            section.global(ty, &value.expr());
        }
    }
    Ok(section)
}

fn exports(plan: &Plan<'_>) -> anyhow::Result<ExportSection> {
    let mut section = ExportSection::new();
    for (n, member) in plan.members.iter().enumerate() {
        for e in &member.module.exports {
            let Ok(kind) = Kind::of_export(e.kind) else {
                continue;
            };
            let index = *member.maps[kind.slot()]
                .get(e.index as usize)
                .context("export out of range")?;
            // `main` keeps its names: the merged module takes its place.
            let name = if n == 0 {
                e.name.to_string()
            } else if plan.is_live(member.instance, e.name) {
                member_export(member.instance, e.name)
            } else {
                continue;
            };
            section.export(&name, export_kind(kind), index);
        }
    }
    section.export(LATE_TABLE, ExportKind::Table, 1);
    Ok(section)
}

pub(super) fn export_kind(kind: Kind) -> ExportKind {
    match kind {
        Kind::Func => ExportKind::Func,
        Kind::Table => ExportKind::Table,
        Kind::Memory => ExportKind::Memory,
        Kind::Global => ExportKind::Global,
    }
}

/// A constant offset into table or memory.
fn offset(
    member: &Member<'_>,
    expr: &wasmparser::ConstExpr<'_>,
    values: &[Option<Value>],
) -> anyhow::Result<ConstExpr> {
    match eval(member, expr, values)? {
        Some(Value::I32(v)) => Ok(ConstExpr::i32_const(v)),
        Some(Value::I64(v)) => Ok(ConstExpr::i64_const(v)),
        _ => bail!("a segment offset is not an integer"),
    }
}

fn elements(plan: &Plan<'_>, values: &[Option<Value>]) -> anyhow::Result<ElementSection> {
    let mut section = ElementSection::new();
    // A function a member exported may be the target of its `ref.func`
    // only because it was exported; the merged module does not export what
    // nothing outside uses, so it declares those functions instead.
    let mut unexported = Vec::new();
    for member in plan.members.iter().skip(1) {
        for e in &member.module.exports {
            if Kind::of_export(e.kind)? == Kind::Func && !plan.is_live(member.instance, e.name) {
                let f = member.maps[Kind::Func.slot()].get(e.index as usize);
                unexported.push(*f.context("export out of range")?);
            }
        }
    }
    if !unexported.is_empty() {
        section.declared(Elements::Functions(Cow::Owned(unexported)));
    }
    for member in &plan.members {
        for element in &member.module.elements {
            let funcs = element_funcs(member, &element.items)?;
            let items = Elements::Functions(Cow::Owned(funcs));
            match &element.kind {
                ElementKind::Active {
                    table_index,
                    offset_expr,
                } => {
                    let table = member.maps[Kind::Table.slot()]
                        .get(table_index.unwrap_or(0) as usize)
                        .copied()
                        .context("table out of range")?;
                    let at = offset(member, offset_expr, values)?;
                    section.active(Some(table), &at, items);
                }
                ElementKind::Passive => {
                    section.passive(items);
                }
                ElementKind::Declared => {
                    section.declared(items);
                }
            }
        }
    }
    Ok(section)
}

/// A segment's functions as merged indices (`ref.func` expressions too: the
/// precomputed table needs plain indices).
fn element_funcs(member: &Member<'_>, items: &ElementItems<'_>) -> anyhow::Result<Vec<u32>> {
    let map = &member.maps[Kind::Func.slot()];
    let look = |f: u32| {
        map.get(f as usize)
            .copied()
            .context("function out of range")
    };
    let mut funcs = Vec::new();
    match items {
        ElementItems::Functions(r) => {
            for f in r.clone() {
                funcs.push(look(f?)?);
            }
        }
        ElementItems::Expressions(_, r) => {
            for expr in r.clone() {
                let mut ops = expr?.get_operators_reader();
                match (ops.read()?, ops.read()?) {
                    (Operator::RefFunc { function_index }, Operator::End) => {
                        funcs.push(look(function_index)?)
                    }
                    _ => bail!("an element expression other than ref.func"),
                }
            }
        }
    }
    Ok(funcs)
}

fn code(plan: &Plan<'_>) -> anyhow::Result<CodeSection> {
    let mut section = CodeSection::new();
    for member in &plan.members {
        let mut remap = Remap { member };
        for body in &member.module.bodies {
            remap
                .parse_function_body(&mut section, body.clone())
                .map_err(reencode_err)?;
        }
    }
    for (i, late) in plan.late.iter().enumerate() {
        let mut f = Function::new([]);
        for p in 0..late.ty.params().len() as u32 {
            f.instruction(&Instruction::LocalGet(p));
        }
        f.instruction(&Instruction::I32Const(i as i32));
        f.instruction(&Instruction::CallIndirect {
            type_index: late.merged_type,
            table_index: 1,
        });
        f.instruction(&Instruction::End);
        section.function(&f);
    }
    Ok(section)
}

fn data(plan: &Plan<'_>, values: &[Option<Value>]) -> anyhow::Result<DataSection> {
    let mut section = DataSection::new();
    for member in &plan.members {
        for d in &member.module.data {
            match &d.kind {
                wasmparser::DataKind::Passive => {
                    section.passive(d.data.iter().copied());
                }
                wasmparser::DataKind::Active {
                    memory_index,
                    offset_expr,
                } => {
                    let memory = member.maps[Kind::Memory.slot()]
                        .get(*memory_index as usize)
                        .copied()
                        .context("memory out of range")?;
                    let at = offset(member, offset_expr, values)?;
                    section.active(memory, &at, d.data.iter().copied());
                }
            }
        }
    }
    Ok(section)
}

/// Function names, so traps and profiles still name guest functions.
fn names(plan: &Plan<'_>) -> NameSection {
    let mut map = NameMap::new();
    let mut named: Vec<(u32, &str)> = Vec::new();
    for member in &plan.members {
        let imported = member.module.imported(Kind::Func);
        for (index, name) in &member.module.func_names {
            if *index < imported {
                continue;
            }
            if let Some(at) = member.maps[Kind::Func.slot()].get(*index as usize) {
                named.push((*at, name));
            }
        }
    }
    named.sort_by_key(|(i, _)| *i);
    named.dedup_by_key(|(i, _)| *i);
    for (index, name) in named {
        map.append(index, name);
    }
    let mut section = NameSection::new();
    section.functions(&map);
    section
}
