//! The layering rules of ARCHITECTURE.md, checked on the source text: the
//! format codecs and the backends never see keys or do cryptography.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn assert_layer_avoids(layer: &str, forbidden: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(layer);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(!files.is_empty(), "no sources under {}", root.display());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for word in forbidden {
            assert!(
                !text.contains(word),
                "{} mentions {word}: the {layer} layer must not depend on it",
                f.display()
            );
        }
    }
}

#[test]
fn format_does_no_crypto_and_no_io() {
    assert_layer_avoids(
        "format",
        &[
            "crate::crypto",
            "chacha20poly1305",
            "blake3",
            "std::fs",
            "crate::backend",
        ],
    );
}

#[test]
fn backends_never_see_keys() {
    assert_layer_avoids(
        "backend",
        &["crate::crypto", "crate::format", "crate::repo", "SealKey"],
    );
}

#[test]
fn seal_overhead_agrees_between_format_and_crypto() {
    assert_eq!(cairn::format::SEAL_OVERHEAD, cairn::crypto::SEAL_OVERHEAD);
}
