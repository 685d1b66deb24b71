//! The workflow model, operators, strategies and the physical plan. Pure data
//! and pure functions: no tokio, no sockets, so it is tested in isolation and
//! shared by every mode.
//!
//! May use `settings` only.

pub mod dot;
pub mod histogram;
pub mod key;
pub mod layout;
pub mod model;
pub mod operator;
pub mod plan;
pub mod recovery;
pub mod stats;
pub mod status;
pub mod time;
pub mod watch;

pub use model::{Body, FlatGraph, Workflow, WorkflowError};
pub use operator::{Func, KafkaSink, KafkaSource, KafkaStart, Operator, SourceSpec, Strategy, ValueFormat};
pub use plan::{Exchange, Plan};
pub use stats::{NodeStats, Stats};
pub use status::Status;
