#!/usr/bin/env node
// Writes fixtures/hessian2/sofa_vectors.json: values encoded by hessian.js-1's v2 encoder,
// the "Hessian 3.0" draft that sofa-rpc-node uses for Bolt by default, each with the
// expected value in the same JSON form as /work/shared/vectors/hessian2/vectors.json.
// Re-run:  cd peers/node && npm install --no-audit --no-fund && node gen_sofa_vectors.js
'use strict';
const path = require('path');
const fs = require('fs');
const hessian = require('hessian.js-1');

const S = v => ({ java: 'string', value: v });
const I = v => ({ java: 'int', value: v });
const L = v => ({ java: 'long', value: v });
const D = v => ({ java: 'double', value: v });

const cases = [
  ['null', null, { java: 'null' }],
  ['true', true, { java: 'boolean', value: true }],
  ['int_small', 7, I(7)],
  ['int_big', 100000, I(100000)],
  ['int_neg', -2147483648, I(-2147483648)],
  ['long_small', { $class: 'long', $: 5 }, L(5)],
  ['long_int32', { $class: 'long', $: 1000000 }, L(1000000)],
  ['long_big', { $class: 'long', $: 1099511627776 }, L(1099511627776)],
  ['double_zero', { $class: 'double', $: 0 }, D(0)],
  ['double_one', { $class: 'double', $: 1 }, D(1)],
  ['double_byte', { $class: 'double', $: -5 }, D(-5)],
  ['double_short', { $class: 'double', $: 1000 }, D(1000)],
  ['double_float', { $class: 'double', $: 100000 }, D(100000)],
  ['double_full', 3.25, D(3.25)],
  ['string_short', 'hello', S('hello')],
  ['string_utf', 'h\u00e9llo\u4e16\u754c\ud83d\ude00', S('h\u00e9llo\u4e16\u754c\ud83d\ude00')],
  ['string_long', 'x'.repeat(70000), S('x'.repeat(70000))],
  ['binary_short', Buffer.from([1, 2, 3]), { java: 'binary', hex: '010203' }],
  ['binary_long', Buffer.alloc(40000, 7), { java: 'binary', hex: '07'.repeat(40000) }],
  ['date', new Date(1700000000123), { java: 'date', millis: 1700000000123 }],
  ['list_simple', [1, 'a'], { java: 'list', items: [I(1), S('a')] }],
  ['list_typed', { $class: 'java.util.LinkedList', $: [1, 2] }, { java: 'list', type: 'java.util.LinkedList', items: [I(1), I(2)] }],
  ['map_simple', { a: 1, b: 'x' }, { java: 'map', entries: [[S('a'), I(1)], [S('b'), S('x')]] }],
  ['map_typed', { $class: 'java.util.HashMap', $: { k: 'v' } }, { java: 'map', entries: [[S('k'), S('v')]] }],
  ['object', { $class: 'com.example.User', $: { name: 'alice', age: 30, id: { $class: 'long', $: 7 } } },
    { java: 'object', class: 'com.example.User', fields: { name: S('alice'), age: I(30), id: L(7) } }],
];

const out = [];
for (const [name, value, expected] of cases) {
  const enc = new hessian.EncoderV2({ size: 1024 });
  enc.write(value);
  out.push({ name, hex: enc.get().toString('hex'), value: expected });
}

// a stream with shared references, repeated types and repeated class definitions
{
  const enc = new hessian.EncoderV2({ size: 1024 });
  const shared = { $class: 'com.example.Item', $: { n: 1 } };
  const list = { $class: 'java.util.List', $: [shared, shared] };
  enc.write(list);
  enc.write({ $class: 'com.example.Item', $: { n: 2 } });
  enc.write({ $class: 'java.util.LinkedList', $: [3] });
  enc.write({ $class: 'java.util.LinkedList', $: [4] });
  out.push({ name: 'stream_refs', hex: enc.get().toString('hex'), sequence: [
    { java: 'list', items: [
      { java: 'object', class: 'com.example.Item', fields: { n: I(1) } },
      { java: 'object', class: 'com.example.Item', fields: { n: I(1) } }] },
    { java: 'object', class: 'com.example.Item', fields: { n: I(2) } },
    { java: 'list', type: 'java.util.LinkedList', items: [I(3)] },
    { java: 'list', type: 'java.util.LinkedList', items: [I(4)] },
  ] });
}

const file = path.join(__dirname, '..', '..', 'fixtures', 'hessian2', 'sofa_vectors.json');
fs.writeFileSync(file, JSON.stringify({
  source: 'hessian.js-1 ' + require('hessian.js-1/package.json').version + ' EncoderV2 (the SOFA "Hessian 3.0" draft)',
  vectors: out,
}, null, 1) + '\n');
console.log('wrote %d vectors to %s', out.length, file);
