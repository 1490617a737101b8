//! Layouts: which thread holds which element of a register tensor, and where an element of a
//! shared tensor lives.
//!
//! * [`register`]: register layouts in canonical mode form (shape, per-dimension modes, ordered
//!   spatial modes with replication, ordered local modes), the product, divisions, reduce,
//!   reshape/permute/squeeze/concat, and the queries code generation uses.
//! * [`gf2`]: the linear (GF(2)) view of power-of-two layouts: inversion, composition, rank.
//! * [`analysis`]: vector width, conversion classification and bank conflicts.
//! * [`shared`] and [`swizzle`]: shared-memory layouts with an optional XOR swizzle.
//! * [`view`]: reinterpreting a tile's bits as another dtype, and when that moves no data.
//!
//! The invariants (I1–I16, stated where they are tested) are property-tested in
//! `compiler/tests/layout_properties.rs`, and worked examples are pinned in
//! `compiler/tests/layout_golden.rs`.

pub mod analysis;
pub mod error;
pub mod gf2;
pub mod register;
pub mod shared;
pub mod swizzle;
pub mod view;

pub use analysis::{classify_conversion, vector_width, ConversionKind};
pub use error::LayoutError;
pub use gf2::F2Layout;
pub use register::{RegisterLayout, SpatialEntry, ThreadTerm};
pub use shared::SharedLayout;
pub use swizzle::Swizzle;
pub use view::{view_bits, view_moves_no_data, view_result_layout, RegisterView};
