#!/usr/bin/env node
// The npm gpt-3-encoder as a reference peer for wancp's GPT-2 tokenizer.
//
//   node gpt2_reference.js compare --module DIR --jsonl FILE --shard FILE
//       Encodes every document of FILE with gpt-3-encoder, each preceded by <|endoftext|>
//       (50256) as wancp's shards are, and compares with the shard token for token. Exit 0
//       when all agree; else 1, naming the first differing document and token.
//   node gpt2_reference.js bench --module DIR --jsonl FILE [--repeat N]
//       Times encode() over every document with a freshly loaded module (empty cache) each
//       repeat; prints one JSON object: best MB/s, bytes, documents, tokens.
//   node gpt2_reference.js random --seed S --count N --out FILE
//       Writes N random documents as JSONL, drawn from letters, marks, digits, emoji,
//       punctuation, contractions and whitespace of many kinds, for property tests.
'use strict';
const fs = require('fs');
const path = require('path');

function fail(msg) {
  process.stderr.write(`gpt2_reference: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      opts[a.slice(2)] = argv[++i];
    } else {
      opts._.push(a);
    }
  }
  return opts;
}

function need(opts, key) {
  if (opts[key] === undefined) fail(`--${key} is required`);
  return opts[key];
}

function loadEncoder(dir) {
  const file = path.resolve(dir, 'index.js');
  if (!fs.existsSync(file)) fail(`${dir}: no gpt-3-encoder here (run harness/setup)`);
  for (const key of Object.keys(require.cache)) {
    if (key.startsWith(path.resolve(dir))) delete require.cache[key];
  }
  return require(file);
}

function readDocuments(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    fail(`${file}: ${e.message}`);
  }
  const docs = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let obj;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      fail(`${file}:${i + 1}: ${e.message}`);
    }
    if (typeof obj.text !== 'string') fail(`${file}:${i + 1}: no string "text"`);
    docs.push({ id: obj.id === undefined ? `line${i + 1}` : String(obj.id), text: obj.text });
  });
  if (docs.length === 0) fail(`${file}: no documents`);
  return docs;
}

function readShard(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 1024) fail(`${file}: shorter than the shard header`);
  const magic = buf.readInt32LE(0), version = buf.readInt32LE(4), count = buf.readInt32LE(8);
  if (magic !== 20240520 || version !== 1) fail(`${file}: not an llm.c uint16 shard`);
  if (buf.length !== 1024 + 2 * count) fail(`${file}: size does not match its token count`);
  const tokens = new Uint16Array(count);
  for (let i = 0; i < count; i++) tokens[i] = buf.readUInt16LE(1024 + 2 * i);
  return tokens;
}

const EOT = 50256;

function compare(opts) {
  const enc = loadEncoder(need(opts, 'module'));
  const docs = readDocuments(need(opts, 'jsonl'));
  const shard = readShard(need(opts, 'shard'));
  let at = 0;
  for (const doc of docs) {
    const want = [EOT].concat(enc.encode(doc.text));
    for (let i = 0; i < want.length; i++, at++) {
      if (at >= shard.length || shard[at] !== want[i]) {
        const got = at < shard.length ? shard[at] : 'end of shard';
        const ctx = JSON.stringify(enc.decode(want.slice(Math.max(1, i - 8), i + 8)));
        console.log(`MISMATCH document ${doc.id} token ${i} (shard position ${at}): ` +
                    `gpt-3-encoder ${want[i]} ${JSON.stringify(enc.decode([want[i]]))}, ` +
                    `wancp ${got}${typeof got === 'number' ? ' ' + JSON.stringify(enc.decode([got])) : ''}; ` +
                    `context ${ctx}`);
        process.exit(1);
      }
    }
  }
  if (at !== shard.length) {
    console.log(`MISMATCH: wancp has ${shard.length - at} tokens after the last document`);
    process.exit(1);
  }
  console.log(`agree: ${docs.length} documents, ${at} tokens`);
}

function bench(opts) {
  const docs = readDocuments(need(opts, 'jsonl'));
  const repeat = parseInt(opts.repeat || '3', 10);
  const bytes = docs.reduce((n, d) => n + Buffer.byteLength(d.text, 'utf8'), 0);
  let best = Infinity, tokens = 0;
  for (let r = 0; r < repeat; r++) {
    const enc = loadEncoder(need(opts, 'module')); // fresh module: empty BPE cache
    const t0 = process.hrtime.bigint();
    tokens = 0;
    for (const d of docs) tokens += enc.encode(d.text).length;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    best = Math.min(best, s);
  }
  console.log(JSON.stringify({ mb_s: bytes / 1e6 / best, seconds: best, bytes, documents: docs.length,
                               tokens, node: process.version }));
}

// A small seeded generator (mulberry32) so failures reproduce from the seed.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = [
  'the', ' the', 'The', ' quick', 'brown', ' fox', 'a', 'I', "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
  "'S", "'", "don't", "we'll", ' ', '  ', '   ', '\n', '\n\n', '\t', '\r\n', ' \n ', '\u00a0', '\u3000',
  '\ufeff', '\u0085', '\u2009', '\u2028', '\u200b', '0', '7', '42', '2024', '3.14', '١٢٣', '½', '²', 'Ⅻ',
  'é', 'e\u0301', 'ñ', 'Straße', 'ΑΒΓ', 'жук', 'नमस्ते', 'العربية', '中文', '日本語', 'ひらがな', '한국어',
  '👍', '👍🏽', '👨‍👩‍👧', '🇫🇷', '😀😀', '…', '—', '--', '-', '.', ',', '!', '?', '"', '(', ')', '[', ']',
  '{"a":[1,2],"b":"c"}', '",', ',"', ',,', '},{"', '<|endoftext|>', '$', '%', '&', '#', '@', '\\', '/', '*',
  '\u0000', '\u007f', 'ﬁ', 'Ǆ', 'ǅ', '\u0301', '\u200d', '\ud7ff', '\ue000', '\u{10348}',
];

function randomDocs(opts) {
  const next = rng(parseInt(need(opts, 'seed'), 10));
  const count = parseInt(need(opts, 'count'), 10);
  const lines = [];
  for (let d = 0; d < count; d++) {
    let text = '';
    const n = 1 + Math.floor(next() * 60);
    for (let i = 0; i < n; i++) {
      if (next() < 0.1) {
        text += String.fromCodePoint(0x20 + Math.floor(next() * 0x2fe0)); // any BMP-ish letter or symbol
      } else {
        text += PIECES[Math.floor(next() * PIECES.length)];
      }
    }
    lines.push(JSON.stringify({ id: `random${d}`, text }));
  }
  fs.writeFileSync(need(opts, 'out'), lines.join('\n') + '\n');
}

const opts = parseArgs(process.argv.slice(2));
const action = opts._[0];
if (action === 'compare') compare(opts);
else if (action === 'bench') bench(opts);
else if (action === 'random') randomDocs(opts);
else fail('usage: gpt2_reference.js compare|bench|random [options] (see the comment at the top)');
