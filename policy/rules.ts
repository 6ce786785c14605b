// The platform's guarantees as pure functions of a resource's type and properties, so they are
// unit-tested without an engine. policies.ts wires them into Pulumi policies.

/** A resource as a policy sees it. */
export interface Resource {
    type: string;
    urn: string;
    props: Record<string, any>;
    /** URNs of the resources each input property came from (known even when values are not). */
    propertyDependencies?: Record<string, string[]>;
    /** The resource's protect option. */
    protect?: boolean;
}

const POD_TEMPLATE_PATHS: Record<string, string[]> = {
    "kubernetes:core/v1:Pod": ["spec"],
    "kubernetes:apps/v1:Deployment": ["spec", "template", "spec"],
    "kubernetes:apps/v1:StatefulSet": ["spec", "template", "spec"],
    "kubernetes:apps/v1:DaemonSet": ["spec", "template", "spec"],
    "kubernetes:apps/v1:ReplicaSet": ["spec", "template", "spec"],
    "kubernetes:batch/v1:Job": ["spec", "template", "spec"],
    "kubernetes:batch/v1:CronJob": ["spec", "jobTemplate", "spec", "template", "spec"],
};

function at(obj: any, path: string[]): any {
    return path.reduce((o, k) => (o === undefined || o === null ? undefined : o[k]), obj);
}

/** Containers with a tag that is not `latest`, or a digest; and CPU and memory requests. */
export function pinnedImagesAndRequests(r: Resource): string[] {
    const path = POD_TEMPLATE_PATHS[r.type];
    if (!path) return [];
    const pod = at(r.props, path);
    const containers = [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])];
    const problems: string[] = [];
    for (const c of containers) {
        const image: string = c.image ?? "";
        const lastSegment = image.split("/").pop() ?? "";
        const tag = lastSegment.includes(":") ? lastSegment.split(":").pop() : undefined;
        if (!image.includes("@sha256:") && (tag === undefined || tag === "latest")) {
            problems.push(`container ${c.name}: image "${image}" is not pinned (use a version tag or a digest, never latest)`);
        }
        if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory) {
            problems.push(`container ${c.name}: has no CPU and memory requests`);
        }
    }
    return problems;
}

/** PostgreSQL never sits behind a Service reachable from outside the cluster. */
export function noPublicPostgresService(r: Resource): string[] {
    if (r.type !== "kubernetes:core/v1:Service") return [];
    const type = r.props.spec?.type;
    const selector: Record<string, string> = r.props.spec?.selector ?? {};
    const selectsPostgres = Object.values(selector).some((v) => /postgres/i.test(String(v))) || (r.props.spec?.ports ?? []).some((p: { port?: number }) => p.port === 5432);
    if ((type === "LoadBalancer" || type === "NodePort") && selectsPostgres) {
        return [`Service of type ${type} exposes PostgreSQL (selector ${JSON.stringify(selector)}); use ClusterIP and kubectl port-forward`];
    }
    return [];
}

/** StatefulSet volumes live on the platform's encrypted, expandable StorageClass. */
export function claimsOnStorageClass(r: Resource, allowed: string[]): string[] {
    if (r.type !== "kubernetes:apps/v1:StatefulSet") return [];
    return (r.props.spec?.volumeClaimTemplates ?? [])
        .filter((t: any) => !allowed.includes(t.spec?.storageClassName))
        .map((t: any) => `volumeClaimTemplate ${t.metadata?.name}: storageClassName ${JSON.stringify(t.spec?.storageClassName)} is not one of ${allowed.join(", ")}`);
}

const POLICY_DOCUMENTS: Record<string, (props: Record<string, any>) => unknown[]> = {
    "aws:iam/rolePolicy:RolePolicy": (p) => [p.policy],
    "aws:iam/policy:Policy": (p) => [p.policy],
    "aws:iam/role:Role": (p) => [p.assumeRolePolicy, ...(p.inlinePolicies ?? []).map((i: { policy?: string }) => i.policy)],
    "aws:s3/bucketPolicy:BucketPolicy": (p) => [p.policy],
};

/**
 * No Allow statement with a wildcard action (or NotAction, which grants everything else). Deny
 * statements may use wildcards: they only take permissions away (e.g. deny s3:* without TLS).
 */
export function noWildcardActions(r: Resource): string[] {
    const docs = POLICY_DOCUMENTS[r.type]?.(r.props) ?? [];
    const problems: string[] = [];
    for (const doc of docs) {
        if (typeof doc !== "string") continue; // unknown during preview: checked at update
        let parsed: { Statement?: any };
        try {
            parsed = JSON.parse(doc);
        } catch {
            problems.push("policy document is not valid JSON");
            continue;
        }
        for (const s of [].concat(parsed.Statement ?? [])) {
            const st = s as { Effect?: string; Action?: string | string[]; NotAction?: unknown; Sid?: string };
            if (st.Effect !== "Allow") continue;
            if (st.NotAction !== undefined) problems.push(`statement ${st.Sid ?? ""} allows NotAction`);
            for (const a of ([] as string[]).concat(st.Action ?? [])) {
                if (a.includes("*")) problems.push(`statement ${st.Sid ?? ""} allows wildcard action ${a}`);
            }
        }
    }
    return problems;
}

// Keys whose values are credentials. References to Secrets (passwordKey, existingDatabaseSecret,
// ...) end differently or hold objects; those that hold a Secret's name (kube-prometheus-stack's
// grafana.admin.existingSecret, alertmanagerSpec.configSecret) are listed as references.
const SECRET_KEY = /(password|passwd|secret|secretkey|token|apikey|accesskey|accesskeyid|connectionstring|privatekey)$/i;
const SECRET_REFERENCE_KEY = /^(existingSecret|configSecret)$/;
const SECRET_VALUE = /(-----BEGIN [A-Z ]*PRIVATE KEY-----|AKIA[0-9A-Z]{16}|postgres(ql)?:\/\/[^:/\s]+:[^@\s]+@)/;

function findSecrets(value: unknown, path: string, out: string[]): void {
    if (Array.isArray(value)) value.forEach((v, i) => findSecrets(v, `${path}[${i}]`, out));
    else if (value !== null && typeof value === "object") {
        for (const [k, v] of Object.entries(value)) {
            const p = path ? `${path}.${k}` : k;
            if (typeof v === "string" && v !== "" && SECRET_KEY.test(k) && !/^keyOf/.test(k) && !SECRET_REFERENCE_KEY.test(k)) out.push(`${p} holds a credential in plain text`);
            else findSecrets(v, p, out);
        }
    } else if (typeof value === "string" && SECRET_VALUE.test(value)) {
        out.push(`${path} contains what looks like a credential`);
    }
}

/** Credentials live in Kubernetes Secrets, never in ConfigMaps or Helm values (both are plain text). */
export function noSecretsInPlainConfig(r: Resource): string[] {
    const out: string[] = [];
    if (r.type === "kubernetes:core/v1:ConfigMap") findSecrets(r.props.data ?? {}, "data", out);
    else if (r.type === "kubernetes:helm.sh/v3:Release" || r.type === "kubernetes:helm.sh/v4:Chart") findSecrets(r.props.values ?? {}, "values", out);
    return out;
}

/** Every S3 bucket is versioned, encrypted by default and blocks all public access. */
export function bucketsHardened(resources: Resource[]): { urn: string; problem: string }[] {
    const refersTo = (r: Resource, bucket: Resource) =>
        (r.propertyDependencies?.bucket ?? []).includes(bucket.urn) ||
        (r.props.bucket !== undefined && (r.props.bucket === bucket.props.id || r.props.bucket === bucket.props.bucket));
    const problems: { urn: string; problem: string }[] = [];
    for (const bucket of resources.filter((r) => r.type === "aws:s3/bucket:Bucket")) {
        const related = (type: string) => resources.filter((r) => r.type === type && refersTo(r, bucket));
        if (!related("aws:s3/bucketVersioning:BucketVersioning").some((v) => v.props.versioningConfiguration?.status === "Enabled")) {
            problems.push({ urn: bucket.urn, problem: "bucket is not versioned (aws.s3.BucketVersioning with status Enabled)" });
        }
        if (related("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration").length === 0) {
            problems.push({ urn: bucket.urn, problem: "bucket has no default encryption (aws.s3.BucketServerSideEncryptionConfiguration)" });
        }
        const blocks = related("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock");
        if (!blocks.some((b) => ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"].every((k) => b.props[k] === true))) {
            problems.push({ urn: bucket.urn, problem: "bucket does not block all public access (aws.s3.BucketPublicAccessBlock with all four settings true)" });
        }
    }
    return problems;
}

/** The stack a URN belongs to: urn:pulumi:<stack>::<project>::<type>::<name>. */
export function stackOf(urn: string): string | undefined {
    return /^urn:pulumi:([^:]+)::/.exec(urn)?.[1];
}

/** The label of a StorageClass only ephemeral volumes use (components/storageClass.ts). */
export const EPHEMERAL_ONLY_LABEL = "platform/ephemeral-volumes-only";

/**
 * In a production stack, nothing that holds data can be deleted by a destroy or a deleted claim:
 * the StorageClass retains volumes, the database StatefulSet and the buckets are protected, the
 * StatefulSet keeps its claims and no bucket is force-destroyable. The program's config refuses
 * these combinations too (config/); this catches a program change or a hand-edited state.
 */
export function productionDataRetained(r: Resource, productionStacks: string[]): string[] {
    const stack = stackOf(r.urn);
    if (stack === undefined || !productionStacks.includes(stack)) return [];
    const problems: string[] = [];
    switch (r.type) {
        case "kubernetes:storage.k8s.io/v1:StorageClass":
            // The scratch class of ephemeral volumes (restore/verify jobs) must delete them: its
            // claims die with their pod, and under Retain every run would leave a volume behind.
            if (r.props.metadata?.labels?.[EPHEMERAL_ONLY_LABEL] === "true") break;
            if (r.props.reclaimPolicy !== "Retain") problems.push(`StorageClass reclaimPolicy is ${JSON.stringify(r.props.reclaimPolicy ?? "Delete")} in production stack ${stack}: a deleted claim would delete its EBS volume (use Retain)`);
            break;
        case "kubernetes:apps/v1:StatefulSet":
            if (r.protect !== true) problems.push(`StatefulSet is not protected in production stack ${stack}`);
            if (r.props.spec?.persistentVolumeClaimRetentionPolicy?.whenDeleted === "Delete") problems.push(`StatefulSet deletes its volume claims when deleted, in production stack ${stack}`);
            break;
        case "aws:s3/bucket:Bucket":
            if (r.protect !== true) problems.push(`bucket is not protected in production stack ${stack}`);
            if (r.props.forceDestroy === true) problems.push(`bucket is forceDestroy in production stack ${stack}: a destroy would empty it`);
            break;
    }
    return problems;
}
