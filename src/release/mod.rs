//! Making apps and releases: `skitter new` now; `skitter release` later.

pub mod new;
