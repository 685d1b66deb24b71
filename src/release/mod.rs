//! Making apps and releases: `skitter new`, and `skitter release` with its
//! `bin/<app>` script and `env.sh` templates.
//!
//! May use `net` (cookies), `script` (apps, compiling their scripts) and `settings`; never `deploy`.

pub mod build;
pub mod install;
pub mod new;
