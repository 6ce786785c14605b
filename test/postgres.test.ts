import assert from "node:assert/strict";
import * as fs from "node:fs";
import { describe, it } from "node:test";
import { mergePodExtras, postgresConf } from "../components/postgres";
import { EvaluatedResource } from "../scripts/evaluate";
import { all, one, stack, STACKS } from "./support/stacks";

const want = {
    dev: { size: "20Gi", memory: "1Gi", sharedBuffers: "256MB", protect: false, pvcWhenDeleted: "Delete" },
    prod: { size: "100Gi", memory: "4Gi", sharedBuffers: "1024MB", protect: true, pvcWhenDeleted: "Retain" },
};

function container(sts: EvaluatedResource) {
    return sts.inputs.spec.template.spec.containers[0];
}

describe("postgresql.conf", () => {
    it("sizes memory settings from the container limit", () => {
        const conf = postgresConf("4Gi", 200);
        assert.match(conf, /^shared_buffers = 1024MB$/m);
        assert.match(conf, /^effective_cache_size = 3072MB$/m);
        assert.match(conf, /^max_connections = 200$/m);
        assert.match(conf, /^work_mem = 5MB$/m);
        assert.match(conf, /^maintenance_work_mem = 256MB$/m);
        assert.match(conf, /^listen_addresses = '\*'$/m);
        assert.match(conf, /^password_encryption = 'scram-sha-256'$/m);
        // Small limits never push work_mem below PostgreSQL's own default.
        assert.match(postgresConf("256Mi", 100), /^work_mem = 4MB$/m);
    });
});

describe("database pod extras", () => {
    it("merges what several components add and refuses contradictions", () => {
        const m = mergePodExtras([
            { settings: [["archive_mode", "on"]], serviceAccountName: "postgres", env: [{ name: "A", value: "1" }] },
            { settings: [["shared_preload_libraries", "'pg_stat_statements'"]], containers: [{ name: "exporter", image: "x:1" }] },
        ]);
        assert.deepEqual(m.settings.map(([k]) => k), ["archive_mode", "shared_preload_libraries"]);
        assert.equal(m.serviceAccountName, "postgres");
        assert.equal(m.containers.length, 1);
        assert.throws(() => mergePodExtras([{ serviceAccountName: "a" }, { serviceAccountName: "b" }]), /ServiceAccount: a, b/);
        assert.throws(() => mergePodExtras([{ settings: [["archive_mode", "on"]] }, { settings: [["archive_mode", "off"]] }]), /given twice: archive_mode/);
        // The sized settings are this component's: another component may not override them silently.
        assert.throws(() => postgresConf("1Gi", 100, [["max_connections", "500"]]), /already sized here: max_connections/);
        assert.match(postgresConf("1Gi", 100, [["archive_mode", "on"]]), /^archive_mode = on$/m);
    });
});

for (const name of STACKS) {
    const w = want[name];
    describe(`postgres (${name})`, () => {
        it("runs one primary from a pinned official image behind a headless Service", async () => {
            const ev = await stack(name);
            const sts = one(ev, "kubernetes:apps/v1:StatefulSet", "postgres-statefulset");
            const headless = one(ev, "kubernetes:core/v1:Service", "postgres-headless");
            assert.equal(sts.inputs.metadata.name, "postgres");
            assert.equal(sts.inputs.metadata.namespace, "data");
            assert.equal(sts.inputs.spec.replicas, 1);
            assert.equal(sts.inputs.spec.serviceName, headless.inputs.metadata.name);
            assert.equal(headless.inputs.spec.clusterIP, "None");
            assert.equal(headless.inputs.spec.publishNotReadyAddresses, true);
            assert.deepEqual(headless.inputs.spec.ports, [{ name: "postgres", port: 5432, targetPort: "postgres" }]);
            const labels = sts.inputs.spec.template.metadata.labels;
            assert.deepEqual(sts.inputs.spec.selector.matchLabels, labels);
            assert.deepEqual(headless.inputs.spec.selector, labels);
            const client = one(ev, "kubernetes:core/v1:Service", "postgres-client");
            assert.equal(client.inputs.spec.type, "ClusterIP");
            assert.deepEqual(client.inputs.spec.selector, labels);
            const c = container(sts);
            assert.equal(c.image, "public.ecr.aws/docker/library/postgres:17.6");
            assert.deepEqual(c.ports, [{ name: "postgres", containerPort: 5432, protocol: "TCP" }]);
            assert.equal(ev.outputs.postgresPrimaryHost.value, "postgres-0.postgres-headless.data.svc.cluster.local");
            assert.equal(ev.outputs.postgresServiceHost.value, "postgres.data.svc.cluster.local");
            assert.equal(ev.outputs.postgresPort.value, 5432);
        });

        it("keeps data on a per-pod EBS volume of our StorageClass, PGDATA in a subdirectory", async () => {
            const ev = await stack(name);
            const sts = one(ev, "kubernetes:apps/v1:StatefulSet", "postgres-statefulset");
            const [tpl] = sts.inputs.spec.volumeClaimTemplates;
            assert.equal(tpl.metadata.name, "data");
            assert.equal(tpl.spec.storageClassName, "gp2-csi");
            assert.deepEqual(tpl.spec.accessModes, ["ReadWriteOnce"]);
            assert.equal(tpl.spec.resources.requests.storage, w.size);
            const c = container(sts);
            const mount = c.volumeMounts.find((m: { name: string }) => m.name === "data");
            assert.equal(mount.mountPath, "/var/lib/postgresql/data");
            const pgdata = c.env.find((e: { name: string }) => e.name === "PGDATA").value;
            assert.equal(pgdata, "/var/lib/postgresql/data/pgdata");
            assert.deepEqual(sts.inputs.spec.persistentVolumeClaimRetentionPolicy, { whenDeleted: w.pvcWhenDeleted, whenScaled: "Retain" });
        });

        it("runs as uid 999, non-root, with probes, resources and a clean shutdown", async () => {
            const sts = one(await stack(name), "kubernetes:apps/v1:StatefulSet", "postgres-statefulset");
            const pod = sts.inputs.spec.template.spec;
            assert.deepEqual(
                { u: pod.securityContext.runAsUser, g: pod.securityContext.fsGroup, nonRoot: pod.securityContext.runAsNonRoot },
                { u: 999, g: 999, nonRoot: true },
            );
            const c = container(sts);
            assert.equal(c.securityContext.allowPrivilegeEscalation, false);
            assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
            for (const probe of ["readinessProbe", "livenessProbe", "startupProbe"]) {
                assert.match(c[probe].exec.command.join(" "), /pg_isready .*-h 127\.0\.0\.1 -p 5432/, probe);
            }
            assert.ok(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 3600, "an hour of crash recovery before liveness applies");
            assert.equal(c.resources.limits.memory, w.memory);
            assert.ok(c.resources.requests.cpu);
            assert.ok(pod.terminationGracePeriodSeconds >= 60);
            assert.match(c.lifecycle.preStop.exec.command.join(" "), /pg_ctl stop .*-m fast/);
            // The only token is the WAL archive's IRSA ServiceAccount (put-only role, see pitr.test.ts).
            assert.equal(pod.serviceAccountName, "postgres");
            assert.equal(pod.automountServiceAccountToken, true);
        });

        it("hands passwords to the container only through secretKeyRef", async () => {
            const ev = await stack(name);
            const sts = one(ev, "kubernetes:apps/v1:StatefulSet", "postgres-statefulset");
            const env: { name: string; value?: string; valueFrom?: { secretKeyRef: { name: string; key: string } } }[] = container(sts).env;
            const secrets = all(ev, "kubernetes:core/v1:Secret").filter((s) => s.parent === "platform:index:Postgres::postgres");
            const secretNames = new Set(secrets.map((s) => s.inputs.metadata.name ?? "").filter(Boolean));
            for (const v of ["POSTGRES_PASSWORD", "MLFLOW_DB_PASSWORD", "BACKUP_DB_PASSWORD", "POSTGRES_USER", "MLFLOW_DB_USER", "BACKUP_DB_USER"]) {
                const e = env.find((x) => x.name === v);
                assert.ok(e?.valueFrom?.secretKeyRef, `${v} comes from a Secret`);
                assert.equal(e.value, undefined);
            }
            // Auto-named, except the extra roles' (fixed roleSecretName, e.g. the metrics exporter's).
            assert.deepEqual([...secretNames].filter((n) => !n.startsWith("postgres-role-")), [], "Secrets are auto-named");
            for (const s of secrets) {
                assert.ok(s.secretPaths.includes("stringData"), `${s.name} data is a secret in state`);
                assert.match(s.inputs.stringData.password, /^[A-Za-z0-9]{32}$/);
            }
            const passwords = all(ev, "random:index/randomPassword:RandomPassword").filter((p) => p.name.startsWith("postgres-"));
            assert.deepEqual(passwords.map((p) => p.name).sort(), ["postgres-backup-password", "postgres-mlflow-password", "postgres-role-metrics-password", "postgres-role-replicator-password", "postgres-superuser-password"]);
            for (const p of passwords) assert.deepEqual({ length: p.inputs.length, special: p.inputs.special }, { length: 32, special: false });
            // No password appears in any plain (non-secret) input of any resource.
            const plain = ev.resources.filter((r) => r.secretPaths.length === 0).map((r) => JSON.stringify(r.inputs)).join("\n");
            for (const s of secrets) assert.ok(!plain.includes(s.inputs.stringData.password), `${s.name}'s password leaks`);
        });

        it("initialises roles from the repo's script and settings from a ConfigMap", async () => {
            const ev = await stack(name);
            const init = one(ev, "kubernetes:core/v1:ConfigMap", "postgres-initdb");
            const script = fs.readFileSync("components/postgres/scripts/init-db.sh", "utf8");
            assert.deepEqual(Object.values(init.inputs.data), [script]);
            const conf = one(ev, "kubernetes:core/v1:ConfigMap", "postgres-config");
            assert.match(conf.inputs.data["postgresql.conf"], new RegExp(`^shared_buffers = ${w.sharedBuffers}$`, "m"));
            const sts = one(ev, "kubernetes:apps/v1:StatefulSet", "postgres-statefulset");
            const c = container(sts);
            assert.deepEqual(c.args, ["-c", "config_file=/etc/postgresql/postgresql.conf"]);
            const mounts = Object.fromEntries(c.volumeMounts.map((m: { name: string; mountPath: string }) => [m.name, m.mountPath]));
            assert.equal(mounts.initdb, "/docker-entrypoint-initdb.d");
            assert.equal(mounts.config, "/etc/postgresql");
            assert.match(sts.inputs.spec.template.metadata.annotations["platform/config-sha256"], /^[0-9a-f]{64}$/);
        });

        it("admits port 5432 only from MLflow, backup, restore, base backup, PITR verify and role reconcile pods", async () => {
            const ev = await stack(name);
            const np = one(ev, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "postgres-ingress");
            const sts = one(ev, "kubernetes:apps/v1:StatefulSet", "postgres-statefulset");
            assert.deepEqual(np.inputs.spec.podSelector.matchLabels, sts.inputs.spec.template.metadata.labels);
            assert.deepEqual(np.inputs.spec.policyTypes, ["Ingress"]);
            // The database port's rule first; the metrics scrape's own rule (port 9187) is checked in monitoring.test.ts.
            assert.deepEqual(np.inputs.spec.ingress.filter((r: { ports: { port: number }[] }) => r.ports.some((p) => p.port === 5432)).length, 1);
            assert.deepEqual(np.inputs.spec.ingress[0].ports, [{ protocol: "TCP", port: 5432 }]);
            assert.deepEqual(np.inputs.spec.ingress[0].from, [
                { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "mlflow" } }, podSelector: { matchLabels: { "app.kubernetes.io/name": "mlflow", "app.kubernetes.io/instance": "mlflow" } } },
                { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "data" } }, podSelector: { matchLabels: { "app.kubernetes.io/name": "postgres-backup", "app.kubernetes.io/component": "backup" } } },
                { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "data" } }, podSelector: { matchLabels: { "app.kubernetes.io/name": "postgres-backup", "app.kubernetes.io/component": "restore" } } },
                { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "data" } }, podSelector: { matchLabels: { "app.kubernetes.io/name": "postgres-pitr", "app.kubernetes.io/component": "base-backup" } } },
                { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "data" } }, podSelector: { matchLabels: { "app.kubernetes.io/name": "postgres-pitr", "app.kubernetes.io/component": "verify" } } },
                { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "data" } }, podSelector: { matchLabels: { "app.kubernetes.io/name": "postgres", "app.kubernetes.io/component": "role-reconcile" } } },
            ]);
            // The selectors match the pods they are meant for.
            const backup = one(ev, "kubernetes:batch/v1:CronJob", "backup-postgres-backup");
            assert.deepEqual(backup.inputs.spec.jobTemplate.spec.template.metadata.labels, np.inputs.spec.ingress[0].from[1].podSelector.matchLabels);
            const restore = one(ev, "kubernetes:batch/v1:CronJob", "backup-postgres-restore");
            assert.deepEqual(restore.inputs.spec.jobTemplate.spec.template.metadata.labels, np.inputs.spec.ingress[0].from[2].podSelector.matchLabels);
        });

        it(`${w.protect ? "protects" : "does not protect"} what holds data`, async () => {
            const ev = await stack(name);
            const held = [
                one(ev, "kubernetes:apps/v1:StatefulSet", "postgres-statefulset"),
                one(ev, "kubernetes:core/v1:Namespace", "postgres-ns"),
                ...all(ev, "kubernetes:core/v1:Secret").filter((s) => s.parent === "platform:index:Postgres::postgres"),
                ...all(ev, "random:index/randomPassword:RandomPassword").filter((p) => p.name.startsWith("postgres-")),
            ];
            for (const r of held) assert.equal(r.protect, w.protect, `${r.type} ${r.name}`);
            const ns = one(ev, "kubernetes:core/v1:Namespace", "postgres-ns");
            assert.equal(ns.inputs.metadata.labels["pod-security.kubernetes.io/enforce"], "restricted");
        });
    });
}
