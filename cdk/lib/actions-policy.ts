// The actions role: what the acting step calls, and the guard that refuses production, protected and
// instance-store instances whatever the code does (production-guard.ts; checked against the policy step's own
// rule by an IAM simulator in test/iam-guard.test.ts).
import { Stack, aws_iam as iam, aws_lambda as lambda } from "aws-cdk-lib";
import { Construct } from "constructs";
import { ConfigError, type FinopsConfig } from "./config.ts";
import { acknowledge } from "./nag.ts";
import { allowListedStatements, instanceStorageStatement, MANAGED_POLICY_LIMIT, policySize, tagGuardStatements } from "./production-guard.ts";

/** The only calls that change an instance. */
export const ACT_ON = ["ec2:CreateSnapshots", "ec2:CreateTags", "ec2:StopInstances"];
/** The only calls that change an unattached volume (snapshot it, then delete it) or an unassociated Elastic IP (release
 * it); CreateTags records a snooze or a decision on them. Snapshots are never deleted: they are what recreates a volume. */
export const ACT_ON_RESOURCES = ["ec2:CreateSnapshot", "ec2:DeleteVolume", "ec2:ReleaseAddress", "ec2:CreateTags"];
/** What the guard refuses on a production or protected instance: its own calls, detaching its volumes (allowed
 * only where the deployment deletes long-stopped instances' volumes; denied on a production instance either way),
 * and starting it again (an undo of a stop, when someone has tagged it production or protected since). */
export const GUARDED_INSTANCE_ACTIONS = [...ACT_ON, "ec2:DetachVolume", "ec2:StartInstances"];
/** What the guard refuses on a production or protected volume or address (tagging one stays possible), and
 * recreating a volume from a snapshot someone has tagged production or protected since (an undo of a deletion). */
export const GUARDED_RESOURCE_ACTIONS = ["ec2:CreateSnapshot", "ec2:DeleteVolume", "ec2:ReleaseAddress", "ec2:CreateVolume"];

/** One-click undo, and only that: StartInstances on an instance this deployment stopped (still tagged so; in
 * allow-list mode only in a listed environment, as every other call), and CreateVolume from a snapshot a run took
 * (tagged with its run id), the new volume tagged with the undo's id. The guard's Deny statements hold over both. */
export function undoStatements(instances: string, volumes: string, snapshots: string, rules?: Parameters<typeof allowListedStatements>[0]): iam.PolicyStatement[] {
  const stopped = { "aws:ResourceTag/finops:action": "stopped" };
  const allowed = rules?.actOnlyOnEnvironments ?? [];
  const starts =
    rules !== undefined && allowed.length > 0
      ? rules.environmentTagKeys.map(
          (key) =>
            new iam.PolicyStatement({
              sid: `UndoStopsOnlyListed${key.replace(/[^A-Za-z0-9]/g, "")}`,
              actions: ["ec2:StartInstances"],
              resources: [instances],
              conditions: { StringEquals: stopped, StringEqualsIgnoreCase: { [`ec2:ResourceTag/${key}`]: allowed } },
            }),
        )
      : [new iam.PolicyStatement({ sid: "UndoStopsOnly", actions: ["ec2:StartInstances"], resources: [instances], conditions: { StringEquals: stopped } })];
  return [
    ...starts,
    new iam.PolicyStatement({
      sid: "RecreateVolumesOnlyFromRunSnapshots",
      actions: ["ec2:CreateVolume"],
      resources: [snapshots],
      conditions: { Null: { "aws:ResourceTag/finops:run-id": "false" } },
    }),
    new iam.PolicyStatement({
      sid: "RecreatedVolumesCarryTheUndo",
      actions: ["ec2:CreateVolume"],
      resources: [volumes],
      conditions: { Null: { "aws:RequestTag/finops:undo-id": "false" } },
    }),
  ];
}

/** Deleting a long-stopped instance's volumes (context deleteStoppedInstanceVolumes): DetachVolume, on the instance
 * (by its tags: the guard's Deny, and in allow-list mode the allow-list) and on its volumes (DeleteVolume is then the
 * unattached volume's, under the volumes' guard). */
export function detachStatements(rules: Parameters<typeof allowListedStatements>[0], instances: string, volumes: string): iam.PolicyStatement[] {
  const onInstances = (rules.actOnlyOnEnvironments ?? []).length > 0
    ? allowListedStatements(rules, ["ec2:DetachVolume"], instances, "Detach")
    : [new iam.PolicyStatement({ sid: "DetachStoppedInstanceVolumes", actions: ["ec2:DetachVolume"], resources: [instances] })];
  return [...onInstances, new iam.PolicyStatement({ sid: "DetachTheirVolumes", actions: ["ec2:DetachVolume"], resources: [volumes] })];
}

export class ActionsPolicy extends Construct {
  constructor(scope: Construct, id: string, props: { config: FinopsConfig; actions: lambda.Function }) {
    super(scope, id);
    const { config, actions } = props;
    const stack = Stack.of(this);
    const instances = stack.formatArn({ service: "ec2", region: "*", resource: "instance", resourceName: "*" });
    const volumes = stack.formatArn({ service: "ec2", region: "*", resource: "volume", resourceName: "*" });
    const snapshots = stack.formatArn({ service: "ec2", region: "*", account: "", resource: "snapshot", resourceName: "*" });
    const addresses = stack.formatArn({ service: "ec2", region: "*", resource: "elastic-ip", resourceName: "*" });
    // Re-reading the instance, volume or address and re-measuring it before acting.
    actions.addToRolePolicy(new iam.PolicyStatement({ actions: ["ec2:DescribeInstances", "ec2:DescribeInstanceAttribute", "ec2:DescribeVolumes", "ec2:DescribeSnapshots", "ec2:DescribeInstanceTypes", "ec2:DescribeAddresses"], resources: ["*"] }));
    actions.addToRolePolicy(new iam.PolicyStatement({ actions: ["cloudwatch:GetMetricData", "cloudwatch:ListMetrics"], resources: ["*"] }));
    actions.addToRolePolicy(new iam.PolicyStatement({ sid: "SnapshotVolumes", actions: ["ec2:CreateSnapshots", "ec2:CreateTags"], resources: [volumes, snapshots] }));
    const rules = {
      environmentTagKeys: config.protectedTagKeys,
      productionValues: config.productionValues,
      protectTagKey: "finops:protect",
      actOnlyOnEnvironments: config.actOnlyOnEnvironments,
    };
    // The snapshot a volume's deletion waits for is created without a tag check (a new snapshot has no tags yet; the
    // volume it is taken of is checked by the guard).
    actions.addToRolePolicy(new iam.PolicyStatement({ sid: "SnapshotBeforeDelete", actions: ["ec2:CreateSnapshot"], resources: [snapshots] }));
    for (const statement of undoStatements(instances, volumes, snapshots, rules)) actions.addToRolePolicy(statement);
    if (config.actOnlyOnEnvironments.length > 0) {
      for (const statement of allowListedStatements(rules, ACT_ON, instances)) actions.addToRolePolicy(statement);
      for (const statement of allowListedStatements(rules, ACT_ON_RESOURCES, [volumes, addresses], "Resources")) actions.addToRolePolicy(statement);
    } else {
      actions.addToRolePolicy(new iam.PolicyStatement({ sid: "ActOnInstances", actions: ACT_ON, resources: [instances] }));
      actions.addToRolePolicy(new iam.PolicyStatement({ sid: "ActOnUnusedResources", actions: ACT_ON_RESOURCES, resources: [volumes, addresses] }));
    }
    if (config.deleteStoppedInstanceVolumes) {
      for (const statement of detachStatements(rules, instances, volumes)) actions.addToRolePolicy(statement);
    }
    for (const arn of ["arn:<AWS::Partition>:ec2:*:<AWS::AccountId>:instance/*", "arn:<AWS::Partition>:ec2:*:<AWS::AccountId>:volume/*", "arn:<AWS::Partition>:ec2:*::snapshot/*", "arn:<AWS::Partition>:ec2:*:<AWS::AccountId>:elastic-ip/*"]) {
      acknowledge(actions, `AwsSolutions-IAM5[Resource::${arn}]`, "Idle instances are found at run time in any configured region; the explicit Deny statements of the guard policies and the policy step bound what may be stopped.");
    }
    // Each guard in a managed policy of its own: a role's inline policies share one size limit, managed ones do not.
    // The same tag rules on instances and on volumes and addresses, one managed policy per rule.
    const onResources = tagGuardStatements(rules, GUARDED_RESOURCE_ACTIONS, [volumes, addresses, snapshots], "Resources");
    const guards = [
      ...tagGuardStatements(rules, GUARDED_INSTANCE_ACTIONS, instances).map((statement, i) => ({ id: `Guard${statement.sid}`, statements: [statement, onResources[i]] })),
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
