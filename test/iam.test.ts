import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Evaluation } from "../scripts/evaluate";
import { OIDC_ISSUER, OIDC_PROVIDER_ARN } from "../scripts/mocks";
import { stack, STACKS } from "./support/stacks";

/** AWS-managed policies the program attaches, each documented by AWS for this exact use. */
const AWS_MANAGED = [
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
];
const SERVICE_PRINCIPALS = ["ec2.amazonaws.com"];

interface Doc {
    where: string;
    doc: { Version: string; Statement: any[] };
}

function documents(ev: Evaluation): Doc[] {
    const docs: Doc[] = [];
    for (const r of ev.resources) {
        const add = (key: string) => docs.push({ where: `${r.type} ${r.name} ${key}`, doc: JSON.parse(r.inputs[key]) });
        if (r.type === "aws:iam/role:Role") add("assumeRolePolicy");
        if (r.type === "aws:iam/rolePolicy:RolePolicy" || r.type === "aws:s3/bucketPolicy:BucketPolicy") add("policy");
    }
    return docs;
}

/** ARNs of what the program itself creates (the OIDC provider comes with the EKS cluster). */
function createdArns(ev: Evaluation): string[] {
    return [...ev.resources.map((r) => r.outputs.arn).filter((a): a is string => typeof a === "string"), OIDC_PROVIDER_ARN];
}

for (const name of STACKS) {
    describe(`IAM and bucket policies (${name})`, () => {
        it("parse, and no Allow statement has a wildcard action", async () => {
            const docs = documents(await stack(name));
            assert.equal(docs.length, 16, "8 trust policies, 6 role policies (MLflow, backups, restores, WAL archive, base backups, point-in-time restores), 2 bucket policies");
            for (const { where, doc } of docs) {
                assert.equal(doc.Version, "2012-10-17", where);
                for (const st of doc.Statement) {
                    assert.ok(["Allow", "Deny"].includes(st.Effect), where);
                    assert.equal(st.NotAction, undefined, where);
                    if (st.Effect === "Allow") for (const a of [].concat(st.Action)) assert.ok(!String(a).includes("*"), `${where}: ${a}`);
                    else assert.deepEqual(st.Condition, { Bool: { "aws:SecureTransport": "false" } }, `${where}: the only Deny is TLS enforcement`);
                }
            }
        });

        it("reference only resources the program creates, and documented AWS-managed policies", async () => {
            const ev = await stack(name);
            const created = createdArns(ev);
            const owned = (arn: string) => created.includes(arn) || created.some((c) => c.startsWith("arn:aws:s3:::") && arn.startsWith(`${c}/`));
            for (const { where, doc } of documents(ev)) {
                for (const st of doc.Statement) {
                    if (st.Resource !== undefined) for (const r of [].concat(st.Resource)) assert.ok(owned(r), `${where}: ${r} is not ours`);
                    if (st.Principal?.Federated) assert.equal(st.Principal.Federated, OIDC_PROVIDER_ARN, where);
                    if (st.Principal?.Service) assert.ok(SERVICE_PRINCIPALS.includes(st.Principal.Service), where);
                    if (st.Principal === "*") assert.equal(st.Effect, "Deny", `${where}: only a Deny may name everyone`);
                    for (const key of Object.keys(st.Condition?.StringEquals ?? {})) assert.ok(key.startsWith(`${OIDC_ISSUER}:`), where);
                }
            }
            for (const a of ev.resources.filter((r) => r.type === "aws:iam/rolePolicyAttachment:RolePolicyAttachment")) {
                assert.ok(AWS_MANAGED.includes(a.inputs.policyArn), `${a.name}: ${a.inputs.policyArn}`);
            }
        });
    });
}
