//! Reads the text form of the block IR (what [`super::print::kernel_to_string`] prints, the
//! output of `tlc compile --emit ir` and `--print-after`) back into a [`Kernel`], so that a test
//! can start from block IR.
//!
//! **Expects** any text. **Guarantees**: for every kernel `k` the compiler produces (before or
//! after layout inference), `kernel_to_string(&parse(&kernel_to_string(&k))?)` is the same
//! text (tested over every shipped kernel); malformed text is an [`IrParseError`] at a line
//! and column, never a panic. What the text does not hold is not restored: source spans are
//! empty and layout annotations are gone (the layouts they chose are printed and kept); the
//! planning passes' decisions (`via ..`, `shared [..]`, `shared_bytes(..)`) are kept. Parsing
//! does not check the IR's rules: run [`super::verify::verify`] (and
//! [`super::plan::verify_plan`]) on the result.

use super::{BinaryOp, Kernel, LayoutFunc, Op, Param, ParamId, ParamKind, ReduceOp, Stmt, SymExpr, Type, UnaryOp, ValueData, ValueId, VarData, VarId};
use crate::diagnostics::Span;
use crate::dtype::DType;
use crate::layout::register::{RegisterLayout, SpatialEntry};
use crate::number::Number;
use crate::text_cursor::{braced, items_until_brace, list, Cursor, TextResult as R};
use super::plan::{MmaInstruction, OperandSource, Strategy};

/// The planning passes' decisions on one value: its strategy and its shared-memory offsets.
type Plan = (Option<Strategy>, Vec<usize>);

/// Malformed block-IR text, at a 1-based line and column.
pub type IrParseError = crate::text_cursor::TextError;


/// Parses one kernel.
pub fn parse(text: &str) -> Result<Kernel, IrParseError> {
    // Instructions that produce nothing are printed without their number: they take numbers
    // after every printed one, in order.
    // (A number of MAX_VALUES or more is refused when it is read; it must not size the arena
    // here.)
    let next_unit = text
        .match_indices('%')
        .filter_map(|(i, _)| text[i + 1..].split(|c: char| !c.is_ascii_digit()).next()?.parse::<u32>().ok())
        .filter(|&n| (n as usize) < MAX_VALUES)
        .max()
        .map_or(0, |m| m + 1);
    let mut p = Parser { cursor: Cursor::new(text), kernel: None, next_unit, in_params: false, forward: Vec::new() };
    let kernel = p.kernel()?;
    p.finish("kernel")?;
    Ok(kernel)
}

struct Parser<'t> {
    cursor: Cursor<'t>,
    kernel: Option<Kernel>,
    /// The number the next instruction without a printed number takes.
    next_unit: u32,
    /// Parsing the parameter list, where a shape may name a later parameter.
    in_params: bool,
    /// Names used in shapes before their parameter was declared (`SymExpr::Param(FORWARD + i)`).
    forward: Vec<String>,
}

/// The most values a parsed kernel may have (each costs a few hundred bytes of arena).
pub const MAX_VALUES: usize = 1 << 18;

/// Marks a parameter index in [`Parser::forward`].
const FORWARD: u32 = u32::MAX / 2;

/// Replaces forward references in `e` by parameter indices; the unknown name otherwise.
fn resolve(e: &mut SymExpr, forward: &[String], names: &[String]) -> Result<(), String> {
    match e {
        SymExpr::Const(_) => Ok(()),
        SymExpr::Param(i) if i.0 >= FORWARD => {
            let name = &forward[(i.0 - FORWARD) as usize];
            *i = ParamId(names.iter().position(|n| n == name).ok_or_else(|| name.clone())? as u32);
            Ok(())
        }
        SymExpr::Param(_) => Ok(()),
        SymExpr::Add(a, b) | SymExpr::Sub(a, b) | SymExpr::Mul(a, b) | SymExpr::Div(a, b) | SymExpr::Rem(a, b) | SymExpr::CeilDiv(a, b) | SymExpr::Min(a, b) | SymExpr::Max(a, b) => {
            resolve(a, forward, names)?;
            resolve(b, forward, names)
        }
    }
}

impl<'t> std::ops::Deref for Parser<'t> {
    type Target = Cursor<'t>;
    fn deref(&self) -> &Cursor<'t> {
        &self.cursor
    }
}

impl std::ops::DerefMut for Parser<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.cursor
    }
}

impl<'t> Parser<'t> {
    fn dtype(&mut self) -> R<DType> {
        self.word_as(DType::from_name, |w| format!("unknown dtype `{w}`"))
    }

    fn kernel_ref(&self) -> &Kernel {
        self.kernel.as_ref().expect("the header is parsed first")
    }

    fn kernel(&mut self) -> R<Kernel> {
        self.skip_space();
        if self.word() != "kernel" {
            return Err(self.error("expected `kernel NAME<...>(...)`"));
        }
        let name = self.word().to_string();
        if name.is_empty() {
            return Err(self.error("expected the kernel's name"));
        }
        let mut const_params = Vec::new();
        let mut dtype_params = Vec::new();
        self.expect("<")?;
        if !self.eat(">") {
            loop {
                let n = self.word().to_string();
                if self.eat(":") {
                    self.expect_word("dtype")?;
                    self.expect("=")?;
                    dtype_params.push((n, self.dtype()?));
                } else {
                    self.expect("=")?;
                    const_params.push((n, self.integer("an integer")?));
                }
                if self.eat(">") {
                    break;
                }
                self.expect(",")?;
            }
        }
        let grid = [SymExpr::Const(1), SymExpr::Const(1), SymExpr::Const(1)];
        self.kernel = Some(Kernel { name, const_params, dtype_params, params: Vec::new(), grid, warps: 0, shared_bytes: None, values: Vec::new(), vars: Vec::new(), body: Vec::new() });
        self.expect("(")?;
        self.in_params = true;
        if !self.eat(")") {
            loop {
                let param = self.param()?;
                self.kernel.as_mut().expect("set").params.push(param);
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        self.in_params = false;
        // A shape may name a parameter declared after it: those names were kept aside and
        // resolve now.
        let forward = std::mem::take(&mut self.forward);
        let names: Vec<String> = self.kernel_ref().params.iter().map(|p| p.name.clone()).collect();
        for param in &mut self.kernel.as_mut().expect("set").params {
            if let ParamKind::Global { shape, .. } = &mut param.kind {
                for e in shape {
                    resolve(e, &forward, &names).map_err(|name| self.cursor.error(format!("unknown name `{name}` in the shape of `{}`", param.name)))?;
                }
            }
        }
        self.skip_space();
        let grid = list(self, "grid(", ")", |p| p.sym_expr())?;
        let grid: [SymExpr; 3] = grid.try_into().map_err(|_| self.error("a grid has three extents"))?;
        self.expect("warps(")?;
        let warps = self.integer("a warp count")?;
        self.expect(")")?;
        let shared_bytes = if self.eat("shared_bytes(") {
            let bytes = self.integer("a byte count")?;
            self.expect(")")?;
            Some(bytes)
        } else {
            None
        };
        self.expect("{")?;
        {
            let k = self.kernel.as_mut().expect("set");
            k.grid = grid;
            k.warps = warps;
            k.shared_bytes = shared_bytes;
        }
        loop {
            self.skip_space();
            if !self.rest().starts_with("var ") {
                break;
            }
            self.word();
            self.expect("$")?;
            let index: usize = self.integer("a variable number")?;
            if index != self.kernel_ref().vars.len() {
                return Err(self.error(format!("expected variable ${} next", self.kernel_ref().vars.len())));
            }
            let name = self.word().to_string();
            self.expect(":")?;
            let ty = self.ty()?;
            let layout = self.layout_suffix(&ty)?;
            self.kernel.as_mut().expect("set").vars.push(VarData { name, ty, layout, annotation: None, span: Span::default() });
        }
        let body = items_until_brace(self, |p| p.stmt())?;
        self.expect("}")?;
        let mut kernel = self.kernel.take().expect("set");
        kernel.body = body;
        Ok(kernel)
    }

    fn param(&mut self) -> R<Param> {
        let name = self.word().to_string();
        if name.is_empty() {
            return Err(self.error("expected a parameter name"));
        }
        self.expect(":")?;
        let kind = if self.eat_word("global") {
            let mutable = self.eat_word("mut");
            let dtype = self.dtype()?;
            let shape = list(self, "[", "]", |p| p.sym_expr())?;
            ParamKind::Global { dtype, shape, mutable }
        } else {
            ParamKind::Scalar(self.dtype()?)
        };
        Ok(Param { name, kind, span: Span::default() })
    }

    fn sym_expr(&mut self) -> R<SymExpr> {
        self.enter()?;
        let e = self.sym_expr_inner();
        self.leave();
        e
    }

    fn sym_expr_inner(&mut self) -> R<SymExpr> {
        self.skip_blanks();
        if self.eat("(") {
            let a = self.sym_expr()?;
            self.skip_blanks();
            let op = self.rest().chars().next().ok_or_else(|| self.error("unexpected end"))?;
            self.at += op.len_utf8();
            let b = self.sym_expr()?;
            self.expect(")")?;
            let (a, b) = (Box::new(a), Box::new(b));
            return Ok(match op {
                '+' => SymExpr::Add(a, b),
                '-' => SymExpr::Sub(a, b),
                '*' => SymExpr::Mul(a, b),
                '/' => SymExpr::Div(a, b),
                '%' => SymExpr::Rem(a, b),
                _ => return Err(self.error(format!("unknown operator `{op}`"))),
            });
        }
        if self.rest().starts_with(|c: char| c.is_ascii_digit() || c == '-') {
            return Ok(SymExpr::Const(self.integer("an integer")?));
        }
        self.skip_blanks();
        let at = self.at;
        let word = self.word();
        match word {
            "cdiv" | "min" | "max" => {
                let args = list(self, "(", ")", |p| p.sym_expr())?;
                let [a, b]: [SymExpr; 2] = args.try_into().map_err(|_| self.error(format!("`{word}` takes two operands")))?;
                let (a, b) = (Box::new(a), Box::new(b));
                Ok(match word {
                    "cdiv" => SymExpr::CeilDiv(a, b),
                    "min" => SymExpr::Min(a, b),
                    _ => SymExpr::Max(a, b),
                })
            }
            name => match self.kernel_ref().params.iter().position(|p| p.name == name) {
                Some(i) => Ok(SymExpr::Param(ParamId(i as u32))),
                None if self.in_params && !name.is_empty() => {
                    // Perhaps a parameter declared later: resolved after the list.
                    self.forward.push(name.to_string());
                    Ok(SymExpr::Param(ParamId(FORWARD.saturating_add(self.forward.len() as u32 - 1))))
                }
                None => {
                    self.at = at;
                    Err(self.error(format!("unknown name `{name}` in a shape expression")))
                }
            },
        }
    }

    fn dims(&mut self) -> R<Vec<usize>> {
        list(self, "[", "]", |p| p.integer("an extent"))
    }

    fn ty(&mut self) -> R<Type> {
        if self.eat("()") {
            return Ok(Type::Unit);
        }
        if self.eat_word("shared") {
            let dtype = self.dtype()?;
            return Ok(Type::Shared { dtype, shape: self.dims()? });
        }
        let dtype = self.dtype()?;
        self.skip_blanks();
        if self.rest().starts_with('[') {
            Ok(Type::Tensor { dtype, shape: self.dims()? })
        } else {
            Ok(Type::Scalar(dtype))
        }
    }

    /// ` @ LAYOUT` after a tensor's type, if there.
    fn layout_suffix(&mut self, ty: &Type) -> R<Option<RegisterLayout>> {
        if !self.eat("@") {
            return Ok(None);
        }
        let Type::Tensor { shape, .. } = ty else { return Err(self.error("only a register tile has a layout")) };
        let at = self.at;
        let layout = self.layout(shape.len())?;
        if layout.shape() != shape.as_slice() {
            self.at = at;
            return Err(self.error(format!("the layout's shape {:?} is not the tile's {shape:?}", layout.shape())));
        }
        Ok(Some(layout))
    }

    /// ` via STRATEGY` and ` shared [OFFSETS]` after an instruction, if there (see `plan`).
    fn plan_suffix(&mut self, op: &Op) -> R<Plan> {
        let strategy = if self.eat_word("via") {
            let name_at = self.at;
            Some(match self.word() {
                "registers" => Strategy::InRegisters,
                "shuffle" => Strategy::Shuffle,
                "staged" => Strategy::Staged,
                "copy" => {
                    let Op::CopyAsync { param, .. } = op else {
                        self.at = name_at;
                        return Err(self.error("`via copy` belongs to a `copy_async`"));
                    };
                    let rank = match &self.kernel_ref().params.get(param.index()).map(|p| &p.kind) {
                        Some(ParamKind::Global { shape, .. }) => shape.len(),
                        _ => return Err(self.error("`copy_async` from a parameter that is not a global tensor")),
                    };
                    self.expect("(")?;
                    let layout = self.layout(rank)?;
                    self.expect(",")?;
                    self.expect_word("run")?;
                    let run = self.integer("a run length")?;
                    self.expect(")")?;
                    Strategy::Copy { layout, run }
                }
                name => {
                    let Some(instruction) = MmaInstruction::ALL.into_iter().find(|m| m.name() == name) else {
                        self.at = name_at;
                        return Err(self.error(format!("unknown strategy `{name}`: expected registers, shuffle, staged, copy or an mma instruction")));
                    };
                    self.expect("(")?;
                    self.expect_word("a")?;
                    self.expect(":")?;
                    let a = self.operand_source()?;
                    self.expect(",")?;
                    self.expect_word("b")?;
                    self.expect(":")?;
                    let b = self.operand_source()?;
                    self.expect(")")?;
                    Strategy::Mma { instruction, a, b }
                }
            })
        } else {
            None
        };
        let offsets = if self.eat_word("shared") { list(self, "[", "]", |p| p.integer("a byte offset"))? } else { Vec::new() };
        Ok((strategy, offsets))
    }

    fn operand_source(&mut self) -> R<OperandSource> {
        self.word_as(
            |w| OperandSource::ALL.into_iter().find(|s| s.name() == w),
            |w| format!("expected `in_place`, `staged` or `registers`, found `{w}`"),
        )
    }

    /// A layout in product form (`local(2, 1) * spatial(8, 4)`) or mode form
    /// (`layout(shape=[..], modes=[..], spatial=[..], local=[..])`).
    fn layout(&mut self, rank: usize) -> R<RegisterLayout> {
        self.skip_blanks();
        if self.rest().starts_with("layout(") {
            return self.mode_form();
        }
        let mut layout = RegisterLayout::unit(rank);
        loop {
            let at = self.at;
            let name = self.word();
            let func = LayoutFunc::from_name(name).ok_or_else(|| {
                self.at = at;
                self.error(format!("expected a layout factor, found `{name}`"))
            })?;
            let args: Vec<usize> = list(self, "(", ")", |p| p.integer("an extent"))?;
            let bad = |p: &Self, e: crate::layout::LayoutError| p.error(format!("invalid layout: {e}"));
            layout = match func {
                LayoutFunc::Local => layout.with_local(&args).map_err(|e| bad(self, e))?,
                LayoutFunc::Spatial => layout.with_spatial(&args).map_err(|e| bad(self, e))?,
                LayoutFunc::Replicate => {
                    let [count] = args[..] else { return Err(self.error("`replicate` takes one count")) };
                    let copies = RegisterLayout::replicate(&vec![1; rank], count).map_err(|e| bad(self, e))?;
                    layout.product(&copies).map_err(|e| bad(self, e))?
                }
                LayoutFunc::ColumnLocal | LayoutFunc::ColumnSpatial => {
                    return Err(self.error(format!("`{name}` does not appear in printed layouts")));
                }
            };
            if !self.eat("*") {
                return Ok(layout);
            }
        }
    }

    fn mode_form(&mut self) -> R<RegisterLayout> {
        self.expect("layout(")?;
        self.expect("shape=")?;
        let shape = self.dims()?;
        self.expect(",")?;
        self.expect("modes=")?;
        let modes = self.dims()?;
        self.expect(",")?;
        self.expect("spatial=")?;
        let spatial = list(self, "[", "]", |p| {
            if p.eat("-") {
                Ok(SpatialEntry::Replicate(p.integer("a replication count")?))
            } else {
                Ok(SpatialEntry::Mode(p.integer("a mode")?))
            }
        })?;
        self.expect(",")?;
        self.expect("local=")?;
        let local = self.dims()?;
        self.expect(")")?;
        // Modes are listed dimension by dimension; each dimension's multiply to its extent.
        let mut dim_modes = vec![Vec::new(); shape.len()];
        let mut modes = modes.into_iter().peekable();
        for (d, &extent) in shape.iter().enumerate() {
            let mut product = 1usize;
            while product < extent {
                let m = modes.next().ok_or_else(|| self.error("the modes do not multiply to the shape"))?;
                product = product.checked_mul(m).ok_or_else(|| self.error("mode sizes overflow"))?;
                dim_modes[d].push(m);
            }
            if product != extent {
                return Err(self.error("the modes do not multiply to the shape"));
            }
        }
        if modes.next().is_some() {
            return Err(self.error("more modes than the shape holds"));
        }
        RegisterLayout::from_modes(&shape, &dim_modes, &spatial, &local).map_err(|e| self.error(format!("invalid layout: {e}")))
    }

    fn value_id(&mut self) -> R<ValueId> {
        self.expect("%")?;
        let n: u32 = self.integer("a value number")?;
        // The arena is as long as the largest number: bound it (a kernel the compiler makes
        // has thousands of values, not hundreds of thousands).
        if n as usize >= MAX_VALUES {
            return Err(self.error(format!("value %{n} is beyond the {MAX_VALUES} values a kernel may have")));
        }
        Ok(ValueId(n))
    }

    fn var_id(&mut self) -> R<VarId> {
        self.expect("$")?;
        let n: u32 = self.integer("a variable number")?;
        if n as usize >= self.kernel_ref().vars.len() {
            return Err(self.error(format!("variable ${n} is not declared")));
        }
        Ok(VarId(n))
    }

    /// Defines value `id`; each is defined once.
    fn define(&mut self, id: ValueId, ty: Type, op: Op, layout: Option<RegisterLayout>, plan: Plan) -> R<()> {
        let values = &mut self.kernel.as_mut().expect("set").values;
        let i = id.index();
        if values.len() <= i {
            // Numbers the text never defines stay placeholders that nothing refers to.
            values.resize(
                i + 1,
                ValueData { ty: Type::Unit, op: Op::LoopIndex, layout: None, annotation: None, strategy: None, shared_offsets: Vec::new(), span: Span::default() },
            );
        } else if values[i].ty != Type::Unit || values[i].op != Op::LoopIndex {
            return Err(self.error(format!("value %{} is defined twice", id.0)));
        }
        let (strategy, shared_offsets) = plan;
        values[i] = ValueData { ty, op, layout, annotation: None, strategy, shared_offsets, span: Span::default() };
        Ok(())
    }

    fn param_index(&mut self) -> R<ParamId> {
        let params = &self.kernel.as_ref().expect("the header is parsed first").params;
        let index = |name: &str| params.iter().position(|p| p.name == name).map(|i| ParamId(i as u32));
        self.cursor.word_as(index, |w| format!("unknown parameter `{w}`"))
    }

    fn ids(&mut self) -> R<Vec<ValueId>> {
        list(self, "[", "]", |p| p.value_id())
    }

    /// A constant of `dtype`: an integer for integer and bool dtypes, an `f64` for floats.
    fn number(&mut self, dtype: Option<DType>) -> R<Number> {
        self.skip_blanks();
        let at = self.at;
        let text = self.number_text();
        let parsed = match dtype {
            Some(d) if d.is_float() => text.parse().ok().map(Number::Float),
            _ => text.parse().ok().map(Number::Int),
        };
        parsed.ok_or_else(|| {
            self.at = at;
            self.error(format!("expected a number, found `{text}`"))
        })
    }

    fn stmt(&mut self) -> R<Stmt> {
        if self.eat("$") {
            self.at -= 1;
            let var = self.var_id()?;
            self.expect("=")?;
            return Ok(Stmt::Assign(var, self.value_id()?));
        }
        if self.rest().starts_with('%') {
            let id = self.value_id()?;
            self.expect(":")?;
            let ty = self.ty()?;
            self.expect("=")?;
            let op = self.op(&ty)?;
            let layout = self.layout_suffix(&ty)?;
            let plan = self.plan_suffix(&op)?;
            self.define(id, ty, op, layout, plan)?;
            return Ok(Stmt::Eval(id));
        }
        let at = self.at;
        match self.word() {
            "for" => {
                let index = self.value_id()?;
                self.expect_word("in")?;
                let start = self.value_id()?;
                self.expect("..")?;
                let end = self.value_id()?;
                self.define(index, Type::Scalar(DType::I32), Op::LoopIndex, None, (None, Vec::new()))?;
                let body = braced(self, |p| p.stmt())?;
                Ok(Stmt::For { index, start, end, body })
            }
            "if" => {
                let cond = self.value_id()?;
                let then_body = braced(self, |p| p.stmt())?;
                let else_body = if self.eat("else") { braced(self, |p| p.stmt())? } else { Vec::new() };
                Ok(Stmt::If { cond, then_body, else_body })
            }
            _ => {
                // An instruction that produces nothing (its value has type `()`); it takes the
                // next free number, as the compiler gives it one.
                self.at = at;
                let op = self.op(&Type::Unit)?;
                let plan = self.plan_suffix(&op)?;
                let id = ValueId(self.next_unit);
                self.next_unit += 1;
                self.define(id, Type::Unit, op, None, plan)?;
                Ok(Stmt::Eval(id))
            }
        }
    }

    fn op(&mut self, ty: &Type) -> R<Op> {
        self.skip_blanks();
        let at = self.at;
        let word = self.word();
        let one = |p: &mut Self| p.value_id();
        let two = |p: &mut Self| -> R<(ValueId, ValueId)> {
            let a = p.value_id()?;
            p.expect(",")?;
            Ok((a, p.value_id()?))
        };
        Ok(match word {
            "const" => Op::Const(self.number(ty.dtype())?),
            "param" => Op::Param(self.param_index()?),
            "block_idx.x" => Op::BlockIdx(0),
            "block_idx.y" => Op::BlockIdx(1),
            "block_idx.z" => Op::BlockIdx(2),
            "loop_index" => Op::LoopIndex,
            "read" => Op::ReadVar(self.var_id()?),
            "cast" => Op::Cast(one(self)?),
            "view" => Op::View(one(self)?),
            "reshape" => Op::Reshape(one(self)?),
            "splat" => Op::Splat(one(self)?),
            "to_scalar" => Op::ToScalar(one(self)?),
            "iota" => {
                self.expect_word("dim")?;
                Op::Iota { dim: self.integer("a dimension")? }
            }
            "broadcast" => Op::Broadcast(one(self)?),
            "permute" => {
                let value = one(self)?;
                self.expect(",")?;
                Op::Permute { value, perm: self.dims()? }
            }
            "load" => {
                let param = self.param_index()?;
                let offsets = self.ids()?;
                self.expect_word("pad")?;
                Op::Load { param, offsets, pad: self.number(ty.dtype())? }
            }
            "store" | "atomic_add" => {
                let param = self.param_index()?;
                let offsets = self.ids()?;
                self.expect(",")?;
                let value = one(self)?;
                if word == "store" { Op::Store { param, value, offsets } } else { Op::AtomicAdd { param, value, offsets } }
            }
            "shared_alloc" => Op::SharedAlloc,
            "load_shared" => {
                let shared = one(self)?;
                Op::LoadShared { shared, offsets: self.ids()? }
            }
            "store_shared" => {
                let shared = one(self)?;
                let offsets = self.ids()?;
                self.expect(",")?;
                Op::StoreShared { shared, value: one(self)?, offsets }
            }
            "copy_async" => {
                let shared = one(self)?;
                let dst_offsets = self.ids()?;
                self.expect(",")?;
                let param = self.param_index()?;
                Op::CopyAsync { shared, dst_offsets, param, src_offsets: self.ids()? }
            }
            "commit" => Op::Commit,
            "wait" => Op::Wait(self.integer("a group count")?),
            "sync" => Op::Sync,
            "print" => {
                let value = one(self)?;
                self.skip_blanks();
                Op::Print { value, label: self.string()? }
            }
            "dot" => {
                let (a, b) = two(self)?;
                self.expect(",")?;
                Op::Dot { a, b, c: one(self)? }
            }
            "select" => {
                let (cond, a) = two(self)?;
                self.expect(",")?;
                Op::Select { cond, a, b: one(self)? }
            }
            w if w.starts_with("reduce_") => {
                let op = ReduceOp::ALL.into_iter().find(|r| r.name() == &w["reduce_".len()..]).ok_or_else(|| self.error(format!("unknown reduction `{w}`")))?;
                let value = one(self)?;
                self.expect(",")?;
                self.expect_word("dim")?;
                Op::Reduce { op, value, dim: self.integer("a dimension")? }
            }
            w => {
                if let Some(u) = UnaryOp::ALL.into_iter().find(|u| u.name() == w) {
                    Op::Unary(u, one(self)?)
                } else if let Some(b) = BinaryOp::ALL.into_iter().find(|b| b.name() == w) {
                    let (x, y) = two(self)?;
                    Op::Binary(b, x, y)
                } else {
                    self.at = at;
                    return Err(self.error(format!("expected an operation, found `{w}`")));
                }
            }
        })
    }

}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::print::kernel_to_string;

    const TEXT: &str = "kernel k<BM = 16, W: dtype = u4>(x: global f16[n, (n * 2)], n: i32, y: global mut f32[cdiv(n, 16), max(n, 1)])
    grid(cdiv(n, 16), (n - 1), 1) warps(2) {
  var $0 acc: f32[16, 8] @ spatial(8, 4) * local(2, 2)
  %0: i32 = block_idx.x
  %1: i32 = const 16
  %2: i32 = mul %0, %1
  %3: f16[16, 8] = load x[%2, %2] pad -inf @ local(2, 1) * spatial(8, 4) * local(1, 2)
  %4: f32[16, 8] = cast %3 @ spatial(8, 4) * local(2, 2)
  $0 = %4
  %5: shared f32[2, 16, 8] = shared_alloc
  for %6 in %0 .. %1 {
    %7: f32[16, 8] = read $0 @ spatial(8, 4) * local(2, 2)
    %8: f32[16, 1] = reduce_max %7, dim 1 @ spatial(8, 1) * replicate(4) * local(2, 1)
    %9: bool = lt %6, %1
    if %9 {
      store_shared %5[%6, %0, %0], %7
      sync
    } else {
      print %8 \"row \\\"max\\\"\"
    }
  }
  store y[%0, %0], %4
}
";

    #[test]
    fn a_kernel_prints_and_parses_back() {
        let kernel = parse(TEXT).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kernel_to_string(&kernel), TEXT);
        assert_eq!(kernel.dtype_params, vec![("W".to_string(), DType::U4)]);
        assert_eq!(kernel.params[0].kind, ParamKind::Global { dtype: DType::F16, shape: vec![SymExpr::Param(ParamId(1)), SymExpr::Mul(Box::new(SymExpr::Param(ParamId(1))), Box::new(SymExpr::Const(2)))], mutable: false });
        assert_eq!(kernel.value(ValueId(3)).op, Op::Load { param: ParamId(0), offsets: vec![ValueId(2), ValueId(2)], pad: Number::Float(f64::NEG_INFINITY) });
        // The instructions without a printed number take numbers after the printed ones.
        let Stmt::Eval(last) = kernel.body.last().unwrap() else { panic!() };
        assert!(last.0 > 9);
    }

    #[test]
    fn the_verifier_reports_values_outside_the_arena_without_a_panic() {
        // Found by fuzzing: an assignment of, and a loop over, values the text never defines.
        let text = "kernel k<>(n: i32) grid(1, 1, 1) warps(1) {\n  var $0 acc: f32\n  for %30 in %28 .. %8 {\n    $0 = %65\n  }\n}\n";
        let kernel = parse(text).unwrap_or_else(|e| panic!("{e}"));
        let errors = crate::ir::verify::verify(&kernel, false).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("uses %65 before its definition")) && errors.iter().any(|e| e.contains("uses %28")), "{errors:?}");
    }

    #[test]
    fn layouts_parse_in_both_forms() {
        let layouts = [
            RegisterLayout::spatial(&[8, 4]).unwrap().with_local(&[2, 2]).unwrap(),
            RegisterLayout::local(&[2, 1]).unwrap().with_spatial(&[8, 4]).unwrap().product(&RegisterLayout::replicate(&[1, 1], 2).unwrap()).unwrap(),
        ];
        for layout in layouts {
            for text in [layout.readable(), layout.to_string()] {
                let mut p = Parser { cursor: Cursor::new(&text), kernel: None, next_unit: 0, in_params: false, forward: Vec::new() };
                assert_eq!(p.layout(2).unwrap_or_else(|e| panic!("{text}: {e}")), layout, "{text}");
            }
        }
    }

    #[test]
    fn malformed_text_is_an_error_at_its_place() {
        let header = "kernel k<>(n: i32) grid(1, 1, 1) warps(1) {\n";
        let cases = [
            ("", "1:1: expected `kernel NAME<...>(...)`"),
            ("kernel k<>(n: q7) grid(1, 1, 1) warps(1) {\n}\n", "1:15: unknown dtype `q7`"),
            ("kernel k<>(n: i32) grid(m, 1, 1) warps(1) {\n}\n", "unknown name `m` in a shape expression"),
            ("kernel k<>(n: i32) grid(1, 1) warps(1) {\n}\n", "a grid has three extents"),
            ("kernel k<>(x: global f32[m], n: i32) grid(1, 1, 1) warps(1) {\n}\n", "unknown name `m` in the shape of `x`"),
            (&format!("{header}  %0: i32 = frob %1\n}}\n"), "2:13: expected an operation, found `frob`"),
            (&format!("{header}  %0: i32 = const 1\n  %0: i32 = const 2\n}}\n"), "value %0 is defined twice"),
            (&format!("{header}  %0: f32[4] = const 1.0 @ spatial(8)\n}}\n"), "is not the tile's [4]"),
            (&format!("{header}  $3 = %0\n}}\n"), "variable $3 is not declared"),
            (&format!("{header}  if %0 {{\n"), "expected `}`"),
            (&format!("{header}  %99999999999: i32 = const 1\n}}\n"), "expected a value number"),
            (&format!("{header}  %4194305: i32 = const 1\n}}\n"), "beyond the 262144 values"),
        ];
        for (text, expected) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.to_string().contains(expected), "{text:?}: `{e}` should contain `{expected}`");
        }
        // A huge value number must not size the arena of the instructions printed without one
        // (found by fuzzing: 64 million placeholder values).
        let huge = format!("{header}  %0: i32 = const 1\n  sync\n  %1: i32 = neg %64444445\n}}\n");
        assert!(parse(&huge).unwrap_err().message.contains("beyond the 262144 values"));
        let deep = format!("kernel k<>(n: i32) grid({}1{}, 1, 1) warps(1) {{\n}}\n", "(n + ".repeat(5000), ")".repeat(5000));
        assert!(parse(&deep).unwrap_err().message.contains("too deep"));
    }
}
