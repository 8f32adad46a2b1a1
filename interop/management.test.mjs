// Drives Ferry's management routes through the official @upstash/qstash SDK
// (2.12.0): callbacks and failure callbacks, messages.get and
// messages.cancel, the dead-letter queue (dlq.listMessages, dlq.retry,
// dlq.delete) and logs. Every delivery, callbacks included, is verified
// with the SDK's Receiver.
//
// The tests run one after another against one server and rely on it: a
// cancel of all messages expects no other message to be waiting.
//
// Environment: the same as publish.test.mjs. interop_test.go starts a Ferry
// server for this file alone and runs it with `node --test`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { Client, Receiver } from "@upstash/qstash";

import {
  allowOnlyLoopback,
  assertVerified,
  pollUntil,
  readFerryConfig,
  sleep,
  startDestination,
} from "./destination.mjs";

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

// How long a delivery, a dead-letter entry or an event may take to show up.
const arrivalTimeoutMs = 10_000;

let destination;

before(async () => {
  destination = await startDestination(receiver);
});

after(async () => {
  await destination?.close();
});

/** Returns the base64 form of text's UTF-8 bytes. */
function base64(text) {
  return Buffer.from(text, "utf8").toString("base64");
}

/** Waits until the dead-letter queue contains count entries for url, and returns them. */
function waitForDLQ(url, count) {
  return pollUntil(`${count} dead-letter entries for ${url}`, arrivalTimeoutMs, async (note) => {
    const { messages } = await client.dlq.listMessages({ filter: { url } });
    note(`${messages.length} entries`);
    return messages.length >= count ? messages : undefined;
  });
}

/**
 * Waits until the events of messageId include state, and returns all its
 * events oldest first. Ferry lists events newest first.
 */
function waitForState(messageId, state) {
  return pollUntil(`event ${state} of message ${messageId}`, arrivalTimeoutMs, async (note) => {
    const { logs } = await client.logs({ messageIds: [messageId] });
    const oldestFirst = logs.toReversed();
    note(oldestFirst.map((log) => log.state));
    return oldestFirst.some((log) => log.state === state) ? oldestFirst : undefined;
  });
}

test("callback and failure callback of a failed message", async () => {
  const route = destination.route("/callbacks/target", () => 500);
  const callbackRoute = destination.route("/callbacks/callback?kind=callback");
  const failureRoute = destination.route("/callbacks/failure?kind=failure");
  const payload = { callbacks: true };

  const { messageId } = await client.publishJSON({
    url: route.url,
    body: payload,
    retries: 0,
    callback: callbackRoute.url,
    failureCallback: failureRoute.url,
  });

  const [callback] = await callbackRoute.waitFor(1, arrivalTimeoutMs);
  assertVerified(callback);
  assert.equal(callback.method, "POST");
  assert.notEqual(callback.headers["upstash-message-id"], messageId, "the callback reused the source message id");
  const callbackBody = JSON.parse(callback.body);
  assert.equal(callbackBody.status, 500);
  assert.equal(callbackBody.sourceMessageId, messageId);
  assert.equal(callbackBody.body, base64("status 500"));
  assert.equal(callbackBody.url, route.url);
  assert.equal(callbackBody.method, "POST");
  assert.equal(callbackBody.retried, 0);
  assert.equal(callbackBody.maxRetries, 0);
  assert.equal(callbackBody.sourceBody, base64(JSON.stringify(payload)));
  assert.equal(callbackBody.dlqId, undefined, "the callback of an attempt carries a dlqId");

  const [failure] = await failureRoute.waitFor(1, arrivalTimeoutMs);
  assertVerified(failure);
  assert.equal(failure.method, "POST");
  const failureBody = JSON.parse(failure.body);
  assert.equal(failureBody.status, 500);
  assert.equal(failureBody.sourceMessageId, messageId);
  assert.equal(failureBody.body, base64("status 500"));
  assert.equal(typeof failureBody.dlqId, "string");
  assert.ok(failureBody.dlqId.length > 0, "the failure callback has an empty dlqId");

  const { messages } = await client.dlq.listMessages({ dlqIds: [failureBody.dlqId] });
  assert.equal(messages.length, 1, `dlqId ${failureBody.dlqId} of the failure callback is not in the dead-letter queue`);
  assert.equal(messages[0].messageId, messageId);

  // Gives a duplicate callback or an unexpected retry 1 s to arrive.
  await sleep(1000);
  assert.equal(route.deliveries.length, 1, "a message with retries: 0 was retried");
  assert.equal(callbackRoute.deliveries.length, 1, "the callback arrived more than once");
  assert.equal(failureRoute.deliveries.length, 1, "the failure callback arrived more than once");
});

test("messages.get of a delayed message", async () => {
  const route = destination.route("/get/delayed");
  const publishStart = Date.now();
  const { messageId } = await client.publishJSON({
    url: route.url,
    body: { get: true },
    delay: 60,
    retries: 2,
    headers: { "X-Tenant": "acme" },
  });
  const publishEnd = Date.now();

  const message = await client.messages.get(messageId);
  assert.equal(message.messageId, messageId);
  assert.equal(message.url, route.url);
  assert.equal(message.method, "POST");
  assert.deepEqual(message.header, { "Content-Type": ["application/json"], "X-Tenant": ["acme"] });
  assert.equal(message.body, JSON.stringify({ get: true }));
  assert.equal(message.maxRetries, 2);
  assert.ok(
    message.createdAt >= publishStart && message.createdAt <= publishEnd,
    `createdAt ${message.createdAt} is not between the publish's start ${publishStart} and end ${publishEnd}`,
  );
  assert.equal(message.notBefore, message.createdAt + 60_000, "notBefore is not createdAt plus the 60 s delay");

  assert.deepEqual(await client.messages.cancel(messageId), { cancelled: 1 });
});

test("messages.cancel single, many and all", async () => {
  const single = destination.route("/cancel/single");
  const many = [destination.route("/cancel/many-1"), destination.route("/cancel/many-2")];
  const uncancelled = destination.route("/cancel/uncancelled");
  const all = [destination.route("/cancel/all-1"), destination.route("/cancel/all-2")];
  const publishDelayed = async (route) => (await client.publishJSON({ url: route.url, body: {}, delay: 2 })).messageId;

  const singleId = await publishDelayed(single);
  assert.deepEqual(await client.messages.cancel(singleId), { cancelled: 1 });
  await assert.rejects(client.messages.cancel(singleId), { name: "QstashError", status: 404 });

  const manyIds = [await publishDelayed(many[0]), await publishDelayed(many[1])];
  const uncancelledId = await publishDelayed(uncancelled);
  assert.deepEqual(await client.messages.cancel(manyIds), { cancelled: 2 });

  // A cancel by ids leaves other messages alone.
  const [uncancelledDelivery] = await uncancelled.waitFor(1, arrivalTimeoutMs);
  assertVerified(uncancelledDelivery);
  assert.equal(uncancelledDelivery.headers["upstash-message-id"], uncancelledId);

  await publishDelayed(all[0]);
  await publishDelayed(all[1]);
  assert.deepEqual(await client.messages.cancel({ all: true }), { cancelled: 2 });

  // A control message with the same delay, published after every
  // cancelled one, is due last. By the time it arrives, a cancelled message
  // that was still scheduled would have arrived too.
  const control = destination.route("/cancel/control");
  await publishDelayed(control);
  await control.waitFor(1, arrivalTimeoutMs);
  await sleep(500);
  for (const route of [single, ...many, ...all]) {
    assert.equal(route.deliveries.length, 0, `cancelled message to ${route.url} was delivered`);
  }
});

test("dlq.listMessages filters and pages", async () => {
  const route = destination.route("/dlq/list", () => 500);
  const other = destination.route("/dlq/list-other", () => 503);
  const publishedIds = new Set();
  for (let i = 0; i < 5; i++) {
    const { messageId } = await client.publishJSON({ url: route.url, body: { entry: i }, retries: 0 });
    publishedIds.add(messageId);
  }
  const { messageId: otherId } = await client.publishJSON({ url: other.url, body: { other: true }, retries: 0 });
  await waitForDLQ(route.url, 5);
  await waitForDLQ(other.url, 1);

  const pages = [];
  let cursor;
  do {
    const page = await client.dlq.listMessages({ filter: { url: route.url }, count: 2, cursor });
    pages.push(page);
    cursor = page.cursor;
    assert.ok(pages.length <= 3, `more than 3 pages for 5 entries with count 2, cursor ${JSON.stringify(cursor)}`);
  } while (cursor);

  assert.deepEqual(
    pages.map((page) => page.messages.length),
    [2, 2, 1],
  );
  for (const page of pages.slice(0, 2)) {
    assert.equal(typeof page.cursor, "string");
    assert.ok(page.cursor.length > 0, "a page before the last has an empty cursor");
  }
  assert.equal(pages[2].cursor, undefined, "the last page has a cursor");

  const entries = pages.flatMap((page) => page.messages);
  assert.deepEqual(new Set(entries.map((entry) => entry.messageId)), publishedIds);
  assert.equal(new Set(entries.map((entry) => entry.dlqId)).size, 5, "dlqIds repeat across pages");
  for (const entry of entries) {
    assert.equal(entry.url, route.url);
    assert.equal(entry.responseStatus, 500);
    assert.equal(entry.responseBody, "status 500");
    assert.equal(typeof entry.dlqId, "string");
  }

  const byStatus = await client.dlq.listMessages({ filter: { responseStatus: 503 } });
  assert.deepEqual(
    byStatus.messages.map((entry) => entry.messageId),
    [otherId],
  );
  assert.equal(byStatus.cursor, undefined);
});

test("dlq.retry delivers the message again", async () => {
  // The first attempt fails and moves the message to the dead-letter
  // queue, and the retry from there gets 200.
  const route = destination.route("/dlq/retry", (attempt) => (attempt === 1 ? 500 : 200));
  const { messageId } = await client.publishJSON({ url: route.url, body: { retry: true }, retries: 0 });
  const [entry] = await waitForDLQ(route.url, 1);
  assert.equal(entry.messageId, messageId);

  const result = await client.dlq.retry(entry.dlqId);
  assert.equal(result.responses.length, 1);
  const retriedId = result.responses[0].messageId;
  assert.equal(typeof retriedId, "string");
  assert.equal(result.cursor, undefined);

  const deliveries = await route.waitFor(2, arrivalTimeoutMs);
  assertVerified(deliveries[1]);
  assert.equal(deliveries[1].headers["upstash-message-id"], retriedId);
  assert.equal(deliveries[1].body, JSON.stringify({ retry: true }));

  const remaining = await client.dlq.listMessages({ filter: { url: route.url } });
  assert.deepEqual(remaining.messages, [], "the retried entry is still in the dead-letter queue");

  // The SDK retries by id through the bulk route, which skips ids that are
  // no longer in the dead-letter queue.
  const again = await client.dlq.retry(entry.dlqId);
  assert.deepEqual(again.responses, [], "a second retry of the same dlqId made a new message");
});

test("dlq.delete removes an entry once", async () => {
  const route = destination.route("/dlq/delete", () => 500);
  await client.publishJSON({ url: route.url, body: { remove: true }, retries: 0 });
  const [entry] = await waitForDLQ(route.url, 1);

  assert.deepEqual(await client.dlq.delete(entry.dlqId), { deleted: 1 });
  const remaining = await client.dlq.listMessages({ filter: { url: route.url } });
  assert.deepEqual(remaining.messages, [], "the deleted entry is still in the dead-letter queue");

  await assert.rejects(client.dlq.delete(entry.dlqId), { name: "QstashError", status: 404 });
});

test("logs of a failed message", async () => {
  const route = destination.route("/logs/failed", () => 500);
  const { messageId } = await client.publishJSON({ url: route.url, body: { logs: true }, retries: 0 });

  const events = await waitForState(messageId, "FAILED");
  assert.deepEqual(
    events.map((event) => event.state),
    ["CREATED", "ACTIVE", "ERROR", "FAILED"],
  );
  for (const event of events) {
    assert.equal(event.messageId, messageId);
    assert.equal(event.url, route.url);
    assert.equal(typeof event.time, "number");
  }
  for (let i = 1; i < events.length; i++) {
    assert.ok(events[i].time >= events[i - 1].time, `event ${events[i].state} is older than ${events[i - 1].state}`);
  }

  for (const state of ["ERROR", "FAILED"]) {
    const { logs, cursor } = await client.logs({ filter: { messageId, state } });
    assert.deepEqual(
      logs.map((log) => log.state),
      [state],
      `logs filtered by state ${state}`,
    );
    assert.equal(cursor, undefined);
  }
});
