// The native gRPC scenario with Node's @grpc/grpc-js: the same calls as
// ../python/grpc_scenario.py, printing the same JSON shape.
//
// usage: node grpc_scenario.mjs TARGET TOKEN API_KEY REQUESTS_JSON
import * as grpc from "@grpc/grpc-js";

const [target, token, apiKey, requests] = process.argv.slice(2);
const msg = Object.fromEntries(
  Object.entries(JSON.parse(requests)).map(([k, v]) => [k, Buffer.from(v, "hex")]),
);
const client = new grpc.Client(target, grpc.credentials.createInsecure());
const raw = (b) => b;
const metadata = (pairs) => {
  const m = new grpc.Metadata();
  for (const [k, v] of pairs) m.set(k, v);
  return m;
};
const bearer = () => metadata([["authorization", `Bearer ${token}`]]);
const key = () => metadata([["x-api-key", apiKey]]);
const none = () => new grpc.Metadata();

const unary = (path, message, meta) =>
  new Promise((resolve, reject) =>
    client.makeUnaryRequest(path, raw, raw, message, meta, (err, reply) =>
      err ? reject(err) : resolve(reply),
    ),
  );
const clientStream = (path, messages, meta) =>
  new Promise((resolve, reject) => {
    const call = client.makeClientStreamRequest(path, raw, raw, meta, (err, reply) =>
      err ? reject(err) : resolve(reply),
    );
    for (const m of messages) call.write(m);
    call.end();
  });
const collect = (call) =>
  new Promise((resolve, reject) => {
    const replies = [];
    call.on("data", (d) => replies.push(d));
    call.on("error", reject);
    call.on("end", () => resolve(replies));
  });
const failed = async (promise) => {
  try {
    await promise;
    return { code: 0, message: "" };
  } catch (e) {
    return { code: e.code, message: e.details };
  }
};
const hex = (b) => Buffer.from(b).toString("hex");

const out = {};
out.get_user = hex(await unary("/shop.user.v1.UserService/GetUser", msg.get_user, none()));
const getOrder = "/shop.order.v1.OrderService/GetOrder";
out.get_order_anonymous = await failed(unary(getOrder, msg.get_order, none()));
out.get_order = hex(await unary(getOrder, msg.get_order, bearer()));

const watch = "/shop.order.v1.OrderService/WatchOrder";
out.watch_anonymous = await failed(collect(client.makeServerStreamRequest(watch, raw, raw, msg.watch, none())));
const stream = client.makeServerStreamRequest(watch, raw, raw, msg.watch, bearer());
out.watch_first = await new Promise((resolve, reject) => {
  stream.once("data", (d) => resolve(hex(d)));
  stream.once("error", reject);
});
stream.on("error", () => {});
stream.cancel();

const bulk = "/shop.inventory.v1.InventoryService/BulkReserve";
out.bulk_anonymous = await failed(clientStream(bulk, [msg.reserve], none()));
out.bulk = hex(await clientStream(bulk, [msg.reserve, msg.reserve], key()));

const sync = "/shop.order.v1.OrderService/SyncOrderStatus";
const bidi = (meta) => {
  const call = client.makeBidiStreamRequest(sync, raw, raw, meta);
  call.write(msg.update);
  call.end();
  return collect(call);
};
out.sync_anonymous = await failed(bidi(none()));
out.sync = (await bidi(bearer())).map(hex);

out.unrouted = await failed(unary("/grpc.health.v1.Health/Check", Buffer.alloc(0), none()));
client.close();
console.log(JSON.stringify(out));
