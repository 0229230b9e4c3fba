// The "node floor" of the server benchmark: a memcached-speaking Node.js server with no store, replying
// canned bytes. It measures the cost of Node's own socket I/O with no cache behind it, which bounds any
// single-threaded Node.js server on the machine, the embedded one included.
//
//   node dist/bench/node-floor.js --port P [--value-bytes N]
//
// Sets are read and dropped (STORED), every key of a get hits with an N-byte value, `version` answers
// (the harness's readiness check), anything else is ERROR. Replies to one read go out in one write.
import { createServer, type Socket } from "node:net";
import { parseArgs } from "node:util";

const HOST = "127.0.0.1"; // loopback only, like the rest of the benchmark
const DEFAULT_VALUE_BYTES = 100; // the benchmark's value size
const MAX_LINE_BYTES = 64 * 1024; // a command line longer than this is not memcached; the connection is dropped
const NEWLINE = 0x0a;
const CR = 0x0d;

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    "value-bytes": { type: "string", default: String(DEFAULT_VALUE_BYTES) },
  },
  strict: true,
});
const port = Number(values.port);
const valueBytes = Number(values["value-bytes"]);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`node-floor: --port ${values.port ?? "(missing)"} is not a port number; give --port P`);
  process.exit(2);
}
if (!Number.isInteger(valueBytes) || valueBytes < 0) {
  console.error(`node-floor: --value-bytes ${values["value-bytes"]} is not a byte count`);
  process.exit(2);
}

// Everything after the key of a hit: flags 0, the length, the value and its terminator.
const HIT_TAIL = ` 0 ${valueBytes}\r\n${"x".repeat(valueBytes)}\r\n`;

function serve(socket: Socket): void {
  let pending: Buffer | undefined; // an incomplete command line from the previous read
  let skip = 0; // bytes of a set's data block (with its \r\n) still to come

  socket.on("data", (chunk: Buffer) => {
    let input = chunk;
    if (pending !== undefined) {
      input = Buffer.concat([pending, chunk]);
      pending = undefined;
    }
    let pos = 0;
    if (skip > 0) {
      const skipped = Math.min(skip, input.length);
      skip -= skipped;
      pos = skipped;
    }
    let out = "";
    while (pos < input.length) {
      const eol = input.indexOf(NEWLINE, pos);
      if (eol < 0) {
        if (input.length - pos > MAX_LINE_BYTES) {
          socket.destroy();
          return;
        }
        pending = input.subarray(pos);
        break;
      }
      const end = eol > pos && input[eol - 1] === CR ? eol - 1 : eol;
      const line = input.toString("latin1", pos, end);
      pos = eol + 1;
      if (line.startsWith("get ")) {
        const words = line.split(" ");
        for (let i = 1; i < words.length; i++) {
          if (words[i] !== "") out += `VALUE ${words[i]}${HIT_TAIL}`;
        }
        out += "END\r\n";
      } else if (line.startsWith("set ")) {
        // set <key> <flags> <exptime> <bytes> [noreply]
        const words = line.split(" ");
        const bytes = Number(words[4]);
        if (!Number.isInteger(bytes) || bytes < 0) {
          out += "CLIENT_ERROR bad command line format\r\n";
          continue;
        }
        const block = bytes + 2;
        const here = Math.min(block, input.length - pos);
        pos += here;
        skip = block - here;
        if (words[5] !== "noreply") out += "STORED\r\n";
      } else if (line === "version") {
        out += "VERSION floor\r\n";
      } else {
        out += "ERROR\r\n";
      }
    }
    if (out.length > 0) socket.write(out, "latin1");
  });
  // A client that goes away mid-write is normal under load; nothing to report.
  socket.on("error", () => socket.destroy());
}

const server = createServer({ noDelay: true }, serve);
server.on("error", (error) => {
  // "address already in use" here tells the harness to try another port.
  console.error(`node-floor: ${error.message}`);
  process.exit(1);
});
server.listen(port, HOST);
