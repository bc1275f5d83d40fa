// An organization deployment (context `accounts`): the fan-out functions' settings and reach, the state machine's
// Distributed Map grants, and the settings refused before anything is built.
import assert from "node:assert/strict";
import { test } from "node:test";
import { AwsSolutionsChecks } from "cdk-nag";
import { MEMBER_READ_ACTIONS } from "../lib/member-roles.ts";
import { allowedActions, resolve, roleStatements, synth } from "./support.ts";

const ORG = { accounts: "organization", organizationOus: "ou-ab12-workload1", excludeAccounts: "210987654321", memberReadRole: "acme-finops-read" };

test("an organization deployment fans out: every function knows the scope, only the item and actions steps assume member roles", () => {
  const { template } = synth(ORG);
  const functions = Object.values(template.findResources("AWS::Lambda::Function")).filter((f) => f.Properties.Handler === "bootstrap");
  for (const f of functions) {
    const env = f.Properties.Environment.Variables;
    assert.equal(env.FINOPS_ACCOUNTS, "organization", f.Properties.Description);
    assert.equal(env.FINOPS_ORGANIZATION_OUS, "ou-ab12-workload1");
    assert.equal(env.FINOPS_EXCLUDE_ACCOUNTS, "210987654321");
    assert.equal(env.FINOPS_MEMBER_READ_ROLE, "acme-finops-read");
    assert.equal(env.FINOPS_MEMBER_ACTIONS_ROLE, "finops-agent-actions");
    assert.equal(env.FINOPS_MAX_PROPOSALS_PER_ACCOUNT, undefined, "no per-account cap unless asked");
  }
  const capped = synth({ ...ORG, maxProposalsPerAccount: 3, maxMonthlyUsdPerAccount: 400 }).template;
  const policy = Object.values(capped.findResources("AWS::Lambda::Function")).find((f) => f.Properties.Description === "finops-agent policy")!;
  assert.equal(policy.Properties.Environment.Variables.FINOPS_MAX_PROPOSALS_PER_ACCOUNT, "3");
  assert.equal(policy.Properties.Environment.Variables.FINOPS_MAX_MONTHLY_USD_PER_ACCOUNT, "400");
  // The fan-out's scans and the model's read-only tools read members, through the read-only role only.
  for (const key of ["scan-account", "reasoning", "agent-tools", "savings"]) {
    const assume = roleStatements(template, `finops-agent ${key}`).filter((s) => s.Action === "sts:AssumeRole");
    assert.deepEqual(assume.map((s) => s.Resource), ["arn:aws:iam::*:role/acme-finops-read"], `${key}: the read-only role, by its one name, and nothing else`);
  }
  const acting = roleStatements(template, "finops-agent actions").filter((s) => s.Action === "sts:AssumeRole");
  assert.deepEqual(acting.map((s) => s.Resource), ["arn:aws:iam::*:role/finops-agent-actions"], "the actions step: the member's guarded actions role only");
  for (const key of ["inventory", "metrics", "policy", "plan-scans", "merge-scans", "request-approval", "approval-callback", "run-cost"]) {
    assert.ok(!allowedActions(template, `finops-agent ${key}`).has("sts:AssumeRole"), `${key} cannot assume a member role`);
  }
  const listing = [...allowedActions(template, "finops-agent plan-scans")].filter((a) => a.startsWith("organizations:"));
  assert.deepEqual(new Set(listing), new Set(["organizations:ListRoots", "organizations:ListAccountsForParent", "organizations:ListOrganizationalUnitsForParent", "organizations:ListTagsForResource"]));
  const [machine] = Object.values(template.findResources("AWS::StepFunctions::StateMachine"));
  assert.equal(machine.Properties.DefinitionSubstitutions.FanOut, "on");
  const definition = JSON.parse(machine.Properties.DefinitionString);
  assert.equal(definition.States["Scan Accounts"].MaxConcurrency, 10);
  assert.equal(definition.States["Scan Accounts"].ToleratedFailurePercentage, 10);
});

test("the state machine may start its own child executions and use the run bucket for the map's items and results", () => {
  const { template } = synth(ORG);
  const policies = Object.values(template.findResources("AWS::IAM::Policy")).filter((p) => JSON.stringify(p.Properties.Roles).includes("StateMachineRole"));
  const statements = policies.flatMap((p) => p.Properties.PolicyDocument.Statement);
  const actions = new Set(statements.flatMap((s: { Action: string | string[] }) => [s.Action].flat()));
  for (const action of ["states:StartExecution", "states:DescribeExecution", "states:StopExecution", "s3:PutObject", "s3:GetObject*"]) {
    assert.ok(actions.has(action), action);
  }
  const start = statements.find((s: { Action: string }) => s.Action === "states:StartExecution");
  assert.match(JSON.stringify(start.Resource), /stateMachine:finops-agent"/, "its own state machine only");
});

test("one account: no fan-out, no organization listing, no role to assume", () => {
  const { template } = synth();
  const [machine] = Object.values(template.findResources("AWS::StepFunctions::StateMachine"));
  assert.equal(machine.Properties.DefinitionSubstitutions.FanOut, "off");
  assert.ok(!allowedActions(template, "finops-agent scan-account").has("sts:AssumeRole"));
  assert.ok(![...allowedActions(template, "finops-agent plan-scans")].some((a) => a.startsWith("organizations:")));
  const inventory = Object.values(template.findResources("AWS::Lambda::Function")).find((f) => f.Properties.Description === "finops-agent inventory")!;
  assert.equal(inventory.Properties.Environment.Variables.FINOPS_ACCOUNTS, undefined);
});

test("bad organization settings fail the synth with the key", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ accounts: "12345" }, /context accounts: "12345" is not an AWS account id/],
    [{ accounts: "organization", organizationOus: "workloads" }, /organizationOus: "workloads" is not an organizational unit id/],
    [{ accounts: "111111111111", organizationOus: "ou-ab12-workload1" }, /applies to accounts=organization only/],
    [{ ...ORG, memberReadRole: "role/with/slashes" }, /memberReadRole=.*an IAM role name/],
    [{ ...ORG, toleratedFailurePercentage: 150 }, /toleratedFailurePercentage.*0 to 100/],
  ];
  for (const [context, message] of cases) assert.throws(() => synth(context), message);
});

/** The member template the StackSet deploys, with the hub's tokens resolved as in the test account. */
function memberTemplate(context: Record<string, unknown> = ORG) {
  const { template } = synth(context);
  const resources = template.toJSON().Resources;
  const stackSets = Object.values(template.findResources("AWS::CloudFormation::StackSet"));
  assert.equal(stackSets.length, 1);
  const [stackSet] = stackSets;
  const body = JSON.parse(resolve(stackSet.Properties.TemplateBody, resources) as string);
  const roleOf = (description: string) => {
    const fn = Object.values(resources as Record<string, any>).find((r) => r.Type === "AWS::Lambda::Function" && r.Properties.Description === description);
    return resolve(fn.Properties.Role, resources);
  };
  const readers = ["scan-account", "reasoning", "agent-tools", "savings"].map((key) => roleOf(`finops-agent ${key}`));
  return { stackSet, body, readers, actionsRole: roleOf("finops-agent actions") };
}

test("the member StackSet is service-managed and follows new accounts into its target OUs", () => {
  const { stackSet } = memberTemplate();
  const p = stackSet.Properties;
  assert.equal(p.PermissionModel, "SERVICE_MANAGED");
  assert.deepEqual(p.AutoDeployment, { Enabled: true, RetainStacksOnAccountRemoval: false });
  assert.deepEqual(p.Capabilities, ["CAPABILITY_NAMED_IAM"]);
  assert.deepEqual(p.StackInstancesGroup[0].DeploymentTargets.OrganizationalUnitIds, ["ou-ab12-workload1"]);
  const roots = memberTemplate({ ...ORG, memberStackSetTargets: "r-ab12" }).stackSet.Properties;
  assert.deepEqual(roots.StackInstancesGroup[0].DeploymentTargets.OrganizationalUnitIds, ["r-ab12"]);
});

test("each member role trusts only its hub functions' roles; the read role reads, the actions role carries the guard", () => {
  const { body, readers, actionsRole } = memberTemplate();
  const read = body.Resources.ReadOnlyRole.Properties;
  const act = body.Resources.ActionsRole.Properties;
  assert.equal(read.RoleName, "acme-finops-read");
  assert.equal(act.RoleName, "finops-agent-actions");
  // The fan-out's scans and the model's read-only tools (which read a member's instance where it is), nothing else.
  assert.deepEqual(read.AssumeRolePolicyDocument.Statement, [{ Effect: "Allow", Principal: { AWS: readers }, Action: "sts:AssumeRole" }]);
  assert.ok(readers.every((r) => typeof r === "string" && r.includes(":role/")), JSON.stringify(readers));
  assert.deepEqual(act.AssumeRolePolicyDocument.Statement, [{ Effect: "Allow", Principal: { AWS: actionsRole }, Action: "sts:AssumeRole" }]);
  assert.ok(!readers.includes(actionsRole), "the acting role cannot read through the detection role, nor the reverse");
  const readActions = read.Policies.flatMap((p: any) => p.PolicyDocument.Statement).flatMap((s: any) => [s.Action].flat());
  // One-click undo in a member: the hub's conditions (start only what finops stopped; recreate only from a run's
  // snapshot, tagged with the undo).
  const hubAllows = roleStatements(synth(ORG).template, "finops-agent actions");
  const memberAllows = act.Policies.flatMap((p: any) => p.PolicyDocument.Statement);
  for (const sid of ["UndoStopsOnly", "RecreateVolumesOnlyFromRunSnapshots", "RecreatedVolumesCarryTheUndo"]) {
    const [hub, member] = [hubAllows.find((s) => s.Sid === sid), memberAllows.find((s: any) => s.Sid === sid)];
    assert.ok(hub && member, sid);
    assert.deepEqual([member.Action, member.Condition], [hub!.Action, hub!.Condition], sid);
  }
  assert.deepEqual(new Set(readActions), new Set(MEMBER_READ_ACTIONS), "the read role changes nothing");
  // The guard: the same Deny statements as the hub's actions role, each in a managed policy on the actions role.
  const guards = Object.values(body.Resources as Record<string, any>).filter((r) => r.Type === "AWS::IAM::ManagedPolicy");
  assert.ok(guards.every((g) => JSON.stringify(g.Properties.Roles) === JSON.stringify([{ Ref: "ActionsRole" }])));
  const denies = guards.flatMap((g) => g.Properties.PolicyDocument.Statement).filter((s: any) => s.Effect === "Deny");
  const onResources = ["DenyProductionEnvironment", "DenyProductionenv", "DenyProductionstage", "DenyProtected"].map((sid) => `${sid}Resources`);
  assert.deepEqual(new Set(denies.map((s: any) => s.Sid)), new Set(["DenyProductionEnvironment", "DenyProductionenv", "DenyProductionstage", "DenyProtected", "DenyStopWithInstanceStorage", ...onResources]));
  const hubDenies = roleStatements(synth(ORG).template, "finops-agent actions").filter((s) => s.Effect === "Deny");
  const own = (resource: string) => ({ "Fn::Join": ["", ["arn:", { Ref: "AWS::Partition" }, ":ec2:*:", { Ref: "AWS::AccountId" }, `:${resource}/*`]] });
  for (const hub of hubDenies) {
    const member = denies.find((d: any) => d.Sid === hub.Sid);
    assert.deepEqual(member.Condition, hub.Condition, `${hub.Sid}: the member's condition is the hub's`);
    assert.deepEqual(member.Action, hub.Action, `${hub.Sid}: the member's actions are the hub's`);
    const snapshots = { "Fn::Join": ["", ["arn:", { Ref: "AWS::Partition" }, ":ec2:*::snapshot/*"]] };
    const expected = String(hub.Sid).endsWith("Resources") ? [own("volume"), own("elastic-ip"), snapshots] : own("instance");
    assert.deepEqual(member.Resource, expected, `${hub.Sid}: the member's own resources`);
  }
});

test("an organization deployment needs somewhere to put the member roles, or to be told they exist", () => {
  assert.throws(() => synth({ accounts: "organization" }), /memberStackSetTargets: the OUs \(or the root, r-xxxx\)/);
  const { template } = synth({ accounts: "organization", memberStackSet: "false" });
  assert.equal(Object.keys(template.findResources("AWS::CloudFormation::StackSet")).length, 0);
  assert.throws(() => synth({ ...ORG, memberStackSetTargets: "workloads" }), /memberStackSetTargets: "workloads"/);
});

test("routed approvals: each address is subscribed with its own filter, and who decides is no file a run writes", () => {
  const routing = {
    routes: [
      { account: "111111111111", approvers: ["Data-Team@example.com"] },
      { ou: "ou-ab12-workload1", approvers: ["workloads@example.com", "ana@example.com"] },
    ],
  };
  const { stack, template } = synth({ ...ORG, approvalRouting: JSON.stringify(routing) });
  const report = new AwsSolutionsChecks().validateScope(stack);
  const findings = report.violations.map((v) => `${v.ruleName}: ${v.violatingResources.map((r) => r.resourceLogicalId).join(", ")}`);
  assert.deepEqual(findings, [], findings.join("\n"));
  const fns = Object.values(template.findResources("AWS::Lambda::Function")).filter((f) => f.Properties.Handler === "bootstrap");
  for (const f of fns) {
    // The deployment's approvers are the default route when the table has none.
    assert.deepEqual(JSON.parse(f.Properties.Environment.Variables.FINOPS_APPROVAL_ROUTING), { ...routing, default: ["ana@example.com", "raj@example.com"] });
  }
  const approvalEmails = (t: typeof template) =>
    Object.values(t.findResources("AWS::SNS::Subscription")).filter((s) => s.Properties.Protocol === "email" && JSON.stringify(s.Properties.TopicArn).includes("ApprovalRequests"));
  const emails = approvalEmails(template);
  const byAddress = Object.fromEntries(emails.map((s) => [s.Properties.Endpoint, s.Properties.FilterPolicy]));
  assert.deepEqual(Object.keys(byAddress).sort(), ["ana@example.com", "data-team@example.com", "raj@example.com", "workloads@example.com"], "every address once, lowercase");
  for (const [address, filter] of Object.entries(byAddress)) assert.deepEqual(filter, { recipient: [address] }, address);
  const [topicPolicy] = Object.values(template.findResources("AWS::SNS::TopicPolicy")).filter((p) => JSON.stringify(p).includes("SubscribeOnlyTheConfiguredApprovalRecipients"));
  const deny = topicPolicy.Properties.PolicyDocument.Statement.find((s: { Sid: string }) => s.Sid === "SubscribeOnlyTheConfiguredApprovalRecipients");
  assert.deepEqual(new Set(deny.Condition.StringNotEqualsIgnoreCase["sns:Endpoint"]), new Set(Object.keys(byAddress)));
  // Finding 3: the request step read who may decide from the run bucket, which detection steps write. It reads
  // nothing of the run bucket now; where a route needs an account's OU or tags, it reads Organizations, read-only.
  assert.ok(![...allowedActions(template, "finops-agent request-approval")].some((a) => a.startsWith("s3:")));
  const organizations = [...allowedActions(template, "finops-agent request-approval")].filter((a) => a.startsWith("organizations:"));
  assert.deepEqual(new Set(organizations), new Set(["organizations:DescribeAccount", "organizations:ListParents", "organizations:ListTagsForResource"]));

  // Unrouted: each approver's subscription filtered on their own address too (each gets their own links), no run
  // bucket and no Organizations access for the request step, and the approvers in its environment.
  const plain = synth(ORG).template;
  const plainEmails = approvalEmails(plain);
  assert.equal(plainEmails.length, 2);
  for (const s of plainEmails) assert.deepEqual(s.Properties.FilterPolicy, { recipient: [s.Properties.Endpoint] });
  const plainActions = [...allowedActions(plain, "finops-agent request-approval")];
  assert.ok(!plainActions.some((a) => a.startsWith("s3:") || a.startsWith("organizations:")), plainActions.join());
  const request = Object.values(plain.findResources("AWS::Lambda::Function")).find((f) => f.Properties.Description === "finops-agent request-approval")!;
  assert.equal(request.Properties.Environment.Variables.FINOPS_APPROVERS, "ana@example.com,raj@example.com");
});

test("a bad routing table fails the synth with what is wrong", () => {
  const cases: [unknown, RegExp][] = [
    ["{not json", /approvalRouting: not valid JSON/],
    [JSON.stringify({ routes: [{ acount: "111111111111", approvers: ["a@example.com"] }] }), /unknown field "acount"/],
    [JSON.stringify({ routes: [{ account: "111111111111", ou: "ou-ab12-workload1", approvers: ["a@example.com"] }] }), /exactly one of account, ou or tag/],
    [JSON.stringify({ routes: [{ account: "1111", approvers: ["a@example.com"] }] }), /not an AWS account id/],
    [JSON.stringify({ routes: [{ tag: "team", approvers: ["a@example.com"] }] }), /tag must be key=value/],
    [JSON.stringify({ routes: [{ account: "111111111111", approvers: [] }] }), /names no approver/],
    [JSON.stringify({ routes: [], default: ["nope"] }), /default: a list of email addresses/],
    [JSON.stringify({ routes: [{ account: "111111111111", approvers: ["a@example.com"], slackChannel: "#data" }] }), /slackChannel "#data" is not a Slack channel id/],
    [JSON.stringify({ routes: [], default: ["a@example.com"], defaultSlackChannel: "finops" }), /defaultSlackChannel "finops" is not a Slack channel id/],
    [JSON.stringify({ routes: [{ account: "111111111111", approvers: ["a@example.com"], slackChannel: "C0DATA" }] }), /slackChannel needs slackUsers/],
    [JSON.stringify({ routes: [{ account: "111111111111", approvers: ["a@example.com"], slackChannel: "C0DATA", slackUsers: ["#data"] }] }), /slackUsers: a list of Slack user ids/],
    [JSON.stringify({ routes: [], default: ["a@example.com"], defaultSlackChannel: "C0FINOPS" }), /defaultSlackChannel needs defaultSlackUsers/],
  ];
  for (const [approvalRouting, message] of cases) assert.throws(() => synth({ ...ORG, approvalRouting }), message, String(approvalRouting));
  const routing = JSON.stringify({ routes: [], default: ["a@example.com"] });
  assert.throws(() => synth({ approvalRouting: routing }), /approvalRouting routes approvals by account: it needs an organization deployment/);
  // A Slack channel per group travels to the functions with the table (the request step posts there, the callback
  // and the actions step accept a click from there only); Slack with routes that all name a channel needs no other.
  const withChannels = {
    routes: [{ account: "111111111111", approvers: ["data@example.com"], slackChannel: "C0DATA", slackUsers: ["U0DATA"] }],
    default: ["a@example.com"],
    defaultSlackChannel: "C0FINOPS",
    defaultSlackUsers: ["U0FINOPS"],
  };
  const secretArn = "arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:finops/slack-AbC123";
  const { template } = synth({ ...ORG, approvalRouting: JSON.stringify(withChannels), slackSecretArn: secretArn });
  const request = Object.values(template.findResources("AWS::Lambda::Function")).find((f) => f.Properties.Description === "finops-agent request-approval")!;
  assert.deepEqual(JSON.parse(request.Properties.Environment.Variables.FINOPS_APPROVAL_ROUTING), withChannels);
  assert.equal(request.Properties.Environment.Variables.FINOPS_SLACK_CHANNEL, undefined);
  // A deployment-wide channel or users beside routes would be ignored: refused, so nobody believes them in force.
  for (const extra of [{ slackChannel: "C0OTHER", slackApprovers: "U0OTHER" }, { slackApprovers: "U0OTHER" }]) {
    assert.throws(() => synth({ ...ORG, approvalRouting: JSON.stringify(withChannels), slackSecretArn: secretArn, ...extra }), /with approvalRouting, name the channels and users in its routes/);
  }
});
