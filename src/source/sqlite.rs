//! Consistent capture of live SQLite databases.
//!
//! A database is read page by page through SQLite's `sqlite_dbpage` virtual
//! table inside one read transaction: the pages are those of one committed
//! state, with the WAL folded in, whatever writers do meanwhile (in WAL
//! mode they are not blocked; in rollback-journal mode a writer waits for
//! the read, about a second per GB). Nothing is written to disk: there is
//! no temporary copy to clean up after an error or an interrupt, and the
//! source database is opened read-only.
//!
//! Pages keep their positions (page N of tonight's capture is page N of
//! last night's), so captures are cut on page boundaries and a night's
//! changes cost about the pages that changed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, ErrorKind, Result};

/// The first 16 bytes of every SQLite database file.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Companion files that are never stored next to a captured database.
pub const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The page size announced by a database header, if `file` starts with one.
pub fn sniff(file: &File) -> std::io::Result<Option<u32>> {
    let mut h = [0u8; 100];
    match file.read_exact_at(&mut h, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if &h[..16] != SQLITE_MAGIC {
        return Ok(None);
    }
    let raw = u32::from(u16::from_be_bytes([h[16], h[17]]));
    let page = if raw == 1 { 65536 } else { raw };
    Ok((page.is_power_of_two() && (512..=65536).contains(&page)).then_some(page))
}

/// True if the file at `path` starts with a SQLite header.
pub fn is_database(path: &Path) -> bool {
    File::open(path)
        .and_then(|f| sniff(&f))
        .is_ok_and(|p| p.is_some())
}

/// Page images of one consistent state of a database, in page order.
pub struct PageReader {
    conn: Connection,
    /// Page size in bytes.
    pub page_size: u32,
    /// Number of pages.
    pub page_count: u64,
}

fn sql_err(path: &Path, what: &str, e: rusqlite::Error) -> Error {
    let busy = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    Error::new(
        ErrorKind::Source,
        if busy {
            format!(
                "cannot capture SQLite database {}: still busy after the timeout ({what}: {e})",
                path.display()
            )
        } else {
            format!(
                "cannot capture SQLite database {} ({what}): {e}",
                path.display()
            )
        },
    )
}

impl PageReader {
    /// Open `path` read-only and start a read transaction, waiting up to
    /// `timeout` for writers that hold it.
    pub fn open(path: &Path, timeout: Duration) -> Result<PageReader> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_err(path, "open", e))?;
        conn.busy_timeout(timeout)
            .map_err(|e| sql_err(path, "busy timeout", e))?;
        let start = Instant::now();
        // BEGIN is deferred: the read lock (the snapshot, in WAL mode) is
        // taken by the first read below and held until `finish`.
        conn.execute_batch("BEGIN")
            .map_err(|e| sql_err(path, "begin", e))?;
        let (page_size, page_count) = loop {
            let r = conn.query_row(
                "SELECT (SELECT page_size FROM pragma_page_size), (SELECT page_count FROM pragma_page_count)",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            );
            match r {
                Ok(v) => break v,
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(rusqlite::ErrorCode::DatabaseBusy)
                    ) && start.elapsed() < timeout =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(sql_err(path, "read header", e)),
            }
        };
        let page_size = u32::try_from(page_size)
            .ok()
            .filter(|p| p.is_power_of_two() && (512..=65536).contains(p))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Source,
                    format!("{}: invalid page size {page_size}", path.display()),
                )
            })?;
        Ok(PageReader {
            conn,
            page_size,
            page_count: u64::try_from(page_count).unwrap_or(0),
        })
    }

    /// Call `f` with runs of consecutive pages (each run a whole number of
    /// pages, at most `batch_pages`), in page order, all from the same
    /// read transaction.
    pub fn for_each_batch(
        &self,
        path: &Path,
        batch_pages: usize,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        let ps = self.page_size as usize;
        let mut stmt = self
            .conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage('main') ORDER BY pgno")
            .map_err(|e| sql_err(path, "read pages", e))?;
        let mut rows = stmt.query([]).map_err(|e| sql_err(path, "read pages", e))?;
        let mut buf: Vec<u8> = Vec::with_capacity(batch_pages * ps);
        let mut expect = 1i64;
        let mut total = 0u64;
        while let Some(row) = rows.next().map_err(|e| sql_err(path, "read pages", e))? {
            let pgno: i64 = row.get(0).map_err(|e| sql_err(path, "read pages", e))?;
            let data = row
                .get_ref(1)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(|e| sql_err(path, "read pages", e))?;
            if pgno != expect || data.len() != ps {
                return Err(Error::new(
                    ErrorKind::Source,
                    format!(
                        "{}: page {pgno} ({} bytes) out of sequence; not a consistent database",
                        path.display(),
                        data.len()
                    ),
                ));
            }
            expect += 1;
            buf.extend_from_slice(data);
            if buf.len() >= batch_pages * ps {
                total += buf.len() as u64;
                f(&buf)?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            total += buf.len() as u64;
            f(&buf)?;
        }
        Ok(total)
    }

    /// End the read transaction.
    pub fn finish(self, path: &Path) -> Result<()> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| sql_err(path, "end read", e))
    }
}

/// Check a restored database: remove stale companions next to it (so no
/// old log is replayed over it) and run `PRAGMA integrity_check`. Returns
/// SQLite's verdict ("ok" or the problems found).
pub fn check_restored(path: &Path) -> Result<String> {
    for c in COMPANIONS {
        let mut p = path.as_os_str().to_owned();
        p.push(c);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io_path("cannot remove stale", p, e)),
        }
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        Error::integrity(format!(
            "{}: cannot open restored database: {e}",
            path.display()
        ))
    })?;
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| Error::integrity(format!("{}: {e}", path.display())))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| {
            Error::integrity(format!("{}: integrity check failed: {e}", path.display()))
        })?;
    Ok(lines.join("; "))
}
