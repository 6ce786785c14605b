// cluster.*: the EKS cluster, its network, node groups, access and add-ons.
import { ADDON_NAMES, ADDON_VERSION, ADDON_VERSIONS, AddonVersions } from "../components/addonVersions";
import { bool, cidrWithin, DOCUMENTATION_RANGES, int, isIpv4Cidr, list, noUnknownKeys, oneOf, Problems, section, str } from "./checks";
import { ClusterConfig, NatGatewayMode, NodeAmiType, NodeAutoscaler } from "./types";

export const EKS_LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"];
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[0-9]*[a-z0-9]+$/;
// IAM roles and users (an access entry's principal); not sts assumed-role session ARNs.
const PRINCIPAL_ARN = /^arn:aws:iam::[0-9]{12}:(role|user)\/[A-Za-z0-9+=,.@_\/-]{1,512}$/;
const KUBERNETES_MINOR = /^1\.(2[89]|3[0-9])$/;

/** The add-on versions for a Kubernetes minor: the table's row, then what config overrides. */
function addonVersions(p: Problems, minor: string, v: unknown): AddonVersions {
    const o = section(p, "cluster.addonVersions", v);
    noUnknownKeys(p, "cluster.addonVersions", o, ADDON_NAMES);
    const row: Partial<AddonVersions> = ADDON_VERSIONS[minor] ?? {};
    const out: Partial<AddonVersions> = {};
    const missing: string[] = [];
    for (const name of ADDON_NAMES) {
        const given = o[name];
        if (given !== undefined && (typeof given !== "string" || !ADDON_VERSION.test(given))) {
            p.add(`cluster.addonVersions.${name}`, given, "is not an EKS add-on version (e.g. v1.21.1-eksbuild.7; list them with aws eks describe-addon-versions)");
        } else if (given !== undefined) {
            out[name] = given;
        } else if (row[name] !== undefined) {
            out[name] = row[name];
        } else {
            missing.push(name);
        }
    }
    if (missing.length > 0) {
        p.add("cluster.addonVersions", o, `has no version for ${missing.join(", ")} on Kubernetes ${minor}, and components/addonVersions.ts has no row for ${minor} ` +
            `(rows: ${Object.keys(ADDON_VERSIONS).join(", ")}): set them from aws eks describe-addon-versions --kubernetes-version ${minor}`);
    }
    return out as AddonVersions;
}

/** Rules about how a cluster may change or be sized, beyond each key's own. */
function clusterChangeProblems(p: Problems, cluster: ClusterConfig): void {
    const minor = (v: string) => Number(v.split(".")[1]);
    const prev = cluster.previousKubernetesVersion;
    if (prev !== undefined && KUBERNETES_MINOR.test(prev) && KUBERNETES_MINOR.test(cluster.kubernetesVersion)) {
        const step = minor(cluster.kubernetesVersion) - minor(prev);
        if (step < 0) {
            p.add("cluster.kubernetesVersion", cluster.kubernetesVersion, `is older than cluster.previousKubernetesVersion (${prev}): EKS cannot downgrade a control plane`);
        } else if (step > 1) {
            p.add("cluster.kubernetesVersion", cluster.kubernetesVersion, `is ${step} minors past cluster.previousKubernetesVersion (${prev}): EKS upgrades one minor at a time; set 1.${minor(prev) + 1} first (README, "Upgrading Kubernetes")`);
        }
    }
    const zones = cluster.availabilityZones;
    if (zones !== undefined && zones.length !== cluster.availabilityZoneCount) {
        p.add("cluster.availabilityZoneCount", cluster.availabilityZoneCount, `must equal the number of cluster.availabilityZones (${zones.length}), or be left out`);
    }
    if (zones !== undefined && zones.length > 3) p.add("cluster.availabilityZones", zones, "lists more than 3 zones");
    if (cluster.nodeMinSize < cluster.availabilityZoneCount) {
        p.add("cluster.nodeMinSize", cluster.nodeMinSize, `must be at least the number of zones (${cluster.availabilityZoneCount}): every zone keeps a node, so a PostgreSQL volume's zone always has one to attach to`);
    }
    const both = cluster.adminPrincipalArns.filter((a) => cluster.viewerPrincipalArns.includes(a));
    if (both.length > 0) p.add("cluster.viewerPrincipalArns", both, "are also in cluster.adminPrincipalArns; a principal has one access entry");
}


const PUT_THERE = "list the egress CIDRs of your VPN or office (your address as seen by AWS: curl https://checkip.amazonaws.com, as /32), or set cluster.endpointPublicAccess: false and reach the API from inside the VPC";

/** The public API endpoint's allow-list must let the operators in, and in prod only them. */
function publicAccessProblems(p: Problems, cluster: ClusterConfig, unset: boolean, prod: boolean): void {
    cluster.publicAccessCidrs.forEach((cidr, i) => {
        const doc = DOCUMENTATION_RANGES.find((r) => cidrWithin(cidr, r));
        if (doc) p.add(`cluster.publicAccessCidrs[${i}]`, cidr, `is in the documentation range ${doc}, which no real client uses: the cluster API would be unreachable; ${PUT_THERE}`);
    });
    if (!prod || !cluster.endpointPublicAccess) return;
    if (unset) {
        p.add("cluster.publicAccessCidrs", undefined, `is required in stack prod (the default 0.0.0.0/0 opens the API endpoint to the internet): ${PUT_THERE}`);
    } else if (cluster.publicAccessCidrs.includes("0.0.0.0/0")) {
        p.add("cluster.publicAccessCidrs", cluster.publicAccessCidrs, `must not contain 0.0.0.0/0 in stack prod: ${PUT_THERE}`);
    }
}

export function clusterConfig(p: Problems, raw: unknown, region: string, stack: string): ClusterConfig {
    const c = section(p, "cluster", raw);
    noUnknownKeys(p, "cluster", c, [
        "kubernetesVersion", "previousKubernetesVersion", "addonVersions", "vpcCidr", "availabilityZoneCount", "availabilityZones",
        "natGateways", "nodeInstanceTypes", "nodeAmiType", "nodeMinSize", "nodeDesiredSize", "nodeMaxSize", "nodeAutoscaler",
        "nodeDiskSizeGiB", "endpointPublicAccess", "publicAccessCidrs", "logTypes", "deletionProtection",
        "adminPrincipalArns", "viewerPrincipalArns",
    ]);
    const minorText = "is not a Kubernetes minor version EKS offers (1.28 to 1.39, e.g. \"1.34\")";
    const kubernetesVersion = str(p, "cluster.kubernetesVersion", c.kubernetesVersion, "1.34", (s) => KUBERNETES_MINOR.test(s), minorText);
    const previousKubernetesVersion = c.previousKubernetesVersion === undefined ? undefined : str(p, "cluster.previousKubernetesVersion", c.previousKubernetesVersion, "", (s) => KUBERNETES_MINOR.test(s), minorText) || undefined;
    const zoneList = c.availabilityZones === undefined ? undefined : list(p, "cluster.availabilityZones", c.availabilityZones, [], (z) => typeof region === "string" && z.startsWith(region) && /^[a-z]{2}-[a-z]+-[0-9][a-z]$/.test(z), `is not an availability zone of aws:region ${region} (e.g. ${region}a)`, 2);
    const cluster: ClusterConfig = {
        kubernetesVersion,
        previousKubernetesVersion,
        addonVersions: addonVersions(p, kubernetesVersion, c.addonVersions),
        vpcCidr: str(p, "cluster.vpcCidr", c.vpcCidr, "10.0.0.0/16", (s) => isIpv4Cidr(s) && Number(s.split("/")[1]) >= 16 && Number(s.split("/")[1]) <= 20, "is not an IPv4 CIDR with a prefix from /16 to /20 (e.g. 10.0.0.0/16)"),
        availabilityZoneCount: int(p, "cluster.availabilityZoneCount", c.availabilityZoneCount, zoneList && zoneList.length > 0 ? zoneList.length : 2, 2, 3),
        availabilityZones: zoneList && zoneList.length > 0 ? zoneList : undefined,
        nodeAutoscaler: oneOf<NodeAutoscaler>(p, "cluster.nodeAutoscaler", c.nodeAutoscaler, "none", ["none", "clusterAutoscaler"]),
        adminPrincipalArns: list(p, "cluster.adminPrincipalArns", c.adminPrincipalArns, [], (a) => PRINCIPAL_ARN.test(a), "is not an IAM role or user ARN (arn:aws:iam::<account>:role/<name>; an sts assumed-role session ARN cannot hold an access entry)", 0),
        viewerPrincipalArns: list(p, "cluster.viewerPrincipalArns", c.viewerPrincipalArns, [], (a) => PRINCIPAL_ARN.test(a), "is not an IAM role or user ARN (arn:aws:iam::<account>:role/<name>; an sts assumed-role session ARN cannot hold an access entry)", 0),
        natGateways: oneOf<NatGatewayMode>(p, "cluster.natGateways", c.natGateways, "single", ["single", "perAz"]),
        nodeInstanceTypes: list(p, "cluster.nodeInstanceTypes", c.nodeInstanceTypes, ["t3.large"], (s) => INSTANCE_TYPE.test(s), "is not an EC2 instance type (e.g. m6i.large)"),
        nodeAmiType: oneOf<NodeAmiType>(p, "cluster.nodeAmiType", c.nodeAmiType, "AL2023_x86_64_STANDARD", ["AL2023_x86_64_STANDARD", "AL2023_ARM_64_STANDARD"]),
        nodeMinSize: int(p, "cluster.nodeMinSize", c.nodeMinSize, 2, 1, 100),
        nodeDesiredSize: int(p, "cluster.nodeDesiredSize", c.nodeDesiredSize, 2, 1, 100),
        nodeMaxSize: int(p, "cluster.nodeMaxSize", c.nodeMaxSize, 3, 1, 100),
        nodeDiskSizeGiB: int(p, "cluster.nodeDiskSizeGiB", c.nodeDiskSizeGiB, 50, 20, 16384),
        endpointPublicAccess: bool(p, "cluster.endpointPublicAccess", c.endpointPublicAccess, true),
        publicAccessCidrs: list(p, "cluster.publicAccessCidrs", c.publicAccessCidrs, ["0.0.0.0/0"], isIpv4Cidr, "is not an IPv4 CIDR (e.g. 100.24.0.0/16)"),
        logTypes: list(p, "cluster.logTypes", c.logTypes, ["api", "audit", "authenticator"], (s) => EKS_LOG_TYPES.includes(s), `is not an EKS log type (${EKS_LOG_TYPES.join(", ")})`, 0),
        deletionProtection: bool(p, "cluster.deletionProtection", c.deletionProtection, false),
    };
    publicAccessProblems(p, cluster, c.publicAccessCidrs === undefined, stack === "prod");
    clusterChangeProblems(p, cluster);
    if (!(cluster.nodeMinSize <= cluster.nodeDesiredSize && cluster.nodeDesiredSize <= cluster.nodeMaxSize)) {
        p.add("cluster.nodeDesiredSize", cluster.nodeDesiredSize, `must satisfy nodeMinSize (${cluster.nodeMinSize}) <= nodeDesiredSize <= nodeMaxSize (${cluster.nodeMaxSize})`);
    }
    const armTypes = cluster.nodeInstanceTypes.filter((t) => /^[a-z]+[0-9]+[a-z]*g[a-z]*\./.test(t));
    if (armTypes.length > 0 && armTypes.length < cluster.nodeInstanceTypes.length) {
        p.add("cluster.nodeInstanceTypes", cluster.nodeInstanceTypes, "mixes Graviton (arm64) and x86_64 instance types; one node group runs one architecture");
    } else if (armTypes.length > 0 && cluster.nodeAmiType !== "AL2023_ARM_64_STANDARD") {
        p.add("cluster.nodeAmiType", cluster.nodeAmiType, `does not fit the Graviton instance types ${armTypes.join(", ")} (use AL2023_ARM_64_STANDARD)`);
    } else if (armTypes.length === 0 && cluster.nodeAmiType === "AL2023_ARM_64_STANDARD") {
        p.add("cluster.nodeAmiType", cluster.nodeAmiType, "needs Graviton instance types (e.g. m7g.large)");
    }

    return cluster;
}
