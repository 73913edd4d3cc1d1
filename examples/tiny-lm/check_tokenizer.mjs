// Checks that tokenizer.json loads in @huggingface/tokenizers and encodes eval.txt and calib.txt
// to exactly the ids train.py's own BPE produced (eval_ids.json), and decodes them back losslessly.
// Run from the repository root:  node examples/tiny-lm/check_tokenizer.mjs [dir]
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";

const dir = process.argv[2] ?? dirname(fileURLToPath(import.meta.url));
const read = (name) => readFileSync(join(dir, name), "utf8");

const tokenizer = new Tokenizer(JSON.parse(read("tokenizer.json")), JSON.parse(read("tokenizer_config.json")));
const expected = JSON.parse(read("eval_ids.json"));
const vocabSize = tokenizer.get_vocab(true).size;
console.log(`vocab size (with added tokens): ${vocabSize}`);

let failures = 0;
for (const [name, file] of [
  ["eval", "eval.txt"],
  ["calib", "calib.txt"],
]) {
  const text = read(file);
  const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
  const want = expected[name];
  let firstDiff = -1;
  for (let i = 0; i < Math.max(ids.length, want.length); i++) {
    if (ids[i] !== want[i]) {
      firstDiff = i;
      break;
    }
  }
  const decoded = tokenizer.decode(ids, { clean_up_tokenization_spaces: false });
  const roundTrip = decoded === text;
  const ok = firstDiff < 0 && roundTrip;
  if (!ok) failures++;
  console.log(
    `${name}: ${text.length} bytes -> ${ids.length} tokens (python: ${want.length}); ` +
      `${firstDiff < 0 ? "ids identical" : `first difference at ${firstDiff}: js ${ids[firstDiff]} vs py ${want[firstDiff]}`}; ` +
      `decode round-trip ${roundTrip ? "exact" : "MISMATCH"}`,
  );
}

// Special token is recognised as one id.
const eot = tokenizer.encode("Amen.<|endoftext|>And", { add_special_tokens: false });
const eotId = tokenizer.token_to_id("<|endoftext|>");
const eotOk = eot.ids.includes(eotId) && eotId === vocabSize - 1;
if (!eotOk) failures++;
console.log(`<|endoftext|> id ${eotId}: ${JSON.stringify(eot.tokens)} ${eotOk ? "ok" : "FAIL"}`);

if (failures) {
  console.error(`FAIL (${failures})`);
  process.exit(1);
}
console.log("OK");
