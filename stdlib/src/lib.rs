//! Stdlib.
