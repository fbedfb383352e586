// X's webhook signature check the Node peers share: HMAC-SHA256 of the raw
// body with the consumer secret, compared in constant time.
'use strict';
const crypto = require('crypto');

module.exports = function verifier(secret) {
  return function verify(body, header) {
    if (typeof header !== 'string' || !header.startsWith('sha256=')) return false;
    const got = Buffer.from(header.slice(7), 'base64');
    const want = crypto.createHmac('sha256', secret).update(body).digest();
    return got.length === want.length && crypto.timingSafeEqual(got, want);
  };
};
