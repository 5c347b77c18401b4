//! `cairn check` finds every kind of damage and names what depends on it;
//! restore of undamaged files keeps working.

mod common;

use std::fs;
use std::path::PathBuf;

use common::*;

/// A repository with small packs holding twenty distinct files.
fn setup() -> (Env, PathBuf) {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("sub/f{i:02}")), random_bytes(300_000, i)).unwrap();
    }
    env.backup_json(&[&src], &[]);
    (env, src)
}

fn packs(env: &Env) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(&env.repo.join("data"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn check(env: &Env, args: &[&str]) -> (i32, String) {
    let mut a = vec!["check"];
    a.extend_from_slice(args);
    let out = env.run(&a);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// For each file of `src/sub`: (file name, pack holding its data, whether
/// that pack also holds tree blobs).
fn file_packs(env: &Env, src: &std::path::Path) -> Vec<(String, String, bool)> {
    let snap: serde_json::Value =
        serde_json::from_str(&env.ok(&["cat", "snapshot", "latest"])).unwrap();
    let mut tree = snap["tree"].as_str().unwrap().to_string();
    for comp in src.join("sub").strip_prefix("/").unwrap().components() {
        let t: serde_json::Value = serde_json::from_str(&env.ok(&["cat", "tree", &tree])).unwrap();
        let want = comp.as_os_str().to_str().unwrap();
        let node = t["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == want)
            .unwrap();
        tree = node["subtree"].as_str().unwrap().to_string();
    }
    let t: serde_json::Value = serde_json::from_str(&env.ok(&["cat", "tree", &tree])).unwrap();
    let mut packs: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for idx in walk(&env.repo.join("index")) {
        let id = idx.file_name().unwrap().to_str().unwrap().to_string();
        let f: serde_json::Value = serde_json::from_str(&env.ok(&["cat", "index", &id])).unwrap();
        for p in f["packs"].as_array().unwrap() {
            let blobs = p["blobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    (
                        b["id"].as_str().unwrap().to_string(),
                        b["type"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            packs.push((p["id"].as_str().unwrap().to_string(), blobs));
        }
    }
    t["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let blob = n["content"][0].as_str().unwrap();
            let (pack, blobs) = packs
                .iter()
                .find(|(_, b)| b.iter().any(|(id, _)| id == blob))
                .unwrap();
            let has_trees = blobs.iter().any(|(_, t)| t == "tree");
            (
                n["name"].as_str().unwrap().to_string(),
                pack.clone(),
                has_trees,
            )
        })
        .collect()
}

/// A file whose data pack holds no trees (damaging it leaves directories
/// readable), and its pack; avoiding the packs in `not`.
fn data_only(env: &Env, src: &std::path::Path, not: &[String]) -> (String, String) {
    file_packs(env, src)
        .into_iter()
        .find(|(_, p, trees)| !trees && !not.contains(p))
        .map(|(f, p, _)| (f, p))
        .expect("a pack with data only")
}

fn pack_path(env: &Env, id: &str) -> PathBuf {
    env.repo.join("data").join(&id[..2]).join(id)
}

#[test]
fn a_healthy_repository_passes_with_and_without_read_data() {
    let (env, _) = setup();
    assert!(packs(&env).len() > 3);
    let (code, out) = check(&env, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");
    let (code, out) = check(&env, &["--read-data"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("read "), "{out}");
    for subset in ["1/3", "2/3", "3/3", "50%"] {
        let (code, out) = check(&env, &["--read-data-subset", subset]);
        assert_eq!(code, 0, "{subset}: {out}");
    }
    let (code, out) = check(&env, &["--read-data-subset", "4/3"]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn a_flipped_byte_is_found_by_read_data_with_the_path_named() {
    let (env, src) = setup();
    let (_, pack) = data_only(&env, &src, &[]);
    let in_pack: Vec<String> = file_packs(&env, &src)
        .into_iter()
        .filter(|(_, p, _)| *p == pack)
        .map(|(f, _, _)| f)
        .collect();
    let p = pack_path(&env, &pack);
    let mut bytes = fs::read(&p).unwrap();
    bytes[100] ^= 0x01; // inside the first blob, not the header
    fs::write(&p, &bytes).unwrap();
    let (code, out) = check(&env, &["--read-data"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&pack), "names the pack: {out}");
    assert!(out.contains("authentication failed"), "{out}");
    assert!(out.contains("damaged snapshot content"), "{out}");
    let named: Vec<&String> = in_pack
        .iter()
        .filter(|f| out.contains(&format!("/sub/{f} (damaged in pack")))
        .collect();
    assert_eq!(named.len(), 1, "names exactly the damaged file: {out}");
}

/// The lines of `out` that contain `what`, sorted.
fn lines_naming(out: &str, what: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn check_read_data_names_a_truncated_pack_and_its_files_as_the_structure_check_does() {
    // --read-data takes the header of each pack it reads from that read
    // (one request a pack): a damaged header is reported word for word as
    // the structure check's tail read reports it, and the pack's files
    // are named the same way.
    let (env, src) = setup();
    let (tfile, truncated) = data_only(&env, &src, &[]);
    let f = fs::File::options()
        .write(true)
        .open(pack_path(&env, &truncated))
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 10).unwrap();
    let (code, structure) = check(&env, &[]);
    assert_eq!(code, 1, "{structure}");
    let (code, read_data) = check(&env, &["--read-data"]);
    assert_eq!(code, 1, "{read_data}");
    let named = lines_naming(&structure, &truncated[..8]);
    assert!(
        named
            .iter()
            .any(|l| l.contains(&format!("damaged pack {truncated}"))),
        "{structure}"
    );
    assert_eq!(lines_naming(&read_data, &truncated[..8]), named);
    let file = format!("/sub/{tfile}");
    assert_eq!(
        lines_naming(&read_data, &file),
        lines_naming(&structure, &file)
    );
    assert!(!lines_naming(&read_data, &file).is_empty(), "{read_data}");
}

#[test]
fn truncated_and_deleted_packs_are_found_by_the_structure_check() {
    let (env, src) = setup();
    let (tfile, truncated) = data_only(&env, &src, &[]);
    let f = fs::File::options()
        .write(true)
        .open(pack_path(&env, &truncated))
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 10).unwrap();
    let (code, out) = check(&env, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("damaged pack {truncated}")), "{out}");
    assert!(out.contains(&format!("/sub/{tfile}")), "{out}");

    let (dfile, deleted) = data_only(&env, &src, std::slice::from_ref(&truncated));
    fs::remove_file(pack_path(&env, &deleted)).unwrap();
    let (code, out) = check(&env, &[]);
    assert_eq!(code, 1);
    assert!(out.contains(&format!("pack {deleted} is missing")), "{out}");
    assert!(out.contains(&format!("/sub/{dfile}")), "{out}");

    // Files in intact packs still restore; the damaged ones are named.
    let target = env.path("t");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // (The truncated pack lost its trailer, not its blobs: they restore.)
    assert!(err.contains(&dfile) && err.contains(&deleted), "{err}");
    let restored_dir = restored(&target, &src.join("sub"));
    let mut intact = 0;
    for i in 0..20 {
        let p = restored_dir.join(format!("f{i:02}"));
        if let Ok(b) = fs::read(&p)
            && b == random_bytes(300_000, i)
        {
            intact += 1;
        }
    }
    assert!(intact >= 10, "only {intact} files restored intact");
    assert!(restored_dir.join(&tfile).exists());
}

#[test]
fn a_deleted_index_file_is_found() {
    let (env, _) = setup();
    for idx in walk(&env.repo.join("index")) {
        fs::remove_file(idx).unwrap();
    }
    let (code, out) = check(&env, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is in no index file"), "{out}");
    assert!(out.contains("not in the index"), "{out}");
}
