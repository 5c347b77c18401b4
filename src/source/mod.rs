//! Sources: what a backup reads.
//!
//! Owns: filesystem metadata capture (stat, owner names, extended
//! attributes) through directory handles, exclude rules, and reading file
//! content into private buffers; SQLite captures and the check of restored
//! databases. Never touches: the repository.

pub mod exclude;
pub mod fs;
pub mod sqlite;
