//! A read-only SQLite VFS whose one file is an [`Image`]: SQLite reads a
//! snapshot's database through it, page by page, from the repository.
//!
//! Each open image registers its own VFS under a unique name
//! (`cairn-snapshot-N`) whose `pAppData` points at the image; it opens one
//! file only, the main database named [`FILE_NAME`], read-only. Locks are
//! no-ops (nothing else can change the image); writes, truncation and sync
//! fail with `SQLITE_READONLY`; opening anything else — a rollback journal,
//! a `-wal`, a temporary file, a second database (`VACUUM INTO`) — fails
//! with `SQLITE_CANTOPEN`, and every name is reported absent, so SQLite
//! never looks for a log. Time, randomness and sleeping are the default
//! VFS's.
//!
//! One of Cairn's fenced `unsafe` places (with the capture's pinned VFS in
//! `source::sqlite` and the removal of passphrase variables in
//! `cli::take_secret_env`): the C callbacks, the registration and the
//! limit set on a connection. The image outlives the registration:
//! [`Registered`] is dropped (unregistering the VFS) only after every
//! connection that used it is closed (`super::SnapshotDb`'s field order).

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

use super::image::Image;
use crate::error::{Error, Result};

/// The name of the image's file, as SQLite opens it (any name would do:
/// the VFS serves only this one).
pub const FILE_NAME: &str = "/snapshot.db";
const FILE_NAME_C: &CStr = c"/snapshot.db";

/// The file SQLite allocates for each open (`szOsFile` bytes): SQLite's
/// header followed by the image it reads.
#[repr(C)]
struct ImageFile {
    base: ffi::sqlite3_file,
    image: *const Image<'static>,
}

/// A registered VFS; unregistered when dropped.
pub struct Registered {
    vfs: Box<ffi::sqlite3_vfs>,
    /// Keeps the name `vfs.zName` points at.
    name: CString,
}

impl Registered {
    /// The VFS name to open a connection or attach a database with.
    pub fn name(&self) -> &str {
        self.name.to_str().unwrap_or_default()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // SAFETY: the struct was registered by `register` and every
        // connection that used it is closed (the owner's field order), so
        // SQLite holds no pointer to it or to the image after this.
        unsafe {
            ffi::sqlite3_vfs_unregister(&mut *self.vfs);
        }
    }
}

/// Register a VFS serving `image`. The caller keeps `image` alive, at the
/// same address, until the returned [`Registered`] is dropped.
pub fn register(image: &Image<'_>) -> Result<Registered> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = CString::new(format!("cairn-snapshot-{n}"))
        .map_err(|_| Error::invalid("a VFS name holds NUL"))?;
    // SAFETY: `sqlite3_vfs_find` initialises SQLite and returns the default
    // VFS (or null), valid for the life of the process; it is copied, not
    // kept. `sqlite3_vfs_register` keeps the boxed struct, which
    // `Registered` owns and unregisters before freeing.
    unsafe {
        let default = ffi::sqlite3_vfs_find(std::ptr::null());
        if default.is_null() {
            return Err(Error::invalid("SQLite has no default VFS to base one on"));
        }
        let mut vfs: ffi::sqlite3_vfs = *default;
        // Version 2: no system-call overrides of the default's.
        vfs.iVersion = 2;
        vfs.szOsFile = std::mem::size_of::<ImageFile>() as c_int;
        vfs.pNext = std::ptr::null_mut();
        vfs.zName = name.as_ptr();
        vfs.pAppData = std::ptr::from_ref(image).cast_mut().cast::<c_void>();
        vfs.xOpen = Some(x_open);
        vfs.xDelete = Some(x_delete);
        vfs.xAccess = Some(x_access);
        vfs.xFullPathname = Some(x_full_pathname);
        let mut vfs = Box::new(vfs);
        let rc = ffi::sqlite3_vfs_register(&mut *vfs, 0);
        if rc != ffi::SQLITE_OK {
            return Err(Error::invalid(format!(
                "SQLite refused to register a VFS (code {rc})"
            )));
        }
        Ok(Registered { vfs, name })
    }
}

/// Allow at most `n` attached databases on `conn` (a query cannot attach
/// files of the local filesystem).
pub fn limit_attached(conn: &rusqlite::Connection, n: i32) {
    // SAFETY: the handle is the open connection's, used on this thread.
    unsafe {
        ffi::sqlite3_limit(conn.handle(), ffi::SQLITE_LIMIT_ATTACHED, n);
    }
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_lock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// `xOpen`: the main database [`FILE_NAME`], read-only; nothing else.
unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    z_name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    if file.is_null() || vfs.is_null() {
        return ffi::SQLITE_CANTOPEN;
    }
    let f = file.cast::<ImageFile>();
    // SAFETY: SQLite allocated `szOsFile` bytes at `file` for this open;
    // a failed open must leave `pMethods` null.
    unsafe { (*f).base.pMethods = std::ptr::null() };
    let main = flags & ffi::SQLITE_OPEN_MAIN_DB != 0;
    let create = flags & ffi::SQLITE_OPEN_CREATE != 0;
    // SAFETY: a non-null `z_name` is NUL-terminated (URI parameters follow
    // the NUL, and are not read).
    let ours = !z_name.is_null() && unsafe { CStr::from_ptr(z_name) } == FILE_NAME_C;
    if !main || create || !ours {
        return ffi::SQLITE_CANTOPEN;
    }
    // SAFETY: `vfs` is ours (registered with this callback), so its
    // `pAppData` is the image, alive until the VFS is unregistered.
    unsafe {
        (*f).image = (*vfs).pAppData.cast::<Image<'static>>().cast_const();
        (*f).base.pMethods = &IO_METHODS;
        if !out_flags.is_null() {
            *out_flags = ffi::SQLITE_OPEN_READONLY | ffi::SQLITE_OPEN_MAIN_DB;
        }
    }
    ffi::SQLITE_OK
}

/// `xDelete`: nothing is ever deleted.
unsafe extern "C" fn x_delete(_: *mut ffi::sqlite3_vfs, _: *const c_char, _: c_int) -> c_int {
    ffi::SQLITE_READONLY
}

/// `xAccess`: no file exists (no journal, no WAL); the image is opened by
/// `xOpen`, never looked up.
unsafe extern "C" fn x_access(
    _: *mut ffi::sqlite3_vfs,
    _: *const c_char,
    _: c_int,
    res: *mut c_int,
) -> c_int {
    if !res.is_null() {
        // SAFETY: SQLite's out-parameter, checked non-null.
        unsafe { *res = 0 };
    }
    ffi::SQLITE_OK
}

/// `xFullPathname`: the name as given.
unsafe extern "C" fn x_full_pathname(
    _: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    n_out: c_int,
    z_out: *mut c_char,
) -> c_int {
    if z_name.is_null() || z_out.is_null() || n_out <= 0 {
        return ffi::SQLITE_CANTOPEN;
    }
    // SAFETY: SQLite passes a NUL-terminated name (checked non-null).
    let name = unsafe { CStr::from_ptr(z_name) }.to_bytes_with_nul();
    if name.len() > n_out as usize {
        return ffi::SQLITE_CANTOPEN;
    }
    // SAFETY: `z_out` is SQLite's buffer of `n_out` bytes (checked
    // non-null and long enough), distinct from `z_name`.
    unsafe { std::ptr::copy_nonoverlapping(name.as_ptr().cast::<c_char>(), z_out, name.len()) };
    ffi::SQLITE_OK
}

/// The image of an open file.
///
/// # Safety
/// `file` is one `x_open` opened (SQLite calls the I/O methods only on
/// those), and its image is alive.
unsafe fn image_of<'a>(file: *mut ffi::sqlite3_file) -> Option<&'a Image<'static>> {
    if file.is_null() {
        return None;
    }
    // SAFETY: per the function's contract.
    unsafe { (*file.cast::<ImageFile>()).image.as_ref() }
}

unsafe extern "C" fn x_close(_: *mut ffi::sqlite3_file) -> c_int {
    ffi::SQLITE_OK
}

/// `xRead`: bytes from the image; past its end, zeros and a short read;
/// a read that fails keeps its error in the image for the caller.
unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite calls xRead on files x_open opened.
    let Some(image) = (unsafe { image_of(file) }) else {
        return ffi::SQLITE_IOERR_READ;
    };
    let (Ok(len), Ok(offset)) = (usize::try_from(amount), u64::try_from(offset)) else {
        return ffi::SQLITE_IOERR_READ;
    };
    if buf.is_null() {
        return ffi::SQLITE_IOERR_READ;
    }
    // SAFETY: SQLite's buffer of `amount` bytes (checked non-null and
    // non-negative), not aliased while the call runs.
    let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    match image.read_at(offset, out) {
        Ok(n) if n == len => ffi::SQLITE_OK,
        Ok(n) => {
            out[n..].fill(0);
            ffi::SQLITE_IOERR_SHORT_READ
        }
        Err(e) => {
            image.fail(e);
            ffi::SQLITE_IOERR_READ
        }
    }
}

unsafe extern "C" fn x_write(
    _: *mut ffi::sqlite3_file,
    _: *const c_void,
    _: c_int,
    _: ffi::sqlite3_int64,
) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn x_truncate(_: *mut ffi::sqlite3_file, _: ffi::sqlite3_int64) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn x_sync(_: *mut ffi::sqlite3_file, _: c_int) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite calls xFileSize on files x_open opened.
    let Some(image) = (unsafe { image_of(file) }) else {
        return ffi::SQLITE_IOERR_FSTAT;
    };
    let Ok(len) = i64::try_from(image.len()) else {
        return ffi::SQLITE_IOERR_FSTAT;
    };
    if size.is_null() {
        return ffi::SQLITE_IOERR_FSTAT;
    }
    // SAFETY: SQLite's out-parameter, checked non-null.
    unsafe { *size = len };
    ffi::SQLITE_OK
}

/// `xLock` and `xUnlock`: nothing else can change the image.
unsafe extern "C" fn x_lock(_: *mut ffi::sqlite3_file, _: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(_: *mut ffi::sqlite3_file, res: *mut c_int) -> c_int {
    if !res.is_null() {
        // SAFETY: SQLite's out-parameter, checked non-null.
        unsafe { *res = 0 };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(_: *mut ffi::sqlite3_file, _: c_int, _: *mut c_void) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_: *mut ffi::sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn x_device_characteristics(_: *mut ffi::sqlite3_file) -> c_int {
    ffi::SQLITE_IOCAP_IMMUTABLE
}
