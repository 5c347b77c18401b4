//! Sources: what a backup reads.
//!
//! Owns: filesystem metadata capture (stat, owner names, extended
//! attributes), exclude rules, and reading file content (plain reads for
//! small files, memory maps for large ones). Never touches: the repository.

pub mod exclude;
pub mod fs;
pub mod sqlite;
