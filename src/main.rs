//! The `warren` binary: parses the command line and runs the broker until SIGINT/SIGTERM.

fn main() -> std::process::ExitCode {
    warren_server::cli::main()
}
