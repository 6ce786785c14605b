// Policy pack entry point: `pulumi preview --policy-pack policy`.
import { PolicyPack } from "@pulumi/policy";
import { policies } from "./policies";

new PolicyPack("mlflow-platform", { policies });
