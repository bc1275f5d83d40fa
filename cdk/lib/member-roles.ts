// The member accounts' two roles, deployed by a service-managed CloudFormation StackSet with automatic deployment to
// the target OUs: an account created or moved there later gets them without anyone doing anything.
// - the read-only detection role (describe, list metrics, get metric data, describe instance types), trusting only the
//   hub's functions that read members: finops-scan-account, and the model's read-only tools (finops-reasoning's
//   Converse tools, finops-agent-tools) which read a member's instance where it is;
// - the actions role (snapshot, tag, stop), trusting only the hub's finops-actions role, under the same guard as the
//   hub's actions role: the production, protect and instance-storage Deny statements of production-guard.ts.
// Role names come from the context and say what they are (finops-agent-read-only, finops-agent-actions).
import { CfnStackSet, Stack, aws_iam as iam, aws_lambda as lambda } from "aws-cdk-lib";
import { Construct } from "constructs";
import { ACT_ON, ACT_ON_RESOURCES, detachStatements, GUARDED_INSTANCE_ACTIONS, GUARDED_RESOURCE_ACTIONS, undoStatements } from "./actions-policy.ts";
import type { FinopsConfig, OrganizationSettings } from "./config.ts";
import { allowListedStatements, instanceStorageStatement, tagGuardStatements } from "./production-guard.ts";

/** What the steps that list the other resources (Elastic IPs, NAT gateways, load balancers) read besides the fleet. */
export const OTHER_RESOURCE_READ_ACTIONS = ["ec2:DescribeAddresses", "ec2:DescribeNatGateways", "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTags", "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth"];

/** What the detection role may call in a member account: the hub's detection steps' reads, nothing that changes. */
export const MEMBER_READ_ACTIONS = ["ec2:DescribeInstances", "ec2:DescribeVolumes", ...OTHER_RESOURCE_READ_ACTIONS, "ec2:DescribeInstanceTypes", "cloudwatch:GetMetricData", "cloudwatch:ListMetrics"];

/** A placeholder for the member's own instance ARN pattern, replaced by an Fn::Sub the member stack resolves. */
const INSTANCES = "__MEMBER_INSTANCES__";
const VOLUMES = "__MEMBER_VOLUMES__";
const SNAPSHOTS = "__MEMBER_SNAPSHOTS__";
const ADDRESSES = "__MEMBER_ADDRESSES__";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function withMemberArns(value: Json): Json {
  // Fn::Join rather than Fn::Sub: the member stack resolves these, and the hub's template (which carries this one as
  // a string) must not hold "${...}" that linters read as the hub's own parameters.
  const partition = { Ref: "AWS::Partition" };
  const account = { Ref: "AWS::AccountId" };
  if (value === INSTANCES) return { "Fn::Join": ["", ["arn:", partition, ":ec2:*:", account, ":instance/*"]] };
  if (value === VOLUMES) return { "Fn::Join": ["", ["arn:", partition, ":ec2:*:", account, ":volume/*"]] };
  if (value === SNAPSHOTS) return { "Fn::Join": ["", ["arn:", partition, ":ec2:*::snapshot/*"]] };
  if (value === ADDRESSES) return { "Fn::Join": ["", ["arn:", partition, ":ec2:*:", account, ":elastic-ip/*"]] };
  if (Array.isArray(value)) return value.map(withMemberArns);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withMemberArns(v)]));
  return value;
}

const document = (statements: iam.PolicyStatement[]): Json =>
  withMemberArns({ Version: "2012-10-17", Statement: statements.map((s) => s.toStatementJson() as Json) });

/** The member template: two roles and the actions role's guard policies. `readerRoleArns`/`actionsRoleArn` are the
 * hub functions' roles (tokens, resolved into the template body by the hub stack). */
export function memberTemplate(config: FinopsConfig, org: OrganizationSettings, readerRoleArns: string[], actionsRoleArn: string): Json {
  const trust = (principal: string | string[]): Json => ({
    Version: "2012-10-17",
    Statement: [{ Effect: "Allow", Principal: { AWS: principal }, Action: "sts:AssumeRole" }],
  });
  const rules = {
    environmentTagKeys: config.protectedTagKeys,
    productionValues: config.productionValues,
    protectTagKey: "finops:protect",
    actOnlyOnEnvironments: config.actOnlyOnEnvironments,
  };
  const act =
    config.actOnlyOnEnvironments.length > 0
      ? [...allowListedStatements(rules, ACT_ON, INSTANCES), ...allowListedStatements(rules, ACT_ON_RESOURCES, [VOLUMES, ADDRESSES], "Resources")]
      : [
          new iam.PolicyStatement({ sid: "ActOnInstances", actions: ACT_ON, resources: [INSTANCES] }),
          new iam.PolicyStatement({ sid: "ActOnUnusedResources", actions: ACT_ON_RESOURCES, resources: [VOLUMES, ADDRESSES] }),
        ];
  // As in the hub: the same tag rules on instances and on volumes and addresses, one managed policy per rule.
  const onResources = tagGuardStatements(rules, GUARDED_RESOURCE_ACTIONS, [VOLUMES, ADDRESSES, SNAPSHOTS], "Resources");
  const guards = [...tagGuardStatements(rules, GUARDED_INSTANCE_ACTIONS, INSTANCES).map((statement, i) => [statement, onResources[i]]), [instanceStorageStatement(INSTANCES)]];
  const resources: Record<string, Json> = {
    ReadOnlyRole: {
      Type: "AWS::IAM::Role",
      Properties: {
        RoleName: org.readRole,
        Description: "finops-agent detection: reads instances, volumes, instance types and metrics; changes nothing",
        AssumeRolePolicyDocument: trust(readerRoleArns),
        Policies: [{ PolicyName: "read-fleet-and-metrics", PolicyDocument: document([new iam.PolicyStatement({ actions: MEMBER_READ_ACTIONS, resources: ["*"] })]) }],
      },
    },
    ActionsRole: {
      Type: "AWS::IAM::Role",
      Properties: {
        RoleName: org.actionsRole,
        Description: "finops-agent actions: snapshot, tag and stop, delete or release what a person approved; never production, protected or instance-store instances",
        AssumeRolePolicyDocument: trust(actionsRoleArn),
        Policies: [
          {
            PolicyName: "act-on-approved-instances",
            PolicyDocument: document([
              new iam.PolicyStatement({ actions: ["ec2:DescribeInstances", "ec2:DescribeInstanceAttribute", "ec2:DescribeVolumes", "ec2:DescribeSnapshots", "ec2:DescribeInstanceTypes", "ec2:DescribeAddresses", "cloudwatch:GetMetricData", "cloudwatch:ListMetrics"], resources: ["*"] }),
              new iam.PolicyStatement({ sid: "SnapshotVolumes", actions: ["ec2:CreateSnapshots", "ec2:CreateTags"], resources: [VOLUMES, SNAPSHOTS] }),
              new iam.PolicyStatement({ sid: "SnapshotBeforeDelete", actions: ["ec2:CreateSnapshot"], resources: [SNAPSHOTS] }),
              ...undoStatements(INSTANCES, VOLUMES, SNAPSHOTS, rules),
              ...(config.deleteStoppedInstanceVolumes ? detachStatements(rules, INSTANCES, VOLUMES) : []),
              ...act,
            ]),
          },
        ],
      },
    },
  };
  // Each guard in a managed policy of its own, as in the hub (a role's inline policies share one size limit).
  guards.forEach((statements, i) => {
    resources[`Guard${statements[0].sid ?? i}`] = {
      Type: "AWS::IAM::ManagedPolicy",
      Properties: {
        Description: "finops-agent: the actions role may never act on these instances, volumes and addresses (the policy step's rule, enforced again by IAM)",
        PolicyDocument: document(statements),
        Roles: [{ Ref: "ActionsRole" }],
      },
    };
  });
  return { AWSTemplateFormatVersion: "2010-09-09", Description: "finops-agent member roles (deployed by the hub's StackSet)", Resources: resources };
}

export interface MemberRolesProps {
  config: FinopsConfig;
  organization: OrganizationSettings;
  /** The hub functions that read members through the detection role. */
  readers: lambda.Function[];
  actions: lambda.Function;
}

/** The StackSet: service-managed (Organizations creates its execution roles), deployed to the target OUs and to every
 * account that joins them; one stack instance per account, in the hub's region (IAM roles are global). */
export class MemberRoles extends Construct {
  readonly stackSet: CfnStackSet;

  constructor(scope: Construct, id: string, props: MemberRolesProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const { organization } = props;
    const template = memberTemplate(props.config, organization, props.readers.map((fn) => fn.role!.roleArn), props.actions.role!.roleArn);
    this.stackSet = new CfnStackSet(this, "StackSet", {
      stackSetName: `${stack.stackName}-member-roles`,
      description: "finops-agent: the read-only detection role and the guarded actions role in every member account",
      permissionModel: "SERVICE_MANAGED",
      autoDeployment: { enabled: true, retainStacksOnAccountRemoval: false },
      capabilities: ["CAPABILITY_NAMED_IAM"],
      managedExecution: { Active: true },
      // One account that cannot take the roles (an SCP, a name already taken) must not keep them from the others:
      // the run reports that account as not scanned.
      operationPreferences: { failureTolerancePercentage: 100, maxConcurrentPercentage: 100, regionConcurrencyType: "PARALLEL" },
      stackInstancesGroup: [{ regions: [stack.region], deploymentTargets: { organizationalUnitIds: organization.stackSetTargets } }],
      templateBody: stack.toJsonString(template),
    });
  }
}
