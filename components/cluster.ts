import * as aws from "@pulumi/aws";
import * as eks from "@pulumi/eks";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ClusterConfig } from "../config";
import { IrsaRole } from "./irsaRole";
import { Network } from "./network";

/** The validated cluster settings (config.ts documents each) plus the cluster's name. */
export interface ClusterArgs extends ClusterConfig {
    /** EKS cluster name; fixed, since kubeconfig contexts and subnet tags carry it. */
    clusterName: string;
}

const EBS_CSI_SERVICE_ACCOUNT = { namespace: "kube-system", name: "ebs-csi-controller-sa" };

/**
 * An EKS cluster in its own VPC: managed nodes in private subnets, IRSA through the cluster's OIDC
 * provider, Secrets encrypted with a key of ours, NetworkPolicy enforcement, and the EBS CSI driver
 * (without which no PersistentVolumeClaim on EKS ever binds).
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
    public readonly privateSubnetIds: pulumi.Output<string[]>;
    /** The only way Kubernetes resources in this program reach the cluster. */
    public readonly provider: k8s.Provider;
    /** Ready once the CSI driver is installed: storage depends on it. */
    public readonly ebsCsiAddon: aws.eks.Addon;

    constructor(name: string, args: ClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:Cluster", name, {}, opts);

        const network = new Network(`${name}-network`, {
            cidrBlock: args.vpcCidr,
            availabilityZoneCount: args.availabilityZoneCount,
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
            // Nodes come from the managed node group below, not from the component's default group.
            skipDefaultNodeGroup: true,
            createOidcProvider: true,
            authenticationMode: eks.AuthenticationMode.Api,
            encryptionConfigKeyArn: secretsKey.arn,
            enabledClusterLogTypes: args.logTypes,
            endpointPrivateAccess: true,
            endpointPublicAccess: args.endpointPublicAccess,
            publicAccessCidrs: args.endpointPublicAccess ? args.publicAccessCidrs : undefined,
            deletionProtection: args.deletionProtection,
            vpcCniOptions: { enableNetworkPolicy: true },
        }, { parent: this });

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

        const nodeGroup = new aws.eks.NodeGroup(`${name}-nodes`, {
            clusterName: args.clusterName,
            nodeRoleArn: nodeRole.arn,
            subnetIds: network.privateSubnetIds,
            instanceTypes: args.nodeInstanceTypes,
            amiType: args.nodeAmiType,
            capacityType: "ON_DEMAND",
            scalingConfig: { minSize: args.nodeMinSize, desiredSize: args.nodeDesiredSize, maxSize: args.nodeMaxSize },
            updateConfig: { maxUnavailable: 1 },
            launchTemplate: { id: launchTemplate.id, version: pulumi.interpolate`${launchTemplate.latestVersion}` },
        }, {
            parent: this,
            dependsOn: [cluster, ...nodePolicies],
            // The cluster autoscaler owns the desired size once running; Pulumi must not reset it.
            ignoreChanges: ["scalingConfig.desiredSize"],
        });

        const csiRole = new IrsaRole(`${name}-ebs-csi`, {
            oidcProviderArn: cluster.oidcProviderArn,
            oidcIssuer: cluster.oidcIssuer,
            namespace: EBS_CSI_SERVICE_ACCOUNT.namespace,
            serviceAccountName: EBS_CSI_SERVICE_ACCOUNT.name,
            managedPolicyArns: ["arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"],
        }, { parent: this });

        this.ebsCsiAddon = new aws.eks.Addon(`${name}-ebs-csi`, {
            clusterName: args.clusterName,
            addonName: "aws-ebs-csi-driver",
            serviceAccountRoleArn: csiRole.roleArn,
            resolveConflictsOnCreate: "OVERWRITE",
            resolveConflictsOnUpdate: "OVERWRITE",
        }, { parent: this, dependsOn: [nodeGroup] });

        this.clusterName = pulumi.output(args.clusterName);
        this.kubeconfig = pulumi.secret(cluster.kubeconfigJson);
        this.oidcProviderArn = cluster.oidcProviderArn;
        this.oidcProviderUrl = cluster.oidcProviderUrl;
        this.oidcIssuer = cluster.oidcIssuer;
        this.vpcId = network.vpcId;
        this.publicSubnetIds = pulumi.all(network.publicSubnetIds);
        this.privateSubnetIds = pulumi.all(network.privateSubnetIds);
        this.provider = new k8s.Provider(`${name}-k8s`, {
            kubeconfig: this.kubeconfig,
            // Server-side apply: field ownership instead of last-applied annotations.
            enableServerSideApply: true,
        }, { parent: this, dependsOn: [nodeGroup] });

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
