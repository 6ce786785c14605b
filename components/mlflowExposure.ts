// How the MLflow tracking server is reached and where its replicas run: chart values for the
// Service, the Ingress, allowed Hosts and CORS origins, scheduling, and the NetworkPolicy's rules.
// Pure functions of the validated settings, so each exposure mode is tested on its own.
import * as k8s from "@pulumi/kubernetes";

/** The server's container port (the chart's service.containerPort, set explicitly). */
export const MLFLOW_CONTAINER_PORT = 5000;
/** TLS policy for the NLB listener and the ALB: TLS 1.3 and 1.2 only. */
export const TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06";

export interface ExposureSettings {
    namespace: string;
    releaseName: string;
    exposure: "none" | "loadBalancer" | "ingress";
    host?: string;
    ingressClassName?: string;
    ingressTlsSecretName?: string;
    tlsCertificateArn?: string;
    loadBalancerSourceRanges: string[];
}

export interface ExposureValues {
    service: { type: "ClusterIP" | "LoadBalancer"; port: number; containerPort: number; annotations: Record<string, string> };
    ingress: {
        enabled: boolean;
        className?: string;
        annotations?: Record<string, string>;
        hosts?: { host: string; paths: { path: string; pathType: string }[] }[];
        tls?: { secretName: string; hosts: string[] }[];
    };
    serverAllowedHosts: string[];
    corsAllowedOrigins: string[];
}

/** The Service's port: 443 behind a TLS-terminating NLB (its listener port), 80 otherwise. */
export function servicePort(s: Pick<ExposureSettings, "exposure">): number {
    return s.exposure === "loadBalancer" ? 443 : 80;
}

/**
 * Chart values for one exposure mode. Exposed modes terminate TLS before MLflow: basic-auth
 * passwords travel with every request. CORS origins are set to the public https origin because the
 * chart derives them only from ingress.hosts, and with http:// unless ingress.tls is set (never
 * with ACM at an ALB, and not at all for a load balancer): MLflow 3 refuses cross-origin writes
 * from any other origin, so the UI could not write through the public name.
 */
export function exposureValues(s: ExposureSettings): ExposureValues {
    const serviceHost = `${s.releaseName}.${s.namespace}.svc.cluster.local`;
    // MLflow 3 rejects Host headers it does not know (DNS-rebinding protection). Setting the list
    // replaces its defaults, so localhost (kubectl port-forward) and pod IPs (probes) stay listed.
    const inCluster = [
        "localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*",
        "10.*", "172.*", "192.168.*",
        s.releaseName, `${s.releaseName}.${s.namespace}`, `${s.releaseName}.${s.namespace}.svc`,
        serviceHost, `${serviceHost}:*`,
    ];
    const port = servicePort(s);
    const base: ExposureValues = {
        service: { type: "ClusterIP", port, containerPort: MLFLOW_CONTAINER_PORT, annotations: {} },
        ingress: { enabled: false },
        serverAllowedHosts: inCluster,
        corsAllowedOrigins: [],
    };
    if (s.exposure === "none") return base;
    if (s.host === undefined) throw new Error(`mlflow exposure ${s.exposure} needs a host`);
    const exposed = { ...base, serverAllowedHosts: [...inCluster, s.host], corsAllowedOrigins: [`https://${s.host}`] };

    if (s.exposure === "loadBalancer") {
        if (s.tlsCertificateArn === undefined) throw new Error("mlflow exposure loadBalancer needs tlsCertificateArn");
        return {
            ...exposed,
            service: {
                type: "LoadBalancer",
                port,
                containerPort: MLFLOW_CONTAINER_PORT,
                annotations: {
                    "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
                    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
                    // TLS ends at the NLB with the ACM certificate; the NLB forwards TCP to MLflow.
                    "service.beta.kubernetes.io/aws-load-balancer-ssl-cert": s.tlsCertificateArn,
                    "service.beta.kubernetes.io/aws-load-balancer-ssl-ports": String(port),
                    "service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy": TLS_POLICY,
                    "service.beta.kubernetes.io/aws-load-balancer-backend-protocol": "tcp",
                    "service.beta.kubernetes.io/load-balancer-source-ranges": s.loadBalancerSourceRanges.join(","),
                },
            },
        };
    }

    const acm = s.tlsCertificateArn !== undefined;
    return {
        ...exposed,
        ingress: {
            enabled: true,
            className: s.ingressClassName,
            // ACM: the AWS Load Balancer Controller terminates TLS at the ALB and redirects http.
            annotations: acm
                ? {
                    "alb.ingress.kubernetes.io/scheme": "internet-facing",
                    "alb.ingress.kubernetes.io/target-type": "ip",
                    "alb.ingress.kubernetes.io/certificate-arn": s.tlsCertificateArn!,
                    "alb.ingress.kubernetes.io/listen-ports": JSON.stringify([{ HTTP: 80 }, { HTTPS: 443 }]),
                    "alb.ingress.kubernetes.io/ssl-redirect": "443",
                    "alb.ingress.kubernetes.io/ssl-policy": TLS_POLICY,
                    ...(s.loadBalancerSourceRanges.length > 0 ? { "alb.ingress.kubernetes.io/inbound-cidrs": s.loadBalancerSourceRanges.join(",") } : {}),
                }
                : {},
            hosts: [{ host: s.host, paths: [{ path: "/", pathType: "Prefix" }] }],
            tls: acm ? [] : [{ secretName: s.ingressTlsSecretName!, hosts: [s.host] }],
        },
    };
}

/**
 * Where replicas run. With two or more, each on a node of its own (required: a node loss never
 * takes every replica; config keeps replicas <= cluster.nodeMinSize) and spread over zones where
 * the zones allow (preferred: more replicas than zones still schedule). The chart has no
 * topologySpreadConstraints value, so pod anti-affinity expresses both. A rollout adds one pod
 * and may stop one (maxSurge 1, maxUnavailable 1): with a replica on every node a surge pod could
 * not schedule, and the chart's default (surge 100%) would double the database connections.
 */
export function schedulingValues(replicas: number, podLabels: Record<string, string>): { affinity?: object; strategy?: object } {
    if (replicas < 2) return {};
    const selector = { matchLabels: podLabels };
    return {
        affinity: {
            podAntiAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: selector, topologyKey: "kubernetes.io/hostname" }],
                preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: { labelSelector: selector, topologyKey: "topology.kubernetes.io/zone" } }],
            },
        },
        strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } },
    };
}

export interface TrackingPortAccess {
    /** Namespaces whose pods may call the tracking server (clients, the Prometheus scrape). */
    clientNamespaces: string[];
    /**
     * Source CIDRs of the load balancer path when exposed: the public subnets (NLB/ALB nodes and
     * their health checks, with IP targets) and loadBalancerSourceRanges (clients, when the NLB
     * preserves their address). Traffic the node SNATs (instance targets) comes from the node's
     * IP, which the VPC CNI's policy agent always admits (aws/aws-network-policy-agent#65).
     */
    loadBalancerCidrs: string[];
}

/** The NetworkPolicy's ingress rules: the tracking port only, from the listed sources only. */
export function trackingPortRules(a: TrackingPortAccess): k8s.types.input.networking.v1.NetworkPolicyIngressRule[] {
    const ports = [{ protocol: "TCP", port: MLFLOW_CONTAINER_PORT }];
    const rules: k8s.types.input.networking.v1.NetworkPolicyIngressRule[] = [{
        // Pods only: a namespaceSelector alone admits every pod of those namespaces, nothing outside.
        from: a.clientNamespaces.map((ns) => ({ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": ns } } })),
        ports,
    }];
    if (a.loadBalancerCidrs.length > 0) rules.push({ from: a.loadBalancerCidrs.map((cidr) => ({ ipBlock: { cidr } })), ports });
    return rules;
}
