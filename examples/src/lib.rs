//! Example kernels live in `examples/*.tl`.
