//! Where checkpoints are kept. [`Store`] is what the runtime needs of a
//! store; [`DirStore`] keeps them in a directory of the master's host:
//! `<dir>/<workflow name>/<id>.data` (the states) and `<id>.json` (the
//! manifest, which names the data's length and checksum). The data is
//! written and synced first ([`Store::put_data`]); the output the
//! checkpoint covers goes to its files; then the manifest is written beside
//! its name, synced, renamed into place and the directory synced
//! ([`Store::commit`]): a checkpoint without its manifest, or whose data
//! does not match it, was never completed and is passed over.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Manifest, StoreError};

pub trait Store: Send + Sync {
    /// Writes the states of checkpoint `id` of workflow `name` durably
    /// (not yet a checkpoint: [`Store::commit`] makes it one).
    fn put_data(&self, name: &str, id: u64, data: &[u8]) -> Result<(), StoreError>;
    /// Writes the manifest of a checkpoint whose data is in place,
    /// durably: once this returns, a restart finds the checkpoint.
    fn commit(&self, manifest: &Manifest) -> Result<(), StoreError>;
    /// The completed checkpoints of workflow `name`, oldest first.
    fn list(&self, name: &str) -> Result<Vec<Manifest>, StoreError>;
    /// The states of a completed checkpoint, checked against its manifest.
    fn data(&self, manifest: &Manifest) -> Result<Vec<u8>, StoreError>;
    /// Removes all but the newest `keep` completed checkpoints of `name`
    /// (never the newest), and what half-written ones left.
    fn prune(&self, name: &str, keep: usize) -> Result<(), StoreError>;
}

pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: PathBuf) -> DirStore {
        DirStore { root }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

fn failed<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |e| StoreError::Io { action, path: path.to_path_buf(), error: e.to_string() }
}

/// Makes `path`'s entry in its directory durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(failed("sync the directory", dir))
}

fn data_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:012}.data"))
}

/// Reads `path` and checks it against a length and checksum.
fn checked(path: PathBuf, bytes: u64, checksum: u32) -> Result<Vec<u8>, StoreError> {
    let data = std::fs::read(&path).map_err(failed("read", &path))?;
    if data.len() as u64 != bytes || crc32fast::hash(&data) != checksum {
        return Err(StoreError::Corrupt {
            path,
            reason: format!("it holds {} bytes that do not match its manifest ({bytes} bytes and their checksum)", data.len()),
        });
    }
    Ok(data)
}

fn manifest_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:012}.json"))
}

impl Store for DirStore {
    fn put_data(&self, name: &str, id: u64, data: &[u8]) -> Result<(), StoreError> {
        let dir = self.dir(name);
        let created = !dir.exists();
        std::fs::create_dir_all(&dir).map_err(failed("create", &dir))?;
        if created {
            sync_dir(&self.root)?;
        }
        let data_at = data_path(&dir, id);
        let mut file = File::create(&data_at).map_err(failed("create", &data_at))?;
        file.write_all(data).and_then(|()| file.sync_all()).map_err(failed("write", &data_at))
    }

    fn commit(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let dir = self.dir(&manifest.name);
        let text = serde_json::to_vec_pretty(manifest).map_err(|e| StoreError::Corrupt { path: dir.clone(), reason: e.to_string() })?;
        let final_at = manifest_path(&dir, manifest.id);
        let aside = final_at.with_extension("json.tmp");
        let mut file = File::create(&aside).map_err(failed("create", &aside))?;
        file.write_all(&text).and_then(|()| file.sync_all()).map_err(failed("write", &aside))?;
        std::fs::rename(&aside, &final_at).map_err(failed("rename into place", &final_at))?;
        sync_dir(&dir)
    }

    fn list(&self, name: &str) -> Result<Vec<Manifest>, StoreError> {
        let dir = self.dir(name);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(failed("read", &dir)(e)),
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read(&path).map_err(failed("read", &path))?;
            match serde_json::from_slice::<Manifest>(&text) {
                Ok(m) if m.name == name && path == manifest_path(&dir, m.id) => found.push(m),
                // A manifest that does not read is not a completed checkpoint.
                _ => tracing::warn!("passing over {}: not a checkpoint manifest", path.display()),
            }
        }
        found.sort_by_key(|m| m.id);
        Ok(found)
    }

    fn data(&self, manifest: &Manifest) -> Result<Vec<u8>, StoreError> {
        checked(data_path(&self.dir(&manifest.name), manifest.id), manifest.bytes, manifest.checksum)
    }

    fn prune(&self, name: &str, keep: usize) -> Result<(), StoreError> {
        let dir = self.dir(name);
        let complete = self.list(name)?;
        let Some(newest) = complete.last().map(|m| m.id) else { return Ok(()) };
        let kept: Vec<u64> = complete.iter().rev().take(keep.max(1)).map(|m| m.id).collect();
        for m in &complete {
            if !kept.contains(&m.id) {
                let json = manifest_path(&dir, m.id);
                std::fs::remove_file(&json).map_err(failed("remove", &json))?;
                let _ = std::fs::remove_file(data_path(&dir, m.id));
            }
        }
        // Left by checkpoints that never completed (older than the newest).
        for entry in std::fs::read_dir(&dir).map_err(failed("read", &dir))?.flatten() {
            let path = entry.path();
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let id = file.split('.').next().and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                if id < newest && !kept.contains(&id) {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::checkpoint::Kind;

    fn manifest(id: u64, data: &[u8]) -> Manifest {
        Manifest {
            format: super::super::FORMAT,
            name: "wf".into(),
            id,
            kind: Kind::Periodic,
            taken_at_ms: 1,
            duration_ms: 2,
            bytes: data.len() as u64,
            checksum: crc32fast::hash(data),
            graph: vec!["src: stream_source".into()],
            instances: vec![1],
            outputs: Vec::new(),
        }
    }

    fn put(store: &DirStore, m: &Manifest, data: &[u8]) {
        store.put_data(&m.name, m.id, data).unwrap();
        store.commit(m).unwrap();
    }

    #[test]
    fn a_checkpoint_is_read_back_and_only_complete_ones_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path().to_path_buf());
        put(&store, &manifest(1, b"one"), b"one");
        // A checkpoint that died before its manifest was in place.
        std::fs::write(dir.path().join("wf").join(format!("{:012}.data", 2)), b"half").unwrap();
        std::fs::write(dir.path().join("wf").join(format!("{:012}.json.tmp", 2)), b"{").unwrap();
        let listed = store.list("wf").unwrap();
        assert_eq!(listed.iter().map(|m| m.id).collect::<Vec<_>>(), [1]);
        assert_eq!(store.data(&listed[0]).unwrap(), b"one");
        assert!(store.list("other").unwrap().is_empty());
    }

    #[test]
    fn data_that_does_not_match_its_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path().to_path_buf());
        put(&store, &manifest(4, b"good"), b"good");
        std::fs::write(dir.path().join("wf").join(format!("{:012}.data", 4)), b"evil").unwrap();
        let err = store.data(&store.list("wf").unwrap()[0]).unwrap_err();
        assert!(err.to_string().contains("do not match its manifest"), "{err}");
    }

    #[test]
    fn pruning_keeps_the_newest_and_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path().to_path_buf());
        for id in 1..=5 {
            put(&store, &manifest(id, b"x"), b"x");
        }
        std::fs::write(dir.path().join("wf").join(format!("{:012}.data", 3)).with_extension("json.tmp"), b"").unwrap();
        store.prune("wf", 2).unwrap();
        assert_eq!(store.list("wf").unwrap().iter().map(|m| m.id).collect::<Vec<_>>(), [4, 5]);
        let mut files: Vec<String> =
            std::fs::read_dir(dir.path().join("wf")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        files.sort();
        assert_eq!(files.len(), 4, "{files:?}");
        store.prune("wf", 0).unwrap();
        assert_eq!(store.list("wf").unwrap().iter().map(|m| m.id).collect::<Vec<_>>(), [5], "the newest stays");
    }
}
