// The platform's policies, built from the pure rules in rules.ts.
import { EnforcementLevel, Policies, PolicyResource, ReportViolation, ResourceValidationArgs } from "@pulumi/policy";
import * as rules from "./rules";

const mandatory: EnforcementLevel = "mandatory";

function resourcePolicy(name: string, description: string, check: (r: rules.Resource, args: ResourceValidationArgs) => string[]) {
    return {
        name,
        description,
        enforcementLevel: mandatory,
        validateResource: (args: ResourceValidationArgs, report: ReportViolation) => {
            for (const problem of check({ type: args.type, urn: args.urn, props: args.props }, args)) report(problem);
        },
    };
}

function asRule(r: PolicyResource): rules.Resource {
    const deps = Object.fromEntries(Object.entries(r.propertyDependencies ?? {}).map(([k, v]) => [k, v.map((d) => d.urn)]));
    return { type: r.type, urn: r.urn, props: r.props, propertyDependencies: deps };
}

export const policies: Policies = [
    {
        name: "s3-buckets-hardened",
        description: "S3 buckets are versioned, encrypted by default and block all public access.",
        enforcementLevel: mandatory,
        validateStack: (args, report) => {
            for (const { urn, problem } of rules.bucketsHardened(args.resources.map(asRule))) report(problem, urn);
        },
    },
    resourcePolicy("no-public-postgres-service", "No Service of type LoadBalancer or NodePort selects PostgreSQL.", rules.noPublicPostgresService),
    {
        ...resourcePolicy("statefulset-claims-on-platform-storage-class", "StatefulSet volume claims use the platform's StorageClass.",
            (r, args) => rules.claimsOnStorageClass(r, (args.getConfig<{ storageClassNames: string[] }>().storageClassNames))),
        configSchema: {
            properties: { storageClassNames: { type: "array", items: { type: "string" }, default: ["gp2-csi"] } },
        },
    },
    {
        ...resourcePolicy("production-data-retained", "In production stacks, volumes are retained and the database and buckets are protected from deletion.",
            (r, args) => rules.productionDataRetained({ ...r, protect: args.opts?.protect }, args.getConfig<{ productionStacks: string[] }>().productionStacks)),
        configSchema: {
            properties: { productionStacks: { type: "array", items: { type: "string" }, default: ["prod"] } },
        },
    },
    resourcePolicy("pinned-images-with-requests", "Containers use pinned images (a version tag or digest, never latest) and request CPU and memory.", rules.pinnedImagesAndRequests),
    resourcePolicy("no-wildcard-iam-actions", "No IAM or bucket policy statement allows a wildcard action.", rules.noWildcardActions),
    resourcePolicy("no-secrets-in-plain-config", "No credentials in ConfigMaps or Helm values; they belong in Secrets.", rules.noSecretsInPlainConfig),
];
