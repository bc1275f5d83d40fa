import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository: the CDK app reads the ASL, the OpenAPI schema and the agent instruction from it as they are. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
