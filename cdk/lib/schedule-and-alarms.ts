// When runs start, and who hears when something goes wrong: the EventBridge Scheduler schedule starts the state
// machine with the configured run input; alarms on failed executions and on every function's errors go to the
// reports topic.
import { Duration, aws_cloudwatch as cloudwatch, aws_cloudwatch_actions as cwActions, aws_iam as iam, aws_lambda as lambda, aws_scheduler as scheduler, aws_sns as sns, aws_stepfunctions as sfn } from "aws-cdk-lib";
import { Construct } from "constructs";
import type { FinopsConfig } from "./config.ts";

export interface ScheduleAndAlarmsProps {
  config: FinopsConfig;
  stateMachine: sfn.StateMachine;
  functions: Record<string, lambda.Function>;
  reports: sns.Topic;
}

export class ScheduleAndAlarms extends Construct {
  constructor(scope: Construct, id: string, props: ScheduleAndAlarmsProps) {
    super(scope, id);
    const { config, stateMachine } = props;
    const role = new iam.Role(this, "ScheduleRole", { assumedBy: new iam.ServicePrincipal("scheduler.amazonaws.com") });
    stateMachine.grantStartExecution(role);
    new scheduler.CfnSchedule(this, "Schedule", {
      scheduleExpression: config.schedule,
      scheduleExpressionTimezone: config.timezone,
      flexibleTimeWindow: { mode: "OFF" },
      target: {
        arn: stateMachine.stateMachineArn,
        roleArn: role.roleArn,
        input: JSON.stringify({ regions: config.regions, mode: config.mode, lookbackDays: config.lookbackDays }),
      },
    });

    const alarmAction = new cwActions.SnsAction(props.reports);
    new cloudwatch.Alarm(this, "FailedRuns", {
      metric: stateMachine.metricFailed({ period: Duration.hours(1) }),
      threshold: 1,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription: "A finops-agent run failed (it took no action and reported why).",
    }).addAlarmAction(alarmAction);
    for (const [key, fn] of Object.entries(props.functions)) {
      new cloudwatch.Alarm(this, `Errors-${key}`, {
        metric: fn.metricErrors({ period: Duration.minutes(15) }),
        threshold: 1,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: `finops-${key} reported errors.`,
      }).addAlarmAction(alarmAction);
    }
  }
}
