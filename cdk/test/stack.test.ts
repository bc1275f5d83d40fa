// Template assertions, cdk-nag AwsSolutions, and bad context. Stub `bootstrap` files stand in for the release
// build (test/fixtures/lambda), so this needs no cargo-lambda and no network.
import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { App } from "aws-cdk-lib";
import { Match, Template } from "aws-cdk-lib/assertions";
import { AwsSolutionsChecks } from "cdk-nag";
import { ConfigError, FinopsStack, readConfig, REPO_ROOT } from "../lib/finops-stack.ts";

const defaults = JSON.parse(readFileSync(new URL("../cdk.json", import.meta.url), "utf8")).context as Record<string, unknown>;

function synth(overrides: Record<string, unknown> = {}) {
  const context = { ...defaults, assetsDir: "test/fixtures/lambda", approvers: "ana@example.com,raj@example.com", ...overrides };
  const app = new App({ context });
  const stack = new FinopsStack(app, "FinopsAgent", { config: readConfig((k) => app.node.tryGetContext(k)) });
  return { app, stack, template: Template.fromStack(stack) };
}

test("every function runs on provided.al2023 with active tracing and log retention", () => {
  const { template } = synth();
  const functions = template.findResources("AWS::Lambda::Function");
  const own = Object.values(functions).filter((f) => f.Properties.Handler === "bootstrap");
  assert.equal(own.length, 8);
  for (const f of own) {
    assert.equal(f.Properties.Runtime, "provided.al2023");
    assert.deepEqual(f.Properties.TracingConfig, { Mode: "Active" });
    assert.ok(f.Properties.LoggingConfig?.LogGroup, "own log group");
  }
  template.allResourcesProperties("AWS::Logs::LogGroup", { RetentionInDays: 30 });
});

test("the state machine is the ASL file with every substitution and the waitForTaskToken task", () => {
  const { template } = synth();
  const asl = readFileSync(join(REPO_ROOT, "statemachine", "finops.asl.json"), "utf8");
  const used = new Set([...asl.matchAll(/\$\{([A-Za-z0-9]+)\}/g)].map((m) => m[1]));
  const [machine] = Object.values(template.findResources("AWS::StepFunctions::StateMachine"));
  assert.equal(machine.Properties.StateMachineName, "finops-agent");
  assert.deepEqual(new Set(Object.keys(machine.Properties.DefinitionSubstitutions)), used);
  assert.equal(machine.Properties.DefinitionString, asl, "the file itself, checkable by cfn-lint");
  assert.ok(asl.includes("arn:aws:states:::lambda:invoke.waitForTaskToken"));
  assert.deepEqual(machine.Properties.TracingConfiguration, { Enabled: true });
  assert.equal(machine.Properties.LoggingConfiguration.Level, "ALL");
});

test("IAM denies stopping, snapshotting and tagging production-tagged instances for every key", () => {
  const { template } = synth();
  const policies = Object.values(template.findResources("AWS::IAM::Policy"));
  const statements = policies.flatMap((p) => p.Properties.PolicyDocument.Statement);
  for (const key of ["Environment", "env", "stage"]) {
    const deny = statements.find((s) => s.Effect === "Deny" && s.Condition?.StringEqualsIgnoreCase?.[`ec2:ResourceTag/${key}`]);
    assert.ok(deny, `Deny on ec2:ResourceTag/${key}`);
    assert.ok(deny.Action.includes("ec2:StopInstances") && deny.Action.includes("ec2:CreateSnapshots"));
    for (const v of ["prod", "production", "prd", "live"]) assert.ok(deny.Condition.StringEqualsIgnoreCase[`ec2:ResourceTag/${key}`].includes(v));
  }
  const actions = statements.flatMap((s) => [s.Action].flat());
  assert.ok(!actions.some((a) => a === "ec2:*" || a === "*"), "no wildcard EC2 actions");
  assert.ok(!actions.includes("ec2:TerminateInstances"), "terminate only when enabled");
  const withTerminate = synth({ terminateEnabled: "true" });
  const all = Object.values(withTerminate.template.findResources("AWS::IAM::Policy")).flatMap((p) => p.Properties.PolicyDocument.Statement).flatMap((s) => [s.Action].flat());
  assert.ok(all.includes("ec2:TerminateInstances"));
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
  template.resourceCountIs("AWS::SNS::Subscription", 2);
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
    ["terminateEnabled", "maybe", "true or false"],
    ["schedule", "every day", "cron(...) or rate(...)"],
  ] as const) {
    assert.throws(() => synth({ [key]: value }), (e: Error) => e instanceof ConfigError && e.message.includes(key) && e.message.includes(needle), `${key}=${value}`);
  }
});
