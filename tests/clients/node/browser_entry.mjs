// Bundled for the browser by browser_grpc_web.mjs: Connect-ES's gRPC-Web
// transport (@connectrpc/connect-web, fetch) with the shop's services read
// from a descriptor set at run time.
import { createClient, ConnectError } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { createFileRegistry, fromBinary, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

window.runScenario = async (baseUrl, setBase64, token) => {
  const bytes = Uint8Array.from(atob(setBase64), (c) => c.charCodeAt(0));
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
  const transport = createGrpcWebTransport({ baseUrl });
  const users = createClient(registry.getService("shop.user.v1.UserService"), transport);
  const orders = createClient(registry.getService("shop.order.v1.OrderService"), transport);
  const method = (svc, name) => registry.getService(svc).methods.find((m) => m.name === name);
  const out = { origin: window.location.origin };
  const user = await users.getUser({ id: 1n });
  out.get_user = toJson(method("shop.user.v1.UserService", "GetUser").output, user);
  try {
    await orders.getOrder({ name: "users/1/orders/1001" });
    out.anonymous = { code: 0 };
  } catch (e) {
    const error = ConnectError.from(e);
    out.anonymous = { code: error.code, message: error.rawMessage };
  }
  const headers = { authorization: `Bearer ${token}` };
  const watching = new AbortController();
  for await (const change of orders.watchOrder(
    { name: "users/2/orders/1003" },
    { headers, signal: watching.signal },
  )) {
    out.watch_first = toJson(method("shop.order.v1.OrderService", "WatchOrder").output, change);
    break;
  }
  watching.abort();
  return out;
};
