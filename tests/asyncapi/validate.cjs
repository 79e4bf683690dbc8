// Check messages against an AsyncAPI document's message payloads (JSON Schema draft-07,
// with Ajv).  Input on stdin: {"document": {...}, "samples": [{"message": "#/channels/
// c/messages/m", "value": ...}]}.  Output on stdout: a JSON array with, per sample,
// null when its value fits the message's payload, else Ajv's error messages.
// Used by tests/test_asyncapi_wire.py.
"use strict";
const Ajv = require("ajv");

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const { document, samples } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  // AsyncAPI's own keywords (summary, contentType...) are not JSON Schema: not strict.
  const ajv = new Ajv({ strict: false, allErrors: true });
  ajv.addSchema(document, "asyncapi");
  const results = samples.map(({ message, value }) => {
    const validate = ajv.getSchema(`asyncapi${message}/payload`);
    if (validate === undefined) return [`no message at ${message}`];
    if (validate(value)) return null;
    return validate.errors.map((e) => `${e.instancePath || "/"} ${e.message}`);
  });
  process.stdout.write(JSON.stringify(results));
}

main().catch((error) => {
  process.stderr.write(`validate.cjs: ${error.stack || error}\n`);
  process.exit(1);
});
