//! Read-only SQL over a database as a snapshot holds it, without
//! restoring it (`cairn sql`).
//!
//! [`SnapshotDb::open`] finds a file entry in a snapshot, maps its bytes
//! onto the repository's blobs ([`image::Image`]: one blob per page for a
//! SQLite capture, content-defined chunks otherwise) and opens it with
//! SQLite through a read-only VFS ([`vfs`]) that reads only the pages a
//! query touches, each one authenticated and re-hashed against its ID as
//! restore does. The connection is opened `SQLITE_OPEN_READONLY` with
//! `immutable=1` and `PRAGMA query_only=1`, attaches nothing, keeps its
//! temporary tables in memory, and a statement that would write is refused
//! before it runs.
//!
//! Owns: the image and VFS lifetimes, the connection's settings, mapping
//! SQLite's failures back to the repository's errors. Never touches:
//! output formatting (the command line prints rows), concrete backends.

pub mod image;
pub mod rows;
mod vfs;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::Node;
use crate::id::BlobId;
use crate::ops::walk::{self, Found};
use crate::repo::Repository;

pub use image::Image;

/// Bytes of the database header a file must start with.
const HEADER_LEN: usize = 100;

/// One value of a result row, as SQLite stored it (text as its bytes,
/// which need not be UTF-8).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// An INTEGER.
    Integer(i64),
    /// A REAL.
    Real(f64),
    /// TEXT, its bytes.
    Text(Vec<u8>),
    /// A BLOB.
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Cell {
    fn from(v: ValueRef<'_>) -> Cell {
        match v {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Integer(i),
            ValueRef::Real(x) => Cell::Real(x),
            ValueRef::Text(t) => Cell::Text(t.to_vec()),
            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }
}

/// What [`SnapshotDb::query`] hands each row to: the column names and the
/// row's values.
pub type RowSink<'a> = dyn FnMut(&[String], &[Cell]) -> Result<()> + 'a;

/// A database of a snapshot, open for reading.
pub struct SnapshotDb<'r> {
    // Field order is drop order: the connection closes before the VFS it
    // uses is unregistered, and that before the image it points at is
    // freed.
    conn: Connection,
    _vfs: vfs::Registered,
    image: Box<Image<'r>>,
    /// Databases attached with [`SnapshotDb::attach`]: their VFS, image and
    /// path (dropped after the connection, too).
    attached: Vec<(vfs::Registered, Box<Image<'r>>, String)>,
    /// The database's path in the snapshot, for messages.
    shown: String,
}

/// Find `path` below the snapshot tree `root` and open it as a database.
pub fn open_path<'r>(repo: &'r Repository, root: &BlobId, path: &str) -> Result<SnapshotDb<'r>> {
    match walk::find(repo, root, path.as_bytes())? {
        Found::Entry(node) => SnapshotDb::open(repo, &node, path),
        Found::Dir(..) => Err(Error::invalid(format!(
            "{path} is a directory in the snapshot, not a database file"
        ))),
    }
}

impl<'r> SnapshotDb<'r> {
    /// Open the file entry `node` (at `shown`) as a read-only database.
    /// Reads its first page; a file that does not start with a SQLite
    /// header is refused here, before SQLite sees it.
    pub fn open(repo: &'r Repository, node: &Node, shown: &str) -> Result<SnapshotDb<'r>> {
        let image = open_image(repo, node, shown)?;
        let vfs = vfs::register(&image)?;
        let conn = Connection::open_with_flags_and_vfs(
            format!("file:{}?immutable=1", vfs::FILE_NAME),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            vfs.name(),
        )
        .map_err(|e| sql_error(&image, shown, e))?;
        vfs::limit_attached(&conn, 0);
        conn.execute_batch("PRAGMA query_only = 1; PRAGMA temp_store = MEMORY;")
            .map_err(|e| sql_error(&image, shown, e))?;
        Ok(SnapshotDb {
            conn,
            _vfs: vfs,
            image,
            attached: Vec::new(),
            shown: shown.to_string(),
        })
    }

    /// Attach the file entry `node` (at `shown`) to this connection as the
    /// read-only schema `schema` (for statements that read two databases,
    /// such as a row diff between snapshots).
    pub fn attach(
        &mut self,
        repo: &'r Repository,
        node: &Node,
        shown: &str,
        schema: &str,
    ) -> Result<()> {
        let image = open_image(repo, node, shown)?;
        let vfs = vfs::register(&image)?;
        let n = i32::try_from(self.attached.len() + 1).unwrap_or(i32::MAX);
        vfs::limit_attached(&self.conn, n);
        let r = self.conn.execute(
            "ATTACH ?1 AS ?2",
            [
                format!("file:{}?vfs={}&immutable=1", vfs::FILE_NAME, vfs.name()),
                schema.to_string(),
            ],
        );
        if let Err(e) = r {
            vfs::limit_attached(&self.conn, n - 1);
            return Err(sql_error(&image, shown, e));
        }
        self.attached.push((vfs, image, shown.to_string()));
        Ok(())
    }

    /// The database's image (its length, the blobs read so far).
    pub fn image(&self) -> &Image<'r> {
        &self.image
    }

    /// The connection (read-only), for callers that run their own
    /// statements.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The repository's error behind a failed SQLite call, or SQLite's own
    /// message (which names the database).
    pub fn error(&self, e: rusqlite::Error) -> Error {
        for (_, image, shown) in &self.attached {
            if let Some(failure) = image.take_failure() {
                return failure.context(format!("cannot read {shown} from the snapshot"));
            }
        }
        sql_error(&self.image, &self.shown, e)
    }

    /// Run one read-only statement: `row` gets the result's column names
    /// and each row's values, in order. Returns the
    /// number of rows. A statement that would write is refused before it
    /// runs (and the connection could not write anyway).
    pub fn query(&self, sql: &str, row: &mut RowSink<'_>) -> Result<u64> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.error(e))?;
        if !stmt.readonly() {
            return Err(Error::invalid(format!(
                "`cairn sql` only reads: this statement would change {}; nothing was run \
                 (restore the database to change it)",
                self.shown
            )));
        }
        let names: Vec<String> = stmt.column_names().map(String::from).collect();
        let mut rows = stmt.query([]).map_err(|e| self.error(e))?;
        let mut n = 0u64;
        let mut values = Vec::with_capacity(names.len());
        while let Some(r) = rows.next().map_err(|e| self.error(e))? {
            values.clear();
            for i in 0..names.len() {
                values.push(Cell::from(r.get_ref(i).map_err(|e| self.error(e))?));
            }
            row(&names, &values)?;
            n += 1;
        }
        Ok(n)
    }

    /// A REAL value as SQLite writes it as text (`CAST(x AS TEXT)`, what
    /// the `sqlite3` shell prints: `1.0`, `1.0e+20`, `0.666666666666667`).
    pub fn real_text(&self, x: f64) -> Result<String> {
        self.conn
            .query_row("SELECT CAST(?1 AS TEXT)", [x], |r| r.get(0))
            .map_err(|e| self.error(e))
    }
}

/// The image of the file entry `node`, which must start with a SQLite
/// header (its first page is read here, before SQLite sees it).
fn open_image<'r>(repo: &'r Repository, node: &Node, shown: &str) -> Result<Box<Image<'r>>> {
    let image = Box::new(Image::open(repo, node, shown)?);
    let not_db = || {
        Error::invalid(format!(
            "{shown} is not a SQLite database (it does not start with a SQLite \
             header)"
        ))
    };
    let mut header = [0u8; HEADER_LEN];
    if image.len() < 512 || image.read_at(0, &mut header)? < HEADER_LEN {
        return Err(not_db());
    }
    if !header.starts_with(b"SQLite format 3\0") {
        return Err(not_db());
    }
    Ok(image)
}

/// What a failed SQLite call means: the repository's error if a read of the
/// image failed (a missing or damaged blob), else SQLite's message.
fn sql_error(image: &Image<'_>, shown: &str, e: rusqlite::Error) -> Error {
    if let Some(failure) = image.take_failure() {
        return failure.context(format!("cannot read {shown} from the snapshot"));
    }
    let kind = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            ErrorKind::Integrity
        }
        _ => ErrorKind::InvalidInput,
    };
    let text = match &e {
        rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
        rusqlite::Error::MultipleStatement => {
            "give one statement (the query holds more than one)".to_string()
        }
        other => other.to_string(),
    };
    Error::new(kind, format!("{shown}: {text}"))
}
