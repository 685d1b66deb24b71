//! What this node runs with: its environment, its app and version, and the
//! node arguments in force (from flags, the environment, a release's
//! `node.toml` and `skitter.toml`, resolved once at start). `runtime_info()`
//! shows them, so that what a node was started with is never a guess.

use std::sync::RwLock;

use rhai::{Dynamic, Map};

use super::limits::ScriptLimits;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSettings {
    /// dev, test, prod, ... (SKITTER_ENV).
    pub env: String,
    pub app: Option<String>,
    pub app_version: Option<String>,
    pub slots: Option<usize>,
    pub tick_time: f64,
    pub log_level: String,
    pub batch_deadline_ms: f64,
    pub limits: ScriptLimits,
}

static CURRENT: RwLock<Option<NodeSettings>> = RwLock::new(None);

pub fn set(settings: NodeSettings) {
    *CURRENT.write().expect("settings lock") = Some(settings);
}

pub fn get() -> Option<NodeSettings> {
    CURRENT.read().expect("settings lock").clone()
}

/// The app (and its version) this node now runs: an upgraded master loads the new one.
pub fn set_app(name: &str, version: &str) {
    let mut current = CURRENT.write().expect("settings lock");
    let s = current.get_or_insert_with(NodeSettings::default);
    s.app = Some(name.to_string());
    s.app_version = Some(version.to_string());
}

/// The settings as `runtime_info()` shows them, added to `info`.
pub fn add_to(info: &mut Map) {
    let Some(s) = get() else { return };
    info.insert("env".into(), s.env.into());
    if let Some(app) = s.app {
        info.insert("app".into(), app.into());
    }
    if let Some(v) = s.app_version {
        info.insert("app_version".into(), v.into());
    }
    if let (Some(slots), false) = (s.slots, info.contains_key("slots")) {
        info.insert("slots".into(), Dynamic::from_int(slots as i64));
    }
    info.insert("tick_time".into(), Dynamic::from_float(s.tick_time));
    info.insert("log_level".into(), s.log_level.into());
    info.insert("batch_deadline_ms".into(), Dynamic::from_float(s.batch_deadline_ms));
    let mut limits = Map::new();
    limits.insert("max_memory_mb".into(), Dynamic::from_int((s.limits.memory_bytes() >> 20).min(i64::MAX as u64) as i64));
    limits.insert("max_call_depth".into(), Dynamic::from_int(s.limits.max_call_depth as i64));
    limits.insert("max_string_mb".into(), Dynamic::from_int(s.limits.max_string_mb as i64));
    limits.insert("max_array".into(), Dynamic::from_int(s.limits.max_array as i64));
    limits.insert("max_map".into(), Dynamic::from_int(s.limits.max_map as i64));
    info.insert("limits".into(), limits.into());
}
