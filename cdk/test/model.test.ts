// The reasoning backend's model: a current model through the inference profile of the deployment's geography by
// default, the IAM that lets exactly that profile and its model be invoked (checked by an IAM simulator), the
// agent told what the Converse backend is told, and the construct layout leaving stateful resources where they were.
import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { runSimulation } from "@cloud-copilot/iam-simulate";
import { ConfigError } from "../lib/config.ts";
import { BEDROCK_REGIONS, geographyOf } from "../lib/inference-profile.ts";
import { AGENT_INSTRUCTION_FILE } from "../lib/reasoning-backend.ts";
import { ACCOUNT, defaults, rolePolicies, synth } from "./support.ts";

const BASE = String(defaults.modelId);

function reasoningVariables(template: ReturnType<typeof synth>["template"]) {
  const fn = Object.values(template.findResources("AWS::Lambda::Function")).find((f) => f.Properties.Description === "finops-agent reasoning");
  return fn!.Properties.Environment.Variables as Record<string, unknown>;
}

async function allowed(policies: { name: string; policy: unknown }[], resource: string): Promise<boolean> {
  const result = await runSimulation(
    {
      identityPolicies: policies as never,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      request: { action: "bedrock:InvokeModel", principal: `arn:aws:iam::${ACCOUNT}:role/finops-reasoning`, resource: { resource, accountId: ACCOUNT }, contextVariables: {} },
    },
    {},
  );
  if (result.resultType === "error") throw new Error(JSON.stringify(result.errors).slice(0, 300));
  return result.overallResult === "Allowed";
}

test("a new deployment reasons with Converse on a current model, not with Agents (closed to new customers)", () => {
  assert.equal(defaults.reasoner, "converse");
  assert.match(BASE, /^anthropic\.claude-sonnet-5-5$/);
  assert.equal(defaults.inferenceProfile, "auto");
});

test("each region gets the inference profile of its geography", () => {
  const expected: Record<string, string> = {
    "us-east-1": "us", "us-west-2": "us", "eu-west-1": "eu", "eu-central-2": "eu", "ap-northeast-1": "jp", "ap-northeast-3": "jp",
    "ap-southeast-2": "au", "ap-southeast-4": "au", "ap-southeast-1": "apac", "ap-south-1": "apac", "ap-northeast-2": "apac",
    "us-gov-west-1": "us-gov", "sa-east-1": "global", "ca-central-1": "global", "me-central-1": "global", "af-south-1": "global",
  };
  for (const [region, geography] of Object.entries(expected)) assert.equal(geographyOf(region), geography, region);
  for (const region of ["us-east-1", "eu-west-1", "ap-southeast-2"]) {
    const { template } = synth({}, { account: ACCOUNT, region });
    assert.equal(reasoningVariables(template).FINOPS_MODEL_ID, `${geographyOf(region)}.${BASE}`, region);
  }
});

test("an environment-agnostic stack looks its geography up from the region it is deployed in", () => {
  const { template } = synth();
  const mappings = template.toJSON().Mappings.InferenceGeographies as Record<string, { geography: string }>;
  assert.deepEqual(Object.keys(mappings).sort(), [...BEDROCK_REGIONS].sort());
  for (const region of BEDROCK_REGIONS) assert.equal(mappings[region].geography, geographyOf(region), region);
  assert.deepEqual(reasoningVariables(template).FINOPS_MODEL_ID, { "Fn::Join": [".", [{ "Fn::FindInMap": ["InferenceGeographies", { Ref: "AWS::Region" }, "geography"] }, BASE]] });
});

test("the reasoning role may invoke the configured profile and its model in any region, nothing else", async () => {
  const region = "eu-west-1";
  const { template } = synth({}, { account: ACCOUNT, region });
  const policies = rolePolicies(template, "finops-agent reasoning");
  const profile = (id: string) => `arn:aws:bedrock:${region}:${ACCOUNT}:inference-profile/${id}`;
  assert.ok(await allowed(policies, profile(`eu.${BASE}`)), "the profile");
  for (const destination of ["eu-west-1", "eu-central-1", "eu-north-1"]) {
    assert.ok(await allowed(policies, `arn:aws:bedrock:${destination}::foundation-model/${BASE}`), destination);
  }
  assert.ok(!(await allowed(policies, profile(`us.${BASE}`))), "another geography's profile");
  assert.ok(!(await allowed(policies, profile("eu.anthropic.claude-opus-5-5"))), "another model's profile");
  assert.ok(!(await allowed(policies, `arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-opus-5-5`)), "another model");

  const global = synth({ inferenceProfile: "global" }, { account: ACCOUNT, region }).template;
  assert.equal(reasoningVariables(global).FINOPS_MODEL_ID, `global.${BASE}`);
  const globalPolicies = rolePolicies(global, "finops-agent reasoning");
  assert.ok(await allowed(globalPolicies, profile(`global.${BASE}`)));
  // The global profile also needs the region-less model ARN (the simulator does not know that form; it is listed).
  assert.ok(JSON.stringify(globalPolicies).includes(`"arn:aws:bedrock:::foundation-model/${BASE}"`), "the global profile's region-less model ARN");

  const direct = synth({ inferenceProfile: "none", modelId: "amazon.nova-pro-v1:0" }, { account: ACCOUNT, region }).template;
  assert.equal(reasoningVariables(direct).FINOPS_MODEL_ID, "amazon.nova-pro-v1:0");
  const directPolicies = rolePolicies(direct, "finops-agent reasoning");
  assert.ok(await allowed(directPolicies, `arn:aws:bedrock:${region}::foundation-model/amazon.nova-pro-v1:0`));
  assert.ok(!(await allowed(directPolicies, `arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0`)), "in-region only without a profile");
});

test("rules reasoning grants no Bedrock at all; a prefixed model id is refused with the way to say it", () => {
  const { template } = synth({ reasoner: "rules" });
  const all = JSON.stringify(rolePolicies(template, "finops-agent reasoning"));
  assert.ok(!all.includes("bedrock:"), all.slice(0, 200));
  assert.equal(reasoningVariables(template).FINOPS_MODEL_ID, undefined);
  assert.throws(() => synth({ modelId: `us.${BASE}` }), (e: Error) => e instanceof ConfigError && e.message.includes("-c inferenceProfile=us") && e.message.includes(BASE));
  assert.throws(() => synth({ inferenceProfile: "mars" }), (e: Error) => e instanceof ConfigError && e.message.includes("inferenceProfile"));
  assert.throws(() => synth({ modelId: "Claude Sonnet" }), (e: Error) => e instanceof ConfigError && e.message.includes("base model id"));
});

test("the agent uses the profile and the instruction file the Converse backend compiles in", () => {
  const { template } = synth({ reasoner: "agent" }, { account: ACCOUNT, region: "ap-northeast-1" });
  const [agent] = Object.values(template.findResources("AWS::Bedrock::Agent"));
  assert.equal(agent.Properties.FoundationModel, `jp.${BASE}`);
  assert.equal(agent.Properties.Instruction, readFileSync(AGENT_INSTRUCTION_FILE, "utf8").trim());
  assert.ok(agent.Properties.Instruction.includes("untrusted"), "tags are data");
  const role = Object.entries(template.findResources("AWS::IAM::Policy")).find(([id]) => id.includes("AgentRole"));
  assert.ok(JSON.stringify(role?.[1]).includes(`inference-profile/jp.${BASE}`));
});

test("stateful resources keep the logical ids they had before the stack was split into constructs", () => {
  const { template } = synth();
  const ids = Object.keys(template.toJSON().Resources);
  for (const id of ["RunBucketCA76775A", "Approvals8537C562", "LedgerB7379752", "TopicKeyB2E0C9CB", "ApprovalRequests1614B227", "Reports65402A0A", "ApprovalSigningKeyC666AA9C", "StateMachine2E01A3A5", "ApprovalRequestsanaexamplecom455180E0", "Reportsanaexamplecom928829DC"]) {
    assert.ok(ids.includes(id), `${id} is still there (a new logical id would replace it: a new table, a topic whose approvers must confirm again)`);
  }
});
