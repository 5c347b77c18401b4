//! No file name, path or content is readable in the repository, and packs
//! look like random bytes.

mod common;

use std::fs;

use common::*;

#[test]
fn repository_bytes_contain_no_plaintext() {
    let env = Env::new();
    let src = env.path("zebra-secret-dirname");
    fs::create_dir_all(src.join("quokka-subdir")).unwrap();
    let text = "PLAINTEXT-MARKER the launch codes are 0000 ".repeat(2000);
    fs::write(src.join("quokka-subdir/aardvark-filename.txt"), &text).unwrap();
    fs::write(src.join("incompressible.bin"), random_bytes(3 << 20, 5)).unwrap();
    fs::write(src.join("short"), "MARKER-SHORT-CONTENT").unwrap();
    env.backup_json(&[&src], &["--tag", "TAGMARKER", "--host", "HOSTMARKER"]);

    let needles: [&[u8]; 8] = [
        b"zebra-secret-dirname",
        b"quokka-subdir",
        b"aardvark-filename",
        b"PLAINTEXT-MARKER",
        b"MARKER-SHORT-CONTENT",
        b"TAGMARKER",
        b"HOSTMARKER",
        &random_bytes(3 << 20, 5)[1000..1032],
    ];
    let files = walk(&env.repo);
    assert!(files.len() > 5);
    for f in files.iter().filter(|p| p.is_file()) {
        let bytes = fs::read(f).unwrap();
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n),
                "{} contains {:?}",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
}

#[test]
fn packs_look_random() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // Highly compressible and repetitive input: the packs must still look random.
    fs::write(
        src.join("zeros-and-text"),
        "aaaaaaaaaa bbbbbbbbbb\n".repeat(200_000),
    )
    .unwrap();
    for i in 0..100 {
        fs::write(
            src.join(format!("f{i}")),
            format!("file number {i}\n").repeat(100),
        )
        .unwrap();
    }
    env.backup_json(&[&src], &[]);
    let packs: Vec<_> = walk(&env.repo.join("data"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(!packs.is_empty());
    for p in packs {
        let bytes = fs::read(&p).unwrap();
        let packed = zstd::bulk::compress(&bytes, 19).unwrap();
        assert!(
            packed.len() as f64 > bytes.len() as f64 * 0.99,
            "{} ({} bytes) compresses to {}",
            p.display(),
            bytes.len(),
            packed.len()
        );
        // Chi-square of byte frequencies: 255 degrees of freedom, mean 255,
        // sd ~22.6; random data stays well below 400.
        if bytes.len() > 8192 {
            let mut counts = [0f64; 256];
            for &b in &bytes {
                counts[usize::from(b)] += 1.0;
            }
            let expected = bytes.len() as f64 / 256.0;
            let chi: f64 = counts
                .iter()
                .map(|c| (c - expected).powi(2) / expected)
                .sum();
            assert!(chi < 400.0, "{}: chi-square {chi}", p.display());
        }
    }
}
