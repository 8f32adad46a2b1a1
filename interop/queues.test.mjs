// Drives Ferry's queues, URL groups, batch and flow control through the
// official @upstash/qstash SDK (2.12.0): client.queue(...), urlGroups,
// batchJSON, the flowControl option of publishJSON and client.flowControl.
// Every delivery is verified with the SDK's Receiver.
//
// Environment: the same as publish.test.mjs. interop_test.go starts a Ferry
// server for this file alone and runs it with `node --test`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

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

// How long a delivery may take to show up.
const arrivalTimeoutMs = 10_000;

let destination;

before(async () => {
  destination = await startDestination(receiver);
});

after(async () => {
  await destination?.close();
});

test("queue upsert, get, list, pause, resume and delete", async () => {
  const queue = client.queue({ queueName: "sdk-queue" });
  await queue.upsert({ parallelism: 2 });

  const got = await queue.get();
  assert.equal(got.name, "sdk-queue");
  assert.equal(got.parallelism, 2);
  assert.equal(got.paused, false);
  assert.equal(got.lag, 0);
  assert.equal(typeof got.createdAt, "number");
  assert.equal(typeof got.updatedAt, "number");

  await queue.pause();
  assert.equal((await queue.get()).paused, true);
  await queue.resume();
  assert.equal((await queue.get()).paused, false);

  const names = (await queue.list()).map((q) => q.name);
  assert.ok(names.includes("sdk-queue"), `queue list ${names} lacks sdk-queue`);

  await queue.delete();
  await assert.rejects(queue.get(), /queue sdk-queue not found/);
});

test("enqueueJSON delivers in order with parallelism 1", async () => {
  const route = destination.route("/queue/ordered");
  const queue = client.queue({ queueName: "sdk-ordered" });
  const ids = [];
  for (let i = 0; i < 5; i++) {
    const { messageId } = await queue.enqueueJSON({ url: route.url, body: { n: i } });
    ids.push(messageId);
  }

  const deliveries = await route.waitFor(5, arrivalTimeoutMs);
  deliveries.forEach(assertVerified);
  assert.deepEqual(
    deliveries.map((d) => d.headers["upstash-message-id"]),
    ids,
  );
  assert.deepEqual(
    deliveries.map((d) => JSON.parse(d.body).n),
    [0, 1, 2, 3, 4],
  );

  const message = await client.messages.get(ids[0]);
  assert.equal(message.queueName, "sdk-ordered");
});

test("a queue keeps its order when the head fails once", async () => {
  // The first delivery fails with 500; the head's retry must arrive before
  // the second message, because with parallelism 1 the queue waits until the
  // head is delivered.
  const route = destination.route("/queue/fails-once", (attempt) => (attempt === 1 ? 500 : 200));
  const queue = client.queue({ queueName: "sdk-fails-once" });
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const { messageId } = await queue.enqueueJSON({
      url: route.url,
      body: { n: i },
      retries: 2,
      retryDelay: "100",
    });
    ids.push(messageId);
  }

  const deliveries = await route.waitFor(4, arrivalTimeoutMs);
  deliveries.forEach(assertVerified);
  assert.deepEqual(
    deliveries.map((d) => d.headers["upstash-message-id"]),
    [ids[0], ids[0], ids[1], ids[2]],
  );
  assert.deepEqual(
    deliveries.map((d) => d.headers["upstash-retried"]),
    ["0", "1", "0", "0"],
  );
});

test("enqueue with a delay is rejected", async () => {
  const route = destination.route("/queue/delayed");
  await assert.rejects(
    client.queue({ queueName: "sdk-delayed" }).enqueueJSON({ url: route.url, body: {}, delay: 10 }),
    /Upstash-Delay is not supported for queue messages/,
  );
});

test("URL group endpoints and fan-out", async () => {
  const first = destination.route("/group/first");
  const second = destination.route("/group/second");
  await client.urlGroups.addEndpoints({
    name: "sdk-group",
    endpoints: [{ name: "first", url: first.url }, { url: second.url }],
  });

  const group = await client.urlGroups.get("sdk-group");
  assert.equal(group.name, "sdk-group");
  assert.deepEqual(group.endpoints, [{ name: "first", url: first.url }, { url: second.url }]);
  assert.ok((await client.urlGroups.list()).some((g) => g.name === "sdk-group"));

  const responses = await client.publishJSON({ urlGroup: "sdk-group", body: { fan: "out" } });
  assert.ok(Array.isArray(responses), "a publish to a URL group did not return an array");
  assert.deepEqual(
    responses.map((r) => r.url),
    [first.url, second.url],
  );

  for (const [i, route] of [first, second].entries()) {
    const [delivery] = await route.waitFor(1, arrivalTimeoutMs);
    assertVerified(delivery);
    assert.equal(delivery.headers["upstash-message-id"], responses[i].messageId);
    assert.equal(delivery.headers["upstash-topic-name"], "sdk-group");
    assert.deepEqual(JSON.parse(delivery.body), { fan: "out" });
  }

  await client.urlGroups.removeEndpoints({ name: "sdk-group", endpoints: [{ name: "first" }] });
  assert.deepEqual((await client.urlGroups.get("sdk-group")).endpoints, [{ url: second.url }]);
  await client.urlGroups.delete("sdk-group");
  await assert.rejects(client.urlGroups.get("sdk-group"), /topic sdk-group not found/);
});

test("batchJSON with a URL, a queue and a URL group", async () => {
  const plain = destination.route("/batch/plain");
  const queued = destination.route("/batch/queued");
  const grouped = destination.route("/batch/grouped");
  await client.urlGroups.addEndpoints({ name: "sdk-batch-group", endpoints: [{ url: grouped.url }] });

  const responses = await client.batchJSON([
    { url: plain.url, body: { item: "plain" }, headers: { "X-Item": "plain" } },
    { url: queued.url, body: { item: "queued" }, queueName: "sdk-batch-queue" },
    { urlGroup: "sdk-batch-group", body: { item: "grouped" } },
  ]);
  assert.equal(responses.length, 3);
  assert.equal(typeof responses[0].messageId, "string");
  assert.equal(typeof responses[1].messageId, "string");
  assert.ok(Array.isArray(responses[2]), "the URL group item did not return an array");

  for (const [route, item] of [
    [plain, "plain"],
    [queued, "queued"],
    [grouped, "grouped"],
  ]) {
    const [delivery] = await route.waitFor(1, arrivalTimeoutMs);
    assertVerified(delivery);
    assert.deepEqual(JSON.parse(delivery.body), { item });
  }
  assert.equal(plain.deliveries[0].headers["x-item"], "plain");
  assert.equal((await client.messages.get(responses[1].messageId)).queueName, "sdk-batch-queue");
});

test("flow control limits and the flowControl API", async () => {
  const route = destination.route("/flow/limited");
  const flowControl = { key: "sdk-flow", parallelism: 1, rate: 10, period: "1m" };
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const { messageId } = await client.publishJSON({ url: route.url, body: { n: i }, flowControl });
    ids.push(messageId);
  }
  const deliveries = await route.waitFor(3, arrivalTimeoutMs);
  deliveries.forEach(assertVerified);

  const message = await client.messages.get(ids[0]);
  assert.equal(message.flowControlKey, "sdk-flow");
  assert.equal(message.parallelism, 1);
  assert.equal(message.rate, 10);
  assert.equal(message.period, 60);

  let info = await client.flowControl.get("sdk-flow");
  assert.equal(info.flowControlKey, "sdk-flow");
  assert.equal(info.parallelismMax, 1);
  assert.equal(info.rateMax, 10);
  assert.equal(info.ratePeriod, 60);
  assert.equal(info.rateCount, 3);
  assert.equal(info.waitListSize, 0);
  assert.equal(info.isPaused, false);

  await client.flowControl.pause("sdk-flow");
  assert.equal((await client.flowControl.get("sdk-flow")).isPaused, true);
  const { messageId: heldId } = await client.publishJSON({ url: route.url, body: { n: 3 }, flowControl });
  await sleep(500);
  assert.equal(route.deliveries.length, 3, "a message of a paused key was delivered");
  await client.flowControl.resume("sdk-flow");
  const [, , , held] = await route.waitFor(4, arrivalTimeoutMs);
  assert.equal(held.headers["upstash-message-id"], heldId);

  await client.flowControl.pin("sdk-flow", { parallelism: 3, rate: 20, period: 120 });
  info = await client.flowControl.get("sdk-flow");
  assert.equal(info.isPinnedParallelism, true);
  assert.equal(info.isPinnedRate, true);
  assert.equal(info.parallelismMax, 3);
  assert.equal(info.rateMax, 20);
  assert.equal(info.ratePeriod, 120);
  assert.equal(info.rateCount, 0);

  await client.flowControl.unpin("sdk-flow", { parallelism: true, rate: true });
  await client.flowControl.resetRate("sdk-flow");
  info = await client.flowControl.get("sdk-flow");
  assert.equal(info.isPinnedParallelism, false);
  assert.equal(info.isPinnedRate, false);

  const global = await client.flowControl.getGlobalParallelism();
  assert.equal(typeof global.parallelismMax, "number");
  assert.equal(typeof global.parallelismCount, "number");
});
