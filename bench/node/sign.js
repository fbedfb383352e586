// Node's oauth-1.0a signing the same "Subscribe" request as bench/sign.lua.
const crypto = require("crypto");
const OAuth = require("oauth-1.0a");
const oauth = OAuth({
  consumer: { key: "xvz1evFS4wEEPTGEFPHBog", secret: "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw" },
  signature_method: "HMAC-SHA1",
  hash_function: (base, key) => crypto.createHmac("sha1", key).update(base).digest("base64"),
});
const token = { key: "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb", secret: "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE" };
const req = { url: "https://api.twitter.com/1.1/account_activity/webhooks/1234567890/subscriptions/all.json", method: "POST" };
const seconds = Number(process.argv[2] || 2);
for (let i = 0; i < 2000; i++) oauth.toHeader(oauth.authorize(req, token));
let n = 0;
const t0 = process.hrtime.bigint();
let el = 0;
do {
  for (let i = 0; i < 1000; i++) oauth.toHeader(oauth.authorize(req, token));
  n += 1000;
  el = Number(process.hrtime.bigint() - t0) / 1e9;
} while (el < seconds);
console.log((n / el).toFixed(1));
