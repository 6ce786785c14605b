// The role reconcile Job as the program declares it: what runs it, when Pulumi runs it again, and
// what the generated SQL may contain.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { extraRolesSql, RoleReconcile, validateRoles } from "../components/databaseRoles";
import { roleSecretName } from "../components/postgres";
import { RecordingMocks } from "../scripts/mocks";
import { all, one, stack, STACKS } from "./support/stacks";

const JOB = "kubernetes:batch/v1:Job";

for (const name of STACKS) {
    describe(`role reconcile Job (${name})`, () => {
        it("runs reconcile-roles.sh in the server's image as the superuser, with every password from a Secret", async () => {
            const ev = await stack(name);
            const job = one(ev, JOB, "postgres-roles-job");
            const sts = one(ev, "kubernetes:apps/v1:StatefulSet", "postgres-statefulset");
            assert.equal(job.inputs.metadata.namespace, "data");
            assert.equal(job.inputs.metadata.name, undefined, "auto-named, so a replacement is created before the old Job is deleted");
            const pod = job.inputs.spec.template.spec;
            const [c] = pod.containers;
            assert.equal(c.image, sts.inputs.spec.template.spec.containers[0].image);
            assert.deepEqual(c.command, ["bash", "/scripts/reconcile-roles.sh"]);
            const env = Object.fromEntries(c.env.map((e: any) => [e.name, e]));
            assert.equal(env.PGHOST.value, "postgres-0.postgres-headless.data.svc.cluster.local");
            const superuser = one(ev, "kubernetes:core/v1:Secret", "postgres-superuser");
            assert.equal(env.PGPASSWORD.valueFrom.secretKeyRef.name, superuser.outputs.metadata.name);
            // init-db.sh's variables are the pod's own: one definition of the core roles.
            const podEnv = Object.fromEntries(sts.inputs.spec.template.spec.containers[0].env.map((e: any) => [e.name, e]));
            for (const v of ["MLFLOW_DB_NAME", "MLFLOW_AUTH_DB_NAME", "MLFLOW_DB_USER", "MLFLOW_DB_PASSWORD", "BACKUP_DB_USER", "BACKUP_DB_PASSWORD"]) {
                assert.deepEqual(env[v], podEnv[v], v);
            }
            for (const e of c.env) assert.ok(!/PASSWORD/.test(e.name) || e.valueFrom?.secretKeyRef, `${e.name} is not from a Secret`);
            // Restricted Pod Security Standard, like everything in the namespace.
            assert.equal(pod.securityContext.runAsNonRoot, true);
            assert.equal(c.securityContext.allowPrivilegeEscalation, false);
            assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
            assert.equal(pod.restartPolicy, "Never");
        });

        it("waits for the database, and MLflow waits for it; the StatefulSet does not", async () => {
            const ev = await stack(name);
            const job = one(ev, JOB, "postgres-roles-job");
            const reconcile = one(ev, "platform:index:RoleReconcile", "postgres-roles");
            assert.ok(reconcile.dependsOn.includes("kubernetes:apps/v1:StatefulSet::postgres-statefulset"));
            assert.equal(job.parent, "platform:index:RoleReconcile::postgres-roles");
            const release = one(ev, "kubernetes:helm.sh/v3:Release", "mlflow-release");
            assert.ok(release.dependsOn.includes(`${JOB}::postgres-roles-job`), release.dependsOn.join(", "));
            const sts = one(ev, "kubernetes:apps/v1:StatefulSet", "postgres-statefulset");
            assert.ok(!sts.dependsOn.some((d) => d.includes("RoleReconcile") || d.startsWith(JOB)));
        });

        it("stays reviewable in preview (nothing secret in it) and its pods may reach PostgreSQL", async () => {
            const ev = await stack(name);
            const job = one(ev, JOB, "postgres-roles-job");
            assert.match(job.inputs.spec.template.metadata.annotations["platform/inputs-sha256"], /^[0-9a-f]{64}$/);
            // A secret anywhere in spec would hide the whole spec from `pulumi preview --diff`.
            assert.deepEqual(job.secretPaths, []);
            const np = one(ev, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "postgres-ingress");
            const labels = job.inputs.spec.template.metadata.labels;
            assert.ok(np.inputs.spec.ingress[0].from.some((f: any) =>
                f.namespaceSelector.matchLabels["kubernetes.io/metadata.name"] === "data" && JSON.stringify(f.podSelector.matchLabels) === JSON.stringify(labels)));
            // Its scripts are the repository's files, unchanged.
            const cm = all(ev, "kubernetes:core/v1:ConfigMap").find((r) => r.parent === "platform:index:RoleReconcile::postgres-roles")!;
            assert.ok(cm.inputs.data["reconcile-roles.sh"].includes("reconcile-roles: OK"));
            assert.ok(cm.inputs.data["init-db.sh"].includes("_mlflow_init_db"));
        });
    });
}

/** Registers RoleReconcile components under mocks and returns what each one's Job received. */
async function reconcileJobs(variants: { passwords: string[] }[]): Promise<any[]> {
    const mocks = new RecordingMocks();
    await pulumi.runtime.setMocks(mocks, "roles-test", "test", false);
    variants.forEach((v, i) => new RoleReconcile(`r${i}`, {
        namespace: "data", image: "postgres:17.6", host: "h", port: 5432, superuserSecretName: "su",
        coreEnv: [], roles: [{ name: "metrics", memberOf: ["pg_monitor"] }], roleSecretNames: { metrics: roleSecretName("metrics") },
        passwords: v.passwords,
    }));
    for (let seen = -1; seen !== mocks.resources.length;) {
        seen = mocks.resources.length;
        await new Promise((r) => setTimeout(r, 50));
    }
    return variants.map((_, i) => mocks.resources.find((r) => r.type === JOB && r.name === `r${i}-job`)!.inputs);
}

describe("role reconcile: when it runs again", () => {
    it("a rotated password changes the Job's pod template (the provider replaces the Job: a new run); the same inputs do not", async () => {
        const [a, same, rotated] = await reconcileJobs([{ passwords: ["p1", "p2"] }, { passwords: ["p1", "p2"] }, { passwords: ["p1", "p3"] }]);
        const digest = (j: any) => j.spec.template.metadata.annotations["platform/inputs-sha256"];
        assert.equal(digest(a), digest(same));
        assert.notEqual(digest(a), digest(rotated));
        assert.deepEqual(a.spec.template.spec.containers, rotated.spec.template.spec.containers, "only the digest differs");
        const env = a.spec.template.spec.containers[0].env.find((e: any) => e.name === "ROLE_METRICS_PASSWORD");
        assert.deepEqual(env.valueFrom.secretKeyRef, { name: "postgres-role-metrics", key: "password" });
    });
});

describe("extra roles' SQL", () => {
    it("refuses names that are not plain identifiers or belong to the platform's own roles", () => {
        for (const bad of ["Metrics", "m-x", "x\"; DROP ROLE postgres; --", "postgres", "mlflow", "backup", "pg_monitor", ""]) {
            assert.throws(() => validateRoles([{ name: bad }]), /invalid database roles/, bad);
        }
        assert.throws(() => validateRoles([{ name: "a" }, { name: "a" }]), /declared twice/);
        assert.throws(() => validateRoles([{ name: "a", memberOf: ["pg_monitor; x"] }]), /memberOf/);
        assert.throws(() => validateRoles([{ name: "a", connect: ["db'"] }]), /connect/);
    });

    it("never contains a password, checks every password before changing anything, and turns off what is not asked for", () => {
        const sql = extraRolesSql([{ name: "metrics", memberOf: ["pg_monitor"], connect: ["postgres"] }, { name: "replicator", replication: true }]);
        assert.doesNotMatch(sql, /PASSWORD '/);
        const firstChange = sql.search(/^(CREATE|ALTER|GRANT)/m);
        assert.ok(sql.lastIndexOf("ROLE_REPLICATOR_PASSWORD is not set") < firstChange);
        assert.match(sql, /ALTER ROLE "metrics" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS/);
        assert.match(sql, /ALTER ROLE "replicator" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE REPLICATION NOBYPASSRLS/);
        assert.equal(extraRolesSql([]), "");
    });
});

describe("extra roles of the Postgres component", () => {
    it("each gets a generated password in a Secret of fixed name that the reconcile Job reads", async () => {
        const mocks = new RecordingMocks();
        await pulumi.runtime.setMocks(mocks, "roles-test", "test", false);
        const { Postgres } = await import("../components/postgres");
        new Postgres("pg", {
            namespace: "data", imageTag: "17.6", storageClassName: "gp2", storageSize: "20Gi",
            resources: { cpuRequest: "100m", memoryRequest: "1Gi", memoryLimit: "1Gi" }, maxConnections: 100,
            clients: [], protectData: false,
            extraRoles: [{ name: "metrics", memberOf: ["pg_monitor"], connect: ["postgres"] }, { name: "wal_base", replication: true }],
        });
        for (let seen = -1; seen !== mocks.resources.length;) {
            seen = mocks.resources.length;
            await new Promise((r) => setTimeout(r, 50));
        }
        for (const [role, secretName] of [["metrics", "postgres-role-metrics"], ["wal_base", "postgres-role-wal-base"]]) {
            const secret = mocks.resources.find((r) => r.type === "kubernetes:core/v1:Secret" && r.inputs.metadata?.name === secretName);
            assert.ok(secret, secretName);
            assert.equal(secret.inputs.metadata.namespace, "data");
            assert.equal(secret.inputs.stringData.username, role);
            assert.match(secret.inputs.stringData.password, /^[A-Za-z0-9]{32}$/);
            assert.ok(secret.secretPaths.includes("stringData"));
        }
        const job = mocks.resources.find((r) => r.type === JOB)!;
        const env = job.inputs.spec.template.spec.containers[0].env;
        assert.deepEqual(env.find((e: any) => e.name === "ROLE_WAL_BASE_PASSWORD").valueFrom.secretKeyRef, { name: "postgres-role-wal-base", key: "password" });
        const cm = mocks.resources.find((r) => r.type === "kubernetes:core/v1:ConfigMap" && r.name === "pg-roles-scripts")!;
        assert.match(cm.inputs.data["roles.sql"], /ALTER ROLE "wal_base" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE REPLICATION/);
        assert.throws(() => new Postgres("bad", {
            namespace: "x", imageTag: "17.6", storageClassName: "gp2", storageSize: "1Gi",
            resources: { cpuRequest: "1", memoryRequest: "1Gi", memoryLimit: "1Gi" }, maxConnections: 10, clients: [], protectData: false,
            extraRoles: [{ name: "backup" }],
        }), /role name "backup" is reserved/);
    });
});
