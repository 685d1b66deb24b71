//! Runtimes: the local one (master and worker in one process), master and
//! worker nodes, the coordinator, the dataflow executor they share, node
//! identity and logging.

pub mod console;
pub mod coordinator;
pub mod dataflow;
pub mod local;
pub mod log;
pub mod master;
pub mod node;
pub mod worker;

pub use local::LocalRuntime;
