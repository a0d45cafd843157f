//! `warrenctl`: Warren's command line for the management HTTP API (see
//! [`warren_server::http::ctl`]).

fn main() -> std::process::ExitCode {
    warren_server::http::ctl::main()
}
