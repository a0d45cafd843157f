//! `warrenctl`: Warren's command line for the management HTTP API (see [`warren_ctl`]).

fn main() -> std::process::ExitCode {
    warren_ctl::main()
}
