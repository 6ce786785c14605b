import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MLFLOW_CHART, MLFLOW_IMAGE, MLFLOW_POD_LABELS, MlflowChartValues } from "../components/mlflow";
import { mlflowPeakConnections, reservedConnections, validateConfig } from "../config";
import { Evaluation } from "../scripts/evaluate";
import { OIDC_ISSUER, OIDC_PROVIDER_ARN } from "../scripts/mocks";
import { chartDir, coalesce, helmSchemaErrors } from "./support/helmSchema";
import { all, clusterProviderRef, one, policyOf, stack, STACKS, StackName } from "./support/stacks";

const CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0e4c6a1b-1f2e-4c3d-9a8b-7c6d5e4f3a2b";
const M = (key: string) => `mlflow-platform:mlflow.${key}`;
/** prod behind the AWS Load Balancer Controller: TLS at the ALB with an ACM certificate. */
const INGRESS_ACM = { [M("exposure")]: "ingress", [M("host")]: "mlflow.example.com", [M("ingressClassName")]: "alb", [M("tlsCertificateArn")]: CERT, [M("loadBalancerSourceRanges")]: ["100.24.0.0/16"] };
/** dev behind an in-cluster controller with a TLS Secret (e.g. cert-manager's); its namespace is a client. */
const INGRESS_SECRET = { [M("exposure")]: "ingress", [M("host")]: "mlflow.dev.example.com", [M("ingressClassName")]: "nginx", [M("ingressTlsSecretName")]: "mlflow-tls", [M("clientNamespaces")]: ["mlflow", "ingress-nginx"] };
const LOAD_BALANCER = { [M("exposure")]: "loadBalancer", [M("host")]: "mlflow.dev.example.com", [M("tlsCertificateArn")]: CERT, [M("loadBalancerSourceRanges")]: ["100.24.0.0/16", "100.25.0.0/16"] };
const AUTH_ON = { [M("auth")]: true };
const AUTH_OFF = { [M("auth")]: false };

const variants: { label: string; stack: StackName; overrides: Record<string, unknown> }[] = [
    { label: "dev", stack: "dev", overrides: {} },
    { label: "prod", stack: "prod", overrides: {} },
    { label: "prod behind an ALB ingress (ACM)", stack: "prod", overrides: INGRESS_ACM },
    { label: "dev behind an nginx ingress (TLS Secret)", stack: "dev", overrides: INGRESS_SECRET },
    { label: "dev behind a load balancer", stack: "dev", overrides: LOAD_BALANCER },
    { label: "dev with auth on", stack: "dev", overrides: AUTH_ON },
    { label: "prod with auth off", stack: "prod", overrides: AUTH_OFF },
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
            assert.equal(v.auth.enabled, name === "prod", "a login in prod; none in dev behind port-forward");
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

describe("mlflow authentication", () => {
    it("is on in prod by default: admin from a generated Secret, users in PostgreSQL's mlflow_auth", async () => {
        const ev = await stack("prod");
        const v = valuesOf(ev);
        assert.equal(v.auth.enabled, true);
        const admin = all(ev, "kubernetes:core/v1:Secret").find((s) => s.name === "mlflow-admin")!;
        assert.ok(admin.secretPaths.includes("stringData"));
        assert.equal(admin.inputs.stringData.username, "admin");
        assert.match(admin.inputs.stringData.password, /^[A-Za-z0-9]{32}$/);
        assert.deepEqual(v.auth.existingAdminSecret, { name: ev.outputs.mlflowAdminSecret.value, usernameKey: "username", passwordKey: "password" });
        assert.equal(v.auth.defaultPermission, "READ");
        assert.deepEqual({ ...v.auth.postgres, existingSecret: undefined }, { enabled: true, host: ev.outputs.postgresPrimaryHost.value, port: 5432, database: "mlflow_auth", driver: "psycopg2", existingSecret: undefined });
        assert.ok(release(ev).dependsOn.includes("kubernetes:core/v1:Secret::mlflow-admin"));
    });

    it("follows mlflow.auth: off in dev, on when set, off in prod only when set", async () => {
        assert.equal(valuesOf(await stack("dev")).auth.enabled, false);
        assert.equal((await stack("dev")).outputs.mlflowAdminSecret, undefined);
        assert.equal(valuesOf(await stack("dev", AUTH_ON)).auth.enabled, true);
        assert.match((await stack("dev", AUTH_ON)).outputs.mlflowAdminSecret.value, /^mlflow-admin-/);
        assert.deepEqual(valuesOf(await stack("prod", AUTH_OFF)).auth, { enabled: false });
    });

    it("is required whenever MLflow is exposed", async () => {
        assert.equal(valuesOf(await stack("dev", LOAD_BALANCER)).auth.enabled, true, "on by default when exposed");
        assert.throws(() => validateConfig("test", { region: "us-east-1", mlflow: { exposure: "loadBalancer", host: "m.example.com", tlsCertificateArn: CERT, loadBalancerSourceRanges: ["100.24.0.0/16"], auth: false } }),
            /- mlflow\.auth: false must be true with mlflow\.exposure loadBalancer/);
    });
});

describe("mlflow network policy", () => {
    const policy = (ev: Evaluation) => one(ev, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "mlflow-ingress");
    const namespacesOf = (rule: { from: { namespaceSelector?: { matchLabels: Record<string, string> } }[] }) => rule.from.map((f) => f.namespaceSelector!.matchLabels["kubernetes.io/metadata.name"]);

    for (const name of STACKS) {
        it(`admits the tracking port only from MLflow's own namespace and Prometheus's (${name})`, async () => {
            const ev = await stack(name);
            const np = policy(ev);
            assert.equal(np.inputs.metadata.namespace, "mlflow");
            assert.equal(np.provider, clusterProviderRef(ev));
            assert.deepEqual(np.inputs.spec.podSelector.matchLabels, MLFLOW_POD_LABELS);
            assert.deepEqual(np.inputs.spec.policyTypes, ["Ingress"]);
            assert.equal(np.inputs.spec.ingress.length, 1, "no load balancer path when not exposed");
            const [rule] = np.inputs.spec.ingress;
            assert.deepEqual(rule.ports, [{ protocol: "TCP", port: valuesOf(ev).service.containerPort }]);
            assert.deepEqual(namespacesOf(rule), ["mlflow", "monitoring"]);
            for (const f of rule.from) assert.deepEqual(Object.keys(f), ["namespaceSelector"]);
        });
    }

    it("takes further client namespaces from mlflow.clientNamespaces, and none for Prometheus without monitoring", async () => {
        const ev = await stack("dev", { [M("clientNamespaces")]: ["mlflow", "training"], "mlflow-platform:monitoring": { mode: "none" } });
        assert.deepEqual(namespacesOf(policy(ev).inputs.spec.ingress[0]), ["mlflow", "training"]);
    });

    it("admits a load balancer's path: the public subnets and the allowed source ranges", async () => {
        const ev = await stack("dev", LOAD_BALANCER);
        const rules = policy(ev).inputs.spec.ingress;
        assert.equal(rules.length, 2);
        const publicSubnets = all(ev, "aws:ec2/subnet:Subnet").filter((s) => /-public-\d+$/.test(s.name)).map((s) => s.inputs.cidrBlock);
        assert.equal(publicSubnets.length, 2);
        assert.deepEqual(rules[1].from.map((f: { ipBlock: { cidr: string } }) => f.ipBlock.cidr), [...publicSubnets, "100.24.0.0/16", "100.25.0.0/16"]);
        assert.deepEqual(rules[1].ports, [{ protocol: "TCP", port: 5000 }]);
        const privateSubnets = all(ev, "aws:ec2/subnet:Subnet").filter((s) => /-private-\d+$/.test(s.name)).map((s) => s.inputs.cidrBlock);
        for (const c of privateSubnets) assert.ok(!rules[1].from.some((f: { ipBlock: { cidr: string } }) => f.ipBlock.cidr === c), "pods and nodes live in the private subnets: never admitted wholesale");
        const ingress = policy(await stack("dev", INGRESS_SECRET)).inputs.spec.ingress;
        assert.deepEqual(namespacesOf(ingress[0]), ["mlflow", "ingress-nginx", "monitoring"], "an in-cluster ingress controller is a client namespace");
    });
});

describe("mlflow exposure", () => {
    it("behind a load balancer: TLS at an internet-facing NLB with the ACM certificate, limited to the source ranges", async () => {
        const ev = await stack("dev", LOAD_BALANCER);
        const v = valuesOf(ev);
        assert.equal(v.service.type, "LoadBalancer");
        assert.equal(v.service.port, 443);
        assert.deepEqual(v.service.annotations, {
            "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
            "service.beta.kubernetes.io/aws-load-balancer-ssl-cert": CERT,
            "service.beta.kubernetes.io/aws-load-balancer-ssl-ports": "443",
            "service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
            "service.beta.kubernetes.io/aws-load-balancer-backend-protocol": "tcp",
            "service.beta.kubernetes.io/load-balancer-source-ranges": "100.24.0.0/16,100.25.0.0/16",
        });
        assert.deepEqual(v.corsAllowedOrigins, ["https://mlflow.dev.example.com"]);
        assert.ok(v.serverAllowedHosts.includes("mlflow.dev.example.com"));
        assert.ok(!v.serverAllowedHosts.some((h) => h.includes("elb.amazonaws.com")), "only the certificate's name");
        assert.equal(v.ingress.enabled, false);
        assert.equal(ev.outputs.mlflowPublicUrl.value, "https://mlflow.dev.example.com");
        assert.equal(ev.outputs.mlflowUrl.value, "http://mlflow.mlflow.svc.cluster.local:443");
        assert.equal(ev.outputs.mlflowPortForward.value, "kubectl -n mlflow port-forward svc/mlflow 5000:443");
    });

    it("behind an ALB ingress: ACM certificate, https only, the public https origin allowed for CORS", async () => {
        const v = valuesOf(await stack("prod", INGRESS_ACM));
        assert.deepEqual(v.ingress, {
            enabled: true,
            className: "alb",
            annotations: {
                "alb.ingress.kubernetes.io/scheme": "internet-facing",
                "alb.ingress.kubernetes.io/target-type": "ip",
                "alb.ingress.kubernetes.io/certificate-arn": CERT,
                "alb.ingress.kubernetes.io/listen-ports": '[{"HTTP":80},{"HTTPS":443}]',
                "alb.ingress.kubernetes.io/ssl-redirect": "443",
                "alb.ingress.kubernetes.io/ssl-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
                "alb.ingress.kubernetes.io/inbound-cidrs": "100.24.0.0/16",
            },
            hosts: [{ host: "mlflow.example.com", paths: [{ path: "/", pathType: "Prefix" }] }],
            tls: [],
        });
        // The chart would derive http://mlflow.example.com here (no ingress.tls): writes from the UI would be refused.
        assert.deepEqual(v.corsAllowedOrigins, ["https://mlflow.example.com"]);
        assert.equal(v.service.type, "ClusterIP");
        assert.equal(v.auth.enabled, true);
    });

    it("behind an ingress with a TLS Secret: the chart's ingress.tls names it for the host", async () => {
        const v = valuesOf(await stack("dev", INGRESS_SECRET));
        assert.deepEqual(v.ingress.tls, [{ secretName: "mlflow-tls", hosts: ["mlflow.dev.example.com"] }]);
        assert.deepEqual(v.ingress.annotations, {});
        assert.equal(v.ingress.className, "nginx");
        assert.deepEqual(v.corsAllowedOrigins, ["https://mlflow.dev.example.com"]);
    });

    it("without exposure: a ClusterIP Service and no public origin", async () => {
        const v = valuesOf(await stack("prod"));
        assert.deepEqual({ type: v.service.type, port: v.service.port, annotations: v.service.annotations }, { type: "ClusterIP", port: 80, annotations: {} });
        assert.deepEqual(v.corsAllowedOrigins, []);
        assert.equal((await stack("prod")).outputs.mlflowPublicUrl, undefined);
    });

    it("refuses an exposure without TLS, a class or a host, naming the key", () => {
        const base = { region: "us-east-1" };
        const problems = (mlflow: Record<string, unknown>) => {
            try {
                validateConfig("test", { ...base, mlflow });
                return "";
            } catch (e) {
                return (e as Error).message;
            }
        };
        assert.match(problems({ exposure: "loadBalancer", host: "m.example.com", loadBalancerSourceRanges: ["100.24.0.0/16"] }), /- mlflow\.tlsCertificateArn: undefined is required with mlflow\.exposure loadBalancer/);
        assert.match(problems({ exposure: "loadBalancer", host: "m.example.com", tlsCertificateArn: CERT }), /- mlflow\.loadBalancerSourceRanges: \[\] must list the CIDRs/);
        assert.match(problems({ exposure: "loadBalancer", tlsCertificateArn: CERT, loadBalancerSourceRanges: ["100.24.0.0/16"] }), /- mlflow\.host: undefined is required with mlflow\.exposure loadBalancer/);
        assert.match(problems({ exposure: "ingress", host: "m.example.com", ingressClassName: "alb" }), /- mlflow\.exposure: "ingress" needs exactly one TLS setting/);
        assert.match(problems({ exposure: "ingress", host: "m.example.com", ingressClassName: "alb", tlsCertificateArn: CERT, ingressTlsSecretName: "t" }), /needs exactly one TLS setting/);
        assert.match(problems({ exposure: "ingress", host: "m.example.com", ingressTlsSecretName: "t" }), /- mlflow\.ingressClassName: undefined is required with mlflow\.exposure ingress/);
        assert.match(problems({ tlsCertificateArn: "arn:aws:acm:us-east-1:123:cert" }), /- mlflow\.tlsCertificateArn: "arn:aws:acm:us-east-1:123:cert" is not an ACM certificate ARN/);
        assert.match(problems({ host: "m.example.com" }), /- mlflow\.host: "m\.example\.com" is only used with mlflow\.exposure loadBalancer or ingress/);
        assert.equal(problems({ exposure: "ingress", host: "m.example.com", ingressClassName: "alb", tlsCertificateArn: CERT }), "");
    });
});

describe("mlflow replicas and database connections", () => {
    it("prod: one replica per node (required), spread over zones (preferred), a rollout adds at most one pod", async () => {
        const v = valuesOf(await stack("prod")) as MlflowChartValues & { affinity: any; strategy: any };
        const selector = { matchLabels: MLFLOW_POD_LABELS };
        assert.deepEqual(v.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution, [{ labelSelector: selector, topologyKey: "kubernetes.io/hostname" }]);
        assert.deepEqual(v.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution, [{ weight: 100, podAffinityTerm: { labelSelector: selector, topologyKey: "topology.kubernetes.io/zone" } }]);
        assert.deepEqual(v.strategy, { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } });
        const dev = valuesOf(await stack("dev"));
        assert.equal(dev.affinity, undefined, "one replica: nothing to spread");
        assert.equal(dev.strategy, undefined);
    });

    for (const v of variants) {
        it(`sizes the pools so MLflow's peak plus reserved connections fit postgres.maxConnections (${v.label})`, async () => {
            const ev = await stack(v.stack, v.overrides);
            const values = valuesOf(ev);
            const conf = one(ev, "kubernetes:core/v1:ConfigMap", "postgres-config").inputs.data["postgresql.conf"] as string;
            const maxConnections = Number(/^max_connections = (\d+)$/m.exec(conf)![1]);
            const pool = Number(values.extraEnvVars.MLFLOW_SQLALCHEMYSTORE_POOL_SIZE);
            const overflow = Number(values.extraEnvVars.MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW);
            assert.ok(pool >= 1 && overflow >= 0);
            const peak = mlflowPeakConnections({ replicas: values.replicaCount, workers: Number(values.extraArgs!.workers), databasePoolSize: pool, databaseMaxOverflow: overflow, auth: values.auth.enabled });
            assert.ok(peak + reservedConnections() <= maxConnections, `${peak} + ${reservedConnections()} > ${maxConnections}`);
            assert.ok(peak + reservedConnections() > maxConnections * 0.8, "and uses most of what is left (no needlessly small pools)");
        });
    }

    it("counts (replicas + 1) x workers x engines x (pool + overflow), and a third engine with auth", () => {
        assert.equal(mlflowPeakConnections({ replicas: 2, workers: 2, databasePoolSize: 7, databaseMaxOverflow: 3, auth: true }), 3 * 2 * 3 * 10);
        assert.equal(mlflowPeakConnections({ replicas: 1, workers: 4, databasePoolSize: 5, databaseMaxOverflow: 0, auth: false }), 2 * 4 * 2 * 5);
        assert.ok(reservedConnections() >= 3, "at least PostgreSQL's superuser_reserved_connections");
    });

    it("refuses pools that do not fit, naming the MLflow key and postgres.maxConnections", () => {
        const base = { region: "us-east-1" };
        assert.throws(() => validateConfig("test", { ...base, mlflow: { workers: 4, databasePoolSize: 10, databaseMaxOverflow: 10 } }), (err: Error) => {
            assert.match(err.message, /- mlflow\.databasePoolSize: 10 makes MLflow's peak 320 connections .* exceed postgres\.maxConnections \(100\)/);
            return true;
        });
        assert.throws(() => validateConfig("test", { ...base, cluster: { nodeMinSize: 20, nodeDesiredSize: 20, nodeMaxSize: 20 }, mlflow: { replicas: 20, workers: 16 } }),
            /- mlflow\.replicas: 20 makes MLflow's peak .* exceed postgres\.maxConnections \(100\)/);
        assert.throws(() => validateConfig("test", { ...base, mlflow: { replicas: 3 } }), /- mlflow\.replicas: 3 exceeds cluster\.nodeMinSize \(2\)/);
        const ok = validateConfig("test", { ...base, postgres: { maxConnections: 400, resources: { memoryRequest: "4Gi", memoryLimit: "4Gi" } }, mlflow: { workers: 4, databasePoolSize: 10, databaseMaxOverflow: 10 } });
        assert.equal(ok.mlflow.databasePoolSize, 10);
    });
});
