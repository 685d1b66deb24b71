//! The wire: values, messages, frames, the encrypting handshake, cookies,
//! and the gate that keeps unauthenticated peers small. Layered as bytes
//! <-> sealed records <-> frames <-> typed messages; handlers see messages only.
//!
//! May use `script` and `workflow` (the specs and values it carries) and `settings`; never
//! `runtime`.

pub mod cipher;
pub mod connection;
pub mod cookie;
pub mod counters;
pub mod framing;
pub mod gate;
pub mod handshake;
pub mod message;
pub mod spec;
pub mod value;

pub use connection::{Authenticated, Link, NetError, Reader, Writer};
pub use cookie::Cookie;
pub use handshake::Identity;
pub use message::{ConsoleMsg, ControlMsg, DataLinkMsg, DataMsg, LinkMessage, Role, WorkerInfo, WorkflowSpec};
pub use value::Value;
