import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { EvaluatedResource } from "../scripts/evaluate";
import { OIDC_ISSUER, OIDC_PROVIDER_ARN } from "../scripts/mocks";
import { ADDON_VERSIONS } from "../components/addonVersions";
import { CLUSTER_ADMIN_POLICY, ebsKmsPolicy, kubeconfigWithProfile, splitAcrossZones, VIEW_POLICY } from "../components/cluster";
import { cidrSubnet } from "../components/network";
import { all, changesBetween, clusterProviderRef, kubernetesObjects, one, policyOf, stack, STACKS } from "./support/stacks";

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
            const [azCall] = ev.calls.filter((c) => c.token === "aws:index/getAvailabilityZones:getAvailabilityZones");
            assert.equal(azCall.inputs.state, "available");
            // No Local or Wavelength Zones, and none that needs opting in.
            assert.deepEqual(azCall.inputs.filters, [
                { name: "opt-in-status", values: ["opt-in-not-required"] },
                { name: "zone-type", values: ["availability-zone"] },
            ]);
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

        it("pins every managed add-on to the table's row for the cluster's Kubernetes version", async () => {
            const ev = await stack(name);
            const row = ADDON_VERSIONS["1.34"];
            const [eks] = all(ev, "eks:index:Cluster");
            assert.equal(eks.inputs.vpcCniOptions.addonVersion, row["vpc-cni"]);
            assert.equal(eks.inputs.kubeProxyAddonOptions.enabled, true);
            assert.equal(eks.inputs.kubeProxyAddonOptions.version, row["kube-proxy"]);
            assert.equal(eks.inputs.corednsAddonOptions.enabled, false, "CoreDNS is ours, created after the nodes");
            const addons: Record<string, EvaluatedResource> = Object.fromEntries(all(ev, "aws:eks/addon:Addon").map((a) => [a.inputs.addonName, a]));
            assert.deepEqual(Object.keys(addons).sort(), ["aws-ebs-csi-driver", "coredns"]);
            assert.equal(addons.coredns.inputs.addonVersion, row.coredns);
            assert.equal(addons["aws-ebs-csi-driver"].inputs.addonVersion, row["aws-ebs-csi-driver"]);
            for (const a of Object.values(addons)) {
                assert.equal(a.inputs.resolveConflictsOnCreate, "OVERWRITE", "adopts what EKS installed self-managed");
                assert.ok(all(ev, "aws:eks/nodeGroup:NodeGroup").every((ng) => a.dependsOn.includes(`aws:eks/nodeGroup:NodeGroup::${ng.name}`)), `${a.name} waits for every node group`);
            }
            assert.ok(!ev.calls.some((c) => c.token.includes("getAddonVersion")), "no version is looked up at deploy time");
        });

        it("runs one managed node group per zone, each in its zone's private subnet, following kubernetesVersion, with IMDSv2", async () => {
            const ev = await stack(name);
            const groups = all(ev, "aws:eks/nodeGroup:NodeGroup").sort((a, b) => a.name.localeCompare(b.name));
            assert.deepEqual(groups.map((g) => g.name), Array.from({ length: want.zones }, (_, i) => `mlflow-${name}-nodes-${i}`));
            const [min, desired, max] = want.sizes;
            groups.forEach((ng, i) => {
                assert.equal(ng.inputs.clusterName, `mlflow-${name}`);
                assert.equal(ng.inputs.version, "1.34");
                assert.deepEqual(ng.inputs.instanceTypes, want.types);
                assert.deepEqual(ng.inputs.subnetIds, [`mlflow-${name}-network-private-${i}-id`]);
                const sc = ng.inputs.scalingConfig;
                assert.ok(sc.minSize >= 1 && sc.minSize <= sc.desiredSize && sc.desiredSize <= sc.maxSize, JSON.stringify(sc));
                assert.deepEqual(ng.ignoreChanges, [], "no autoscaler configured: config owns the desired size");
            });
            const total = (k: string) => groups.reduce((n, g) => n + g.inputs.scalingConfig[k], 0);
            assert.deepEqual([total("minSize"), total("desiredSize"), total("maxSize")], [min, desired, max]);
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
            // Ours and its scratch twin (reclaim Delete, for ephemeral volumes), never a second default.
            const classes = kubernetesObjects(ev).filter((r) => r.inputs.kind === "StorageClass");
            assert.deepEqual(classes.map((c) => c.inputs.metadata.name).sort(), ["gp2-csi", "gp2-csi-scratch"]);
            assert.equal(classes.filter((c) => c.inputs.metadata.annotations["storageclass.kubernetes.io/is-default-class"] === "true").length, 1);
        });
    });
}

describe("node sizes split over zones", () => {
    it("keeps min <= desired <= max in every zone and the totals of config", () => {
        assert.deepEqual(splitAcrossZones(3, 2), [2, 1]);
        assert.deepEqual(splitAcrossZones(6, 3), [2, 2, 2]);
        for (let zones = 2; zones <= 3; zones++) {
            for (let min = zones; min <= 9; min++) {
                for (let desired = min; desired <= 9; desired++) {
                    for (let max = desired; max <= 9; max++) {
                        const [a, b, c] = [min, desired, max].map((t) => splitAcrossZones(t, zones));
                        a.forEach((_, i) => assert.ok(a[i] >= 1 && a[i] <= b[i] && b[i] <= c[i], `${min}/${desired}/${max} over ${zones}`));
                        assert.equal(b.reduce((x, y) => x + y), desired);
                    }
                }
            }
        }
    });
});

// Day-2 changes: the program evaluated before and after a config change, resource options included.
const A = "arn:aws:iam::123456789012:role/ci-deploy";
const B = "arn:aws:iam::123456789012:user/second-operator";
const V = "arn:aws:iam::123456789012:role/auditors";
const KEY = "arn:aws:kms:us-east-1:123456789012:key/0e4c6a1b-1f2e-4c3d-9a8b-7c6d5e4f3a2b";
const handedOver = {
    "aws:profile": "platform-ops",
    "mlflow-platform:cluster.adminPrincipalArns": [A],
    "mlflow-platform:cluster.viewerPrincipalArns": [V],
    "mlflow-platform:storage.kmsKeyArn": KEY,
};

describe("cluster access for more than its creator", () => {
    it("gives each admin and viewer an access entry with its access policy, cluster-wide", async () => {
        const ev = await stack("dev", handedOver);
        const entries = all(ev, "aws:eks/accessEntry:AccessEntry");
        const assocs = all(ev, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation");
        assert.deepEqual(entries.map((e) => e.inputs.principalArn).sort(), [V, A].sort());
        for (const e of entries) {
            assert.equal(e.inputs.clusterName, "mlflow-dev");
            assert.equal(e.inputs.type, "STANDARD");
            assert.ok(e.dependsOn.includes("eks:index:Cluster::mlflow-dev-eks"));
        }
        const policyOfPrincipal = Object.fromEntries(assocs.map((a) => [a.inputs.principalArn, a]));
        assert.equal(policyOfPrincipal[A].inputs.policyArn, CLUSTER_ADMIN_POLICY);
        assert.equal(policyOfPrincipal[V].inputs.policyArn, VIEW_POLICY);
        for (const a of assocs) {
            assert.deepEqual(a.inputs.accessScope, { type: "cluster" });
            assert.ok(a.dependsOn.some((d) => d.startsWith("aws:eks/accessEntry:AccessEntry::")));
        }
        assert.equal(all(await stack("dev"), "aws:eks/accessEntry:AccessEntry").length, 0, "none unless configured");
    });

    it("adding an admin later adds its entry and touches no other principal's", async () => {
        const before = await stack("dev", handedOver);
        const after = await stack("dev", { ...handedOver, "mlflow-platform:cluster.adminPrincipalArns": [B, A] });
        const c = changesBetween(before, after);
        assert.deepEqual(c.removed, []);
        assert.deepEqual(c.added.map((k) => k.split("::")[0]).sort(), ["aws:eks/accessEntry:AccessEntry", "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"]);
        assert.ok(c.added.every((k) => k.includes("second-operator")), c.added.join(", "));
        assert.deepEqual([...c.changed.keys()], [], "nothing else changes");
    });
});

describe("aws:profile is honoured beyond the AWS provider", () => {
    it("writes AWS_PROFILE into the exported kubeconfig and the Kubernetes provider's, and the eks component's own", async () => {
        const ev = await stack("dev", handedOver);
        const users = (k: string) => JSON.parse(k).users.map((u: { user: { exec: { env?: unknown } } }) => u.user.exec.env);
        assert.deepEqual(users(ev.outputs.kubeconfig.value), [[{ name: "AWS_PROFILE", value: "platform-ops" }]]);
        assert.equal(ev.outputs.kubeconfig.secret, true);
        const [provider] = all(ev, "pulumi:providers:kubernetes");
        assert.deepEqual(users(provider.inputs.kubeconfig), [[{ name: "AWS_PROFILE", value: "platform-ops" }]]);
        const [eks] = all(ev, "eks:index:Cluster");
        assert.deepEqual(eks.inputs.providerCredentialOpts, { profileName: "platform-ops" });
        const plain = await stack("dev");
        assert.deepEqual(users(plain.outputs.kubeconfig.value), [undefined], "no profile, no env");
    });

    it("replaces a profile already in the kubeconfig instead of adding a second", () => {
        const kc = JSON.stringify({ users: [{ name: "u", user: { exec: { command: "aws", env: [{ name: "AWS_PROFILE", value: "old" }, { name: "X", value: "1" }] } } }] });
        assert.deepEqual(JSON.parse(kubeconfigWithProfile(kc, "new")).users[0].user.exec.env, [{ name: "X", value: "1" }, { name: "AWS_PROFILE", value: "new" }]);
    });
});

describe("customer-managed KMS key for volumes", () => {
    it("gives the EBS CSI role exactly AWS's documented key grants, on that key only", async () => {
        const ev = await stack("dev", handedOver);
        const inline = one(ev, "aws:iam/rolePolicy:RolePolicy", "mlflow-dev-ebs-csi-inline");
        assert.match(inline.inputs.role, /mlflow-dev-ebs-csi-role/);
        const doc = policyOf(inline);
        assert.deepEqual(doc, JSON.parse(ebsKmsPolicy(KEY)));
        assert.deepEqual(doc.Statement[0].Action, ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]);
        assert.deepEqual(doc.Statement[0].Condition, { Bool: { "kms:GrantIsForAWSResource": "true" } });
        for (const st of doc.Statement) assert.deepEqual(st.Resource, [KEY]);
        const sc = one(ev, "kubernetes:storage.k8s.io/v1:StorageClass", "storage-class");
        assert.equal(sc.inputs.parameters.kmsKeyId, KEY);
        assert.ok(!all(await stack("dev"), "aws:iam/rolePolicy:RolePolicy").some((r) => r.name.startsWith("mlflow-dev-ebs-csi")), "no key, no KMS grant");
    });
});

describe("upgrades and unrelated changes", () => {
    it("an unrelated change (node count) rolls no add-on and changes only the node groups' sizes", async () => {
        const before = await stack("dev");
        const after = await stack("dev", { "mlflow-platform:cluster.nodeDesiredSize": 3 });
        const c = changesBetween(before, after);
        assert.deepEqual(c.added, []);
        assert.deepEqual(c.removed, []);
        assert.deepEqual(Object.fromEntries(c.changed), { "aws:eks/nodeGroup:NodeGroup::mlflow-dev-nodes-0": { inputs: ["scalingConfig.desiredSize"], options: [] } });
        assert.equal(one(after, "aws:eks/nodeGroup:NodeGroup", "mlflow-dev-nodes-0").inputs.scalingConfig.desiredSize, 2, "3 nodes over 2 zones: 2 + 1");
    });

    it("a cluster autoscaler in config makes the node groups ignore desiredSize; pinned zones are used as given, without a lookup", async () => {
        const before = await stack("dev");
        const after = await stack("dev", { "mlflow-platform:cluster.nodeAutoscaler": "clusterAutoscaler", "mlflow-platform:cluster.availabilityZones": ["us-east-1b", "us-east-1c"] });
        for (const ng of all(after, "aws:eks/nodeGroup:NodeGroup")) assert.deepEqual(ng.ignoreChanges, ["scalingConfig.desiredSize"]);
        assert.ok(!after.calls.some((c) => c.token === "aws:index/getAvailabilityZones:getAvailabilityZones"), "pinned zones need no lookup, so AWS's list cannot move them");
        const zones = all(after, "aws:ec2/subnet:Subnet").map((s) => `${s.name.replace(/^.*-(public|private)-/, "$1-")}=${s.inputs.availabilityZone}`).sort();
        assert.deepEqual(zones, ["private-0=us-east-1b", "private-1=us-east-1c", "public-0=us-east-1b", "public-1=us-east-1c"]);
        const c = changesBetween(before, after);
        for (const [k, v] of c.changed) {
            if (k.startsWith("aws:eks/nodeGroup:NodeGroup::")) assert.deepEqual(v, { inputs: [], options: ["ignoreChanges"] }, k);
        }
    });

    it("raising kubernetesVersion by one minor moves the control plane, every add-on and every node group, and nothing else", async () => {
        const before = await stack("dev");
        const after = await stack("dev", { "mlflow-platform:cluster.kubernetesVersion": "1.35", "mlflow-platform:cluster.previousKubernetesVersion": "1.34" });
        const c = changesBetween(before, after);
        assert.deepEqual(c.added, []);
        assert.deepEqual(c.removed, []);
        const [from, to] = [ADDON_VERSIONS["1.34"], ADDON_VERSIONS["1.35"]];
        const moved = (addon: keyof typeof to, path: string) => (from[addon] !== to[addon] ? [path] : []);
        const changed = Object.fromEntries([...c.changed].map(([k, v]) => [k, v]));
        assert.deepEqual(changed, {
            "eks:index:Cluster::mlflow-dev-eks": { inputs: [...moved("kube-proxy", "kubeProxyAddonOptions.version"), "version", ...moved("vpc-cni", "vpcCniOptions.addonVersion")], options: [] },
            "aws:eks/nodeGroup:NodeGroup::mlflow-dev-nodes-0": { inputs: ["version"], options: [] },
            "aws:eks/nodeGroup:NodeGroup::mlflow-dev-nodes-1": { inputs: ["version"], options: [] },
            ...(from.coredns !== to.coredns ? { "aws:eks/addon:Addon::mlflow-dev-coredns": { inputs: ["addonVersion"], options: [] } } : {}),
            ...(from["aws-ebs-csi-driver"] !== to["aws-ebs-csi-driver"] ? { "aws:eks/addon:Addon::mlflow-dev-ebs-csi": { inputs: ["addonVersion"], options: [] } } : {}),
        });
        const [eks] = all(after, "eks:index:Cluster");
        assert.equal(eks.inputs.version, "1.35");
        assert.equal(eks.inputs.kubeProxyAddonOptions.version, to["kube-proxy"]);
    });
});
