// The state machine's definition as this deployment runs it: statemachine/finops.asl.json rendered by
// statemachine/render.mjs (shared with the validator) with this deployment's numbers and the one retry policy. The
// ${Name} text substitutions stay for CloudFormation's DefinitionSubstitutions (they are tokens until deploy time).
import { readFileSync } from "node:fs";
import { ASL_FILE, CONTRACT, renderDefinition } from "../../statemachine/render.mjs";

export { CONTRACT };

/** The contract's retry policy for Lambda errors: how many attempts a step gets and the longest backoff between them. */
export function taskRetryBudget(): { attempts: number; backoffSeconds: number } {
  const rule = (CONTRACT.taskRetry as { ErrorEquals: string[]; IntervalSeconds: number; MaxAttempts: number; BackoffRate: number }[]).find((r) =>
    r.ErrorEquals.includes("Lambda.ServiceException"),
  );
  if (!rule) throw new Error("statemachine/contract.json: taskRetry does not retry Lambda.ServiceException");
  let backoffSeconds = 0;
  for (let i = 0; i < rule.MaxAttempts; i++) backoffSeconds += rule.IntervalSeconds * rule.BackoffRate ** i;
  return { attempts: rule.MaxAttempts + 1, backoffSeconds };
}

/** The definition string with these numbers (every name of the contract's `numbers`). */
export function stateMachineDefinition(numbers: Record<string, number>): string {
  return JSON.stringify(renderDefinition(readFileSync(ASL_FILE, "utf8"), { numbers }), null, 2);
}
