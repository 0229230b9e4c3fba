// The embedded server's shutdown path for a hosting daemon: closePublic() cuts every outside client off and
// refuses new ones, while the daemon's own connection (on the internal listener) still reads what was stored.
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { test } from "node:test";
import { Client } from "../../src/client/index.js";
import { startServer } from "../../src/server/index.js";

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => resolve(socket));
    socket.once("error", reject);
  });
}

function reply(socket: Socket, command: string): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    socket.setEncoding("utf8");
    const onData = (chunk: string) => {
      text += chunk;
      if (text.endsWith("\r\n")) {
        socket.off("data", onData);
        resolve(text);
      }
    };
    socket.on("data", onData);
    socket.write(command);
  });
}

test("server: closePublic() closes outside connections and the listener; the internal listener keeps working", async () => {
  const server = await startServer({ port: 0 });
  try {
    const internalPort = await server.listenInternal();
    assert.notEqual(internalPort, server.port);
    const outside = await open(server.port);
    assert.equal(await reply(outside, "set k 0 0 5\r\nhello\r\n"), "STORED\r\n");
    const own = new Client({ servers: `127.0.0.1:${internalPort}` });
    try {
      assert.equal((await own.get("k"))?.value.toString(), "hello");
      const closed = new Promise<void>((resolve) => outside.once("close", () => resolve()));
      await server.closePublic();
      await closed; // the outside client was cut off
      await assert.rejects(open(server.port), /ECONNREFUSED/);
      assert.equal((await own.get("k"))?.value.toString(), "hello", "the daemon still reads what was stored");
      await own.set("k2", "x");
      assert.equal(server.connectionCount, 1);
    } finally {
      own.close();
    }
  } finally {
    await server.close();
  }
});
