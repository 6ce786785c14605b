// Day-2 safety: what a later `pulumi up` or `pulumi destroy` does to data that already exists.
// Claims are tested by evaluating the program twice and comparing what it registers.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DATA_CLAIM_NAME, TEMPLATE_SIZE_PATH } from "../components/postgres";
import { validateConfig } from "../config";
import { Evaluation } from "../scripts/evaluate";
import { all, changesBetween, clusterProviderRef, differingPaths, one, stack, STACKS } from "./support/stacks";

const STATEFULSET = "kubernetes:apps/v1:StatefulSet::postgres-statefulset";
const CLAIM_PATCH = "kubernetes:core/v1:PersistentVolumeClaimPatch::postgres-data-size";
const BACKUP_CRON = "kubernetes:batch/v1:CronJob::backup-postgres-backup";
const BACKUP_CONTAINER = "spec.jobTemplate.spec.template.spec.containers[0]";
const statefulSet = (ev: Evaluation) => one(ev, "kubernetes:apps/v1:StatefulSet", "postgres-statefulset");
const claimPatch = (ev: Evaluation) => one(ev, "kubernetes:core/v1:PersistentVolumeClaimPatch", "postgres-data-size");

for (const name of STACKS) {
    const size = name === "prod" ? "100Gi" : "20Gi";
    const bigger = name === "prod" ? "200Gi" : "40Gi";

    describe(`growing the database volume (${name}: ${size} -> ${bigger})`, () => {
        it("changes one thing: the live claim's size; the StatefulSet is registered identically", async () => {
            const before = await stack(name);
            const after = await stack(name, {
                "mlflow-platform:postgres.storageSize": bigger,
                "mlflow-platform:postgres.previousStorageSizes": [size],
            });
            const changes = changesBetween(before, after);
            assert.deepEqual({ added: changes.added, removed: changes.removed }, { added: [], removed: [] });
            // The backup container's memory follows the volume (backupMemoryMi): an in-place CronJob update, in prod where 200Gi needs bigger multipart chunks.
            const backupMemory = name === "prod"
                ? [[BACKUP_CRON, { inputs: [`${BACKUP_CONTAINER}.resources.limits.memory`, `${BACKUP_CONTAINER}.resources.requests.memory`], options: [] }]]
                : [];
            assert.deepEqual([...changes.changed], [[CLAIM_PATCH, { inputs: ["spec.resources.requests.storage"], options: [] }], ...backupMemory]);
            assert.equal(statefulSet(after).inputs.spec.volumeClaimTemplates[0].spec.resources.requests.storage, size, "the template keeps the size it was created with");

            const [patchBefore, patchAfter] = [claimPatch(before), claimPatch(after)];
            assert.equal(patchBefore.inputs.spec.resources.requests.storage, size, "first up: the patch asks for what the template created");
            assert.equal(patchAfter.inputs.spec.resources.requests.storage, bigger);
            assert.equal(patchAfter.inputs.metadata.name, DATA_CLAIM_NAME);
            assert.equal(DATA_CLAIM_NAME, `${statefulSet(after).inputs.spec.volumeClaimTemplates[0].metadata.name}-${statefulSet(after).inputs.metadata.name}-0`);
            assert.equal(patchAfter.inputs.metadata.namespace, statefulSet(after).inputs.metadata.namespace);
            assert.deepEqual(Object.keys(patchAfter.inputs.spec), ["resources"], "applies the size and nothing else");
            assert.equal(patchAfter.inputs.metadata.annotations["pulumi.com/patchForce"], "true", "the StatefulSet controller wrote the size first");
            assert.equal(patchAfter.inputs.metadata.annotations["pulumi.com/patchFieldManager"], "platform-postgres-volume-size");
            assert.equal(patchAfter.provider, clusterProviderRef(after));
            assert.ok(patchAfter.dependsOn.includes(STATEFULSET), "applies only once the claim exists");
            assert.equal(patchAfter.retainOnDelete, true, "deleting the patch never touches the claim");
            const sc = all(after, "kubernetes:storage.k8s.io/v1:StorageClass").find((c) => c.inputs.metadata.name === statefulSet(after).inputs.spec.volumeClaimTemplates[0].spec.storageClassName)!;
            assert.equal(sc.inputs.allowVolumeExpansion, true, "the claim's class allows expansion");
        });

        it("never replaces the StatefulSet when the old size is not recorded: the template's size is ignored", async () => {
            const before = await stack(name);
            const after = await stack(name, { "mlflow-platform:postgres.storageSize": bigger });
            const changes = changesBetween(before, after);
            assert.deepEqual(changes.changed.get(STATEFULSET), { inputs: [TEMPLATE_SIZE_PATH], options: [] });
            assert.deepEqual(statefulSet(after).ignoreChanges, [TEMPLATE_SIZE_PATH], "the one changed field is ignored, so no replacement");
            assert.deepEqual(differingPaths(claimPatch(before).inputs, claimPatch(after).inputs), ["spec.resources.requests.storage"]);
            assert.deepEqual([...changes.changed.keys()].sort(), [CLAIM_PATCH, STATEFULSET, ...(name === "prod" ? [BACKUP_CRON] : [])].sort());
        });
    });
}

describe("shrinking the database volume", () => {
    const base = { region: "us-east-1" };
    it("is refused at program start, naming the key, the value and the previous size", () => {
        assert.throws(() => validateConfig("test", { ...base, postgres: { storageSize: "30Gi", previousStorageSizes: ["20Gi", "40Gi"] } }), (err: Error) => {
            assert.match(err.message, /- postgres\.storageSize: "30Gi" is not larger than 40Gi, the volume's previous size \(postgres\.previousStorageSizes\); a volume can only grow/);
            return true;
        });
        assert.throws(() => validateConfig("test", { ...base, postgres: { storageSize: "40Gi", previousStorageSizes: ["40Gi"] } }), /postgres\.storageSize: "40Gi" is not larger than 40Gi/);
        assert.throws(() => validateConfig("test", { ...base, postgres: { storageSize: "80Gi", previousStorageSizes: ["40Gi", "20Gi"] } }), /postgres\.previousStorageSizes\[1\]: "20Gi" is not larger than 40Gi/);
        assert.throws(() => validateConfig("test", { ...base, postgres: { previousStorageSizes: ["20GB"] } }), /postgres\.previousStorageSizes\[0\]: "20GB" is not a Kubernetes quantity/);
    });
    it("accepts a growth history, oldest first", () => {
        const c = validateConfig("test", { ...base, postgres: { storageSize: "1Ti", previousStorageSizes: ["20Gi", "40Gi", "512Gi"] } });
        assert.deepEqual(c.postgres.previousStorageSizes, ["20Gi", "40Gi", "512Gi"]);
        assert.deepEqual(validateConfig("dev", base).postgres.previousStorageSizes, []);
    });
});

/** Every ephemeral volume claim template in a Kubernetes object, wherever its pod spec sits. */
function ephemeralClaims(v: unknown, at: string, out: { at: string; spec: any }[] = []): { at: string; spec: any }[] {
    if (Array.isArray(v)) v.forEach((x, i) => ephemeralClaims(x, `${at}[${i}]`, out));
    else if (v && typeof v === "object") {
        for (const [k, x] of Object.entries(v)) {
            if (k === "ephemeral") out.push({ at: `${at}.${k}`, spec: (x as any).volumeClaimTemplate.spec });
            else ephemeralClaims(x, `${at}.${k}`, out);
        }
    }
    return out;
}

for (const name of STACKS) {
    describe(`scratch volumes (${name})`, () => {
        it("every ephemeral claim names a StorageClass that deletes its volume with the claim", async () => {
            const ev = await stack(name);
            const classes = new Map(all(ev, "kubernetes:storage.k8s.io/v1:StorageClass").map((c) => [c.inputs.metadata.name as string, c]));
            const claims = ev.resources.filter((r) => r.type.startsWith("kubernetes:")).flatMap((r) => ephemeralClaims(r.inputs, r.name));
            assert.ok(claims.length >= 2, "the restore and verify jobs have scratch volumes");
            for (const c of claims) {
                // Without a class name the default class applies, which is Retain in prod.
                const sc = classes.get(c.spec.storageClassName);
                assert.ok(sc, `${c.at}: StorageClass ${c.spec.storageClassName} is one of ours`);
                assert.equal(sc.inputs.reclaimPolicy, "Delete", `${c.at} uses ${sc.inputs.metadata.name}`);
            }
        });

        it("the scratch class is encrypted, binds in the pod's zone and is never the default", async () => {
            const ev = await stack(name);
            const scratch = one(ev, "kubernetes:storage.k8s.io/v1:StorageClass", "storage-scratch");
            const platform = one(ev, "kubernetes:storage.k8s.io/v1:StorageClass", "storage-class");
            assert.equal(platform.inputs.reclaimPolicy, name === "prod" ? "Retain" : "Delete");
            assert.equal(scratch.inputs.metadata.name, "gp2-csi-scratch");
            assert.equal(scratch.inputs.provisioner, "ebs.csi.aws.com");
            assert.equal(scratch.inputs.parameters.encrypted, "true");
            assert.deepEqual(scratch.inputs.parameters, platform.inputs.parameters, "same volume type, encryption and key");
            assert.equal(scratch.inputs.volumeBindingMode, "WaitForFirstConsumer");
            assert.equal(scratch.inputs.metadata.annotations["storageclass.kubernetes.io/is-default-class"], "false");
            assert.equal(scratch.provider, clusterProviderRef(ev));
        });
    });

    describe(`retained buckets (${name})`, () => {
        it(name === "prod"
            ? "everything that hardens a retained bucket is retained and protected with it"
            : "nothing is retained, so dev's destroy removes buckets with their settings", async () => {
            const ev = await stack(name);
            const buckets = all(ev, "aws:s3/bucket:Bucket");
            assert.ok(buckets.length >= 2);
            for (const b of buckets) {
                assert.equal(b.retainOnDelete, name === "prod", b.name);
                // The bucket's component siblings and anything else configuring the bucket by its id.
                const hardening = ev.resources.filter((r) => r !== b && r.custom && (r.parent === b.parent || r.inputs.bucket === b.outputs.id));
                const types = new Set(hardening.map((r) => r.type));
                for (const t of ["aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "aws:s3/bucketPolicy:BucketPolicy", "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"]) {
                    assert.ok(types.has(t), `${b.name}: ${t}`);
                }
                for (const r of hardening) {
                    assert.deepEqual({ retainOnDelete: r.retainOnDelete, protect: r.protect }, { retainOnDelete: b.retainOnDelete, protect: b.protect }, `${r.type} ${r.name}`);
                }
            }
            if (name === "prod") {
                assert.ok(ev.resources.some((r) => r.type === "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration" && r.retainOnDelete && r.protect));
            }
        });
    });
}

describe("turning MLflow login on in a stack that ran without it (dev: mlflow.auth false -> true)", () => {
    const RELEASE = "kubernetes:helm.sh/v3:Release::mlflow-release";
    it("adds the admin login and a ServiceMonitor that logs in, upgrades only the MLflow release, and touches no data", async () => {
        const before = await stack("dev");
        const after = await stack("dev", { "mlflow-platform:mlflow.auth": true });
        const changes = changesBetween(before, after);
        assert.deepEqual(changes.removed, []);
        assert.deepEqual([...changes.added].sort(), [
            "kubernetes:core/v1:Secret::mlflow-admin",
            "kubernetes:monitoring.coreos.com/v1:ServiceMonitor::mlflow-servicemonitor",
            "random:index/randomPassword:RandomPassword::mlflow-admin-password",
        ]);
        // The StatefulSet, its volume, the database Secrets, the role reconcile and the buckets are
        // registered identically: nothing restarts PostgreSQL or replaces anything holding data.
        assert.deepEqual([...changes.changed.keys()], [RELEASE]);
        assert.deepEqual(changes.changed.get(RELEASE)!.options, ["dependsOn"]);
        const release = one(after, "kubernetes:helm.sh/v3:Release", "mlflow-release");
        assert.ok(release.dependsOn.includes("kubernetes:core/v1:Secret::mlflow-admin"), "the admin Secret exists before the pods read it");
        assert.ok(release.dependsOn.includes("kubernetes:batch/v1:Job::postgres-roles-job"), "and the user store's database and grants before MLflow connects");
        // The user store's database was there from the first up, whatever mlflow.auth said: the
        // init script and the reconcile made it, and the backups already included it.
        assert.equal(release.inputs.values.auth.postgres.database, "mlflow_auth");
        const env = statefulSet(before).inputs.spec.template.spec.containers[0].env as { name: string; value?: string }[];
        assert.equal(env.find((e) => e.name === "MLFLOW_AUTH_DB_NAME")?.value, "mlflow_auth");
        assert.ok(validateConfig("dev", { region: "us-east-1" }).backup.databases.includes("mlflow_auth"));
        // The pool is recomputed for the auth engine each worker opens, within max_connections.
        assert.deepEqual(changes.changed.get(RELEASE)!.inputs.filter((p) => p.startsWith("values.extraEnvVars")).sort(),
            ["values.extraEnvVars.MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "values.extraEnvVars.MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]);
    });
});
