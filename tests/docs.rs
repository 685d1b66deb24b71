//! Docs that cannot drift: every ```rhai block of the book and of the
//! functions' doc comments runs, and every app in examples/ runs.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::*;
use skitter::runtime::LocalRuntime;
use skitter::script::docs::{function_docs, rhai_blocks};
use skitter::script::{App, EngineEnv, Session};

/// Checkpoints the examples take go to a directory of this run's, emptied
/// when it starts: an example deployed again must not resume from the
/// last run's.
fn checkpoints_of_this_run() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-checkpoints");
        let _ = std::fs::remove_dir_all(&dir);
        skitter::settings::checkpoint::set(skitter::settings::checkpoint::CheckpointSettings { dir: Some(dir), ..Default::default() });
    });
}

/// Runs `code` as one entry of a fresh session on a local runtime, in the
/// word count app, with a temp dir as the current directory's stand-in.
fn run_block(code: &str) -> Result<Vec<String>, String> {
    checkpoints_of_this_run();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let printed = Arc::new(Mutex::new(Vec::new()));
    let sink = printed.clone();
    let app = App::load(&example("word_count")).map_err(|e| e.to_string())?;
    let env = EngineEnv::new(Some(app.priv_dir()), Arc::new(move |text: &str| sink.lock().unwrap().push(text.to_string())));
    let runtime = Arc::new(LocalRuntime::new(rt.handle().clone(), "docs@test".into(), 2, env.clone()));
    let mut session = Session::new(env, Some(runtime.clone()), Some(app), Some(Default::default())).map_err(|e| e.to_string())?;
    // As if pasted into the shell: paragraphs (split at blank lines) are
    // entries, joined while incomplete.
    let mut result = Ok(());
    let mut entry = String::new();
    for paragraph in code.split("\n\n") {
        entry.push_str(paragraph);
        entry.push('\n');
        if skitter::shell::input::is_complete(session.engine(), &entry) {
            if let Err(e) = session.eval(&entry) {
                result = Err(format!("{e}\nin entry:\n{entry}"));
                break;
            }
            entry.clear();
        }
    }
    if result.is_ok() && !entry.trim().is_empty() {
        result = session.eval(&entry).map(|_| ()).map_err(|e| e.to_string());
    }
    skitter::script::Host::stop_all(runtime.as_ref());
    result?;
    let out = printed.lock().unwrap().clone();
    Ok(out)
}

fn book_chapters() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("book/src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    files.push(repo().join("README.md"));
    files
}

#[test]
fn every_rhai_block_of_the_book_runs() {
    let mut ran = 0;
    for chapter in book_chapters() {
        let text = std::fs::read_to_string(&chapter).unwrap();
        for (i, block) in rhai_blocks(&text).iter().enumerate() {
            if let Err(e) = run_block(block) {
                panic!("{} block {}:\n{block}\nfailed: {e}", chapter.display(), i + 1);
            }
            ran += 1;
        }
    }
    assert!(ran >= 8, "only {ran} blocks found");
}

/// The documentation of every function a shell session sees.
fn all_docs() -> Vec<skitter::script::docs::FnDoc> {
    let env = EngineEnv::new(None, skitter::script::engine::stdout_output());
    let engine = skitter::script::new_engine(&env);
    let mut docs = function_docs(&engine);
    // The runtime API is registered on sessions with a host.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let runtime = Arc::new(LocalRuntime::new(rt.handle().clone(), "docs@test".into(), 1, env.clone()));
    let session = Session::new(env, Some(runtime), None, Some(Default::default())).unwrap();
    docs.extend(function_docs(session.engine()));
    docs.retain(|d| !d.name.starts_with("to_string") && !d.name.starts_with("to_debug"));
    docs.sort_by(|a, b| a.name.cmp(&b.name).then(a.signature.cmp(&b.signature)));
    docs.dedup();
    docs
}

/// The book's reference chapter, made from the same doc comments as `h()`.
fn reference() -> String {
    let mut out = String::from("# Reference\n\nEvery function scripts can call, with what `h(\"name\")` shows in the shell.\nThis page is generated from the functions' own documentation: `SKITTER_BLESS=1 cargo test --test docs` rewrites it.\n");
    let docs = all_docs();
    let mut i = 0;
    while i < docs.len() {
        let name = &docs[i].name;
        let group: Vec<_> = docs[i..].iter().take_while(|d| &d.name == name).collect();
        out.push_str(&format!("\n## {name}\n\n```text\n"));
        for d in &group {
            out.push_str(&format!("{}\n", d.signature));
        }
        out.push_str("```\n");
        let mut seen: Vec<&str> = Vec::new();
        for d in &group {
            if !seen.contains(&d.doc.as_str()) {
                seen.push(&d.doc);
                out.push_str(&format!("\n{}\n", d.doc.trim_end()));
            }
        }
        i += group.len();
    }
    out
}

#[test]
fn the_book_reference_is_the_functions_documentation() {
    let path = repo().join("book/src/reference.md");
    let generated = reference();
    if std::env::var_os("SKITTER_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "book/src/reference.md is out of date: run `SKITTER_BLESS=1 cargo test --test docs`");
}

#[test]
fn every_documented_function_has_a_running_example() {
    let docs = all_docs();
    let mut ran = 0;
    for doc in &docs {
        if doc.name.starts_with("to_string") || doc.name.starts_with("to_debug") {
            continue;
        }
        let examples = doc.examples();
        assert!(!examples.is_empty(), "{} has no ```rhai example", doc.signature);
        for example in examples {
            if let Err(e) = run_block(&example) {
                panic!("example of {}:\n{example}\nfailed: {e}", doc.signature);
            }
            ran += 1;
        }
    }
    assert!(ran >= 40, "only {ran} examples ran");
}

#[test]
fn every_example_app_runs() {
    let mut apps = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let dir = entry.unwrap().path();
        // The Kafka example needs a broker: tests/kafka.rs starts one and runs it.
        if !dir.join("skitter.toml").is_file() || dir.ends_with("kafka_word_count") {
            continue;
        }
        let out = Skitter::new().args(["local", "start", "--no-log", "--app"]).arg(&dir).run();
        out.success();
        if dir.ends_with("word_count") {
            // Every word of its input with its total.
            let got: std::collections::BTreeMap<String, i64> = out.labelled("count").iter().map(|v| word_and_count(v)).collect();
            assert_eq!(got, count_words(&std::fs::read_to_string(dir.join("priv/words.txt")).unwrap()));
        } else {
            // What it prints, line for line (in any order: instances run in
            // parallel), as its expected.txt says, with the host's name left out.
            let expected = std::fs::read_to_string(dir.join("expected.txt"))
                .unwrap_or_else(|_| panic!("{} has no expected.txt to compare its output with", dir.display()));
            let mut got: Vec<String> = out.stdout().lines().map(without_host).collect();
            got.sort();
            let mut want: Vec<String> = expected.lines().map(str::to_string).collect();
            want.sort();
            assert_eq!(got, want, "{} printed something else", dir.display());
        }
        apps += 1;
    }
    assert!(apps >= 1);
}

#[test]
fn readme_opens_with_the_two_commands() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let blocks: Vec<&str> = readme.split("```").skip(1).step_by(2).collect();
    let first = blocks.first().expect("a code block in the README");
    let commands: Vec<&str> =
        first.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("sh")).collect();
    assert_eq!(commands.len(), 2, "the README's first block holds exactly the two commands: {commands:?}");
    assert!(commands[0].contains("local start"), "first command runs the word count: {}", commands[0]);
    assert!(ci.lines().any(|l| l.trim() == commands[1]), ".ci/run runs the README's test command `{}`", commands[1]);
}

/// `skitter_local@HOST` for this machine's `skitter_local@<hostname>`.
fn without_host(line: &str) -> String {
    match line.find("skitter_local@") {
        Some(at) => {
            let start = at + "skitter_local@".len();
            let end = line[start..].find([' ', '"']).map_or(line.len(), |e| start + e);
            format!("{}HOST{}", &line[..start], &line[end..])
        }
        None => line.to_string(),
    }
}
