//! The layers the workspace promises (ARCHITECTURE.md): the API and core crates do no IO,
//! and no crate's modules import each other in a circle.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Crates (in the dependency graph of these packages) that mean IO or a runtime.
const IO_CRATES: [&str; 8] = [
    "tokio",
    "hyper",
    "aws-config",
    "aws-sdk-iam",
    "aws-sdk-sts",
    "kube-client",
    "kube-runtime",
    "axum",
];

#[test]
fn the_api_and_core_crates_depend_on_no_io() {
    for package in ["irsa-api", "irsa-core"] {
        let output = Command::new(env!("CARGO"))
            .args(["tree", "--locked", "--offline", "--edges", "normal"])
            .args(["--prefix", "none", "--format", "{p}", "--package", package])
            .current_dir(ROOT)
            .output()
            .expect("run cargo tree");
        assert!(
            output.status.success(),
            "cargo tree: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let tree = String::from_utf8(output.stdout).unwrap();
        let names: BTreeSet<&str> = tree
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        assert!(names.contains("serde"), "cargo tree listed nothing: {tree}");
        let io: Vec<&&str> = IO_CRATES.iter().filter(|c| names.contains(**c)).collect();
        assert!(io.is_empty(), "{package} depends on {io:?}");
    }
}

#[test]
fn no_crate_has_an_import_cycle() {
    for src in ["crates/api/src", "crates/core/src", "src"] {
        let graph = module_graph(&Path::new(ROOT).join(src));
        assert!(graph.len() > 3, "{src}: too few modules read: {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{src}: modules import each other in a circle: {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
        ("d".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let acyclic = BTreeMap::from([("d".to_string(), BTreeSet::from(["a".to_string()]))]);
    assert_eq!(find_cycle(&acyclic), None);
}

/// Top-level module -> the top-level modules its code (tests aside) names as `crate::x`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let first = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        // Test code and fixtures (`testing`, `tests.rs`) may use anything.
        if ["lib", "main", "testing"].contains(&module.as_str()) || file.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let names = graph.entry(module.clone()).or_default();
        for used in crate_paths(code) {
            if used != module && used != "testing" {
                names.insert(used);
            }
        }
    }
    graph
}

/// The first segment after each `crate::`, including inside `use crate::{a::x, b}`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let segments: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            top_level_items(&group[..end])
        } else {
            vec![rest]
        };
        for segment in segments {
            let name: String = segment
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != "self" {
                names.insert(name);
            }
        }
    }
    names
}

fn top_level_items(group: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// A circle of modules, from the first module that is on one, or `None`.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}
