//! `finops`: the command-line face of finops-agent. Parses arguments and hands over to the library.
#![recursion_limit = "256"]

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = finops_cli::Cli::parse();
    if let Err(e) = finops_cli::run(cli).await {
        eprintln!("finops: {e}");
        std::process::exit(e.exit_code());
    }
}
