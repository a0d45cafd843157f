//! The server crate's module layering (issue "One door per vhost"): no circle of imports
//! between more than three files. An edge A → B is A naming `crate::…` or `super::…` paths that
//! resolve to file B (groups `{…}` item by item, child modules declared with `mod x;` and
//! named as `x::…`), comments and `#[cfg(test)] mod tests` excluded. A new circle fails here
//! with the files in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regex::Regex;

/// Module path (`["http", "api"]`) → file (`http/api/mod.rs`).
type Files = BTreeMap<Vec<String>, String>;

fn module_path(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").unwrap();
    let stem = stem.strip_suffix("/mod").unwrap_or(stem);
    if stem == "lib" {
        return Vec::new();
    }
    stem.split('/').map(String::from).collect()
}

fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap();
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap())
                .collect::<Vec<_>>()
                .join("\n");
            let code = match code.find("#[cfg(test)]\nmod tests") {
                Some(i) => code[..i].to_string(),
                None => code,
            };
            out.insert(rel, code);
        }
    }
}

/// The file a module path names: its longest prefix that is a file.
fn resolve(files: &Files, parts: &[String]) -> Option<String> {
    (1..=parts.len())
        .rev()
        .find_map(|i| files.get(&parts[..i]).cloned())
}

fn graph(src: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let files: Files = src.keys().map(|f| (module_path(f), f.clone())).collect();
    let path =
        Regex::new(r"\b(crate|super)(?:::)((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*|)(?:::)?(\{[^}]*\})?")
            .unwrap();
    let child = Regex::new(r"(?m)^\s*(?:pub(?:\([a-z]+\))?\s+)?mod ([a-z_0-9]+);").unwrap();
    let ident = Regex::new(r"^[a-z_][a-z0-9_]*$").unwrap();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, code) in src {
        if file == "lib.rs" {
            continue;
        }
        let me = module_path(file);
        let parent: Vec<String> = me[..me.len() - 1].to_vec();
        let mut edge = |parts: Vec<String>| {
            if let Some(t) = resolve(&files, &parts)
                && t != *file
                && t != "lib.rs"
            {
                g.entry(file.clone()).or_default().insert(t);
            }
        };
        for m in path.captures_iter(code) {
            let base = if &m[1] == "super" {
                parent.clone()
            } else {
                Vec::new()
            };
            let mut parts = base.clone();
            parts.extend(m[2].split("::").filter(|s| !s.is_empty()).map(String::from));
            match m.get(3) {
                Some(group) => {
                    for item in group.as_str().trim_matches(|c| c == '{' || c == '}').split(',') {
                        let segs: Vec<String> = item
                            .trim()
                            .split("::")
                            .filter(|s| ident.is_match(s))
                            .map(String::from)
                            .collect();
                        let mut p = parts.clone();
                        p.extend(segs);
                        edge(p);
                    }
                }
                None => edge(parts),
            }
        }
        for c in child.captures_iter(code) {
            let name = &c[1];
            let named = Regex::new(&format!(r"(?:^|[^:\w]){name}::")).unwrap();
            if named.is_match(code) {
                let mut p = me.clone();
                p.push(name.to_string());
                edge(p);
            }
        }
    }
    g
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        out: Vec<Vec<String>>,
    }
    fn visit(t: &mut T, v: &str) {
        let i = t.index.len();
        t.index.insert(v.to_string(), i);
        t.low.insert(v.to_string(), i);
        t.stack.push(v.to_string());
        t.on.insert(v.to_string());
        let next: Vec<String> =
            t.g.get(v)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
        for w in next {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let lw = t.low[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(&w);
                let done = w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: Vec<String> = g.keys().cloned().collect();
    for v in nodes {
        if !t.index.contains_key(&v) {
            visit(&mut t, &v);
        }
    }
    t.out
}

#[test]
fn no_circle_of_imports_spans_more_than_three_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut src = BTreeMap::new();
    sources(&root, &root, &mut src);
    assert!(src.len() > 40, "read the crate's sources");
    let g = graph(&src);
    // The detector sees the edges the layering relies on.
    assert!(g["connection.rs"].contains("channel/mod.rs"));
    assert!(g["channel/mod.rs"].contains("session.rs"));
    assert!(g["queue.rs"].contains("vhost.rs"));
    let big: Vec<Vec<String>> = circles(&g).into_iter().filter(|c| c.len() > 3).collect();
    assert!(
        big.is_empty(),
        "import circles of more than three files: {big:#?}"
    );
}

#[test]
fn the_detector_finds_a_circle() {
    let mut src = BTreeMap::new();
    src.insert(
        "lib.rs".to_string(),
        "pub mod a; pub mod b; pub mod c; pub mod d;".to_string(),
    );
    src.insert("a.rs".to_string(), "use crate::b::X;".to_string());
    src.insert("b.rs".to_string(), "use crate::{c::Y, d};".to_string());
    src.insert("c.rs".to_string(), "fn f() { crate::d::g() }".to_string());
    src.insert("d.rs".to_string(), "use super::a::Z;".to_string());
    let found = circles(&graph(&src));
    assert_eq!(found, vec![vec!["a.rs", "b.rs", "c.rs", "d.rs"]]);
}
