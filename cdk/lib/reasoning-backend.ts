// The reasoning step's model: Bedrock Converse with the read-only tools (the default: any account can use it), a
// Bedrock agent with the action group (accounts that already had Agents before they closed to new customers on
// 2026-07-30), or the deterministic rules alone. The model is addressed through an inference profile
// (inference-profile.ts); the agent's instruction is functions/reasoning/src/agent-instruction.txt, the text the
// Converse backend gives the model as its system prompt.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Stack, aws_bedrock as bedrock, aws_iam as iam, aws_lambda as lambda } from "aws-cdk-lib";
import { Construct } from "constructs";
import type { FinopsConfig } from "./config.ts";
import { invokeModelStatement, modelAddress } from "./inference-profile.ts";
import { acknowledge } from "./nag.ts";
import { REPO_ROOT } from "./paths.ts";

export const AGENT_INSTRUCTION_FILE = join(REPO_ROOT, "functions", "reasoning", "src", "agent-instruction.txt");

export interface ReasoningBackendProps {
  config: FinopsConfig;
  reasoning: lambda.Function;
  agentTools: lambda.Function;
  stateMachineArn: string;
}

export class ReasoningBackend extends Construct {
  readonly agent?: bedrock.CfnAgent;

  constructor(scope: Construct, id: string, props: ReasoningBackendProps) {
    super(scope, id);
    const { config, reasoning, agentTools } = props;
    reasoning.addEnvironment("FINOPS_REASONER", config.reasoner);
    // The action group's function: its stop_resource starts single-instance executions (answered with what would
    // happen in recommend mode).
    agentTools.addEnvironment("FINOPS_STATE_MACHINE_ARN", props.stateMachineArn);
    agentTools.addToRolePolicy(new iam.PolicyStatement({ actions: ["states:StartExecution"], resources: [props.stateMachineArn] }));
    if (config.reasoner === "rules") return;

    const model = modelAddress(this, config.modelId, config.inferenceProfile);
    reasoning.addEnvironment("FINOPS_MODEL_ID", model.invokeId);
    const wildcardModel = `Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/${config.modelId}`;
    const modelReason = "A cross-region inference profile routes to the model in any region of its geography; the statement names one model.";
    if (config.reasoner === "converse") {
      reasoning.addToRolePolicy(invokeModelStatement(model));
      if (config.inferenceProfile !== "none") acknowledge(reasoning, `AwsSolutions-IAM5[${wildcardModel}]`, modelReason);
      return;
    }

    const agentRole = new iam.Role(this, "AgentRole", { assumedBy: new iam.ServicePrincipal("bedrock.amazonaws.com") });
    agentRole.addToPolicy(invokeModelStatement(model));
    if (config.inferenceProfile !== "none") acknowledge(agentRole, `AwsSolutions-IAM5[${wildcardModel}]`, modelReason);
    const agent = new bedrock.CfnAgent(this, "Agent", {
      agentName: "finops-agent",
      foundationModel: model.invokeId,
      agentResourceRoleArn: agentRole.roleArn,
      autoPrepare: true,
      idleSessionTtlInSeconds: 900,
      instruction: readFileSync(AGENT_INSTRUCTION_FILE, "utf8").trim(),
      actionGroups: [
        {
          actionGroupName: "finops-tools",
          actionGroupExecutor: { lambda: agentTools.functionArn },
          apiSchema: { payload: readFileSync(join(REPO_ROOT, "openapi-schema.yaml"), "utf8") },
        },
      ],
    });
    const alias = new bedrock.CfnAgentAlias(this, "AgentAlias", { agentId: agent.attrAgentId, agentAliasName: "live" });
    agentTools.addPermission("BedrockInvoke", {
      principal: new iam.ServicePrincipal("bedrock.amazonaws.com"),
      sourceArn: agent.attrAgentArn,
      sourceAccount: Stack.of(this).account,
    });
    reasoning.addEnvironment("FINOPS_AGENT_ID", agent.attrAgentId);
    reasoning.addEnvironment("FINOPS_AGENT_ALIAS_ID", alias.attrAgentAliasId);
    reasoning.addToRolePolicy(new iam.PolicyStatement({ actions: ["bedrock:InvokeAgent"], resources: [alias.attrAgentAliasArn] }));
    this.agent = agent;
  }
}
