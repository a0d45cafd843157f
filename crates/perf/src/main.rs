//! The `warren-perf` binary: parses flags, runs the benchmark on a tokio runtime (a
//! current-thread runtime unless `--threads` asks for more), prints progress on stderr and the
//! summary on stdout (a table, or one JSON object with `--json`). Exits 1 on a setup error,
//! 2 when messages were lost or duplicated.

use std::process::ExitCode;

use clap::Parser;
use warren_perf::PerfConfig;

fn main() -> ExitCode {
    let cfg = PerfConfig::parse();
    let rt = if cfg.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren-perf: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cfg.json;
    let progress = !cfg.quiet;
    match rt.block_on(warren_perf::run(cfg, progress)) {
        Ok(report) => {
            if json {
                match serde_json::to_string(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("warren-perf: json: {e}"),
                }
            } else {
                print!("{report}");
            }
            if report.lost.unwrap_or(0) > 0 || report.duplicated > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("warren-perf: {e}");
            ExitCode::FAILURE
        }
    }
}
