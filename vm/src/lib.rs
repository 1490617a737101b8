//! CPU execution of tl programs.
