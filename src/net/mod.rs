//! The wire: values, messages, frames, the authenticating handshake, cookies.
//! Layered as bytes <-> frames <-> typed messages; handlers see messages only.

pub mod connection;
pub mod cookie;
pub mod message;
pub mod value;

pub use connection::{Authenticated, Connection, Identity, NetError, Reader, Writer};
pub use message::{DataMsg, Message, Role, WorkerInfo, WorkflowSpec};
pub use value::Value;
