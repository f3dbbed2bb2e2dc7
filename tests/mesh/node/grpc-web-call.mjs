// A real gRPC-web client for the mesh tests: Connect's gRPC-web transport over HTTP/1.1
// and TLS, as a browser app would call the edge.
//
//   node grpc-web-call.mjs '{"baseUrl": "https://localhost:8443", "caFile": "ca.pem",
//     "descriptorSet": "contract.binpb", "service": "telemesh.consent.v1.ConsentService",
//     "method": "ListConsents", "request": {"patientId": "p-1"}, "token": "..."}'
//
// Optional: "headers" (more request headers), "timeoutMs", "maxMessages" (stop a stream
// after that many messages).
//
// The service comes from a binary FileDescriptorSet of the contract (no generated code to
// keep fresh). Prints one JSON line per event, flushed as it happens:
//   {"message": {...}}                      each response message
//   {"end": {"code": "OK"}}                 the call ended well
//   {"end": {"code": "CLIENT_CLOSED"}}      the client stopped a stream after maxMessages
//   {"error": {"code": "...", "message": "..."}}  it ended with a status (gRPC code name)
import { readFileSync } from "node:fs";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { createFileRegistry, fromBinary, fromJson, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const args = JSON.parse(process.argv[2]);
const registry = createFileRegistry(
  fromBinary(FileDescriptorSetSchema, readFileSync(args.descriptorSet)),
);
const service = registry.getService(args.service);
if (!service) throw new Error(`no service ${args.service} in the descriptor set`);
const method = service.methods.find((m) => m.name === args.method);
if (!method) throw new Error(`no method ${args.method} in ${args.service}`);

const transport = createGrpcWebTransport({
  baseUrl: args.baseUrl,
  httpVersion: "1.1",
  nodeOptions: { ca: readFileSync(args.caFile) },
});
const client = createClient(service, transport);
const headers = { ...(args.headers ?? {}) };
if (args.token) headers.authorization = `Bearer ${args.token}`;
const request = fromJson(method.input, args.request ?? {}, { registry });

function emit(event) {
  process.stdout.write(`${JSON.stringify({ ...event, at: Date.now() })}\n`);
}

// Connect's code names are camelCase ("permissionDenied"); gRPC's are SNAKE_CASE.
function grpcName(code) {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

try {
  const abort = new AbortController();
  const options = { headers, timeoutMs: args.timeoutMs, signal: abort.signal };
  if (method.methodKind === "server_streaming") {
    let count = 0;
    for await (const message of client[method.localName](request, options)) {
      emit({ message: toJson(method.output, message, { registry }) });
      count += 1;
      if (args.maxMessages && count >= args.maxMessages) {
        abort.abort();
        emit({ end: { code: "CLIENT_CLOSED" } });
        process.exit(0);
      }
    }
  } else {
    const message = await client[method.localName](request, options);
    emit({ message: toJson(method.output, message, { registry }) });
  }
  emit({ end: { code: "OK" } });
} catch (error) {
  const connectError = ConnectError.from(error);
  emit({ error: { code: grpcName(connectError.code), message: connectError.rawMessage } });
}
