//! The block-IR verifier. It runs after sema and after every pass in debug builds and tests.
//!
//! It checks: every operand is defined earlier in the same or an enclosing block; every value is
//! defined once; operand types follow each op's rule (see `Op`); loads and stores name global
//! tensor parameters of matching rank; assignments match the variable's type; `for` bounds are
//! i32 scalars and `if` conditions bool scalars; once layouts are assigned, every tensor value
//! and variable has a layout whose shape is the tensor's shape and whose thread count is the
//! kernel's.

use super::*;
use std::collections::HashSet;

pub struct Verifier<'k> {
    kernel: &'k Kernel,
    defined: Vec<HashSet<ValueId>>,
    ever_defined: HashSet<ValueId>,
    errors: Vec<String>,
    require_layouts: bool,
}

/// Verifies a kernel; `require_layouts` also checks that layouts are assigned and consistent.
pub fn verify(kernel: &Kernel, require_layouts: bool) -> Result<(), Vec<String>> {
    let mut v = Verifier {
        kernel,
        defined: vec![HashSet::new()],
        ever_defined: HashSet::new(),
        errors: Vec::new(),
        require_layouts,
    };
    v.block(&kernel.body);
    if require_layouts {
        for (i, var) in kernel.vars.iter().enumerate() {
            v.check_layout(&format!("${i}"), &var.ty, var.layout.as_ref());
        }
    }
    if v.errors.is_empty() { Ok(()) } else { Err(v.errors) }
}

impl Verifier<'_> {
    fn err(&mut self, msg: String) {
        self.errors.push(msg);
    }

    fn is_defined(&self, id: ValueId) -> bool {
        self.defined.iter().any(|s| s.contains(&id))
    }

    fn define(&mut self, id: ValueId) {
        if id.index() >= self.kernel.values.len() {
            self.err(format!("%{} is not in the value arena", id.0));
            return;
        }
        if !self.ever_defined.insert(id) {
            self.err(format!("%{} is defined twice", id.0));
        }
        self.defined.last_mut().expect("scope").insert(id);
    }

    fn ty(&self, id: ValueId) -> &Type {
        &self.kernel.value(id).ty
    }

    fn use_value(&mut self, user: ValueId, id: ValueId) {
        if id.index() >= self.kernel.values.len() || !self.is_defined(id) {
            self.err(format!("%{} uses %{} before its definition", user.0, id.0));
        }
    }

    fn scalar_of(&mut self, user: ValueId, id: ValueId, dtype: DType) {
        if id.index() < self.kernel.values.len() && *self.ty(id) != Type::Scalar(dtype) {
            self.err(format!("%{}: operand %{} must be a {dtype} scalar", user.0, id.0));
        }
    }

    fn block(&mut self, body: &[Stmt]) {
        for stmt in body {
            match stmt {
                Stmt::Eval(id) => {
                    if id.index() >= self.kernel.values.len() {
                        self.err(format!("%{} is not in the value arena", id.0));
                        continue;
                    }
                    for operand in operands(&self.kernel.value(*id).op) {
                        self.use_value(*id, operand);
                    }
                    if matches!(self.kernel.value(*id).op, Op::LoopIndex) {
                        self.err(format!("%{} is a loop index outside a `for` header", id.0));
                    }
                    self.check_op(*id);
                    self.define(*id);
                }
                Stmt::Assign(var, value) => {
                    if var.index() >= self.kernel.vars.len() {
                        self.err(format!("${} is not a variable", var.0));
                        continue;
                    }
                    self.use_value(*value, *value);
                    if value.index() < self.kernel.values.len() && self.kernel.var(*var).ty != *self.ty(*value) {
                        self.err(format!("${} is assigned %{} of another type", var.0, value.0));
                    }
                }
                Stmt::For { index, start, end, body } => {
                    self.use_value(*index, *start);
                    self.use_value(*index, *end);
                    self.scalar_of(*index, *start, DType::I32);
                    self.scalar_of(*index, *end, DType::I32);
                    self.defined.push(HashSet::new());
                    self.define(*index);
                    if index.index() < self.kernel.values.len() && *self.ty(*index) != Type::Scalar(DType::I32) {
                        self.err(format!("loop index %{} must be i32", index.0));
                    }
                    self.block(body);
                    self.defined.pop();
                }
                Stmt::If { cond, then_body, else_body } => {
                    self.use_value(*cond, *cond);
                    self.scalar_of(*cond, *cond, DType::Bool);
                    self.defined.push(HashSet::new());
                    self.block(then_body);
                    self.defined.pop();
                    self.defined.push(HashSet::new());
                    self.block(else_body);
                    self.defined.pop();
                }
            }
        }
    }

    fn check_layout(&mut self, what: &str, ty: &Type, layout: Option<&RegisterLayout>) {
        let Type::Tensor { shape, .. } = ty else { return };
        match layout {
            None => self.err(format!("{what} has no layout")),
            Some(l) => {
                if l.shape() != *shape {
                    self.err(format!("{what}: layout {l} does not cover shape {shape:?}"));
                }
                if l.num_threads() != self.kernel.num_threads() {
                    self.err(format!(
                        "{what}: layout {l} spans {} threads, the block has {}",
                        l.num_threads(),
                        self.kernel.num_threads()
                    ));
                }
            }
        }
    }

    fn check_op(&mut self, id: ValueId) {
        let data = self.kernel.value(id);
        let ty = data.ty.clone();
        if self.require_layouts {
            self.check_layout(&format!("%{}", id.0), &ty, data.layout.as_ref());
        }
        let k = self.kernel;
        let in_range = |v: &ValueId| v.index() < k.values.len();
        if !operands(&data.op).iter().all(in_range) {
            return; // already reported
        }
        match &data.op {
            Op::Const(_) | Op::BlockIdx(_) => {
                if !ty.is_scalar() {
                    self.err(format!("%{}: constants and block indices are scalars", id.0));
                }
            }
            Op::Param(i) => match k.get_param(*i).map(|p| &p.kind) {
                Some(ParamKind::Scalar(d)) if ty == Type::Scalar(*d) => {}
                _ => self.err(format!("%{}: param {i} is not a scalar of this type", id.0)),
            },
            Op::LoopIndex => {}
            Op::ReadVar(var) => {
                if var.index() >= k.vars.len() || k.var(*var).ty != ty {
                    self.err(format!("%{}: reads ${} of another type", id.0, var.0));
                }
            }
            Op::Unary(u, a) => {
                let a_ty = self.ty(*a).clone();
                if a_ty != ty {
                    self.err(format!("%{}: {} changes the type", id.0, u.name()));
                }
                if u.needs_float() && !a_ty.dtype().is_some_and(DType::is_float) {
                    self.err(format!("%{}: {} needs a float operand", id.0, u.name()));
                }
            }
            Op::Binary(b, x, y) => {
                let (xt, yt) = (self.ty(*x).clone(), self.ty(*y).clone());
                if xt != yt {
                    self.err(format!("%{}: {} operands differ in type", id.0, b.name()));
                }
                let operand_ok = match (b, xt.dtype()) {
                    (BinaryOp::And | BinaryOp::Or | BinaryOp::Xor, Some(d)) => d.is_int() || d == DType::Bool,
                    (BinaryOp::Shl | BinaryOp::Shr, Some(d)) => d.is_int(),
                    (BinaryOp::Pow | BinaryOp::PowApprox, Some(d)) => d.is_float(),
                    _ => true,
                };
                if !operand_ok {
                    let kind = if matches!(b, BinaryOp::Pow | BinaryOp::PowApprox) { "float" } else { "integer" };
                    self.err(format!("%{}: {} needs {kind} operands", id.0, b.name()));
                }
                let want_dtype = if b.is_comparison() { Some(DType::Bool) } else { xt.dtype() };
                if ty.dtype() != want_dtype || ty.shape() != xt.shape() {
                    self.err(format!("%{}: {} result type is wrong", id.0, b.name()));
                }
            }
            Op::Cast(a) => {
                if self.ty(*a).shape() != ty.shape() || self.ty(*a).is_scalar() != ty.is_scalar() {
                    self.err(format!("%{}: cast changes the shape", id.0));
                }
            }
            Op::Splat(a) => {
                if !self.ty(*a).is_scalar() || self.ty(*a).dtype() != ty.dtype() {
                    self.err(format!("%{}: splat needs a scalar of the same dtype", id.0));
                }
            }
            Op::ToScalar(a) => {
                let one_element = self.ty(*a).shape().is_some_and(|s| s.iter().all(|&e| e == 1));
                if !one_element || !ty.is_scalar() || self.ty(*a).dtype() != ty.dtype() {
                    self.err(format!("%{}: to_scalar needs a one-element tile of the result's dtype", id.0));
                }
            }
            Op::Iota { dim } => {
                let fits = match (ty.shape(), ty.dtype()) {
                    (Some(shape), Some(d)) if *dim < shape.len() && d != DType::Bool => {
                        // Integer indices must be exact in the dtype.
                        !d.is_int() || d.int_range().is_some_and(|(_, hi)| (shape[*dim] as i128) <= hi + 1)
                    }
                    _ => false,
                };
                if !fits {
                    self.err(format!("%{}: iota needs a numeric tile with dimension {dim} whose indices fit its dtype", id.0));
                }
            }
            Op::Permute { value, perm } => {
                let vt = self.ty(*value).clone();
                let ok = match (vt.shape(), ty.shape()) {
                    (Some(from), Some(to)) => {
                        let mut seen = perm.clone();
                        seen.sort();
                        seen == (0..from.len()).collect::<Vec<_>>()
                            && to.len() == from.len()
                            && perm.iter().enumerate().all(|(i, &p)| to[i] == from[p])
                    }
                    _ => false,
                };
                if !ok || vt.dtype() != ty.dtype() {
                    self.err(format!("%{}: permute shapes are wrong", id.0));
                }
            }
            Op::Reshape(a) => {
                let at = self.ty(*a).clone();
                if !matches!((&at, &ty), (Type::Tensor { .. }, Type::Tensor { .. })) || at.num_elements() != ty.num_elements() || at.dtype() != ty.dtype() {
                    self.err(format!("%{}: reshape changes the element count or dtype", id.0));
                }
            }
            Op::Broadcast(a) => {
                let ok = match (self.ty(*a).shape(), ty.shape()) {
                    (Some(from), Some(to)) => {
                        from.len() == to.len()
                            && from.iter().zip(to).all(|(f, t)| f == t || *f == 1)
                    }
                    _ => false,
                };
                if !ok || self.ty(*a).dtype() != ty.dtype() {
                    self.err(format!("%{}: broadcast shapes are incompatible", id.0));
                }
            }
            Op::Load { param, offsets, .. } => {
                let offsets = offsets.clone();
                self.check_access(id, *param, &offsets, ty.dtype(), ty.shape(), false);
            }
            Op::Store { param, value, offsets } => {
                let vt = self.ty(*value).clone();
                let offsets = offsets.clone();
                self.check_access(id, *param, &offsets, vt.dtype(), vt.shape(), true);
            }
            Op::AtomicAdd { param, value, offsets } => {
                let vt = self.ty(*value).clone();
                let offsets = offsets.clone();
                self.check_access(id, *param, &offsets, vt.dtype(), vt.shape(), true);
                if !vt.dtype().is_some_and(|d| ATOMIC_ADD_DTYPES.contains(&d)) {
                    self.err(format!("%{}: atomic_add of a dtype without an atomic addition", id.0));
                }
            }
            Op::SharedAlloc => {
                if !matches!(&ty, Type::Shared { shape, .. } if !shape.is_empty()) {
                    self.err(format!("%{}: shared_alloc must have a shared tensor type", id.0));
                }
            }
            Op::LoadShared { shared, offsets } => {
                let offsets = offsets.clone();
                self.check_shared_access(id, *shared, &offsets, &ty);
            }
            Op::StoreShared { shared, value, offsets } => {
                let vt = self.ty(*value).clone();
                let offsets = offsets.clone();
                self.check_shared_access(id, *shared, &offsets, &vt);
            }
            Op::CopyAsync { shared, dst_offsets, param, src_offsets } => {
                let st = self.ty(*shared).clone();
                let Type::Shared { dtype, shape } = &st else {
                    self.err(format!("%{}: copy_async into a value that is not a shared tensor", id.0));
                    return;
                };
                match k.get_param(*param).map(|p| &p.kind) {
                    Some(ParamKind::Global { dtype: gd, shape: gs, .. })
                        if gd == dtype && gs.len() <= shape.len() && src_offsets.len() == gs.len() && dst_offsets.len() == shape.len() - gs.len() => {}
                    _ => self.err(format!("%{}: copy_async source or offsets do not match the shared tensor", id.0)),
                }
                for o in dst_offsets.iter().chain(src_offsets) {
                    self.scalar_of(id, *o, DType::I32);
                }
            }
            Op::Print { value, .. } => {
                if !matches!(self.ty(*value), Type::Scalar(_) | Type::Tensor { .. }) || ty != Type::Unit {
                    self.err(format!("%{}: print takes a scalar or a tile and produces nothing", id.0));
                }
            }
            Op::Commit | Op::Wait(_) | Op::Sync => {
                if ty != Type::Unit {
                    self.err(format!("%{}: commit, wait and sync produce nothing", id.0));
                }
            }
            Op::Dot { a, b, c } => {
                let (at, bt, ct) = (self.ty(*a).clone(), self.ty(*b).clone(), self.ty(*c).clone());
                let ok = match (at.shape(), bt.shape(), ct.shape()) {
                    (Some([m, ka]), Some([kb, n]), Some([mc, nc])) => {
                        m == mc && n == nc && ka == kb
                    }
                    _ => false,
                };
                if !ok || ct != ty || at.dtype() != bt.dtype() {
                    self.err(format!("%{}: dot operand shapes or types are wrong", id.0));
                }
            }
            Op::Reduce { value, dim, .. } => {
                let vt = self.ty(*value).clone();
                let ok = match (vt.shape(), ty.shape()) {
                    (Some(from), Some(to)) => {
                        *dim < from.len()
                            && to.len() == from.len()
                            && to[*dim] == 1
                            && from.iter().zip(to).enumerate().all(|(d, (f, t))| d == *dim || f == t)
                    }
                    _ => false,
                };
                if !ok || vt.dtype() != ty.dtype() {
                    self.err(format!("%{}: reduce shapes are wrong", id.0));
                }
            }
            Op::View(a) => {
                let at = self.ty(*a).clone();
                let bits = |t: &Type| t.dtype().map(|d| d.bits() as usize * t.num_elements());
                let ok = matches!((&at, &ty), (Type::Tensor { shape: s, .. }, Type::Tensor { shape: r, .. })
                    if s.len() == r.len() && s[..s.len() - 1] == r[..r.len() - 1])
                    && bits(&at) == bits(&ty)
                    && at.dtype().is_some_and(|d| d != DType::Bool)
                    && ty.dtype().is_some_and(|d| d != DType::Bool);
                if !ok {
                    self.err(format!("%{}: view changes more than the dtype and the last dimension", id.0));
                }
            }
            Op::Select { cond, a, b } => {
                let (ct, at, bt) = (self.ty(*cond).clone(), self.ty(*a).clone(), self.ty(*b).clone());
                if at != bt || at != ty || ct.dtype() != Some(DType::Bool) || ct.shape() != ty.shape() {
                    self.err(format!("%{}: select operand types are wrong", id.0));
                }
            }
        }
    }

    /// A tile `tile` at `offsets` of shared tensor `shared`: same dtype, rank at most the shared
    /// tensor's, one i32 offset per shared dim.
    fn check_shared_access(&mut self, id: ValueId, shared: ValueId, offsets: &[ValueId], tile: &Type) {
        let Type::Shared { dtype, shape } = self.ty(shared).clone() else {
            self.err(format!("%{}: %{} is not a shared tensor", id.0, shared.0));
            return;
        };
        match tile {
            Type::Tensor { dtype: d, shape: s } if *d == dtype && s.len() <= shape.len() && offsets.len() == shape.len() => {
                let trailing = &shape[shape.len() - s.len()..];
                if s.iter().zip(trailing).any(|(t, e)| t > e) {
                    self.err(format!("%{}: tile {s:?} is larger than shared tensor {shape:?}", id.0));
                }
            }
            _ => self.err(format!("%{}: tile dtype or rank does not match shared tensor %{}", id.0, shared.0)),
        }
        for o in offsets {
            self.scalar_of(id, *o, DType::I32);
        }
    }

    fn check_access(
        &mut self,
        id: ValueId,
        param: ParamId,
        offsets: &[ValueId],
        dtype: Option<DType>,
        tile: Option<&[usize]>,
        is_store: bool,
    ) {
        let rank = tile.map(|t| t.len());
        let Some(ParamKind::Global { dtype: pd, shape, mutable }) =
            self.kernel.get_param(param).map(|p| &p.kind)
        else {
            self.err(format!("%{}: param {param} is not a global tensor", id.0));
            return;
        };
        if Some(*pd) != dtype || rank != Some(shape.len()) || offsets.len() != shape.len() {
            self.err(format!("%{}: tile dtype or rank does not match the tensor", id.0));
        }
        if is_store && !mutable {
            self.err(format!("%{}: store into a tensor that is not `mut`", id.0));
        }
        for o in offsets {
            // An index tile (a gather or scatter) has the tile's shape and i32 or i64 indices.
            match (o.index() < self.kernel.values.len()).then(|| self.ty(*o).clone()) {
                Some(Type::Tensor { dtype, shape }) => {
                    if !matches!(dtype, DType::I32 | DType::I64) || Some(shape.as_slice()) != tile {
                        self.err(format!("%{}: index tile %{} must be i32 or i64 of the tile's shape", id.0, o.0));
                    }
                }
                _ => self.scalar_of(id, *o, DType::I32),
            }
        }
    }
}
