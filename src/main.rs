use std::process::ExitCode;

fn main() -> ExitCode {
    match skitter::cli::run(std::env::args_os()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{} {err}", skitter::cli::error_prefix());
            err.exit_code()
        }
    }
}

/// Records are many small allocations freed on another thread than the one
/// that made them; mimalloc handles that pattern far better than glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
