//! The shape of `gateway/src`: layers that import only downward, no import cycle between
//! files, and no source file in the workspace over 600 lines (outside `tests/` folders).
//!
//! The layers, bottom to top, are written once, in [`LAYERS`]; the README's layout section
//! says what each holds. Every `crate::…`, `super::…`, `self::…` path, a path through a child
//! module or through a module alias made by `use`, grouped uses (`use crate::{a, b::c}`)
//! included, is resolved to the file that defines what it names, following re-exports
//! (`pub use`) to the file where the item is. A parent's `pub use` of its own children is the
//! folder's facade, not a dependency of the parent, and is not an edge.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Bottom to top. A module may import from its own layer's other modules and from any layer
/// below, never from one above. The crate root (`lib.rs`) only declares and re-exports.
///
/// `acme` (certificates from an ACME CA) uses config, metrics and tls; `tls` reaches it only
/// through `tls::HandshakeChallenge`, which the runtime hands it. `fleet` (the config from
/// etcd) uses config only. `traces` (a request's spans) uses config, metrics and the plugin
/// API's request state; `request` starts and ends its spans. The checker accepts a layer's
/// name without a module.
const LAYERS: &[&[&str]] = &[
    &["config"],
    &["metrics", "log_reopen"],
    &["net", "lifecycle"],
    &["tls", "upstream", "plugin"],
    &["traces"],
    &["acme"],
    &["route"],
    &["snapshot"],
    &["request"],
    &["listener"],
    &["fleet"],
    &["runtime"],
];

/// Layers that import nothing of the crate: the metric families and handles are plain
/// names and values, so that every layer can count without depending on another.
const LEAVES: &[&str] = &["metrics"];

/// The longest a source file may be, outside test folders.
const MAX_LINES: usize = 600;

/// Where the workspace's source lives (relative to the workspace root).
const SOURCE_DIRS: &[&str] = &["gateway", "plugins", "src", "benches", "fuzz", "examples"];

#[test]
fn gateway_layers_import_only_downward_and_files_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_tree(&src);
    let problems = check(&files, LAYERS);
    assert!(
        problems.is_empty(),
        "gateway/src breaks its layering ({} problem(s)):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn no_source_file_is_over_600_lines_outside_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut long = Vec::new();
    for dir in SOURCE_DIRS {
        for file in rust_files(&root.join(dir)) {
            let rel = file.strip_prefix(&root).unwrap_or(&file).to_path_buf();
            if rel.components().any(|c| {
                let c = c.as_os_str();
                c == "tests" || c == "target" || c == "cache"
            }) {
                continue;
            }
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            if lines > MAX_LINES {
                long.push(format!("{} has {lines} lines", rel.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "source files over {MAX_LINES} lines (split them by concept):\n  {}",
        long.join("\n  ")
    );
}

// The checker checks itself: each rule must be able to fail.

#[test]
fn the_checker_finds_a_cycle_between_two_files() {
    let files = tree(&[
        ("lib.rs", "mod a; mod b;"),
        ("a.rs", "use crate::b::B; pub struct A;"),
        ("b/mod.rs", "mod inner; pub use inner::B;"),
        ("b/inner.rs", "pub struct B(crate::a::A);"),
    ]);
    let problems = check(&files, &[&["a", "b"]]);
    assert_eq!(problems, ["import cycle: a.rs -> b/inner.rs -> a.rs"]);
}

#[test]
fn the_checker_finds_an_import_from_a_higher_layer_in_a_group() {
    let files = tree(&[
        ("lib.rs", "mod low; mod high;"),
        (
            "low.rs",
            "use crate::{high::{self, H}};\nfn f() { high::g(); }",
        ),
        ("high.rs", "pub struct H; pub fn g() {}"),
    ]);
    let problems = check(&files, &[&["low"], &["high"]]);
    assert_eq!(
        problems,
        ["low.rs (layer low) imports high.rs (layer high, above it)"]
    );
}

#[test]
fn the_checker_ignores_comments_strings_and_a_facade() {
    let files = tree(&[
        ("lib.rs", "mod a; mod b;"),
        (
            "a/mod.rs",
            "mod x; pub use x::X; // crate::b::B\nconst S: &str = \"crate::b::B\";",
        ),
        ("a/x.rs", "use super::super::b::B; pub struct X(B);"),
        (
            "b.rs",
            "/* crate::a::X */ pub struct B; fn f(c: char) -> bool { c == '{' }",
        ),
    ]);
    assert_eq!(check(&files, &[&["b"], &["a"]]), Vec::<String>::new());
    assert_eq!(
        check(&files, &[&["a"], &["b"]]),
        ["a/x.rs (layer a) imports b.rs (layer b, above it)"]
    );
}

#[test]
fn the_checker_wants_every_module_in_a_layer() {
    let files = tree(&[
        ("lib.rs", "mod a; mod stray;"),
        ("a.rs", ""),
        ("stray.rs", ""),
    ]);
    assert_eq!(
        check(&files, &[&["a"]]),
        ["stray.rs: module stray is in no layer (add it to LAYERS)"]
    );
}

fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect()
}

/// Every `.rs` file under `src`, by its path relative to `src` (`/`-separated).
fn read_tree(src: &Path) -> BTreeMap<String, String> {
    rust_files(src)
        .into_iter()
        .map(|f| {
            let rel = f
                .strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A module path: `[]` is the crate root, `["plugin", "chain"]` is `crate::plugin::chain`.
type ModPath = Vec<String>;

/// The module a file is: `lib.rs` the root, `a/mod.rs` and `a.rs` module `a`.
fn module_of(file: &str) -> ModPath {
    let stem = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// One `use` leaf: the absolute path it names, the name it binds, whether it is `pub`.
struct UseLeaf {
    path: ModPath,
    name: String,
    glob: bool,
    public: bool,
}

/// What one file says: its `use` leaves and the other paths in its code, each with the
/// module scope it was written in (inline modules such as `mod tests` have their own).
struct Parsed {
    uses: Vec<(ModPath, UseLeaf)>,
    paths: Vec<(ModPath, Vec<String>)>,
    /// Module scopes declared in the file (`mod x;` or `mod x { … }`), absolute.
    modules: Vec<ModPath>,
    /// Names the file defines at its top level (`struct X`, `fn f`, …).
    defines: BTreeSet<String>,
    /// Every identifier its code (outside `use` statements) mentions.
    mentions: BTreeSet<String>,
}

fn check(files: &BTreeMap<String, String>, layers: &[&[&str]]) -> Vec<String> {
    let mut problems = Vec::new();
    let by_module: HashMap<ModPath, String> =
        files.keys().map(|f| (module_of(f), f.clone())).collect();
    let parsed: BTreeMap<&String, Parsed> = files
        .iter()
        .map(|(f, text)| (f, parse(&strip(text), &module_of(f))))
        .collect();
    // Every module scope, file-backed or inline, to the file holding it.
    let mut scopes: HashMap<ModPath, String> = by_module.clone();
    for (f, p) in &parsed {
        for m in &p.modules {
            scopes.entry(m.clone()).or_insert_with(|| (*f).clone());
        }
    }
    let resolver = Resolver {
        scopes: &scopes,
        parsed: &parsed,
        by_module: &by_module,
    };

    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, p) in &parsed {
        let own = module_of(file);
        let mut targets = BTreeSet::new();
        for (_, leaf) in &p.uses {
            // A parent re-exporting its own children: the folder's facade, unless the
            // parent's own code uses what it re-exports.
            let facade = leaf.public
                && leaf.path.len() > own.len()
                && leaf.path.starts_with(&own)
                && (leaf.glob || !p.mentions.contains(&leaf.name));
            if facade {
                continue;
            }
            targets.extend(resolver.file_of(&leaf.path, leaf.glob));
        }
        for (scope, path) in &p.paths {
            if let Some(abs) = resolver.absolute(file, scope, path) {
                targets.extend(resolver.file_of(&abs, false));
            }
        }
        targets.remove(*file);
        edges.insert((*file).clone(), targets);
    }

    let layer_of = |file: &str| -> Option<(usize, String)> {
        let top = module_of(file).first()?.clone();
        layers
            .iter()
            .position(|l| l.contains(&top.as_str()))
            .map(|i| (i, top))
    };
    for file in files.keys() {
        if let Some(top) = module_of(file).first() {
            if layer_of(file).is_none() {
                problems.push(format!(
                    "{file}: module {top} is in no layer (add it to LAYERS)"
                ));
            }
        }
    }
    for (from, tos) in &edges {
        let Some((lf, nf)) = layer_of(from) else {
            continue;
        };
        for to in tos {
            if let Some((lt, nt)) = layer_of(to) {
                if lt > lf {
                    problems.push(format!(
                        "{from} (layer {nf}) imports {to} (layer {nt}, above it)"
                    ));
                }
            }
        }
    }
    for (from, tos) in &edges {
        let leaf = module_of(from)
            .first()
            .is_some_and(|top| LEAVES.contains(&top.as_str()));
        if leaf && !tos.is_empty() {
            problems.push(format!(
                "{from} is a leaf but imports {}",
                tos.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for cycle in cycles(&edges) {
        problems.push(format!("import cycle: {}", cycle.join(" -> ")));
    }
    problems
}

struct Resolver<'a> {
    scopes: &'a HashMap<ModPath, String>,
    parsed: &'a BTreeMap<&'a String, Parsed>,
    by_module: &'a HashMap<ModPath, String>,
}

impl Resolver<'_> {
    /// A path as written in `scope` of `file`, made absolute; `None` for another crate's.
    fn absolute(&self, file: &str, scope: &ModPath, path: &[String]) -> Option<ModPath> {
        let mut base = scope.clone();
        let mut rest = path;
        match rest.first()?.as_str() {
            "crate" => {
                base.clear();
                rest = &rest[1..];
            }
            "self" => rest = &rest[1..],
            "super" => {
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
            }
            first => {
                let mut child = scope.clone();
                child.push(first.to_string());
                if !self.scopes.contains_key(&child) {
                    // A module alias made by a `use` in this file.
                    let p = &self.parsed[&file.to_string()];
                    let alias = p.uses.iter().find(|(s, u)| {
                        !u.glob
                            && u.name == first
                            && scope.starts_with(s)
                            && self.is_module(&u.path)
                    })?;
                    base = alias.1.path.clone();
                    rest = &rest[1..];
                }
            }
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn is_module(&self, path: &ModPath) -> bool {
        self.scopes.contains_key(path)
    }

    /// The file defining what `path` names: the deepest module it goes through, or, for an
    /// item re-exported there, the file the re-export leads to.
    fn file_of(&self, path: &ModPath, glob: bool) -> Option<String> {
        self.follow(path, glob, 0)
    }

    fn follow(&self, path: &ModPath, glob: bool, depth: usize) -> Option<String> {
        if depth > 16 {
            return None;
        }
        let mut module = path.clone();
        let mut item = None;
        while !self.scopes.contains_key(&module) {
            item = module.pop();
            item.as_ref()?;
        }
        let file = &self.scopes[&module];
        let (Some(item), false) = (item, glob) else {
            return Some(file.clone());
        };
        // Only a file-backed module's own re-exports are followed (inline ones have none here).
        let Some(own) = self.by_module.get(&module) else {
            return Some(file.clone());
        };
        let p = &self.parsed[own];
        if p.defines.contains(&item) {
            return Some(own.clone());
        }
        for (scope, leaf) in &p.uses {
            if scope != &module || !leaf.public {
                continue;
            }
            if !leaf.glob && leaf.name == item {
                return self.follow(&leaf.path, false, depth + 1);
            }
            if leaf.glob {
                let mut through = leaf.path.clone();
                through.push(item.clone());
                if let Some(f) = self.follow(&through, false, depth + 1) {
                    let defined = self.by_module.get(&leaf.path) != Some(&f)
                        || self.parsed[&f].defines.contains(&item);
                    if defined {
                        return Some(f);
                    }
                }
            }
        }
        Some(own.clone())
    }
}

/// Cycles in the file graph: every strongly connected component of more than one file,
/// shown as one cycle through it.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm.
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.insert(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.out.push(one_cycle(s.edges, &component));
            }
        }
    }
    let mut s = State {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// A shortest cycle through the first file of a strongly connected component, in the order
/// the imports go: `a -> b -> a`.
fn one_cycle(
    edges: &BTreeMap<String, BTreeSet<String>>,
    component: &BTreeSet<&str>,
) -> Vec<String> {
    let start = *component.iter().next().unwrap();
    let mut prev: HashMap<&str, &str> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if w == start {
                let mut path = vec![start.to_string()];
                let mut at = v;
                while at != start {
                    path.push(at.to_string());
                    at = prev[at];
                }
                path.push(start.to_string());
                path.reverse();
                return path;
            }
            if component.contains(w) && !prev.contains_key(w) && w != start {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    component.iter().map(|s| s.to_string()).collect()
}

/// The source without comments, string and character literals (their text replaced by
/// spaces, so nothing in them looks like a path).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"' | b'#')) && !ident_before(b, i) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else {
                let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                if b.get(i + 1 + ch_len) == Some(&b'\'') {
                    i += 2 + ch_len;
                    out.push_str("' '");
                } else {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Path, // ::
    Open,
    Close,
    Comma,
    Semi,
    Star,
    Other(char),
}

fn tokens(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_alphabetic() || c == '_' => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_alphanumeric() || d == '_' {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Ident(text[i..end].to_string()));
            }
            c if c.is_ascii_digit() => {
                while chars
                    .peek()
                    .is_some_and(|&(_, d)| d.is_alphanumeric() || d == '_')
                {
                    chars.next();
                }
                out.push(Tok::Other('0'));
            }
            ':' if chars.peek().is_some_and(|&(_, d)| d == ':') => {
                chars.next();
                out.push(Tok::Path);
            }
            '{' => out.push(Tok::Open),
            '}' => out.push(Tok::Close),
            ',' => out.push(Tok::Comma),
            ';' => out.push(Tok::Semi),
            '*' => out.push(Tok::Star),
            c if c.is_whitespace() => {}
            c => out.push(Tok::Other(c)),
        }
    }
    out
}

const DEFINERS: &[&str] = &[
    "struct",
    "enum",
    "fn",
    "trait",
    "type",
    "const",
    "static",
    "union",
    "macro_rules",
];

fn parse(text: &str, file_module: &ModPath) -> Parsed {
    let t = tokens(text);
    let mut parsed = Parsed {
        uses: Vec::new(),
        paths: Vec::new(),
        modules: Vec::new(),
        defines: BTreeSet::new(),
        mentions: BTreeSet::new(),
    };
    // Inline module scopes: (module path, brace depth at which it closes).
    let mut scopes: Vec<(ModPath, usize)> = vec![(file_module.clone(), 0)];
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        let scope = scopes.last().unwrap().0.clone();
        if let Tok::Ident(x) = &t[i] {
            if x != "use" {
                parsed.mentions.insert(x.clone());
            }
        }
        match &t[i] {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth = depth.saturating_sub(1);
                if scopes.len() > 1 && scopes.last().unwrap().1 == depth {
                    scopes.pop();
                }
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let Some(Tok::Ident(name)) = t.get(i + 1) {
                    let mut m = scope.clone();
                    m.push(name.clone());
                    parsed.modules.push(m.clone());
                    if t.get(i + 2) == Some(&Tok::Open) {
                        scopes.push((m, depth));
                        depth += 1;
                        i += 3;
                        continue;
                    }
                    i += 2;
                    continue;
                }
            }
            Tok::Ident(kw) if DEFINERS.contains(&kw.as_str()) => {
                if let Some(Tok::Ident(name)) = t.get(i + 1) {
                    if scopes.len() == 1 && depth == 0 {
                        parsed.defines.insert(name.clone());
                    }
                }
            }
            Tok::Ident(kw) if kw == "use" => {
                let public = is_public(&t, i);
                let end = t[i..]
                    .iter()
                    .position(|x| *x == Tok::Semi)
                    .map_or(t.len(), |p| i + p);
                let mut leaves = Vec::new();
                use_tree(&t[i + 1..end], Vec::new(), &mut leaves);
                for (path, name, glob) in leaves {
                    let Some(abs) = absolute_use(&path, &scope, &parsed.modules) else {
                        continue;
                    };
                    parsed.uses.push((
                        scope.clone(),
                        UseLeaf {
                            path: abs,
                            name,
                            glob,
                            public,
                        },
                    ));
                }
                i = end;
                continue;
            }
            // A path in code: `a::b::c` (not the tail of a longer one).
            Tok::Ident(first)
                if matches!(t.get(i + 1), Some(Tok::Path)) && (i == 0 || t[i - 1] != Tok::Path) =>
            {
                let mut path = vec![first.clone()];
                let mut j = i + 1;
                while let (Some(Tok::Path), Some(Tok::Ident(next))) = (t.get(j), t.get(j + 1)) {
                    path.push(next.clone());
                    parsed.mentions.insert(next.clone());
                    j += 2;
                }
                parsed.paths.push((scope.clone(), path));
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parsed
}

/// Whether the `use` at `i` is `pub` (any visibility but private).
fn is_public(t: &[Tok], i: usize) -> bool {
    let mut j = i;
    // pub use / pub(crate) use / pub(super) use / pub(in path) use
    if j > 0 && t[j - 1] == Tok::Other(')') {
        while j > 0 && t[j - 1] != Tok::Other('(') {
            j -= 1;
        }
        j = j.saturating_sub(1);
    }
    j > 0 && t[j - 1] == Tok::Ident("pub".into())
}

/// The leaves of a use tree: (path, bound name, glob).
fn use_tree(t: &[Tok], prefix: Vec<String>, out: &mut Vec<(Vec<String>, String, bool)>) {
    let mut path = prefix;
    let mut i = 0;
    while i < t.len() {
        match &t[i] {
            Tok::Ident(s) if s == "as" => {
                if let Some(Tok::Ident(alias)) = t.get(i + 1) {
                    if let Some(last) = out.last_mut() {
                        last.1 = alias.clone();
                    }
                }
                return;
            }
            Tok::Ident(s) if s == "self" && !path.is_empty() => {
                let name = path.last().cloned().unwrap_or_default();
                out.push((path.clone(), name, false));
                i += 1;
                continue;
            }
            Tok::Ident(s) => {
                path.push(s.clone());
                if !matches!(t.get(i + 1), Some(Tok::Path)) {
                    out.push((path.clone(), s.clone(), false));
                }
            }
            Tok::Star => out.push((path.clone(), String::new(), true)),
            Tok::Open => {
                // Split the group at its top-level commas.
                let mut level = 0;
                let mut start = i + 1;
                let mut j = i + 1;
                while j < t.len() {
                    match t[j] {
                        Tok::Open => level += 1,
                        Tok::Close if level == 0 => break,
                        Tok::Close => level -= 1,
                        Tok::Comma if level == 0 => {
                            use_tree(&t[start..j], path.clone(), out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                use_tree(&t[start..j.min(t.len())], path.clone(), out);
                return;
            }
            _ => {}
        }
        i += 1;
    }
}

/// A `use` path made absolute; `None` for another crate's.
fn absolute_use(path: &[String], scope: &ModPath, declared: &[ModPath]) -> Option<ModPath> {
    let mut base = scope.clone();
    let mut rest = path;
    match rest.first()?.as_str() {
        "crate" => {
            base.clear();
            rest = &rest[1..];
        }
        "self" => rest = &rest[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        first => {
            let mut child = scope.clone();
            child.push(first.to_string());
            if !declared.contains(&child) {
                return None;
            }
        }
    }
    base.extend(rest.iter().cloned());
    Some(base)
}
