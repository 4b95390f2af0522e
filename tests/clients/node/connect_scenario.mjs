// Connect-ES clients (@connectrpc/connect-node) against the gateway, over
// one of its transports, with the example shop's services read from a
// descriptor set at run time (no generated code). Prints one JSON object.
//
// usage: node connect_scenario.mjs TRANSPORT BASE_URL DESCRIPTOR_SET TOKEN API_KEY
//   TRANSPORT: grpc-web | grpc-web-h2 | grpc | connect | connect-h2, and for
//   Connect a -proto suffix (binary messages) and/or -get (GET for methods
//   without side effects), e.g. connect-h2-proto-get
import { readFileSync } from "node:fs";
import { createClient, ConnectError } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { createFileRegistry, fromBinary, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const [kind, baseUrl, descriptors, token, apiKey] = process.argv.slice(2);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptors)));
const http2 = kind === "grpc" || kind.includes("-h2");
const options = {
  baseUrl,
  httpVersion: http2 ? "2" : "1.1",
  useBinaryFormat: kind.includes("-proto"),
  useHttpGet: kind.includes("-get"),
};
const transport = (
  kind.startsWith("grpc-web")
    ? createGrpcWebTransport
    : kind === "grpc"
      ? createGrpcTransport
      : createConnectTransport
)(options);

const service = (name) => createClient(registry.getService(name), transport);
const users = service("shop.user.v1.UserService");
const orders = service("shop.order.v1.OrderService");
const inventory = service("shop.inventory.v1.InventoryService");
const bearer = { headers: { authorization: `Bearer ${token}` } };
const key = { headers: { "x-api-key": apiKey } };
const json = (method, message) => toJson(method.output, message, { registry });
const method = (svc, name) => registry.getService(svc).methods.find((m) => m.name === name);
const failed = async (promise) => {
  try {
    await promise;
    return { code: 0 };
  } catch (e) {
    const error = ConnectError.from(e);
    return {
      code: error.code,
      message: error.rawMessage,
      details: error.details.map((d) => d.desc?.typeName ?? d.type),
    };
  }
};

const out = {};
out.get_user = json(method("shop.user.v1.UserService", "GetUser"), await users.getUser({ id: 1n }));
out.get_order_anonymous = await failed(orders.getOrder({ name: "users/1/orders/1001" }));
out.get_order = (await orders.getOrder({ name: "users/1/orders/1001" }, bearer)).name;
out.invalid_order = await failed(
  orders.createOrder(
    { parent: "users/1", order: { items: [{ sku: "", quantity: 0 }] } },
    bearer,
  ),
);

const watching = new AbortController();
const watch = orders.watchOrder(
  { name: "users/2/orders/1003" },
  { ...bearer, signal: watching.signal },
);
for await (const change of watch) {
  out.watch_first = json(method("shop.order.v1.OrderService", "WatchOrder"), change);
  break;
}
watching.abort();

if (http2) {
  const reserve = async function* () {
    yield { sku: "sku-grinder", quantity: 1 };
    yield { sku: "sku-grinder", quantity: 1 };
  };
  out.bulk_count = (await inventory.bulkReserve(reserve(), key)).count;
  const updates = async function* () {
    yield { name: "users/1/orders/1002", status: 4, reason: "changed my mind" };
  };
  out.sync = [];
  for await (const ack of orders.syncOrderStatus(updates(), bearer)) {
    out.sync.push(json(method("shop.order.v1.OrderService", "SyncOrderStatus"), ack));
  }
}
console.log(JSON.stringify(out));
