// Parse AsyncAPI documents with the official parser (@asyncapi/parser) and print its
// diagnostics.  Input on stdin: a JSON object {name: document}.  Output on stdout: a
// JSON object {name: {"parsed": bool, "diagnostics": [{severity, code, message, path}]}}
// (severity: 0 error, 1 warning, 2 information, 3 hint).  Used by tests/test_asyncapi.py.
"use strict";
const { Parser } = require("@asyncapi/parser");

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const documents = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const parser = new Parser();
  const results = {};
  for (const [name, document] of Object.entries(documents)) {
    const { document: parsed, diagnostics } = await parser.parse(JSON.stringify(document));
    results[name] = {
      parsed: parsed !== undefined,
      diagnostics: diagnostics.map((d) => ({
        severity: d.severity,
        code: String(d.code),
        message: d.message,
        path: d.path,
      })),
    };
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((error) => {
  process.stderr.write(`parse.cjs: ${error.stack || error}\n`);
  process.exit(1);
});
