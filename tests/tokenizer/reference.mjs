// Encodes every text of texts.json with tokenizers.js and prints the reference as JSON:
// the tokenizer file's SHA-256, the generator, and per text its ids (no special tokens
// added) and the decoding of those ids. Run by make_reference.sh.
import { Tokenizer } from "@huggingface/tokenizers";
import { createHash } from "crypto";
import { readFileSync } from "fs";

const [tokenizerPath, textsPath, version] = process.argv.slice(2);
const raw = readFileSync(tokenizerPath);
const tokenizer = new Tokenizer(JSON.parse(raw.toString("utf8")), {});
const texts = JSON.parse(readFileSync(textsPath, "utf8"));
const cases = texts.map(({ name, text }) => {
  const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
  // No clean-up of spaces: the decoding of exactly these ids (transformers tidies them by default).
  const decoded = ids.length ? tokenizer.decode(ids, { clean_up_tokenization_spaces: false }) : "";
  return { name, text, ids, decoded };
});
const out = {
  tokenizer: tokenizerPath.split("/").pop(),
  tokenizer_sha256: createHash("sha256").update(raw).digest("hex"),
  generator: `@huggingface/tokenizers ${version} (npm), node ${process.version}`,
  cases,
};
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
