// How the reasoning step addresses its model on Bedrock. Current Claude models are served on demand only through
// cross-region inference profiles: `<geography>.<base model id>`, where the geography's profile keeps requests in
// that part of the world and `global` may route them to any commercial region. The deployment's region decides the
// geography (`auto`); `-c inferenceProfile=` picks another, or `none` invokes the base model in the region itself.
import { Aws, CfnMapping, Fn, Stack, Token, aws_iam as iam } from "aws-cdk-lib";
import type { Construct } from "constructs";

/** The geographies Bedrock names its system-defined cross-region profiles after (the profile id's prefix). */
export const GEOGRAPHIES = ["us", "eu", "apac", "jp", "au", "us-gov", "global"] as const;
export type Geography = (typeof GEOGRAPHIES)[number];

export const INFERENCE_PROFILES = ["auto", "none", ...GEOGRAPHIES] as const;
export type InferenceProfileChoice = (typeof INFERENCE_PROFILES)[number];

/** The commercial and GovCloud regions with Bedrock as of 2026-11, for the region-to-geography table. A region
 * missing here fails the deployment on the lookup; `-c inferenceProfile=global` (or the geography) avoids it. */
export const BEDROCK_REGIONS = [
  "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "ca-west-1", "mx-central-1", "sa-east-1",
  "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
  "il-central-1", "me-south-1", "me-central-1", "af-south-1",
  "ap-south-1", "ap-south-2", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
  "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-7",
  "us-gov-west-1", "us-gov-east-1",
] as const;

/** The geography whose profile serves a region: its own where Bedrock has one (Japan and Australia have theirs),
 * `global` where the region belongs to no geography with a profile. */
export function geographyOf(region: string): Geography {
  if (region.startsWith("us-gov-")) return "us-gov";
  if (region.startsWith("us-")) return "us";
  if (region.startsWith("eu-")) return "eu";
  if (region === "ap-northeast-1" || region === "ap-northeast-3") return "jp";
  if (region === "ap-southeast-2" || region === "ap-southeast-4") return "au";
  if (region.startsWith("ap-")) return "apac";
  return "global";
}

/** The model as the reasoning step calls it and what its role must be allowed to invoke. */
export interface ModelAddress {
  /** What goes into Converse's modelId (or the agent's foundationModel): a profile id or the base model id. */
  invokeId: string;
  /** bedrock:InvokeModel resources: the profile in this account and region, and the base model in every region the
   * profile may route to (the global profile's destinations include region-less model ARNs). */
  resources: string[];
}

/** Resolves the choice in a stack: with a region known at synth time it is a plain string; in an environment-agnostic
 * stack the geography comes from a CloudFormation mapping on AWS::Region. */
export function modelAddress(scope: Construct, modelId: string, choice: InferenceProfileChoice): ModelAddress {
  const stack = Stack.of(scope);
  const modelArn = (region: string) => stack.formatArn({ service: "bedrock", region, account: "", resource: "foundation-model", resourceName: modelId });
  if (choice === "none") return { invokeId: modelId, resources: [modelArn(stack.region)] };
  let geography: string;
  if (choice !== "auto") geography = choice;
  else if (!Token.isUnresolved(stack.region)) geography = geographyOf(stack.region);
  else geography = inferenceGeographies(stack).findInMap(Aws.REGION, "geography");
  const invokeId = Token.isUnresolved(geography) ? Fn.join(".", [geography, modelId]) : `${geography}.${modelId}`;
  const profileArn = stack.formatArn({ service: "bedrock", resource: "inference-profile", resourceName: invokeId });
  return { invokeId, resources: [profileArn, modelArn("*"), modelArn("")] };
}

/** One mapping per stack: region -> geography, generated from `geographyOf`. */
function inferenceGeographies(stack: Stack): CfnMapping {
  const id = "InferenceGeographies";
  const existing = stack.node.tryFindChild(id);
  if (existing) return existing as CfnMapping;
  return new CfnMapping(stack, id, { mapping: Object.fromEntries(BEDROCK_REGIONS.map((r) => [r, { geography: geographyOf(r) }])) });
}

/** The statement that lets a role invoke the model the way it is addressed, and nothing else. */
export function invokeModelStatement(address: ModelAddress): iam.PolicyStatement {
  return new iam.PolicyStatement({ sid: "InvokeTheConfiguredModel", actions: ["bedrock:InvokeModel"], resources: address.resources });
}
