// The Node peer of serve without a sink, the way the peers answer today:
// node:http, the signature checked in constant time, JSON.parse, a dispatch
// on the envelope's event key, then 200 (401 on a bad signature, 400 on bad
// JSON). No Redis. Used by bench/durable.lua.
//   node bench/node/plain.js PORT SECRET
'use strict';
const http = require('http');
const [port, secret] = process.argv.slice(2);

let handled = 0;
const handlers = { tweet_create_events: [(ev) => { if (ev.id_str) handled++; }] };

const verify = require('./verify')(secret);

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    if (!verify(body, req.headers['x-twitter-webhooks-signature'])) { res.statusCode = 401; res.end(); return; }
    let env;
    try { env = JSON.parse(body.toString('utf8')); } catch (e) { res.statusCode = 400; res.end(); return; }
    for (const key of Object.keys(env)) {
      const hs = handlers[key];
      if (!hs || !Array.isArray(env[key])) continue;
      for (const item of env[key]) for (const h of hs) h(item);
    }
    res.statusCode = 200;
    res.end();
  });
});

process.on('SIGTERM', () => { console.log('handled ' + handled); process.exit(0); });
server.listen(Number(port), '127.0.0.1', () => console.log('listening'));
