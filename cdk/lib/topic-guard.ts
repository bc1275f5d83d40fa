// Who may ever listen on a topic: its configured addresses, by email. The approvals topic carries links that decide
// (each made out to its recipient); the reports topic names what was done and where.
import { aws_iam as iam, type aws_sns as sns } from "aws-cdk-lib";

/** Only `addresses` may ever be subscribed to `topic`, and by email only: an account admin (or a role that may
 * subscribe) cannot add a listener by hand. */
export function guardSubscriptions(topic: sns.Topic, addresses: string[], what: string) {
  topic.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: `SubscribeOnlyTheConfigured${what}Recipients`,
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ["sns:Subscribe"],
      resources: [topic.topicArn],
      conditions: { StringNotEqualsIgnoreCase: { "sns:Endpoint": addresses.length > 0 ? addresses : ["nobody@invalid"] } },
    }),
  );
  topic.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: `Subscribe${what}ByEmailOnly`,
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ["sns:Subscribe"],
      resources: [topic.topicArn],
      conditions: { StringNotEquals: { "sns:Protocol": "email" } },
    }),
  );
}
