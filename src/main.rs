//! The `hookgate` binary: parse the command line, hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    hookgate::cli::main_with_args(hookgate::cli::Cli::parse())
}
