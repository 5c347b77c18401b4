//! Hostile key files and hostile object sizes (issue 10, item 6).
//!
//! Whoever can write to the storage chooses the Argon2id costs of any key
//! file they plant, and the size of any object. These tests plant such
//! objects the way an attacker would (with the format's primitives, not
//! through Cairn's key management) and check that opening neither runs
//! Argon2id outside the limits, nor lets a planted key decide the outcome,
//! nor reads an object larger than its kind may be.

mod common;

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn::backend::local::LocalBackend;
use cairn::backend::{Backend, ObjectInfo};
use cairn::crypto::{self, KdfParams, SealKey, Secret32};
use cairn::format::caps;
use cairn::format::keyfile::{KeyFile, KeyInfo, KeyMeta, WRAPPED_LEN};
use cairn::repo::{OpenOptions, Repository};
use common::*;

/// 1 TiB: a sparse file of this size costs nothing on disk, and reading it
/// whole would exhaust any machine.
const HUGE: u64 = 1 << 40;

/// Plant `keys/<hex>` as an attacker would: a key file with costs `kdf`
/// wrapping a random master secret under `pass` (or, with `None`, random
/// bytes where the wrapped secret goes: for costs too high to compute).
fn plant_key(repo: &Path, hex: &str, kdf: KdfParams, pass: Option<&[u8]>) -> String {
    let mut kf = KeyFile {
        kdf,
        salt: crypto::random_array(),
        wrapped: Vec::new(),
        meta: KeyMeta::Clear(KeyInfo {
            created: 0,
            hostname: "attacker".into(),
            username: "mallory".into(),
        }),
    };
    kf.wrapped = match pass {
        Some(p) => {
            let wrapping = crypto::derive_wrapping_key(p, &kf.salt, kdf).unwrap();
            SealKey::new(&wrapping).seal(&kf.header_bytes().unwrap(), Secret32::random().expose())
        }
        None => crypto::random_array::<WRAPPED_LEN>().to_vec(),
    };
    let name = format!("keys/{hex}");
    fs::write(repo.join(&name), kf.to_bytes_unchecked().unwrap()).unwrap();
    name
}

fn hex(n: u64) -> String {
    format!("{n:064x}")
}

fn kdf(memory_kib: u32, iterations: u32) -> KdfParams {
    KdfParams {
        memory_kib,
        iterations,
        parallelism: 1,
    }
}

/// A repository whose key has the default cost, made and opened without
/// the insecure test switch: what every release build does.
fn standard_env() -> Env {
    let env = Env::uninit();
    success(
        env.cmd()
            .env_remove("CAIRN_INSECURE_TEST_KDF")
            .arg("init")
            .output()
            .unwrap(),
    );
    env
}

fn run_standard(env: &Env, args: &[&str]) -> (Option<i32>, String, String) {
    let out = env
        .cmd()
        .env_remove("CAIRN_INSECURE_TEST_KDF")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The oracle: a planted 8 KiB × 1 pass key wrapping a random secret under
/// a guessed passphrase. Were it tried, a right guess would make `open`
/// fail ("authentication failed") where a wrong one lets it succeed, at
/// almost no cost to the attacker per guess. It is not tried at all, so
/// both guesses give the same result: the repository opens, with a warning
/// that names the planted file.
#[test]
fn a_planted_cheap_key_file_is_not_tried_so_open_is_no_passphrase_oracle() {
    let env = standard_env();
    let mut results = Vec::new();
    for guess in [PASSWORD, "a wrong guess"] {
        let name = plant_key(&env.repo, &hex(1), kdf(8, 1), Some(guess.as_bytes()));
        let (code, stdout, stderr) = run_standard(&env, &["snapshots"]);
        assert_eq!(code, Some(0), "guess {guess:?}: {stderr}");
        assert!(
            stderr.contains(&format!("warning: not trying key file {name}: its cost (Argon2id 8 KiB, 1 pass, 1 lane) is below the minimum")),
            "{stderr}"
        );
        results.push((code, stdout, stderr));
    }
    assert_eq!(
        results[0], results[1],
        "a right guess must look like a wrong one"
    );
}

/// A planted key that opens with the passphrase (the attacker knows or
/// guessed it) but wraps another secret: it is skipped with a warning, the
/// next key is tried, and the warning's advice removes it.
#[test]
fn a_planted_key_that_opens_with_the_passphrase_but_not_the_config_is_skipped() {
    let env = Env::new();
    // Named to sort first, and as cheap as the real key: tried first.
    let name = plant_key(
        &env.repo,
        &hex(1),
        KdfParams::INSECURE_TEST,
        Some(PASSWORD.as_bytes()),
    );
    let out = env.run(&["snapshots"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "warning: key file {name} opens with this passphrase but not this repository's config"
        )) && err.contains("`cairn key remove 00000000`"),
        "{err}"
    );
    env.ok(&["key", "remove", "00000000"]);
    assert!(!env.repo.join(&name).exists());
    let out = env.run(&["snapshots"]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // With the planted key the only one that opens, the passphrase is
    // still "wrong" for this repository (exit 12), and the message says why.
    plant_key(
        &env.repo,
        &hex(1),
        KdfParams::INSECURE_TEST,
        Some(b"another passphrase"),
    );
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "another passphrase")
        .arg("snapshots")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{err}");
    assert!(
        err.contains("no key file matched (1 opened with it but belongs to another repository)"),
        "{err}"
    );
}

/// Key files demanding hours of Argon2id (4 GiB × 1000 passes, the most the
/// decoder accepts) or just over the ceiling are not tried; the repository
/// opens at once with the real key.
#[test]
fn a_key_file_with_hours_of_argon2_work_is_not_tried() {
    let env = Env::new();
    let huge = plant_key(&env.repo, &hex(1), kdf(4 << 20, 1000), None);
    let over_memory = plant_key(&env.repo, &hex(2), kdf((2 << 20) + 1024, 1), None);
    let over_passes = plant_key(&env.repo, &hex(3), kdf(64 << 10, 21), None);
    let out = env.run(&["snapshots"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for (name, cost) in [
        (huge, "Argon2id 4 GiB, 1000 passes, 1 lane"),
        (over_memory, "Argon2id 2049 MiB, 1 pass, 1 lane"),
        (over_passes, "Argon2id 64 MiB, 21 passes, 1 lane"),
    ] {
        assert!(
            err.contains(&format!(
                "warning: not trying key file {name}: its cost ({cost}) is above the maximum of 2 GiB and 20 passes"
            )),
            "{err}"
        );
    }
}

/// Test keys (64 KiB, 1 pass) come only from the insecure test switch:
/// without it, `init` makes a default-cost key, and a 64 KiB key is refused
/// with a message that names it.
#[test]
fn a_64_kib_test_key_is_refused_without_the_insecure_test_switch() {
    let env = Env::new();
    let keys: serde_json::Value =
        serde_json::from_str(&env.ok(&["key", "list", "--json"])).unwrap();
    let id = keys[0]["id"].as_str().unwrap().to_string();
    assert_eq!(keys[0]["kdf"]["memory_kib"], 64);
    let (code, _, err) = run_standard(&env, &["snapshots"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("none of its key files can be tried")
            && err.contains(&format!("keys/{id}: its cost (Argon2id 64 KiB, 1 pass, 1 lane) is below the minimum of 192 MiB-passes with at least 64 MiB")),
        "{err}"
    );
    env.ok(&["snapshots"]);

    let standard = standard_env();
    let (code, out, err) = run_standard(&standard, &["key", "list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let keys: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(keys[0]["kdf"]["memory_kib"], 64 * 1024);
    assert_eq!(keys[0]["kdf"]["iterations"], 3);
}

/// At most 20 key files are tried, cheapest first: 25 planted cheap keys
/// (named to sort first) crowd the real key out, and the warning names it;
/// 25 planted keys dearer than the real one do not.
#[test]
fn at_most_20_key_files_are_tried_cheapest_first() {
    let env = Env::new();
    let real = fs::read_dir(env.repo.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    for i in 1..=25 {
        plant_key(
            &env.repo,
            &hex(i),
            KdfParams::INSECURE_TEST,
            Some(format!("guess {i}").as_bytes()),
        );
    }
    let out = env.run(&["snapshots"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{err}");
    assert!(
        err.contains("has 26 key files; only the 20 cheapest are tried, not ")
            && err.contains(&format!("keys/{real}"))
            && err.contains("6 key files were not tried"),
        "{err}"
    );
    for i in 1..=25 {
        plant_key(
            &env.repo,
            &hex(i),
            kdf(128, 1),
            Some(format!("guess {i}").as_bytes()),
        );
    }
    let out = env.run(&["snapshots"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("only the 20 cheapest are tried"), "{err}");
}

fn plant_sparse(repo: &Path, name: &str, len: u64) {
    let p = repo.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::File::create(&p).unwrap().set_len(len).unwrap();
}

/// Objects read before they can be authenticated — the config, key files,
/// locks, index files, snapshots — are 1 TiB (sparse) files: each is
/// refused by its size, before any byte is read, with a message naming it.
#[test]
fn hostile_sizes_are_refused_before_reading() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), random_bytes(10_000, 1)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);

    let key = format!("keys/{}", hex(0xff));
    let lock = format!("locks/{}", hex(0xff));
    let index = format!("index/{}", hex(0xff));
    let snapshot = format!("snapshots/{}", hex(0xff));
    for name in [&key, &lock, &index, &snapshot] {
        plant_sparse(&env.repo, name, HUGE);
    }
    let too_big = |name: &str, cap: u64| format!("{name} is {HUGE} bytes, more than the {cap}");

    // A snapshot too large to be read is skipped by `snapshots` with a
    // warning naming it, as any unreadable snapshot is.
    let out = env.run(&["snapshots"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("skipping unreadable snapshot"), "{err}");
    assert!(err.contains(&too_big(&key, caps::KEY_FILE)), "{err}");
    assert!(err.contains(&too_big(&snapshot, caps::SNAPSHOT)), "{err}");
    fs::remove_file(env.repo.join(&snapshot)).unwrap();

    // The key file is skipped, the index file and the lock are ignored
    // with warnings; the real data restores exactly.
    let target = env.path("restored");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&too_big(&key, caps::KEY_FILE)), "{err}");
    assert!(err.contains(&too_big(&index, caps::INDEX_FILE)), "{err}");
    assert!(err.contains(&too_big(&lock, caps::LOCK)), "{err}");
    assert_same_tree(&src, &restored(&target, &src));

    // The config: nothing can be opened, and the message says which object.
    plant_sparse(&env.repo, "config", HUGE);
    let out = env.run(&["snapshots"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot read the repository config")
            && err.contains(&too_big("config", caps::CONFIG)),
        "{err}"
    );
}

/// A pack whose trailer claims a 4 GiB header: refused by the cap on pack
/// headers (1 048 576 entries), not read.
#[test]
fn a_pack_claiming_a_4_gib_header_is_refused_unread() {
    let env = Env::new();
    let repo =
        Repository::open(Arc::new(LocalBackend::new(&env.repo)), PASSWORD.as_bytes()).unwrap();
    let id = cairn::id::PackId([0xab; 32]);
    let name = cairn::repo::pack_name(&id);
    let size = 5u64 << 30;
    plant_sparse(&env.repo, &name, size);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(env.repo.join(&name))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &0xffff_fff0u32.to_le_bytes(), size - 4).unwrap();
    let e = repo.load_pack_header(&id, size).unwrap_err();
    assert_eq!(e.kind(), cairn::ErrorKind::Integrity);
    assert!(
        e.to_string()
            .contains("header length 4294967280 does not fit"),
        "{e}"
    );
}

/// Every read a backend is asked for, recorded; `get_capped` is left to the
/// trait's default (stat, then one ranged read), so every read shows up.
struct Recording {
    inner: LocalBackend,
    whole: Mutex<Vec<String>>,
    ranges: Mutex<Vec<(String, u64)>>,
}

impl Backend for Recording {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> cairn::Result<()> {
        self.inner.create()
    }
    fn list(&self, dir: &str) -> cairn::Result<Vec<ObjectInfo>> {
        self.inner.list(dir)
    }
    fn get(&self, name: &str) -> cairn::Result<Vec<u8>> {
        self.whole.lock().unwrap().push(name.to_string());
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn::Result<Vec<u8>> {
        self.ranges.lock().unwrap().push((name.to_string(), len));
        self.inner.get_range(name, offset, len)
    }
    fn put(&self, name: &str, data: &[u8]) -> cairn::Result<()> {
        self.inner.put(name, data)
    }
    fn delete(&self, name: &str) -> cairn::Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> cairn::Result<u64> {
        self.inner.stat(name)
    }
}

/// Opening, listing keys, taking a lock, loading the index and the
/// snapshots never read an object whole without a size check, and never ask
/// for more bytes than the object's kind may have.
#[test]
fn objects_read_before_authentication_are_never_read_unbounded() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), random_bytes(10_000, 2)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let rec = Arc::new(Recording {
        inner: LocalBackend::new(&env.repo),
        whole: Mutex::default(),
        ranges: Mutex::default(),
    });
    let mut repo =
        Repository::open_with(rec.clone(), PASSWORD.as_bytes(), &OpenOptions::default()).unwrap();
    assert_eq!(repo.list_keys().unwrap().len(), 1);
    let lock = cairn::repo::lock::RepoLock::acquire(&repo, false).unwrap();
    cairn::repo::lock::list_locks(&repo).unwrap();
    repo.load_index().unwrap();
    assert_eq!(repo.load_snapshots().unwrap().len(), 1);
    drop(lock);
    assert_eq!(*rec.whole.lock().unwrap(), Vec::<String>::new());
    let ranges = rec.ranges.lock().unwrap();
    for kind in ["config", "keys/", "locks/", "index/", "snapshots/"] {
        assert!(
            ranges.iter().any(|(n, _)| n.starts_with(kind)),
            "{kind} was read: {ranges:?}"
        );
    }
    for (name, len) in ranges.iter() {
        let cap = match name.split('/').next().unwrap() {
            "config" => caps::CONFIG,
            "keys" => caps::KEY_FILE,
            "locks" => caps::LOCK,
            "index" => caps::INDEX_FILE,
            "snapshots" => caps::SNAPSHOT,
            other => panic!("unexpected read of {other}"),
        };
        assert!(*len <= cap, "{name}: {len} > {cap}");
    }
}
