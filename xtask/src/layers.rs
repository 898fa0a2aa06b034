//! `cargo xtask test`'s first check: guard's modules import one way, and
//! no type name (struct, enum, trait) names two types.
//!
//! guard/src is split into layers (see ARCHITECTURE.md), top to bottom
//! [`LAYERS`]. A module may import from its own layer or from one below it,
//! and no module may import, directly or through others, a module that
//! imports it back. Both are checked on the source text, one node per file
//! (and per inline `mod name { ... }`): every `crate::`, `super::` and
//! `self::` path, in `use` trees and inline, and `use child::...` of a
//! child module, is an edge to the longest module that path names. A `mod`
//! declaration is not an import.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

use anyhow::{Context as _, Result, bail};

/// guard's layers, top to bottom: each may import only from itself and
/// the ones after it.
pub const LAYERS: &[&str] = &[
    "cli",
    "commands",
    "daemon",
    "dataplane",
    "host",
    "model",
    "config",
    "error",
];

/// Module path (`model::doctor`) -> the modules it imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Checks guard/src; the error lists every upward import and every cycle.
pub fn check(src: &Path) -> Result<()> {
    let mut files = BTreeMap::new();
    read_tree(src, src, &mut files)?;
    let problems = problems(&files);
    if problems.is_empty() {
        println!(
            "xtask: {} modules of guard import one way through {} layers",
            files.len(),
            LAYERS.len()
        );
        return Ok(());
    }
    bail!(
        "guard's imports do not go one way (see ARCHITECTURE.md):\n  {}",
        problems.join("\n  ")
    )
}

/// Every .rs file under `dir`, by module path.
fn read_tree(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            read_tree(root, &path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root)?.with_extension("");
            let mut segments: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if segments.last().is_some_and(|s| s == "mod") {
                segments.pop();
            }
            // The binary's root is a crate of its own, which reaches the
            // library only through `guard::cli`: not a module of the tree.
            if segments == ["main"] {
                continue;
            }
            if segments == ["lib"] {
                segments.clear();
            }
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            files.insert(segments.join("::"), text);
        }
    }
    Ok(())
}

/// What is wrong with the files' imports, one line each.
fn problems(files: &BTreeMap<String, String>) -> Vec<String> {
    let graph = graph(files);
    let mut out = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            if let (Some(a), Some(b)) = (layer(from), layer(to))
                && b < a
            {
                out.push(format!(
                    "{from} imports {to}: layer {} is above {}",
                    LAYERS[b], LAYERS[a]
                ));
            }
        }
    }
    for cycle in cycles(&graph) {
        out.push(format!("cycle: {}", cycle.join(" -> ")));
    }
    for (name, modules) in names(files) {
        if modules.len() > 1 {
            out.push(format!(
                "type {name} is declared in {}: one name, one type",
                modules.into_iter().collect::<Vec<_>>().join(" and ")
            ));
        }
    }
    out
}

/// Each struct, enum and trait name, with the modules that declare it;
/// test modules are left out (their fixtures may share names).
fn names(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in files {
        if module.rsplit("::").next() == Some("tests") {
            continue;
        }
        let code = strip(text);
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        let tokens = tokenize(code);
        for pair in tokens.windows(2) {
            if matches!(pair[0].as_str(), "struct" | "enum" | "trait") && is_ident(&pair[1]) {
                out.entry(pair[1].clone())
                    .or_default()
                    .insert(module.clone());
            }
        }
    }
    out
}

fn layer(module: &str) -> Option<usize> {
    let top = module.split("::").next()?;
    LAYERS.iter().position(|l| *l == top)
}

/// The import graph: one node per file and inline module.
fn graph(files: &BTreeMap<String, String>) -> Graph {
    let mut modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut refs: Vec<(String, Vec<String>)> = Vec::new();
    for (module, text) in files {
        let code = strip(text);
        for (inner, paths) in references(module, &code) {
            modules.insert(inner.clone());
            refs.push((inner, paths));
        }
    }
    let mut graph = Graph::new();
    for (from, paths) in refs {
        if from.is_empty() {
            continue;
        }
        let edges = graph.entry(from.clone()).or_default();
        for path in paths {
            if let Some(to) = longest_module(&modules, &path)
                && to != from
                && !to.is_empty()
            {
                edges.insert(to);
            }
        }
    }
    graph
}

/// The longest module that `path` (segments joined by `::`) starts with.
fn longest_module(modules: &BTreeSet<String>, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|candidate| modules.contains(candidate))
}

/// Removes comments, string and char literals, so that only code is read.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r'
            && matches!(next, Some('#' | '"'))
            && !ident(chars.get(i.wrapping_sub(1)))
        {
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) == Some(&'"') {
                j += 1;
                loop {
                    if j >= chars.len() {
                        break;
                    }
                    if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            } else {
                out.push(c);
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'), or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// The paths each module in `code` refers to (the file's module, and any
/// inline `mod name { ... }` inside it), as absolute module paths.
fn references(module: &str, code: &str) -> Vec<(String, Vec<String>)> {
    let tokens = tokenize(code);
    // The module each token is in: inline modules nest by braces.
    let mut scopes: Vec<(String, usize)> = vec![(module.to_owned(), 0)];
    let mut depth = 0usize;
    let mut pending: Option<String> = None;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    out.entry(module.to_owned()).or_default();
    // Child modules declared in each module: `use child::x` is relative.
    let mut children: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut i = 0;
    while i < tokens.len() {
        let current = scopes.last().map(|(m, _)| m.clone()).unwrap_or_default();
        match tokens[i].as_str() {
            "mod" if i + 2 < tokens.len() && is_ident(&tokens[i + 1]) => {
                let name = &tokens[i + 1];
                children
                    .entry(current.clone())
                    .or_default()
                    .insert(name.clone());
                if tokens[i + 2] == "{" {
                    pending = Some(join(&current, name));
                }
                i += 2;
                continue;
            }
            "{" => {
                depth += 1;
                if let Some(inner) = pending.take() {
                    out.entry(inner.clone()).or_default();
                    scopes.push((inner, depth));
                }
            }
            "}" => {
                if scopes.last().is_some_and(|(_, d)| *d == depth) && scopes.len() > 1 {
                    scopes.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "use" => {
                let (paths, end) = use_tree(&tokens, i + 1);
                for path in paths {
                    if let Some(abs) = absolute(&current, &path, children.get(&current)) {
                        out.entry(current.clone()).or_default().push(abs);
                    }
                }
                i = end;
                continue;
            }
            "crate" | "super" | "self"
                if tokens.get(i + 1).is_some_and(|t| t == "::")
                    && tokens.get(i + 2).is_some_and(|t| is_ident(t)) =>
            {
                let (path, end) = inline_path(&tokens, i);
                if let Some(abs) = absolute(&current, &path, None) {
                    out.entry(current.clone()).or_default().push(abs);
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.into_iter().collect()
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}::{child}")
    }
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && t.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Identifiers, `::`, and single punctuation characters.
fn tokenize(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".to_owned());
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    tokens
}

/// The paths of a `use` tree starting at `i`; returns them and the index
/// after the closing `;`.
fn use_tree(tokens: &[String], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut out = Vec::new();
    // The prefix each open brace adds; the path being read, if any.
    let mut prefixes: Vec<Vec<String>> = vec![Vec::new()];
    let mut current: Option<Vec<String>> = None;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        match t {
            ";" => {
                out.extend(current);
                return (out, i + 1);
            }
            "{" => {
                let prefix = current
                    .take()
                    .unwrap_or_else(|| prefixes.last().cloned().unwrap_or_default());
                prefixes.push(prefix);
            }
            "," => out.extend(current.take()),
            "}" => {
                out.extend(current.take());
                prefixes.pop();
            }
            "as" => i += 1,
            _ if is_ident(t) => current
                .get_or_insert_with(|| prefixes.last().cloned().unwrap_or_default())
                .push(t.to_owned()),
            _ => {}
        }
        i += 1;
    }
    (out, i)
}

/// A path in code (`crate::model::sizing::MIB`), from `i`; returns it and
/// the index after it.
fn inline_path(tokens: &[String], mut i: usize) -> (Vec<String>, usize) {
    let mut path = vec![tokens[i].clone()];
    i += 1;
    while i + 1 < tokens.len() && tokens[i] == "::" && is_ident(&tokens[i + 1]) {
        path.push(tokens[i + 1].clone());
        i += 2;
    }
    (path, i)
}

/// `path` as seen from `module`, made absolute (segments joined by `::`);
/// `None` for paths into other crates.
fn absolute(module: &str, path: &[String], children: Option<&BTreeSet<String>>) -> Option<String> {
    let mut base: Vec<&str> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some(first) if children.is_some_and(|c| c.contains(first)) => {}
        _ => return None,
    }
    let mut segments: Vec<&str> = base;
    segments.extend(rest.iter().map(String::as_str));
    Some(segments.join("::"))
}

/// Every cycle (strongly connected component of more than one module),
/// each as a path that closes on its first module.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for start in graph.keys() {
        if seen.contains(start) {
            continue;
        }
        if let Some(cycle) = cycle_through(graph, start) {
            seen.extend(cycle.iter().cloned());
            out.push(cycle);
        }
    }
    out
}

/// A shortest path from `start` back to itself, if there is one.
fn cycle_through(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_owned()]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut path = vec![start.to_owned()];
                let mut at = node.clone();
                let mut back = vec![];
                while at != start {
                    back.push(at.clone());
                    at = parent[&at].clone();
                }
                back.reverse();
                path.extend(back);
                path.push(start.to_owned());
                return Some(path);
            }
            if !parent.contains_key(next) && next != start {
                parent.insert(next.clone(), node.clone());
                queue.push_back(next.clone());
            }
        }
    }
    None
}

/// The graph as text, for `cargo xtask test` failures and the tests.
#[cfg(test)]
fn describe(graph: &Graph) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for (from, tos) in graph {
        let _ = writeln!(
            s,
            "{from}: {}",
            tos.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(m, t)| ((*m).to_owned(), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn use_trees_inline_paths_and_relative_children_are_edges() {
        let files = tree(&[
            ("", "pub mod cli; pub mod model; pub mod config;"),
            (
                "cli",
                "use crate::{model::{policy::{self, Level}, sizing::MIB as M}, config};\n\
                 fn f() { crate::model::sizing::quarter(1); let s = \"crate::config::x\"; }",
            ),
            (
                "model",
                "pub mod policy; pub mod sizing; pub use sizing::MIB;",
            ),
            ("model::policy", "use super::sizing; // use crate::cli;\n"),
            (
                "model::sizing",
                "#[cfg(test)] mod tests { use super::*; use crate::config; }",
            ),
            ("config", ""),
        ]);
        let g = graph(&files);
        assert_eq!(
            describe(&g),
            "cli: config, model::policy, model::sizing\n\
             config: \n\
             model: model::sizing\n\
             model::policy: model::sizing\n\
             model::sizing: \n\
             model::sizing::tests: config, model::sizing\n"
        );
        assert!(problems(&files).is_empty(), "{:?}", problems(&files));
    }

    #[test]
    fn an_upward_import_is_named() {
        let files = tree(&[
            ("cli", ""),
            ("model", "pub mod policy;"),
            ("model::policy", "use crate::cli;"),
        ]);
        assert_eq!(
            problems(&files),
            ["model::policy imports cli: layer cli is above model"]
        );
    }

    #[test]
    fn a_cycle_within_a_layer_is_named() {
        let files = tree(&[
            ("model", "pub mod a; pub mod b; pub mod c;"),
            ("model::a", "use super::b::X;"),
            ("model::b", "fn f() { crate::model::c::g(); }"),
            ("model::c", "use crate::model::a;"),
        ]);
        assert_eq!(
            problems(&files),
            ["cycle: model::a -> model::b -> model::c -> model::a"]
        );
    }

    #[test]
    fn a_name_for_two_types_is_named() {
        let files = tree(&[
            ("model", "pub mod a; pub mod b;"),
            (
                "model::a",
                "pub struct Decision;\n#[cfg(test)] mod tests { struct Rng; }",
            ),
            ("model::b", "pub(crate) enum Decision { A }\nstruct Rng;"),
            ("model::b::tests", "struct Rng;"),
        ]);
        assert_eq!(
            problems(&files),
            ["type Decision is declared in model::a and model::b: one name, one type"]
        );
    }

    #[test]
    fn lifetimes_and_chars_do_not_confuse_the_reader() {
        let code = strip("fn f<'a>(x: &'a str) -> char { let c = '{'; let d = '\\''; 'x' }");
        assert!(!code.contains("'{'") && code.contains("'a"), "{code}");
        assert_eq!(code.matches('{').count(), 1, "{code}");
    }

    #[test]
    fn guard_itself_imports_one_way() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guard/src");
        check(&src).unwrap();
    }
}
