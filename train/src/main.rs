//! `privlm-train`: the trainer's command line (see `privlm_train::Cli` and docs/training.md).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use privlm_train::{Cli, train};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handler = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting without saving");
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupt: saving a checkpoint after this step (Ctrl-C again to quit at once)"
        );
    });
    if let Err(e) = handler {
        eprintln!("warning: cannot install the Ctrl-C handler ({e}); an interrupt will not save");
    }
    match train(&cli.opts, &stop) {
        Ok(s) if s.interrupted => ExitCode::from(130),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
