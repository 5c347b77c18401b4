//! `cairn mount` on a real FUSE mount (as root, with /dev/fuse): a tree
//! compared byte for byte and by metadata through the mount, the layout's
//! listings, unmounting by SIGTERM, SIGINT and `fusermount -u` (exit 0,
//! lock removed), a remote (`rest:`) repository, and the refusals.
//! Without root or /dev/fuse the tests skip, and fail under `CI=true`.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::*;

/// True if this machine can run FUSE tests (root, /dev/fuse); otherwise
/// say so (a failure under `CI=true`).
fn can_mount(test: &str) -> bool {
    if !require(test, &[], true) {
        return false;
    }
    if !Path::new("/dev/fuse").exists() {
        skipped(&format!("{test}: /dev/fuse does not exist"));
        return false;
    }
    true
}

/// True if `path` is a mount point now (per /proc/self/mountinfo).
fn is_mounted(path: &Path) -> bool {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

/// A running `cairn mount`: on drop (a test that failed half-way), the
/// mount is taken down (`fusermount3 -u`, `fusermount -u`, `umount -l`)
/// and the process killed, so no test leaves a mount behind.
struct Mounted {
    child: Option<Child>,
    dir: PathBuf,
    /// Standard error after the "mounted" line, collected by a thread.
    rest: Option<std::thread::JoinHandle<String>>,
}

impl Mounted {
    /// Start `cairn mount DIR EXTRA…` and wait for the line saying the
    /// mount is in place.
    fn start(env: &Env, dir: &Path, extra: &[&str]) -> Mounted {
        let mut child = env
            .std_cmd()
            .arg("mount")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut m = Mounted {
            child: Some(child),
            dir: dir.to_path_buf(),
            rest: None,
        };
        let first = lines.next().map(Result::unwrap).unwrap_or_default();
        assert_eq!(
            first,
            format!(
                "mounted the repository on {0}; Ctrl-C, SIGTERM or `fusermount3 -u {0}` unmounts it",
                dir.display()
            )
        );
        assert!(is_mounted(dir), "{} is not mounted", dir.display());
        m.rest = Some(std::thread::spawn(move || {
            lines.map(|l| l.unwrap() + "\n").collect::<String>()
        }));
        m
    }

    /// Send `sig`, wait for the process; its exit code and the rest of its
    /// standard error.
    fn signal(&mut self, sig: rustix::process::Signal) -> (Option<i32>, String) {
        let child = self.child.as_ref().unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
        self.wait()
    }

    fn wait(&mut self) -> (Option<i32>, String) {
        let status = self.child.take().unwrap().wait().unwrap();
        let err = self.rest.take().unwrap().join().unwrap();
        (status.code(), err)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            for cmd in [
                &["fusermount3", "-u"][..],
                &["fusermount", "-u"],
                &["umount", "-l"],
            ] {
                let _ = std::process::Command::new(cmd[0])
                    .args(&cmd[1..])
                    .arg(&self.dir)
                    .stderr(Stdio::null())
                    .status();
                if !is_mounted(&self.dir) {
                    break;
                }
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, utimensat};
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    utimensat(
        CWD,
        p,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A tree with a big incompressible file, small files, an empty file,
/// nested directories, symlinks, hard links, odd modes, other owners and
/// nanosecond mtimes.
fn make_tree(src: &Path) -> Vec<u8> {
    let big = random_bytes(7 * 1024 * 1024 + 12_345, 7);
    std::fs::create_dir_all(src.join("dir/deeper")).unwrap();
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("small.txt"), b"hello, mount\n").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(src.join("dir/a.txt"), random_bytes(3000, 1)).unwrap();
    std::fs::write(src.join("dir/deeper/b.txt"), random_bytes(70_000, 2)).unwrap();
    std::fs::write(src.join("dir/linked"), b"two names, one inode\n").unwrap();
    std::fs::hard_link(src.join("dir/linked"), src.join("linked-too")).unwrap();
    std::os::unix::fs::symlink("dir/a.txt", src.join("to-a")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", src.join("dangling")).unwrap();
    std::fs::set_permissions(
        src.join("small.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(
        src.join("dir/a.txt"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::set_permissions(
        src.join("dir/deeper"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::os::unix::fs::lchown(src.join("dir/deeper/b.txt"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(src.join("to-a"), Some(4321), Some(8765)).unwrap();
    for (i, p) in common::walk(src).iter().rev().enumerate() {
        set_mtime(p, 1_700_000_000 + i as i64 * 1000, 123_456_789 + i as i64);
    }
    big
}

/// The directory name of a snapshot: its time without the fraction.
fn dir_name(snapshot_json: &serde_json::Value) -> String {
    let t = snapshot_json["time"].as_str().unwrap();
    let (head, tail) = t.split_once('.').unwrap();
    let offset = &tail[tail.find(['+', '-', 'Z']).unwrap()..];
    format!("{head}{offset}")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn a_tree_reads_back_byte_for_byte_through_the_mount_and_sigterm_unmounts() {
    if !can_mount("mount") {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    let big = make_tree(&src);
    let first = env.backup_json(
        &[&src],
        &[
            "--host",
            "alpha",
            "--tag",
            "daily",
            "--time",
            "2026-11-20T03:00:00Z",
        ],
    );
    std::fs::write(src.join("later.txt"), b"added for the second snapshot\n").unwrap();
    set_mtime(&src, 1_700_000_000, 5);
    let second = env.backup_json(
        &[&src],
        &[
            "--host",
            "beta",
            "--tag",
            "daily",
            "--tag",
            "weekly",
            "--time",
            "2026-11-21T03:00:00Z",
        ],
    );
    let snaps: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(snaps.len(), 2);
    let (old, new) = (dir_name(&snaps[0]), dir_name(&snaps[1]));
    let short = |s: &serde_json::Value| s["snapshot_id"].as_str().unwrap()[..8].to_string();
    let (old_id, new_id) = (short(&first), short(&second));
    assert_eq!(snaps[0]["short_id"].as_str().unwrap(), old_id);

    let mnt = env.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut m = Mounted::start(&env, &mnt, &[]);

    // The layout.
    assert_eq!(names(&mnt), ["hosts", "ids", "snapshots", "tags"]);
    assert_eq!(
        names(&mnt.join("snapshots")),
        [old.clone(), new.clone(), "latest".into()]
    );
    assert_eq!(
        std::fs::read_link(mnt.join("snapshots/latest")).unwrap(),
        PathBuf::from(&new)
    );
    let mut ids = vec![old_id.clone(), new_id.clone()];
    ids.sort();
    assert_eq!(names(&mnt.join("ids")), ids);
    assert_eq!(names(&mnt.join("hosts")), ["alpha", "beta"]);
    assert_eq!(
        names(&mnt.join("hosts/alpha")),
        [old.clone(), "latest".into()]
    );
    assert_eq!(
        std::fs::read_link(mnt.join("hosts/alpha/latest")).unwrap(),
        PathBuf::from(&old)
    );
    assert_eq!(names(&mnt.join("tags")), ["daily", "weekly"]);
    assert_eq!(
        names(&mnt.join("tags/daily")),
        [old.clone(), new.clone(), "latest".into()]
    );
    assert_eq!(
        names(&mnt.join("tags/weekly")),
        [new.clone(), "latest".into()]
    );

    // The tree, byte for byte and by metadata, through every way in.
    let rel = src.strip_prefix("/").unwrap();
    let latest = mnt.join("snapshots/latest").join(rel);
    assert_same_tree(&src, &latest);
    assert_same_tree(&src, &mnt.join("ids").join(&new_id).join(rel));
    assert_same_tree(&src, &mnt.join("tags/weekly/latest").join(rel));
    let older = mnt.join("hosts/alpha").join(&old).join(rel);
    assert!(!older.join("later.txt").exists());
    assert_eq!(std::fs::read(older.join("big.bin")).unwrap(), big);

    // Hard links share an inode within a snapshot, with their count.
    let (a, b) = (
        std::fs::metadata(latest.join("dir/linked")).unwrap(),
        std::fs::metadata(latest.join("linked-too")).unwrap(),
    );
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    assert_eq!(b.nlink(), 2);
    let link = std::fs::symlink_metadata(latest.join("to-a")).unwrap();
    assert_eq!((link.uid(), link.gid(), link.len()), (4321, 8765, 9));

    // Reads at any offset, across blob boundaries, past the end.
    let f = std::fs::File::open(latest.join("big.bin")).unwrap();
    for (at, len) in [
        (0u64, 1usize),
        (4095, 2),
        (1 << 20, 300_000),
        (3_333_333, 2_000_000),
        (big.len() as u64 - 10, 100),
    ] {
        let mut buf = vec![0u8; len];
        let n = f.read_at(&mut buf, at).unwrap();
        let want = &big[at as usize..(at as usize + len).min(big.len())];
        assert_eq!(&buf[..n], want, "{len} bytes at {at}");
    }
    let mut buf = [0u8; 16];
    assert_eq!(f.read_at(&mut buf, big.len() as u64 + 5).unwrap(), 0);
    drop(f);

    // Read-only.
    let e = std::fs::write(latest.join("new-file"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(30), "{e}"); // EROFS

    // The shared lock is held while mounted…
    assert_eq!(names(&env.repo.join("locks")).len(), 1);
    // …and SIGTERM unmounts, exits 0 and removes it.
    let (code, err) = m.signal(rustix::process::Signal::TERM);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert!(!is_mounted(&mnt));
    assert!(names(&env.repo.join("locks")).is_empty());
    assert!(names(&mnt).is_empty());
}

#[test]
fn fusermount_u_and_sigint_end_the_mount_with_exit_0() {
    if !can_mount("mount: fusermount -u") {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"content").unwrap();
    env.ok(&["backup", "-q", src.to_str().unwrap()]);
    let mnt = env.path("mnt");
    std::fs::create_dir(&mnt).unwrap();

    // Unmounted from outside (fusermount3, or the older fusermount).
    let mut m = Mounted::start(&env, &mnt, &[]);
    let tool = ["fusermount3", "fusermount"]
        .into_iter()
        .find(|t| have_program(t));
    match tool {
        Some(tool) => {
            let st = std::process::Command::new(tool)
                .arg("-u")
                .arg(&mnt)
                .status()
                .unwrap();
            assert!(st.success());
            assert_eq!(m.wait(), (Some(0), String::new()));
        }
        None => {
            skipped("mount: fusermount -u: neither fusermount3 nor fusermount is installed");
            drop(m);
        }
    }
    assert!(names(&env.repo.join("locks")).is_empty());

    // Ctrl-C.
    let mut m = Mounted::start(&env, &mnt, &[]);
    let rel = src.strip_prefix("/").unwrap();
    assert_eq!(
        std::fs::read(mnt.join("snapshots/latest").join(rel).join("f")).unwrap(),
        b"content"
    );
    assert_eq!(
        m.signal(rustix::process::Signal::INT),
        (Some(0), String::new())
    );
    assert!(!is_mounted(&mnt));
    assert!(names(&env.repo.join("locks")).is_empty());
}

#[test]
fn a_mountpoint_that_is_not_an_empty_directory_is_refused() {
    if !can_mount("mount: refusals") {
        return;
    }
    let env = Env::new();
    let full = env.path("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"").unwrap();
    let file = env.path("file");
    std::fs::write(&file, b"").unwrap();
    let missing = env.path("missing");
    for (dir, why) in [
        (&full, "the directory is not empty"),
        (&file, "it is not a directory"),
        (&missing, "it does not exist (create an empty directory)"),
    ] {
        let out = env.run(&["mount", dir.to_str().unwrap()]);
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned()
            ),
            (
                Some(1),
                format!("cairn: cannot mount on {}: {why}\n", dir.display())
            )
        );
        assert!(out.stdout.is_empty());
    }
    assert!(names(&env.repo.join("locks")).is_empty());
}

#[test]
fn a_missing_fuse_device_is_a_clear_error() {
    if !can_mount("mount: no /dev/fuse") || !require("mount: no /dev/fuse", &["unshare"], true) {
        return;
    }
    let env = Env::new();
    let mnt = env.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // A private mount namespace whose /dev is an empty tmpfs.
    let plain = env.std_cmd();
    let script = format!(
        "mount --make-rprivate / && mount -t tmpfs tmpfs /dev && exec '{}' mount '{}'",
        plain.get_program().to_str().unwrap(),
        mnt.display()
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &script]);
    for (k, v) in plain.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned()
        ),
        (
            Some(1),
            "cairn: cannot mount: /dev/fuse does not exist (load the kernel's fuse module, \
             or give the container the device)\n"
                .to_string()
        )
    );
}

/// A small tree backed up into `env`; its path.
fn small_tree(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("f"), b"content").unwrap();
    std::fs::write(src.join("d/big"), random_bytes(3 << 20, 9)).unwrap();
    src
}

/// A remote repository (restic's REST protocol, served by `cairn serve`)
/// mounts and reads the same as a local one.
#[test]
fn a_remote_repository_reads_back_through_the_mount() {
    if !can_mount("mount: remote repository") {
        return;
    }
    let env = Env::uninit();
    let root = env.path("served");
    std::fs::create_dir(&root).unwrap();
    let mut server = env
        .std_cmd()
        .args(["serve", "--root", root.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .trim_end_matches('/')
        .to_string();
    std::thread::spawn(move || for _ in lines.by_ref() {});
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(server);
    let remote = Env {
        repo: PathBuf::from(format!("rest:{url}/repo")),
        dir: tempfile::tempdir().unwrap(),
    };
    remote.ok(&["init"]);
    let src = small_tree(&env);
    remote.ok(&["backup", "-q", src.to_str().unwrap()]);
    let mnt = env.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut m = Mounted::start(&remote, &mnt, &[]);
    let rel = src.strip_prefix("/").unwrap();
    assert_same_tree(&src, &mnt.join("snapshots/latest").join(rel));
    assert_eq!(
        m.signal(rustix::process::Signal::TERM),
        (Some(0), String::new())
    );
    assert!(names(&root.join("repo/locks")).is_empty());
}

/// A blob whose stored bytes were damaged is an I/O error for the reader
/// and a warning from `cairn mount`, never wrong bytes; the rest reads.
#[test]
fn a_damaged_blob_is_an_io_error_never_wrong_bytes() {
    if !can_mount("mount: damaged blob") {
        return;
    }
    let env = Env::new();
    let src = small_tree(&env);
    env.ok(&["backup", "-q", src.to_str().unwrap()]);
    // Flip a byte in the middle of the largest pack (the big file's data).
    let pack = common::walk(&env.repo.join("data"))
        .into_iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::set_permissions(&pack, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&pack, &bytes).unwrap();
    let mnt = env.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut m = Mounted::start(&env, &mnt, &[]);
    let latest = mnt
        .join("snapshots/latest")
        .join(src.strip_prefix("/").unwrap());
    let e = std::fs::read(latest.join("d/big")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(5), "{e}"); // EIO
    assert_eq!(std::fs::read(latest.join("f")).unwrap(), b"content");
    let (code, err) = m.signal(rustix::process::Signal::TERM);
    assert_eq!(code, Some(0));
    assert!(
        err.starts_with("warning: mount: cannot read file content: "),
        "{err}"
    );
}

/// A lock found lost (its token cancelled with *lock lost*, as the
/// refresher does) unmounts, and the mount ends with that error.
#[test]
fn a_lost_lock_unmounts_with_lock_lost() {
    use std::sync::Arc;
    if !can_mount("mount: lost lock") {
        return;
    }
    let env = Env::new();
    let src = small_tree(&env);
    env.ok(&["backup", "-q", src.to_str().unwrap()]);
    let mnt = env.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let backend = Arc::new(cairn::backend::local::LocalBackend::new(&env.repo));
    let mut repo = cairn::repo::Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    let token = cairn::ops::CancelToken::new();
    let mut lock = repo.lock_shared_with(token.clone()).unwrap();
    let index = lock.load_index().unwrap();
    let guard = Mounted {
        child: None,
        dir: mnt.clone(),
        rest: None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let ended = std::thread::scope(|s| {
        let served = s.spawn(|| {
            cairn::ops::mount::mount(
                &index,
                &mnt,
                &cairn::ops::mount::MountOptions::default(),
                &mut |_| tx.send(()).unwrap(),
            )
        });
        rx.recv().unwrap();
        let f = mnt
            .join("snapshots/latest")
            .join(src.strip_prefix("/").unwrap())
            .join("f");
        assert_eq!(std::fs::read(&f).unwrap(), b"content");
        token.cancel_because(
            cairn::ErrorKind::LockLost,
            "the lock object was removed".into(),
        );
        served.join().unwrap()
    });
    let e = ended.unwrap_err();
    assert_eq!(e.kind(), cairn::ErrorKind::LockLost, "{e}");
    assert!(!is_mounted(&mnt));
    drop(guard);
}

/// A mount in use when SIGTERM comes (a file open in it) is detached at
/// once; `cairn mount` exits 0 when the file is closed.
#[test]
fn a_busy_mount_is_detached_and_ends_when_its_last_file_closes() {
    if !can_mount("mount: busy") {
        return;
    }
    let env = Env::new();
    let src = small_tree(&env);
    env.ok(&["backup", "-q", src.to_str().unwrap()]);
    let mnt = env.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut m = Mounted::start(&env, &mnt, &[]);
    let f = std::fs::File::open(
        mnt.join("snapshots/latest")
            .join(src.strip_prefix("/").unwrap())
            .join("f"),
    )
    .unwrap();
    let child = m.child.as_ref().unwrap();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    // Detached: gone from the mount table while the file stays readable.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while is_mounted(&mnt) {
        assert!(std::time::Instant::now() < deadline, "still mounted");
        std::thread::yield_now();
    }
    let mut buf = [0u8; 7];
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), 7);
    assert_eq!(&buf, b"content");
    assert!(m.child.as_mut().unwrap().try_wait().unwrap().is_none());
    drop(f);
    assert_eq!(m.wait(), (Some(0), String::new()));
    assert!(names(&env.repo.join("locks")).is_empty());
}
