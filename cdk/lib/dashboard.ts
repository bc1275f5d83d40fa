// The savings dashboard: runs, proposals, approvals by decision, actions by outcome, and the estimated against the
// realized savings per month. Every figure comes from the metrics the functions emit as CloudWatch Embedded Metric
// Format log lines (functions/core/src/metrics.rs): no extra API call, no metric-writing permission. The dashboard
// names only metrics of that catalogue (`emitted-metrics.json`, kept equal to the Rust catalogue by a Rust test, and
// each widget checked against it by a CDK test).
import { Duration, aws_cloudwatch as cloudwatch } from "aws-cdk-lib";
import { Construct } from "constructs";

export const NAMESPACE = "FinopsAgent";

export class SavingsDashboard extends Construct {
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    const day = Duration.days(1);
    const month = Duration.days(30);
    const metric = (metricName: string, statistic: string, period: Duration, label: string, dimensionsMap?: Record<string, string>) =>
      new cloudwatch.Metric({ namespace: NAMESPACE, metricName, statistic, period, label, dimensionsMap });
    const byValue = (metricName: string, dimension: string, values: string[]) => values.map((v) => metric(metricName, "Sum", day, v, { [dimension]: v }));

    this.dashboard = new cloudwatch.Dashboard(this, "Dashboard", {
      dashboardName: "finops-agent",
      defaultInterval: Duration.days(90),
      widgets: [
        [
          new cloudwatch.GraphWidget({
            title: "Runs and proposals per day",
            left: [metric("Runs", "Sum", day, "runs"), metric("Proposals", "Sum", day, "proposals")],
            right: [metric("Denials", "Sum", day, "blocked by policy")],
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: "Approvals by decision per day",
            left: byValue("ApprovalDecisions", "Decision", ["approve", "deny", "snooze"]),
            stacked: true,
            width: 12,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: "Actions by outcome per day",
            left: byValue("Actions", "Outcome", ["done", "already_done", "refused", "pending", "failed"]),
            stacked: true,
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: "Estimated vs realized savings per month (USD)",
            left: [
              metric("ProposedMonthlySavingUsd", "Sum", month, "proposed, per month of saving"),
              metric("EstimatedMonthlySavingUsd", "Maximum", month, "estimate of what holds, per month"),
              metric("RealizedSavingToDateUsd", "Maximum", month, "realized to date"),
            ],
            width: 12,
          }),
        ],
        [
          new cloudwatch.SingleValueWidget({
            title: "Savings now",
            metrics: [
              metric("EstimatedMonthlySavingUsd", "Maximum", day, "estimated per month"),
              metric("RealizedSavingToDateUsd", "Maximum", day, "realized to date"),
              metric("ActionsUndone", "Maximum", day, "undone to date"),
            ],
            width: 24,
          }),
        ],
      ],
    });
  }
}
