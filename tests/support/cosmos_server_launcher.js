#!/usr/bin/env node
// Starts @vercel/cosmosdb-server (installed by `npm ci` from the repository's package-lock.json)
// over HTTPS on a free loopback port for the test run, and prints one line to stdout:
//   {"ready": true, "host": "127.0.0.1", "port": 12345}
// It exits when stdin closes (the test run ended or died) or on SIGTERM/SIGINT.
//
// Fidelity fixes, documented in docs/cosmos-test-server.md: the server answers a point read of a
// missing item with 500 ("Cannot read properties of undefined") instead of 404 NotFound (the
// wrapper below answers 404 as Cosmos DB does), and its change feed is fake (cosmos_change_feed.js
// gives it a real one). Everything else is the server as published.
"use strict";

const path = require("path");

for (const dependency of ["@vercel/cosmosdb-server", "murmurhash3js-revisited"]) {
  try {
    require.resolve(`${dependency}/package.json`);
  } catch (err) {
    process.stderr.write(`${dependency} is not installed: run \`npm ci\` in the repository root\n`);
    process.exit(3);
  }
}
const packageDir = path.dirname(require.resolve("@vercel/cosmosdb-server/package.json"));

// Patch the handler modules before the router (lib/routes.js) captures them.
require("./cosmos_change_feed").install(packageDir);

const readDocument = require(path.join(packageDir, "lib", "handler", "read-document.js"));
const { parsePartitionKey } = require(path.join(packageDir, "lib", "utils", "get-partition-from-header.js"));
const originalReadDocument = readDocument.default;
readDocument.default = (account, req, res, params) => {
  const collection = account.database(params.dbId).collection(params.collId);
  if (collection.read()) {
    const header = req.headers["x-ms-documentdb-partitionkey"];
    let partitionKey;
    try {
      partitionKey = parsePartitionKey(Array.isArray(header) ? header[0] : header, params.docId);
    } catch (err) {
      partitionKey = undefined;
    }
    if (partitionKey !== undefined && !collection.document(params.docId, partitionKey).read()) {
      res.statusCode = 404;
      return {
        code: "NotFound",
        message: "Entity with the specified id does not exist in the system."
      };
    }
  }
  return originalReadDocument(account, req, res, params);
};

const { createHttpsServer } = require(packageDir);

const host = process.argv[2] || "127.0.0.1";
const port = parseInt(process.argv[3] || "0", 10);

const server = createHttpsServer({ keepAlive: true }).listen(port, host, () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ ready: true, host, port: address.port })}\n`);
});
server.on("error", err => {
  process.stderr.write(`cosmosdb-server failed: ${err.stack || err}\n`);
  process.exit(1);
});

const stop = () => {
  server.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();
