"""The native gRPC scenario with Python's grpcio: the four call kinds of the
example shop through the gateway, with and without credentials. Messages
are raw bytes (hex in, hex out): the test encodes and decodes them.

usage: grpc_scenario.py TARGET TOKEN API_KEY REQUESTS_JSON
prints one JSON object, the same shape as node/grpc_scenario.mjs prints.
"""
import json
import sys

import grpc

target, token, api_key, requests = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
channel = grpc.insecure_channel(target)
bearer = [("authorization", "Bearer " + token)]
key = [("x-api-key", api_key)]
msg = {name: bytes.fromhex(value) for name, value in requests.items()}
out = {}


def failed(call):
    try:
        call()
    except grpc.RpcError as e:
        return {"code": e.code().value[0], "message": e.details()}
    return {"code": 0, "message": ""}


def hexes(replies):
    return [r.hex() for r in replies]


get_user = channel.unary_unary("/shop.user.v1.UserService/GetUser")
out["get_user"] = get_user(msg["get_user"]).hex()

get_order = channel.unary_unary("/shop.order.v1.OrderService/GetOrder")
out["get_order_anonymous"] = failed(lambda: get_order(msg["get_order"]))
out["get_order"] = get_order(msg["get_order"], metadata=bearer).hex()

watch = channel.unary_stream("/shop.order.v1.OrderService/WatchOrder")
out["watch_anonymous"] = failed(lambda: list(watch(msg["watch"])))
stream = watch(msg["watch"], metadata=bearer)
out["watch_first"] = next(stream).hex()
stream.cancel()

bulk = channel.stream_unary("/shop.inventory.v1.InventoryService/BulkReserve")
out["bulk_anonymous"] = failed(lambda: bulk(iter([msg["reserve"]])))
out["bulk"] = bulk(iter([msg["reserve"], msg["reserve"]]), metadata=key).hex()

sync = channel.stream_stream("/shop.order.v1.OrderService/SyncOrderStatus")
out["sync_anonymous"] = failed(lambda: list(sync(iter([msg["update"]]))))
out["sync"] = hexes(sync(iter([msg["update"]]), metadata=bearer))

unknown = channel.unary_unary("/grpc.health.v1.Health/Check")
out["unrouted"] = failed(lambda: unknown(b""))
print(json.dumps(out))
