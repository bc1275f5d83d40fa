// Everything an approval passes through: the request step writes a pending record (IAM lets it write nothing that
// decides) and mails a signed link to the approvers' own topic; the public callback behind a Function URL checks
// the link, records the decision and resumes the execution; the actions step reads the decision, never writes it.
import { aws_dynamodb as dynamodb, aws_iam as iam, aws_lambda as lambda, aws_secretsmanager as secretsmanager, aws_sns as sns, aws_sns_subscriptions as subscriptions } from "aws-cdk-lib";
import { Stack } from "aws-cdk-lib";
import { Construct } from "constructs";
import { approvalAddresses, type FinopsConfig } from "./config.ts";
import { acknowledge } from "./nag.ts";
import { guardSubscriptions } from "./topic-guard.ts";

/** The message attribute each approver's subscription filters on (functions/approval-store: notify::RECIPIENT_ATTRIBUTE). */
export const RECIPIENT_ATTRIBUTE = "recipient";

/** The attributes of a pending approval record (functions/approval-store: DynamoApprovals::claim_pending) and of a
 * message's claim (claim_message): the audience is written here, once, by the request step only. */
export const PENDING_APPROVAL_ATTRIBUTES = ["approvalId", "taskToken", "proposal", "runId", "executionArn", "resourceId", "createdAt", "expiresAt", "ttl", "state", "audience", "undoOf", "emailStatus", "claimId"] as const;
/// What the request step may change in an existing record: the task token the approval map's wait attaches, and
/// whether a message went out. Never the state, the audience or a decision.
/// Where Slack asked it (`slackMessage`: team, channel, message ts) is set once the message is posted: a click decides
/// only on that message, in the channel the audience names (the callback and the acting step check both).
/// Which notice the resource's owner got (`ownerNotice`): a courtesy, it decides nothing either.
export const RENEWED_APPROVAL_ATTRIBUTES = ["approvalId", "taskToken", "emailStatus", "slackMessage", "ownerNotice"] as const;

export interface ApprovalPlumbingProps {
  config: FinopsConfig;
  approvals: dynamodb.Table;
  approvalTopic: sns.Topic;
  signingKey: secretsmanager.Secret;
  requestApproval: lambda.Function;
  approvalCallback: lambda.Function;
  actions: lambda.Function;
  /** The state machine by ARN (it is created after the functions it invokes). */
  stateMachineArn: string;
}

export class ApprovalPlumbing extends Construct {
  /** Where approval links point. */
  readonly url: lambda.FunctionUrl;

  constructor(scope: Construct, id: string, props: ApprovalPlumbingProps) {
    super(scope, id);
    const { config, approvals, approvalTopic, signingKey, requestApproval, approvalCallback, actions } = props;

    // Approval emails carry links that decide as their recipient: they go to their own topic, which only the
    // configured approvers can ever be subscribed to, by email only, and each address gets only the messages made
    // out to it (request-approval sets the message attribute `recipient`; each subscription's filter policy names
    // its own address).
    const routed = config.organization?.approvalRouting !== undefined;
    const addresses = approvalAddresses(config);
    for (const email of addresses) {
      approvalTopic.addSubscription(
        new subscriptions.EmailSubscription(email, { filterPolicy: { [RECIPIENT_ATTRIBUTE]: sns.SubscriptionFilter.stringFilter({ allowlist: [email.toLowerCase()] }) } }),
      );
    }
    guardSubscriptions(approvalTopic, addresses, "Approval");

    const store = { FINOPS_APPROVALS_TABLE: approvals.tableName, FINOPS_SIGNING_SECRET_ID: signingKey.secretArn };
    for (const [key, value] of Object.entries(store)) {
      requestApproval.addEnvironment(key, value);
      approvalCallback.addEnvironment(key, value);
    }
    requestApproval.addEnvironment("FINOPS_APPROVAL_TOPIC_ARN", approvalTopic.topicArn);
    // Who may decide, where approvals are not routed (routes name their own): the request step writes it into each
    // record's audience. Read-only to every function: only a deployment changes a function's environment.
    if (!routed) requestApproval.addEnvironment("FINOPS_APPROVERS", config.approvers.map((a) => a.toLowerCase()).join(","));
    requestApproval.addEnvironment("FINOPS_APPROVAL_WINDOW_SECONDS", String(config.approvalWindowHours * 3600));
    if (config.ownerNoticesFrom !== undefined) {
      // Owner notices: SES, from the one verified address, to whoever a resource's owner tag names.
      requestApproval.addEnvironment("FINOPS_OWNER_NOTICES_FROM", config.ownerNoticesFrom);
      // Owner tags are untrusted: notices only to these domains (unset: the sender's own).
      if (config.ownerNoticeDomains.length > 0) requestApproval.addEnvironment("FINOPS_OWNER_DOMAINS", config.ownerNoticeDomains.join(","));
      requestApproval.addToRolePolicy(
        new iam.PolicyStatement({
          sid: "SendOwnerNoticesFromTheVerifiedAddressOnly",
          actions: ["ses:SendEmail"],
          resources: [Stack.of(this).formatArn({ service: "ses", resource: "identity", resourceName: "*" })],
          conditions: { StringEquals: { "ses:FromAddress": config.ownerNoticesFrom } },
        }),
      );
      acknowledge(requestApproval, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ses:<AWS::Region>:<AWS::AccountId>:identity/*]", "Owners are named by tags at run time; the condition pins the sender to the one verified address.");
    }
    if (config.slack !== undefined) {
      // Slack: the request step posts each approval to the approvers' channel with the bot token; the callback
      // verifies Slack's signature on every click with the signing secret. Both read the one secret, nothing else.
      const slackSecret = secretsmanager.Secret.fromSecretCompleteArn(this, "SlackSecret", config.slack.secretArn);
      for (const fn of [requestApproval, approvalCallback]) {
        fn.addEnvironment("FINOPS_SLACK_SECRET_ID", config.slack.secretArn);
        slackSecret.grantRead(fn);
      }
      // Where and by whom (unrouted approvals; routes name their own): the request step stores it on each record.
      if (config.slack.channel !== undefined) requestApproval.addEnvironment("FINOPS_SLACK_CHANNEL", config.slack.channel);
      if (config.slack.approvers.length > 0) requestApproval.addEnvironment("FINOPS_SLACK_APPROVERS", config.slack.approvers.join(","));
    }
    actions.addEnvironment("FINOPS_APPROVALS_TABLE", approvals.tableName);

    // The callback is public (a Function URL; the signed link is the credential, approvers click from their mail
    // client): reserved concurrency caps what a flood of requests can cost or crowd out.
    (approvalCallback.node.defaultChild as lambda.CfnFunction).reservedConcurrentExecutions = config.approvalConcurrency;
    this.url = approvalCallback.addFunctionUrl({ authType: lambda.FunctionUrlAuthType.NONE });
    requestApproval.addEnvironment("FINOPS_APPROVAL_BASE_URL", this.url.url);

    // The request step creates pending records only: IAM lets it write none of the attributes that make a decision.
    requestApproval.addToRolePolicy(
      new iam.PolicyStatement({
        sid: "PutPendingApprovalsOnly",
        actions: ["dynamodb:PutItem"],
        resources: [approvals.tableArn],
        conditions: { "ForAllValues:StringEquals": { "dynamodb:Attributes": [...PENDING_APPROVAL_ATTRIBUTES] } },
      }),
    );
    requestApproval.addToRolePolicy(
      new iam.PolicyStatement({
        sid: "RenewPendingApprovalsOnly",
        actions: ["dynamodb:UpdateItem"],
        resources: [approvals.tableArn],
        conditions: { "ForAllValues:StringEquals": { "dynamodb:Attributes": [...RENEWED_APPROVAL_ATTRIBUTES] } },
      }),
    );
    // A retried request reads the record it renewed, to tell a pending approval from an answered one.
    approvals.grant(requestApproval, "dynamodb:GetItem");
    approvals.grant(approvalCallback, "dynamodb:GetItem", "dynamodb:UpdateItem");
    // The actions step verifies the decision in the table before it acts; it can read it, never write it.
    approvals.grant(actions, "dynamodb:GetItem");
    signingKey.grantRead(requestApproval);
    signingKey.grantRead(approvalCallback);
    approvalTopic.grantPublish(requestApproval);
    acknowledge(requestApproval, "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]", "Publishing to the KMS-encrypted topic needs GenerateDataKey* on its key only.");
    approvalCallback.addToRolePolicy(new iam.PolicyStatement({ actions: ["states:SendTaskSuccess"], resources: [props.stateMachineArn] }));
    // A confirmed undo link starts the undo execution (the actions step undoes; this function acts on nothing).
    approvalCallback.addToRolePolicy(new iam.PolicyStatement({ sid: "StartUndoExecutions", actions: ["states:StartExecution"], resources: [props.stateMachineArn] }));
  }
}
