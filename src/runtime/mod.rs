//! Runtimes: the local one (master and worker in one process), the dataflow
//! executor they share, node identity and logging.

pub mod dataflow;
pub mod local;
pub mod log;
pub mod node;

pub use local::LocalRuntime;
