// Validates Kubernetes objects against the API's OpenAPI schema (kubernetes-models' validators).
// Unknown fields are caught earlier: strict tsc checks every object literal against the
// provider's generated types, which come from the same OpenAPI document.
/* eslint-disable @typescript-eslint/no-require-imports */

interface Model {
    validate(): void;
}
type ModelClass = new (data: object) => Model;

export function validateK8sObject(obj: { apiVersion: string; kind: string }): void {
    const module = obj.apiVersion.includes("/") ? obj.apiVersion : `v1`;
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const models = require(`kubernetes-models/${module}`) as Record<string, ModelClass>;
    const Class = models[obj.kind];
    if (!Class) throw new Error(`no schema for ${obj.apiVersion} ${obj.kind}`);
    new Class(obj).validate();
}
