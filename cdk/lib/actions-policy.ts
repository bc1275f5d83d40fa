// The actions role: what the acting step calls, and the guard that refuses production, protected and
// instance-store instances whatever the code does (production-guard.ts; checked against the policy step's own
// rule by an IAM simulator in test/iam-guard.test.ts).
import { Stack, aws_iam as iam, aws_lambda as lambda } from "aws-cdk-lib";
import { Construct } from "constructs";
import { ConfigError, type FinopsConfig } from "./config.ts";
import { acknowledge } from "./nag.ts";
import { allowListedStatements, instanceStorageStatement, MANAGED_POLICY_LIMIT, policySize, tagGuardStatements } from "./production-guard.ts";

/** The only calls that change anything in the account. */
export const ACT_ON = ["ec2:CreateSnapshots", "ec2:CreateTags", "ec2:StopInstances"];

export class ActionsPolicy extends Construct {
  constructor(scope: Construct, id: string, props: { config: FinopsConfig; actions: lambda.Function }) {
    super(scope, id);
    const { config, actions } = props;
    const stack = Stack.of(this);
    const instances = stack.formatArn({ service: "ec2", region: "*", resource: "instance", resourceName: "*" });
    const volumes = stack.formatArn({ service: "ec2", region: "*", resource: "volume", resourceName: "*" });
    const snapshots = stack.formatArn({ service: "ec2", region: "*", account: "", resource: "snapshot", resourceName: "*" });
    // Re-reading the instance and re-measuring it before acting.
    actions.addToRolePolicy(new iam.PolicyStatement({ actions: ["ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeSnapshots", "ec2:DescribeInstanceTypes"], resources: ["*"] }));
    actions.addToRolePolicy(new iam.PolicyStatement({ actions: ["cloudwatch:GetMetricData", "cloudwatch:ListMetrics"], resources: ["*"] }));
    actions.addToRolePolicy(new iam.PolicyStatement({ sid: "SnapshotVolumes", actions: ["ec2:CreateSnapshots", "ec2:CreateTags"], resources: [volumes, snapshots] }));
    const rules = {
      environmentTagKeys: config.protectedTagKeys,
      productionValues: config.productionValues,
      protectTagKey: "finops:protect",
      actOnlyOnEnvironments: config.actOnlyOnEnvironments,
    };
    if (config.actOnlyOnEnvironments.length > 0) {
      for (const statement of allowListedStatements(rules, ACT_ON, instances)) actions.addToRolePolicy(statement);
    } else {
      actions.addToRolePolicy(new iam.PolicyStatement({ sid: "ActOnInstances", actions: ACT_ON, resources: [instances] }));
    }
    for (const arn of ["arn:<AWS::Partition>:ec2:*:<AWS::AccountId>:instance/*", "arn:<AWS::Partition>:ec2:*:<AWS::AccountId>:volume/*", "arn:<AWS::Partition>:ec2:*::snapshot/*"]) {
      acknowledge(actions, `AwsSolutions-IAM5[Resource::${arn}]`, "Idle instances are found at run time in any configured region; the explicit Deny statements of the guard policies and the policy step bound what may be stopped.");
    }
    // Each guard in a managed policy of its own: a role's inline policies share one size limit, managed ones do not.
    const guards = [
      ...tagGuardStatements(rules, ACT_ON, instances).map((statement) => ({ id: `Guard${statement.sid}`, statements: [statement] })),
      { id: "GuardInstanceStorage", statements: [instanceStorageStatement(instances)] },
    ];
    for (const guard of guards) {
      const policy = new iam.ManagedPolicy(this, guard.id, {
        description: "finops-agent: the actions role may never act on these instances (the policy step's rule, enforced again by IAM)",
        statements: guard.statements,
        roles: [actions.role!],
      });
      const size = policySize(stack.resolve(policy.document.toJSON())).chars;
      if (size > MANAGED_POLICY_LIMIT) {
        throw new ConfigError(`context productionValues/protectedTagKeys: the IAM guard ${guard.id} would be ${size} characters, over IAM's ${MANAGED_POLICY_LIMIT}; use fewer or shorter values`);
      }
    }
  }
}
