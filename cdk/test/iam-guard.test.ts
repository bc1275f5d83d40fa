// The IAM backstop, evaluated by an IAM policy simulator (@cloud-copilot/iam-simulate) on the synthesized template:
// the actions role's policies as CloudFormation would create them, asked whether StopInstances, CreateSnapshots,
// CreateTags and an undo's StartInstances are allowed on an instance, CreateSnapshot and DeleteVolume on a volume,
// ReleaseAddress on an Elastic IP and an undo's CreateVolume from a snapshot, each carrying each tag set of the table
// that the policy code generates
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
const SNAPSHOT = `arn:aws:ec2:${REGION}::snapshot/snap-0123456789abcdef0`;
/** Every call that changes something, on the resource it changes, with the tags finops itself put there (an undo
 * starts only what finops stopped, and recreates only from a run's snapshot): the tag rules are the same for each. */
const ACTIONS: [string, string, [string, string][]][] = [
  ["ec2:StopInstances", INSTANCE, []],
  ["ec2:CreateSnapshots", INSTANCE, []],
  ["ec2:CreateTags", INSTANCE, []],
  ["ec2:StartInstances", INSTANCE, [["finops:action", "stopped"]]],
  ["ec2:CreateSnapshot", VOLUME, []],
  ["ec2:DeleteVolume", VOLUME, []],
  ["ec2:ReleaseAddress", ADDRESS, []],
  ["ec2:CreateVolume", SNAPSHOT, [["finops:run-id", "run-1"]]],
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
    for (const [action, resource, own] of ACTIONS) {
      const result = await decide(policies, action, [...row.tags, ...own], "t3.large", resource);
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
    for (const [action, resource, own] of ACTIONS) {
      // A run's snapshot carries no environment tag (the allow-list has nothing to read there): only the guard's
      // production and protect rules hold over recreating a volume from it, as in a default deployment.
      if (action === "ec2:CreateVolume" && row.layer !== "guard") continue;
      const result = await decide(policies, action, [...row.tags, ...own], "t3.large", resource);
      checked++;
      const denied = action === "ec2:CreateVolume" ? row.denied : row.deniedInAllowListMode;
      if ((result === "Allowed") !== !denied) wrong.push(`${action} ${show(row.tags)}: IAM ${result}, code ${denied ? "denies" : "allows"}`);
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
  const topicPolicy = Object.values(resources).find((r) => r.Type === "AWS::SNS::TopicPolicy" && JSON.stringify(r.Properties.PolicyDocument).includes("SubscribeOnlyTheConfiguredApprovalRecipients"));
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
  // The attributes the Rust code writes when it creates a record (with its audience) or claims a message: exactly
  // those IAM allows.
  const source = readFileSync(new URL("../../functions/approval-store/src/dynamo.rs", import.meta.url), "utf8");
  const written = (fn: string) => {
    const body = source.slice(source.indexOf(`async fn ${fn}`));
    return [...body.slice(0, body.indexOf("attribute_not_exists(approvalId)")).matchAll(/\.item\("([A-Za-z]+)"/g)].map((m) => m[1]);
  };
  const [record, message] = [written("claim_pending"), written("claim_message")];
  assert.ok(record.includes("audience") && record.includes("proposal") && message.includes("emailStatus"), `${record} ${message}`);
  assert.deepEqual(new Set([...record, ...message]), new Set(PENDING_APPROVAL_ATTRIBUTES));
  const pending = record;
  assert.equal(await write("dynamodb:PutItem", record), "Allowed");
  assert.equal(await write("dynamodb:PutItem", message), "Allowed");
  // What it changes later: the task token the approval map's wait attaches (attach_task), a message's status
  // (mark_message, claim_message), where Slack asked it (mark_slack_message), the owner's notice.
  for (const update of [["approvalId", "taskToken"], ["approvalId", "emailStatus"], ["approvalId", "slackMessage"], ["approvalId", "ownerNotice"]]) {
    assert.equal(await write("dynamodb:UpdateItem", update), "Allowed", update.join());
  }
  // Never a decision, and never who may decide once a record exists.
  for (const forged of ["decision", "approver", "decidedAt", "decidedVia", "state", "audience"]) {
    if (forged !== "audience") {
      assert.equal(await write("dynamodb:PutItem", [...pending, forged === "state" ? "lateAnswer" : forged]), "ImplicitlyDenied", forged);
    }
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

/** Every role of the stack's functions, by function description. */
function functionRoles(template: ReturnType<typeof synth>["template"]): string[] {
  return Object.values(template.findResources("AWS::Lambda::Function"))
    .filter((f) => f.Properties.Handler === "bootstrap")
    .map((f) => String(f.Properties.Description));
}

test("finding 3: who may decide lives where no function can write it (the request step's environment)", async () => {
  const routing = JSON.stringify({ routes: [{ ou: "ou-ab12-workload1", approvers: ["workloads@example.com"] }], default: ["ops@example.com"] });
  for (const context of [{}, { accounts: "organization", organizationOus: "ou-ab12-workload1", memberStackSetTargets: "ou-ab12-workload1", approvalRouting: routing }]) {
    const { template } = synth(context);
    const requestFunction = `arn:aws:lambda:${REGION}:${ACCOUNT}:function:finops-request-approval`;
    const wrong: string[] = [];
    for (const description of functionRoles(template)) {
      const policies = rolePolicies(template, description);
      for (const action of ["lambda:UpdateFunctionConfiguration", "lambda:UpdateFunctionCode", "lambda:PublishVersion", "lambda:CreateAlias", "lambda:UpdateAlias"]) {
        const result = await runSimulation(
          {
            identityPolicies: policies as never,
            serviceControlPolicies: [],
            resourceControlPolicies: [],
            request: { action, principal: `arn:aws:iam::${ACCOUNT}:role/${description.replace(/ /g, "-")}`, resource: { resource: requestFunction, accountId: ACCOUNT }, contextVariables: {} },
          },
          {},
        );
        if (result.resultType === "error") throw new Error(JSON.stringify(result.errors).slice(0, 300));
        if (result.overallResult === "Allowed") wrong.push(`${description} may ${action}`);
      }
    }
    assert.ok(functionRoles(template).length >= 11, "every function's role was asked");
    assert.deepEqual(wrong, [], JSON.stringify(context));
  }
});

test("finding 7: the hub's roles assume member roles only by their one name, and only inside the organization or the listed accounts", async () => {
  // The member role trusts the hub's role (the StackSet's trust policy): what IAM then asks is the hub's own policy.
  const principal = `arn:aws:iam::${ACCOUNT}:role/finops-actions`;
  const trust = { Version: "2012-10-17", Statement: [{ Effect: "Allow", Principal: { AWS: principal }, Action: "sts:AssumeRole" }] };
  const assume = async (policies: Policies, role: string, account: string, context: Record<string, string>) => {
    const result = await runSimulation(
      {
        identityPolicies: policies as never,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        resourcePolicy: trust,
        request: { action: "sts:AssumeRole", principal: `arn:aws:iam::${ACCOUNT}:role/finops-actions`, resource: { resource: `arn:aws:iam::${account}:role/${role}`, accountId: account }, contextVariables: context },
      },
      {},
    );
    if (result.resultType === "error") throw new Error(JSON.stringify(result.errors).slice(0, 300));
    return result.overallResult;
  };
  const org = synth({ accounts: "organization", memberStackSetTargets: "r-ab12" }).template;
  const inside = { "aws:PrincipalOrgID": "o-finops12345", "aws:ResourceOrgID": "o-finops12345", "aws:ResourceAccount": "111111111111" };
  const outside = { "aws:PrincipalOrgID": "o-finops12345", "aws:ResourceOrgID": "o-someoneelse", "aws:ResourceAccount": "999988887777" };
  for (const [description, role] of [["finops-agent actions", "finops-agent-actions"], ["finops-agent scan-account", "finops-agent-read-only"]]) {
    const policies = rolePolicies(org, description);
    assert.equal(await assume(policies, role, "111111111111", inside), "Allowed", description);
    assert.notEqual(await assume(policies, role, "999988887777", outside), "Allowed", `${description}: another organization's account`);
    assert.notEqual(await assume(policies, "OrganizationAccountAccessRole", "111111111111", inside), "Allowed", `${description}: another role`);
  }
  assert.notEqual(await assume(rolePolicies(org, "finops-agent actions"), "finops-agent-read-only", "111111111111", inside), "Allowed", "the actions role acts, it does not read through the detection role");
  const listed = synth({ accounts: "111111111111,222222222222", memberStackSetTargets: "r-ab12" }).template;
  const actions = rolePolicies(listed, "finops-agent actions");
  assert.equal(await assume(actions, "finops-agent-actions", "222222222222", { "aws:ResourceAccount": "222222222222" }), "Allowed");
  assert.notEqual(await assume(actions, "finops-agent-actions", "333333333333", { "aws:ResourceAccount": "333333333333" }), "Allowed", "an account the deployment does not list");
});

test("finding 5: only the configured recipients can ever be subscribed to the report topic", async () => {
  const { template } = synth({ reportRecipients: "finops-team@example.com" });
  const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Record<string, unknown> }>;
  const topicPolicy = Object.values(resources).find((r) => r.Type === "AWS::SNS::TopicPolicy" && JSON.stringify(r.Properties.PolicyDocument).includes("SubscribeOnlyTheConfiguredReportRecipients"));
  assert.ok(topicPolicy, "report topic policy");
  const topicId = ((topicPolicy.Properties.Topics as { Ref: string }[])[0]).Ref;
  const topic = `arn:aws:sns:${REGION}:${ACCOUNT}:reports`;
  const document = JSON.parse(JSON.stringify(topicPolicy.Properties.PolicyDocument).replaceAll(JSON.stringify({ Ref: topicId }), JSON.stringify(topic)));
  const admin = [{ name: "admin", policy: { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "sns:*", Resource: "*" }] } }];
  const subscribe = async (protocol: string, endpoint: string) => {
    const result = await runSimulation(
      {
        identityPolicies: admin as never,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        resourcePolicy: document,
        request: { action: "sns:Subscribe", principal: `arn:aws:iam::${ACCOUNT}:role/admin`, resource: { resource: topic, accountId: ACCOUNT }, contextVariables: { "sns:Protocol": protocol, "sns:Endpoint": endpoint } },
      },
      {},
    );
    assert.notEqual(result.resultType, "error", JSON.stringify(result));
    return (result as { overallResult: string }).overallResult;
  };
  assert.equal(await subscribe("email", "finops-team@example.com"), "Allowed");
  assert.equal(await subscribe("email", "mallory@evil.example"), "ExplicitlyDenied");
  assert.equal(await subscribe("sqs", `arn:aws:sqs:${REGION}:${ACCOUNT}:tap`), "ExplicitlyDenied");
});
