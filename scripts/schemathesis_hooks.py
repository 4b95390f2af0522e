"""Schemathesis hooks for protogate's streaming operations.

Client and bidirectional streams take an NDJSON body (one JSON message per
line) and server streams answer with NDJSON: teach schemathesis both, so
those operations are fuzzed and their replies checked like the others.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson_request(ctx, value):
    # The schema describes one message; a list is sent as one line each.
    messages = value if isinstance(value, list) else [value]
    return "".join(json.dumps(m) + "\n" for m in messages).encode()


@schemathesis.deserializer("application/x-ndjson")
def ndjson_response(ctx, response):
    # The schema describes one message: check the first. (A stream that
    # fails after it ends with an error line of the google.rpc.Status shape.)
    text = response.content.decode(response.encoding or "utf-8")
    # NDJSON lines end at "\n" only: str.splitlines() would also split
    # inside strings at U+0085, U+2028 and the like, which JSON carries raw.
    lines = [line for line in text.split("\n") if line.strip()]
    return json.loads(lines[0]) if lines else {}
