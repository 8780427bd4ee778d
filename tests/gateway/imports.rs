//! The crate's layering, checked from its source: no import cycle between files, nor between the
//! top-level modules, through `crate::` and `super::` paths (test modules at a file's end excepted).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, by its path relative to `root`.
fn sources(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p: PathBuf = entry.unwrap().path();
        if p.is_dir() {
            sources(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap();
            // a file's unit tests sit at its end; they may use anything
            let code = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            out.insert(rel, code);
        }
    }
}

/// The module path a file defines: `proxy/mod.rs` is `proxy`, `proxy/routes.rs` `proxy::routes`.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The paths a file names after `crate::` and `super::` (each as segments, `super` resolved), with
/// `crate::{a, b::c}` groups opened one level.
fn paths_in(code: &str, me: &[String]) -> Vec<Vec<String>> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let at_word = i == 0 || !is_ident(b[i - 1]) && b[i - 1] != b':';
        let (base, start) = if at_word && b[i..].starts_with(b"crate::") {
            (Vec::new(), i + 7)
        } else if at_word && b[i..].starts_with(b"super::") {
            // `super` of a `mod.rs` is the folder's parent, as of any other file
            let mut base = me.to_vec();
            let mut j = i;
            while b[j..].starts_with(b"super::") {
                base.pop();
                j += 7;
            }
            (base, j)
        } else {
            i += 1;
            continue;
        };
        let mut j = start;
        if b.get(j) == Some(&b'{') {
            let end = b[j..]
                .iter()
                .position(|c| *c == b'}')
                .map_or(b.len(), |e| j + e);
            for item in code[j + 1..end].split(',') {
                let segs: Vec<String> = item
                    .trim()
                    .split("::")
                    .map(|s| s.trim().to_string())
                    .take_while(|s| !s.is_empty() && s.bytes().all(is_ident))
                    .collect();
                out.push(base.iter().cloned().chain(segs).collect());
            }
            i = end;
            continue;
        }
        let mut segs = base;
        loop {
            let s = j;
            while j < b.len() && is_ident(b[j]) {
                j += 1;
            }
            if j == s {
                break;
            }
            segs.push(code[s..j].to_string());
            if b[j..].starts_with(b"::") {
                j += 2;
            } else {
                break;
            }
        }
        out.push(segs);
        i = j.max(i + 1);
    }
    out
}

/// Strongly connected groups of more than one node.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        out: Vec<Vec<String>>,
    }
    fn visit(t: &mut T<'_>, v: &str) {
        let n = t.index.len();
        t.index.insert(v.into(), n);
        t.low.insert(v.into(), n);
        t.stack.push(v.into());
        t.on.insert(v.into());
        for w in t.edges.get(v).cloned().unwrap_or_default() {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let l = t.low[&w].min(t.low[v]);
                t.low.insert(v.into(), l);
            } else if t.on.contains(&w) {
                let l = t.index[&w].min(t.low[v]);
                t.low.insert(v.into(), l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut group = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == v;
                group.push(w);
                if done {
                    break;
                }
            }
            if group.len() > 1 {
                t.out.push(group);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<String> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a.clone()).chain(bs.iter().cloned()))
        .collect();
    for v in nodes {
        if !t.index.contains_key(&v) {
            visit(&mut t, &v);
        }
    }
    t.out
}

/// The file and the top-level module each file imports from.
fn imports() -> (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    sources(&root, &root, &mut files);
    let by_module: BTreeMap<Vec<String>, String> =
        files.keys().map(|f| (module_of(f), f.clone())).collect();
    let top = |f: &str| {
        f.split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string()
    };
    let mut file_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut module_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (f, code) in &files {
        if f == "main.rs" || f == "lib.rs" {
            continue; // the binary and the module list sit above everything
        }
        let me = module_of(f);
        for path in paths_in(code, &me) {
            // the longest prefix of the path that is a file of the crate
            let target = (1..=path.len())
                .rev()
                .find_map(|k| by_module.get(&path[..k]));
            let Some(target) = target.filter(|t| *t != f) else {
                continue;
            };
            file_edges
                .entry(f.clone())
                .or_default()
                .insert(target.clone());
            if top(f) != top(target) {
                module_edges.entry(top(f)).or_default().insert(top(target));
            }
        }
    }
    (file_edges, module_edges)
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let (files, _) = imports();
    assert!(
        files.len() > 40,
        "the walk found the crate's files: {}",
        files.len()
    );
    assert_eq!(
        cycles(&files),
        Vec::<Vec<String>>::new(),
        "import cycles between files"
    );
}

#[test]
fn no_top_level_module_imports_one_that_imports_it_back() {
    let (_, modules) = imports();
    assert!(modules.contains_key("proxy"), "{modules:?}");
    let found = cycles(&modules);
    assert!(
        found.is_empty(),
        "import cycles between top-level modules: {found:?}\n{modules:#?}"
    );
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let me = module_of("a/b.rs");
    assert_eq!(me, ["a", "b"]);
    let found = paths_in(
        "use crate::{x::y, z};\nuse super::c::D;\nlet _ = crate::q::r();",
        &me,
    );
    assert_eq!(
        found,
        [
            vec!["x".to_string(), "y".into()],
            vec!["z".into()],
            vec!["a".into(), "c".into(), "D".into()],
            vec!["q".into(), "r".into()],
        ]
    );
    let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    e.entry("a".into()).or_default().insert("b".into());
    e.entry("b".into()).or_default().insert("c".into());
    assert!(cycles(&e).is_empty());
    e.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycles(&e).len(), 1);
}
