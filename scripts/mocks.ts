// Deterministic mocks for evaluating the program without a Pulumi engine or cloud account. Every
// value is derived from the resource's name, so two evaluations produce identical inputs.
import * as pulumi from "@pulumi/pulumi";
import * as crypto from "crypto";

export const ACCOUNT_ID = "123456789012";
export const OIDC_ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF";
export const OIDC_PROVIDER_ARN = `arn:aws:iam::${ACCOUNT_ID}:oidc-provider/${OIDC_ISSUER}`;

/** A stable fake of `n` hex characters for a name. */
export function fakeHex(name: string, n = 16): string {
    return crypto.createHash("sha256").update(name).digest("hex").slice(0, n);
}

export function mockKubeconfig(clusterName: string): string {
    return JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: clusterName, cluster: { server: `https://${fakeHex(clusterName, 32).toUpperCase()}.gr7.us-east-1.eks.amazonaws.com`, "certificate-authority-data": "bW9jaw==" } }],
        contexts: [{ name: clusterName, context: { cluster: clusterName, user: clusterName } }],
        "current-context": clusterName,
        users: [{ name: clusterName, user: { exec: { apiVersion: "client.authentication.k8s.io/v1beta1", command: "aws", args: ["eks", "get-token", "--cluster-name", clusterName] } } }],
    });
}

function state(args: pulumi.runtime.MockResourceArgs): Record<string, unknown> {
    const { type, name, inputs } = args;
    const arn = (service: string, resource: string) => `arn:aws:${service}:us-east-1:${ACCOUNT_ID}:${resource}`;
    switch (type) {
        case "eks:index:Cluster": {
            const clusterName = inputs.name ?? name;
            return {
                kubeconfigJson: mockKubeconfig(clusterName),
                kubeconfig: JSON.parse(mockKubeconfig(clusterName)),
                oidcProviderArn: OIDC_PROVIDER_ARN,
                oidcProviderUrl: `https://${OIDC_ISSUER}`,
                oidcIssuer: OIDC_ISSUER,
                clusterSecurityGroupId: `sg-${fakeHex(name + "cluster", 17)}`,
                nodeSecurityGroupId: `sg-${fakeHex(name + "node", 17)}`,
            };
        }
        case "aws:iam/role:Role":
            return { name: `${name}-${fakeHex(name, 7)}`, arn: `arn:aws:iam::${ACCOUNT_ID}:role/${name}-${fakeHex(name, 7)}` };
        case "aws:kms/key:Key": {
            const h = fakeHex(name, 32);
            const keyId = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
            return { keyId, arn: arn("kms", `key/${keyId}`) };
        }
        case "aws:s3/bucket:Bucket": {
            const bucket = `${name}-${fakeHex(name, 7)}`;
            return { bucket, arn: `arn:aws:s3:::${bucket}`, region: "us-east-1" };
        }
        case "aws:ec2/launchTemplate:LaunchTemplate":
            return { latestVersion: 1, arn: arn("ec2", `launch-template/lt-${fakeHex(name, 17)}`) };
        case "aws:eks/nodeGroup:NodeGroup":
            return { arn: arn("eks", `nodegroup/${inputs.clusterName}/${name}/${fakeHex(name, 8)}`), status: "ACTIVE" };
        case "random:index/randomPassword:RandomPassword": {
            // Letters and digits, like the real thing with special: false.
            const raw = crypto.createHash("sha512").update(name).digest("base64").replace(/[^A-Za-z0-9]/g, "");
            return { result: raw.slice(0, inputs.length ?? 32) };
        }
        default:
            if (type.startsWith("kubernetes:") && inputs.metadata) {
                // Kubernetes auto-names objects without metadata.name: <resource name>-<random suffix>.
                const metadata = { ...inputs.metadata, name: inputs.metadata.name ?? `${name}-${fakeHex(name, 8)}` };
                return { metadata };
            }
            return {};
    }
}

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270";

/** Replaces Pulumi's secret envelopes by their values and lists where they were. */
export function unwrapSecrets(value: any, at: string, secretPaths: string[]): any {
    if (Array.isArray(value)) return value.map((v, i) => unwrapSecrets(v, `${at}[${i}]`, secretPaths));
    if (value === null || typeof value !== "object") return value;
    if (value[SECRET_SIG] === SECRET_VALUE) {
        secretPaths.push(at);
        return unwrapSecrets(value.value, at, []);
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrapSecrets(v, at ? `${at}.${k}` : k, secretPaths)]));
}

export interface RecordedResource {
    type: string;
    name: string;
    inputs: Record<string, any>;
    /** Input paths that were secret, e.g. "stringData". */
    secretPaths: string[];
    /** What the mock answered beyond the inputs: ids, ARNs, names the cloud would assign. */
    outputs: Record<string, any>;
    /** `<provider urn>::<provider id>`, as the engine receives it. */
    provider?: string;
    custom: boolean;
}

export interface RecordedCall {
    token: string;
    inputs: Record<string, any>;
}

export class RecordingMocks implements pulumi.runtime.Mocks {
    readonly resources: RecordedResource[] = [];
    readonly calls: RecordedCall[] = [];

    newResource(args: pulumi.runtime.MockResourceArgs): { id: string | undefined; state: Record<string, any> } {
        const secretPaths: string[] = [];
        const inputs = unwrapSecrets(args.inputs, "", secretPaths);
        const s = state(args);
        const id = `${args.name}-id`;
        this.resources.push({ type: args.type, name: args.name, inputs, secretPaths, outputs: { id, ...s }, provider: args.provider, custom: args.custom ?? true });
        return { id, state: { ...args.inputs, ...s } };
    }

    call(args: pulumi.runtime.MockCallArgs): Record<string, any> {
        this.calls.push({ token: args.token, inputs: unwrapSecrets(args.inputs, "", []) });
        if (args.token === "aws:index/getAvailabilityZones:getAvailabilityZones") {
            return { names: ["us-east-1a", "us-east-1b", "us-east-1c"], zoneIds: ["use1-az1", "use1-az2", "use1-az4"], id: "us-east-1" };
        }
        throw new Error(`unexpected invoke ${args.token}: mock it in scripts/mocks.ts`);
    }
}
