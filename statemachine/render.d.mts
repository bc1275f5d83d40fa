// Types for render.mjs, for the CDK app's type check.
export interface Contract {
  text: Record<string, { means: string; example: string }>;
  numbers: Record<string, { at: string; means: string; example: number }>;
  taskRetry: unknown[];
}
export const CONTRACT: Contract;
export const ASL_FILE: string;
export class DefinitionError extends Error {}
export function textNames(raw: string): Set<string>;
export function renderDefinition(raw: string, values?: { numbers?: Record<string, number>; text?: Record<string, string> }): any;
export function examples(): { text: Record<string, string>; numbers: Record<string, number> };
