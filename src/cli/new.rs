//! `skitter new PATH`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::release::new::{create, NewError};
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct NewArgs {
    /// Where to create the app; its last part is the app's name.
    pub path: PathBuf,
}

pub fn run(args: NewArgs) -> Result<ExitCode> {
    let files = create(&args.path).map_err(|e| match e {
        NewError::Io { .. } => Error::Failed(e.to_string()),
        other => Error::Usage(other.to_string()),
    })?;
    for f in &files {
        println!("* creating {}", f.display());
    }
    println!(
        "\nYour skitter app is ready. Run it with:\n\n    cd {}\n    skitter local start\n\nor open a shell on it with `skitter local`.",
        args.path.display()
    );
    Ok(ExitCode::SUCCESS)
}
