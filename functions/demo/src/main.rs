//! `make demo`: starts moto on 127.0.0.1, seeds a sample fleet with 14 days of metrics, and runs `finops scan`
//! against it exactly as a user would against their account. Stops everything it started.
//!
//! `--no-seed --endpoint-url URL` runs against an already running moto that holds someone else's fleet.

use std::process::Command;
use std::time::Instant;

use clap::Parser;
use finops_core::LookbackWindow;
use finops_testkit::moto::{sdk_config, MotoServer};
use finops_testkit::seed::sample_fleet;

#[derive(Debug, Parser)]
#[command(name = "finops-demo", about = "Run finops-agent locally against emulated AWS (moto).")]
struct Args {
    /// Use this running moto instead of starting one.
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Do not seed the sample fleet (the endpoint already holds a fleet).
    #[arg(long)]
    no_seed: bool,
    /// Regions to scan.
    #[arg(long, default_value = "ap-southeast-2,us-east-1")]
    regions: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let (server, endpoint) = match &args.endpoint_url {
        Some(url) => (None, url.clone()),
        None => {
            eprintln!("demo: starting moto (emulated AWS) on 127.0.0.1 ...");
            let server = MotoServer::start();
            let endpoint = server.endpoint.clone();
            eprintln!("demo: moto is up at {endpoint} ({:.1}s)", started.elapsed().as_secs_f64());
            (Some(server), endpoint)
        }
    };
    if !args.no_seed {
        let window = LookbackWindow::ending_before(chrono::Utc::now(), 14);
        let syd = sdk_config(&endpoint, "ap-southeast-2").await;
        let use1 = sdk_config(&endpoint, "us-east-1").await;
        let fleet = sample_fleet(&syd, &use1, &window).await;
        eprintln!("demo: seeded {} instances with 14 days of CloudWatch metrics:", fleet.len());
        for i in &fleet {
            eprintln!("  {:<20} {:<15} {:<40} {}", i.instance_id, i.region, truncate(&i.name, 40), i.role);
        }
    }
    let finops = std::env::current_exe().expect("own path").with_file_name("finops");
    eprintln!("\ndemo: $ finops scan --regions {} --endpoint-url {endpoint}\n", args.regions);
    let status = Command::new(&finops)
        .args(["scan", "--regions", &args.regions, "--endpoint-url", &endpoint])
        .env("AWS_ACCESS_KEY_ID", std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "testing".into()))
        .env("AWS_SECRET_ACCESS_KEY", std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "testing".into()))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .status()
        .unwrap_or_else(|e| panic!("run {}: {e}", finops.display()));
    drop(server);
    eprintln!("\ndemo: finished in {:.1}s; moto stopped.", started.elapsed().as_secs_f64());
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}
