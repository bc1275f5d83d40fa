//! What a run cost, from what it used and the services' list prices. Pure: the run-cost step counts the usage
//! (execution history, the steps' own counts), `make bench` prices a synthetic fleet's, both with these numbers.
//!
//! Prices are us-east-1 on-demand list prices as of [`PRICES_AS_OF`]; other regions differ by a few percent. The
//! model's tokens are priced apart ([`RunCost::model_usd`]): their price depends on the model chosen, and a run
//! with the rules as reasoner has none.

use serde::{Deserialize, Serialize};

/// The date the prices below were read from the AWS pricing pages.
pub const PRICES_AS_OF: &str = "2026-11-01";

/// List prices, USD.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPrices {
    /// Lambda duration per GB-second on Graviton (arm64).
    pub lambda_gb_second_arm64: f64,
    /// Lambda duration per GB-second on x86_64.
    pub lambda_gb_second_x86_64: f64,
    pub lambda_request: f64,
    /// Step Functions Standard Workflows, per state transition.
    pub state_transition: f64,
    /// CloudWatch GetMetricData, per metric requested.
    pub metric_requested: f64,
    /// Price List Query API calls carry no charge.
    pub price_list_call: f64,
    /// Model tokens (Anthropic Claude Sonnet on Bedrock, on-demand), per token.
    pub model_input_token: f64,
    pub model_output_token: f64,
}

impl ListPrices {
    pub const LIST: ListPrices = ListPrices {
        lambda_gb_second_arm64: 0.000_013_333_4,
        lambda_gb_second_x86_64: 0.000_016_666_7,
        lambda_request: 0.000_000_2,
        state_transition: 0.000_025,
        metric_requested: 0.000_01,
        price_list_call: 0.0,
        model_input_token: 0.000_003,
        model_output_token: 0.000_015,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Arm64,
    X86_64,
}

impl Architecture {
    /// `arm64` / `x86_64` (the Lambda API's and the CDK's spelling); anything else is refused.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "arm64" | "aarch64" => Ok(Self::Arm64),
            "x86_64" | "x86-64" | "amd64" => Ok(Self::X86_64),
            other => Err(format!("{other:?} is not a Lambda architecture (arm64, x86_64)")),
        }
    }
}

/// One function's share of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUsage {
    pub function: String,
    pub invocations: u32,
    /// Sum of the invocations' durations, milliseconds (each rounded up to a whole millisecond, as billed).
    pub duration_ms: u64,
    pub memory_mb: u32,
}

impl FunctionUsage {
    pub fn gb_seconds(&self) -> f64 {
        self.duration_ms as f64 / 1000.0 * f64::from(self.memory_mb) / 1024.0
    }
}

/// What a run used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunUsage {
    pub functions: Vec<FunctionUsage>,
    pub state_transitions: u64,
    pub metrics_requested: u64,
    pub price_list_calls: u64,
    pub model_input_tokens: u64,
    pub model_output_tokens: u64,
}

/// What a run cost, USD, rounded to a millionth of a dollar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCost {
    pub lambda_usd: f64,
    pub lambda_gb_seconds: f64,
    pub step_functions_usd: f64,
    pub cloudwatch_usd: f64,
    pub price_list_usd: f64,
    /// Everything above: the run's cost without the model's tokens.
    pub total_usd: f64,
    pub model_usd: f64,
    /// `total_usd` per 1,000 instances scanned (`None` for a run that scanned none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_1000_instances_usd: Option<f64>,
    pub prices_as_of: String,
}

fn micro(usd: f64) -> f64 {
    (usd * 1e6).round() / 1e6
}

impl RunCost {
    pub fn of(usage: &RunUsage, architecture: Architecture, instances: usize, prices: &ListPrices) -> Self {
        let gb_second = match architecture {
            Architecture::Arm64 => prices.lambda_gb_second_arm64,
            Architecture::X86_64 => prices.lambda_gb_second_x86_64,
        };
        let gb_seconds: f64 = usage.functions.iter().map(FunctionUsage::gb_seconds).sum();
        let requests: u64 = usage.functions.iter().map(|f| u64::from(f.invocations)).sum();
        let lambda = gb_seconds * gb_second + requests as f64 * prices.lambda_request;
        let step_functions = usage.state_transitions as f64 * prices.state_transition;
        let cloudwatch = usage.metrics_requested as f64 * prices.metric_requested;
        let price_list = usage.price_list_calls as f64 * prices.price_list_call;
        let total = lambda + step_functions + cloudwatch + price_list;
        let model = usage.model_input_tokens as f64 * prices.model_input_token
            + usage.model_output_tokens as f64 * prices.model_output_token;
        Self {
            lambda_usd: micro(lambda),
            lambda_gb_seconds: (gb_seconds * 1000.0).round() / 1000.0,
            step_functions_usd: micro(step_functions),
            cloudwatch_usd: micro(cloudwatch),
            price_list_usd: micro(price_list),
            total_usd: micro(total),
            model_usd: micro(model),
            per_1000_instances_usd: (instances > 0).then(|| micro(total * 1000.0 / instances as f64)),
            prices_as_of: PRICES_AS_OF.to_owned(),
        }
    }

    /// One line for the run report.
    pub fn summary(&self, usage: &RunUsage) -> String {
        let per_1000 =
            self.per_1000_instances_usd.map(|p| format!(", {p:.4} USD per 1,000 instances")).unwrap_or_default();
        format!(
            "{:.4} USD{per_1000} (Lambda {:.4} for {:.1} GB-s, Step Functions {:.4} for {} transitions, CloudWatch {:.4} for {} metrics, Price List {} calls free); model tokens {:.4} USD ({} in, {} out); list prices of {}",
            self.total_usd,
            self.lambda_usd,
            self.lambda_gb_seconds,
            self.step_functions_usd,
            usage.state_transitions,
            self.cloudwatch_usd,
            usage.metrics_requested,
            usage.price_list_calls,
            self.model_usd,
            usage.model_input_tokens,
            usage.model_output_tokens,
            self.prices_as_of
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_priced_per_part_with_tokens_apart() {
        let usage = RunUsage {
            functions: vec![
                FunctionUsage { function: "metrics".into(), invocations: 1, duration_ms: 2_000, memory_mb: 1024 },
                FunctionUsage { function: "policy".into(), invocations: 2, duration_ms: 1_000, memory_mb: 512 },
            ],
            state_transitions: 400,
            metrics_requested: 15_000,
            price_list_calls: 12,
            model_input_tokens: 10_000,
            model_output_tokens: 2_000,
        };
        let cost = RunCost::of(&usage, Architecture::Arm64, 10_000, &ListPrices::LIST);
        assert_eq!(cost.lambda_gb_seconds, 2.5);
        // 2.5 GB-s x 0.0000133334 + 3 requests x 0.0000002
        assert_eq!(cost.lambda_usd, 0.000034);
        assert_eq!(cost.step_functions_usd, 0.01);
        assert_eq!(cost.cloudwatch_usd, 0.15);
        assert_eq!(cost.price_list_usd, 0.0);
        assert_eq!(cost.total_usd, 0.160034);
        assert_eq!(cost.per_1000_instances_usd, Some(0.016003));
        assert_eq!(cost.model_usd, 0.06, "10k in at 3 USD/M + 2k out at 15 USD/M, not in the total");
        let x86 = RunCost::of(&usage, Architecture::X86_64, 10_000, &ListPrices::LIST);
        assert!(x86.lambda_usd > cost.lambda_usd, "Graviton is the cheaper duration");
        let line = cost.summary(&usage);
        assert!(line.starts_with("0.1600 USD, 0.0160 USD per 1,000 instances"), "{line}");
        assert!(line.contains(PRICES_AS_OF) && line.contains("10000 in, 2000 out"), "{line}");
        assert_eq!(
            RunCost::of(&RunUsage::default(), Architecture::Arm64, 0, &ListPrices::LIST).per_1000_instances_usd,
            None
        );
    }

    #[test]
    fn architectures_parse_strictly() {
        assert_eq!(Architecture::parse("ARM64"), Ok(Architecture::Arm64));
        assert_eq!(Architecture::parse("x86_64"), Ok(Architecture::X86_64));
        assert!(Architecture::parse("sparc").unwrap_err().contains("arm64, x86_64"));
    }
}
