//! The crate's size limits, checked from its source: no file in `src/` over 600 lines, no function
//! over 80 lines outside the configuration compilers in `src/config/`, at most 12 files at the root.

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;
const MAX_ROOT_FILES: usize = 12;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The text with comments, string and character literals blanked (newlines kept), so braces can
/// be counted.
fn code_only(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in out.iter_mut().take(to.min(b.len())).skip(from) {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            i + rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            i + 2
                + rest[2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(rest.len(), |p| p + 2)
        } else if rest.starts_with(b"r#") || rest.starts_with(b"r\"") || rest.starts_with(b"br") {
            let start = if rest[0] == b'b' { 2 } else { 1 };
            let hashes = rest[start..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(start + hashes) != Some(&b'"') || (i > 0 && is_ident(b[i - 1])) {
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = start + hashes + 1;
            i + body
                + rest[body..]
                    .windows(close.len())
                    .position(|w| w == close)
                    .map_or(rest.len(), |p| p + close.len())
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            i + j + 1
        } else if rest[0] == b'\'' && (i == 0 || !is_ident(b[i - 1])) {
            // a character literal ('x', '\n', '{'); a lifetime ('a) has no closing quote near
            match rest.iter().skip(1).take(10).position(|&c| c == b'\'') {
                Some(p) if rest[1] == b'\\' || p == 1 || rest[1] >= 0x80 => i + p + 2,
                _ => {
                    i += 1;
                    continue;
                }
            }
        } else {
            i += 1;
            continue;
        };
        blank(&mut out, i, end);
        i = end;
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Each function's first line and length in lines, from its `fn` line to its closing brace.
fn functions(text: &str) -> Vec<(usize, usize)> {
    let code = code_only(text);
    let lines: Vec<&[u8]> = code.split(|&c| c == b'\n').collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let s = String::from_utf8_lossy(line);
        let t = s.trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "const fn ",
            "pub const fn ",
        ]
        .iter()
        .any(|p| t.starts_with(p))
            || (t.starts_with("pub(") && (t.contains(") fn ") || t.contains(") async fn ")));
        if !is_fn {
            continue;
        }
        // the body opens at the first `{` after the signature, unless a `;` ends a declaration
        let mut depth = 0i32;
        let mut opened = false;
        'scan: for (m, l) in lines.iter().enumerate().skip(n) {
            for &c in l.iter() {
                match c {
                    b';' if !opened => break 'scan,
                    b'{' => {
                        depth += 1;
                        opened = true;
                    }
                    b'}' => {
                        depth -= 1;
                        if opened && depth == 0 {
                            out.push((n + 1, m - n + 1));
                            break 'scan;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

#[test]
fn files_and_functions_stay_small() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut problems = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(f).unwrap();
        let n = text.lines().count();
        if n > MAX_FILE_LINES {
            problems.push(format!("src/{rel}: {n} lines"));
        }
        if rel.starts_with("config/") {
            continue;
        }
        for (line, len) in functions(&text) {
            if len > MAX_FN_LINES {
                problems.push(format!("src/{rel}:{line}: a function of {len} lines"));
            }
        }
    }
    let at_root = std::fs::read_dir(&root)
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_file()))
        .count();
    if at_root > MAX_ROOT_FILES {
        problems.push(format!("src/ holds {at_root} files"));
    }
    assert!(
        problems.is_empty(),
        "over the limits:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_counter_sees_functions_through_strings_and_comments() {
    let text = "fn a() {\n    let s = \"}\";\n    // }\n    let c = '}';\n    let r = r#\"}\"#;\n}\nfn b<'x>(v: &'x str) -> &'x str {\n    v\n}\ntrait T {\n    fn c(&self);\n}\n";
    assert_eq!(functions(text), vec![(1, 6), (7, 3)]);
}
