// The step Lambdas: one per crate under functions/, each from its `bootstrap` built by `make package`, with the
// variables its `from_vars` reads (the same names the local runner sets), active tracing and its own log group.
import { join } from "node:path";
import { Duration, RemovalPolicy, aws_lambda as lambda, aws_logs as logs } from "aws-cdk-lib";
import { Construct } from "constructs";
import type { FinopsConfig } from "./config.ts";
import { acknowledge } from "./nag.ts";

/** Memory and timeout of each function; the timeouts also size the execution's budget (workflow.ts). */
export const FUNCTIONS = {
  inventory: { memory: 512, timeout: 300 },
  metrics: { memory: 1024, timeout: 600 },
  reasoning: { memory: 512, timeout: 600 },
  policy: { memory: 512, timeout: 120 },
  "request-approval": { memory: 256, timeout: 60 },
  "approval-callback": { memory: 256, timeout: 30 },
  actions: { memory: 256, timeout: 120 },
  "agent-tools": { memory: 512, timeout: 120 },
} as const;
export type FunctionKey = keyof typeof FUNCTIONS;
export const FUNCTION_KEYS = Object.keys(FUNCTIONS) as FunctionKey[];

export interface StepFunctionsProps {
  config: FinopsConfig;
  /** Where `make package` put the builds: `<assets>/finops-<key>/bootstrap`. */
  assets: string;
  runBucketName: string;
}

/** The eight functions with the settings every step reads; each concern adds its own variables and grants. */
export class StepFunctions extends Construct {
  readonly byKey: Record<FunctionKey, lambda.Function>;

  constructor(scope: Construct, id: string, props: StepFunctionsProps) {
    super(scope, id);
    const { config } = props;
    // The settings of finops_core's DetectionConfig/PolicyConfig and DeploymentMode: every function reads the same.
    const common: Record<string, string> = {
      FINOPS_RUN_BUCKET: props.runBucketName,
      FINOPS_REGIONS: config.regions.join(","),
      FINOPS_CRITERIA: config.criteria,
      FINOPS_LOOKBACK_DAYS: String(config.lookbackDays),
      FINOPS_PROTECTED_TAG_KEYS: config.protectedTagKeys.join(","),
      FINOPS_PRODUCTION_VALUES: config.productionValues.join(","),
      FINOPS_MAX_PROPOSALS: String(config.maxProposals),
      FINOPS_MAX_MONTHLY_USD: String(config.maxMonthlyUsd),
      ...(config.actOnlyOnEnvironments.length > 0 ? { FINOPS_ACT_ONLY_ON_ENVIRONMENTS: config.actOnlyOnEnvironments.join(",") } : {}),
      FINOPS_SNOOZE_DAYS: String(config.snoozeDays),
      FINOPS_MODE: config.mode,
      RUST_LOG: "info",
    };
    const make = (key: FunctionKey) => {
      const spec = FUNCTIONS[key];
      const fn = new lambda.Function(this, key, {
        description: `finops-agent ${key}`,
        runtime: lambda.Runtime.PROVIDED_AL2023,
        // x86_64: `cargo lambda build --release` builds it with the stock toolchain; arm64 needs zig (not checked here).
        architecture: lambda.Architecture.X86_64,
        handler: "bootstrap",
        code: lambda.Code.fromAsset(join(props.assets, `finops-${key}`)),
        memorySize: spec.memory,
        timeout: Duration.seconds(spec.timeout),
        tracing: lambda.Tracing.ACTIVE,
        environment: common,
        logGroup: new logs.LogGroup(this, `Logs-${key}`, { retention: logs.RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY }),
      });
      acknowledge(
        fn,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        "AWSLambdaBasicExecutionRole only lets the function write its own logs.",
      );
      acknowledge(fn, "AwsSolutions-IAM5[Resource::*]", "X-Ray, and where used EC2 Describe*, CloudWatch GetMetricData/ListMetrics and Pricing GetProducts, have no resource-level permissions.");
      return fn;
    };
    this.byKey = Object.fromEntries(FUNCTION_KEYS.map((key) => [key, make(key)])) as Record<FunctionKey, lambda.Function>;
    this.byKey.metrics.addEnvironment("FINOPS_PRICING", "api");
  }
}
