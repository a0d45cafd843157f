//! The `warren` binary: parses the command line and runs the broker until SIGINT/SIGTERM.

/// jemalloc with background purging threads: freed memory goes back to the OS after a burst of
/// connections or a load test, where glibc malloc kept it (issue 21, docs/benchmarks.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    warren_server::cli::main()
}
