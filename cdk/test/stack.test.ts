// Template assertions, cdk-nag AwsSolutions, and bad context. Stub `bootstrap` files stand in for the release
// build (test/fixtures/lambda), so this needs no cargo-lambda and no network.
import { strict as assert } from "node:assert";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Match } from "aws-cdk-lib/assertions";
import { AwsSolutionsChecks } from "cdk-nag";
import { ConfigError, executionBudget, MAX_CONCURRENT_APPROVALS, REPO_ROOT } from "../lib/finops-stack.ts";
import { FUNCTIONS } from "../lib/functions.ts";
import { RECIPIENT_ATTRIBUTE } from "../lib/approval-plumbing.ts";
import { ACCOUNT, allowedActions, REGION, roleStatements, synth } from "./support.ts";

test("every function runs on provided.al2023 with active tracing and log retention", () => {
  const { template } = synth();
  const functions = template.findResources("AWS::Lambda::Function");
  const own = Object.values(functions).filter((f) => f.Properties.Handler === "bootstrap");
  assert.equal(own.length, 13);
  for (const f of own) {
    assert.equal(f.Properties.Runtime, "provided.al2023");
    assert.deepEqual(f.Properties.TracingConfig, { Mode: "Active" });
    assert.ok(f.Properties.LoggingConfig?.LogGroup, "own log group");
  }
  template.allResourcesProperties("AWS::Logs::LogGroup", { RetentionInDays: 30 });
});

test("the state machine is the ASL file with the contract's substitutions, numbers and retry policy", () => {
  const { template } = synth();
  const asl = readFileSync(join(REPO_ROOT, "statemachine", "finops.asl.json"), "utf8");
  const contract = JSON.parse(readFileSync(join(REPO_ROOT, "statemachine", "contract.json"), "utf8"));
  const used = new Set([...asl.matchAll(/\$\{([A-Za-z0-9]+)\}/g)].map((m) => m[1]));
  const [machine] = Object.values(template.findResources("AWS::StepFunctions::StateMachine"));
  assert.equal(machine.Properties.StateMachineName, "finops-agent");
  assert.deepEqual(new Set(Object.keys(machine.Properties.DefinitionSubstitutions)), used);
  assert.deepEqual(new Set(Object.keys(contract.text)), used, "the contract lists exactly the names the file uses");
  const deployed = JSON.parse(machine.Properties.DefinitionString);
  // The file is the definition, but for the numbers at the contract's pointers and each Task's Retry.
  const strip = (states: Record<string, any>) => {
    for (const state of Object.values(states)) {
      if (state.Type === "Task") {
        assert.deepEqual(state.Retry, contract.taskRetry, "every Task retries with the one policy");
        delete state.Retry;
      }
      if (state.Type === "Map") strip(state.ItemProcessor.States);
    }
  };
  strip(deployed.States);
  const file = JSON.parse(asl);
  for (const { at, example } of Object.values(contract.numbers) as { at: string; example: number }[]) {
    const parts = at.slice(1).split("/");
    const last = parts.pop()!;
    const parent = parts.reduce((node: any, p) => node[p], deployed);
    assert.equal(typeof parent[last], "number", at);
    parent[last] = example;
  }
  assert.deepEqual(deployed, file);
  assert.ok(asl.includes("arn:aws:states:::lambda:invoke.waitForTaskToken"));
  assert.deepEqual(machine.Properties.TracingConfiguration, { Enabled: true });
  assert.equal(machine.Properties.LoggingConfiguration.Level, "ALL");
});

test("each role is granted what its code calls and nothing more; terminate is nowhere", () => {
  const { template } = synth();
  const expected: Record<string, string[]> = {
    actions: ["ec2:DescribeInstances", "ec2:DescribeInstanceAttribute", "ec2:DescribeVolumes", "ec2:DescribeSnapshots", "ec2:DescribeInstanceTypes", "ec2:DescribeAddresses", "cloudwatch:GetMetricData", "cloudwatch:ListMetrics", "ec2:CreateSnapshots", "ec2:CreateTags", "ec2:StopInstances", "ec2:CreateSnapshot", "ec2:DeleteVolume", "ec2:ReleaseAddress", "ec2:StartInstances", "ec2:CreateVolume", "dynamodb:GetItem"],
    "approval-callback": ["dynamodb:GetItem", "dynamodb:UpdateItem", "states:SendTaskSuccess", "states:StartExecution", "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
    inventory: ["ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeAddresses", "ec2:DescribeNatGateways", "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTags", "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth", "ec2:DescribeInstanceTypes"],
    "run-cost": ["states:GetExecutionHistory"],
    savings: ["dynamodb:Scan", "ec2:DescribeInstances", "ec2:DescribeInstanceTypes", "ec2:DescribeVolumes", "ec2:DescribeAddresses"],
  };
  for (const [key, actions] of Object.entries(expected)) {
    const granted = [...allowedActions(template, `finops-agent ${key}`)].filter((a) => !a.startsWith("xray:") && !a.startsWith("s3:"));
    assert.deepEqual(new Set(granted), new Set(actions), key);
  }
  const everything = Object.values(template.findResources("AWS::IAM::Policy")).flatMap((p) => p.Properties.PolicyDocument.Statement).flatMap((s) => [s.Action].flat());
  // Snapshots are never deleted: a deleted volume's snapshot is what recreates it.
  for (const never of ["ec2:TerminateInstances", "ec2:DeleteSnapshot", "ec2:DisassociateAddress", "states:SendTaskFailure", "ec2:*", "*"]) {
    assert.ok(!everything.includes(never), never);
  }
  // The guard: explicit Deny statements on the actions role for every environment key, the protect tag and instance storage.
  const denies = roleStatements(template, "finops-agent actions").filter((s) => s.Effect === "Deny").map((s) => s.Sid);
  assert.deepEqual(new Set(denies), new Set(["DenyProductionEnvironment", "DenyProductionenv", "DenyProductionstage", "DenyProtected", "DenyStopWithInstanceStorage", "DenyProductionEnvironmentResources", "DenyProductionenvResources", "DenyProductionstageResources", "DenyProtectedResources"]));
  // One-click undo: start only what finops stopped; recreate only from a run's snapshot, into a volume tagged with
  // the undo. The callback only starts the undo execution, of this state machine.
  const undo = Object.fromEntries(roleStatements(template, "finops-agent actions").filter((s) => /Undo|Recreate/.test(String(s.Sid ?? ""))).map((s) => [String(s.Sid), s]));
  assert.deepEqual(undo.UndoStopsOnly.Condition, { StringEquals: { "aws:ResourceTag/finops:action": "stopped" } });
  assert.deepEqual(undo.RecreateVolumesOnlyFromRunSnapshots.Condition, { Null: { "aws:ResourceTag/finops:run-id": "false" } });
  assert.deepEqual(undo.RecreatedVolumesCarryTheUndo.Condition, { Null: { "aws:RequestTag/finops:undo-id": "false" } });
  const [start] = roleStatements(template, "finops-agent approval-callback").filter((s) => s.Action === "states:StartExecution");
  assert.equal(JSON.stringify(start.Resource), JSON.stringify(roleStatements(template, "finops-agent approval-callback").find((s) => s.Action === "states:SendTaskSuccess")!.Resource));
});

test("the Cost Explorer check is off by default; turned on, the savings step may call GetCostAndUsage and nothing else more", () => {
  const savingsEnv = (template: ReturnType<typeof synth>["template"]) =>
    Object.values(template.findResources("AWS::Lambda::Function")).find((f) => f.Properties.Description === "finops-agent savings")!.Properties.Environment.Variables;
  const off = synth().template;
  assert.equal(savingsEnv(off).FINOPS_COST_EXPLORER, undefined);
  assert.ok(![...allowedActions(off, "finops-agent savings")].includes("ce:GetCostAndUsage"));
  const on = synth({ costExplorerCheck: "true" }).template;
  assert.equal(savingsEnv(on).FINOPS_COST_EXPLORER, "on");
  const added = [...allowedActions(on, "finops-agent savings")].filter((a) => !allowedActions(off, "finops-agent savings").has(a));
  assert.deepEqual(added, ["ce:GetCostAndUsage"]);
  assert.throws(() => synth({ costExplorerCheck: "yes" }), /costExplorerCheck/);
});

test("Slack approvals are off by default; with the app's secret, only the request step and the callback read it and know the channel", () => {
  const env = (template: ReturnType<typeof synth>["template"], key: string) =>
    Object.values(template.findResources("AWS::Lambda::Function")).find((f) => f.Properties.Description === `finops-agent ${key}`)!.Properties.Environment.Variables;
  const off = synth().template;
  for (const key of ["request-approval", "approval-callback"]) assert.equal(env(off, key).FINOPS_SLACK_SECRET_ID, undefined);
  const secretArn = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:finops/slack-AbC123`;
  const on = synth({ slackSecretArn: secretArn, slackChannel: "C0FINOPS", slackApprovers: "U0ANA,W0BOB" }).template;
  for (const key of Object.keys(FUNCTIONS)) {
    const reads = roleStatements(on, `finops-agent ${key}`).filter((s) => JSON.stringify(s.Resource) === JSON.stringify(secretArn));
    const asks = key === "request-approval" || key === "approval-callback";
    assert.equal(reads.length > 0, asks, `${key} reads the Slack secret: ${asks}`);
    assert.equal(env(on, key).FINOPS_SLACK_SECRET_ID, asks ? secretArn : undefined, key);
    // Where and who decides in Slack is the request step's to write into each approval's audience.
    assert.equal(env(on, key).FINOPS_SLACK_CHANNEL, key === "request-approval" ? "C0FINOPS" : undefined, key);
    assert.equal(env(on, key).FINOPS_SLACK_APPROVERS, key === "request-approval" ? "U0ANA,W0BOB" : undefined, key);
    if (asks) assert.ok(reads.every((s) => [s.Action].flat().every((a) => String(a).startsWith("secretsmanager:"))), JSON.stringify(reads));
  }
  assert.throws(() => synth({ slackSecretArn: secretArn, slackChannel: "#finops" }), /slackChannel="#finops": a Slack channel id/);
  assert.throws(() => synth({ slackSecretArn: "finops/slack", slackChannel: "C0FINOPS" }), /complete ARN/);
  assert.throws(() => synth({ slackSecretArn: secretArn }), /name the approvers' channel/);
  assert.throws(() => synth({ slackChannel: "C0FINOPS" }), /slackChannel needs slackSecretArn/);
  // A channel where nobody is named to decide, or a name that is not a user id, fails the synth.
  assert.throws(() => synth({ slackSecretArn: secretArn, slackChannel: "C0FINOPS" }), /slackChannel needs slackApprovers/);
  assert.throws(() => synth({ slackSecretArn: secretArn, slackChannel: "C0FINOPS", slackApprovers: "ana" }), /slackApprovers: "ana" is not a Slack user id/);
});

test("owner notices are off by default; on, only the request step may send, and only from the verified address", () => {
  const off = synth().template;
  assert.ok(![...allowedActions(off, "finops-agent request-approval")].includes("ses:SendEmail"));
  const slack = { slackSecretArn: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:finops/slack-AbC123`, slackChannel: "C0FINOPS", slackApprovers: "U0ANA" };
  const { stack, template: on } = synth({ ownerNoticesFrom: "finops@example.com", ownerTagKey: "team-owner", ...slack });
  // Both switched on, the stack still passes the AWS Solutions checks (each exception says why).
  const findings = new AwsSolutionsChecks().validateScope(stack).violations.map((v) => v.ruleName);
  assert.deepEqual(findings, []);
  const env = (key: string) =>
    Object.values(on.findResources("AWS::Lambda::Function")).find((f) => f.Properties.Description === `finops-agent ${key}`)!.Properties.Environment.Variables;
  assert.equal(env("request-approval").FINOPS_OWNER_NOTICES_FROM, "finops@example.com");
  assert.equal(env("policy").FINOPS_OWNER_TAG_KEY, "team-owner");
  for (const key of Object.keys(FUNCTIONS)) {
    const sends = roleStatements(on, `finops-agent ${key}`).filter((s) => [s.Action].flat().includes("ses:SendEmail"));
    assert.equal(sends.length, key === "request-approval" ? 1 : 0, key);
    for (const s of sends) assert.deepEqual(s.Condition, { StringEquals: { "ses:FromAddress": "finops@example.com" } });
  }
  assert.throws(() => synth({ ownerNoticesFrom: "finops" }), /ownerNoticesFrom="finops"/);
  assert.equal(env("request-approval").FINOPS_OWNER_DOMAINS, undefined, "default: the sender's domain only");
  const domains = synth({ ownerNoticesFrom: "finops@example.com", ownerNoticeDomains: "corp.example,@Example.org" }).template;
  const request = Object.values(domains.findResources("AWS::Lambda::Function")).find((f) => f.Properties.Description === "finops-agent request-approval")!;
  assert.equal(request.Properties.Environment.Variables.FINOPS_OWNER_DOMAINS, "corp.example,example.org");
  assert.throws(() => synth({ ownerNoticesFrom: "finops@example.com", ownerNoticeDomains: "not a domain" }), /ownerNoticeDomains/);
});

test("deleting long-stopped instances' volumes is off by default; turned on, the policy and actions steps know it and only the actions role may detach", () => {
  const env = (template: ReturnType<typeof synth>["template"], key: string) =>
    Object.values(template.findResources("AWS::Lambda::Function")).find((f) => f.Properties.Description === `finops-agent ${key}`)!.Properties.Environment.Variables;
  const off = synth().template;
  assert.equal(env(off, "policy").FINOPS_STOPPED_VOLUMES, undefined);
  assert.ok(![...allowedActions(off, "finops-agent actions")].includes("ec2:DetachVolume"));
  const on = synth({ deleteStoppedInstanceVolumes: "true" }).template;
  for (const key of ["policy", "actions"]) assert.equal(env(on, key).FINOPS_STOPPED_VOLUMES, "delete", key);
  const added = [...allowedActions(on, "finops-agent actions")].filter((a) => !allowedActions(off, "finops-agent actions").has(a));
  assert.deepEqual(added, ["ec2:DetachVolume"]);
  for (const key of ["inventory", "savings", "approval-callback", "request-approval"]) {
    assert.ok(![...allowedActions(on, `finops-agent ${key}`)].includes("ec2:DetachVolume"), key);
  }
});

test("the run-cost step reads only this state machine's history and knows every step's memory and architecture", () => {
  const { template } = synth();
  const [statement] = roleStatements(template, "finops-agent run-cost").filter((s) => s.Action === "states:GetExecutionHistory");
  assert.equal(statement.Resource, `arn:aws:states:${REGION}:${ACCOUNT}:execution:finops-agent:*`);
  const functions = Object.values(template.findResources("AWS::Lambda::Function"));
  const runCost = functions.find((f) => f.Properties.Description === "finops-agent run-cost")!;
  const env = runCost.Properties.Environment.Variables;
  assert.equal(env.FINOPS_LAMBDA_ARCHITECTURE, "arm64");
  const memory = JSON.stringify(env.FINOPS_FUNCTION_MEMORY);
  for (const key of Object.keys(FUNCTIONS).filter((k) => k !== "run-cost")) {
    const id = Object.entries(template.findResources("AWS::Lambda::Function")).find(([, f]) => f.Properties.Description === `finops-agent ${key}`)![0];
    assert.ok(memory.includes(id), `${key}'s name is in FINOPS_FUNCTION_MEMORY`);
  }
});

test("the functions' architecture follows the build: arm64 by default, x86_64 when built so, a mismatch refused", () => {
  const built = (machine: number) => {
    const dir = mkdtempSync(join(tmpdir(), "finops-assets-"));
    for (const key of Object.keys(FUNCTIONS)) {
      mkdirSync(join(dir, `finops-${key}`));
      const header = Buffer.alloc(64);
      header.writeUInt32BE(0x7f454c46, 0);
      header.writeUInt16LE(machine, 18);
      writeFileSync(join(dir, `finops-${key}`, "bootstrap"), header);
    }
    return dir;
  };
  const architectures = (template: ReturnType<typeof synth>["template"]) =>
    new Set(Object.values(template.findResources("AWS::Lambda::Function")).filter((f) => f.Properties.Handler === "bootstrap").map((f) => JSON.stringify(f.Properties.Architectures)));
  assert.deepEqual(architectures(synth().template), new Set(['["arm64"]']), "stubs: the default");
  assert.deepEqual(architectures(synth({ assetsDir: built(0xb7) }).template), new Set(['["arm64"]']));
  assert.deepEqual(architectures(synth({ assetsDir: built(0x3e) }).template), new Set(['["x86_64"]']));
  assert.deepEqual(architectures(synth({ assetsDir: built(0x3e), architecture: "x86_64" }).template), new Set(['["x86_64"]']));
  assert.throws(() => synth({ assetsDir: built(0x3e), architecture: "arm64" }), (e: Error) => e instanceof ConfigError && /make package ARCH=arm64/.test(e.message));
  assert.throws(() => synth({ architecture: "sparc" }), /context architecture="sparc": allowed are auto, arm64, x86_64/);
});

test("no approval is ever lost to the map's concurrency or the execution timeout", () => {
  const { template } = synth({ maxProposals: 12, approvalWindowHours: 72 });
  const [machine] = Object.values(template.findResources("AWS::StepFunctions::StateMachine"));
  const definition = JSON.parse(machine.Properties.DefinitionString);
  assert.equal(definition.States["Await Decisions And Act"].MaxConcurrency, 12, "every proposal waits at once");
  // The execution's own timeout is in the ASL (a string definition gets nothing from the CDK's `timeout` prop).
  const seconds = definition.TimeoutSeconds;
  assert.ok(seconds >= 72 * 3600 + 60 * 120, `execution timeout ${seconds} s covers the window and the snapshot wait`);
  assert.equal(seconds, executionBudget({ approvalWindowHours: 72 }).total);
  assert.throws(() => synth({ maxProposals: MAX_CONCURRENT_APPROVALS + 1 }), (e: Error) => e instanceof ConfigError && e.message.includes("maxProposals"));
});

test("task tokens never reach the state machine's logs; the callback has reserved concurrency", () => {
  const { template } = synth();
  const [machine] = Object.values(template.findResources("AWS::StepFunctions::StateMachine"));
  assert.equal(machine.Properties.LoggingConfiguration.IncludeExecutionData, false);
  const [callback] = Object.values(template.findResources("AWS::Lambda::Function")).filter((f) => f.Properties.Description === "finops-agent approval-callback");
  assert.equal(callback.Properties.ReservedConcurrentExecutions, 10);
});

test("approvals have their own topic; reports and alarms go to another", () => {
  const { template } = synth({ reportRecipients: "ops@example.com" });
  const subscriptions = Object.values(template.findResources("AWS::SNS::Subscription")).map((s) => [s.Properties.Endpoint, s.Properties.TopicArn.Ref]);
  const topicOf = (email: string) => subscriptions.find(([e]) => e === email)?.[1];
  assert.ok(topicOf("ana@example.com") && topicOf("ops@example.com") && topicOf("ana@example.com") !== topicOf("ops@example.com"));
  const approvalRequest = Object.values(template.findResources("AWS::Lambda::Function")).find((f) => f.Properties.Description === "finops-agent request-approval");
  assert.equal(approvalRequest?.Properties.Environment.Variables.FINOPS_APPROVAL_TOPIC_ARN.Ref, topicOf("ana@example.com"));
  const alarms = Object.values(template.findResources("AWS::CloudWatch::Alarm"));
  assert.ok(alarms.every((a) => a.Properties.AlarmActions[0].Ref === topicOf("ops@example.com")));
});

test("the deployment's mode reaches every step that could ask a person", () => {
  for (const mode of ["recommend", "act"]) {
    const { template } = synth({ mode });
    const [machine] = Object.values(template.findResources("AWS::StepFunctions::StateMachine"));
    assert.equal(machine.Properties.DefinitionSubstitutions.DeploymentMode, mode);
    for (const key of ["request-approval", "agent-tools"]) {
      const fn = Object.values(template.findResources("AWS::Lambda::Function")).find((f) => f.Properties.Description === `finops-agent ${key}`);
      assert.equal(fn?.Properties.Environment.Variables.FINOPS_MODE, mode, key);
    }
  }
});

test("the schedule starts the state machine with the configured run input", () => {
  const { template } = synth({ regions: "ap-southeast-2,us-east-1", mode: "act", schedule: "cron(0 8 ? * MON *)", timezone: "Australia/Sydney" });
  template.hasResourceProperties("AWS::Scheduler::Schedule", {
    ScheduleExpression: "cron(0 8 ? * MON *)",
    ScheduleExpressionTimezone: "Australia/Sydney",
    Target: Match.objectLike({
      Arn: { Ref: Match.stringLikeRegexp("StateMachine") },
      Input: JSON.stringify({ regions: ["ap-southeast-2", "us-east-1"], mode: "act", lookbackDays: 14 }),
    }),
  });
  template.resourceCountIs("AWS::SNS::Subscription", 4); // two approvers on the approval topic, the same two on the reports topic by default
});

test("the Bedrock agent and its action group exist only with reasoner=agent", () => {
  const agent = synth({ reasoner: "agent" }).template;
  agent.resourceCountIs("AWS::Bedrock::Agent", 1);
  agent.resourceCountIs("AWS::Bedrock::AgentAlias", 1);
  agent.hasResourceProperties("AWS::Bedrock::Agent", {
    ActionGroups: [Match.objectLike({ ActionGroupName: "finops-tools", ApiSchema: { Payload: readFileSync(join(REPO_ROOT, "openapi-schema.yaml"), "utf8") } })],
  });
  agent.hasResourceProperties("AWS::Lambda::Permission", { Principal: "bedrock.amazonaws.com" });
  for (const reasoner of ["converse", "rules"]) {
    const t = synth({ reasoner }).template;
    t.resourceCountIs("AWS::Bedrock::Agent", 0);
    t.resourceCountIs("AWS::Bedrock::AgentAlias", 0);
  }
});

test("cdk-nag AwsSolutions: no unacknowledged finding", () => {
  for (const reasoner of ["agent", "converse"]) {
    const { stack } = synth({ reasoner });
    const report = new AwsSolutionsChecks().validateScope(stack);
    const findings = report.violations.map((v) => `${v.ruleName}: ${v.violatingResources.map((r) => r.resourceLogicalId).join(", ")}`);
    assert.deepEqual(findings, [], findings.join("\n"));
  }
});

test("a bad context value fails with its key and what is allowed", () => {
  for (const [key, value, needle] of [
    ["reasoner", "gpt", "allowed are agent, converse, rules"],
    ["mode", "yolo", "allowed are recommend, act"],
    ["regions", "ap-southest-2x", "region codes"],
    ["approvers", "not-an-email", "not an email address"],
    ["lookbackDays", "90", "a number from 1 to 63"],
    ["terminateEnabled", "true", "never terminates"],
    ["maxProposals", "41", "a number from 1 to 40"],
    ["productionValues", "prod,ｐｒｏｄ", "Latin-1"],
    ["actOnlyOnEnvironments", "dev,te*t", "no * or ?"],
    ["reportRecipients", "nope", "not an email address"],
    ["schedule", "every day", "cron(...) or rate(...)"],
  ] as const) {
    assert.throws(() => synth({ [key]: value }), (e: Error) => e instanceof ConfigError && e.message.includes(key) && e.message.includes(needle), `${key}=${value}`);
  }
});

test("the approvals topic's filter attribute is the one the request step sets on every message", () => {
  const source = readFileSync(new URL("../../functions/approval-store/src/notify.rs", import.meta.url), "utf8");
  const rust = /pub const RECIPIENT_ATTRIBUTE: &str = "([^"]+)";/.exec(source);
  assert.equal(rust?.[1], RECIPIENT_ATTRIBUTE);
  const { template } = synth();
  const subscriptions = Object.values(template.findResources("AWS::SNS::Subscription")).filter((s) => JSON.stringify(s.Properties.TopicArn).includes("ApprovalRequests"));
  assert.ok(subscriptions.length > 0);
  for (const s of subscriptions) assert.deepEqual(Object.keys(s.Properties.FilterPolicy), [RECIPIENT_ATTRIBUTE]);
});
