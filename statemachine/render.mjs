// Renders statemachine/finops.asl.json into the definition a deployment runs, from statemachine/contract.json:
// the numbers a deployment sets go in at their JSON pointers, every Task gets the one retry policy, and the text
// names (${Name} inside strings) are either left for CloudFormation's DefinitionSubstitutions (the CDK app) or
// replaced here (the validator). The CDK app and the validator share this file; the Rust test kit reads the same
// contract (functions/testkit/src/workflow.rs).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

export const CONTRACT = JSON.parse(readFileSync(join(here, "contract.json"), "utf8"));
export const ASL_FILE = join(here, "finops.asl.json");

export class DefinitionError extends Error {}

/** The ${Name} substitutions a text uses. */
export function textNames(raw) {
  return new Set([...raw.matchAll(/\$\{([A-Za-z0-9]+)\}/g)].map((m) => m[1]));
}

function decodePointer(pointer) {
  if (!pointer.startsWith("/")) throw new DefinitionError(`${pointer}: a JSON pointer starts with /`);
  return pointer.slice(1).split("/").map((p) => p.replaceAll("~1", "/").replaceAll("~0", "~"));
}

/** Sets the number at `pointer`, which must already hold one (the example), so a moved state fails loudly. */
function setNumber(definition, name, pointer, value) {
  const parts = decodePointer(pointer);
  const last = parts.pop();
  let node = definition;
  for (const part of parts) {
    node = node?.[part];
    if (node === undefined) throw new DefinitionError(`${name}: ${pointer} is not in the definition`);
  }
  if (typeof node?.[last] !== "number") throw new DefinitionError(`${name}: ${pointer} does not hold a number`);
  if (!Number.isInteger(value) || value < 1) throw new DefinitionError(`${name}: ${value} is not a positive whole number`);
  node[last] = value;
}

function forEachTask(states, visit, where = "") {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === "Task") visit(state, `${where}${name}`);
    if (state.Type === "Map") forEachTask(state.ItemProcessor.States, visit, `${where}${name} > `);
  }
}

/**
 * The definition for a deployment. `numbers` must name every number of the contract; `text` (optional) replaces the
 * ${Name} substitutions, which must then be exactly the contract's. Returns the definition as an object.
 */
export function renderDefinition(raw, { numbers, text } = {}) {
  const used = textNames(raw);
  const listed = new Set(Object.keys(CONTRACT.text));
  for (const name of used) if (!listed.has(name)) throw new DefinitionError(`\${${name}} is not listed in statemachine/contract.json`);
  for (const name of listed) if (!used.has(name)) throw new DefinitionError(`${name} is listed in statemachine/contract.json but not used`);
  if (/\$\{[^A-Za-z]/.test(raw) || raw.includes("${}")) throw new DefinitionError("a literal ${ that is not a substitution");
  let source = raw;
  if (text) {
    for (const name of listed) if (typeof text[name] !== "string") throw new DefinitionError(`no value for \${${name}}`);
    source = raw.replace(/\$\{([A-Za-z0-9]+)\}/g, (_, name) => text[name]);
  }
  let definition;
  try {
    definition = JSON.parse(source);
  } catch (e) {
    throw new DefinitionError(`not JSON: ${e.message}`);
  }
  for (const [name, { at }] of Object.entries(CONTRACT.numbers)) {
    if (numbers?.[name] === undefined) throw new DefinitionError(`no value for the number ${name}`);
    setNumber(definition, name, at, numbers[name]);
  }
  for (const name of Object.keys(numbers ?? {})) if (!(name in CONTRACT.numbers)) throw new DefinitionError(`${name} is not a number of the contract`);
  forEachTask(definition.States, (task, where) => {
    if (task.Retry) throw new DefinitionError(`${where}: a Task has no Retry of its own (every Task gets the contract's taskRetry)`);
    task.Retry = structuredClone(CONTRACT.taskRetry);
  });
  return definition;
}

/** The example values of the contract, as the validator fills them in. */
export function examples() {
  return {
    text: Object.fromEntries(Object.entries(CONTRACT.text).map(([k, v]) => [k, v.example])),
    numbers: Object.fromEntries(Object.entries(CONTRACT.numbers).map(([k, v]) => [k, v.example])),
  };
}
