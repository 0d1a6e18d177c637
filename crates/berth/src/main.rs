//! `berth`: the command line. Parses configuration, wires the parts together, and shuts
//! them down cleanly. Everything with behaviour lives in the library crates.

mod cli;
mod datadir;
mod duration;
mod extension;
mod lb_host;
mod lifecycle;
mod logging;
mod logs_tail;
mod serve;
mod tracker;
mod vulndb;

use clap::Parser;

/// mimalloc rather than glibc's malloc: a request allocates dozens of small, short-lived
/// buffers (headers, JSON values, ARNs, policy contexts), and glibc's free lists and
/// consolidation were a tenth of the server's CPU under load in `perf`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging(&cli.global);
    // Handlers decode whole task definitions; debug builds keep large frames, so workers
    // get more stack than tokio's 2 MiB default.
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().thread_stack_size(8 * 1024 * 1024).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("berth: cannot start the async runtime: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
