// Bounded property-based fuzzing of the embedded server over real connections: `memipc server` in a child
// process gets generated streams; each must end with the sentinel answered or the connection closed, a
// fresh connection must still be served, and the server's resident memory must stay bounded.
import { after, before } from "node:test";
import assert from "node:assert/strict";
import { propertyTest } from "./property-test.js";
import {
  RSS_BOUND,
  SERVER_BATCH,
  serverProperty,
  ServerProcess,
  type ServerFuzzState,
} from "./server-target.js";

let state: ServerFuzzState | undefined;

before(async () => {
  state = { server: await ServerProcess.start(), peakRss: 0 };
});

after(async () => {
  await state?.server.stop();
});

propertyTest(
  "fuzz: the server answers the sentinel or closes after any stream, keeps serving, and bounds its memory",
  "server",
  () => serverProperty(state!),
  { file: "server.test.js", pattern: "server", batch: SERVER_BATCH },
  () => {
    const memory = state!.server.memory();
    console.log(`server peak RSS ${memory ? Math.round(memory.peak / 1048576) : "?"} MiB`);
    assert.ok(state!.server.alive, `the server died: ${state!.server.stderr}`);
    if (memory !== undefined) {
      assert.ok(
        memory.peak <= RSS_BOUND,
        `the server's resident memory peaked at ${memory.peak} bytes, over ${RSS_BOUND}`,
      );
    }
  },
);
