// Pinned versions of the EKS managed add-ons, one row per Kubernetes minor. Unpinned, the eks
// component resolves kube-proxy (and CoreDNS, when it creates it) with aws.eks.getAddonVersion
// { mostRecent: true } on every preview (pulumi-eks nodejs/eks/cluster/cluster.ts), so any
// `pulumi up` after AWS publishes a build would roll them. Here a version only changes when this
// table (or cluster.addonVersions in the stack file) changes, i.e. during an upgrade.
//
// Sources, read 2026-11 (confirm with `aws eks describe-addon-versions --kubernetes-version <minor>
// --addon-name <name>` before an upgrade; config overrides any cell):
// - vpc-cni, coredns, kube-proxy: the Amazon EKS User Guide's "latest version of the Amazon EKS
//   add-on type for each Kubernetes version" tables (managing-vpc-cni.md, managing-coredns.md,
//   managing-kube-proxy.md; the copy read was docs.amazonaws.cn/zh_cn, whose tables list 1.30-1.35).
// - aws-ebs-csi-driver: NOT confirmed per minor from a source I could read. The guide has no per-
//   version table for it; v1.66.0-eksbuild.1 is reported as AWS's defaultVersion for Kubernetes 1.36
//   in mitodl/ol-infrastructure#5959 (2026-09-21). EBS CSI add-on builds are published for a range of
//   minors, so it is expected to be offered for 1.32-1.34 (still in EKS support), but check with
//   describe-addon-versions and override with cluster.addonVersions.aws-ebs-csi-driver if not.

export const ADDON_NAMES = ["vpc-cni", "kube-proxy", "coredns", "aws-ebs-csi-driver"] as const;
export type AddonName = (typeof ADDON_NAMES)[number];
export type AddonVersions = Record<AddonName, string>;

/** An EKS add-on version as describe-addon-versions spells it. */
export const ADDON_VERSION = /^v[0-9]+\.[0-9]+\.[0-9]+-eksbuild\.[0-9]+$/;

export const ADDON_VERSIONS: Readonly<Record<string, AddonVersions>> = {
    "1.32": {
        "vpc-cni": "v1.21.1-eksbuild.7", // managing-vpc-cni table, row 1.32
        "kube-proxy": "v1.32.13-eksbuild.5", // managing-kube-proxy table, row 1.32
        coredns: "v1.11.4-eksbuild.33", // managing-coredns table, row 1.32
        "aws-ebs-csi-driver": "v1.66.0-eksbuild.1", // see above: not confirmed for 1.32
    },
    "1.33": {
        "vpc-cni": "v1.21.1-eksbuild.7", // managing-vpc-cni table, row 1.33
        "kube-proxy": "v1.33.10-eksbuild.2", // managing-kube-proxy table, row 1.33
        coredns: "v1.13.2-eksbuild.4", // managing-coredns table, row 1.33
        "aws-ebs-csi-driver": "v1.66.0-eksbuild.1", // see above: not confirmed for 1.33
    },
    "1.34": {
        "vpc-cni": "v1.21.1-eksbuild.7", // managing-vpc-cni table, row 1.34
        "kube-proxy": "v1.34.6-eksbuild.2", // managing-kube-proxy table, row 1.34
        coredns: "v1.13.2-eksbuild.4", // managing-coredns table, row 1.34
        "aws-ebs-csi-driver": "v1.66.0-eksbuild.1", // see above: not confirmed for 1.34
    },
    "1.35": {
        "vpc-cni": "v1.21.1-eksbuild.7", // managing-vpc-cni table, row 1.35
        "kube-proxy": "v1.35.3-eksbuild.2", // managing-kube-proxy table, row 1.35
        coredns: "v1.13.2-eksbuild.4", // managing-coredns table, row 1.35
        "aws-ebs-csi-driver": "v1.66.0-eksbuild.1", // see above: not confirmed for 1.35
    },
};
