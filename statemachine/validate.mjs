// Validates the state machine definition as deployed: substitutes every ${Name} the way CloudFormation's
// DefinitionSubstitutions does (text replacement), then runs asl-validator and the project's own checks:
// every Task retries and catches, the approval waits on a task token with a timeout that takes the no-action path.
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const file = process.argv[2] ?? join(here, "finops.asl.json");
const raw = readFileSync(file, "utf8");

// The substitutions the CDK stack provides (cdk/ must provide exactly these).
export const SUBSTITUTIONS = {
  InventoryFunctionArn: "arn:aws:lambda:ap-southeast-2:123456789012:function:finops-inventory",
  MetricsFunctionArn: "arn:aws:lambda:ap-southeast-2:123456789012:function:finops-metrics",
  ReasoningFunctionArn: "arn:aws:lambda:ap-southeast-2:123456789012:function:finops-reasoning",
  PolicyFunctionArn: "arn:aws:lambda:ap-southeast-2:123456789012:function:finops-policy",
  RequestApprovalFunctionArn: "arn:aws:lambda:ap-southeast-2:123456789012:function:finops-request-approval",
  ActionsFunctionArn: "arn:aws:lambda:ap-southeast-2:123456789012:function:finops-actions",
  ReportTopicArn: "arn:aws:sns:ap-southeast-2:123456789012:finops-reports",
  LedgerTableName: "finops-ledger",
  ApprovalTimeoutSeconds: "259200",
  SnapshotPollSeconds: "60",
  MaxSnapshotChecks: "120",
  ApprovalConcurrency: "10",
  DeploymentMode: "act",
  ExecutionTimeoutSeconds: "285630",
};

const failures = [];
const used = new Set([...raw.matchAll(/\$\{([A-Za-z0-9]+)\}/g)].map((m) => m[1]));
for (const name of used) if (!(name in SUBSTITUTIONS)) failures.push(`\${${name}} has no substitution`);
for (const name of Object.keys(SUBSTITUTIONS)) if (!used.has(name)) failures.push(`substitution ${name} is not used`);
if (/\$\{[^A-Za-z]/.test(raw) || raw.includes("${}")) failures.push("a literal ${ that is not a substitution");

const substituted = raw.replace(/\$\{([A-Za-z0-9]+)\}/g, (_, name) => SUBSTITUTIONS[name] ?? "MISSING");
let definition;
try {
  definition = JSON.parse(substituted);
} catch (e) {
  failures.push(`not JSON after substitution: ${e.message}`);
}

if (definition) {
  if (raw.includes("QueryLanguage") && raw.includes("JSONata")) failures.push("JSONata is not allowed (the local interpreter cannot run it)");
  const walk = (states, where) => {
    for (const [name, state] of Object.entries(states)) {
      if (name.length > 80) failures.push(`${where}${name}: state names are at most 80 characters`);
      if (state.Type === "Task") {
        if (!state.Catch?.length) failures.push(`${where}${name}: Task without Catch`);
        const throttles = (state.Retry ?? []).some((r) => r.ErrorEquals.includes("Finops.Throttled"));
        if (state.Resource.includes("lambda:invoke") && !throttles) failures.push(`${where}${name}: no Retry on Finops.Throttled`);
      }
      if (state.Type === "Map") walk(state.ItemProcessor.States, `${where}${name} > `);
    }
  };
  walk(definition.States, "");
  const map = definition.States["Ask Approvers And Act"];
  const request = map?.ItemProcessor?.States?.["Request Approval"];
  if (request?.Resource !== "arn:aws:states:::lambda:invoke.waitForTaskToken") failures.push("no waitForTaskToken approval task");
  if (!request?.TimeoutSeconds) failures.push("the approval task has no TimeoutSeconds");
  const timeout = request?.Catch?.find((c) => c.ErrorEquals.includes("States.Timeout"));
  if (!timeout || !/No Answer/.test(timeout.Next)) failures.push("States.Timeout must lead to the no-action state");
  if (!Number.isInteger(definition.TimeoutSeconds)) failures.push("the execution has no TimeoutSeconds");
  const tmp = join(mkdtempSync(join(tmpdir(), "finops-asl-")), "finops.asl.json");
  writeFileSync(tmp, JSON.stringify(definition));
  try {
    execFileSync(join(here, "node_modules", ".bin", "asl-validator"), ["--json-path", tmp], { stdio: "pipe" });
  } catch (e) {
    failures.push(`asl-validator: ${e.stdout}${e.stderr}`);
  }
}

if (failures.length) {
  for (const f of failures) console.error(`statemachine: ${f}`);
  process.exit(1);
}
const count = (states) => Object.values(states).reduce((n, s) => n + 1 + (s.Type === "Map" ? count(s.ItemProcessor.States) : 0), 0);
console.log(`statemachine: ${file} valid (asl-validator ${"4.0.0"}), ${count(definition.States)} states, ${used.size} substitutions`);
