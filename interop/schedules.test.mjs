// Drives Ferry's schedules through the official @upstash/qstash SDK
// (2.12.0): client.schedules.create, get, list, pause, resume and delete.
// Every delivery a schedule triggers is verified with the SDK's Receiver.
//
// interop_test.go starts the server with `--schedule-tick 1s`, which makes
// one cron minute last one second, so `* * * * *` fires every second.
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

// How long the deliveries of a few ticks may take to show up, at one tick
// per second.
const arrivalTimeoutMs = 10_000;

// A cron expression that fires once a year, on the first day of the month
// six months after the current one (UTC). With one-second minutes Ferry's
// cron clock runs 60 times faster than real time from the server's start.
// A test run of a few minutes therefore moves it a few hours ahead at most,
// so schedules with this expression do not fire.
const yearlyCron = `0 0 1 ${((new Date().getUTCMonth() + 6) % 12) + 1} *`;

let destination;

before(async () => {
  destination = await startDestination(receiver);
});

after(async () => {
  await destination?.close();
});

/**
 * Waits until route has received no delivery for quietMs, so that messages
 * a tick stored before a pause or delete have arrived, and returns the
 * number of deliveries.
 */
async function waitForQuiet(route, quietMs) {
  return pollUntil(`no delivery to ${route.url} for ${quietMs} ms`, arrivalTimeoutMs, (note) => {
    const last = route.deliveries.at(-1);
    note(`${route.deliveries.length} deliveries, the last at ${last?.receivedAt}`);
    if (last === undefined || Date.now() - last.receivedAt >= quietMs) {
      return route.deliveries.length;
    }
    return undefined;
  });
}

/** Fails unless route receives no delivery during the next ms milliseconds. */
async function assertNoDeliveriesFor(route, ms, reason) {
  const countBefore = route.deliveries.length;
  await sleep(ms);
  assert.equal(
    route.deliveries.length,
    countBefore,
    `${route.deliveries.length - countBefore} deliveries to ${route.url} arrived within ${ms} ms ${reason}`,
  );
}

test("create with custom id, get and list", async () => {
  const route = destination.route("/created?source=cron");
  const createdAfter = Date.now();
  // fetch's Headers strips the surrounding spaces before the request is
  // sent, so this checks the round trip of the cron value only.
  const created = await client.schedules.create({
    destination: route.url,
    cron: `  ${yearlyCron}  `,
    scheduleId: "sdk-created",
    body: JSON.stringify({ report: "weekly" }),
    method: "PUT",
    retries: 2,
    headers: { "X-Tenant": "acme" },
  });
  const createdBefore = Date.now();
  assert.deepEqual(created, { scheduleId: "sdk-created" });

  const got = await client.schedules.get("sdk-created");
  assert.equal(got.scheduleId, "sdk-created");
  assert.equal(got.cron, yearlyCron);
  assert.equal(got.destination, route.url);
  assert.equal(got.method, "PUT");
  assert.deepEqual(got.header, { "Content-Type": ["application/json"], "X-Tenant": ["acme"] });
  assert.equal(got.body, JSON.stringify({ report: "weekly" }));
  assert.equal(got.bodyBase64, undefined);
  assert.equal(got.retries, 2);
  assert.equal(got.isPaused, false);
  assert.ok(
    got.createdAt >= createdAfter - 1000 && got.createdAt <= createdBefore + 1000,
    `createdAt ${got.createdAt} is outside the create call (${createdAfter} to ${createdBefore})`,
  );
  assert.equal(typeof got.nextScheduleTime, "number");
  assert.ok(got.nextScheduleTime > got.createdAt, `nextScheduleTime ${got.nextScheduleTime} is not after createdAt`);
  assert.equal(got.lastScheduleTime, undefined, "a schedule that never fired has a lastScheduleTime");

  const listed = (await client.schedules.list()).filter((s) => s.scheduleId === "sdk-created");
  assert.equal(listed.length, 1, `list returned ${listed.length} schedules with id sdk-created`);
  assert.deepEqual(listed[0], got);
});

test("create with same id replaces schedule", async () => {
  const first = destination.route("/replaced/first");
  const second = destination.route("/replaced/second");
  await client.schedules.create({
    destination: first.url,
    cron: yearlyCron,
    scheduleId: "sdk-replaced",
    body: "first body",
    headers: { "Content-Type": "text/plain", "X-Version": "1" },
    retries: 1,
  });
  const original = await client.schedules.get("sdk-replaced");
  assert.equal(original.body, "first body");

  const replaced = await client.schedules.create({
    destination: second.url,
    cron: yearlyCron,
    scheduleId: "sdk-replaced",
  });
  assert.deepEqual(replaced, { scheduleId: "sdk-replaced" });

  const got = await client.schedules.get("sdk-replaced");
  assert.equal(got.destination, second.url);
  assert.equal(got.body, undefined);
  assert.equal(got.bodyBase64, undefined);
  assert.equal(got.method, "POST");
  // The SDK sets Content-Type: application/json when the request has none.
  assert.deepEqual(got.header, { "Content-Type": ["application/json"] });
  assert.equal(typeof got.retries, "number");
  assert.ok(got.createdAt >= original.createdAt, `createdAt ${got.createdAt} is before the original ${original.createdAt}`);

  const listed = (await client.schedules.list()).filter((s) => s.scheduleId === "sdk-replaced");
  assert.equal(listed.length, 1, `list returned ${listed.length} schedules with id sdk-replaced`);
  assert.equal(listed[0].destination, second.url);
});

test("every-minute schedule delivers signed requests", async () => {
  const route = destination.route("/tick?source=cron");
  const payload = { task: "cleanup" };
  await client.schedules.create({
    destination: route.url,
    cron: "* * * * *",
    scheduleId: "sdk-every-minute",
    body: JSON.stringify(payload),
    method: "PUT",
    headers: { "X-Tenant": "acme" },
  });

  const deliveries = (await route.waitFor(2, arrivalTimeoutMs)).slice(0, 2);
  for (const delivery of deliveries) {
    assertVerified(delivery);
    assert.equal(delivery.method, "PUT");
    assert.equal(delivery.requestURI, "/tick?source=cron");
    assert.equal(delivery.body, JSON.stringify(payload));
    assert.equal(delivery.headers["upstash-schedule-id"], "sdk-every-minute");
    assert.equal(delivery.headers["content-type"], "application/json");
    assert.equal(delivery.headers["x-tenant"], "acme");
  }
  const messageIds = deliveries.map((d) => d.headers["upstash-message-id"]);
  assert.notEqual(messageIds[0], messageIds[1], "two ticks delivered the same message id");

  const message = await client.messages.get(messageIds[0]);
  assert.equal(message.scheduleId, "sdk-every-minute");
  assert.equal(message.url, route.url);

  const got = await client.schedules.get("sdk-every-minute");
  assert.equal(typeof got.lastScheduleTime, "number");
  const states = Object.entries(got.lastScheduleStates ?? {});
  assert.ok(states.length > 0, `lastScheduleStates is empty after ${route.deliveries.length} deliveries`);
  for (const [messageId, state] of states) {
    assert.ok(["IN_PROGRESS", "SUCCESS", "FAIL"].includes(state), `message ${messageId} has state ${state}`);
  }

  await client.schedules.delete("sdk-every-minute");
});

test("pause stops and resume restarts deliveries", async () => {
  const route = destination.route("/paused");
  await client.schedules.create({ destination: route.url, cron: "* * * * *", scheduleId: "sdk-paused" });
  await route.waitFor(1, arrivalTimeoutMs);

  await client.schedules.pause({ schedule: "sdk-paused" });
  const paused = await client.schedules.get("sdk-paused");
  assert.equal(paused.isPaused, true);
  assert.equal(paused.nextScheduleTime, undefined, "a paused schedule has a nextScheduleTime");
  assert.equal((await client.schedules.list()).find((s) => s.scheduleId === "sdk-paused")?.isPaused, true);

  // A tick that fired just before the pause may still be delivered.
  const countAtPause = await waitForQuiet(route, 1500);
  await assertNoDeliveriesFor(route, 3500, "while the schedule was paused");

  await client.schedules.resume({ schedule: "sdk-paused" });
  const resumed = await client.schedules.get("sdk-paused");
  assert.equal(resumed.isPaused, false);
  assert.equal(typeof resumed.nextScheduleTime, "number");

  const deliveries = await route.waitFor(countAtPause + 1, arrivalTimeoutMs);
  assertVerified(deliveries[countAtPause]);
  assert.equal(deliveries[countAtPause].headers["upstash-schedule-id"], "sdk-paused");

  await client.schedules.delete("sdk-paused");
});

test("delete removes schedule and stops deliveries", async () => {
  const route = destination.route("/deleted");
  await client.schedules.create({ destination: route.url, cron: "* * * * *", scheduleId: "sdk-deleted" });
  await route.waitFor(1, arrivalTimeoutMs);

  await client.schedules.delete("sdk-deleted");
  await assert.rejects(client.schedules.get("sdk-deleted"), /schedule sdk-deleted not found/);
  const ids = (await client.schedules.list()).map((s) => s.scheduleId);
  assert.ok(!ids.includes("sdk-deleted"), `schedule list ${ids} still contains sdk-deleted`);

  // A delete of a missing schedule succeeds, so a retried delete does not fail.
  await client.schedules.delete("sdk-deleted");
  await assert.rejects(client.schedules.pause({ schedule: "sdk-deleted" }), /schedule sdk-deleted not found/);

  await waitForQuiet(route, 1500);
  await assertNoDeliveriesFor(route, 3000, "after the schedule was deleted");
});
