// TypeScript types for the messages of an AsyncAPI document, with Modelina:
//   npm install @asyncapi/modelina
//   triows asyncapi chat:app > asyncapi.json
//   node asyncapi_types.mjs asyncapi.json > messages.ts
import { readFile } from "node:fs/promises";
import {
  TypeScriptGenerator,
  typeScriptDefaultPropertyKeyConstraints,
} from "@asyncapi/modelina";

const document = JSON.parse(await readFile(process.argv[2], "utf8"));
const generator = new TypeScriptGenerator({
  modelType: "interface",
  enumType: "union",
  // Property names exactly as on the wire: `type` stays `type`, `user_id` stays `user_id`.
  constraints: {
    propertyKey: typeScriptDefaultPropertyKeyConstraints({
      NO_RESERVED_KEYWORDS: (name) => name,
      NAMING_FORMATTER: (name) => name,
    }),
  },
  // Messages may carry fields a type does not list (they are ignored): leave them out.
  processorOptions: { interpreter: { ignoreAdditionalProperties: true } },
});
for (const model of await generator.generate(document)) {
  console.log(`export ${model.result}\n`);
}
