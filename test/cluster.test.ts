import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OIDC_ISSUER, OIDC_PROVIDER_ARN } from "../scripts/mocks";
import { cidrSubnet } from "../components/network";
import { all, clusterProviderRef, kubernetesObjects, one, policyOf, stack, STACKS } from "./support/stacks";

const expected = {
    dev: { zones: 2, nats: 1, cidr: "10.10.0.0/16", types: ["t3.large"], sizes: [2, 2, 3], logs: ["api", "audit"], reclaim: "Delete" },
    prod: { zones: 3, nats: 3, cidr: "10.20.0.0/16", types: ["m6i.xlarge"], sizes: [3, 3, 6], logs: ["api", "audit", "authenticator", "controllerManager", "scheduler"], reclaim: "Retain" },
};

describe("cidrSubnet", () => {
    it("carves blocks like Terraform's cidrsubnet", () => {
        assert.equal(cidrSubnet("10.0.0.0/16", 3, 0), "10.0.0.0/19");
        assert.equal(cidrSubnet("10.0.0.0/16", 3, 2), "10.0.64.0/19");
        assert.equal(cidrSubnet("10.0.0.0/16", 6, 56), "10.0.224.0/22");
        assert.equal(cidrSubnet("10.0.0.0/20", 6, 58), "10.0.14.128/26");
        assert.throws(() => cidrSubnet("10.0.0.0/16", 3, 8));
    });
});

for (const name of STACKS) {
    const want = expected[name];
    describe(`cluster (${name})`, () => {
        it("has a dedicated VPC with DNS support", async () => {
            const vpcs = all(await stack(name), "aws:ec2/vpc:Vpc");
            assert.equal(vpcs.length, 1);
            assert.equal(vpcs[0].inputs.cidrBlock, want.cidr);
            assert.equal(vpcs[0].inputs.enableDnsHostnames, true);
            assert.equal(vpcs[0].inputs.enableDnsSupport, true);
        });

        it("spreads public and private subnets over the zones, tagged for load balancers, with no public IPs", async () => {
            const ev = await stack(name);
            const subnets = all(ev, "aws:ec2/subnet:Subnet");
            const pub = subnets.filter((s) => s.name.includes("-public-"));
            const priv = subnets.filter((s) => s.name.includes("-private-"));
            assert.equal(pub.length, want.zones);
            assert.equal(priv.length, want.zones);
            assert.deepEqual(new Set(priv.map((s) => s.inputs.availabilityZone)).size, want.zones);
            for (const s of subnets) assert.equal(s.inputs.mapPublicIpOnLaunch, false, s.name);
            for (const s of pub) assert.equal(s.inputs.tags["kubernetes.io/role/elb"], "1");
            for (const s of priv) assert.equal(s.inputs.tags["kubernetes.io/role/internal-elb"], "1");
            const cidrs = subnets.map((s) => s.inputs.cidrBlock);
            assert.equal(new Set(cidrs).size, cidrs.length, "subnet CIDRs overlap");
            assert.ok(ev.calls.some((c) => c.token === "aws:index/getAvailabilityZones:getAvailabilityZones" && c.inputs.state === "available"));
        });

        it(`routes private subnets through ${want.nats} NAT gateway(s) and public ones through the internet gateway`, async () => {
            const ev = await stack(name);
            const nats = all(ev, "aws:ec2/natGateway:NatGateway");
            assert.equal(nats.length, want.nats);
            for (const n of nats) assert.match(n.inputs.subnetId, /-public-\d-id$/);
            const routes = all(ev, "aws:ec2/routeTable:RouteTable");
            const privateTables = routes.filter((r) => r.name.includes("-private-"));
            assert.equal(privateTables.length, want.zones);
            const natIds = privateTables.map((t) => t.inputs.routes[0].natGatewayId);
            assert.equal(new Set(natIds).size, want.nats);
            const publicTable = routes.find((r) => r.name.endsWith("-public"))!;
            assert.match(publicTable.inputs.routes[0].gatewayId, /-igw-id$/);
        });

        it("creates EKS with OIDC, access entries, KMS-encrypted Secrets, logging and network policy", async () => {
            const ev = await stack(name);
            const [eks] = all(ev, "eks:index:Cluster");
            const i = eks.inputs;
            assert.equal(i.name, `mlflow-${name}`);
            assert.equal(i.version, "1.34");
            assert.equal(i.createOidcProvider, true);
            assert.equal(i.authenticationMode, "API");
            assert.equal(i.skipDefaultNodeGroup, true);
            assert.deepEqual(i.enabledClusterLogTypes, want.logs);
            assert.equal(i.vpcCniOptions.enableNetworkPolicy, true);
            assert.equal(i.endpointPrivateAccess, true);
            assert.equal(i.privateSubnetIds.length, want.zones);
            const key = one(ev, "aws:kms/key:Key", `mlflow-${name}-secrets`);
            assert.equal(key.inputs.enableKeyRotation, true);
            assert.match(i.encryptionConfigKeyArn, /^arn:aws:kms:/);
            assert.equal(i.deletionProtection, name === "prod");
        });

        it("restricts the public endpoint to the configured CIDRs", async () => {
            const [eks] = all(await stack(name), "eks:index:Cluster");
            assert.deepEqual(eks.inputs.publicAccessCidrs, name === "prod" ? ["198.18.0.0/15"] : ["0.0.0.0/0"]);
        });

        it("runs a managed node group in the private subnets with the configured sizes and IMDSv2", async () => {
            const ev = await stack(name);
            const [ng] = all(ev, "aws:eks/nodeGroup:NodeGroup");
            assert.equal(ng.inputs.clusterName, `mlflow-${name}`);
            assert.deepEqual(ng.inputs.instanceTypes, want.types);
            const [min, desired, max] = want.sizes;
            assert.deepEqual(ng.inputs.scalingConfig, { minSize: min, desiredSize: desired, maxSize: max });
            assert.equal(ng.inputs.subnetIds.length, want.zones);
            for (const id of ng.inputs.subnetIds) assert.match(id, /-private-\d-id$/);
            assert.deepEqual(ng.ignoreChanges, ["scalingConfig.desiredSize"]);
            const [lt] = all(ev, "aws:ec2/launchTemplate:LaunchTemplate");
            assert.equal(lt.inputs.metadataOptions.httpTokens, "required");
            assert.equal(lt.inputs.metadataOptions.httpPutResponseHopLimit, 1);
            assert.equal(lt.inputs.blockDeviceMappings[0].ebs.encrypted, "true");
            const nodeRole = one(ev, "aws:iam/role:Role", `mlflow-${name}-node`);
            assert.equal(policyOf(nodeRole, "assumeRolePolicy").Statement[0].Principal.Service, "ec2.amazonaws.com");
            const attached = all(ev, "aws:iam/rolePolicyAttachment:RolePolicyAttachment").filter((a) => a.name.startsWith(`mlflow-${name}-node-`)).map((a) => a.inputs.policyArn).sort();
            assert.deepEqual(attached, [
                "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
                "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
                "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
            ]);
        });

        it("installs the EBS CSI add-on with an IRSA role trusted only by its controller ServiceAccount", async () => {
            const ev = await stack(name);
            const addon = one(ev, "aws:eks/addon:Addon", `mlflow-${name}-ebs-csi`);
            assert.equal(addon.inputs.addonName, "aws-ebs-csi-driver");
            assert.equal(addon.inputs.clusterName, `mlflow-${name}`);
            assert.ok(addon.dependsOn.some((d) => d.startsWith("aws:eks/nodeGroup:NodeGroup::")), "the add-on waits for nodes");
            const role = one(ev, "aws:iam/role:Role", `mlflow-${name}-ebs-csi-role`);
            assert.ok(addon.inputs.serviceAccountRoleArn.includes(`mlflow-${name}-ebs-csi-role`));
            const trust = policyOf(role, "assumeRolePolicy");
            assert.equal(trust.Statement.length, 1);
            const st = trust.Statement[0];
            assert.equal(st.Effect, "Allow");
            assert.equal(st.Action, "sts:AssumeRoleWithWebIdentity");
            assert.equal(st.Principal.Federated, OIDC_PROVIDER_ARN);
            assert.deepEqual(Object.keys(st.Condition), ["StringEquals"]);
            assert.deepEqual(st.Condition.StringEquals, {
                [`${OIDC_ISSUER}:sub`]: "system:serviceaccount:kube-system:ebs-csi-controller-sa",
                [`${OIDC_ISSUER}:aud`]: "sts.amazonaws.com",
            });
            const attachment = one(ev, "aws:iam/rolePolicyAttachment:RolePolicyAttachment", `mlflow-${name}-ebs-csi-managed-0`);
            assert.equal(attachment.inputs.policyArn, "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy");
        });

        it("exposes the kubeconfig only as a secret, and the OIDC provider and network ids", async () => {
            const ev = await stack(name);
            assert.equal(ev.outputs.kubeconfig.secret, true);
            assert.equal(ev.outputs.clusterName.value, `mlflow-${name}`);
            assert.equal(ev.outputs.oidcProviderArn.value, OIDC_PROVIDER_ARN);
            assert.equal(ev.outputs.privateSubnetIds.value.length, want.zones);
            const [provider] = all(ev, "pulumi:providers:kubernetes");
            assert.ok(provider.secretPaths.includes("kubeconfig"), "the provider's kubeconfig is a secret");
            assert.equal(provider.inputs.enableServerSideApply, "true");
        });

        it("gives every Kubernetes resource the cluster's provider explicitly", async () => {
            const ev = await stack(name);
            const ref = clusterProviderRef(ev);
            const k8s = ev.resources.filter((r) => r.type.startsWith("kubernetes:"));
            assert.ok(k8s.length > 15);
            for (const r of k8s) assert.equal(r.provider, ref, `${r.type} ${r.name}`);
        });

        it("defines the gp2 StorageClass on the EBS CSI driver", async () => {
            const ev = await stack(name);
            const sc = one(ev, "kubernetes:storage.k8s.io/v1:StorageClass", "storage-class");
            assert.equal(sc.inputs.metadata.name, "gp2-csi");
            assert.equal(sc.inputs.provisioner, "ebs.csi.aws.com");
            assert.deepEqual(sc.inputs.parameters, { type: "gp2", encrypted: "true", "csi.storage.k8s.io/fstype": "ext4" });
            assert.equal(sc.inputs.volumeBindingMode, "WaitForFirstConsumer");
            assert.equal(sc.inputs.allowVolumeExpansion, true);
            assert.equal(sc.inputs.reclaimPolicy, want.reclaim);
            assert.equal(sc.inputs.metadata.annotations["storageclass.kubernetes.io/is-default-class"], "true");
            const component = one(ev, "platform:index:StorageClass", "storage");
            assert.ok(component.dependsOn.includes(`aws:eks/addon:Addon::mlflow-${name}-ebs-csi`), "the StorageClass waits for the CSI driver");
            assert.equal(kubernetesObjects(ev).filter((r) => r.inputs.kind === "StorageClass").length, 1);
        });
    });
}
