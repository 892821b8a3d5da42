// A real incremental change feed (latest-version mode) for @vercel/cosmosdb-server, whose own
// feed is fake (a continuation always gets 304, a read from the beginning the first page only).
// Installed by cosmos_server_launcher.js before the server's router captures its handlers.
//
// What it adds (docs/cosmos-test-server.md describes it for the tests' readers):
// - Every create, replace and upsert of a document takes the container's next logical sequence
//   number (LSN): the document gets `_lsn` (kept off plain reads, as Cosmos DB does: only feed
//   responses carry it) and an `_etag` derived from it. A delete advances the sequence too.
// - A change-feed request (`A-IM: Incremental feed` on GET .../docs) answers the documents whose
//   latest version is newer than the continuation (`If-None-Match`: a quoted LSN, `*` for "now",
//   absent for "from the beginning"; `If-Modified-Since` for a point in time), in LSN order, at
//   most `x-ms-max-item-count` of them, with the new continuation as `ETag`; `304 Not Modified`
//   (ETag = the container's current LSN) when nothing is new.
// - Scopes: `x-ms-documentdb-partitionkeyrangeid`, the effective-partition-key (EPK) sub-range
//   headers `x-ms-start-epk`/`x-ms-end-epk`, and `x-ms-documentdb-partitionkey`. A document's
//   EPK is computed as the SDKs do for Hash v2 partition keys (MurmurHash3 x64 128 of the
//   binary-encoded value, bytes reversed, two top bits cleared).
// - Partition key ranges: a container created with N x 10,000 RU/s (manual or autoscale maximum)
//   gets N ranges splitting the Hash v2 EPK space evenly, as Cosmos DB lays out N physical
//   partitions; otherwise one range. Ids are strings, as Cosmos DB sends them.
"use strict";

const path = require("path");
const murmurHash3 = require("murmurhash3js-revisited");

const DEFAULT_PAGE_SIZE = 100; // Cosmos DB's default for a feed request without a page size
const RU_PER_PHYSICAL_PARTITION = 10000;
const MIN_EPK = "";
const MAX_EPK = "FF";

const LSN = Symbol("container LSN");
const REPLACING = Symbol("replace in progress");

// -- logical sequence numbers ------------------------------------------------------------------

function currentLsn(collection) {
  return collection[LSN] || 0;
}

function nextLsn(collection) {
  collection[LSN] = currentLsn(collection) + 1;
  return collection[LSN];
}

function stamp(document, lsn) {
  // Fixed-width hex so that etags of one container also sort in write order.
  document._etag = `"${lsn.toString(16).padStart(8, "0")}-0000-0000-0000-000000000000"`;
  // Not enumerable: JSON responses of plain reads and queries leave it out.
  Object.defineProperty(document, "_lsn", {
    value: lsn, enumerable: false, writable: true, configurable: true
  });
  return document;
}

function installSequenceNumbers(Documents) {
  const { create, replace, delete: remove } = Documents.prototype;
  // upsert dispatches to these; replace deletes the old version internally (one write, one LSN).
  Documents.prototype.create = function createStamped(data) {
    return stamp(create.call(this, data), nextLsn(this._parent));
  };
  Documents.prototype.replace = function replaceStamped(data, original) {
    this[REPLACING] = true;
    try {
      return stamp(replace.call(this, data, original), nextLsn(this._parent));
    } finally {
      this[REPLACING] = false;
    }
  };
  Documents.prototype.delete = function deleteStamped(idOrRid, partition) {
    const result = remove.call(this, idOrRid, partition);
    if (!this[REPLACING]) {
      nextLsn(this._parent);
    }
    return result;
  };
}

// -- effective partition keys (Hash v2) --------------------------------------------------------

const COMPONENT = { undefined: 0x00, null: 0x01, false: 0x02, true: 0x03, number: 0x05, string: 0x08 };

function hashingBytes(value) {
  if (value === undefined) return Buffer.from([COMPONENT.undefined]);
  if (value === null) return Buffer.from([COMPONENT.null]);
  if (value === true) return Buffer.from([COMPONENT.true]);
  if (value === false) return Buffer.from([COMPONENT.false]);
  if (typeof value === "number") {
    const bytes = Buffer.alloc(9);
    bytes[0] = COMPONENT.number;
    bytes.writeDoubleLE(value, 1);
    return bytes;
  }
  if (typeof value === "string") {
    return Buffer.concat([Buffer.from([COMPONENT.string]), Buffer.from(value, "utf8"), Buffer.from([0xff])]);
  }
  throw new BadRequest(`a partition key value must be a string, number, boolean or null, got ${JSON.stringify(value)}`);
}

function effectivePartitionKey(value) {
  const digest = murmurHash3.x64.hash128(hashingBytes(value), 0); // hex of h1 then h2
  const reversed = Buffer.from(digest.slice(16) + digest.slice(0, 16), "hex");
  reversed[0] &= 0x3f; // keeps every EPK below the maximum "FF"
  return reversed.toString("hex").toUpperCase();
}

function partitionKeyPath(properties) {
  const definition = properties.partitionKey || {};
  const paths = definition.paths || [];
  if ((definition.kind || "Hash") !== "Hash" || definition.version !== 2 || paths.length !== 1) {
    throw new BadRequest(
      "the test server computes effective partition keys for single-path Hash v2 partition keys " +
      `only; this container has ${JSON.stringify(definition)}`
    );
  }
  return paths[0].slice(1).split("/");
}

function valueAt(document, segments) {
  return segments.reduce((value, key) => (value === undefined || value === null ? undefined : value[key]), document);
}

// -- partition key ranges ----------------------------------------------------------------------

function physicalPartitionCount(headers) {
  let throughput = Number(headers["x-ms-offer-throughput"] || 0);
  const autoscale = headers["x-ms-cosmos-offer-autopilot-settings"];
  if (autoscale) {
    try {
      throughput = Number(JSON.parse(autoscale).maxThroughput || 0);
    } catch (err) {
      throughput = 0;
    }
  }
  return Number.isFinite(throughput) && throughput > 0
    ? Math.max(1, Math.ceil(throughput / RU_PER_PHYSICAL_PARTITION))
    : 1;
}

function rangeBoundaries(count) {
  // Hash v2 EPKs lie in [00..., 40...): split that space evenly, first min "" and last max "FF".
  const space = 1n << 126n;
  const bounds = [MIN_EPK];
  for (let i = 1; i < count; i += 1) {
    bounds.push(((space * BigInt(i)) / BigInt(count)).toString(16).toUpperCase().padStart(32, "0"));
  }
  bounds.push(MAX_EPK);
  return bounds;
}

function layOutRanges(collection, count) {
  const ranges = collection.partitionKeyRanges;
  for (const item of [...ranges._data.values()]) {
    const { id } = item.read();
    ranges.delete(id, id);
  }
  const bounds = rangeBoundaries(count);
  for (let i = 0; i < count; i += 1) {
    ranges.create({
      id: String(i),
      minInclusive: bounds[i],
      maxExclusive: bounds[i + 1],
      ridPrefix: i,
      throughputFraction: 1 / count,
      status: "online",
      parents: []
    });
  }
}

function partitionKeyRanges(collection) {
  return [...collection.partitionKeyRanges._data.values()].map(item => item.read());
}

// -- the change-feed request -------------------------------------------------------------------

class BadRequest extends Error {}

function header(req, name) {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function feedScope(req, collection, properties) {
  let min = MIN_EPK;
  let max = MAX_EPK;
  const narrow = (lower, upper) => {
    if (lower > min) min = lower;
    if (upper < max) max = upper;
  };

  const rangeId = header(req, "x-ms-documentdb-partitionkeyrangeid");
  if (rangeId !== undefined) {
    const range = partitionKeyRanges(collection).find(r => String(r.id) === rangeId);
    if (!range) {
      throw new BadRequest(`unknown partition key range id ${JSON.stringify(rangeId)}`);
    }
    narrow(range.minInclusive, range.maxExclusive);
  }
  if (header(req, "x-ms-read-key-type") === "EffectivePartitionKeyRange") {
    const start = header(req, "x-ms-start-epk");
    const end = header(req, "x-ms-end-epk");
    if (start === undefined || end === undefined) {
      throw new BadRequest("an EffectivePartitionKeyRange read needs x-ms-start-epk and x-ms-end-epk");
    }
    narrow(start.toUpperCase(), end.toUpperCase());
  }
  let partitionKey;
  const partitionKeyHeader = header(req, "x-ms-documentdb-partitionkey");
  if (partitionKeyHeader !== undefined) {
    let parsed;
    try {
      parsed = JSON.parse(partitionKeyHeader);
    } catch (err) {
      parsed = undefined;
    }
    if (!Array.isArray(parsed) || parsed.length !== 1) {
      throw new BadRequest(`x-ms-documentdb-partitionkey must be a JSON array of one value, got ${partitionKeyHeader}`);
    }
    partitionKey = effectivePartitionKey(parsed[0]);
  }

  const whole = min === MIN_EPK && max === MAX_EPK && partitionKey === undefined;
  if (whole) {
    return () => true;
  }
  const segments = partitionKeyPath(properties);
  return document => {
    const epk = effectivePartitionKey(valueAt(document, segments));
    return epk >= min && epk < max && (partitionKey === undefined || epk === partitionKey);
  };
}

function afterLsn(req, collection) {
  const ifNoneMatch = header(req, "if-none-match");
  if (ifNoneMatch === undefined) return 0; // from the beginning
  if (ifNoneMatch.trim() === "*") return currentLsn(collection); // from now
  const match = /^"?(\d+)"?$/.exec(ifNoneMatch.trim());
  if (!match) {
    throw new BadRequest(`If-None-Match of a change-feed request must be "*" or a continuation from an ETag, got ${ifNoneMatch}`);
  }
  return Number(match[1]);
}

function modifiedSinceSeconds(req) {
  const value = header(req, "if-modified-since");
  if (value === undefined) return 0;
  const millis = Date.parse(value);
  if (Number.isNaN(millis)) {
    throw new BadRequest(`If-Modified-Since must be an HTTP date, got ${value}`);
  }
  return Math.floor(millis / 1000);
}

function pageSize(req) {
  const value = header(req, "x-ms-max-item-count");
  if (value === undefined) return DEFAULT_PAGE_SIZE;
  const size = Number(value);
  if (size === -1) return Infinity;
  if (!Number.isInteger(size) || size < 1) {
    throw new BadRequest(`x-ms-max-item-count must be a positive integer or -1, got ${value}`);
  }
  return size;
}

function readChangeFeed(account, req, res, { dbId, collId }) {
  const collection = account.database(dbId).collection(collId);
  const properties = collection.read();
  if (!properties) {
    res.statusCode = 404;
    return { code: "NotFound", message: "Resource Not Found" };
  }
  const after = afterLsn(req, collection);
  const since = modifiedSinceSeconds(req);
  const inScope = feedScope(req, collection, properties);
  const limit = pageSize(req);

  const changed = [...collection.documents._data.values()]
    .map(item => item.read())
    .filter(document => document._lsn > after && document._ts >= since && inScope(document))
    .sort((a, b) => a._lsn - b._lsn);
  const page = changed.slice(0, limit);

  if (page.length === 0) {
    // Nothing newer in scope: any later change to it takes a higher LSN than the current one.
    res.statusCode = 304;
    res.setHeader("etag", `"${Math.max(after, currentLsn(collection))}"`);
    return {};
  }
  res.statusCode = 200;
  res.setHeader("etag", `"${page[page.length - 1]._lsn}"`);
  res.setHeader("x-ms-item-count", String(page.length));
  return {
    _rid: properties._rid,
    Documents: page.map(document => ({ ...document, _lsn: document._lsn })),
    _count: page.length
  };
}

function badRequest(res, err) {
  res.statusCode = 400;
  return { code: "BadRequest", message: err.message };
}

// -- installation ------------------------------------------------------------------------------

function install(packageDir) {
  const lib = (...parts) => require(path.join(packageDir, "lib", ...parts));

  installSequenceNumbers(lib("account", "documents.js").default);

  const readDocuments = lib("handler", "read-documents.js");
  const readDocumentsFeed = readDocuments.default;
  readDocuments.default = (account, req, res, params) => {
    const aim = header(req, "a-im");
    if (aim === undefined) {
      return readDocumentsFeed(account, req, res, params);
    }
    // The server's own fake answer to A-IM requests (304 or ETag "1") must not run on this one.
    delete req.headers["a-im"];
    if (aim.toLowerCase() !== "incremental feed") {
      return badRequest(res, new BadRequest(
        `the test server's change feed has latest-version mode only (A-IM: Incremental feed), not ${aim}`
      ));
    }
    try {
      return readChangeFeed(account, req, res, params);
    } catch (err) {
      if (err instanceof BadRequest) return badRequest(res, err);
      throw err;
    }
  };

  const createCollection = lib("handler", "create-collection.js");
  const createCollectionAsIs = createCollection.default;
  createCollection.default = async (account, req, res, params) => {
    const body = await createCollectionAsIs(account, req, res, params);
    if (res.statusCode === 201) {
      layOutRanges(account.database(params.dbId).collection(body.id), physicalPartitionCount(req.headers));
    }
    return body;
  };
}

module.exports = { install, effectivePartitionKey, rangeBoundaries };
