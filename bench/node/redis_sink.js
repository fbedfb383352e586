// The Node peer of serve{ sink }: node:http, the signature checked in
// constant time, then SET NX EX (the signature) + XADD with the npm `redis`
// client, 200 once Redis answered (503 when it did not). Used by bench/durable.lua.
//   node bench/node/redis_sink.js PORT SECRET REDIS_PORT   (npm install in bench/node first)
'use strict';
const http = require('http');
const { createClient } = require('redis');
const [port, secret, redisPort] = process.argv.slice(2);

const client = createClient({ socket: { host: '127.0.0.1', port: Number(redisPort) } });
client.on('error', () => {});

const verify = require('./verify')(secret);

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const body = Buffer.concat(chunks);
    const sig = req.headers['x-twitter-webhooks-signature'];
    if (!verify(body, sig)) { res.statusCode = 401; res.end(); return; }
    try {
      const fresh = await client.set('aa:events:seen:' + sig, '1', { NX: true, EX: 3600 });
      if (fresh) {
        const api = /^\s*\{\s*"data"\s*:/.test(body.subarray(0, 32).toString('latin1')) ? 'xaa' : 'aaa';
        await client.xAdd('aa:events', '*', { body: body.toString('utf8'), sig, received_at: String(Date.now() / 1000), api },
          { TRIM: { strategy: 'MAXLEN', strategyModifier: '~', threshold: 1000000 } });
      }
      res.statusCode = 200;
      res.end();
    } catch (e) {
      res.statusCode = 503;
      res.end();
    }
  });
});

client.connect().then(() => server.listen(Number(port), '127.0.0.1', () => console.log('listening')));
