//! What a master needs to deploy a workflow again after it restarted
//! (`skitter master start --recover`): a record of every workflow with
//! checkpoints it runs — its graph, its code and its deploy options —
//! beside its checkpoints (`<checkpoint_dir>/<name>/running.bin`), written
//! at its deploy and removed when it ends. A master killed leaves them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::net::WorkflowSpec;
use crate::script::{Code, DeployOptions};
use crate::workflow::FlatGraph;

const FILE: &str = "running.bin";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Running {
    /// The name its checkpoints are kept under.
    pub name: String,
    pub spec: WorkflowSpec,
    /// Its code: (file name, text), in order.
    pub sources: Vec<(String, String)>,
    pub checkpoint_interval: Option<f64>,
    pub restart_attempts: Option<u32>,
    pub restart_delay_ms: Option<u64>,
    pub restart_within_ms: Option<u64>,
}

impl Running {
    pub fn of(name: &str, graph: &FlatGraph, code: &Code, options: &DeployOptions) -> Result<Running, String> {
        Ok(Running {
            name: name.to_string(),
            spec: WorkflowSpec::from_graph(graph)?,
            sources: code.sources.iter().map(|s| (s.name.clone(), s.text.clone())).collect(),
            checkpoint_interval: options.checkpoint_interval,
            restart_attempts: options.restart_attempts,
            restart_delay_ms: options.restart_delay.map(|d| d.as_millis() as u64),
            restart_within_ms: options.restart_within.map(|d| d.as_millis() as u64),
        })
    }

    /// What deploys it again: its graph, code and options (resuming under its name).
    pub fn into_parts(self) -> Result<(FlatGraph, Code, DeployOptions), String> {
        let graph = self.spec.into_graph()?;
        let sources = self.sources.into_iter().map(|(name, text)| crate::script::host::Source { name, text }).collect();
        let code = Code { ast: Default::default(), sources: std::sync::Arc::new(sources) };
        let options = DeployOptions {
            name: Some(self.name),
            checkpoint_interval: self.checkpoint_interval,
            restart_attempts: self.restart_attempts,
            restart_delay: self.restart_delay_ms.map(std::time::Duration::from_millis),
            restart_within: self.restart_within_ms.map(std::time::Duration::from_millis),
            ..Default::default()
        };
        Ok((graph, code, options))
    }
}

fn root() -> PathBuf {
    crate::settings::checkpoint::get().dir.unwrap_or_else(super::setup::default_dir)
}

fn failed<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> super::StoreError + 'a {
    move |e| super::StoreError::Io { action, path: path.to_path_buf(), error: e.to_string() }
}

/// Records `r` as running: written aside, synced, renamed into place.
pub fn write(r: &Running) -> Result<(), super::StoreError> {
    let dir = root().join(&r.name);
    std::fs::create_dir_all(&dir).map_err(failed("create", &dir))?;
    let path = dir.join(FILE);
    let aside = dir.join(format!("{FILE}.tmp"));
    let bytes = postcard::to_allocvec(r).map_err(|e| super::StoreError::Corrupt { path: path.clone(), reason: e.to_string() })?;
    std::fs::write(&aside, bytes).map_err(failed("write", &aside))?;
    std::fs::File::open(&aside).and_then(|f| f.sync_all()).map_err(failed("sync", &aside))?;
    std::fs::rename(&aside, &path).map_err(failed("rename into place", &path))?;
    super::store::sync_dir(&dir)
}

/// Workflow `name` ended: a restarted master does not deploy it again.
pub fn remove(name: &str) {
    let path = root().join(name).join(FILE);
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

/// The workflows recorded as running, each or why it does not read.
pub fn listed() -> Vec<Result<Running, String>> {
    let Ok(entries) = std::fs::read_dir(root()) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join(FILE);
        if let Ok(bytes) = std::fs::read(&path) {
            found.push(
                crate::net::value::decode_bounded(|| postcard::from_bytes::<Running>(&bytes))
                    .map_err(|e| format!("{} does not read: {e}", path.display())),
            );
        }
    }
    found.sort_by(|a, b| a.as_ref().map(|r| r.name.clone()).ok().cmp(&b.as_ref().map(|r| r.name.clone()).ok()));
    found
}
