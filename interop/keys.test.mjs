// Rotates Ferry's signing keys and checks that the official @upstash/qstash
// SDK's Receiver (2.12.0) still verifies deliveries. A Receiver with the
// pair from before the rotation falls back to its next key, which became
// the current one.
//
// SDK 2.12.0 has no method for the signing keys, so the test reads and
// rotates them with fetch on GET /v2/keys and POST /v2/keys/rotate, the
// routes of the QStash API.
//
// Environment: the same as publish.test.mjs. interop_test.go starts a Ferry
// server for this file alone, because the rotation changes the keys for
// every later delivery.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { Client, Receiver } from "@upstash/qstash";

import { allowOnlyLoopback, assertVerified, readFerryConfig, startDestination } from "./destination.mjs";

const config = readFerryConfig();
allowOnlyLoopback();

// devMode: false keeps a QSTASH_DEV variable in the environment from
// replacing the server URL, token and keys with the dev ones.
const client = new Client({ baseUrl: config.url, token: config.token, retry: false, devMode: false });

/** Returns a Receiver that verifies with keys.current, then keys.next. */
function receiverFor(keys) {
  return new Receiver({ currentSigningKey: keys.current, nextSigningKey: keys.next, devMode: false });
}

/** Sends method to path on Ferry with the token and returns the JSON body. */
async function callFerry(method, path) {
  const response = await fetch(config.url + path, {
    method,
    headers: { Authorization: `Bearer ${config.token}` },
  });
  const text = await response.text();
  assert.equal(response.status, 200, `${method} ${path} returned status ${response.status}: ${text}`);
  return JSON.parse(text);
}

const initialKeys = { current: config.currentSigningKey, next: config.nextSigningKey };
let destination;

before(async () => {
  destination = await startDestination(receiverFor(initialKeys));
});

after(async () => {
  await destination?.close();
});

test("deliveries verify across a key rotation", async () => {
  assert.deepEqual(await callFerry("GET", "/v2/keys"), initialKeys);

  const beforeRoute = destination.route("/keys/before-rotation");
  await client.publishJSON({ url: beforeRoute.url, body: { rotated: false } });
  const [beforeDelivery] = await beforeRoute.waitFor(1, 10_000);
  assertVerified(beforeDelivery);

  const rotatedKeys = await callFerry("POST", "/v2/keys/rotate");
  assert.equal(rotatedKeys.current, initialKeys.next, "the rotation did not make the next key current");
  assert.equal(typeof rotatedKeys.next, "string");
  assert.notEqual(rotatedKeys.next, initialKeys.current);
  assert.notEqual(rotatedKeys.next, initialKeys.next);
  assert.deepEqual(await callFerry("GET", "/v2/keys"), rotatedKeys);

  // The destination's Receiver still has the initial pair, so this
  // delivery verifies only through its fallback to the next key.
  const afterRoute = destination.route("/keys/after-rotation");
  await client.publishJSON({ url: afterRoute.url, body: { rotated: true } });
  const [afterDelivery] = await afterRoute.waitFor(1, 10_000);
  assertVerified(afterDelivery);

  const request = { signature: afterDelivery.signature, body: afterDelivery.body, url: afterRoute.url };
  assert.equal(await receiverFor(rotatedKeys).verify(request), true);

  // A Receiver with only the current key from before the rotation rejects
  // the delivery, which shows that Ferry signs with the new current key.
  const initialCurrentOnly = receiverFor({ current: initialKeys.current, next: initialKeys.current });
  await assert.rejects(initialCurrentOnly.verify(request), { name: "SignatureError" });
});
