//! The generated code of this program's kernels, snapshot-tested with
//! `tl_runtime::assert_kernel_snapshots!`: a compiler that makes different code fails here
//! until the change is accepted (`INSTA_UPDATE=always cargo test -p tl-embed-app`, or
//! `cargo insta review`).

use tl_runtime::{Arch, assert_kernel_snapshots};

#[test]
fn saxpy_generated_code() {
    let kernel = tl_embed_app::saxpy(256).unwrap();
    assert_kernel_snapshots!(kernel);
    // The variant for n a multiple of 4 (vector loads), for Hopper.
    let n4 = kernel.assumptions(&["n%4".to_string()]).unwrap();
    assert_kernel_snapshots!(kernel, &n4, Arch::Sm90a);
}

#[test]
fn row_sum_generated_code() {
    assert_kernel_snapshots!(tl_embed_app::row_sum().unwrap());
}
