// mlflow.*: the tracking server, its login, exposure and database pools.
import { bool, cidrWithin, DOCUMENTATION_RANGES, int, isDns1123Label, isIpv4Cidr, list, noUnknownKeys, oneOf, Problems, resources, section, str } from "./checks";
import { defaultDatabasePool, mlflowPeakConnections, reservedConnections } from "./sizing";
import { BucketEncryption, ClusterConfig, MlflowConfig, MlflowExposure, PostgresConfig } from "./types";

const ACM_CERTIFICATE_ARN = /^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate\/[0-9a-f-]{36}$/;
const DNS_HOST = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}$/;

/** mlflow.*, checked against the database it shares (connections, namespace) and the nodes it runs on. */
export function mlflowConfig(p: Problems, raw: unknown, stack: string, postgres: PostgresConfig, cluster: ClusterConfig): MlflowConfig {
    const m = section(p, "mlflow", raw);
    noUnknownKeys(p, "mlflow", m, [
        "namespace", "replicas", "workers", "databasePoolSize", "databaseMaxOverflow", "resources", "auth", "clientNamespaces",
        "exposure", "host", "ingressClassName", "ingressTlsSecretName", "tlsCertificateArn", "loadBalancerSourceRanges", "artifactEncryption",
    ]);
    const mlflowNamespace = str(p, "mlflow.namespace", m.namespace, "mlflow", isDns1123Label, "is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)");
    const exposure = oneOf<MlflowExposure>(p, "mlflow.exposure", m.exposure, "none", ["none", "loadBalancer", "ingress"]);
    const optional = (key: string, v: unknown, test: (s: string) => boolean, allowed: string) => v === undefined ? undefined : str(p, `mlflow.${key}`, v, "", test, allowed) || undefined;
    const mlflow: MlflowConfig = {
        namespace: mlflowNamespace,
        replicas: int(p, "mlflow.replicas", m.replicas, 1, 1, 20),
        workers: int(p, "mlflow.workers", m.workers, 2, 1, 16),
        // Filled in below from postgres.maxConnections unless set.
        databasePoolSize: int(p, "mlflow.databasePoolSize", m.databasePoolSize, 0, 1, 100),
        databaseMaxOverflow: int(p, "mlflow.databaseMaxOverflow", m.databaseMaxOverflow, 0, 0, 100),
        resources: resources(p, "mlflow.resources", m.resources, { cpuRequest: "250m", memoryRequest: "1Gi", memoryLimit: "2Gi" }),
        // A login in prod by default, and whenever the server is reachable from outside the cluster.
        auth: bool(p, "mlflow.auth", m.auth, stack === "prod" || exposure !== "none"),
        clientNamespaces: list(p, "mlflow.clientNamespaces", m.clientNamespaces, [mlflowNamespace], isDns1123Label, "is not a namespace name (DNS-1123 label)"),
        exposure,
        host: optional("host", m.host, (v) => DNS_HOST.test(v), "is not a DNS host name (e.g. mlflow.example.com)"),
        ingressClassName: optional("ingressClassName", m.ingressClassName, isDns1123Label, "is not a DNS-1123 name"),
        ingressTlsSecretName: optional("ingressTlsSecretName", m.ingressTlsSecretName, isDns1123Label, "is not a Secret name (DNS-1123 label)"),
        tlsCertificateArn: optional("tlsCertificateArn", m.tlsCertificateArn, (v) => ACM_CERTIFICATE_ARN.test(v), "is not an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)"),
        loadBalancerSourceRanges: list(p, "mlflow.loadBalancerSourceRanges", m.loadBalancerSourceRanges, [], isIpv4Cidr, "is not an IPv4 CIDR", 0),
        artifactEncryption: oneOf<BucketEncryption>(p, "mlflow.artifactEncryption", m.artifactEncryption, "aws:kms", ["aws:kms", "AES256"]),
    };
    mlflow.loadBalancerSourceRanges.forEach((cidr, i) => {
        const doc = DOCUMENTATION_RANGES.find((r) => cidrWithin(cidr, r));
        if (doc) p.add(`mlflow.loadBalancerSourceRanges[${i}]`, cidr, `is in the documentation range ${doc}, which no real client uses: MLflow would be unreachable; list the egress CIDRs your users reach AWS from (VPN or office)`);
    });
    if (postgres.namespace === mlflow.namespace) {
        p.add("mlflow.namespace", mlflow.namespace, `must differ from postgres.namespace so the database's NetworkPolicy can tell them apart`);
    }
    if (mlflow.exposure !== "none") {
        // Basic auth sends the password with every request: only over TLS, only with a login.
        if (!mlflow.auth) p.add("mlflow.auth", false, `must be true with mlflow.exposure ${mlflow.exposure}: the tracking server would be open to anyone who reaches it`);
        if (mlflow.host === undefined) p.add("mlflow.host", undefined, `is required with mlflow.exposure ${mlflow.exposure}: the DNS name users reach MLflow at, covered by the TLS certificate (it is also the only allowed Host and CORS origin)`);
    }
    if (mlflow.exposure === "loadBalancer") {
        if (mlflow.tlsCertificateArn === undefined) {
            p.add("mlflow.tlsCertificateArn", undefined, "is required with mlflow.exposure loadBalancer: an ACM certificate for mlflow.host, so the NLB terminates TLS and basic-auth passwords never cross the internet in clear text");
        }
        if (mlflow.loadBalancerSourceRanges.length === 0) {
            p.add("mlflow.loadBalancerSourceRanges", [], "must list the CIDRs allowed to reach a public MLflow load balancer");
        }
        if (mlflow.ingressClassName !== undefined || mlflow.ingressTlsSecretName !== undefined) {
            p.add("mlflow.exposure", mlflow.exposure, "does not use mlflow.ingressClassName or mlflow.ingressTlsSecretName (they are for exposure ingress)");
        }
    }
    if (mlflow.exposure === "ingress") {
        if (mlflow.ingressClassName === undefined) p.add("mlflow.ingressClassName", undefined, "is required with mlflow.exposure ingress (e.g. alb for the AWS Load Balancer Controller, nginx)");
        if ((mlflow.ingressTlsSecretName === undefined) === (mlflow.tlsCertificateArn === undefined)) {
            p.add("mlflow.exposure", mlflow.exposure, "needs exactly one TLS setting: mlflow.ingressTlsSecretName (a TLS Secret in the MLflow namespace, any controller) or mlflow.tlsCertificateArn (ACM, AWS Load Balancer Controller)");
        }
    }
    if (mlflow.exposure === "none") {
        for (const key of ["host", "ingressClassName", "ingressTlsSecretName", "tlsCertificateArn"] as const) {
            if (mlflow[key] !== undefined) p.add(`mlflow.${key}`, mlflow[key], "is only used with mlflow.exposure loadBalancer or ingress (exposure is none)");
        }
    }
    if (mlflow.replicas >= 2 && mlflow.replicas > cluster.nodeMinSize) {
        p.add("mlflow.replicas", mlflow.replicas, `exceeds cluster.nodeMinSize (${cluster.nodeMinSize}): each replica runs on a node of its own, so one node loss never takes them all`);
    }
    const fitting = defaultDatabasePool(mlflow, postgres.maxConnections);
    if (m.databasePoolSize === undefined) mlflow.databasePoolSize = fitting?.size ?? 1;
    if (m.databaseMaxOverflow === undefined) mlflow.databaseMaxOverflow = fitting?.overflow ?? 0;
    const peak = mlflowPeakConnections(mlflow);
    if (peak + reservedConnections() > postgres.maxConnections) {
        p.add(m.databasePoolSize === undefined && m.databaseMaxOverflow === undefined ? "mlflow.replicas" : "mlflow.databasePoolSize",
            m.databasePoolSize === undefined && m.databaseMaxOverflow === undefined ? mlflow.replicas : mlflow.databasePoolSize,
            `makes MLflow's peak ${peak} connections ((mlflow.replicas ${mlflow.replicas} + 1 during a rollout) x mlflow.workers ${mlflow.workers} x ${2 + (mlflow.auth ? 1 : 0)} engines x (databasePoolSize ${mlflow.databasePoolSize} + databaseMaxOverflow ${mlflow.databaseMaxOverflow})) plus ${reservedConnections()} reserved exceed postgres.maxConnections (${postgres.maxConnections}): lower mlflow.replicas, mlflow.workers, mlflow.databasePoolSize or mlflow.databaseMaxOverflow, or raise postgres.maxConnections`);
    }
    return mlflow;
}
