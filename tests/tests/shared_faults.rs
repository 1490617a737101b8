//! Mistakes with shared tensors are errors on every CPU backend, whatever the layouts: the VM
//! (block-level semantics) and the simulator (the lowered per-thread code) both report a tile
//! that reaches outside its shared tensor, even where the bytes would still lie inside the
//! shared buffer, and a read of elements nothing wrote, each at the source line.

use tl_runtime::{Backend, Module};

/// Runs `body` (statements of a kernel with a `shared<f32>([2, 32])` tensor `s`, an input `x`
/// of 64 f32 and an output `out` of 32 f32) on both CPU backends; returns their errors.
fn errors(body: &str, warps: u32) -> Vec<(Backend, String)> {
    let source = format!(
        "kernel k(x: global f32[64], out: global mut f32[32]) grid(1) warps({warps}) {{\n    let s = shared<f32>([2, 32]);\n{body}}}\n"
    );
    let module = Module::from_source("shared.tl", &source).unwrap_or_else(|e| panic!("{source}\n{e}"));
    let kernel = module.kernel(None, &[]).unwrap_or_else(|e| panic!("{source}\n{e}"));
    let mut out = Vec::new();
    for backend in [Backend::Vm, Backend::Simt] {
        let mut args = kernel.random_args(3, &[]).unwrap();
        match kernel.launch(backend, &mut args) {
            Ok(_) => out.push((backend, String::new())),
            Err(e) => out.push((backend, e.to_string())),
        }
    }
    out
}

#[test]
fn a_tile_outside_its_shared_tensor_is_an_error_on_both_backends() {
    // Row 0, columns 32..64: past the end of the row, though still inside the buffer (row 1).
    let reads = "    store(s, load(x, [0], [32]), [0, 0]);\n    store(s, load(x, [32], [32]), [1, 0]);\n    sync();\n    let c = 32;\n    store(out, load(s, [0, c], [32]), [0]);\n";
    for warps in [1, 2] {
        for (backend, e) in errors(reads, warps) {
            assert!(e.contains("outside") && e.contains("shared.tl:7:"), "{}, warps {warps}: {e}", backend.name());
        }
    }
    // A store into row 2 of a tensor of 2 rows, and a copy into it.
    let store = "    let r = 2;\n    store(s, load(x, [0], [32]), [r, 0]);\n";
    for (backend, e) in errors(store, 1) {
        assert!(e.contains("outside") && e.contains("shared.tl:4:"), "{}: {e}", backend.name());
    }
    let copy = "    let r = 3;\n    copy_async(s, [r], x, [0]);\n    commit();\n    wait(0);\n";
    for (backend, e) in errors(copy, 1) {
        assert!(e.contains("outside") && e.contains("shared.tl:4:"), "{}: {e}", backend.name());
    }
    // Inside: no error.
    let fine = "    let r = 1;\n    store(s, load(x, [0], [32]), [r, 0]);\n    sync();\n    store(out, load(s, [r, 0], [32]), [0]);\n";
    for (backend, e) in errors(fine, 2) {
        assert!(e.is_empty(), "{}: {e}", backend.name());
    }
}

#[test]
fn reading_shared_elements_nothing_wrote_is_an_error_on_both_backends() {
    // Row 0 written, row 1 read: with one warp and with two (other layouts, other threads).
    let body = "    store(s, load(x, [0], [32]), [0, 0]);\n    sync();\n    store(out, load(s, [1, 0], [32]), [0]);\n";
    for warps in [1, 2, 4] {
        for (backend, e) in errors(body, warps) {
            assert!(!e.is_empty(), "{}, warps {warps}: no error", backend.name());
            assert!((e.contains("before anything writes it") || e.contains("which nothing in block")) && e.contains("shared.tl:5:"), "{}, warps {warps}: {e}", backend.name());
        }
    }
}

#[test]
fn a_missing_wait_is_an_error_in_the_vm_whichever_copy_path_the_lowering_takes() {
    // Offset 1 (rows not 16-byte aligned: element copies) and offset 0 (cp.async): the VM
    // reports the read of a tile still in flight either way; a missing `sync()` after a
    // `wait` too.
    for offset in [0, 1] {
        let body = format!("    let o = {offset};\n    copy_async(s, [0], x, [o]);\n    commit();\n    sync();\n    store(out, load(s, [0, 0], [32]), [0]);\n");
        let (backend, e) = &errors(&body, 1)[0];
        assert_eq!(*backend, Backend::Vm);
        assert!(e.contains("still in flight") && e.contains("shared.tl:7:"), "offset {offset}: {e}");
        let body = format!("    let o = {offset};\n    copy_async(s, [0], x, [o]);\n    commit();\n    wait(0);\n    store(out, load(s, [0, 0], [32]), [0]);\n");
        let (_, e) = &errors(&body, 2)[0];
        assert!(e.contains("no `sync()` in between") && e.contains("shared.tl:7:"), "offset {offset}: {e}");
    }
}
