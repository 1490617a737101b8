//! `TL_CPU_SOURCE_DIGEST`: a digest of the sources the cpu backend's native code depends on
//! (this crate's, the compiler's and the VM's, whose helpers it calls), part of
//! `tl_cpu::identity`: kernels tuned on one build are never dispatched by another's table
//! entries.

include!("../build-support/source_digest.rs");

fn main() {
    emit_source_digest("TL_CPU_SOURCE_DIGEST", &["src", "../compiler/src", "../compiler/Cargo.toml", "../vm/src", "Cargo.toml"]);
}
