// The IAM half of the policy's tag rules. The policy code (functions/core/src/policy.rs) decides what may be
// proposed; these statements make the actions role refuse the same instances again, whatever the code does. They are
// checked against the code by an IAM policy simulator over a table the code generates
// (cdk/test/fixtures/tag-spellings.json, cdk/test/iam-guard.test.ts).
//
// What IAM can express, and so what this guard is:
// - production: an environment tag whose value contains a production word, in any casing of its letters (IAM's
//   StringLike is case-sensitive, so every casing is listed), unless the whole value is a non-production spelling
//   (`non-prod`, `Pre-Production`) in lower, UPPER, Title or Capitalised case;
// - the soft hyphen, the one invisible character an IAM policy may contain (documents are limited to Latin-1);
// - protect: the protect tag present with any value but exactly false/no/0/off in any case;
// - instance storage: ec2:StopInstances on every instance family that has instance-store disks;
// - allow-list mode (optional): the Allow on instances requires an environment value from the list, exactly.
// What it cannot: Unicode look-alikes (`ＰＲＯＤ`), other invisible characters, tag keys with padding. The code
// refuses those; allow-list mode refuses them in IAM too.
import { readFileSync } from "node:fs";
import { aws_iam as iam } from "aws-cdk-lib";

export const NON_PRODUCTION_PREFIXES = ["non", "pre"] as const;
export const UNPROTECT_VALUES = ["false", "no", "0", "off"] as const;
/** Invisible characters the guard names: IAM policy documents may only hold U+0009, U+000A, U+000D, U+0020-U+00FF. */
export const IAM_LISTED_INVISIBLE = ["\u00AD"] as const;
/** Letters up to which every casing of a word is listed (2^6 = 64 patterns); longer words get lower, UPPER, Title. */
export const FULL_CASING_LETTERS = 6;
/** IAM's limit on a customer managed policy, in characters without whitespace. */
export const MANAGED_POLICY_LIMIT = 6_144;

export interface GuardRules {
  environmentTagKeys: string[];
  productionValues: string[];
  protectTagKey: string;
  /** Allow-list mode: only these environment values may be acted on. */
  actOnlyOnEnvironments?: string[];
}

const title = (s: string) => s.charAt(0).toUpperCase() + s.slice(1).toLowerCase();

/** The spellings of a word's letters IAM must list. */
export function casings(word: string): string[] {
  const lower = word.toLowerCase();
  const letters = [...lower].map((c, i) => (c.toUpperCase() !== c ? i : -1)).filter((i) => i >= 0);
  if (letters.length > FULL_CASING_LETTERS) return [...new Set([lower, lower.toUpperCase(), title(lower)])];
  const out: string[] = [];
  for (let mask = 0; mask < 1 << letters.length; mask++) {
    const chars = [...lower];
    letters.forEach((at, bit) => {
      if ((mask >> bit) & 1) chars[at] = chars[at].toUpperCase();
    });
    out.push(chars.join(""));
  }
  return out;
}

/** The shortest production words: a value containing `production` contains `prod`, so `prod` alone is listed. */
export function stems(values: string[]): string[] {
  const words = [...new Set(values.map((v) => v.trim().toLowerCase()).filter((v) => v.length > 0))];
  return words.filter((w) => !words.some((other) => other !== w && w.includes(other)));
}

/** StringLike patterns of a production environment value. */
export function productionPatterns(values: string[]): string[] {
  return [...stems(values).flatMap(casings).map((v) => `*${v}*`), ...IAM_LISTED_INVISIBLE.map((c) => `*${c}*`)];
}

/** StringNotLike patterns: whole values that name a non-production environment (`non-prod`, `Pre Production`). */
export function nonProductionPatterns(values: string[]): string[] {
  const out = new Set<string>();
  for (const prefix of NON_PRODUCTION_PREFIXES) {
    for (const word of values.map((v) => v.trim().toLowerCase()).filter((v) => v.length > 0)) {
      for (const sep of ["", "?"]) {
        out.add(`${prefix}${sep}${word}`);
        out.add(`${prefix}${sep}${word}`.toUpperCase());
        out.add(`${title(prefix)}${sep}${title(word)}`);
        out.add(`${title(prefix)}${sep}${word}`);
      }
    }
  }
  return [...out];
}

const sid = (s: string) => s.replace(/[^A-Za-z0-9]/g, "");

/** The explicit Deny statements on instances (or on volumes and addresses, `sidSuffix` "Resources"): one per
 * environment key (values are ORed within a key, keys need their own statements), and one for the protect tag. */
export function tagGuardStatements(rules: GuardRules, actions: string[], resourceArns: string | string[], sidSuffix = ""): iam.PolicyStatement[] {
  const resources = [resourceArns].flat();
  const production = productionPatterns(rules.productionValues);
  const nonProduction = nonProductionPatterns(rules.productionValues);
  const statements = rules.environmentTagKeys.map(
    (key) =>
      new iam.PolicyStatement({
        sid: `DenyProduction${sid(key)}${sidSuffix}`,
        effect: iam.Effect.DENY,
        actions,
        resources,
        conditions: {
          StringLike: { [`ec2:ResourceTag/${key}`]: production },
          StringNotLike: { [`ec2:ResourceTag/${key}`]: nonProduction },
        },
      }),
  );
  const protect = `ec2:ResourceTag/${rules.protectTagKey}`;
  statements.push(
    new iam.PolicyStatement({
      sid: `DenyProtected${sidSuffix}`,
      effect: iam.Effect.DENY,
      actions,
      resources,
      // Present (Null false) and not exactly an explicit no: any other value protects, as in the code.
      conditions: { Null: { [protect]: "false" }, StringNotEqualsIgnoreCase: { [protect]: [...UNPROTECT_VALUES] } },
    }),
  );
  return statements;
}

/** In allow-list mode, the Allow on instances: one statement per environment key, each requiring a listed value. */
export function allowListedStatements(rules: GuardRules, actions: string[], resourceArns: string | string[], sidSuffix = ""): iam.PolicyStatement[] {
  const allowed = rules.actOnlyOnEnvironments ?? [];
  return rules.environmentTagKeys.map(
    (key) =>
      new iam.PolicyStatement({
        sid: `AllowListed${sid(key)}${sidSuffix}`,
        actions,
        resources: [resourceArns].flat(),
        conditions: { StringEqualsIgnoreCase: { [`ec2:ResourceTag/${key}`]: allowed } },
      }),
  );
}

/** Instance families with instance-store disks (generated from EC2's catalogue by tests/moto/instance_storage_families.py). */
export function instanceStorageFamilies(): string[] {
  const file = new URL("./instance-storage-families.json", import.meta.url);
  return (JSON.parse(readFileSync(file, "utf8")) as { families: string[] }).families;
}

/** Stopping an instance with instance-store disks erases them: denied by instance type. */
export function instanceStorageStatement(instanceArn: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: "DenyStopWithInstanceStorage",
    effect: iam.Effect.DENY,
    actions: ["ec2:StopInstances"],
    resources: [instanceArn],
    conditions: { StringLike: { "ec2:InstanceType": instanceStorageFamilies().map((f) => `${f}.*`) } },
  });
}

/** A policy document's size as IAM counts it (characters, whitespace outside strings excluded) and whether it holds
 * only the characters IAM accepts. */
export function policySize(document: unknown): { chars: number; latin1: boolean } {
  const text = JSON.stringify(document);
  return { chars: [...text].length, latin1: /^[\u0009\u000A\u000D\u0020-\u00FF]*$/.test(text) };
}
