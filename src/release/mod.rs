//! Making apps and releases: `skitter new`, and `skitter release` with its
//! `bin/<app>` script and `env.sh` templates.

pub mod build;
pub mod install;
pub mod new;
