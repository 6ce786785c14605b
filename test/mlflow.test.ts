import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MLFLOW_CHART, MLFLOW_IMAGE, MlflowChartValues } from "../components/mlflow";
import { Evaluation } from "../scripts/evaluate";
import { OIDC_ISSUER, OIDC_PROVIDER_ARN } from "../scripts/mocks";
import { chartDir, coalesce, helmSchemaErrors } from "./support/helmSchema";
import { all, clusterProviderRef, one, policyOf, stack, STACKS, StackName } from "./support/stacks";

const INGRESS = { "mlflow-platform:mlflow": { namespace: "mlflow", replicas: 2, exposure: "ingress", ingressHost: "mlflow.example.com", ingressClassName: "alb" } };
const LOAD_BALANCER = { "mlflow-platform:mlflow": { namespace: "mlflow", exposure: "loadBalancer", loadBalancerSourceRanges: ["203.0.113.0/24"] } };

const variants: { label: string; stack: StackName; overrides: Record<string, unknown> }[] = [
    { label: "dev", stack: "dev", overrides: {} },
    { label: "prod", stack: "prod", overrides: {} },
    { label: "prod behind an ingress", stack: "prod", overrides: INGRESS },
    { label: "dev behind a load balancer", stack: "dev", overrides: LOAD_BALANCER },
];

function release(ev: Evaluation) {
    return one(ev, "kubernetes:helm.sh/v3:Release", "mlflow-release");
}
function valuesOf(ev: Evaluation): MlflowChartValues {
    return release(ev).inputs.values as MlflowChartValues;
}

describe("helm values coalescing", () => {
    it("merges maps and replaces lists and scalars, as Helm does", () => {
        assert.deepEqual(coalesce({ a: { b: 1, c: [1, 2] }, d: 1, e: 2 }, { a: { c: [3] }, d: "x", e: null }), { a: { b: 1, c: [3] }, d: "x" });
    });
});

describe("mlflow values against the chart's values.schema.json", () => {
    const dir = chartDir();
    it("rejects values the chart does not know (the check is live)", { skip: dir ? false : "set MLFLOW_CHART_DIR to the unpacked mlflow-1.11.5 chart (helm pull community-charts/mlflow --version 1.11.5 --untar)" }, () => {
        assert.ok(helmSchemaErrors(dir!, { database: { backend: "postgres" } }).some((e) => e.includes("must NOT have additional properties")));
        assert.ok(helmSchemaErrors(dir!, { backendStore: { postgres: { port: "5432" } } }).some((e) => e.includes("/backendStore/postgres/port")));
    });
    for (const v of variants) {
        it(`accepts the values of ${v.label}`, { skip: dir ? false : "MLFLOW_CHART_DIR is not set" }, async () => {
            assert.deepEqual(helmSchemaErrors(dir!, valuesOf(await stack(v.stack, v.overrides)) as unknown as Record<string, unknown>), []);
        });
    }
});

for (const name of STACKS) {
    describe(`mlflow (${name})`, () => {
        it("installs the pinned community chart as a real Helm release that rolls back on failure", async () => {
            const ev = await stack(name);
            const r = release(ev);
            assert.equal(r.inputs.name, "mlflow");
            assert.equal(r.inputs.namespace, "mlflow");
            assert.equal(r.inputs.chart, "mlflow");
            assert.equal(r.inputs.version, "1.11.5");
            assert.deepEqual(r.inputs.repositoryOpts, { repo: "https://community-charts.github.io/helm-charts" });
            assert.equal(r.inputs.atomic, true);
            assert.ok(r.inputs.timeout >= 300);
            assert.equal(r.provider, clusterProviderRef(ev));
            assert.ok(r.dependsOn.includes("kubernetes:batch/v1:Job::postgres-roles-job"), "waits for PostgreSQL and its roles (the role reconcile Job)");
        });

        it("wires the backend to PostgreSQL's outputs and its credentials Secret", async () => {
            const ev = await stack(name);
            const v = valuesOf(ev);
            assert.deepEqual(v.backendStore.postgres, {
                enabled: true,
                host: ev.outputs.postgresPrimaryHost.value,
                port: ev.outputs.postgresPort.value,
                database: "mlflow",
                driver: "psycopg2",
            });
            assert.equal(typeof v.backendStore.postgres.port, "number");
            assert.equal(v.backendStore.databaseMigration, true);
            assert.equal(v.backendStore.databaseConnectionCheck, true);
            assert.equal(v.postgresql.enabled, false);
            const secret = all(ev, "kubernetes:core/v1:Secret").find((s) => s.name === "mlflow-db")!;
            assert.match(v.backendStore.existingDatabaseSecret.name, /^mlflow-db-[0-9a-f]{8}$/);
            assert.deepEqual(v.backendStore.existingDatabaseSecret, { name: v.backendStore.existingDatabaseSecret.name, usernameKey: "username", passwordKey: "password" });
            assert.deepEqual(Object.keys(secret.inputs.stringData).sort(), ["password", "username"]);
            assert.equal(secret.inputs.metadata.namespace, "mlflow");
            const pgSecret = all(ev, "kubernetes:core/v1:Secret").find((s) => s.name === "postgres-mlflow")!;
            assert.deepEqual(secret.inputs.stringData, pgSecret.inputs.stringData, "the same mlflow role credentials");
            assert.ok(secret.secretPaths.includes("stringData"));
        });

        it("puts no secret into the Helm values", async () => {
            const ev = await stack(name);
            const values = JSON.stringify(release(ev).inputs.values);
            const secrets = all(ev, "kubernetes:core/v1:Secret").flatMap((s) => Object.values(s.inputs.stringData as Record<string, string>));
            const passwords = all(ev, "random:index/randomPassword:RandomPassword").map((p) => p.name);
            assert.ok(passwords.length >= 4);
            for (const s of secrets.filter((x) => x.length >= 20)) assert.ok(!values.includes(s), "a secret value is in the Helm values");
            assert.doesNotMatch(values, /"(password|adminPassword|awsSecretAccessKey|flaskServerSecretKey)":/);
            assert.equal(release(ev).secretPaths.length, 0, "nothing secret flows into the release");
        });

        it("stores artifacts in a hardened bucket through a least-privilege IRSA role on the pinned ServiceAccount", async () => {
            const ev = await stack(name);
            const v = valuesOf(ev);
            assert.equal(v.artifactRoot.proxiedArtifactStorage, true);
            assert.deepEqual(v.artifactRoot.s3, { enabled: true, bucket: ev.outputs.mlflowArtifactBucket.value, path: "artifacts" });
            assert.deepEqual(Object.keys(v.artifactRoot.s3).sort(), ["bucket", "enabled", "path"], "no static keys");
            assert.equal(v.serviceAccount.name, "mlflow");
            assert.equal(v.serviceAccount.create, true);
            const role = one(ev, "aws:iam/role:Role", "mlflow-artifacts-role");
            assert.match(v.serviceAccount.annotations["eks.amazonaws.com/role-arn"], /role\/mlflow-artifacts-role-/);
            const trust = policyOf(role, "assumeRolePolicy").Statement[0];
            assert.equal(trust.Principal.Federated, OIDC_PROVIDER_ARN);
            assert.deepEqual(trust.Condition, { StringEquals: { [`${OIDC_ISSUER}:sub`]: "system:serviceaccount:mlflow:mlflow", [`${OIDC_ISSUER}:aud`]: "sts.amazonaws.com" } });
            const policy = policyOf(one(ev, "aws:iam/rolePolicy:RolePolicy", "mlflow-artifacts-inline"));
            for (const s of policy.Statement) {
                for (const a of s.Action) assert.ok(!a.includes("*"), a);
                for (const r of s.Resource) assert.ok(!r.includes("backup-store"), "no access to backups");
            }
            const objects = policy.Statement.find((s: { Sid: string }) => s.Sid === "ReadWriteArtifacts");
            assert.ok(objects.Resource.every((r: string) => r.endsWith("/artifacts/*")));
            const bucketParts = ev.resources.filter((r) => r.parent === "platform:index:SecureBucket::mlflow-artifacts").map((r) => r.type.split(":")[1]).sort();
            for (const t of ["s3/bucket", "s3/bucketVersioning", "s3/bucketServerSideEncryptionConfiguration", "s3/bucketPublicAccessBlock", "s3/bucketOwnershipControls", "s3/bucketPolicy", "s3/bucketLifecycleConfiguration"]) {
                assert.ok(bucketParts.includes(t), t);
            }
            assert.equal(v.extraEnvVars.AWS_DEFAULT_REGION, "us-east-1");
        });

        it("sets replicas, resources, pinned image and a ClusterIP service from config", async () => {
            const ev = await stack(name);
            const v = valuesOf(ev);
            assert.equal(v.replicaCount, name === "prod" ? 2 : 1);
            assert.deepEqual(v.image, { repository: "burakince/mlflow", tag: "3.15.1" });
            // One constant: a version bump moves the server and `mlflow db upgrade` together.
            assert.deepEqual(v.initImages.mlflowDbMigration, v.image, "the migration runs the server's own image");
            assert.deepEqual(v.image, { ...MLFLOW_IMAGE });
            assert.equal(MLFLOW_IMAGE.tag, MLFLOW_CHART.appVersion);
            assert.equal(v.service.type, "ClusterIP");
            assert.equal(v.ingress.enabled, false);
            assert.equal(v.auth.enabled, false, "not exposed: no login needed behind port-forward");
            assert.deepEqual(v.resources.requests, name === "prod" ? { cpu: "500m", memory: "2Gi" } : { cpu: "250m", memory: "1Gi" });
            const pdbs = all(ev, "kubernetes:policy/v1:PodDisruptionBudget");
            assert.equal(pdbs.length, name === "prod" ? 1 : 0);
            if (name === "prod") {
                assert.equal(pdbs[0].inputs.spec.minAvailable, 1);
                assert.deepEqual(pdbs[0].inputs.spec.selector.matchLabels, { "app.kubernetes.io/name": "mlflow", "app.kubernetes.io/instance": "mlflow" });
            }
            assert.ok(v.serverAllowedHosts.includes("mlflow.mlflow.svc.cluster.local"));
            assert.ok(v.serverAllowedHosts.includes("localhost:*"), "kubectl port-forward keeps working");
            assert.equal(ev.outputs.mlflowUrl.value, "http://mlflow.mlflow.svc.cluster.local");
            assert.equal(ev.outputs.mlflowPortForward.value, "kubectl -n mlflow port-forward svc/mlflow 5000:80");
        });
    });
}

describe("mlflow exposed", () => {
    it("behind an ingress: authentication on, admin from a generated Secret, users in PostgreSQL", async () => {
        const ev = await stack("prod", INGRESS);
        const v = valuesOf(ev);
        assert.deepEqual(v.ingress, { enabled: true, className: "alb", hosts: [{ host: "mlflow.example.com", paths: [{ path: "/", pathType: "Prefix" }] }] });
        assert.equal(v.auth.enabled, true);
        const admin = all(ev, "kubernetes:core/v1:Secret").find((s) => s.name === "mlflow-admin")!;
        assert.ok(admin.secretPaths.includes("stringData"));
        assert.match(v.auth.existingAdminSecret!.name, /^mlflow-admin-[0-9a-f]{8}$/);
        assert.deepEqual({ ...v.auth.postgres, existingSecret: undefined }, { enabled: true, host: ev.outputs.postgresPrimaryHost.value, port: 5432, database: "mlflow_auth", driver: "psycopg2", existingSecret: undefined });
        assert.ok(v.serverAllowedHosts.includes("mlflow.example.com"));
        assert.match(ev.outputs.mlflowAdminSecret.value, /^mlflow-admin-/);
    });

    it("behind a load balancer: internet-facing NLB limited to the source ranges, authentication on", async () => {
        const ev = await stack("dev", LOAD_BALANCER);
        const v = valuesOf(ev);
        assert.equal(v.service.type, "LoadBalancer");
        assert.equal(v.service.annotations["service.beta.kubernetes.io/load-balancer-source-ranges"], "203.0.113.0/24");
        assert.equal(v.auth.enabled, true);
    });
});
