// The same work in Node: createHmac + timingSafeEqual + JSON.parse + a
// dispatch on the envelope key. Prints ops/s. Used by bench/webhook.lua.
//   node bench/webhook/node.js BODYFILE SECRET SECONDS
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const [bodyFile, secret, seconds] = process.argv.slice(2);
const body = fs.readFileSync(bodyFile);
const sig = 'sha256=' + crypto.createHmac('sha256', secret).update(body).digest('base64');
const handlers = { tweet_create_events: [] };
let count = 0;
handlers.tweet_create_events.push((ev) => { if (ev.id_str) count++; });

function once() {
  const header = sig;
  if (!header.startsWith('sha256=')) throw new Error('prefix');
  const got = Buffer.from(header.slice(7), 'base64');
  const want = crypto.createHmac('sha256', secret).update(body).digest();
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) throw new Error('bad');
  const env = JSON.parse(body.toString('utf8'));
  for (const key of Object.keys(env)) {
    const hs = handlers[key];
    if (!hs) continue;
    for (const item of env[key]) for (const h of hs) h(item);
  }
}

for (let i = 0; i < 2000; i++) once();
let n = 0;
const t0 = process.hrtime.bigint();
const deadline = t0 + BigInt(Math.round(Number(seconds) * 1e9));
let now;
do {
  for (let i = 0; i < 500; i++) once();
  n += 500;
  now = process.hrtime.bigint();
} while (now < deadline);
if (count !== n + 2000) throw new Error('count');
console.log((n / (Number(now - t0) / 1e9)).toFixed(0));
