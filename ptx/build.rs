//! `TL_PTX_SOURCE_DIGEST`: a digest of the sources the code generator is built from (this
//! crate's and the compiler's), part of its identity (`CodeGenerator::identity`): PTX cached
//! by one build is never served to a build whose code differs.

include!("../build-support/source_digest.rs");

fn main() {
    emit_source_digest("TL_PTX_SOURCE_DIGEST", &["src", "../compiler/src", "../compiler/Cargo.toml", "Cargo.toml"]);
}
