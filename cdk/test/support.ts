// Shared by the CDK tests: synthesize the stack with test context, and read a role's policies out of the template
// with CloudFormation's intrinsic functions resolved, as IAM would see them in account 123456789012.
import { readFileSync } from "node:fs";
import { App } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { FinopsStack, readConfig } from "../lib/finops-stack.ts";

export const ACCOUNT = "123456789012";
export const REGION = "ap-southeast-2";

export const defaults = JSON.parse(readFileSync(new URL("../cdk.json", import.meta.url), "utf8")).context as Record<string, unknown>;

export function synth(overrides: Record<string, unknown> = {}, env?: { account: string; region: string }) {
  const context = { ...defaults, assetsDir: "test/fixtures/lambda", approvers: "ana@example.com,raj@example.com", ...overrides };
  const app = new App({ context });
  const stack = new FinopsStack(app, "FinopsAgent", { config: readConfig((k) => app.node.tryGetContext(k)), env });
  return { app, stack, template: Template.fromStack(stack) };
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Resolves Ref, Fn::Join, Fn::GetAtt and Fn::Select the way CloudFormation would in the test account. Other
 * resources' attributes become recognisable placeholders. */
export function resolve(value: Json, resources: Record<string, { Type: string }>): Json {
  if (Array.isArray(value)) return value.map((v) => resolve(v, resources));
  if (value === null || typeof value !== "object") return value;
  if ("Ref" in value) {
    const ref = value.Ref as string;
    const pseudo: Record<string, string> = { "AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::URLSuffix": "amazonaws.com" };
    if (ref in pseudo) return pseudo[ref];
    const type = resources[ref]?.Type ?? "";
    if (type === "AWS::SNS::Topic") return `arn:aws:sns:${REGION}:${ACCOUNT}:${ref}`;
    if (type === "AWS::IAM::Role") return ref;
    return `ref-${ref}`;
  }
  if ("Fn::Join" in value) {
    const [sep, parts] = value["Fn::Join"] as [string, Json[]];
    return parts.map((p) => resolve(p, resources)).join(sep);
  }
  if ("Fn::GetAtt" in value) {
    const [id, attr] = value["Fn::GetAtt"] as [string, string];
    const type = resources[id]?.Type ?? "";
    if (attr === "Arn" && type === "AWS::DynamoDB::Table") return `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${id}`;
    if (attr === "Arn" && type === "AWS::KMS::Key") return `arn:aws:kms:${REGION}:${ACCOUNT}:key/${id}`;
    if (attr === "Arn" && type === "AWS::S3::Bucket") return `arn:aws:s3:::${id.toLowerCase()}`;
    if (attr === "Arn" && type === "AWS::Lambda::Function") return `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${id}`;
    return `arn:aws:iam::${ACCOUNT}:role/${id}-${attr}`;
  }
  if ("Fn::Select" in value) {
    const [index, list] = value["Fn::Select"] as [number, Json];
    return (resolve(list, resources) as Json[])[index];
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v, resources)]));
}

/** Every policy document attached to a function's role (inline and managed), resolved. */
export function rolePolicies(template: Template, functionDescription: string): { name: string; policy: Json }[] {
  const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Record<string, Json> }>;
  const fn = Object.values(resources).find((r) => r.Type === "AWS::Lambda::Function" && r.Properties.Description === functionDescription);
  if (!fn) throw new Error(`no function ${functionDescription}`);
  const roleId = (fn.Properties.Role as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"][0];
  const attached = (r: { Properties: Record<string, Json> }) => ((r.Properties.Roles as Json[]) ?? []).some((ref) => (ref as { Ref?: string }).Ref === roleId);
  return Object.entries(resources)
    .filter(([, r]) => (r.Type === "AWS::IAM::Policy" || r.Type === "AWS::IAM::ManagedPolicy") && attached(r))
    .map(([id, r]) => ({ name: id, policy: resolve(r.Properties.PolicyDocument, resources) }));
}

/** The statements of a function's role, flattened. */
export function roleStatements(template: Template, functionDescription: string): Record<string, Json>[] {
  return rolePolicies(template, functionDescription).flatMap((p) => (p.policy as { Statement: Record<string, Json>[] }).Statement);
}

/** Every action a role's Allow statements grant. */
export function allowedActions(template: Template, functionDescription: string): Set<string> {
  return new Set(
    roleStatements(template, functionDescription)
      .filter((s) => s.Effect === "Allow")
      .flatMap((s) => [s.Action].flat() as string[]),
  );
}
