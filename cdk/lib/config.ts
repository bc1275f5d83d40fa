// The deployment's settings: read from the CDK context (cdk.json defaults, `-c key=value` overrides) and checked
// before anything is built, so a bad value fails the synth with the key's name and what is allowed.
import { INFERENCE_PROFILES, type InferenceProfileChoice } from "./inference-profile.ts";

export type Reasoner = "agent" | "converse" | "rules";

export interface FinopsConfig {
  regions: string[];
  approvers: string[];
  schedule: string;
  timezone: string;
  mode: "recommend" | "act";
  reasoner: Reasoner;
  /** The base model (no geography prefix), e.g. anthropic.claude-sonnet-5-5. */
  modelId: string;
  /** How the model is addressed: a cross-region inference profile (auto: the one of the deployment's geography), or none. */
  inferenceProfile: InferenceProfileChoice;
  criteria: "idle" | "trusted-advisor";
  lookbackDays: number;
  approvalWindowHours: number;
  snoozeDays: number;
  maxProposals: number;
  maxMonthlyUsd: number;
  protectedTagKeys: string[];
  productionValues: string[];
  /** Allow-list mode: only instances whose environment tag is exactly one of these are acted on (empty: off). */
  actOnlyOnEnvironments: string[];
  /** Who receives run reports and alarms (approval emails go to `approvers` only). */
  reportRecipients: string[];
  /** Concurrent executions reserved for (and capping) the public approval callback. */
  approvalConcurrency: number;
  /** The savings step's optional check against the bill (Cost Explorer, $0.01 a request, one a run); off by default. */
  costExplorerCheck: boolean;
  /** Whether a long-stopped instance's volumes may be proposed for deletion (snapshot, then delete); off by default. */
  deleteStoppedInstanceVolumes: boolean;
  /** The tag naming a resource's owner (context `ownerTagKey`, default Owner, compared in any case). */
  ownerTagKey: string;
  /** Owner notices (context `ownerNoticesFrom`: an SES-verified sender address); undefined: no owner notices. */
  ownerNoticesFrom?: string;
  /** The mail domains owner notices may go to (context `ownerNoticeDomains`; empty: the sender's own domain). */
  ownerNoticeDomains: string[];
  /** Slack approvals (context `slackSecretArn`, `slackChannel`); undefined: email only. */
  slack?: SlackSettings;
  assetsDir: string;
  /** The functions' architecture: `auto` follows the bootstraps `make package` built (arm64 unless built otherwise). */
  architecture: "auto" | "arm64" | "x86_64";
  /** The accounts a run covers beyond the hub's own (context `accounts`); undefined: this account only. */
  organization?: OrganizationSettings;
}

export interface SlackSettings {
  /** A Secrets Manager secret (complete ARN) of JSON {"signingSecret": "...", "botToken": "xoxb-..."}. */
  secretArn: string;
  /** The approvers' channel id (C...) where approvals are not routed (routes name their own `slackChannel`). */
  channel?: string;
  /** The Slack users (U... or W...) whose clicks in that channel decide (context `slackApprovers`). */
  approvers: string[];
}

export interface OrganizationSettings {
  /** `organization` (every active account, or those under `ous`) or a list of account ids. */
  accounts: "organization" | string[];
  ous: string[];
  excludeAccounts: string[];
  /** The member roles the StackSet deploys; names that say what they are, so they clash with no other tool's. */
  readRole: string;
  actionsRole: string;
  /** (account, region) items scanned at once, and the share of items whose scan may fail before the run does. */
  scanConcurrency: number;
  toleratedFailurePercentage: number;
  /** The OUs (or the root) the member-roles StackSet deploys to; empty when the roles are deployed some other way. */
  stackSetTargets: string[];
  /** The run's caps again per account (largest savings first within each); undefined: the run's caps only. */
  maxProposalsPerAccount?: number;
  maxMonthlyUsdPerAccount?: number;
  /** Who approves which account's proposals (context `approvalRouting`); undefined: every approver sees every one. */
  approvalRouting?: ApprovalRouting;
}

/** finops_core's ApprovalRouting: the most specific route wins (account, then innermost OU, then first tag), then
 * the default; the deployment's `approvers` are the default when the table names none. */
export interface ApprovalRouting {
  routes: RouteEntry[];
  default: string[];
  defaultSlackChannel?: string;
  defaultSlackUsers?: string[];
}

/** One route: exactly one of account, ou or tag, its approvers, and in Slack its channel and the users who decide there. */
export type RouteEntry = { account?: string; ou?: string; tag?: string; approvers: string[]; slackChannel?: string; slackUsers?: string[] };

/** A Slack user id, as finops_core's routing checks it. */
const SLACK_USER = /^[UW][A-Z0-9]{1,31}$/;

/** A Slack channel id, as finops_core::slack::is_slack_id checks it. */
const SLACK_ID = /^[A-Z0-9]{2,32}$/;

/** Every address that may be asked to approve: the subscriptions of the approvals topic (lowercase, once each). */
export function approvalAddresses(config: Pick<FinopsConfig, "approvers" | "organization">): string[] {
  const routing = config.organization?.approvalRouting;
  const all = [...config.approvers, ...(routing?.default ?? []), ...(routing?.routes ?? []).flatMap((r) => r.approvers)];
  return [...new Set(all.map((a) => a.trim().toLowerCase()))];
}

const ACCOUNT_ID = /^\d{12}$/;
const OU_ID = /^(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}|r-[0-9a-z]{4,32})$/;
const ROLE_NAME = /^[\w+=,.@-]{1,64}$/;

/** Step Functions runs at most this many iterations of an inline Map at once: every approval of a run must be one. */
export const MAX_CONCURRENT_APPROVALS = 40;

export class ConfigError extends Error {}

const REGION = /^[a-z]{2}(-gov)?-[a-z]+-\d$/;
const EMAIL = /^[^@\s,]+@[^@\s,]+\.[^@\s,]+$/;

/** A base model id as Bedrock lists it (provider.name, optionally :version). A geography-prefixed id is refused:
 * the prefix is the inference profile, chosen with `inferenceProfile`, so IAM can name the profile and the model. */
function baseModel(id: string): string {
  if (!/^[a-z0-9-]+\.[a-z0-9][a-z0-9.:-]*$/.test(id)) throw new ConfigError(`context modelId=${JSON.stringify(id)}: a Bedrock base model id such as anthropic.claude-sonnet-5-5`);
  const prefix = id.split(".")[0];
  if ((INFERENCE_PROFILES as readonly string[]).includes(prefix)) {
    throw new ConfigError(`context modelId=${JSON.stringify(id)}: give the base model id (${id.slice(prefix.length + 1)}) and choose the profile with -c inferenceProfile=${prefix}`);
  }
  return id;
}

/** Reads and checks the context; a bad value fails the synth with a message naming the key and what is allowed. */
export function readConfig(get: (key: string) => unknown): FinopsConfig {
  const text = (key: string): string => {
    const v = get(key);
    if (v === undefined || v === null) throw new ConfigError(`context ${key} is missing`);
    return String(v).trim();
  };
  const list = (key: string) => text(key).split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  const oneOf = <T extends string>(key: string, allowed: readonly T[]): T => {
    const v = text(key);
    if (!(allowed as readonly string[]).includes(v)) throw new ConfigError(`context ${key}=${JSON.stringify(v)}: allowed are ${allowed.join(", ")}`);
    return v as T;
  };
  const number = (key: string, min: number, max: number): number => {
    const v = Number(text(key));
    if (!Number.isFinite(v) || v < min || v > max) throw new ConfigError(`context ${key}=${JSON.stringify(get(key))}: a number from ${min} to ${max}`);
    return v;
  };
  const regions = list("regions");
  if (regions.length === 0 || regions.some((r) => !REGION.test(r))) {
    throw new ConfigError(`context regions=${JSON.stringify(get("regions"))}: comma-separated region codes such as ap-southeast-2,us-east-1`);
  }
  const approvers = list("approvers");
  const bad = approvers.find((a) => !EMAIL.test(a));
  if (bad) throw new ConfigError(`context approvers: ${JSON.stringify(bad)} is not an email address`);
  const schedule = text("schedule");
  if (!/^(cron|rate)\(.+\)$/.test(schedule)) throw new ConfigError(`context schedule=${JSON.stringify(schedule)}: cron(...) or rate(...)`);
  const protectedTagKeys = list("protectedTagKeys");
  const productionValues = list("productionValues");
  if (protectedTagKeys.length === 0) throw new ConfigError("context protectedTagKeys: at least one tag key");
  if (productionValues.length === 0) throw new ConfigError("context productionValues: at least one value");
  const latin1 = /^[\u0020-\u00FF]+$/;
  for (const [key, values] of [["protectedTagKeys", protectedTagKeys], ["productionValues", productionValues]] as const) {
    const bad = values.find((v) => !latin1.test(v) || /[*?]/.test(v));
    if (bad !== undefined) throw new ConfigError(`context ${key}: ${JSON.stringify(bad)} cannot be matched by IAM (Latin-1 only, no * or ?)`);
  }
  // A setting that used to exist: refuse it loudly rather than let someone believe termination is on.
  if (get("terminateEnabled") !== undefined && String(get("terminateEnabled")).trim().toLowerCase() === "true") {
    throw new ConfigError("context terminateEnabled: finops never terminates instances (it snapshots and stops them); remove this key");
  }
  const optionalList = (key: string) => (get(key) === undefined || get(key) === null ? [] : list(key));
  const actOnlyOnEnvironments = optionalList("actOnlyOnEnvironments");
  const badEnvironment = actOnlyOnEnvironments.find((v) => !latin1.test(v) || /[*?]/.test(v));
  if (badEnvironment !== undefined) throw new ConfigError(`context actOnlyOnEnvironments: ${JSON.stringify(badEnvironment)} cannot be matched by IAM (Latin-1 only, no * or ?)`);
  const reportRecipients = optionalList("reportRecipients");
  const badRecipient = reportRecipients.find((a) => !EMAIL.test(a));
  if (badRecipient) throw new ConfigError(`context reportRecipients: ${JSON.stringify(badRecipient)} is not an email address`);
  const mode = oneOf("mode", ["recommend", "act"] as const);
  if (mode === "act" && approvers.length === 0) throw new ConfigError("context approvers: act mode needs at least one approver (-c approvers=a@example.com)");
  const maxProposals = number("maxProposals", 1, MAX_CONCURRENT_APPROVALS);
  const organization = readOrganization(get, { text, list, optionalList, number });
  if (organization === undefined && get("approvalRouting") !== undefined && String(get("approvalRouting")).trim() !== "") {
    throw new ConfigError("context approvalRouting routes approvals by account: it needs an organization deployment (-c accounts=organization or a list of ids)");
  }
  return {
    regions,
    approvers,
    schedule,
    timezone: text("timezone"),
    mode,
    reasoner: oneOf("reasoner", ["agent", "converse", "rules"] as const),
    modelId: baseModel(text("modelId")),
    inferenceProfile: oneOf("inferenceProfile", INFERENCE_PROFILES),
    criteria: oneOf("criteria", ["idle", "trusted-advisor"] as const),
    lookbackDays: number("lookbackDays", 1, 63),
    approvalWindowHours: number("approvalWindowHours", 1, 24 * 14),
    snoozeDays: number("snoozeDays", 1, 365),
    // At most the inline Map's concurrency: every approval email of a run goes out at the start of its window.
    maxProposals,
    maxMonthlyUsd: number("maxMonthlyUsd", 0, 1_000_000),
    protectedTagKeys,
    productionValues,
    actOnlyOnEnvironments,
    reportRecipients: reportRecipients.length > 0 ? reportRecipients : approvers,
    approvalConcurrency: number("approvalConcurrency", 1, 100),
    costExplorerCheck: get("costExplorerCheck") === undefined ? false : oneOf("costExplorerCheck", ["true", "false"] as const) === "true",
    deleteStoppedInstanceVolumes: get("deleteStoppedInstanceVolumes") === undefined ? false : oneOf("deleteStoppedInstanceVolumes", ["true", "false"] as const) === "true",
    assetsDir: text("assetsDir"),
    architecture: get("architecture") === undefined ? "auto" : oneOf("architecture", ["auto", "arm64", "x86_64"] as const),
    organization,
    slack: readSlack(get, organization),
    ownerTagKey: ownerTagKey(get),
    ownerNoticesFrom: ownerNoticesFrom(get),
    ownerNoticeDomains: ownerNoticeDomains(optionalList("ownerNoticeDomains")),
  };
}

function ownerTagKey(get: (key: string) => unknown): string {
  const raw = get("ownerTagKey");
  const key = raw === undefined || raw === null ? "Owner" : String(raw).trim();
  if (key === "" || !/^[\w .:/=+@-]{1,128}$/.test(key)) throw new ConfigError(`context ownerTagKey=${JSON.stringify(raw)}: a tag key such as Owner`);
  return key;
}

/** Owner tags are untrusted: notices go only to addresses in these domains (or subdomains). */
function ownerNoticeDomains(domains: string[]): string[] {
  const clean = domains.map((d) => d.replace(/^@/, "").toLowerCase());
  const bad = clean.find((d) => !/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(d));
  if (bad !== undefined) throw new ConfigError(`context ownerNoticeDomains: ${JSON.stringify(bad)} is not a mail domain`);
  return clean;
}

function ownerNoticesFrom(get: (key: string) => unknown): string | undefined {
  const raw = get("ownerNoticesFrom");
  if (raw === undefined || raw === null || String(raw).trim() === "") return undefined;
  const from = String(raw).trim();
  if (!EMAIL.test(from)) throw new ConfigError(`context ownerNoticesFrom=${JSON.stringify(from)}: the SES-verified address owner notices are sent from`);
  return from;
}

/** Slack, where `slackSecretArn` is set: a complete Secrets Manager ARN (the functions get exactly that secret), and
 * a channel id unless every approval is routed to a group with its own channel. */
function readSlack(get: (key: string) => unknown, organization: OrganizationSettings | undefined): SlackSettings | undefined {
  const raw = get("slackSecretArn");
  const channel = get("slackChannel") === undefined || String(get("slackChannel")).trim() === "" ? undefined : String(get("slackChannel")).trim();
  if (raw === undefined || raw === null || String(raw).trim() === "") {
    if (channel !== undefined) throw new ConfigError("context slackChannel needs slackSecretArn (the Slack app's signing secret and bot token)");
    return undefined;
  }
  const secretArn = String(raw).trim();
  if (!/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$/.test(secretArn)) {
    throw new ConfigError(`context slackSecretArn=${JSON.stringify(secretArn)}: the complete ARN of a Secrets Manager secret (ending in its 6-character suffix)`);
  }
  if (channel !== undefined && !SLACK_ID.test(channel)) throw new ConfigError(`context slackChannel=${JSON.stringify(channel)}: a Slack channel id such as C0123ABCD (not its #name)`);
  const routing = organization?.approvalRouting;
  const routedChannels = routing === undefined ? [] : [routing.defaultSlackChannel, ...routing.routes.map((r) => r.slackChannel)];
  if (channel === undefined && !routedChannels.some((c) => c !== undefined)) {
    throw new ConfigError("context slackSecretArn: name the approvers' channel with -c slackChannel=C0123ABCD (or slackChannel in the approval routes)");
  }
  const rawUsers = get("slackApprovers");
  const approvers = rawUsers === undefined || rawUsers === null ? [] : String(rawUsers).split(",").map((u) => u.trim()).filter((u) => u.length > 0);
  const badUser = approvers.find((u) => !SLACK_USER.test(u));
  if (badUser !== undefined) throw new ConfigError(`context slackApprovers: ${JSON.stringify(badUser)} is not a Slack user id (like U0123ABCD)`);
  // Routed approvals name each group's channel and users in the routes: a deployment-wide one would be ignored.
  if (routing !== undefined && (channel !== undefined || approvers.length > 0)) {
    throw new ConfigError("context slackChannel and slackApprovers are for unrouted approvals: with approvalRouting, name the channels and users in its routes (slackChannel, slackUsers, defaultSlackChannel, defaultSlackUsers)");
  }
  // A channel where nobody is named to decide would be asked in vain: who decides in Slack is the deployment's.
  if (channel !== undefined && approvers.length === 0) {
    throw new ConfigError("context slackChannel needs slackApprovers: the Slack user ids (U0123ABCD,...) whose clicks decide there");
  }
  return { secretArn, channel, approvers };
}

interface Readers {
  text: (key: string) => string;
  list: (key: string) => string[];
  optionalList: (key: string) => string[];
  number: (key: string, min: number, max: number) => number;
}

/** The organization settings, checked as finops_core's OrganizationConfig checks them (a typo in an id is an error,
 * not an account silently left out). */
function readOrganization(get: (key: string) => unknown, read: Readers): OrganizationSettings | undefined {
  const raw = get("accounts");
  if (raw === undefined || raw === null || String(raw).trim() === "") return undefined;
  const value = String(raw).trim();
  const ids = (key: string) => {
    const values = read.optionalList(key);
    const bad = values.find((v) => !ACCOUNT_ID.test(v));
    if (bad !== undefined) throw new ConfigError(`context ${key}: ${JSON.stringify(bad)} is not an AWS account id (12 digits)`);
    return values;
  };
  const accounts = value === "organization" ? "organization" : ids("accounts");
  const ous = read.optionalList("organizationOus");
  const badOu = ous.find((v) => !OU_ID.test(v));
  if (badOu !== undefined) throw new ConfigError(`context organizationOus: ${JSON.stringify(badOu)} is not an organizational unit id (ou-xxxx-xxxxxxxx)`);
  if (ous.length > 0 && accounts !== "organization") throw new ConfigError("context organizationOus applies to accounts=organization only");
  const role = (key: string, fallback: string) => {
    const name = get(key) === undefined ? fallback : read.text(key);
    if (!ROLE_NAME.test(name)) throw new ConfigError(`context ${key}=${JSON.stringify(name)}: an IAM role name`);
    return name;
  };
  const numberOr = (key: string, fallback: number, min: number, max: number) => (get(key) === undefined ? fallback : read.number(key, min, max));
  const stackSet = get("memberStackSet") === undefined ? "true" : read.text("memberStackSet");
  if (stackSet !== "true" && stackSet !== "false") throw new ConfigError(`context memberStackSet=${JSON.stringify(stackSet)}: true or false`);
  let stackSetTargets: string[] = [];
  if (stackSet === "true") {
    stackSetTargets = read.optionalList("memberStackSetTargets");
    if (stackSetTargets.length === 0) stackSetTargets = ous;
    const badTarget = stackSetTargets.find((v) => !OU_ID.test(v));
    if (badTarget !== undefined) throw new ConfigError(`context memberStackSetTargets: ${JSON.stringify(badTarget)} is not an OU id (ou-xxxx-xxxxxxxx) or the root id (r-xxxx)`);
    if (stackSetTargets.length === 0) {
      throw new ConfigError("context memberStackSetTargets: the OUs (or the root, r-xxxx) whose accounts get the member roles from the StackSet; or -c memberStackSet=false if you deploy the roles yourself");
    }
  }
  return {
    accounts,
    ous,
    excludeAccounts: ids("excludeAccounts"),
    readRole: role("memberReadRole", "finops-agent-read-only"),
    actionsRole: role("memberActionsRole", "finops-agent-actions"),
    scanConcurrency: numberOr("accountScanConcurrency", 10, 1, 1000),
    toleratedFailurePercentage: numberOr("toleratedFailurePercentage", 10, 0, 100),
    stackSetTargets,
    maxProposalsPerAccount: get("maxProposalsPerAccount") === undefined ? undefined : read.number("maxProposalsPerAccount", 1, 40),
    maxMonthlyUsdPerAccount: get("maxMonthlyUsdPerAccount") === undefined ? undefined : read.number("maxMonthlyUsdPerAccount", 0, 1_000_000),
    approvalRouting: readApprovalRouting(get("approvalRouting"), read.list("approvers")),
  };
}

/** The routing table, checked as finops_core's ApprovalRouting::parse checks it (unknown fields refused: a typo such
 * as `acount` would otherwise route nothing). A JSON string (`-c approvalRouting='{...}'`) or an object (cdk.json). */
function readApprovalRouting(raw: unknown, approvers: string[]): ApprovalRouting | undefined {
  if (raw === undefined || raw === null || String(raw).trim() === "") return undefined;
  const fail = (why: string): never => {
    throw new ConfigError(`context approvalRouting: ${why}`);
  };
  let table: unknown = raw;
  if (typeof raw === "string") {
    try {
      table = JSON.parse(raw);
    } catch (e) {
      fail(`not valid JSON: ${(e as Error).message}`);
    }
  }
  if (table === null || typeof table !== "object" || Array.isArray(table)) fail('expected a JSON object {"routes": [...], "default": [...]}');
  const t = table as Record<string, unknown>;
  const unknownKey = Object.keys(t).find((k) => !["routes", "default", "defaultSlackChannel", "defaultSlackUsers"].includes(k));
  if (unknownKey !== undefined) fail(`unknown field ${JSON.stringify(unknownKey)}`);
  const emails = (where: string, value: unknown): string[] => {
    if (!Array.isArray(value) || value.some((a) => typeof a !== "string" || !EMAIL.test(a))) fail(`${where}: a list of email addresses`);
    return value as string[];
  };
  const slackUsers = (where: string, value: unknown): string[] => {
    if (!Array.isArray(value) || value.some((u) => typeof u !== "string" || !SLACK_USER.test(u))) fail(`${where}: a list of Slack user ids (like U0123ABCD)`);
    return value as string[];
  };
  const routes = (t.routes === undefined ? [] : Array.isArray(t.routes) ? t.routes : fail("routes: a list")).map((r: unknown, i: number) => {
    const n = i + 1;
    if (r === null || typeof r !== "object" || Array.isArray(r)) fail(`route ${n}: an object`);
    const route = r as Record<string, unknown>;
    const bad = Object.keys(route).find((k) => !["account", "ou", "tag", "approvers", "slackChannel", "slackUsers"].includes(k));
    if (bad !== undefined) fail(`route ${n}: unknown field ${JSON.stringify(bad)}`);
    const matchers = ["account", "ou", "tag"].filter((k) => route[k] !== undefined);
    if (matchers.length !== 1) fail(`route ${n} must match on exactly one of account, ou or tag`);
    if (route.account !== undefined && !ACCOUNT_ID.test(String(route.account))) fail(`route ${n}: ${JSON.stringify(route.account)} is not an AWS account id (12 digits)`);
    if (route.ou !== undefined && !OU_ID.test(String(route.ou))) fail(`route ${n}: ${JSON.stringify(route.ou)} is not an organizational unit id`);
    if (route.tag !== undefined && !/^[^=]*[^=\s][^=]*=/.test(String(route.tag))) fail(`route ${n}: tag must be key=value`);
    const list = emails(`route ${n} approvers`, route.approvers);
    if (list.length === 0) fail(`route ${n} names no approver`);
    if (route.slackChannel !== undefined && !SLACK_ID.test(String(route.slackChannel))) fail(`route ${n}: slackChannel ${JSON.stringify(route.slackChannel)} is not a Slack channel id (like C0123ABCD)`);
    const users = route.slackUsers === undefined ? [] : slackUsers(`route ${n} slackUsers`, route.slackUsers);
    if (route.slackChannel !== undefined && users.length === 0) fail(`route ${n}: slackChannel needs slackUsers (the Slack user ids whose clicks decide there)`);
    const [key] = matchers;
    return {
      [key]: String(route[key]),
      approvers: list,
      ...(route.slackChannel === undefined ? {} : { slackChannel: String(route.slackChannel) }),
      ...(users.length === 0 ? {} : { slackUsers: users }),
    } as RouteEntry;
  });
  const ownDefault = t.default === undefined ? [] : emails("default", t.default);
  if (t.defaultSlackChannel !== undefined && !SLACK_ID.test(String(t.defaultSlackChannel))) fail(`defaultSlackChannel ${JSON.stringify(t.defaultSlackChannel)} is not a Slack channel id (like C0123ABCD)`);
  const defaultUsers = t.defaultSlackUsers === undefined ? [] : slackUsers("defaultSlackUsers", t.defaultSlackUsers);
  if (t.defaultSlackChannel !== undefined && defaultUsers.length === 0) fail("defaultSlackChannel needs defaultSlackUsers (the Slack user ids whose clicks decide there)");
  return {
    routes,
    default: ownDefault.length > 0 ? ownDefault : approvers,
    ...(t.defaultSlackChannel === undefined ? {} : { defaultSlackChannel: String(t.defaultSlackChannel) }),
    ...(defaultUsers.length === 0 ? {} : { defaultSlackUsers: defaultUsers }),
  };
}

