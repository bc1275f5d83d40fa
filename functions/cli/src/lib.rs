//! The `finops` command. `finops scan` is what a new user runs first against their own account: detection only,
//! in-process, with their credentials; it reads and never changes anything.

pub mod ask;
pub mod render;
pub mod report;
pub mod scan;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "finops", version, about = "Find idle EC2 instances and what they cost; act only with approval.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List running instances with their utilisation verdict, monthly cost and possible saving. Read-only.
    Scan(scan::ScanArgs),
    /// Ask the finops agent a question (Bedrock agent alias, or Converse with the read-only tools).
    Ask(ask::AskArgs),
    /// What the workflow did over a period, from the ledger: runs, proposals, decisions, actions, savings. Read-only.
    Report(report::ReportArgs),
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Aws(#[from] finops_aws::FinopsError),
    #[error("the model failed: {0}")]
    Model(#[from] finops_reasoning::ReasonerError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            Self::Aws(_) | Self::Output(_) | Self::Model(_) => 1,
        }
    }
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Scan(args) => scan::run(args, &mut std::io::stdout().lock()).await,
        Command::Ask(args) => ask::run(args).await,
        Command::Report(args) => report::run(args, &mut std::io::stdout().lock()).await,
    }
}
