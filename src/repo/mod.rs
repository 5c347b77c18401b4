//! The repository: the one place that composes crypto, format and backend.
//!
//! Owns: initialising and opening repositories (keys, config), sealing and
//! opening objects, reading blobs through the index, loading snapshots and
//! trees, packing new blobs, writing index files, locks, and the write
//! ordering that makes commits crash-safe (packs → index → snapshot).
//! Never touches: the CLI, the filesystem being backed up.

pub mod chunklist;
pub mod inventory;
pub mod lock;
pub mod packer;
pub mod readplan;
pub mod save;
pub mod state;

pub use state::{ExclusiveLock, Indexed, SharedLock};

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use crate::backend::Backend;
use crate::chunker::Chunker;
use crate::crypto::{self, IdKey, KdfLimits, KdfParams, SealKey, Secret32};
use crate::error::{Error, ErrorKind, Result};
use crate::format::config::{ChunkerParams, Config};
use crate::format::index::IndexFile;
use crate::format::keyfile::{KeyFile, KeyInfo, KeyMeta, MAX_KEY_INFO_NAME_LEN, SALT_LEN};
use crate::format::pack::{self, PackEntry};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::format::{BlobType, Compression, FORMAT_VERSION, aad, caps};
use crate::id::{BlobId, IndexId, KeyId, PackId, SnapshotId};
use crate::index::{Index, Location};
use crate::observer::Observer;

/// Name of the config object.
pub const CONFIG_NAME: &str = "config";

/// The name of a tree blob's sealed bytes in the local tree cache.
fn tree_cache_name(id: &BlobId) -> String {
    let hex = id.to_hex();
    format!("{}/{}", &hex[..2], hex)
}

/// How many bytes at the end of a pack [`Repository::load_pack_header`]
/// reads in its first request: the header of a pack of up to about 1500
/// blobs and its length trailer.
pub const HEADER_READ_AHEAD: u64 = 64 << 10;

/// The name of a pack object.
pub fn pack_name(id: &PackId) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}
/// The object name of an index file.
pub fn index_name(id: &IndexId) -> String {
    format!("index/{}", id.to_hex())
}
/// The object name of a snapshot.
pub fn snapshot_name(id: &SnapshotId) -> String {
    format!("snapshots/{}", id.to_hex())
}
/// The object name of a key file.
pub fn key_name(id: &KeyId) -> String {
    format!("keys/{}", id.to_hex())
}

/// Options for a new repository.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Argon2id costs for the first key (default [`KdfParams::DEFAULT`]).
    /// Tests may use [`KdfParams::INSECURE_TEST`]; only builds with the
    /// test-only `insecure-test-kdf` feature accept it.
    pub kdf: KdfParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// Default zstd level (0 = store uncompressed).
    pub compression_level: i32,
    /// Chunker sizes and seed; `None` for the defaults with a random seed.
    pub chunker: Option<ChunkerParams>,
    /// Blob ID key; `None` for a random one. Sharing another repository's
    /// chunker parameters and ID key makes equal content have equal IDs in
    /// both, so copies between them send only what the other lacks.
    pub id_key: Option<[u8; 32]>,
    /// Host and user recorded (sealed) in the first key file; `None` for
    /// [`Identity::of_process`].
    pub identity: Option<Identity>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            kdf: KdfParams::DEFAULT,
            pack_size: 16 * 1024 * 1024,
            compression_level: 3,
            chunker: None,
            id_key: None,
            identity: None,
        }
    }
}

/// How [`Repository::open_with`] treats key files, and what the opened
/// repository reports to and records about its caller.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// Argon2id costs a key file must have to be tried (default
    /// [`KdfLimits::widest`]: the standard limits, lowered to admit
    /// [`KdfParams::INSECURE_TEST`] keys only in builds with the test-only
    /// `insecure-test-kdf` feature).
    pub kdf_limits: KdfLimits,
    /// Receives warnings and events, from opening on (default: none).
    pub observer: Option<Arc<dyn Observer>>,
    /// Host and user recorded in locks, snapshots and new key files;
    /// `None` for [`Identity::of_process`].
    pub identity: Option<Identity>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("kdf_limits", &self.kdf_limits)
            .field("observer", &self.observer.as_ref().map(|_| "…"))
            .field("identity", &self.identity)
            .finish()
    }
}

/// Who works on a repository: recorded (sealed) in key files, locks and
/// snapshots. The library learns it from the system, never from the
/// environment; a caller that knows better (the command line reads `USER`)
/// passes it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Host name.
    pub hostname: String,
    /// User name.
    pub username: String,
}

impl Identity {
    /// This process: the kernel's host name, and the name the user
    /// database gives this process's user ID (`uid N` if it has none).
    pub fn of_process() -> Identity {
        Identity {
            hostname: hostname(),
            username: username(),
        }
    }
}

/// At most this many key files are tried (each costs one Argon2id run):
/// cheapest first, then by name. The rest are skipped with a warning.
pub const MAX_KEYS_TRIED: usize = 20;

/// A key file as `key list` shows it.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// Its ID (the object is `keys/<id>`).
    pub id: KeyId,
    /// Key file layout version (1: host and user in clear text).
    pub version: u16,
    /// Its Argon2id costs.
    pub kdf: KdfParams,
    /// Creation time, host and user; `None` if a version 2 key file's
    /// sealed information does not open with this repository's master
    /// secret (the key file was not made for this repository).
    pub info: Option<KeyInfo>,
}

/// Every index file of a repository, sorted by what a reader may trust
/// (see [`Repository::load_index_files`]).
#[derive(Debug, Default)]
pub struct IndexFiles {
    /// Readable index files that no readable index file supersedes: the
    /// index.
    pub live: Vec<(IndexId, IndexFile)>,
    /// Readable index files that another readable one supersedes, each with
    /// the one naming it: ignored.
    pub superseded: Vec<(IndexId, IndexId)>,
    /// Index files that failed authentication or decoding, or vanished
    /// while being read: ignored.
    pub unreadable: Vec<(IndexId, Error)>,
}

/// An open repository.
pub struct Repository {
    backend: Arc<dyn Backend>,
    seal: SealKey,
    ids: IdKey,
    config: Config,
    chunker: Chunker,
    index: Index,
    key_id: KeyId,
    lock_wait: std::time::Duration,
    /// Kept (zeroized on drop) so new key files can wrap it.
    master: Secret32,
    /// Sealed tree blobs cached locally (remote repositories only).
    tree_cache: Option<crate::backend::cache::DiskCache>,
    /// Receives warnings and events.
    observer: Arc<dyn Observer>,
    /// Recorded in locks, snapshots and new key files.
    identity: Identity,
}

/// This machine's host name (the kernel's node name).
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The name of this process's user in the user database, or `uid N`.
pub fn username() -> String {
    let uid = rustix::process::getuid().as_raw();
    uzers::get_user_by_uid(uid)
        .map(|u| u.name().to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// `s` cut to at most `max` bytes at a character boundary.
fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Wrap `master` under `passphrase` into a new (version 2) key file whose
/// creation time, host and user are sealed under a key derived from
/// `master`. Costs outside [`KdfLimits::widest`] are refused: a key this
/// build would not try is useless, and a cheap one is dangerous.
pub fn make_key_file(master: &Secret32, passphrase: &[u8], kdf: KdfParams) -> Result<KeyFile> {
    make_key_file_for(master, passphrase, kdf, &Identity::of_process())
}

/// [`make_key_file`], recording `who` as its maker.
pub fn make_key_file_for(
    master: &Secret32,
    passphrase: &[u8],
    kdf: KdfParams,
    who: &Identity,
) -> Result<KeyFile> {
    kdf.validate()?;
    KdfLimits::widest()
        .check(&kdf)
        .map_err(|why| Error::invalid(format!("refusing to make a key file: {why}")))?;
    let salt: [u8; SALT_LEN] = crypto::random_array();
    // Display information only: names are cut to the format's limit.
    let info = KeyInfo {
        created: now_unix(),
        hostname: clip(who.hostname.clone(), MAX_KEY_INFO_NAME_LEN),
        username: clip(who.username.clone(), MAX_KEY_INFO_NAME_LEN),
    };
    let mut kf = KeyFile {
        kdf,
        salt,
        wrapped: Vec::new(),
        meta: KeyMeta::Sealed(Vec::new()),
    };
    let wrapping = crypto::derive_wrapping_key(passphrase, &salt, kdf)?;
    kf.wrapped = SealKey::new(&wrapping).seal(&kf.header_bytes()?, master.expose());
    let info_key = SealKey::new(&crypto::derive_subkey(crypto::CONTEXT_KEY_INFO, master));
    kf.meta = KeyMeta::Sealed(info_key.seal(&kf.info_aad()?, &info.to_bytes()?));
    Ok(kf)
}

/// The creation time, host and user of a key file: in the clear in
/// version 1, opened with `master` in version 2.
pub fn key_file_info(kf: &KeyFile, master: &Secret32) -> Result<KeyInfo> {
    match &kf.meta {
        KeyMeta::Clear(info) => Ok(info.clone()),
        KeyMeta::Sealed(sealed) => {
            let info_key = SealKey::new(&crypto::derive_subkey(crypto::CONTEXT_KEY_INFO, master));
            let plain = info_key.open(&kf.info_aad()?, sealed, "key file information")?;
            KeyInfo::from_bytes(&plain)
        }
    }
}

/// The wrapping key of a passphrase under a key file's salt and cost,
/// derived once per process: `cairn run` opens a repository once per step,
/// and Argon2id is slow on purpose. Entries are found by a hash keyed with
/// a random per-process key, so the table holds nothing a process that
/// holds the master key does not already hold.
fn wrapping_key(passphrase: &[u8], salt: &[u8], kdf: KdfParams) -> Result<Secret32> {
    type Memo = (
        Secret32,
        std::sync::Mutex<std::collections::HashMap<[u8; 32], Secret32>>,
    );
    static MEMO: std::sync::OnceLock<Memo> = std::sync::OnceLock::new();
    let (hash_key, table) = MEMO.get_or_init(|| (Secret32::random(), Default::default()));
    let mut h = blake3::Hasher::new_keyed(hash_key.expose());
    for part in [passphrase, salt] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    for n in [kdf.memory_kib, kdf.iterations, kdf.parallelism] {
        h.update(&n.to_le_bytes());
    }
    let slot = *h.finalize().as_bytes();
    if let Some(k) = table.lock().unwrap_or_else(|p| p.into_inner()).get(&slot) {
        return Ok(k.clone());
    }
    let k = crypto::derive_wrapping_key(passphrase, salt, kdf)?;
    table
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(slot, k.clone());
    Ok(k)
}

/// Unwrap the master secret from a key file, or `None` if the passphrase
/// does not match.
pub fn unwrap_key_file(kf: &KeyFile, passphrase: &[u8]) -> Result<Option<Secret32>> {
    let wrapping = wrapping_key(passphrase, &kf.salt, kf.kdf)?;
    match SealKey::new(&wrapping).open(&kf.header_bytes()?, &kf.wrapped, "key file") {
        Ok(mut pt) => {
            let mut bytes = [0u8; 32];
            if pt.len() != 32 {
                zeroize::Zeroize::zeroize(&mut pt);
                return Err(Error::malformed(
                    "key file",
                    "wrapped secret is not 32 bytes",
                ));
            }
            bytes.copy_from_slice(&pt);
            zeroize::Zeroize::zeroize(&mut pt);
            let secret = Secret32::from_bytes(bytes);
            zeroize::Zeroize::zeroize(&mut bytes);
            Ok(Some(secret))
        }
        Err(_) => Ok(None),
    }
}

impl Repository {
    /// Create a new repository on an empty backend location.
    pub fn init(
        backend: Arc<dyn Backend>,
        passphrase: &[u8],
        opts: &InitOptions,
    ) -> Result<Repository> {
        // As for a new key (`add_key`): an empty passphrase would make the
        // repository's key file open for anyone.
        if passphrase.is_empty() {
            return Err(Error::invalid("an empty passphrase is not allowed"));
        }
        match backend.stat(CONFIG_NAME) {
            Ok(_) => {
                return Err(Error::invalid(format!(
                    "a repository already exists at {}",
                    backend.location()
                )));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let chunker = opts.chunker.unwrap_or_else(|| {
            ChunkerParams::with_seed(u64::from_le_bytes(crypto::random_array()))
        });
        chunker.validate()?;
        let config = Config {
            repo_id: crypto::random_array(),
            chunker,
            id_key: opts.id_key.unwrap_or_else(crypto::random_array),
            pack_size: opts.pack_size,
            compression_level: opts.compression_level,
            created: now_unix(),
        };
        // Encoding validates through the decoder, so init cannot write what
        // open rejects.
        let mut body = zeroize::Zeroizing::new(config.to_bytes()?);
        backend.create()?;
        let master = Secret32::random();
        let identity = opts.identity.clone().unwrap_or_else(Identity::of_process);
        let kf = make_key_file_for(&master, passphrase, opts.kdf, &identity)?;
        let key_id = KeyId::random();
        backend.put(&key_name(&key_id), &kf.to_bytes()?)?;
        let seal = SealKey::new(&crypto::derive_subkey(crypto::CONTEXT_SEAL_KEY, &master));
        let header = Config::header_bytes(FORMAT_VERSION);
        let mut obj = header.to_vec();
        seal.seal_into(&config_aad(&header), &body, &mut obj);
        zeroize::Zeroize::zeroize(&mut *body);
        // The config is written last: it is what makes the location a repository.
        backend.put(CONFIG_NAME, &obj)?;
        let mut repo = Self::assemble(backend, master, seal, config, key_id);
        repo.identity = identity;
        Ok(repo)
    }

    fn assemble(
        backend: Arc<dyn Backend>,
        master: Secret32,
        seal: SealKey,
        config: Config,
        key_id: KeyId,
    ) -> Self {
        let ids = IdKey::new(Secret32::from_bytes(config.id_key));
        let chunker = Chunker::new(config.chunker);
        let tree_cache = backend
            .cache_dir()
            .map(|d| crate::backend::cache::DiskCache::new(d.join("trees")));
        Repository {
            backend,
            master,
            seal,
            ids,
            config,
            chunker,
            index: Index::new(),
            key_id,
            lock_wait: std::time::Duration::ZERO,
            tree_cache,
            observer: crate::observer::none(),
            identity: Identity::of_process(),
        }
    }

    /// Open an existing repository with a passphrase, with the default
    /// [`OpenOptions`]. The index is not loaded: call
    /// [`Repository::load_index`].
    pub fn open(backend: Arc<dyn Backend>, passphrase: &[u8]) -> Result<Repository> {
        Self::open_with(backend, passphrase, &OpenOptions::default())
    }

    /// Open an existing repository with a passphrase.
    ///
    /// Every key file is read (each at most [`caps::KEY_FILE`] bytes) and
    /// those whose Argon2id costs are outside `opts.kdf_limits` are skipped
    /// with a warning naming them. The others are tried cheapest first, at
    /// most [`MAX_KEYS_TRIED`]. A key file that opens with the passphrase
    /// but does not open the config (made for another repository, or
    /// planted by someone who knows or guessed the passphrase) is skipped
    /// with a warning, and the next one is tried.
    pub fn open_with(
        backend: Arc<dyn Backend>,
        passphrase: &[u8],
        opts: &OpenOptions,
    ) -> Result<Repository> {
        let observer = opts.observer.clone().unwrap_or_else(crate::observer::none);
        let raw = match backend.get_capped(CONFIG_NAME, caps::CONFIG) {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => {
                return Err(Error::new(
                    ErrorKind::RepositoryNotFound,
                    format!(
                        "repository {} does not exist (no config object); create it with `cairn init`",
                        backend.location()
                    ),
                ));
            }
            Err(e) => return Err(e.context("cannot read the repository config")),
        };
        let (version, sealed) = Config::split_header(&raw)?;
        let header = Config::header_bytes(version);
        let mut listed: Vec<(KeyId, String)> = backend
            .list("keys")?
            .into_iter()
            .filter_map(|k| {
                let id = KeyId::from_hex(k.name.strip_prefix("keys/")?).ok()?;
                Some((id, k.name))
            })
            .collect();
        if listed.is_empty() {
            return Err(Error::integrity(format!(
                "repository {} has no key files",
                backend.location()
            )));
        }
        listed.sort_by(|a, b| a.1.cmp(&b.1));
        // Read and check every key file; Argon2id runs only later.
        let mut skipped: Vec<String> = Vec::new();
        let mut newer: Option<String> = None;
        let mut candidates: Vec<(KeyId, String, KeyFile)> = Vec::new();
        for (id, name) in listed {
            let kf = match backend
                .get_capped(&name, caps::KEY_FILE)
                .and_then(|b| KeyFile::from_bytes(&b))
            {
                Ok(kf) => kf,
                Err(e) => {
                    observer.warning(&format!("skipping key file {name}: {e}"));
                    if e.kind() == ErrorKind::UnsupportedVersion {
                        newer = Some(e.to_string());
                    }
                    skipped.push(format!("{name}: {e}"));
                    continue;
                }
            };
            if let Err(why) = opts.kdf_limits.check(&kf.kdf) {
                observer.warning(&format!("not trying key file {name}: {why}"));
                skipped.push(format!("{name}: {why}"));
                continue;
            }
            candidates.push((id, name, kf));
        }
        let work = |k: &KeyFile| u64::from(k.kdf.memory_kib) * u64::from(k.kdf.iterations);
        candidates.sort_by(|a, b| work(&a.2).cmp(&work(&b.2)).then_with(|| a.1.cmp(&b.1)));
        if candidates.len() > MAX_KEYS_TRIED {
            let rest = candidates.split_off(MAX_KEYS_TRIED);
            observer.warning(&format!(
                "repository {} has {} key files; only the {MAX_KEYS_TRIED} cheapest are tried, not {}; remove key files you do not know (`cairn key list`, `cairn key remove`)",
                backend.location(),
                MAX_KEYS_TRIED + rest.len(),
                rest.iter()
                    .map(|(_, n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            skipped.extend(rest.into_iter().map(|(_, n, _)| format!("{n}: not tried")));
        }
        let tried = candidates.len();
        let mut foreign = 0;
        for (key_id, name, kf) in candidates {
            let master = match unwrap_key_file(&kf, passphrase) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    observer.warning(&format!("skipping key file {name}: {e}"));
                    continue;
                }
            };
            let seal = SealKey::new(&crypto::derive_subkey(crypto::CONTEXT_SEAL_KEY, &master));
            let mut plain = match seal.open(&config_aad(&header), sealed, "config") {
                Ok(p) => zeroize::Zeroizing::new(p),
                Err(_) => {
                    observer.warning(&format!(
                        "key file {name} opens with this passphrase but not this repository's config: it was made for another repository, or planted by someone who knows the passphrase; remove it (`cairn key remove {}`)",
                        key_id.short()
                    ));
                    foreign += 1;
                    continue;
                }
            };
            let config = Config::from_bytes(&plain);
            zeroize::Zeroize::zeroize(&mut *plain);
            let mut repo = Self::assemble(backend, master, seal, config?, key_id);
            repo.observer = observer;
            repo.identity = opts.identity.clone().unwrap_or_else(Identity::of_process);
            return Ok(repo);
        }
        let location = backend.location();
        if tried == 0 {
            if let Some(why) = newer {
                return Err(Error::new(
                    ErrorKind::UnsupportedVersion,
                    format!("repository {location}: no key file this Cairn can read: {why}"),
                ));
            }
            return Err(Error::integrity(format!(
                "repository {location}: none of its key files can be tried: {}",
                skipped.join("; ")
            )));
        }
        let mut msg = format!("wrong passphrase for repository {location}: no key file matched");
        if foreign > 0 {
            msg.push_str(&format!(
                " ({foreign} opened with it but belongs to another repository)"
            ));
        }
        if !skipped.is_empty() {
            msg.push_str(&format!(
                "; {} key files were not tried (see the warnings above)",
                skipped.len()
            ));
        }
        Err(Error::new(ErrorKind::WrongPassphrase, msg))
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
    /// Where warnings and events go.
    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.observer
    }
    /// Send warnings and events to `observer` from now on.
    pub fn set_observer(&mut self, observer: Arc<dyn Observer>) {
        self.observer = observer;
    }
    /// Who this session records in locks, snapshots and new key files.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    /// The decoded config.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The chunker for this repository.
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }
    /// The blob ID hasher.
    pub fn id_key(&self) -> &IdKey {
        &self.ids
    }
    /// The object and blob sealing key.
    pub fn seal_key(&self) -> &SealKey {
        &self.seal
    }
    /// Every key file, oldest first (unreadable ones skipped with a
    /// warning). Version 2 key files' information is opened with this
    /// repository's master secret.
    pub fn list_keys(&self) -> Result<Vec<KeyEntry>> {
        let mut out = Vec::new();
        for id in list_ids(&*self.backend, "keys", KeyId::from_hex)? {
            let name = key_name(&id);
            let kf = match self
                .backend
                .get_capped(&name, caps::KEY_FILE)
                .and_then(|b| KeyFile::from_bytes(&b))
            {
                Ok(k) => k,
                Err(e) => {
                    self.observer
                        .warning(&format!("unreadable key file {name}: {e}"));
                    continue;
                }
            };
            let info = match key_file_info(&kf, &self.master) {
                Ok(i) => Some(i),
                Err(e) => {
                    self.observer.warning(&format!(
                        "key file {name} was not made for this repository: {e}; remove it (`cairn key remove {}`)",
                        id.short()
                    ));
                    None
                }
            };
            out.push(KeyEntry {
                id,
                version: kf.version(),
                kdf: kf.kdf,
                info,
            });
        }
        out.sort_by_key(|k| k.info.as_ref().map_or(i64::MAX, |i| i.created));
        Ok(out)
    }

    /// Add a key file for another passphrase; it opens the same repository.
    pub fn add_key(&self, passphrase: &[u8], kdf: KdfParams) -> Result<KeyId> {
        if passphrase.is_empty() {
            return Err(Error::invalid("an empty passphrase is not allowed"));
        }
        let kf = make_key_file_for(&self.master, passphrase, kdf, &self.identity)?;
        // Prove the new key before storing it.
        if unwrap_key_file(&kf, passphrase)?.is_none() {
            return Err(Error::integrity("a freshly made key file does not open"));
        }
        let id = KeyId::random();
        self.backend.put(&key_name(&id), &kf.to_bytes()?)?;
        Ok(id)
    }

    /// Fail with [`ErrorKind::AppendOnly`] if the storage refuses deletes
    /// (an append-only REST server): operations that delete call this
    /// before they write or delete anything.
    pub fn require_deletes(&self) -> Result<()> {
        if self.backend.append_only()? {
            return Err(Error::new(
                crate::error::ErrorKind::AppendOnly,
                "the repository server is append-only: run this on the server, \
                 e.g. `cairn -r /srv/cairn/alice/repo prune`",
            ));
        }
        Ok(())
    }

    /// Remove a key file. The last key, and the key this session opened
    /// with, cannot be removed.
    pub fn remove_key(&self, id: &KeyId) -> Result<()> {
        self.require_deletes()?;
        let keys = self.list_keys()?;
        if !keys.iter().any(|k| k.id == *id) {
            return Err(Error::not_found(format!("no key {}", id.short())));
        }
        if *id == self.key_id {
            return Err(Error::invalid(
                "refusing to remove the key this command opened the repository with; use another passphrase, or `key passwd`",
            ));
        }
        if keys.len() <= 1 {
            return Err(Error::invalid("refusing to remove the last key"));
        }
        self.backend.delete(&key_name(id))
    }

    /// Replace this session's key with one for a new passphrase.
    pub fn change_passphrase(&mut self, new: &[u8], kdf: KdfParams) -> Result<KeyId> {
        self.require_deletes()?;
        let old = self.key_id;
        let id = self.add_key(new, kdf)?;
        self.key_id = id;
        self.backend.delete(&key_name(&old))?;
        Ok(id)
    }

    /// How long taking a lock may wait for other holders (default: not at all).
    pub fn set_lock_wait(&mut self, wait: std::time::Duration) {
        self.lock_wait = wait;
    }

    /// See [`Repository::set_lock_wait`].
    pub fn lock_wait(&self) -> std::time::Duration {
        self.lock_wait
    }

    /// The key file this session opened with.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
    /// The loaded index.
    pub fn index(&self) -> &Index {
        &self.index
    }
    /// The loaded index, mutably (to add packs written by this process).
    pub fn index_mut(&mut self) -> &mut Index {
        &mut self.index
    }

    /// Seal and store a named object (index, snapshot, lock).
    pub fn save_object(
        &self,
        prefix: &'static [u8; 16],
        name: &str,
        id: &[u8; 32],
        plain: &[u8],
    ) -> Result<()> {
        let sealed = self.seal.seal(&aad::object(prefix, id), plain);
        check_cap_before_write(name, sealed.len(), caps::for_object(prefix))?;
        self.backend.put(name, &sealed)
    }

    /// Load and open a named object. A copy that fails authentication is
    /// evicted from any local cache and fetched once more.
    pub fn load_object(
        &self,
        prefix: &'static [u8; 16],
        name: &str,
        id: &[u8; 32],
    ) -> Result<Vec<u8>> {
        let aad = aad::object(prefix, id);
        let cap = caps::for_object(prefix);
        let mut raw = self.backend.get_capped(name, cap)?;
        if self.seal.open_in_place(&aad, &mut raw, name).is_ok() {
            return Ok(raw);
        }
        self.backend.evict(name);
        let mut raw = self.backend.get_capped(name, cap)?;
        self.seal.open_in_place(&aad, &mut raw, name)?;
        Ok(raw)
    }

    /// Every index file's ID.
    pub fn list_index_files(&self) -> Result<Vec<IndexId>> {
        list_ids(&*self.backend, "index", IndexId::from_hex)
    }

    /// Load one index file.
    pub fn load_index_file(&self, id: &IndexId) -> Result<IndexFile> {
        let plain = self.load_object(aad::INDEX, &index_name(id), id.as_bytes())?;
        IndexFile::from_bytes(&plain).map_err(|e| e.context(format!("index file {id}")))
    }

    /// Store a new index file; returns its ID.
    pub fn save_index_file(&self, file: &IndexFile) -> Result<IndexId> {
        let id = IndexId::random();
        self.save_object(
            aad::INDEX,
            &index_name(&id),
            id.as_bytes(),
            &file.to_bytes()?,
        )?;
        Ok(id)
    }

    /// Read every index file (in parallel) and sort them by what a reader
    /// may trust: index files named in the `supersedes` list of another
    /// readable index file are set apart and must not be used (FORMAT.md
    /// §5.4): they were replaced by a prune or `repair index`, and are
    /// either left by one that was interrupted, or copied back. Damaged and
    /// vanished index files are set apart too; other failures (I/O) fail.
    pub fn load_index_files(&self) -> Result<IndexFiles> {
        Ok(inventory::load_index_files(self)?.0)
    }

    /// Load every index file that is not superseded into the in-memory
    /// index. A damaged index file is skipped with a warning: it costs the
    /// blobs it lists (backups store them again, restores report the files
    /// that need them), not the whole repository.
    pub fn load_index(&mut self) -> Result<()> {
        let files = self.load_index_files()?;
        self.install_index(files, None);
        Ok(())
    }

    /// Load the index as [`Repository::load_index`] does, but trust only
    /// packs the storage lists now (one listing of `data/`): an index entry
    /// whose pack is gone — a replayed old index file, a pack deleted by
    /// hand or by a damaged disk — must not make a writer deduplicate
    /// against it. Writers (backup, copy, repair) load the index this way;
    /// a blob whose pack is missing is then simply not stored, and is
    /// stored again. Returns the listing: every pack on storage, with its
    /// size.
    pub fn load_index_present(&mut self) -> Result<HashMap<PackId, u64>> {
        let files = self.load_index_files()?;
        let present = self.list_packs()?;
        let missing = self.install_index(files, Some(&present));
        if !missing.is_empty() {
            self.observer.warning(&format!(
                "{} packs listed in the index are missing from the repository (e.g. pack {}); their blobs are not trusted and are stored again when needed; run `cairn check`",
                missing.len(),
                missing[0].short()
            ));
        }
        Ok(present)
    }

    /// Build the in-memory index from the live index files, skipping packs
    /// not in `present` (when given); returns the skipped packs.
    fn install_index(
        &mut self,
        files: IndexFiles,
        present: Option<&HashMap<PackId, u64>>,
    ) -> Vec<PackId> {
        for (id, e) in &files.unreadable {
            self.observer.warning(&format!(
                "skipping index file {}: {e}; run `cairn check`",
                id.short()
            ));
        }
        let mut index = Index::new();
        let mut missing = Vec::new();
        for (_, f) in files.live {
            for p in f.packs {
                if present.is_some_and(|on_disk| !on_disk.contains_key(&p.id)) {
                    missing.push(p.id);
                    continue;
                }
                index.add_pack(p.id, &p.blobs);
            }
        }
        index.finalize();
        self.index = index;
        missing.sort();
        missing.dedup();
        missing
    }

    /// Every pack the storage lists, with its size (one listing of
    /// `data/`; objects whose name is not a pack's are left out).
    pub fn list_packs(&self) -> Result<HashMap<PackId, u64>> {
        let mut out = HashMap::new();
        for o in self.backend.list("data")? {
            let file = o.name.rsplit('/').next().unwrap_or("");
            if let Ok(id) = PackId::from_hex(file)
                && pack_name(&id) == o.name
            {
                out.insert(id, o.size);
            }
        }
        Ok(out)
    }

    /// Index the packs that are stored but that no index file lists — the
    /// work of a backup or copy that was killed before it could index it —
    /// so the caller deduplicates against them instead of storing their
    /// blobs again. Each pack's header is read and authenticated; a pack
    /// whose header does not open is left alone (`check` reports it). Runs
    /// only while the caller's lock is the only live lock: the packs of a
    /// writer that is still running are that writer's to index. Returns the
    /// number of packs adopted. The index must be loaded.
    /// `present` is a listing of the packs made after the index was loaded
    /// ([`Repository::load_index_present`] returns one), or `None` to list
    /// them here.
    pub fn adopt_unindexed_packs(
        &mut self,
        present: Option<&HashMap<PackId, u64>>,
        lock: &lock::RepoLock,
    ) -> Result<u64> {
        let listed;
        let on_storage = match present {
            Some(p) => p,
            None => {
                listed = self.list_packs()?;
                &listed
            }
        };
        let indexed: std::collections::HashSet<PackId> =
            self.index.packs().iter().copied().collect();
        let orphans: Vec<(PackId, u64)> = on_storage
            .iter()
            .filter(|(id, _)| !indexed.contains(id))
            .map(|(id, size)| (*id, *size))
            .collect();
        if orphans.is_empty() {
            return Ok(0);
        }
        // Listed after the packs: a writer whose packs are in that listing
        // took its lock before storing them, so its lock is seen here.
        if lock.others_present(self)? {
            return Ok(0);
        }
        let headers: Vec<(PackId, Result<Vec<PackEntry>>)> = orphans
            .par_iter()
            .map(|(id, size)| (*id, self.load_pack_header(id, *size)))
            .collect();
        let mut packs = Vec::new();
        for (id, h) in headers {
            match h {
                Ok(entries) => {
                    let mut offset = 0u32;
                    let mut blobs = Vec::with_capacity(entries.len());
                    for e in entries {
                        blobs.push(crate::format::index::IndexBlob {
                            blob_type: e.blob_type,
                            compression: e.compression,
                            id: e.id,
                            offset,
                            sealed_len: e.sealed_len,
                            raw_len: e.raw_len,
                        });
                        offset = offset.saturating_add(e.sealed_len);
                    }
                    packs.push(crate::format::index::IndexPack { id, blobs });
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => self.observer.warning(&format!(
                    "pack {} is in no index file and its header cannot be read: {e}; run `cairn check`",
                    id.short()
                )),
            }
        }
        let adopted = packs.len() as u64;
        for chunk in packs.chunks(4096) {
            lock.verify()?;
            self.save_index_file(&IndexFile {
                packs: chunk.to_vec(),
                supersedes: Vec::new(),
            })?;
        }
        for p in &packs {
            self.index.add_pack(p.id, &p.blobs);
        }
        self.index.finalize();
        Ok(adopted)
    }

    /// Read and authenticate a pack's header; `size` is the pack's length.
    /// The last [`HEADER_READ_AHEAD`] bytes (the header and its length
    /// trailer, for a pack of up to about 1500 blobs) come in one request;
    /// only a larger header costs a second one, for the part before them.
    pub fn load_pack_header(&self, pack: &PackId, size: u64) -> Result<Vec<PackEntry>> {
        let name = pack_name(pack);
        let ahead = size.min(HEADER_READ_AHEAD);
        let tail = if size < (pack::TRAILER_LEN + crypto::SEAL_OVERHEAD) as u64 {
            Vec::new()
        } else {
            self.backend.get_range(&name, size - ahead, ahead)?
        };
        let (entries, _) = self.header_in_tail(pack, size, &tail, &|offset, len| {
            self.backend.get_range(&name, offset, len)
        })?;
        Ok(entries)
    }

    /// The header of a pack read whole (`bytes` is all of it), judged as
    /// [`Repository::load_pack_header`] judges one read from its tail (the
    /// same errors for the same damage), with the length of its blob
    /// region (the bytes before the header).
    pub fn pack_header_in(&self, pack: &PackId, bytes: &[u8]) -> Result<(Vec<PackEntry>, u64)> {
        self.header_in_tail(pack, bytes.len() as u64, bytes, &|_, _| {
            Err(Error::integrity(format!(
                "pack {pack}: its header lies outside the pack"
            )))
        })
    }

    /// Authenticate and decode the header of a pack of `size` bytes from
    /// the last bytes of the pack (`tail`); `fetch(offset, len)` reads the
    /// part of a header that begins before them. Returns the entries and
    /// the length of the blob region.
    fn header_in_tail(
        &self,
        pack: &PackId,
        size: u64,
        tail: &[u8],
        fetch: &dyn Fn(u64, u64) -> Result<Vec<u8>>,
    ) -> Result<(Vec<PackEntry>, u64)> {
        let what = format!("pack {pack}");
        if size < (pack::TRAILER_LEN + crypto::SEAL_OVERHEAD) as u64 {
            return Err(Error::integrity(format!("{what}: only {size} bytes")));
        }
        let trailer_at = tail.len().checked_sub(pack::TRAILER_LEN).ok_or_else(|| {
            Error::integrity(format!("{what}: read {} bytes of its tail", tail.len()))
        })?;
        let mut len = [0u8; 4];
        len.copy_from_slice(&tail[trailer_at..]);
        let hlen = u64::from(u32::from_le_bytes(len));
        if hlen + 4 > size || hlen < crypto::SEAL_OVERHEAD as u64 || hlen > caps::PACK_HEADER {
            return Err(Error::integrity(format!(
                "{what}: header length {hlen} does not fit its {size} bytes"
            )));
        }
        let mut header = if hlen <= trailer_at as u64 {
            tail[trailer_at - hlen as usize..trailer_at].to_vec()
        } else {
            // The header begins before the bytes read ahead: fetch the rest.
            let missing = hlen - trailer_at as u64;
            let mut head = fetch(size - 4 - hlen, missing)?;
            head.extend_from_slice(&tail[..trailer_at]);
            head
        };
        self.seal.open_in_place(
            &aad::object(aad::PACK_HEADER, pack.as_bytes()),
            &mut header,
            &what,
        )?;
        let entries = pack::header_from_bytes(&header).map_err(|e| e.context(&what))?;
        let region = size - 4 - hlen;
        pack::entry_offsets(&entries, region).map_err(|e| e.context(&what))?;
        Ok((entries, region))
    }

    /// Where a blob is stored.
    pub fn locate(&self, t: BlobType, id: &BlobId) -> Result<Location> {
        self.index
            .get(t, id)
            .ok_or_else(|| Error::integrity(format!("{} blob {id} is not in the index", t.name())))
    }

    /// Read, authenticate, decompress and re-hash one blob.
    pub fn read_blob(&self, t: BlobType, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self.locate(t, id)?;
        self.read_blob_at(t, id, &loc)
    }

    /// Read a blob from a known location (tree blobs through the local
    /// cache when there is one; cached bytes are authenticated like any).
    /// The plaintext is hashed again and must hash to `id`: a blob sealed
    /// with other content than its ID says (by a faulty writer) is an
    /// integrity error, never content handed out under the wrong ID.
    pub fn read_blob_at(&self, t: BlobType, id: &BlobId, loc: &Location) -> Result<Vec<u8>> {
        let cache = self.tree_cache.as_ref().filter(|_| t == BlobType::Tree);
        let cache_name = tree_cache_name(id);
        if let Some(c) = cache
            && let Some(mut buf) = c.get(&cache_name)
        {
            if self
                .open_blob(t, id, loc.compression, loc.raw_len, &mut buf)
                .and_then(|()| self.check_blob_id(t, id, &buf))
                .is_ok()
            {
                return Ok(buf);
            }
            c.remove(&cache_name);
        }
        let name = pack_name(&loc.pack);
        let mut buf =
            self.backend
                .get_range(&name, u64::from(loc.offset), u64::from(loc.sealed_len))?;
        if let Some(c) = cache {
            c.put(&cache_name, &buf);
        }
        self.open_blob(t, id, loc.compression, loc.raw_len, &mut buf)
            .and_then(|()| self.check_blob_id(t, id, &buf))
            .map_err(|e| e.context(format!("pack {}", loc.pack)))?;
        Ok(buf)
    }

    /// Check that `plain` hashes to `id` (keyed BLAKE3, §4.4 of FORMAT.md).
    pub fn check_blob_id(&self, t: BlobType, id: &BlobId, plain: &[u8]) -> Result<()> {
        if self.ids.blob_id(plain) == *id {
            return Ok(());
        }
        Err(Error::integrity(format!(
            "{} blob {id}: its content does not hash to its ID (it was stored wrongly, \
             e.g. by a backup that read a file while it was rewritten); \
             `cairn check --read-data` lists every such blob",
            t.name()
        )))
    }

    /// Keep a just-written sealed tree blob in the local cache (if any), so
    /// the next backup's parent walk needs no download.
    pub fn cache_tree(&self, id: &BlobId, sealed: &[u8]) {
        if let Some(c) = &self.tree_cache {
            c.put(&tree_cache_name(id), sealed);
        }
    }

    /// Authenticate and decompress a sealed blob in place.
    pub fn open_blob(
        &self,
        t: BlobType,
        id: &BlobId,
        compression: Compression,
        raw_len: u32,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let what = || format!("{} blob {id}", t.name());
        self.seal
            .open_in_place_naming(&aad::blob(t, compression, id), buf, &what)?;
        if compression == Compression::Zstd {
            let out = decompress(buf, raw_len as usize)
                .map_err(|e| Error::integrity(format!("{}: {e}", what())))?;
            *buf = out;
        }
        if buf.len() != raw_len as usize {
            return Err(Error::integrity(format!(
                "{}: plaintext is {} bytes, the index says {raw_len}",
                what(),
                buf.len()
            )));
        }
        Ok(())
    }

    /// Load and decode a tree blob.
    pub fn load_tree(&self, id: &BlobId) -> Result<Tree> {
        let raw = self.read_blob(BlobType::Tree, id)?;
        Tree::from_bytes(&raw).map_err(|e| e.context(format!("tree {id}")))
    }

    /// Every snapshot ID.
    pub fn list_snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        list_ids(&*self.backend, "snapshots", SnapshotId::from_hex)
    }

    /// Load one snapshot.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let plain = self.load_object(aad::SNAPSHOT, &snapshot_name(id), id.as_bytes())?;
        Snapshot::from_bytes(&plain).map_err(|e| e.context(format!("snapshot {id}")))
    }

    /// Store a snapshot: the commit point. Callers must have stored every
    /// pack and index file it references first.
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        let id = SnapshotId::random();
        self.save_object(
            aad::SNAPSHOT,
            &snapshot_name(&id),
            id.as_bytes(),
            &snap.to_bytes()?,
        )?;
        Ok(id)
    }

    /// Every readable snapshot, oldest first, and the snapshot objects that
    /// cannot be read (garbage, bit rot, a half-uploaded file: integrity
    /// errors), with why. A snapshot that vanished between the listing and
    /// the read (a concurrent `forget`) is in neither list; any other
    /// failure (I/O, network) is an error, so a transient outage never
    /// looks like a missing snapshot.
    pub fn load_snapshots_and_damage(&self) -> Result<(SnapshotList, Vec<(SnapshotId, Error)>)> {
        let ids = self.list_snapshot_ids()?;
        let loaded: Vec<(SnapshotId, Result<Snapshot>)> = ids
            .par_iter()
            .map(|id| (*id, self.load_snapshot(id)))
            .collect();
        let mut out = Vec::with_capacity(loaded.len());
        let mut damaged = Vec::new();
        for (id, r) in loaded {
            match r {
                Ok(s) => out.push((id, s)),
                Err(e) if e.is_not_found() => {}
                Err(e) if e.kind() == ErrorKind::Integrity => damaged.push((id, e)),
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        damaged.sort_by_key(|(id, _)| *id);
        Ok((out, damaged))
    }

    /// Every readable snapshot, oldest first. One unreadable snapshot object
    /// must not stop every command: it is skipped with a warning naming it
    /// (`check` names it too, and `prune` refuses to run while it is there).
    pub fn load_snapshots(&self) -> Result<SnapshotList> {
        let (ok, damaged) = self.load_snapshots_and_damage()?;
        for (id, e) in damaged {
            self.observer.warning(&format!(
                "skipping unreadable snapshot {}: {e}; run `cairn check`",
                id.short()
            ));
        }
        Ok(ok)
    }

    /// Resolve `latest` or a unique hex prefix (at least 4 characters).
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        self.select_snapshot(spec, &SnapshotFilter::default())
    }

    /// Resolve a snapshot: `latest` is the newest snapshot that passes
    /// `filter` (host, tags, paths, and "at or before" a time); anything
    /// else is a unique hex prefix of at least 4 characters, which must pass
    /// the filter too.
    pub fn select_snapshot(
        &self,
        spec: &str,
        filter: &SnapshotFilter,
    ) -> Result<(SnapshotId, Snapshot)> {
        if spec == "latest" {
            let all = self.load_snapshots()?;
            let any = !all.is_empty();
            return all
                .into_iter()
                .rfind(|(_, s)| filter.matches(s))
                .ok_or_else(|| {
                    Error::not_found(if any && !filter.is_empty() {
                        format!("no snapshot matches {}", filter.describe())
                    } else {
                        "the repository has no snapshots".to_string()
                    })
                });
        }
        let spec_l = spec.to_ascii_lowercase();
        if spec_l.len() < 4 || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "{spec:?} is not a snapshot ID: give `latest` or at least 4 hex characters"
            )));
        }
        let matches: Vec<SnapshotId> = self
            .list_snapshot_ids()?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&spec_l))
            .collect();
        let (id, snap) = match matches.as_slice() {
            [id] => (*id, self.load_snapshot(id)?),
            [] => return Err(Error::not_found(format!("no snapshot matches {spec:?}"))),
            _ => {
                return Err(Error::invalid(format!(
                    "{spec:?} matches {} snapshots; give more characters",
                    matches.len()
                )));
            }
        };
        if !filter.matches(&snap) {
            return Err(Error::not_found(format!(
                "snapshot {} does not match {}",
                id.short(),
                filter.describe()
            )));
        }
        Ok((id, snap))
    }
}

/// Snapshots with their IDs, as loaded.
pub type SnapshotList = Vec<(SnapshotId, Snapshot)>;

/// Which snapshots a command considers.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Only snapshots of this host.
    pub host: Option<String>,
    /// Only snapshots carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only snapshots that include this path among their backed-up paths.
    pub path: Option<Vec<u8>>,
    /// Only snapshots taken at or before this time (ns since the epoch).
    pub as_of_ns: Option<i64>,
    /// Only snapshots holding this path: one of their backed-up paths is
    /// the path itself or a directory above it (a snapshot of `/srv/a`
    /// holds `/srv/a/config.json`). What `latest` means when a command is
    /// asked for a path.
    pub holding: Option<Vec<u8>>,
}

impl SnapshotFilter {
    /// True if no condition is set.
    pub fn is_empty(&self) -> bool {
        self.host.is_none()
            && self.tags.is_empty()
            && self.path.is_none()
            && self.as_of_ns.is_none()
            && self.holding.is_none()
    }

    /// True if `s` passes every condition.
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.host.as_ref().is_none_or(|h| &s.hostname == h)
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self.path.as_ref().is_none_or(|p| s.paths.contains(p))
            && self.as_of_ns.is_none_or(|t| s.time_ns <= t)
            && self
                .holding
                .as_ref()
                .is_none_or(|p| s.paths.iter().any(|root| path_holds(root, p)))
    }

    /// The conditions, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h:?}"));
        }
        for t in &self.tags {
            parts.push(format!("tag {t:?}"));
        }
        if let Some(p) = &self.path {
            parts.push(format!("path {:?}", String::from_utf8_lossy(p)));
        }
        if let Some(t) = self.as_of_ns {
            let ts = jiff::Timestamp::from_nanosecond(i128::from(t)).unwrap_or_default();
            parts.push(format!("taken at or before {ts}"));
        }
        if let Some(p) = &self.holding {
            parts.push(format!("holding {:?}", String::from_utf8_lossy(p)));
        }
        if parts.is_empty() {
            "any snapshot".into()
        } else {
            parts.join(", ")
        }
    }
}

/// True if the backed-up path `root` is `path` or a directory above it,
/// component by component (`/srv/a` holds `/srv/a/x`, not `/srv/ab`; `/`
/// holds everything).
fn path_holds(root: &[u8], path: &[u8]) -> bool {
    let parts = |p: &'_ [u8]| -> Vec<Vec<u8>> {
        p.split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(<[u8]>::to_vec)
            .collect()
    };
    let (root, path) = (parts(root), parts(path));
    path.starts_with(&root)
}

/// Parse a point in time: an RFC 3339 timestamp, a local date and time
/// (`2026-11-20 03:00`, `2026-11-20T03:00:00`), a local date (`2026-11-20`,
/// meaning its end), or a span into the past (`2 days ago`, `3h ago`).
/// Returns nanoseconds since the epoch.
pub fn parse_time(text: &str, now: jiff::Zoned) -> Result<i64> {
    let t = text.trim();
    let bad = || {
        Error::invalid(format!(
            "cannot read the time {text:?}: use e.g. \"2026-11-20 03:00\", \"2026-11-20\" or \"2 days ago\""
        ))
    };
    let to_ns = |ts: jiff::Timestamp| i64::try_from(ts.as_nanosecond()).map_err(|_| bad());
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return to_ns(ts);
    }
    let tz = now.time_zone().clone();
    // A bare date (YYYY-MM-DD) means its end of day; jiff would also read
    // it as midnight, and reads dates out of date-times, so check the shape.
    let bare_date = t.len() == 10 && t.as_bytes().get(4) == Some(&b'-');
    if let Some(d) = bare_date
        .then(|| t.parse::<jiff::civil::Date>().ok())
        .flatten()
    {
        let end = d.to_datetime(jiff::civil::time(23, 59, 59, 999_999_999));
        return to_ns(end.to_zoned(tz).map_err(|_| bad())?.timestamp());
    }
    if let Ok(dt) = t.parse::<jiff::civil::DateTime>() {
        return to_ns(dt.to_zoned(tz).map_err(|_| bad())?.timestamp());
    }
    if let Ok(span) = t.parse::<jiff::Span>() {
        // "2 days ago" parses as a negative span; "2 days" means the same.
        let span = if span.signum() > 0 {
            span.negate()
        } else {
            span
        };
        return to_ns(now.checked_add(span).map_err(|_| bad())?.timestamp());
    }
    Err(bad())
}

/// Writers refuse objects that readers would refuse to read.
pub fn check_cap_before_write(name: &str, len: usize, cap: u64) -> Result<()> {
    if len as u64 > cap {
        return Err(Error::invalid(format!(
            "refusing to store {name}: {len} bytes is more than the {cap} readers accept"
        )));
    }
    Ok(())
}

fn config_aad(header: &[u8]) -> Vec<u8> {
    let mut a = b"cairn/config/v1\0".to_vec();
    a.extend_from_slice(header);
    a
}

fn list_ids<T>(b: &dyn Backend, dir: &str, parse: fn(&str) -> Result<T>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for o in b.list(dir)? {
        let file = o.name.rsplit('/').next().unwrap_or("");
        if let Ok(id) = parse(file) {
            out.push(id);
        }
    }
    Ok(out)
}

thread_local! {
    static ZSTD_D: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompress one zstd frame of known plaintext length, refusing to grow
/// past it (a hostile frame cannot make us allocate more). Uses one
/// decompression context per thread.
pub fn decompress(data: &[u8], raw_len: usize) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw_len);
    let n = ZSTD_D.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
        }
        match slot.as_mut() {
            Some(d) => d
                .decompress_to_buffer(data, &mut out)
                .map_err(|e| format!("zstd: {e}")),
            None => Err("zstd: no context".to_string()),
        }
    })?;
    if n != raw_len {
        return Err(format!("decompressed to {n} bytes, expected {raw_len}"));
    }
    Ok(out)
}

/// A repository on `backend` with the cheap test key (unit tests only).
#[cfg(test)]
pub(crate) fn test_repo_on(backend: Arc<dyn Backend>) -> Repository {
    let opts = InitOptions {
        kdf: KdfParams::INSECURE_TEST,
        ..InitOptions::default()
    };
    #[allow(clippy::unwrap_used)]
    Repository::init(backend, b"pw", &opts).unwrap()
}

/// A repository in memory with the cheap test key (unit tests only).
#[cfg(test)]
pub(crate) fn test_repo() -> Repository {
    test_repo_on(Arc::new(crate::backend::mem::MemBackend::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-process memo of wrapping keys gives what Argon2id gives, for
    /// each distinct passphrase, salt and cost.
    #[test]
    fn remembered_wrapping_keys_are_the_derived_ones() {
        let kdf = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let direct =
            |p: &[u8], s: &[u8], k| *crypto::derive_wrapping_key(p, s, k).unwrap().expose();
        let memo = |p: &[u8], s: &[u8], k| *wrapping_key(p, s, k).unwrap().expose();
        for _ in 0..2 {
            assert_eq!(
                memo(b"pw", b"salt-one-16bytes", kdf),
                direct(b"pw", b"salt-one-16bytes", kdf)
            );
            assert_eq!(
                memo(b"pw", b"salt-two-16bytes", kdf),
                direct(b"pw", b"salt-two-16bytes", kdf)
            );
            assert_eq!(
                memo(b"other", b"salt-one-16bytes", kdf),
                direct(b"other", b"salt-one-16bytes", kdf)
            );
            let more = KdfParams {
                iterations: 2,
                ..kdf
            };
            assert_eq!(
                memo(b"pw", b"salt-one-16bytes", more),
                direct(b"pw", b"salt-one-16bytes", more)
            );
        }
        assert_ne!(
            memo(b"pw", b"salt-one-16bytes", kdf),
            memo(b"pw", b"salt-two-16bytes", kdf)
        );
    }

    #[test]
    fn times_in_every_accepted_form() {
        let now: jiff::Zoned = "2026-11-24T12:00:00+00:00[UTC]".parse().unwrap();
        let ns = |s: &str| parse_time(s, now.clone()).unwrap();
        let at =
            |s: &str| i64::try_from(s.parse::<jiff::Timestamp>().unwrap().as_nanosecond()).unwrap();
        assert_eq!(ns("2026-11-20T03:00:00Z"), at("2026-11-20T03:00:00Z"));
        assert_eq!(ns("2026-11-20 03:00"), at("2026-11-20T03:00:00Z"));
        assert_eq!(ns("2026-11-20T03:00:00"), at("2026-11-20T03:00:00Z"));
        assert_eq!(ns("2026-11-20"), at("2026-11-20T23:59:59.999999999Z"));
        assert_eq!(ns("2 days ago"), at("2026-11-22T12:00:00Z"));
        assert_eq!(ns("2 days"), at("2026-11-22T12:00:00Z"));
        assert_eq!(ns("3h ago"), at("2026-11-24T09:00:00Z"));
        for bad in ["", "yesterday-ish", "2026-13-40", "soon"] {
            assert!(parse_time(bad, now.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_combine() {
        let mut s = crate::format::snapshot::Snapshot {
            time_ns: 100,
            utc_offset_s: 0,
            tree: BlobId([0; 32]),
            parent: None,
            hostname: "h".into(),
            username: "u".into(),
            paths: vec![b"/a".to_vec()],
            tags: vec!["x".into(), "y".into()],
            program_version: String::new(),
            summary: Default::default(),
            extensions: vec![],
        };
        let f = SnapshotFilter {
            host: Some("h".into()),
            tags: vec!["x".into(), "y".into()],
            path: Some(b"/a".to_vec()),
            as_of_ns: Some(100),
            holding: Some(b"/a/b/c".to_vec()),
        };
        assert!(f.matches(&s));
        s.time_ns = 101;
        assert!(!f.matches(&s));
        s.time_ns = 99;
        s.tags.pop();
        assert!(!f.matches(&s));
        assert!(SnapshotFilter::default().matches(&s));
    }

    #[test]
    fn a_snapshot_holds_the_paths_below_its_backed_up_paths() {
        assert!(path_holds(b"/a", b"/a"));
        assert!(path_holds(b"/a", b"/a/b/c"));
        assert!(path_holds(b"/a/", b"a/b"));
        assert!(path_holds(b"/", b"/anything"));
        assert!(!path_holds(b"/a", b"/ab"));
        assert!(!path_holds(b"/a/b", b"/a"));
        assert!(!path_holds(b"/b", b"/a/b"));
    }
}
