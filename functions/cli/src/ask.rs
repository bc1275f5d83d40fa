//! `finops ask`: a question to the configured agent alias (streamed), or to a Converse model with the read-only
//! tools run in-process with the user's credentials. `--trace` prints each tool call and the rationale on stderr.

use std::io::Write;

use clap::Args;
use finops_agent_tools::ReadTools;
use finops_aws::{load_sdk_config, AwsSettings};
use finops_core::regions::parse_region_list;
use finops_core::DetectionConfig;
use finops_reasoning::agent::{BedrockAgent, StreamEvent};
use finops_reasoning::converse::BedrockConverse;
use finops_reasoning::Model;

use crate::CliError;

#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question, for example "Find underutilised instances in ap-southeast-2".
    pub question: String,
    /// Bedrock agent id (the deployment's agent).
    #[arg(long, env = "FINOPS_AGENT_ID")]
    pub agent_id: Option<String>,
    /// Bedrock agent alias id.
    #[arg(long, env = "FINOPS_AGENT_ALIAS_ID")]
    pub agent_alias_id: Option<String>,
    /// Use the Converse API with this model id instead of an agent (accounts without Bedrock Agents).
    #[arg(long, env = "FINOPS_MODEL_ID")]
    pub model_id: Option<String>,
    /// Regions the Converse tools may look at (comma-separated).
    #[arg(long, env = "FINOPS_REGIONS", default_value = "us-east-1")]
    pub regions: String,
    /// Region of the Bedrock endpoint.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Print each tool call and the agent's rationale on stderr.
    #[arg(long)]
    pub trace: bool,
    /// Continue a conversation (InvokeAgent session id).
    #[arg(long)]
    pub session_id: Option<String>,
    #[arg(long)]
    pub profile: Option<String>,
    #[arg(long)]
    pub endpoint_url: Option<String>,
}

pub async fn run(args: AskArgs) -> Result<(), CliError> {
    let settings = AwsSettings {
        profile: args.profile.clone(),
        endpoint_url: args.endpoint_url.clone(),
        region: args.region.clone(),
    };
    let sdk = load_sdk_config(&settings).await;
    let session = args.session_id.clone().unwrap_or_else(|| format!("ask-{}", chrono::Utc::now().timestamp()));
    let trace = args.trace;
    match (&args.model_id, &args.agent_id, &args.agent_alias_id) {
        (Some(model_id), _, _) => {
            let regions = parse_region_list(&args.regions).map_err(CliError::Usage)?;
            // The read-only tools: nothing `finops ask` runs can ask for approval or change an instance.
            let tools = ReadTools::from_sdk(&sdk, true, regions, DetectionConfig::default().criteria);
            let converse = BedrockConverse::new(aws_sdk_bedrockruntime::Client::new(&sdk), model_id, tools).map_err(CliError::Usage)?;
            let reply = converse.ask(&session, &args.question).await?;
            if trace {
                for line in &reply.trace {
                    eprintln!("trace: {line}");
                }
            }
            println!("{}", reply.text);
        }
        (None, Some(agent_id), Some(alias_id)) => {
            let agent = BedrockAgent::new(aws_sdk_bedrockagentruntime::Client::new(&sdk), agent_id, alias_id);
            let on_event = move |event: StreamEvent<'_>| match event {
                StreamEvent::Chunk(text) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(text.as_bytes());
                    let _ = out.flush();
                }
                StreamEvent::Trace(line) if trace => eprintln!("trace: {line}"),
                StreamEvent::Trace(_) => {}
                StreamEvent::Retry(n) => eprintln!("\n(throttled; attempt {n} starts over)"),
            };
            agent.ask_streaming(&session, &args.question, &on_event).await?;
            println!();
            if trace {
                eprintln!("session: {session}");
            }
        }
        _ => {
            return Err(CliError::Usage(
                "give --agent-id and --agent-alias-id (or FINOPS_AGENT_ID / FINOPS_AGENT_ALIAS_ID), or --model-id for Converse".into(),
            ))
        }
    }
    Ok(())
}
