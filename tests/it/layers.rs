//! The layering of `src/`, derived from the sources themselves
//! (docs/ARCHITECTURE.md, "Layers"): the import graph between files has no
//! cycle, and no file imports from a top-level module above its own in
//! [`ORDER`]. An import is every path that names a module of this crate —
//! `use` trees, paths in the code, through `pub use` re-exports to the file
//! that defines the item, and through module aliases (`use crate::ops;`
//! then `ops::list`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules, lowest first: each may import only from those
/// before it.
const ORDER: [&str; 16] = [
    "id",
    "when",
    "config",
    "environment",
    "logging",
    "database",
    "store",
    "capture",
    "archive",
    "retention",
    "offsite",
    "monitor",
    "ops",
    "protocol",
    "daemon",
    "cli",
];

/// One file: its module path (`crate::ops::context`), its path for
/// messages, and its text with comments and literals blanked (newlines
/// kept, so line numbers hold).
struct File {
    module: String,
    path: String,
    code: String,
}

/// An import: from a file's module to the module file that defines what it
/// names, at a line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: String,
    to: String,
    line: usize,
}

fn read_sources() -> Vec<File> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(&root).unwrap().to_string_lossy().to_string();
            if !rel.ends_with(".rs") || rel == "main.rs" {
                continue;
            }
            let mut segs: Vec<&str> = rel.trim_end_matches(".rs").split('/').collect();
            if matches!(segs.last(), Some(&"mod") | Some(&"lib")) {
                segs.pop();
            }
            let module = std::iter::once("crate")
                .chain(segs)
                .collect::<Vec<_>>()
                .join("::");
            let text = std::fs::read_to_string(&p).unwrap();
            files.push(File {
                module,
                path: format!("src/{rel}"),
                code: inline_modules_see_their_file(&blank(&text)),
            });
        }
    }
    files.sort_by(|a, b| a.module.cmp(&b.module));
    files
}

/// `text` with comments, string and char literals replaced by spaces,
/// newlines kept.
fn blank(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep_newlines = |s: &[char]| -> String {
        s.iter()
            .map(|&ch| if ch == '\n' { '\n' } else { ' ' })
            .collect()
    };
    while i < c.len() {
        let rest = &c[i..];
        let end = if rest.starts_with(&['/', '/']) {
            i + rest.iter().position(|&ch| ch == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            let mut j = i + 2;
            while j + 1 < c.len() && !(c[j] == '*' && c[j + 1] == '/') {
                j += 1;
            }
            j + 2
        } else if c[i] == 'r'
            && (rest.starts_with(&['r', '"']) || rest.starts_with(&['r', '#']))
            && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
        {
            let hashes = rest[1..].iter().take_while(|&&ch| ch == '#').count();
            if rest.get(1 + hashes) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let mut j = i + 2 + hashes;
            loop {
                if j >= c.len() {
                    break j;
                }
                if c[j] == '"'
                    && c[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    break j + 1 + hashes;
                }
                j += 1;
            }
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if c[i] == '\'' && (rest.get(2) == Some(&'\'') || rest.get(1) == Some(&'\\')) {
            let mut j = i + 1;
            while j < c.len() && c[j] != '\'' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else {
            out.push(c[i]);
            i += 1;
            continue;
        };
        let end = end.min(c.len());
        out.push_str(&keep_newlines(&c[i..end]));
        i = end;
    }
    out
}

/// Inside an inline `mod x { … }`, `super` is the file's own module: such
/// blocks get `self` for `super`, so that the file stays one node.
fn inline_modules_see_their_file(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(at) = find_word(&out[from..], "mod").map(|a| a + from) {
        let after = &out[at + 3..];
        let name_len = after
            .trim_start()
            .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
            .unwrap_or(0);
        let skip = after.len() - after.trim_start().len() + name_len;
        let open = at + 3 + skip;
        if out[open..].trim_start().starts_with('{') {
            let start = open + out[open..].find('{').unwrap();
            let mut depth = 0;
            let mut end = start;
            for (k, ch) in out[start..].char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = start + k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let body = out[start..end].replace("super::", "self::");
            out.replace_range(start..end, &body);
            from = start + body.len();
        } else {
            from = at + 3;
        }
    }
    out
}

/// The byte offset of `word` in `s` as a whole word.
fn find_word(s: &str, word: &str) -> Option<usize> {
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut from = 0;
    while let Some(k) = s[from..].find(word).map(|k| k + from) {
        let before = s[..k].chars().next_back();
        let after = s[k + word.len()..].chars().next();
        if !before.is_some_and(ident) && !after.is_some_and(ident) {
            return Some(k);
        }
        from = k + word.len();
    }
    None
}

/// One path of a `use` tree, with the name it is bound to.
struct UsePath {
    segs: Vec<String>,
    alias: Option<String>,
    public: bool,
    line: usize,
}

/// Every `use` statement of `code`, its trees expanded.
fn use_paths(code: &str) -> Vec<UsePath> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = find_word(&code[from..], "use").map(|a| a + from) {
        let before = code[..at].trim_end();
        let public = before.ends_with("pub") || before.ends_with(')');
        let starts = before.is_empty()
            || before.ends_with([';', '{', '}', ']'])
            || before.ends_with("pub")
            || (before.ends_with(')') && before.trim_end_matches(')').contains("pub("));
        let Some(len) = code[at..].find(';') else {
            break;
        };
        if starts {
            let line = code[..at].matches('\n').count() + 1;
            let tree = code[at + 3..at + len]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let tree = ["::", "{", "}", ","].iter().fold(tree, |t, p| {
                t.replace(&format!(" {p}"), p).replace(&format!("{p} "), p)
            });
            for (segs, alias) in expand(&tree) {
                out.push(UsePath {
                    segs,
                    alias,
                    public,
                    line,
                });
            }
        }
        from = at + len;
    }
    out
}

/// `a::{b,c::{d,e}}` → `a::b`, `a::c::d`, `a::c::e` (with ` as x` aliases).
fn expand(tree: &str) -> Vec<(Vec<String>, Option<String>)> {
    let tree = tree.trim().trim_start_matches("::");
    let Some(open) = tree.find('{') else {
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim().to_string())),
            None => (tree.trim(), None),
        };
        let segs = path
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        return vec![(segs, alias)];
    };
    let prefix: Vec<String> = tree[..open]
        .trim_end_matches("::")
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut last) = (0, 0);
    for (k, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[last..k]);
                last = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[last..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|(segs, alias)| {
            if segs == ["self"] {
                (prefix.clone(), alias.or_else(|| prefix.last().cloned()))
            } else {
                (prefix.iter().cloned().chain(segs).collect(), alias)
            }
        })
        .collect()
}

/// The crate's modules and what each re-exports, for resolving paths.
struct Crate {
    modules: BTreeSet<String>,
    /// Module → name → the full path it re-exports.
    reexports: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl Crate {
    fn new(files: &[File]) -> Crate {
        let modules: BTreeSet<String> = files.iter().map(|f| f.module.clone()).collect();
        let mut c = Crate {
            modules,
            reexports: BTreeMap::new(),
        };
        for f in files {
            let mut names = BTreeMap::new();
            for u in use_paths(&f.code).into_iter().filter(|u| u.public) {
                if let Some(abs) = c.absolute(&f.module, &u.segs) {
                    let name = u.alias.clone().or_else(|| abs.last().cloned());
                    if let Some(name) = name.filter(|n| n != "*") {
                        names.insert(name, abs);
                    }
                }
            }
            c.reexports.insert(f.module.clone(), names);
        }
        c
    }

    /// `segs` as written in `module`, made absolute (`crate::…`); `None`
    /// for paths into other crates.
    fn absolute(&self, module: &str, segs: &[String]) -> Option<Vec<String>> {
        let here: Vec<String> = module.split("::").map(str::to_string).collect();
        let first = segs.first()?;
        let (mut base, rest) = match first.as_str() {
            "crate" => (vec!["crate".to_string()], &segs[1..]),
            "self" => (here.clone(), &segs[1..]),
            "super" => {
                let mut b = here.clone();
                let mut k = 0;
                while segs.get(k).map(String::as_str) == Some("super") {
                    b.pop();
                    k += 1;
                }
                (b, &segs[k..])
            }
            child if self.modules.contains(&format!("{module}::{child}")) => (here.clone(), segs),
            _ => return None,
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The module file that defines what the absolute path `abs` names.
    fn target(&self, abs: &[String], depth: usize) -> String {
        let mut cur = abs[0].clone();
        for (k, seg) in abs.iter().enumerate().skip(1) {
            let next = format!("{cur}::{seg}");
            if self.modules.contains(&next) {
                cur = next;
                continue;
            }
            if let Some(path) = self.reexports.get(&cur).and_then(|m| m.get(seg))
                && depth < 8
            {
                let mut full = path.clone();
                full.extend(abs[k + 1..].iter().cloned());
                return self.target(&full, depth + 1);
            }
            break;
        }
        cur
    }
}

/// Every import of every file.
fn edges(files: &[File], krate: &Crate) -> Vec<Edge> {
    let mut out = BTreeSet::new();
    for f in files {
        let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let add = |abs: &[String], line: usize, out: &mut BTreeSet<Edge>| {
            let to = krate.target(abs, 0);
            if to != f.module && to != "crate" {
                out.insert(Edge {
                    from: f.module.clone(),
                    to,
                    line,
                });
            }
        };
        for u in use_paths(&f.code) {
            let Some(abs) = krate.absolute(&f.module, &u.segs) else {
                continue;
            };
            let abs: Vec<String> = abs.into_iter().filter(|s| s != "*").collect();
            if krate.modules.contains(&abs.join("::")) {
                let name = u.alias.clone().or_else(|| abs.last().cloned()).unwrap();
                aliases.insert(name, abs.clone());
            }
            add(&abs, u.line, &mut out);
        }
        // Paths in the code: crate::…, super::…, self::…, and through the
        // module aliases bound above.
        let roots: Vec<String> = ["crate", "super", "self"]
            .into_iter()
            .map(str::to_string)
            .chain(aliases.keys().cloned())
            .collect();
        for (n, line) in f.code.lines().enumerate() {
            for root in &roots {
                let mut from = 0;
                while let Some(k) = find_word(&line[from..], root).map(|k| k + from) {
                    from = k + root.len();
                    if line[..k].ends_with("::") || !line[from..].starts_with("::") {
                        continue;
                    }
                    let path: Vec<String> = line[k..]
                        .split("::")
                        .map(|s| {
                            s.chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect::<String>()
                        })
                        .take_while(|s| !s.is_empty())
                        .collect();
                    // A `use` tree (`crate::ops::{…}`): its paths are read above.
                    let written = path.join("::");
                    if line[k + written.len()..].starts_with("::{") {
                        continue;
                    }
                    let abs = match aliases.get(root) {
                        Some(m) if !["crate", "super", "self"].contains(&root.as_str()) => {
                            m.iter().cloned().chain(path[1..].iter().cloned()).collect()
                        }
                        _ => match krate.absolute(&f.module, &path) {
                            Some(a) => a,
                            None => continue,
                        },
                    };
                    add(&abs, n + 1, &mut out);
                }
            }
        }
    }
    out.into_iter().collect()
}

/// The strongly connected components of more than one module (Tarjan).
fn cycles(edges: &[Edge]) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        next.entry(&e.from).or_default().insert(&e.to);
        next.entry(&e.to).or_default();
    }
    struct T<'a> {
        next: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for &w in &t.next[v] {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
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
        next: &next,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: Vec<&str> = next.keys().copied().collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn top(module: &str) -> &str {
    module.split("::").nth(1).unwrap_or("crate")
}

#[test]
fn layers_hold() {
    let files = read_sources();
    let krate = Crate::new(&files);
    let edges = edges(&files, &krate);
    let path_of: BTreeMap<&str, &str> = files
        .iter()
        .map(|f| (f.module.as_str(), f.path.as_str()))
        .collect();
    // Every top-level module has a place in the order.
    let tops: BTreeSet<&str> = files.iter().map(|f| top(&f.module)).collect();
    for t in &tops {
        assert!(
            *t == "crate" || ORDER.contains(t),
            "{t} has no place in ORDER"
        );
    }
    let rank = |m: &str| ORDER.iter().position(|o| *o == top(m));
    let mut problems = Vec::new();
    for e in &edges {
        if let (Some(a), Some(b)) = (rank(&e.from), rank(&e.to))
            && b > a
        {
            problems.push(format!(
                "{}:{} imports {} ({} is above {})",
                path_of[e.from.as_str()],
                e.line,
                e.to,
                top(&e.to),
                top(&e.from)
            ));
        }
    }
    let upward = problems.len();
    let found = cycles(&edges);
    for comp in &found {
        let inside: Vec<String> = edges
            .iter()
            .filter(|e| comp.contains(&e.from) && comp.contains(&e.to))
            .map(|e| format!("{}:{} → {}", path_of[e.from.as_str()], e.line, e.to))
            .collect();
        problems.push(format!(
            "cycle among {}: {}",
            comp.join(", "),
            inside.join("; ")
        ));
    }
    println!(
        "{} files, {} imports, {} cycle(s), {} upward import(s)",
        files.len(),
        edges.len(),
        found.len(),
        upward
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The check sees imports at all (a parser that found none would pass).
    assert!(edges.len() > 300, "{} imports", edges.len());
    for (from, to) in [
        ("crate::ops::snapshot", "crate::capture"),
        ("crate::cli::list", "crate::ops::list"),
        ("crate::daemon::worker", "crate::ops::snapshot"),
    ] {
        assert!(
            edges.iter().any(|e| e.from == from && e.to.starts_with(to)),
            "{from} → {to} not seen"
        );
    }
}

/// The maps people read cannot drift from the folders: every top-level
/// module under `src/` is in `lib.rs`'s map and in docs/ARCHITECTURE.md,
/// every module of `ops` and `daemon` in its `mod.rs` header, every module
/// has a place in [`ORDER`].
#[test]
fn maps_name_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let header = |text: &str| -> String {
        text.lines()
            .take_while(|l| l.starts_with("//!") || l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let children = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter_map(|p| {
                let name = p.file_stem()?.to_str()?.to_string();
                (p.is_dir() || p.extension().is_some_and(|e| e == "rs")).then_some(name)
            })
            .filter(|n| !["lib", "main", "mod"].contains(&n.as_str()))
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let lib = header(&read("src/lib.rs"));
    let arch = read("docs/ARCHITECTURE.md");
    let mut missing = Vec::new();
    for m in children("src") {
        if !lib.contains(&format!("[`{m}`]")) {
            missing.push(format!("src/lib.rs's map lacks [`{m}`]"));
        }
        if !arch.contains(&format!("src/{m}")) {
            missing.push(format!("docs/ARCHITECTURE.md never names src/{m}"));
        }
        if !ORDER.contains(&m.as_str()) {
            missing.push(format!("{m} has no place in the layer order"));
        }
    }
    for dir in ["ops", "daemon"] {
        let head = header(&read(&format!("src/{dir}/mod.rs")));
        for m in children(&format!("src/{dir}")) {
            if !head.contains(&format!("[`{m}`]")) && !head.contains(&format!("[`{m}()`]")) {
                missing.push(format!("src/{dir}/mod.rs's header lacks [`{m}`]"));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
