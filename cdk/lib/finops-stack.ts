// The finops-agent stack: the stateful resources (run bucket, approvals and ledger tables, topics, signing key) and
// the state machine from statemachine/finops.asl.json, with one construct per concern around them: the step
// functions (functions.ts), the approval plumbing (approval-plumbing.ts), the actions role's policy and production
// guard (actions-policy.ts), the reasoning backend (reasoning-backend.ts), and the schedule and alarms
// (schedule-and-alarms.ts). Stateful resources and the state machine (a fixed name) sit at the stack's top level so
// their logical ids do not change when the code around them is reorganised.
import { join, resolve } from "node:path";
import {
  ArnFormat,
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  type StackProps,
  aws_dynamodb as dynamodb,
  aws_iam as iam,
  aws_kms as kms,
  aws_lambda as lambda,
  aws_logs as logs,
  aws_s3 as s3,
  aws_secretsmanager as secretsmanager,
  aws_sns as sns,
  aws_sns_subscriptions as subscriptions,
  aws_stepfunctions as sfn,
} from "aws-cdk-lib";
import type { Construct } from "constructs";
import { ActionsPolicy } from "./actions-policy.ts";
import { ApprovalPlumbing } from "./approval-plumbing.ts";
import { CONTRACT, stateMachineDefinition, taskRetryBudget } from "./definition.ts";
import type { FinopsConfig } from "./config.ts";
import { FUNCTIONS, FUNCTION_KEYS, type FunctionKey, StepFunctions } from "./functions.ts";
import { MemberRoles, OTHER_RESOURCE_READ_ACTIONS } from "./member-roles.ts";
import { acknowledge } from "./nag.ts";
import { REPO_ROOT } from "./paths.ts";
import { ReasoningBackend } from "./reasoning-backend.ts";
import { ScheduleAndAlarms } from "./schedule-and-alarms.ts";
import { guardSubscriptions } from "./topic-guard.ts";
import { SavingsDashboard } from "./dashboard.ts";

export { ConfigError, MAX_CONCURRENT_APPROVALS, readConfig, type FinopsConfig } from "./config.ts";
export { PENDING_APPROVAL_ATTRIBUTES } from "./approval-plumbing.ts";
export { REPO_ROOT } from "./paths.ts";

export interface FinopsStackProps extends StackProps {
  config: FinopsConfig;
}

/** The state machine's fixed name: the approval callback's permission is granted on it by ARN, not by reference. */
export const STATE_MACHINE_NAME = "finops-agent";

/** How long each step may take: the Lambda timeouts, and the state machine's one retry policy (statemachine/contract.json). */
const { attempts: RETRY_ATTEMPTS, backoffSeconds: RETRY_BACKOFF_SECONDS } = taskRetryBudget();
/** Snapshot polling of the state machine (SnapshotPollSeconds x MaxSnapshotChecks: up to 2 hours). */
export const SNAPSHOT_POLL_SECONDS = 60;
export const MAX_SNAPSHOT_CHECKS = 120;

/** The longest a run can take, in seconds, and its parts: detection and reasoning (every attempt of each step), the
 * approval window (all approvals wait at once), the snapshot wait, and the acting steps. The execution timeout is this,
 * so an execution never ends while an approval it asked for is still open or a snapshot it started is still running. */
export function executionBudget(config: Pick<FinopsConfig, "approvalWindowHours">) {
  const attempt = (key: FunctionKey) => FUNCTIONS[key].timeout * RETRY_ATTEMPTS + RETRY_BACKOFF_SECONDS;
  const detection = (["inventory", "metrics", "reasoning", "policy"] as const).reduce((sum, key) => sum + attempt(key), 0);
  const approvalWindow = config.approvalWindowHours * 3600;
  const snapshotWait = SNAPSHOT_POLL_SECONDS * MAX_SNAPSHOT_CHECKS + MAX_SNAPSHOT_CHECKS * attempt("actions");
  const acting = attempt("request-approval") + 2 * attempt("actions");
  // The run's cost and its savings check (each read-only, each with its retries), the report and the ledger.
  const reporting = attempt("run-cost") + attempt("savings") + 120;
  return { detection, approvalWindow, snapshotWait, acting, reporting, total: detection + approvalWindow + snapshotWait + acting + reporting };
}

export class FinopsStack extends Stack {
  readonly functions: Record<FunctionKey, lambda.Function>;

  constructor(scope: Construct, id: string, props: FinopsStackProps) {
    super(scope, id, props);
    const config = props.config;

    // Stateful resources.
    const runBucket = new s3.Bucket(this, "RunBucket", {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      lifecycleRules: [{ expiration: Duration.days(30) }],
      removalPolicy: RemovalPolicy.DESTROY,
      autoDeleteObjects: false,
    });
    acknowledge(runBucket, "AwsSolutions-S1", "Run documents are short-lived working files expiring after 30 days; access is through the step roles only.");
    const approvals = new dynamodb.Table(this, "Approvals", {
      partitionKey: { name: "approvalId", type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: "ttl",
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
    });
    const ledger = new dynamodb.Table(this, "Ledger", {
      partitionKey: { name: "runId", type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
    });
    const topicKey = new kms.Key(this, "TopicKey", { enableKeyRotation: true, description: "finops-agent notifications" });
    topicKey.grant(new iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*");
    const approvalTopic = new sns.Topic(this, "ApprovalRequests", { masterKey: topicKey, enforceSSL: true, displayName: "finops-agent approvals" });
    const reports = new sns.Topic(this, "Reports", { masterKey: topicKey, enforceSSL: true, displayName: "finops-agent reports" });
    for (const email of config.reportRecipients) reports.addSubscription(new subscriptions.EmailSubscription(email));
    // The report names what was done and where: only the configured recipients may ever subscribe, by email.
    guardSubscriptions(reports, config.reportRecipients, "Report");
    const signingKey = new secretsmanager.Secret(this, "ApprovalSigningKey", {
      description: "HMAC key of finops-agent approval links",
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
    });
    acknowledge(signingKey, "AwsSolutions-SMG4", "Rotating the link-signing key would invalidate links in approvers' inboxes; rotate by redeploying between runs.");

    const stateMachineArn = this.formatArn({ service: "states", resource: "stateMachine", resourceName: STATE_MACHINE_NAME, arnFormat: ArnFormat.COLON_RESOURCE_NAME });

    // The functions, and each concern's variables and grants on them.
    const stepFunctions = new StepFunctions(this, "Functions", { config, assets: resolve(REPO_ROOT, "cdk", config.assetsDir), runBucketName: runBucket.bucketName });
    const fns = stepFunctions.byKey;
    this.functions = fns;
    grantDetection(this, fns, runBucket);
    grantMemberAccess(this, fns, config);
    const approval = new ApprovalPlumbing(this, "ApprovalPlumbing", {
      config,
      approvals,
      approvalTopic,
      signingKey,
      requestApproval: fns["request-approval"],
      approvalCallback: fns["approval-callback"],
      actions: fns.actions,
      stateMachineArn,
    });
    const routing = config.organization?.approvalRouting;
    if (routing !== undefined && routing.routes.some((r) => r.ou !== undefined || r.tag !== undefined)) {
      // Routes by OU or account tag: the request step reads the account's place in the organization as it is when it
      // asks (read-only; no file a run writes takes part in who decides).
      fns["request-approval"].addToRolePolicy(
        new iam.PolicyStatement({ sid: "ReadWhereAnAccountIs", actions: ["organizations:DescribeAccount", "organizations:ListParents", "organizations:ListTagsForResource"], resources: ["*"] }),
      );
    }
    new ActionsPolicy(this, "ActionsPolicy", { config, actions: fns.actions });
    grantRunCost(this, fns, stepFunctions.architecture);
    if (config.organization !== undefined && config.organization.stackSetTargets.length > 0) {
      new MemberRoles(this, "MemberRoles", { config, organization: config.organization, readers: memberReaders(fns), actions: fns.actions });
    }
    new ReasoningBackend(this, "ReasoningBackend", { config, reasoning: fns.reasoning, agentTools: fns["agent-tools"], stateMachineArn });

    // The state machine: the ASL file rendered with this deployment's numbers; its text names are substituted by
    // CloudFormation. Both lists are statemachine/contract.json's, checked here so a name cannot go missing.
    const text: Record<string, string> = {
      InventoryFunctionArn: fns.inventory.functionArn,
      MetricsFunctionArn: fns.metrics.functionArn,
      ReasoningFunctionArn: fns.reasoning.functionArn,
      PolicyFunctionArn: fns.policy.functionArn,
      RequestApprovalFunctionArn: fns["request-approval"].functionArn,
      ActionsFunctionArn: fns.actions.functionArn,
      RunCostFunctionArn: fns["run-cost"].functionArn,
      SavingsFunctionArn: fns.savings.functionArn,
      PlanScansFunctionArn: fns["plan-scans"].functionArn,
      ScanAccountFunctionArn: fns["scan-account"].functionArn,
      MergeScansFunctionArn: fns["merge-scans"].functionArn,
      ReportTopicArn: reports.topicArn,
      LedgerTableName: ledger.tableName,
      DeploymentMode: config.mode,
      RunBucketName: runBucket.bucketName,
      FanOut: config.organization === undefined ? "off" : "on",
    };
    const numbers: Record<string, number> = {
      ApprovalTimeoutSeconds: config.approvalWindowHours * 3600,
      SnapshotPollSeconds: SNAPSHOT_POLL_SECONDS,
      MaxSnapshotChecks: MAX_SNAPSHOT_CHECKS,
      // Every proposal of a run waits for its approver at once (maxProposals is at most the inline Map's 40).
      ApprovalConcurrency: config.maxProposals,
      // The ASL's own TimeoutSeconds: the CDK's `timeout` prop does not reach a definition given as a string.
      ExecutionTimeoutSeconds: executionBudget(config).total,
      AccountScanConcurrency: config.organization?.scanConcurrency ?? 10,
      ToleratedFailurePercentage: config.organization?.toleratedFailurePercentage ?? 10,
    };
    const missing = Object.keys(CONTRACT.text).filter((name) => !(name in text));
    if (missing.length) throw new Error(`statemachine/contract.json names text the stack does not provide: ${missing.join(", ")}`);
    const stateMachineLogs = new logs.LogGroup(this, "StateMachineLogs", { retention: logs.RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY });
    const stateMachine = new sfn.StateMachine(this, "StateMachine", {
      stateMachineName: STATE_MACHINE_NAME,
      definitionBody: sfn.DefinitionBody.fromString(stateMachineDefinition(numbers)),
      definitionSubstitutions: text,
      tracingEnabled: true,
      // Execution data would put each approval's task token (its authority) into the logs: states and errors only.
      logs: { destination: stateMachineLogs, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });
    const invoked = ["inventory", "metrics", "reasoning", "policy", "request-approval", "actions", "run-cost", "savings", "plan-scans", "scan-account", "merge-scans"] as const;
    for (const key of invoked) {
      fns[key].grantInvoke(stateMachine);
      const fnId = this.getLogicalId(fns[key].node.defaultChild as lambda.CfnFunction);
      acknowledge(stateMachine, `AwsSolutions-IAM5[Resource::<${fnId}.Arn>:*]`, "lambda:InvokeFunction on the step function's own versions and aliases, as the CDK grants it.");
    }
    grantFanOut(this, stateMachine, runBucket);
    reports.grantPublish(stateMachine);
    ledger.grant(stateMachine, "dynamodb:PutItem");
    // The savings step reads the ledger (what earlier runs did) and the live resources it names, and changes nothing.
    ledger.grant(fns.savings, "dynamodb:Scan");
    fns.savings.addEnvironment("FINOPS_LEDGER_TABLE", ledger.tableName);
    fns.savings.addToRolePolicy(new iam.PolicyStatement({ actions: ["ec2:DescribeInstances", "ec2:DescribeInstanceTypes", "ec2:DescribeVolumes", "ec2:DescribeAddresses"], resources: ["*"] }));
    if (config.costExplorerCheck) {
      // The optional check against the bill: one GetCostAndUsage a run (Cost Explorer has no resource-level permissions).
      fns.savings.addEnvironment("FINOPS_COST_EXPLORER", "on");
      fns.savings.addToRolePolicy(new iam.PolicyStatement({ sid: "CompareTheBill", actions: ["ce:GetCostAndUsage"], resources: ["*"] }));
    }
    acknowledge(stateMachine, "AwsSolutions-IAM5[Resource::*]", "X-Ray tracing and CloudWatch Logs delivery have no resource-level permissions.");
    acknowledge(stateMachine, "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]", "The run report is published to the KMS-encrypted topic.");

    new ScheduleAndAlarms(this, "ScheduleAndAlarms", { config, stateMachine, functions: fns, reports });
    // What the runs did and saved, from the metrics the functions emit in their logs (Embedded Metric Format).
    const dashboard = new SavingsDashboard(this, "SavingsDashboard");

    new CfnOutput(this, "ApprovalUrl", { value: approval.url.url });
    new CfnOutput(this, "StateMachineArn", { value: stateMachine.stateMachineArn });
    new CfnOutput(this, "DashboardName", { value: dashboard.dashboard.dashboardName });
    new CfnOutput(this, "ReportTopicArn", { value: reports.topicArn });
    new CfnOutput(this, "ApprovalTopicArn", { value: approvalTopic.topicArn });
  }
}

/** The run-cost step reads its own execution's history (read-only, this state machine's executions only) and is told
 * each step's memory and the architecture, to turn the history's task times into GB-seconds. */
function grantRunCost(stack: Stack, fns: Record<FunctionKey, lambda.Function>, architecture: "arm64" | "x86_64") {
  const runCost = fns["run-cost"];
  const executions = stack.formatArn({ service: "states", resource: "execution", resourceName: `${STATE_MACHINE_NAME}:*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
  runCost.addToRolePolicy(new iam.PolicyStatement({ actions: ["states:GetExecutionHistory"], resources: [executions] }));
  acknowledge(runCost, `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:${STATE_MACHINE_NAME}:*]`, "The history of this deployment's own state machine's executions, whose names are the run ids.");
  // Its own memory is in its own environment (AWS_LAMBDA_FUNCTION_MEMORY_SIZE): naming itself here would be a cycle.
  const memory: Record<string, number> = {};
  for (const key of FUNCTION_KEYS.filter((k) => k !== "run-cost")) memory[fns[key].functionName] = FUNCTIONS[key].memory;
  runCost.addEnvironment("FINOPS_FUNCTION_MEMORY", stack.toJsonString(memory));
  runCost.addEnvironment("FINOPS_LAMBDA_ARCHITECTURE", architecture);
}

/** The detection steps read the fleet, its metrics and prices, and share the run bucket. Describe*, GetMetricData,
 * ListMetrics and GetProducts have no resource-level permissions. */
function grantDetection(stack: Stack, fns: Record<FunctionKey, lambda.Function>, runBucket: s3.Bucket) {
  const readFleet = new iam.PolicyStatement({ actions: ["ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeInstanceTypes"], resources: ["*"] });
  const readMetrics = new iam.PolicyStatement({ actions: ["cloudwatch:GetMetricData", "cloudwatch:ListMetrics"], resources: ["*"] });
  const readPrices = new iam.PolicyStatement({ actions: ["pricing:GetProducts"], resources: ["*"] });
  // Only the steps that list resources beyond instances read addresses, NAT gateways and load balancers (unattached
  // volumes come with DescribeVolumes, stopped instances with DescribeInstances).
  const readOtherResources = new iam.PolicyStatement({ actions: OTHER_RESOURCE_READ_ACTIONS, resources: ["*"] });
  const bucketId = stack.getLogicalId(runBucket.node.defaultChild as s3.CfnBucket);
  for (const key of ["inventory", "metrics", "reasoning", "policy", "plan-scans", "scan-account", "merge-scans"] as const) {
    runBucket.grantReadWrite(fns[key]);
    for (const finding of ["Action::s3:GetObject*", "Action::s3:GetBucket*", "Action::s3:List*", "Action::s3:DeleteObject*", "Action::s3:Abort*", `Resource::<${bucketId}.Arn>/*`]) {
      acknowledge(fns[key], `AwsSolutions-IAM5[${finding}]`, "The CDK's read/write grant on the run bucket: objects of this bucket only, which holds this deployment's run documents.");
    }
  }
  fns.inventory.addToRolePolicy(readFleet);
  fns.inventory.addToRolePolicy(readOtherResources);
  fns.metrics.addToRolePolicy(readMetrics);
  fns.metrics.addToRolePolicy(readPrices);
  // An organization run scans the hub's own account with the item function's own role (no role to assume there).
  for (const statement of [readFleet, readOtherResources, readMetrics, readPrices]) fns["scan-account"].addToRolePolicy(statement);
  // The reasoning step's tools and the agent's action group read what the detection steps read.
  for (const key of ["agent-tools", "reasoning"] as const) {
    fns[key].addToRolePolicy(readFleet);
    fns[key].addToRolePolicy(readMetrics);
    fns[key].addToRolePolicy(readPrices);
  }
}

/** The reach beyond the hub: the planner lists the organization (read-only), the item step assumes the members'
 * read-only role, the actions step their actions role, and nothing else. Without an organization none of it. */
/** The functions that read member accounts through their read-only detection role: the fan-out's scans, and the
 * model's read-only tools (in process in finops-reasoning, the Bedrock agent's action group in finops-agent-tools),
 * which read a member's instance in its account. */
function memberReaders(fns: Record<FunctionKey, lambda.Function>): lambda.Function[] {
  return [fns["scan-account"], fns.reasoning, fns["agent-tools"], fns.savings];
}

function grantMemberAccess(stack: Stack, fns: Record<FunctionKey, lambda.Function>, config: FinopsConfig) {
  const org = config.organization;
  if (org === undefined) return;
  fns["plan-scans"].addToRolePolicy(
    new iam.PolicyStatement({
      actions: ["organizations:ListRoots", "organizations:ListAccountsForParent", "organizations:ListOrganizationalUnitsForParent", "organizations:ListTagsForResource"],
      resources: ["*"],
    }),
  );
  // Member roles are assumed only inside the deployment's reach: the hub's own organization, or the listed accounts.
  const inReach =
    org.accounts === "organization"
      ? { StringEquals: { "aws:ResourceOrgID": "${aws:PrincipalOrgID}" } }
      : { StringEquals: { "aws:ResourceAccount": org.accounts } };
  const memberRead = stack.formatArn({ service: "iam", region: "", account: "*", resource: "role", resourceName: org.readRole });
  for (const reader of memberReaders(fns)) {
    reader.addToRolePolicy(new iam.PolicyStatement({ actions: ["sts:AssumeRole"], resources: [memberRead], conditions: inReach }));
    acknowledge(reader, `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iam::*:role/${org.readRole}]`, "The read-only role the member StackSet deploys in every account of the organization, by its one name.");
  }
  // The actions step acts in a member account as the member's guarded actions role, and as nothing else there.
  const memberActions = stack.formatArn({ service: "iam", region: "", account: "*", resource: "role", resourceName: org.actionsRole });
  fns.actions.addToRolePolicy(new iam.PolicyStatement({ sid: "ActInMembersOnly", actions: ["sts:AssumeRole"], resources: [memberActions], conditions: inReach }));
  acknowledge(fns.actions, `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iam::*:role/${org.actionsRole}]`, "The guarded actions role the member StackSet deploys in every account of the organization, by its one name.");
}

/** A Distributed Map starts child executions of its own state machine, reads its items from the run bucket and
 * writes its results there. */
function grantFanOut(stack: Stack, stateMachine: sfn.StateMachine, runBucket: s3.Bucket) {
  const self = stack.formatArn({ service: "states", resource: "stateMachine", resourceName: STATE_MACHINE_NAME, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
  const executions = stack.formatArn({ service: "states", resource: "execution", resourceName: `${STATE_MACHINE_NAME}/*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
  stateMachine.addToRolePolicy(new iam.PolicyStatement({ actions: ["states:StartExecution"], resources: [self] }));
  stateMachine.addToRolePolicy(new iam.PolicyStatement({ actions: ["states:DescribeExecution", "states:StopExecution"], resources: [executions] }));
  runBucket.grantRead(stateMachine);
  runBucket.grantPut(stateMachine);
  stateMachine.addToRolePolicy(new iam.PolicyStatement({ actions: ["s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"], resources: [runBucket.arnForObjects("*")] }));
  const bucketId = stack.getLogicalId(runBucket.node.defaultChild as s3.CfnBucket);
  for (const finding of ["Action::s3:GetObject*", "Action::s3:GetBucket*", "Action::s3:List*", "Action::s3:Abort*", `Resource::<${bucketId}.Arn>/*`, `Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:${STATE_MACHINE_NAME}/*`]) {
    acknowledge(stateMachine, `AwsSolutions-IAM5[${finding}]`, "The Distributed Map's items and results in the run bucket, and its own child executions.");
  }
}
