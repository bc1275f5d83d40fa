// The step Lambdas: one per crate under functions/, each from its `bootstrap` built by `make package`, with the
// variables its `from_vars` reads (the same names the local runner sets), active tracing and its own log group.
import { closeSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { Duration, RemovalPolicy, aws_lambda as lambda, aws_logs as logs } from "aws-cdk-lib";
import { Construct } from "constructs";
import { ConfigError, type FinopsConfig } from "./config.ts";
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
  "run-cost": { memory: 256, timeout: 60 },
  savings: { memory: 256, timeout: 120 },
  // The organization fan-out (statemachine: Plan Account Scans, Scan Accounts, Merge Account Scans).
  "plan-scans": { memory: 256, timeout: 120 },
  "scan-account": { memory: 512, timeout: 300 },
  "merge-scans": { memory: 1024, timeout: 300 },
} as const;
export type FunctionKey = keyof typeof FUNCTIONS;
export const FUNCTION_KEYS = Object.keys(FUNCTIONS) as FunctionKey[];

export interface StepFunctionsProps {
  config: FinopsConfig;
  /** Where `make package` put the builds: `<assets>/finops-<key>/bootstrap`. */
  assets: string;
  runBucketName: string;
}

/** The machine a `bootstrap` was built for, from its ELF header (e_machine), or undefined for anything else (the
 * tests' shell stubs). */
export function bootstrapArchitecture(path: string): "arm64" | "x86_64" | undefined {
  let header: Buffer;
  try {
    const fd = openSync(path, "r");
    header = Buffer.alloc(20);
    readSync(fd, header, 0, 20, 0);
    closeSync(fd);
  } catch {
    return undefined;
  }
  if (header.readUInt32BE(0) !== 0x7f454c46) return undefined;
  const machine = header.readUInt16LE(18);
  return machine === 0xb7 ? "arm64" : machine === 0x3e ? "x86_64" : undefined;
}

/** The architecture every function gets: the build's, which an explicit `architecture` must agree with. A bootstrap
 * built for one machine and deployed as the other fails every invocation (exec format error), so the synth refuses. */
export function functionsArchitecture(config: Pick<FinopsConfig, "architecture">, assets: string): "arm64" | "x86_64" {
  const built = new Set(FUNCTION_KEYS.map((key) => bootstrapArchitecture(join(assets, `finops-${key}`, "bootstrap"))).filter((a) => a !== undefined));
  if (built.size > 1) throw new ConfigError(`${assets}: the bootstraps are built for ${[...built].join(" and ")}; run make package again`);
  const [build] = built;
  if (config.architecture === "auto") return build ?? "arm64";
  if (build !== undefined && build !== config.architecture) {
    throw new ConfigError(`context architecture=${config.architecture}, but the bootstraps in ${assets} are ${build}: run make package ARCH=${config.architecture}, or -c architecture=${build}`);
  }
  return config.architecture;
}

/** finops_core's OrganizationConfig: which accounts a run covers and the member roles' names (none: this account). */
function organizationVariables(config: FinopsConfig): Record<string, string> {
  const org = config.organization;
  if (org === undefined) return {};
  return {
    FINOPS_ACCOUNTS: org.accounts === "organization" ? "organization" : org.accounts.join(","),
    ...(org.ous.length > 0 ? { FINOPS_ORGANIZATION_OUS: org.ous.join(",") } : {}),
    ...(org.excludeAccounts.length > 0 ? { FINOPS_EXCLUDE_ACCOUNTS: org.excludeAccounts.join(",") } : {}),
    FINOPS_MEMBER_READ_ROLE: org.readRole,
    FINOPS_MEMBER_ACTIONS_ROLE: org.actionsRole,
    ...(org.maxProposalsPerAccount !== undefined ? { FINOPS_MAX_PROPOSALS_PER_ACCOUNT: String(org.maxProposalsPerAccount) } : {}),
    ...(org.maxMonthlyUsdPerAccount !== undefined ? { FINOPS_MAX_MONTHLY_USD_PER_ACCOUNT: String(org.maxMonthlyUsdPerAccount) } : {}),
    ...(org.approvalRouting !== undefined ? { FINOPS_APPROVAL_ROUTING: JSON.stringify(org.approvalRouting) } : {}),
  };
}

/** The functions with the settings every step reads; each concern adds its own variables and grants. */
export class StepFunctions extends Construct {
  readonly byKey: Record<FunctionKey, lambda.Function>;
  readonly architecture: "arm64" | "x86_64";

  constructor(scope: Construct, id: string, props: StepFunctionsProps) {
    super(scope, id);
    const { config } = props;
    this.architecture = functionsArchitecture(config, props.assets);
    // Graviton (arm64) is the default build: about 20 % cheaper per GB-second than x86_64.
    const architecture = this.architecture === "arm64" ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64;
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
      // Whose resource it is: an address in this tag hears of a proposal (where owner notices are on).
      FINOPS_OWNER_TAG_KEY: config.ownerTagKey,
      // PolicyConfig's switch: the policy step proposes, and the actions step acts, only where it is on.
      ...(config.deleteStoppedInstanceVolumes ? { FINOPS_STOPPED_VOLUMES: "delete" } : {}),
      FINOPS_MODE: config.mode,
      RUST_LOG: "info",
      ...organizationVariables(config),
    };
    const make = (key: FunctionKey) => {
      const spec = FUNCTIONS[key];
      const fn = new lambda.Function(this, key, {
        description: `finops-agent ${key}`,
        runtime: lambda.Runtime.PROVIDED_AL2023,
        architecture,
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
