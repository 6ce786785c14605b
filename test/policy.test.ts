import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy } from "@pulumi/policy";
import { EPHEMERAL_ONLY_LABEL } from "../components/storageClass";
import { policies } from "../policy/policies";
import * as rules from "../policy/rules";
import { Evaluation } from "../scripts/evaluate";
import { stack, STACKS } from "./support/stacks";

const res = (type: string, props: Record<string, any>, urn = `urn:${type}`): rules.Resource => ({ type, urn, props });

function podOf(containers: object[]) {
    return { spec: { template: { spec: { containers } } } };
}
const goodContainer = { name: "app", image: "public.ecr.aws/docker/library/postgres:17.6", resources: { requests: { cpu: "100m", memory: "128Mi" } } };

describe("policy rules", () => {
    it("pinned-images-with-requests", () => {
        assert.deepEqual(rules.pinnedImagesAndRequests(res("kubernetes:apps/v1:StatefulSet", podOf([goodContainer]))), []);
        assert.deepEqual(rules.pinnedImagesAndRequests(res("kubernetes:apps/v1:Deployment", podOf([{ ...goodContainer, image: "registry.local:5000/app@sha256:" + "a".repeat(64) }]))), []);
        for (const image of ["postgres", "postgres:latest", "registry.local:5000/postgres"]) {
            assert.match(rules.pinnedImagesAndRequests(res("kubernetes:apps/v1:StatefulSet", podOf([{ ...goodContainer, image }])))[0], /not pinned/, image);
        }
        const cron = { spec: { jobTemplate: { spec: { template: { spec: { initContainers: [{ name: "init", image: "busybox:1.38.0" }], containers: [goodContainer] } } } } } };
        assert.deepEqual(rules.pinnedImagesAndRequests(res("kubernetes:batch/v1:CronJob", cron)), ["container init: has no CPU and memory requests"]);
    });

    it("no-public-postgres-service", () => {
        const svc = (type: string, selector: object) => res("kubernetes:core/v1:Service", { spec: { type, selector, ports: [{ port: 5432 }] } });
        assert.deepEqual(rules.noPublicPostgresService(svc("ClusterIP", { "app.kubernetes.io/name": "postgres" })), []);
        assert.deepEqual(rules.noPublicPostgresService(res("kubernetes:core/v1:Service", { spec: { type: "LoadBalancer", selector: { app: "mlflow" }, ports: [{ port: 80 }] } })), []);
        assert.equal(rules.noPublicPostgresService(svc("LoadBalancer", { "app.kubernetes.io/name": "postgres" })).length, 1);
        assert.equal(rules.noPublicPostgresService(svc("NodePort", { app: "db" })).length, 1, "port 5432 gives it away");
    });

    it("statefulset-claims-on-platform-storage-class", () => {
        const sts = (storageClassName?: string) => res("kubernetes:apps/v1:StatefulSet", { spec: { volumeClaimTemplates: [{ metadata: { name: "data" }, spec: { storageClassName } }] } });
        assert.deepEqual(rules.claimsOnStorageClass(sts("gp2-csi"), ["gp2-csi"]), []);
        assert.match(rules.claimsOnStorageClass(sts("gp2"), ["gp2-csi"])[0], /storageClassName "gp2"/);
        assert.equal(rules.claimsOnStorageClass(sts(undefined), ["gp2-csi"]).length, 1, "the cluster default is not good enough");
    });

    it("no-wildcard-iam-actions", () => {
        const doc = (Effect: string, Action: string | string[]) => JSON.stringify({ Version: "2012-10-17", Statement: [{ Sid: "S", Effect, Action, Resource: "*" }] });
        assert.deepEqual(rules.noWildcardActions(res("aws:iam/rolePolicy:RolePolicy", { policy: doc("Allow", ["s3:GetObject"]) })), []);
        assert.deepEqual(rules.noWildcardActions(res("aws:s3/bucketPolicy:BucketPolicy", { policy: doc("Deny", "s3:*") })), [], "a wildcard Deny only takes away");
        assert.match(rules.noWildcardActions(res("aws:iam/rolePolicy:RolePolicy", { policy: doc("Allow", "s3:*") }))[0], /wildcard action s3:\*/);
        assert.match(rules.noWildcardActions(res("aws:iam/policy:Policy", { policy: doc("Allow", ["s3:Get*"]) }))[0], /s3:Get\*/);
        assert.match(rules.noWildcardActions(res("aws:iam/role:Role", { assumeRolePolicy: doc("Allow", "sts:*") }))[0], /sts:\*/);
        assert.match(rules.noWildcardActions(res("aws:iam/role:Role", { inlinePolicies: [{ policy: doc("Allow", "*") }] }))[0], /action \*/);
        assert.match(rules.noWildcardActions(res("aws:iam/rolePolicy:RolePolicy", { policy: "{not json" }))[0], /not valid JSON/);
        assert.deepEqual(rules.noWildcardActions(res("aws:iam/rolePolicy:RolePolicy", { policy: undefined })), [], "unknown in preview");
    });

    it("no-secrets-in-plain-config", () => {
        const release = (values: object) => res("kubernetes:helm.sh/v3:Release", { values });
        assert.deepEqual(rules.noSecretsInPlainConfig(release({ backendStore: { existingDatabaseSecret: { name: "db", usernameKey: "username", passwordKey: "password" } } })), []);
        assert.deepEqual(rules.noSecretsInPlainConfig(release({ auth: { adminPassword: "" } })), [], "empty is the chart's default");
        assert.deepEqual(rules.noSecretsInPlainConfig(release({ grafana: { admin: { existingSecret: "grafana-admin", passwordKey: "admin-password" } }, alertmanager: { alertmanagerSpec: { configSecret: "alertmanager-platform" } } })), [], "names of Secrets");
        assert.equal(rules.noSecretsInPlainConfig(release({ grafana: { adminPassword: "hunter2" } })).length, 1);
        assert.deepEqual(rules.noSecretsInPlainConfig(release({ backendStore: { postgres: { password: "hunter2" } } })), ["values.backendStore.postgres.password holds a credential in plain text"]);
        assert.equal(rules.noSecretsInPlainConfig(release({ flaskServerSecretKey: "abc" })).length, 1);
        assert.equal(rules.noSecretsInPlainConfig(release({ artifactRoot: { s3: { awsSecretAccessKey: "abc" } } })).length, 1);
        const cm = (data: object) => res("kubernetes:core/v1:ConfigMap", { data });
        assert.deepEqual(rules.noSecretsInPlainConfig(cm({ "postgresql.conf": "password_encryption = 'scram-sha-256'\n" })), []);
        assert.equal(rules.noSecretsInPlainConfig(cm({ DB_PASSWORD: "x" })).length, 1);
        assert.equal(rules.noSecretsInPlainConfig(cm({ "app.env": "DATABASE_URL=postgresql://mlflow:s3cret@db:5432/mlflow" })).length, 1);
        assert.equal(rules.noSecretsInPlainConfig(cm({ "id": "AKIAABCDEFGHIJKLMNOP" })).length, 1);
    });

    it("production-data-retained", () => {
        const urn = (stack: string, type: string) => `urn:pulumi:${stack}::mlflow-platform::${type}::x`;
        const sc = (stack: string, reclaimPolicy: string) => ({ ...res("kubernetes:storage.k8s.io/v1:StorageClass", { reclaimPolicy }), urn: urn(stack, "sc") });
        assert.deepEqual(rules.productionDataRetained(sc("prod", "Retain"), ["prod"]), []);
        assert.deepEqual(rules.productionDataRetained(sc("dev", "Delete"), ["prod"]), [], "dev may throw its data away");
        assert.match(rules.productionDataRetained(sc("prod", "Delete"), ["prod"])[0], /reclaimPolicy is "Delete" in production stack prod/);
        assert.match(rules.productionDataRetained(sc("live", "Delete"), ["prod", "live"])[0], /production stack live/);
        const scratch = { ...sc("prod", "Delete"), props: { reclaimPolicy: "Delete", metadata: { labels: { [rules.EPHEMERAL_ONLY_LABEL]: "true" } } } };
        assert.deepEqual(rules.productionDataRetained(scratch, ["prod"]), [], "the scratch class of ephemeral volumes deletes them");
        assert.equal(rules.EPHEMERAL_ONLY_LABEL, EPHEMERAL_ONLY_LABEL, "the policy knows the component's label");
        const sts = (protect: boolean, whenDeleted: string) => ({ ...res("kubernetes:apps/v1:StatefulSet", { spec: { persistentVolumeClaimRetentionPolicy: { whenDeleted } } }), urn: urn("prod", "sts"), protect });
        assert.deepEqual(rules.productionDataRetained(sts(true, "Retain"), ["prod"]), []);
        assert.equal(rules.productionDataRetained(sts(false, "Delete"), ["prod"]).length, 2);
        const bucket = (protect: boolean, forceDestroy: boolean) => ({ ...res("aws:s3/bucket:Bucket", { forceDestroy }), urn: urn("prod", "b"), protect });
        assert.deepEqual(rules.productionDataRetained(bucket(true, false), ["prod"]), []);
        assert.deepEqual(rules.productionDataRetained(bucket(false, true), ["prod"]).map((m) => m.replace(/ in production.*/, "")), ["bucket is not protected", "bucket is forceDestroy"]);
    });

    it("s3-buckets-hardened", () => {
        const bucket = res("aws:s3/bucket:Bucket", { id: "b-id", bucket: "b" }, "urn:b");
        const versioning = res("aws:s3/bucketVersioning:BucketVersioning", { bucket: "b-id", versioningConfiguration: { status: "Enabled" } });
        const sse = res("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", { bucket: "b-id" });
        const pab = res("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", { bucket: "b-id", blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true });
        assert.deepEqual(rules.bucketsHardened([bucket, versioning, sse, pab]), []);
        // During preview the bucket id is unknown: property dependencies still tie them together.
        const previewed = [bucket, versioning, sse, pab].map((r, i) => (i === 0 ? { ...r, props: {} } : { ...r, props: { ...r.props, bucket: undefined }, propertyDependencies: { bucket: ["urn:b"] } }));
        assert.deepEqual(rules.bucketsHardened(previewed), []);
        assert.deepEqual(rules.bucketsHardened([bucket, sse, pab]).map((p) => p.problem), ["bucket is not versioned (aws.s3.BucketVersioning with status Enabled)"]);
        assert.match(rules.bucketsHardened([bucket, versioning, pab])[0].problem, /no default encryption/);
        assert.match(rules.bucketsHardened([bucket, versioning, sse, { ...pab, props: { ...pab.props, restrictPublicBuckets: false } }])[0].problem, /public access/);
    });
});

/** Runs every policy of the pack over an evaluated stack, as the engine would. */
function violations(ev: Evaluation): string[] {
    const out: string[] = [];
    const resources = ev.resources.map((r) => ({ type: r.type, urn: `urn:pulumi:${ev.stack}::mlflow-platform::${r.type}::${r.name}`, name: r.name, protect: r.protect, props: { ...r.inputs, id: r.outputs.id, bucket: r.inputs.bucket ?? r.outputs.bucket } }));
    for (const p of policies) {
        const report: (what: string) => ReportViolation = (what) => (message: string) => out.push(`${p.name} ${what}: ${message}`);
        if ("validateResource" in p && p.validateResource) {
            const validate = p.validateResource as (a: ResourceValidationArgs, r: ReportViolation) => void;
            for (const r of resources) {
                validate({ ...r, opts: { protect: r.protect }, getConfig: <T>() => ({ storageClassNames: ["gp2-csi"], productionStacks: ["prod"] }) as T } as unknown as ResourceValidationArgs, report(`${r.type}::${r.name}`));
            }
        }
        if ("validateStack" in p) {
            (p as StackValidationPolicy).validateStack({ resources, getConfig: () => ({}) } as unknown as StackValidationArgs, report("stack"));
        }
    }
    return out;
}

describe("policy pack", () => {
    it("wires each rule as a mandatory policy that reports violations", () => {
        assert.deepEqual(policies.map((p) => p.name).sort(), [
            "no-public-postgres-service", "no-secrets-in-plain-config", "no-wildcard-iam-actions",
            "pinned-images-with-requests", "production-data-retained", "s3-buckets-hardened", "statefulset-claims-on-platform-storage-class",
        ]);
        for (const p of policies) assert.equal(p.enforcementLevel, "mandatory", p.name);
        const pinned = policies.find((p) => p.name === "pinned-images-with-requests") as ResourceValidationPolicy;
        const reported: string[] = [];
        (pinned.validateResource as (a: ResourceValidationArgs, r: ReportViolation) => void)(
            { type: "kubernetes:apps/v1:StatefulSet", urn: "u", name: "n", props: podOf([{ name: "x", image: "postgres:latest" }]), opts: {}, getConfig: () => ({}) } as unknown as ResourceValidationArgs,
            (m) => reported.push(m),
        );
        assert.equal(reported.length, 2);
    });

    for (const name of STACKS) {
        it(`finds no violation in ${name}`, async () => {
            assert.deepEqual(violations(await stack(name)), []);
        });
    }

    it("finds an unprotected database and a deleting StorageClass in prod, as allowDataLoss would deploy them", async () => {
        const ev = await stack("prod", { "mlflow-platform:allowDataLoss": true, "mlflow-platform:protectData": false, "mlflow-platform:storage.reclaimPolicy": "Delete" });
        const found = violations(ev).filter((v) => v.startsWith("production-data-retained"));
        assert.ok(found.some((v) => v.includes("StorageClass::storage-class") && v.includes('reclaimPolicy is "Delete"')), found.join("\n"));
        assert.ok(found.some((v) => v.includes("StatefulSet::postgres-statefulset") && v.includes("not protected")), found.join("\n"));
        assert.ok(found.some((v) => v.includes("aws:s3/bucket:Bucket") && v.includes("forceDestroy")), found.join("\n"));
    });

    it("finds the violation when the program breaks a guarantee", async () => {
        const ev = structuredClone(await stack("dev"));
        const sts = ev.resources.find((r) => r.type === "kubernetes:apps/v1:StatefulSet")!;
        sts.inputs.spec.template.spec.containers[0].image = "postgres:latest";
        ev.resources = ev.resources.filter((r) => r.type !== "aws:s3/bucketVersioning:BucketVersioning");
        const found = violations(ev);
        assert.ok(found.some((v) => v.startsWith("pinned-images-with-requests kubernetes:apps/v1:StatefulSet::postgres-statefulset")), found.join("\n"));
        assert.equal(found.filter((v) => v.includes("not versioned")).length, 2, found.join("\n"));
    });
});
