// Refreshes the committed render snapshots (test/snapshots/<stack>) that the snapshot tests compare.
import * as path from "path";
import { evaluateStack } from "./evaluate";
import { render, writeRender } from "./render";

const STACKS = ["dev", "prod"];

(async () => {
    for (const stack of STACKS) {
        writeRender(render(await evaluateStack(stack)), path.join(__dirname, "..", "test", "snapshots", stack));
        process.stdout.write(`updated test/snapshots/${stack}\n`);
    }
})().catch((err: Error) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
});
