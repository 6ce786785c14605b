import * as aws from "@pulumi/aws";
import * as eks from "@pulumi/eks";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as crypto from "crypto";
import { ClusterConfig } from "../config";
import { IrsaRole } from "./irsaRole";
import { Network } from "./network";

/** The validated cluster settings (config/types.ts documents each) plus what the cluster needs from elsewhere. */
export interface ClusterArgs extends ClusterConfig {
    /** EKS cluster name; fixed, since kubeconfig contexts and subnet tags carry it. */
    clusterName: string;
    /** aws:profile: written into the kubeconfig so kubectl and the Kubernetes provider use the same credentials as the AWS provider. */
    awsProfile?: string;
    /** Customer-managed KMS key the StorageClass encrypts volumes with: the CSI driver must be allowed to use it. */
    volumeKmsKeyArn?: string;
}

const EBS_CSI_SERVICE_ACCOUNT = { namespace: "kube-system", name: "ebs-csi-controller-sa" };

// EKS access policies (https://docs.aws.amazon.com/eks/latest/userguide/access-policy-permissions.html).
export const CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";
export const VIEW_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy";

/**
 * The policy AWS documents for the EBS CSI driver with a customer-managed key ("Use a customer
 * managed key with the Amazon EBS CSI driver", https://docs.aws.amazon.com/eks/latest/userguide/ebs-csi.html):
 * grants only for AWS resources (EBS attaching the volume), and use of the key, both on that key
 * alone. The documented `kms:ReEncrypt*` and `kms:GenerateDataKey*` are written out as the actions
 * they match, which grants the same and keeps the no-wildcard-iam-actions policy meaningful.
 */
export function ebsKmsPolicy(keyArn: string): string {
    return JSON.stringify({
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "GrantsForEbsOnly",
                Effect: "Allow",
                Action: ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
                Resource: [keyArn],
                Condition: { Bool: { "kms:GrantIsForAWSResource": "true" } },
            },
            {
                Sid: "UseTheVolumeKey",
                Effect: "Allow",
                Action: [
                    "kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo",
                    "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:GenerateDataKeyPair", "kms:GenerateDataKeyPairWithoutPlaintext",
                    "kms:DescribeKey",
                ],
                Resource: [keyArn],
            },
        ],
    });
}

/** `total` nodes over `zones` groups: the first groups take the remainder (monotonic, so min <= desired <= max holds per group). */
export function splitAcrossZones(total: number, zones: number): number[] {
    return Array.from({ length: zones }, (_, i) => Math.floor(total / zones) + (i < total % zones ? 1 : 0));
}

/**
 * The kubeconfig with AWS_PROFILE set for `aws eks get-token`, as pulumi-eks writes it for its own
 * provider (generateKubeconfig with a profile: an `env` entry on the exec user). The component's
 * exported kubeconfig deliberately leaves the profile out, so without this kubectl and the
 * Kubernetes provider would use the default credential chain while the AWS provider uses aws:profile.
 */
export function kubeconfigWithProfile(kubeconfigJson: string, profileName: string): string {
    const kc = JSON.parse(kubeconfigJson) as { users?: { user?: { exec?: { env?: { name: string; value: string }[] } } }[] };
    for (const u of kc.users ?? []) {
        const exec = u.user?.exec;
        if (exec === undefined) continue;
        exec.env = [...(exec.env ?? []).filter((e) => e.name !== "AWS_PROFILE"), { name: "AWS_PROFILE", value: profileName }];
    }
    return JSON.stringify(kc);
}

/** A resource name for a principal that survives others being added or removed (never an index). */
function principalSlug(arn: string): string {
    const last = arn.split("/").pop()!.toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 32);
    return `${last}-${crypto.createHash("sha256").update(arn).digest("hex").slice(0, 6)}`;
}

/**
 * An EKS cluster in its own VPC: a managed node group per availability zone in private subnets,
 * IRSA through the cluster's OIDC provider, Secrets encrypted with a key of ours, NetworkPolicy
 * enforcement, access entries for the people and pipelines that operate it, and the managed add-ons
 * (vpc-cni, kube-proxy, CoreDNS, EBS CSI) at pinned versions.
 */
export class Cluster extends pulumi.ComponentResource {
    public readonly clusterName: pulumi.Output<string>;
    public readonly kubeconfig: pulumi.Output<string>;
    public readonly oidcProviderArn: pulumi.Output<string>;
    public readonly oidcProviderUrl: pulumi.Output<string>;
    /** The OIDC issuer without https://: the prefix of IRSA trust-policy condition keys. */
    public readonly oidcIssuer: pulumi.Output<string>;
    public readonly vpcId: pulumi.Output<string>;
    public readonly publicSubnetIds: pulumi.Output<string[]>;
    public readonly publicSubnetCidrs: pulumi.Output<string[]>;
    public readonly privateSubnetIds: pulumi.Output<string[]>;
    /** The only way Kubernetes resources in this program reach the cluster. */
    public readonly provider: k8s.Provider;
    /** Ready once the CSI driver is installed: storage depends on it. */
    public readonly ebsCsiAddon: aws.eks.Addon;

    constructor(name: string, args: ClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:Cluster", name, {}, opts);
        const versions = args.addonVersions;

        const network = new Network(`${name}-network`, {
            cidrBlock: args.vpcCidr,
            availabilityZoneCount: args.availabilityZoneCount,
            availabilityZones: args.availabilityZones,
            natGateways: args.natGateways,
            clusterName: args.clusterName,
        }, { parent: this });

        const secretsKey = new aws.kms.Key(`${name}-secrets`, {
            description: `Envelope encryption of Kubernetes Secrets in EKS cluster ${args.clusterName}`,
            enableKeyRotation: true,
            deletionWindowInDays: 30,
        }, { parent: this });

        const cluster = new eks.Cluster(`${name}-eks`, {
            name: args.clusterName,
            version: args.kubernetesVersion,
            vpcId: network.vpcId,
            publicSubnetIds: network.publicSubnetIds,
            privateSubnetIds: network.privateSubnetIds,
            nodeAssociatePublicIpAddress: false,
            // Nodes come from the managed node groups below, not from the component's default group.
            skipDefaultNodeGroup: true,
            createOidcProvider: true,
            authenticationMode: eks.AuthenticationMode.Api,
            encryptionConfigKeyArn: secretsKey.arn,
            enabledClusterLogTypes: args.logTypes,
            endpointPrivateAccess: true,
            endpointPublicAccess: args.endpointPublicAccess,
            publicAccessCidrs: args.endpointPublicAccess ? args.publicAccessCidrs : undefined,
            deletionProtection: args.deletionProtection,
            // Pinned: left unset, the component resolves the most recent build on every preview.
            vpcCniOptions: { enableNetworkPolicy: true, addonVersion: versions["vpc-cni"] },
            kubeProxyAddonOptions: { enabled: true, version: versions["kube-proxy"] },
            // Without a default node group the component would not create CoreDNS anyway; it is
            // created below, after the nodes it runs on.
            corednsAddonOptions: { enabled: false },
            // The component's own Kubernetes provider (it applies objects of its own) uses the profile too.
            providerCredentialOpts: args.awsProfile !== undefined ? { profileName: args.awsProfile } : undefined,
        }, { parent: this });

        // Access entries: the creator's admin access is only bootstrapped; everyone else who operates
        // the cluster (a second engineer, CI) needs an entry. principalArn and the association's
        // fields force replacement (ForceNew in terraform-provider-aws internal/service/eks/
        // access_entry.go and access_policy_association.go), so resources are named per principal:
        // adding or removing one never touches the others.
        const grants = [
            ...args.adminPrincipalArns.map((arn) => ({ arn, role: "admin", policyArn: CLUSTER_ADMIN_POLICY })),
            ...args.viewerPrincipalArns.map((arn) => ({ arn, role: "viewer", policyArn: VIEW_POLICY })),
        ];
        for (const g of grants) {
            const id = `${name}-${g.role}-${principalSlug(g.arn)}`;
            const entry = new aws.eks.AccessEntry(id, {
                clusterName: args.clusterName,
                principalArn: g.arn,
                type: "STANDARD",
            }, { parent: this, dependsOn: [cluster] });
            new aws.eks.AccessPolicyAssociation(id, {
                clusterName: args.clusterName,
                principalArn: entry.principalArn,
                policyArn: g.policyArn,
                accessScope: { type: "cluster" },
            }, { parent: this, dependsOn: [entry] });
        }

        const nodeRole = new aws.iam.Role(`${name}-node`, {
            assumeRolePolicy: JSON.stringify({
                Version: "2012-10-17",
                Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
            }),
        }, { parent: this });
        const nodePolicies = [
            "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
            "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
            "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
        ].map((policyArn, i) => new aws.iam.RolePolicyAttachment(`${name}-node-${i}`, { role: nodeRole.name, policyArn }, { parent: this }));

        // IMDSv2 with a hop limit of 1 keeps pods from borrowing the node role: they use IRSA.
        const launchTemplate = new aws.ec2.LaunchTemplate(`${name}-nodes`, {
            metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
            blockDeviceMappings: [{
                deviceName: "/dev/xvda",
                ebs: { volumeSize: args.nodeDiskSizeGiB, volumeType: "gp3", encrypted: "true", deleteOnTermination: "true" },
            }],
            tagSpecifications: [{ resourceType: "instance", tags: { Name: `${args.clusterName}-node` } }],
        }, { parent: this });

        // One managed node group per zone. An EBS volume lives in one zone, so PostgreSQL can only
        // run where its volume is: a group per zone with at least one node each means the zone of
        // the volume always has a node, and the group replaces a lost instance in that same zone.
        // A single group over all zones rebalances by zone but gives no such guarantee.
        const zoneCount = args.availabilityZoneCount;
        const [mins, desireds, maxes] = [args.nodeMinSize, args.nodeDesiredSize, args.nodeMaxSize].map((t) => splitAcrossZones(t, zoneCount));
        const nodeGroups = network.privateSubnetIds.map((subnetId, i) => new aws.eks.NodeGroup(`${name}-nodes-${i}`, {
            clusterName: args.clusterName,
            // The kubelet version follows the control plane: a `pulumi up` that raises
            // kubernetesVersion rolls the nodes after the control plane (EKS updates a node group
            // in place, maxUnavailable at a time, draining each node).
            version: args.kubernetesVersion,
            nodeRoleArn: nodeRole.arn,
            subnetIds: [subnetId],
            instanceTypes: args.nodeInstanceTypes,
            amiType: args.nodeAmiType,
            capacityType: "ON_DEMAND",
            scalingConfig: { minSize: mins[i], desiredSize: desireds[i], maxSize: maxes[i] },
            updateConfig: { maxUnavailable: 1 },
            labels: { "platform/zone-index": String(i) },
            launchTemplate: { id: launchTemplate.id, version: pulumi.interpolate`${launchTemplate.latestVersion}` },
        }, {
            parent: this,
            dependsOn: [cluster, ...nodePolicies],
            // Only an autoscaler that owns the desired size makes Pulumi's value stale; otherwise
            // a changed nodeDesiredSize in config must take effect.
            ignoreChanges: args.nodeAutoscaler === "none" ? [] : ["scalingConfig.desiredSize"],
        }));

        // Created after the nodes: the add-on only turns ACTIVE once its pods are scheduled.
        new aws.eks.Addon(`${name}-coredns`, {
            clusterName: args.clusterName,
            addonName: "coredns",
            addonVersion: versions.coredns,
            // Adopts the CoreDNS Deployment EKS installs as a self-managed add-on.
            resolveConflictsOnCreate: "OVERWRITE",
            resolveConflictsOnUpdate: "OVERWRITE",
        }, { parent: this, dependsOn: nodeGroups });

        const csiRole = new IrsaRole(`${name}-ebs-csi`, {
            oidcProviderArn: cluster.oidcProviderArn,
            oidcIssuer: cluster.oidcIssuer,
            namespace: EBS_CSI_SERVICE_ACCOUNT.namespace,
            serviceAccountName: EBS_CSI_SERVICE_ACCOUNT.name,
            managedPolicyArns: ["arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"],
            policy: args.volumeKmsKeyArn !== undefined ? ebsKmsPolicy(args.volumeKmsKeyArn) : undefined,
        }, { parent: this });

        this.ebsCsiAddon = new aws.eks.Addon(`${name}-ebs-csi`, {
            clusterName: args.clusterName,
            addonName: "aws-ebs-csi-driver",
            addonVersion: versions["aws-ebs-csi-driver"],
            serviceAccountRoleArn: csiRole.roleArn,
            resolveConflictsOnCreate: "OVERWRITE",
            resolveConflictsOnUpdate: "OVERWRITE",
        }, { parent: this, dependsOn: nodeGroups });

        this.clusterName = pulumi.output(args.clusterName);
        const profile = args.awsProfile;
        const kubeconfig = profile !== undefined ? cluster.kubeconfigJson.apply((k) => kubeconfigWithProfile(k, profile)) : cluster.kubeconfigJson;
        this.kubeconfig = pulumi.secret(kubeconfig);
        this.oidcProviderArn = cluster.oidcProviderArn;
        this.oidcProviderUrl = cluster.oidcProviderUrl;
        this.oidcIssuer = cluster.oidcIssuer;
        this.vpcId = network.vpcId;
        this.publicSubnetIds = pulumi.all(network.publicSubnetIds);
        this.publicSubnetCidrs = pulumi.all(network.publicSubnetCidrs);
        this.privateSubnetIds = pulumi.all(network.privateSubnetIds);
        this.provider = new k8s.Provider(`${name}-k8s`, {
            kubeconfig: this.kubeconfig,
            // Server-side apply: field ownership instead of last-applied annotations.
            enableServerSideApply: true,
        }, { parent: this, dependsOn: nodeGroups });

        this.registerOutputs({
            clusterName: this.clusterName,
            kubeconfig: this.kubeconfig,
            oidcProviderArn: this.oidcProviderArn,
            oidcProviderUrl: this.oidcProviderUrl,
            vpcId: this.vpcId,
            publicSubnetIds: this.publicSubnetIds,
            privateSubnetIds: this.privateSubnetIds,
            provider: this.provider,
        });
    }
}
