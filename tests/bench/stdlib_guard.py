"""The floor of the deployed-path benchmark (not a test): what a guard written on the standard
library alone pays to make the same IMS requests.

Signs each request with signature v1 (HMAC-SHA1 over the sorted, RFC 3986-encoded query, keyed
with ``secret&``), POSTs it with urllib, and parses the JSON reply: the work a minimal guard
cannot avoid. Exits 1 unless every reply is HTTP 200 with a RequestId.

    python -I stdlib_guard.py ENDPOINT ACCESS_KEY_ID SECRET STS_TOKEN '[["Action", {params}], ...]'
"""

import base64
import hashlib
import hmac
import json
import sys
import time
import urllib.parse
import urllib.request
import uuid


def encode(text: str) -> str:
    return urllib.parse.quote(text, safe="~")


def signed_query(action: str, params: dict, key_id: str, secret: str, token: str) -> str:
    query = {
        **params,
        "Format": "JSON",
        "Version": "2019-08-15",
        "Action": action,
        "RegionId": "cn-hangzhou",
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "SignatureMethod": "HMAC-SHA1",
        "SignatureType": "",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "AccessKeyId": key_id,
    }
    if token:
        query["SecurityToken"] = token
    canonical = "&".join(f"{encode(k)}={encode(str(v))}" for k, v in sorted(query.items()))
    to_sign = "POST&%2F&" + encode(canonical)
    digest = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return canonical + "&Signature=" + encode(base64.b64encode(digest).decode())


def main() -> None:
    endpoint, key_id, secret, token, requests = sys.argv[1:6]
    for action, params in json.loads(requests):
        url = f"{endpoint}/?{signed_query(action, params, key_id, secret, token)}"
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10) as r:  # noqa: S310 - the bench's loopback emulator
            document = json.loads(r.read())
        if r.status != 200 or "RequestId" not in document:
            sys.exit(1)


if __name__ == "__main__":
    main()
