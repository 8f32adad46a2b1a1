// Publishes through the official @upstash/qstash SDK (2.12.0) to a running
// Ferry server and verifies every delivery with the SDK's Receiver.
//
// Environment:
//   FERRY_URL                  base URL of the server, on 127.0.0.1 or localhost
//   FERRY_TOKEN                API token
//   FERRY_CURRENT_SIGNING_KEY  current signing key, from GET /v2/keys
//   FERRY_NEXT_SIGNING_KEY     next signing key, from GET /v2/keys
//
// interop_test.go starts Ferry and runs this file with `node --test`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import { Client, Receiver } from "@upstash/qstash";

import { allowOnlyLoopback, assertVerified, readFerryConfig, sleep, startDestination } from "./destination.mjs";

const config = readFerryConfig();
allowOnlyLoopback();

// devMode: false keeps a QSTASH_DEV variable in the environment from
// replacing the server URL, token and keys with the dev ones.
const client = new Client({ baseUrl: config.url, token: config.token, retry: false, devMode: false });
const receiver = new Receiver({
  currentSigningKey: config.currentSigningKey,
  nextSigningKey: config.nextSigningKey,
  devMode: false,
});

let destination;

before(async () => {
  destination = await startDestination(receiver);
});

after(async () => {
  await destination?.close();
});

test("publishJSON with delay, headers and deduplication", async () => {
  const route = destination.route("/delayed");
  const payload = { order: 42, items: ["tea", "milk"], note: "caf\u00e9" };
  const deduplicationId = `interop-${randomBytes(8).toString("hex")}`;
  const request = {
    url: route.url,
    body: payload,
    delay: 2,
    retries: 3,
    timeout: 10,
    label: "interop",
    headers: { "X-Ferry-Trace": "trace-123", "X-Tenant": "acme" },
    deduplicationId,
  };

  const publishedAt = Date.now();
  const first = await client.publishJSON(request);
  assert.equal(typeof first.messageId, "string");
  assert.ok(first.messageId.length > 0, "first publish returned an empty messageId");
  assert.ok(!first.deduplicated, `first publish reported deduplicated: ${JSON.stringify(first)}`);

  const second = await client.publishJSON(request);
  assert.equal(second.messageId, first.messageId, "second publish with the same deduplicationId got a new messageId");
  assert.equal(second.deduplicated, true, `second publish response: ${JSON.stringify(second)}`);

  const [delivery] = await route.waitFor(1, 15_000);
  const elapsed = delivery.receivedAt - publishedAt;
  assert.ok(elapsed >= 1900, `delivery arrived ${elapsed} ms after publish, before the 2 s delay`);
  assert.ok(elapsed <= 7000, `delivery arrived ${elapsed} ms after publish, expected about 2000 ms`);

  assertVerified(delivery);
  assert.equal(delivery.method, "POST");
  assert.equal(delivery.body, JSON.stringify(payload));
  assert.equal(delivery.headers["content-type"], "application/json");
  assert.equal(delivery.headers["x-ferry-trace"], "trace-123");
  assert.equal(delivery.headers["x-tenant"], "acme");
  assert.equal(delivery.headers["upstash-forward-x-ferry-trace"], undefined, "forwarded header kept its prefix");
  assert.equal(delivery.headers["upstash-message-id"], first.messageId);
  assert.equal(delivery.headers["upstash-retried"], "0");
  assert.equal(delivery.headers["upstash-telemetry-sdk"], undefined, "SDK telemetry header reached the destination");

  // A second delivery would come at the same time as the first.
  await sleep(1000);
  assert.equal(route.deliveries.length, 1, "the deduplicated publish was delivered too");
});

test("destination query string arrives intact", async () => {
  const pathAndQuery = "/query?a=1&a=2&b=two%20words&list=x,y&empty=";
  const route = destination.route(pathAndQuery);

  const result = await client.publishJSON({ url: route.url, body: { query: true } });
  const [delivery] = await route.waitFor(1, 10_000);

  assert.equal(delivery.requestURI, pathAndQuery);
  assert.equal(delivery.headers["upstash-message-id"], result.messageId);
  assertVerified(delivery);
});

test("failed deliveries are retried with Upstash-Retried", async () => {
  // The destination returns 500 to the first two attempts and 200 to the third.
  const route = destination.route("/flaky", (attempt) => (attempt <= 2 ? 500 : 200));

  const result = await client.publishJSON({
    url: route.url,
    body: { flaky: true },
    retries: 3,
    retryDelay: "100",
  });
  const deliveries = await route.waitFor(3, 15_000);

  assert.deepEqual(
    deliveries.map((d) => d.headers["upstash-retried"]),
    ["0", "1", "2"],
  );
  for (const delivery of deliveries) {
    assertVerified(delivery);
    assert.equal(delivery.headers["upstash-message-id"], result.messageId);
    assert.equal(delivery.body, JSON.stringify({ flaky: true }));
  }
  for (let i = 1; i < deliveries.length; i++) {
    const gap = deliveries[i].receivedAt - deliveries[i - 1].receivedAt;
    assert.ok(gap >= 90, `retry ${i} came ${gap} ms after the previous attempt, before the 100 ms retryDelay`);
    assert.ok(gap <= 5000, `retry ${i} came ${gap} ms after the previous attempt, expected about 100 ms`);
  }

  // The third attempt succeeded, so no fourth may follow.
  await sleep(1000);
  assert.equal(route.deliveries.length, 3, "a delivery was retried after it succeeded");
});

test("receiver rejects wrong keys, URL and body", async () => {
  const route = destination.route("/negative");
  await client.publishJSON({ url: route.url, body: { negative: true } });
  const [delivery] = await route.waitFor(1, 10_000);
  assertVerified(delivery);
  const request = { signature: delivery.signature, body: delivery.body, url: route.url };

  const randomKey = () => `sig_${randomBytes(16).toString("hex")}`;
  const wrongKeys = new Receiver({ currentSigningKey: randomKey(), nextSigningKey: randomKey(), devMode: false });
  await assert.rejects(wrongKeys.verify(request), { name: "SignatureError" });

  await assert.rejects(receiver.verify({ ...request, url: `${route.url}?changed=1` }), {
    name: "SignatureError",
    message: /invalid subject/,
  });
  await assert.rejects(receiver.verify({ ...request, body: delivery.body + " " }), {
    name: "SignatureError",
    message: /body hash does not match/,
  });
});
