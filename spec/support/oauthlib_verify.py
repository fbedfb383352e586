"""Verifies OAuth 1.0a Authorization headers made by our C core with an
independent implementation (Debian's python3-oauthlib).

stdin: one JSON object a line: method, url, body (form string or ""),
header, consumer_secret, token_secret. stdout: JSON {ok, bad, failures}."""
import json
import sys
from urllib.parse import urlparse

from oauthlib.common import Request
from oauthlib.oauth1.rfc5849 import signature, utils

ok, failures = 0, []
for line in sys.stdin:
    case = json.loads(line)
    headers = {"Authorization": case["header"]}
    body = case["body"] or None
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = Request(case["url"], case["method"], body, headers)
    req.params = signature.collect_parameters(
        uri_query=urlparse(case["url"]).query, body=req.body,
        headers=req.headers, exclude_oauth_signature=True)
    req.signature = utils.unescape(dict(utils.parse_authorization_header(case["header"]))["oauth_signature"])
    if signature.verify_hmac_sha1(req, case["consumer_secret"], case["token_secret"]):
        ok += 1
    else:
        norm = signature.normalize_parameters(req.params)
        failures.append({"url": case["url"], "method": case["method"], "body": case["body"],
                         "base": signature.signature_base_string(
                             req.http_method, signature.base_string_uri(req.uri), norm)})
print(json.dumps({"ok": ok, "bad": len(failures), "failures": failures[:5]}))
