// Helpers shared by the interop tests: a loopback-only network guard, the
// Ferry settings from the environment, bounded polling, and a destination
// HTTP server that verifies every delivery with the SDK's Receiver.

import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import { syncBuiltinESMExports } from "node:module";

const loopbackHosts = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

/** Reports whether rawUrl points at this machine's loopback interface. */
export function isLoopbackURL(rawUrl) {
  try {
    return loopbackHosts.has(new URL(rawUrl).hostname);
  } catch {
    return false;
  }
}

/**
 * Makes fetch and the http and https modules throw for any host other than
 * loopback. The SDK's dev mode downloads a server binary from the internet
 * when its probe of GET /v2/keys fails, and these tests must never send
 * traffic off this machine.
 */
export function allowOnlyLoopback() {
  const guard = (name, send) =>
    function guarded(target, ...rest) {
      const rawUrl =
        typeof target === "string" || target instanceof URL
          ? String(target)
          : target instanceof Request
            ? target.url
            : `http://${target?.hostname ?? target?.host ?? "localhost"}/`;
      if (!isLoopbackURL(rawUrl)) {
        throw new Error(`${name} to ${rawUrl} blocked: the interop tests only send traffic to 127.0.0.1`);
      }
      return send.call(this, target, ...rest);
    };

  globalThis.fetch = guard("fetch", globalThis.fetch);
  http.get = guard("http.get", http.get);
  http.request = guard("http.request", http.request);
  https.get = guard("https.get", https.get);
  https.request = guard("https.request", https.request);
  // Updates the named exports of node:http and node:https, which the SDK
  // reaches through a dynamic import.
  syncBuiltinESMExports();
}

/** Returns a promise that resolves after ms milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Reads the Ferry server's URL, token and signing keys from the environment
 * that interop_test.go sets, and throws when one is missing or the URL is
 * not on loopback.
 */
export function readFerryConfig() {
  const names = ["FERRY_URL", "FERRY_TOKEN", "FERRY_CURRENT_SIGNING_KEY", "FERRY_NEXT_SIGNING_KEY"];
  const missing = names.filter((name) => !process.env[name]);
  if (missing.length > 0) {
    throw new Error(`missing environment variables ${missing.join(", ")}: run these tests through go test ./interop/`);
  }
  if (!isLoopbackURL(process.env.FERRY_URL)) {
    throw new Error(`invalid FERRY_URL ${process.env.FERRY_URL}: the interop tests only talk to 127.0.0.1 or localhost`);
  }
  return {
    url: process.env.FERRY_URL,
    token: process.env.FERRY_TOKEN,
    currentSigningKey: process.env.FERRY_CURRENT_SIGNING_KEY,
    nextSigningKey: process.env.FERRY_NEXT_SIGNING_KEY,
  };
}

/**
 * Calls check every 50 ms until it returns a value other than undefined,
 * and returns that value. check receives a note function to record what it
 * observed, and the error thrown after timeoutMs contains description and
 * the last recorded observation.
 */
export async function pollUntil(description, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  let lastNote = "nothing observed";
  const note = (value) => {
    lastNote = typeof value === "string" ? value : JSON.stringify(value);
  };
  for (;;) {
    const value = await check(note);
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}, last observed: ${lastNote}`);
    }
    await sleep(50);
  }
}

/** Fails with the Receiver's error when a delivery did not verify. */
export function assertVerified(delivery) {
  assert.equal(
    delivery.verified,
    true,
    `signature of delivery ${delivery.requestURI} did not verify: ${delivery.verifyError?.message}`,
  );
}

/**
 * Starts an HTTP server on 127.0.0.1 with a random port. Each route serves
 * one path, verifies every delivery with receiver against the exact URL the
 * test published to, and records it.
 */
export async function startDestination(receiver) {
  const routes = new Map();

  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) {
      chunks.push(chunk);
    }
    const body = Buffer.concat(chunks).toString("utf8");
    const route = routes.get(new URL(req.url, "http://127.0.0.1").pathname);
    if (!route) {
      res.writeHead(404).end("no route for this path");
      return;
    }

    const delivery = {
      receivedAt: Date.now(),
      method: req.method,
      requestURI: req.url,
      headers: req.headers,
      body,
      signature: req.headers["upstash-signature"],
      verified: false,
      verifyError: undefined,
    };
    try {
      delivery.verified = await receiver.verify({ signature: delivery.signature, body, url: route.url });
    } catch (error) {
      delivery.verifyError = error;
    }
    route.deliveries.push(delivery);

    const status = route.statusFor(route.deliveries.length);
    res.writeHead(status, { "Content-Type": "text/plain" }).end(`status ${status}`);
  });

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const base = `http://127.0.0.1:${server.address().port}`;

  return {
    /**
     * Registers pathAndQuery and returns its route. statusFor receives the
     * 1-based attempt number and returns the HTTP status to respond with.
     */
    route(pathAndQuery, statusFor = () => 200) {
      const url = base + pathAndQuery;
      const pathname = new URL(url).pathname;
      if (routes.has(pathname)) {
        throw new Error(`route ${pathname} is already registered`);
      }
      const route = {
        url,
        deliveries: [],
        statusFor,
        /** Waits until at least count deliveries arrived. */
        async waitFor(count, timeoutMs) {
          const deadline = Date.now() + timeoutMs;
          while (route.deliveries.length < count) {
            if (Date.now() > deadline) {
              throw new Error(
                `expected ${count} deliveries to ${url} within ${timeoutMs} ms, got ${route.deliveries.length}`,
              );
            }
            await sleep(20);
          }
          return route.deliveries;
        },
      };
      routes.set(pathname, route);
      return route;
    },

    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
