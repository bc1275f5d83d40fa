// The IAM backstop, evaluated by an IAM policy simulator (@cloud-copilot/iam-simulate) on the synthesized template:
// the actions role's policies as CloudFormation would create them, asked whether StopInstances, CreateSnapshots and
// CreateTags are allowed on an instance, CreateSnapshot and DeleteVolume on a volume and ReleaseAddress on an Elastic
// IP, each carrying each tag set of the table that the policy code generates
// (fixtures/tag-spellings.json, from functions/core/tests/tag_spellings.rs). Wherever the code denies, IAM must deny
// explicitly; where the code allows, IAM must allow. In allow-list mode the same, including the spellings that only
// the allow-list's exact Allow can refuse (Unicode look-alikes, padded keys).
import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { runSimulation } from "@cloud-copilot/iam-simulate";
import { IAM_LISTED_INVISIBLE, instanceStorageFamilies, NON_PRODUCTION_PREFIXES, policySize, UNPROTECT_VALUES } from "../lib/production-guard.ts";
import { PENDING_APPROVAL_ATTRIBUTES } from "../lib/finops-stack.ts";
import { ACCOUNT, defaults, REGION, rolePolicies, synth } from "./support.ts";

interface Row {
  tags: [string, string][];
  layer: "guard" | "allow-list" | "code";
  denied: boolean;
  reason: string | null;
  deniedInAllowListMode: boolean;
}
const table = JSON.parse(readFileSync(new URL("./fixtures/tag-spellings.json", import.meta.url), "utf8")) as {
  config: Record<string, string[] | string>;
  rows: Row[];
};
const INSTANCE = `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/i-0123456789abcdef0`;
const VOLUME = `arn:aws:ec2:${REGION}:${ACCOUNT}:volume/vol-0123456789abcdef0`;
const ADDRESS = `arn:aws:ec2:${REGION}:${ACCOUNT}:elastic-ip/eipalloc-0123456789abcdef0`;
/** Every call that changes something, on the resource it changes: the tag rules are the same for each kind. */
const ACTIONS: [string, string][] = [
  ["ec2:StopInstances", INSTANCE],
  ["ec2:CreateSnapshots", INSTANCE],
  ["ec2:CreateTags", INSTANCE],
  ["ec2:CreateSnapshot", VOLUME],
  ["ec2:DeleteVolume", VOLUME],
  ["ec2:ReleaseAddress", ADDRESS],
];

type Policies = { name: string; policy: unknown }[];

async function decide(policies: Policies, action: string, tags: [string, string][], instanceType = "t3.large", resource = INSTANCE, requestTags: [string, string][] = []): Promise<string> {
  const contextVariables: Record<string, string> = { "ec2:InstanceType": instanceType };
  for (const [k, v] of requestTags) contextVariables[`aws:RequestTag/${k}`] = v;
  for (const [k, v] of tags) {
    contextVariables[`ec2:ResourceTag/${k}`] = v;
    contextVariables[`aws:ResourceTag/${k}`] = v;
  }
  const result = await runSimulation(
    {
      identityPolicies: policies as never,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      request: { action, principal: `arn:aws:iam::${ACCOUNT}:role/finops-actions`, resource: { resource, accountId: ACCOUNT }, contextVariables },
    },
    {},
  );
  if (result.resultType === "error") throw new Error(`simulation failed: ${JSON.stringify(result.errors).slice(0, 500)}`);
  return result.overallResult;
}

const show = (tags: [string, string][]) => JSON.stringify(tags).replace(/[^\x20-\x7e]/g, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);

test("the table was generated from the same rules the stack's guard is built from", () => {
  assert.deepEqual(table.config.environmentTagKeys, String(defaults.protectedTagKeys).split(","));
  assert.deepEqual(table.config.productionValues, String(defaults.productionValues).split(","));
  assert.deepEqual(table.config.unprotectValues, [...UNPROTECT_VALUES]);
  assert.deepEqual(table.config.nonProductionPrefixes, [...NON_PRODUCTION_PREFIXES]);
  assert.deepEqual(table.config.iamListedInvisible, IAM_LISTED_INVISIBLE.map((c) => c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")));
  assert.ok(table.rows.length > 1000, `${table.rows.length} rows`);
});

test("default deployment: IAM explicitly denies every tag set the code denies, and allows the rest", async () => {
  const policies = rolePolicies(synth().template, "finops-agent actions");
  const wrong: string[] = [];
  let checked = 0;
  for (const row of table.rows.filter((r) => r.layer === "guard")) {
    for (const [action, resource] of ACTIONS) {
      const result = await decide(policies, action, row.tags, "t3.large", resource);
      const expected = row.denied ? "ExplicitlyDenied" : "Allowed";
      checked++;
      if (result !== expected) wrong.push(`${action} ${show(row.tags)}: IAM ${result}, code ${row.denied ? `denies (${row.reason})` : "allows"}`);
    }
  }
  console.log(`iam guard (default): ${checked} simulations, ${wrong.length} disagreements`);
  assert.deepEqual(wrong.slice(0, 20), [], `${wrong.length} disagreements`);
});

test("allow-list mode: IAM allows exactly the instances the code may act on", async () => {
  const environments = table.config.actOnlyOnEnvironments as string[];
  const policies = rolePolicies(synth({ actOnlyOnEnvironments: environments.join(",") }).template, "finops-agent actions");
  const wrong: string[] = [];
  let checked = 0;
  for (const row of table.rows.filter((r) => r.layer !== "code")) {
    for (const [action, resource] of ACTIONS) {
      const result = await decide(policies, action, row.tags, "t3.large", resource);
      checked++;
      if ((result === "Allowed") !== !row.deniedInAllowListMode) wrong.push(`${action} ${show(row.tags)}: IAM ${result}, code ${row.deniedInAllowListMode ? "denies" : "allows"}`);
    }
  }
  console.log(`iam guard (allow-list): ${checked} simulations, ${wrong.length} disagreements`);
  assert.deepEqual(wrong.slice(0, 20), [], `${wrong.length} disagreements`);
});

test("IAM denies stopping every instance family with instance-store disks", async () => {
  const policies = rolePolicies(synth().template, "finops-agent actions");
  const dev: [string, string][] = [["Environment", "dev"]];
  const families = instanceStorageFamilies();
  assert.ok(families.includes("m5d") && families.includes("i3") && families.includes("g4dn"));
  for (const family of families) {
    assert.equal(await decide(policies, "ec2:StopInstances", dev, `${family}.xlarge`), "ExplicitlyDenied", family);
  }
  for (const type of ["t3.large", "m5.large", "c5.xlarge", "r5.2xlarge", "m6i.large"]) {
    assert.equal(await decide(policies, "ec2:StopInstances", dev, type), "Allowed", type);
  }
  // Snapshotting such an instance is harmless (and needed for EBS volumes): only the stop is refused.
  assert.equal(await decide(policies, "ec2:CreateSnapshots", dev, "m5d.large"), "Allowed");
});

test("IAM lets an undo start only what finops stopped, and recreate a volume only from a run's snapshot, tagged with the undo", async () => {
  const SNAPSHOT = `arn:aws:ec2:${REGION}::snapshot/snap-0123456789abcdef0`;
  for (const policies of [rolePolicies(synth().template, "finops-agent actions"), rolePolicies(synth({ actOnlyOnEnvironments: "dev" }).template, "finops-agent actions")]) {
    const start = (tags: [string, string][]) => decide(policies, "ec2:StartInstances", tags);
    assert.equal(await start([["finops:action", "stopped"], ["Environment", "dev"]]), "Allowed");
    for (const tags of [[], [["finops:action", "started-again"]], [["Environment", "dev"]]] as [string, string][][]) {
      assert.notEqual(await start(tags), "Allowed", show(tags));
    }
    const fromSnapshot = (tags: [string, string][]) => decide(policies, "ec2:CreateVolume", tags, "t3.large", SNAPSHOT);
    assert.equal(await fromSnapshot([["finops:run-id", "run-1"]]), "Allowed");
    assert.notEqual(await fromSnapshot([["Name", "someone's snapshot"]]), "Allowed");
    const newVolume = (requestTags: [string, string][]) => decide(policies, "ec2:CreateVolume", [], "t3.large", VOLUME, requestTags);
    assert.equal(await newVolume([["finops:undo-id", "0123456789abcdef0123456789abcdef"]]), "Allowed");
    assert.notEqual(await newVolume([["Name", "a volume of my own"]]), "Allowed");
    // Nothing else the undo does not need.
    for (const [action, resource] of [["ec2:RunInstances", INSTANCE], ["ec2:AttachVolume", VOLUME], ["ec2:DeleteSnapshot", SNAPSHOT], ["ec2:TerminateInstances", INSTANCE]]) {
      assert.notEqual(await decide(policies, action, [["finops:action", "stopped"], ["finops:run-id", "run-1"]], "t3.large", resource), "Allowed", action);
    }
  }
});

test("IAM lets a long-stopped instance's volumes be detached only where the deployment turned it on, and never a production instance's", async () => {
  const off = rolePolicies(synth().template, "finops-agent actions");
  assert.notEqual(await decide(off, "ec2:DetachVolume", [["Environment", "dev"]]), "Allowed", "off by default");
  for (const [context, dev] of [[{ deleteStoppedInstanceVolumes: "true" }, "dev"], [{ deleteStoppedInstanceVolumes: "true", actOnlyOnEnvironments: "dev" }, "dev"]] as const) {
    const on = rolePolicies(synth(context).template, "finops-agent actions");
    assert.equal(await decide(on, "ec2:DetachVolume", [["Environment", dev]]), "Allowed", JSON.stringify(context));
    assert.equal(await decide(on, "ec2:DetachVolume", [], "t3.large", VOLUME), "Allowed", "its volume: the instance is the check");
    for (const tags of [[["Environment", "production"]], [["env", "eu-prod"]], [["Environment", dev], ["finops:protect", "true"]]] as [string, string][][]) {
      assert.equal(await decide(on, "ec2:DetachVolume", tags), "ExplicitlyDenied", `${JSON.stringify(context)} ${show(tags)}`);
    }
  }
});

test("only the configured approvers can ever be subscribed to the approval topic", async () => {
  const { template } = synth();
  const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Record<string, unknown> }>;
  const topicPolicy = Object.values(resources).find((r) => r.Type === "AWS::SNS::TopicPolicy" && JSON.stringify(r.Properties.PolicyDocument).includes("SubscribeOnlyTheConfiguredApprovers"));
  assert.ok(topicPolicy, "approval topic policy");
  const approvalTopicId = ((topicPolicy.Properties.Topics as { Ref: string }[])[0]).Ref;
  const document = JSON.parse(JSON.stringify(topicPolicy.Properties.PolicyDocument).replaceAll(JSON.stringify({ Ref: approvalTopicId }), JSON.stringify(`arn:aws:sns:${REGION}:${ACCOUNT}:approvals`)));
  const admin = [{ name: "admin", policy: { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "sns:*", Resource: "*" }] } }];
  const subscribe = async (protocol: string, endpoint: string) => {
    const result = await runSimulation(
      {
        identityPolicies: admin as never,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        resourcePolicy: document,
        request: { action: "sns:Subscribe", principal: `arn:aws:iam::${ACCOUNT}:role/admin`, resource: { resource: `arn:aws:sns:${REGION}:${ACCOUNT}:approvals`, accountId: ACCOUNT }, contextVariables: { "sns:Protocol": protocol, "sns:Endpoint": endpoint } },
      },
      {},
    );
    assert.notEqual(result.resultType, "error", JSON.stringify(result));
    return (result as { overallResult: string }).overallResult;
  };
  assert.equal(await subscribe("email", "ana@example.com"), "Allowed");
  assert.equal(await subscribe("email", "Raj@Example.com"), "Allowed");
  assert.equal(await subscribe("email", "mallory@evil.example"), "ExplicitlyDenied", "an account admin cannot add an approver by hand");
  assert.equal(await subscribe("https", "ana@example.com"), "ExplicitlyDenied");
  assert.equal(await subscribe("sqs", `arn:aws:sqs:${REGION}:${ACCOUNT}:tap`), "ExplicitlyDenied");
});

test("the approval request step can create pending records and renew their task token, but never write a decision", async () => {
  const policies = rolePolicies(synth().template, "finops-agent request-approval");
  const statements = policies.flatMap((p) => (p.policy as { Statement: { Sid?: string; Resource: string }[] }).Statement);
  const table = (statements.find((s) => s.Sid === "PutPendingApprovalsOnly") ?? { Resource: "" }).Resource;
  const write = async (action: string, attributes: string[]) => {
    const result = await runSimulation(
      {
        identityPolicies: policies as never,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        request: { action, principal: `arn:aws:iam::${ACCOUNT}:role/finops-request-approval`, resource: { resource: table, accountId: ACCOUNT }, contextVariables: { "dynamodb:Attributes": attributes } },
      },
      {},
    );
    assert.notEqual(result.resultType, "error", JSON.stringify(result));
    return (result as { overallResult: string }).overallResult;
  };
  // The attributes the Rust code writes when it creates a record: exactly those IAM allows.
  const source = readFileSync(new URL("../../functions/approval-store/src/lib.rs", import.meta.url), "utf8");
  const claim = source.slice(source.indexOf("async fn claim_pending"), source.indexOf(".condition_expression(\"attribute_not_exists"));
  const pending = [...claim.matchAll(/\.item\("([A-Za-z]+)"/g)].map((m) => m[1]);
  assert.deepEqual(new Set(pending), new Set(PENDING_APPROVAL_ATTRIBUTES));
  assert.equal(await write("dynamodb:PutItem", pending), "Allowed");
  // What a retry changes: the task token (claim_pending) and the email's status (mark_email, reclaim_unsent_email).
  // And where Slack asked it (mark_slack_message).
  for (const update of [["approvalId", "taskToken"], ["approvalId", "emailStatus"], ["approvalId", "slackMessage"], ["approvalId", "ownerNotice"]]) {
    assert.equal(await write("dynamodb:UpdateItem", update), "Allowed", update.join());
  }
  for (const forged of ["decision", "approver", "decidedAt", "decidedVia", "state"]) {
    assert.equal(await write("dynamodb:PutItem", [...pending, forged === "state" ? "lateAnswer" : forged]), "ImplicitlyDenied", forged);
    assert.equal(await write("dynamodb:UpdateItem", ["approvalId", "taskToken", forged]), "ImplicitlyDenied", forged);
  }
  assert.equal(await write("dynamodb:DeleteItem", ["approvalId"]), "ImplicitlyDenied", "it never removes a record");
});

test("every policy document IAM will receive holds only Latin-1 and fits IAM's size limits", () => {
  for (const overrides of [{}, { actOnlyOnEnvironments: "dev,test,qa,staging,sandbox" }]) {
    const { template } = synth(overrides);
    const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Record<string, unknown> }>;
    for (const [id, r] of Object.entries(resources)) {
      if (!["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"].includes(r.Type)) continue;
      const { chars, latin1 } = policySize(r.Properties.PolicyDocument);
      assert.ok(latin1, `${id}: IAM accepts only U+0009, U+000A, U+000D and U+0020..U+00FF in a policy`);
      assert.ok(chars < (r.Type === "AWS::IAM::ManagedPolicy" ? 6_144 : 10_240), `${id}: ${chars} characters`);
    }
  }
});
