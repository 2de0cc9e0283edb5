//! The `fusec` command line (clap, anyhow, indicatif and the Ctrl-C handler live
//! here); the library (`fusec`) does the work.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod cli;

fn main() -> std::process::ExitCode {
    // `fusec report m.onnx | head`: a closed pipe ends fusec quietly, as it ends other
    // Unix tools, instead of a panic in println! (Rust ignores SIGPIPE by default)
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition before any thread starts
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cli::run()
}
