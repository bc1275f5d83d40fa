// Validates the state machine definition as deployed: renders it from statemachine/contract.json with the
// contract's examples (render.mjs, which the CDK app uses too), then runs asl-validator and the project's own checks:
// every Task retries and catches, the approval waits on a task token with a timeout that takes the no-action path.
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { DefinitionError, examples, renderDefinition, textNames } from "./render.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const file = process.argv[2] ?? join(here, "finops.asl.json");
const raw = readFileSync(file, "utf8");

const failures = [];
let definition;
try {
  JSON.parse(raw);
} catch (e) {
  failures.push(`not JSON as it is (editors, jq and the console's import read the file itself): ${e.message}`);
}
try {
  definition = renderDefinition(raw, examples());
} catch (e) {
  if (!(e instanceof DefinitionError)) throw e;
  failures.push(e.message);
}
const used = textNames(raw);

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
  // One entry path: the scheduled and single-instance entries differ only by a normalising Pass state, so each
  // detection step is one Task, whatever the entry.
  for (const fn of ["InventoryFunctionArn", "MetricsFunctionArn", "ReasoningFunctionArn", "PolicyFunctionArn"]) {
    const tasks = Object.entries(JSON.parse(raw).States).filter(([, s]) => s.Type === "Task" && s.Parameters?.FunctionName === `\${${fn}}`);
    if (tasks.length !== 1) failures.push(`${fn} is invoked by ${tasks.length} states (one entry path: exactly one)`);
  }
  const map = definition.States["Await Decisions And Act"];
  const request = map?.ItemProcessor?.States?.["Wait For Decision"];
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
