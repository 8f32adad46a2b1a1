// Runs the official @upstash/qstash SDK (2.12.0) in its dev mode against
// `ferry dev`. With QSTASH_DEV=true the SDK ignores any configured URL, token
// and keys: the Client sends to http://127.0.0.1:$QSTASH_DEV_PORT with the
// public dev token, and the Receiver verifies with the public dev keys.
//
// Environment:
//   QSTASH_DEV       must be "true"
//   QSTASH_DEV_PORT  port of a running `ferry dev`
//
// interop_test.go starts `ferry dev` and runs this file with `node --test`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { Client, Receiver } from "@upstash/qstash";

import { allowOnlyLoopback, startDestination } from "./destination.mjs";

// The public credentials of the QStash development server, which the SDK
// hard-codes and `ferry dev` serves.
const devToken = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0=";
const devKeys = { current: "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r", next: "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs" };

if (process.env.QSTASH_DEV !== "true" || !/^\d+$/.test(process.env.QSTASH_DEV_PORT ?? "")) {
  throw new Error("set QSTASH_DEV=true and QSTASH_DEV_PORT to the port of `ferry dev`: run these tests through go test ./interop/");
}
const devURL = `http://127.0.0.1:${process.env.QSTASH_DEV_PORT}`;
allowOnlyLoopback();

let destination;

before(async () => {
  // The SDK probes GET /v2/keys with the dev token and, unless the response
  // contains the dev keys, downloads and starts its own dev server. This check
  // makes the test fail before the SDK gets there.
  const response = await fetch(`${devURL}/v2/keys`, { headers: { Authorization: `Bearer ${devToken}` } });
  assert.equal(response.status, 200, `GET ${devURL}/v2/keys with the dev token`);
  assert.deepEqual(await response.json(), devKeys, `GET ${devURL}/v2/keys returned other keys than the dev keys`);

  destination = await startDestination(new Receiver());
});

after(async () => {
  await destination?.close();
});

test("dev mode publish and verify", async () => {
  const route = destination.route("/dev?mode=dev");
  const client = new Client();

  const result = await client.publishJSON({ url: route.url, body: { dev: true } });
  assert.equal(typeof result.messageId, "string");

  const [delivery] = await route.waitFor(1, 10_000);
  assert.equal(
    delivery.verified,
    true,
    `signature of delivery ${delivery.requestURI} did not verify with the dev keys: ${delivery.verifyError?.message}`,
  );
  assert.equal(delivery.body, JSON.stringify({ dev: true }));
  assert.equal(delivery.headers["upstash-message-id"], result.messageId);
});
