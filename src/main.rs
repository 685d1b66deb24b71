use std::process::ExitCode;

fn main() -> ExitCode {
    skitter::net::cookie::take_from_environment();
    skitter::runtime::web::take_token_from_environment();
    no_huge_pages();
    let code = match skitter::cli::run(std::env::args_os()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{} {err}", skitter::cli::error_prefix());
            err.exit_code()
        }
    };
    skitter::runtime::log::flush();
    code
}

/// Records are many small allocations freed on another thread than the one
/// that made them; mimalloc handles that pattern far better than glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc asks for transparent huge pages on its arenas, so the first touch
/// of any byte zeroes (and counts in RSS) a whole 2 MiB: twice the memory for
/// the same work, and the zeroing is CPU time on the data path. Turned off for
/// this process before the runtime allocates (children inherit it: harmless).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only changes this process's flag.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
