//! Shared-memory planning: places every piece of shared memory the block uses and records the
//! places on the IR (`ValueData::shared_offsets`, `Kernel::shared_bytes`; see `ir::plan`).
//!
//! Expects a verified kernel with layouts and strategies (after `select_instructions`).
//! Places, in bytes from the start of the shared buffer, each piece 16-byte aligned (the
//! widest access, a 16-byte `cp.async` or vector access, needs it):
//! * the shared tensors, one after another in the order they are declared, dense (packed for
//!   formats narrower than a byte: `ir::shared_tensor_bytes`);
//! * after them, the scratch space of every instruction whose strategy stages operands: its
//!   staged operands one after another (`plan::staged_bytes`). Every staging instruction starts
//!   at the same place: the lowering puts a barrier after each one's last read, so the next
//!   one may reuse the space.
//!
//! Guarantees: the plan passes `plan::verify_plan`, or the kernel needs more than
//! `plan::MAX_SHARED_BYTES` and the diagnostic is at the statement that needs the most (the
//! staging instruction whose scratch space reaches furthest, or the shared tensor that crosses
//! the limit).

use crate::diagnostics::Diagnostic;
use crate::ir::plan::{self, MAX_SHARED_BYTES};
use crate::ir::{self, Kernel, Op, Type, ValueId};

pub fn plan_shared_memory(kernel: &mut Kernel) -> Vec<Diagnostic> {
    let mut offset = 0usize;
    let mut crossing = None;
    for data in &mut kernel.values {
        if let (Op::SharedAlloc, Type::Shared { dtype, shape }) = (&data.op, &data.ty) {
            data.shared_offsets = vec![offset];
            offset = offset.saturating_add(ir::shared_tensor_bytes(*dtype, shape).unwrap_or(usize::MAX));
            if offset > MAX_SHARED_BYTES && crossing.is_none() {
                crossing = Some(data.span);
            }
        }
    }
    let tensors = offset;
    let mut total = tensors;
    let mut widest = None;
    for i in 0..kernel.values.len() {
        let id = ValueId(i as u32);
        let Some(strategy) = &kernel.value(id).strategy else { continue };
        let mut offsets = Vec::new();
        let mut end = tensors;
        for operand in plan::staged_operands(kernel, id, strategy) {
            offsets.push(end);
            end = end.saturating_add(plan::staged_bytes(kernel, operand));
        }
        if end > total {
            total = end;
            widest = Some(id);
        }
        kernel.values[i].shared_offsets = offsets;
    }
    kernel.shared_bytes = Some(total);
    if total <= MAX_SHARED_BYTES {
        return Vec::new();
    }
    let message = format!(
        "kernel `{}` needs {total} bytes of shared memory ({tensors} for its shared tensors, the rest to move tiles between threads), more than the {MAX_SHARED_BYTES} bytes available to a block; use smaller tiles or fewer stages",
        kernel.name
    );
    let diagnostic = match (crossing, widest) {
        (Some(span), _) => Diagnostic::error(message, span).with_note("the shared tensors up to this one already exceed the limit"),
        (None, Some(id)) => {
            let data = kernel.value(id);
            let staged = total - tensors;
            let tiles: Vec<String> = data
                .strategy
                .as_ref()
                .map(|s| plan::staged_operands(kernel, id, s))
                .unwrap_or_default()
                .into_iter()
                .map(|v| ir::print::type_str(&kernel.value(v).ty))
                .collect();
            Diagnostic::error(message, data.span).with_note(format!(
                "this instruction moves its {} tile{} between threads through {staged} bytes of shared memory, the most of any instruction",
                tiles.join(" and "),
                if tiles.len() == 1 { "" } else { "s" }
            ))
        }
        (None, None) => Diagnostic::error_nowhere(message),
    };
    vec![diagnostic]
}
