//! The README's source map is generated from src/: one row per Rust file, its job the first sentence of the file's opening `//!` lines.
//!
//! When a file is added, renamed or its opening line changes, this test fails and prints the block
//! to paste into README.md; `GATEHOUSE_UPDATE_SOURCE_MAP=1` writes it there instead.

use std::path::{Path, PathBuf};

const BEGIN: &str = "<!-- source-map -->";
const END: &str = "<!-- /source-map -->";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A folder's entries in map order: its entry file (`lib.rs`, `main.rs`, `mod.rs`) first, then
/// files and folders together by name, each folder followed by its own entries.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let rank = |p: &PathBuf| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let entry = matches!(name.as_str(), "lib.rs" | "main.rs" | "mod.rs");
        (!entry, name)
    };
    entries.sort_by_key(rank);
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first sentence of the `//!` paragraph a file opens with, or `None` when it opens otherwise.
fn job(text: &str) -> Option<String> {
    let mut paragraph = Vec::new();
    for line in text.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            break;
        };
        let doc = doc.trim();
        if doc.is_empty() {
            break;
        }
        paragraph.push(doc);
    }
    if paragraph.is_empty() {
        return None;
    }
    let paragraph = paragraph.join(" ");
    let sentence = match paragraph.find(". ") {
        Some(end) => &paragraph[..=end],
        None => paragraph.as_str(),
    };
    Some(sentence.replace('|', "\\|"))
}

/// The block README.md must hold, markers included; or the files that open without `//!`.
fn expected() -> Result<String, Vec<String>> {
    let root = root();
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    let mut block = format!("{BEGIN}\n| file | job |\n| --- | --- |\n");
    let mut missing = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        match job(&std::fs::read_to_string(&file).unwrap()) {
            Some(job) => block.push_str(&format!("| [`{rel}`]({rel}) | {job} |\n")),
            None => missing.push(rel),
        }
    }
    block.push_str(END);
    if missing.is_empty() {
        Ok(block)
    } else {
        Err(missing)
    }
}

#[test]
fn the_readme_source_map_lists_every_file_of_src() {
    let expected = match expected() {
        Ok(block) => block,
        Err(missing) => panic!(
            "every file under src/ opens with a one-line `//!` saying its job; these do not:\n  {}",
            missing.join("\n  ")
        ),
    };
    let readme_path = root().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let start = readme
        .find(BEGIN)
        .unwrap_or_else(|| panic!("README.md has no {BEGIN} marker; paste this:\n\n{expected}\n"));
    let end = readme[start..]
        .find(END)
        .map(|at| start + at + END.len())
        .unwrap_or_else(|| panic!("README.md has {BEGIN} without {END}"));
    let found = &readme[start..end];
    if found == expected {
        return;
    }
    if std::env::var_os("GATEHOUSE_UPDATE_SOURCE_MAP").is_some() {
        let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
        std::fs::write(&readme_path, updated).unwrap();
        return;
    }
    panic!(
        "README.md's source map is not the one src/ makes. Replace the block between the markers with \
         this (or run with GATEHOUSE_UPDATE_SOURCE_MAP=1 to write it):\n\n{expected}\n"
    );
}
