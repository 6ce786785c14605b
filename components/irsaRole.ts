import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface IrsaRoleArgs {
    /** ARN of the cluster's IAM OIDC provider. */
    oidcProviderArn: pulumi.Input<string>;
    /** The provider's issuer without "https://", e.g. oidc.eks.us-east-1.amazonaws.com/id/ABC. */
    oidcIssuer: pulumi.Input<string>;
    /** Namespace and name of the only ServiceAccount allowed to assume the role. */
    namespace: pulumi.Input<string>;
    serviceAccountName: pulumi.Input<string>;
    /** AWS-managed or existing policies to attach. */
    managedPolicyArns?: string[];
    /** An inline least-privilege policy document (JSON). */
    policy?: pulumi.Input<string>;
}

/** The trust policy of an IRSA role: exactly one ServiceAccount, only via STS, no wildcards. */
export function irsaTrustPolicy(oidcProviderArn: string, oidcIssuer: string, namespace: string, serviceAccountName: string): string {
    return JSON.stringify({
        Version: "2012-10-17",
        Statement: [{
            Effect: "Allow",
            Principal: { Federated: oidcProviderArn },
            Action: "sts:AssumeRoleWithWebIdentity",
            Condition: {
                StringEquals: {
                    [`${oidcIssuer}:sub`]: `system:serviceaccount:${namespace}:${serviceAccountName}`,
                    [`${oidcIssuer}:aud`]: "sts.amazonaws.com",
                },
            },
        }],
    });
}

/**
 * An IAM role for one Kubernetes ServiceAccount (IRSA). Pods of that ServiceAccount get short-lived
 * credentials for it; no static keys exist anywhere.
 */
export class IrsaRole extends pulumi.ComponentResource {
    public readonly roleArn: pulumi.Output<string>;
    public readonly roleName: pulumi.Output<string>;

    constructor(name: string, args: IrsaRoleArgs, opts?: pulumi.ComponentResourceOptions) {
        super("platform:index:IrsaRole", name, {}, opts);

        const role = new aws.iam.Role(`${name}-role`, {
            assumeRolePolicy: pulumi.all([args.oidcProviderArn, args.oidcIssuer, args.namespace, args.serviceAccountName])
                .apply(([arn, issuer, ns, sa]) => irsaTrustPolicy(arn, issuer, ns, sa)),
        }, { parent: this });

        (args.managedPolicyArns ?? []).forEach((policyArn, i) => {
            new aws.iam.RolePolicyAttachment(`${name}-managed-${i}`, { role: role.name, policyArn }, { parent: this });
        });
        if (args.policy !== undefined) {
            new aws.iam.RolePolicy(`${name}-inline`, { role: role.name, policy: args.policy }, { parent: this });
        }

        this.roleArn = role.arn;
        this.roleName = role.name;
        this.registerOutputs({ roleArn: this.roleArn, roleName: this.roleName });
    }
}
