// Verdicts of Ajv (JSON Schema 2020-12, strict mode, formats asserted) on the contract corpus.
// Usage: node validate.mjs SCHEMA.json CORPUS.jsonl -> one JSON line per record:
// {"name": ..., "valid": true|false, "error": ...}. Exit status 2 when the schema does not
// compile (strict mode refuses it), with Ajv's message.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const [schemaPath, corpusPath] = process.argv.slice(2);
const ajv = new Ajv2020({ strict: true, allErrors: false });
addFormats(ajv, { mode: "full" });
let validate;
try {
  validate = ajv.compile(JSON.parse(readFileSync(schemaPath, "utf8")));
} catch (error) {
  console.error(`ajv: ${schemaPath} does not compile: ${error.message}`);
  process.exit(2);
}
// Decoding as a producer in JavaScript would: UTF-8 (fatal on bad bytes), then JSON.parse.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
for (const line of readFileSync(corpusPath, "utf8").split("\n")) {
  if (!line) continue;
  const record = JSON.parse(line);
  let verdict;
  try {
    const value = JSON.parse(utf8.decode(Buffer.from(record.b64, "base64")));
    const valid = validate(value);
    verdict = { valid, error: valid ? null : ajv.errorsText(validate.errors) };
  } catch (error) {
    verdict = { valid: false, error: `not JSON: ${error.message}` };
  }
  console.log(JSON.stringify({ name: record.name, ...verdict }));
}
