//! Every file of the fuzz corpora (fuzz/corpus/<target>/), seeds and anything a fuzzing run found,
//! through the same functions the fuzz targets call, on stable Rust: a crash once found stays fixed.

use std::path::Path;

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in gatehouse::fuzzing::TARGETS {
        let dir = root.join(name);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|f| f.unwrap().path())
            .collect();
        assert!(!files.is_empty(), "{name} has no seeds");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                panic!("{} fails its target", f.display());
            }
        }
    }
}
