// One typed, validated view of a stack's configuration. Every default and rule lives in this
// directory, one file per section (cluster.ts, data.ts, backup.ts, mlflow.ts, monitoring.ts);
// everything is checked at program start, and all problems are reported together so a user fixes
// a stack file in one pass instead of one `pulumi preview` per typo.
import * as pulumi from "@pulumi/pulumi";
import { backupConfig } from "./backup";
import { bool, noUnknownKeys, Problems, str } from "./checks";
import { clusterConfig } from "./cluster";
import { postgresConfig, storageConfig } from "./data";
import { mlflowConfig } from "./mlflow";
import { alertReceiverConfig, monitoringConfig } from "./monitoring";
import { PlatformConfig, RawConfig, SECRET_KEYS, TOP_LEVEL_KEYS } from "./types";

export * from "./types";
export { cronMaxIntervalSeconds, cronProblem, timeZoneProblem } from "./cron";
export { didYouMean, editDistance, isBinaryQuantity, isCpuQuantity, isDns1123Label, isIpv4Cidr, quantityBytes } from "./checks";
export { defaultDatabasePool, maxConnectionsFor, memoryFor, mlflowPeakConnections, RESERVED_CONNECTIONS, reservedConnections, WORK_MEM_FLOOR_MIB } from "./sizing";
export { EKS_LOG_TYPES } from "./cluster";

// Commercial partition only: IAM policy ARNs below are written as arn:aws:...
const REGION = /^(us|eu|ap|ca|sa|me|af|il|mx)-[a-z]+-[0-9]$/;

/**
 * Validates raw stack settings and fills in defaults. Throws one error naming every bad key,
 * its value and what is allowed. Pure, so tests can call it without a Pulumi runtime.
 */
export function validateConfig(stack: string, raw: RawConfig, secretKeys: readonly string[] = []): PlatformConfig {
    const p = new Problems();

    const region = str(p, "aws:region", raw.region, "", (s) => REGION.test(s), "is not an AWS commercial-partition region (e.g. us-east-1, eu-west-1)");
    if (raw.region === undefined) p.add("aws:region", undefined, "is required (pulumi config set aws:region us-east-1)");
    const { region: _region, awsProfile, ...own } = raw;
    if (awsProfile !== undefined && (typeof awsProfile !== "string" || awsProfile === "")) p.add("aws:profile", awsProfile, "is not a profile name");
    noUnknownKeys(p, "", own, TOP_LEVEL_KEYS);
    const protectData = bool(p, "protectData", raw.protectData, false);
    const allowDataLoss = bool(p, "allowDataLoss", raw.allowDataLoss, false);
    // A production stack: named prod, or holding data worth protecting. Its destroy must never take data.
    const production = stack === "prod" || protectData;

    const cluster = clusterConfig(p, raw.cluster, region, stack);
    const storage = storageConfig(p, raw.storage, production);

    if (production && !allowDataLoss) {
        const why = stack === "prod" ? `stack "prod"` : "a stack with protectData: true";
        if (!protectData) {
            p.add("protectData", protectData, `must be true in ${why}: without it pulumi destroy deletes the database, its Secrets and the buckets (set allowDataLoss: true to accept that)`);
        }
        if (storage.reclaimPolicy === "Delete") {
            p.add("storage.reclaimPolicy", storage.reclaimPolicy, `must be Retain in ${why}: with Delete, deleting the claim or the stack deletes the EBS volume and the database on it (set allowDataLoss: true to accept that)`);
        }
    }

    const postgres = postgresConfig(p, raw.postgres);
    const backup = backupConfig(p, raw.backup);
    const mlflow = mlflowConfig(p, raw.mlflow, stack, postgres, cluster);

    const monitoring = monitoringConfig(p, raw.monitoring, stack === "prod" ? "prod" : "dev");
    for (const ns of [postgres.namespace, mlflow.namespace]) {
        if (monitoring.mode !== "none" && monitoring.namespace === ns) {
            p.add("monitoring.namespace", monitoring.namespace, "must differ from postgres.namespace and mlflow.namespace (the database admits the scrape from this namespace only)");
        }
    }
    const alertReceiver = alertReceiverConfig(p, raw.alertReceiver, secretKeys.includes("alertReceiver"), monitoring.mode);

    if (p.list.length > 0) {
        throw new pulumi.RunError(`Invalid configuration for stack "${stack}":\n  - ${p.list.join("\n  - ")}`);
    }
    return { stack, region, awsProfile: awsProfile as string | undefined, protectData, allowDataLoss, cluster, storage, postgres, backup, mlflow, monitoring, alertReceiver };
}

/**
 * Every key of the project's namespace as the CLI passes config (strings; objects and scalars as
 * JSON), parsed where it is JSON and kept as the string it is otherwise, so that a bad value
 * (`protectData: "yes"`) is reported with the rest instead of as the SDK's JSON parse error.
 */
export function rawConfigFrom(all: Record<string, string>, project: string): RawConfig {
    const raw: RawConfig = { region: all["aws:region"], awsProfile: all["aws:profile"] };
    const prefix = `${project}:`;
    for (const [key, text] of Object.entries(all)) {
        if (!key.startsWith(prefix)) continue;
        // Keys that would shadow the aws: ones keep their namespace, and are reported as unknown.
        const name = key === `${prefix}region` || key === `${prefix}awsProfile` ? key : key.slice(prefix.length);
        let value: unknown = text;
        try {
            value = JSON.parse(text);
        } catch {
            // a plain string
        }
        raw[name] = value;
    }
    return raw;
}

/**
 * Whether the engine passed a key as a secret. The SDK's own Config uses this function; it is
 * marked internal, so it is reached through the module that defines it (runtime/config.js).
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { isConfigSecret } = require("@pulumi/pulumi/runtime/config") as { isConfigSecret(key: string): boolean };

/** Reads the current stack's configuration and validates it. */
export function loadConfig(): PlatformConfig {
    const project = pulumi.getProject();
    const secretKeys = SECRET_KEYS.filter((k) => isConfigSecret(`${project}:${k}`));
    return validateConfig(pulumi.getStack(), rawConfigFrom(pulumi.runtime.allConfig(), project), secretKeys);
}
