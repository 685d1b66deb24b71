//! Rhai: engine set-up, apps, sessions and the packages scripts see (the
//! workflow builder, and the runtime API through the [`host::Host`] trait).
//!
//! May use `workflow` and `settings`; it reaches a node only through the `Host` trait that
//! `runtime` implements.

pub mod app;
pub mod broker_api;
pub mod complete;
pub mod diagnostic;
pub mod docs;
pub mod emit;
pub mod engine;
pub mod host;
pub mod operator_api;
pub mod render;
pub mod runtime_api;
pub mod session;
pub mod shell_api;
pub mod time_api;
pub mod timer;
pub mod user_operator_api;
pub mod workflow_api;

pub use app::App;
pub use engine::{new_engine, Audience, EngineEnv, Output};
pub use host::{Code, DeployOptions, Host, WorkflowRef};
pub use session::{ScriptError, Session};
