// TLS on the embedded server and in the client, with a key and self-signed certificate made by openssl at
// test time: a TLS client logs and drains end to end, a plain-text client fails cleanly, a client that does
// not trust the certificate gets TlsError (ETLS), authentication works over TLS, --tls-ca requires a client
// certificate, and the client speaks TLS to real memcached (-Z) too.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { Client } from "../../src/client/index.js";
import { AuthenticationError, ConnectionClosedError, TlsError } from "../../src/errors.js";
import { LogProducer } from "../../src/log/producer.js";
import { startServer, type MemcachedServer } from "../../src/server/index.js";
import { drainToFiles } from "../helpers/log-files.js";
import { requireMemcached, startRealMemcached } from "../helpers/real-memcached.js";
import { works } from "../helpers/run-program.js";

const OPENSSL = "openssl";

/** A P-256 key and a self-signed certificate for 127.0.0.1 and localhost, valid for a day. */
function makeCertificate(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync(
    OPENSSL,
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ],
    { stdio: "ignore", timeout: 20_000 },
  );
  return { cert, key };
}

function requireOpenssl(t: TestContext): boolean {
  if (works(OPENSSL, ["version"])) return true;
  const message = "the openssl command is not installed: apt-get install -y openssl";
  if (process.env.CI === "true") throw new Error(message);
  t.skip(message);
  return false;
}

describe("TLS", () => {
  const dir = mkdtempSync(join(tmpdir(), "memipc-tls-"));
  let server: { cert: string; key: string } | undefined;
  let other: { cert: string; key: string } | undefined;
  const servers: MemcachedServer[] = [];
  const clients: Client[] = [];
  const client = (port: number, options: ConstructorParameters<typeof Client>[0] = {}) => {
    const made = new Client({ servers: `127.0.0.1:${port}`, retryDelay: 10, ...options });
    clients.push(made);
    return made;
  };
  const serve = async (options: Parameters<typeof startServer>[0]) => {
    const started = await startServer({ port: 0, ...options });
    servers.push(started);
    return started;
  };

  before(() => {
    if (!works(OPENSSL, ["version"])) return;
    server = makeCertificate(dir, "server");
    other = makeCertificate(dir, "other");
  });
  after(async () => {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => s.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("a client trusting the certificate logs and drains over TLS", async (t) => {
    if (!requireOpenssl(t)) return;
    const tls = await serve({ tlsCert: server!.cert, tlsKey: server!.key });
    const c = client(tls.port, { tls: { ca: readFileSync(server!.cert) } });
    await c.set("k", "over tls");
    assert.equal((await c.get("k"))?.value.toString(), "over tls");
    const producer = new LogProducer(c, { stream: "tls" });
    await Promise.all(Array.from({ length: 50 }, (_, i) => producer.append({ i })));
    const out = join(dir, "drained");
    const lines = await drainToFiles(c, "tls", out);
    assert.deepEqual(
      lines.map((line) => (line.kind === "entry" ? (line.data as { i: number }).i : line.kind)),
      Array.from({ length: 50 }, (_, i) => i),
    );
  });

  it("a plain-text client against the TLS port fails cleanly and the server goes on", async (t) => {
    if (!requireOpenssl(t)) return;
    const tls = await serve({ tlsCert: server!.cert, tlsKey: server!.key });
    const plain = client(tls.port, { timeout: 5000 });
    const error = await plain.get("k").then(
      () => undefined,
      (e: Error) => e,
    );
    assert.ok(error instanceof ConnectionClosedError, `${error?.name}: ${error?.message}`);
    const c = client(tls.port, { tls: { ca: readFileSync(server!.cert) } });
    assert.equal(await c.get("k"), undefined);
  });

  it("a client that does not trust the certificate gets TlsError (ETLS)", async (t) => {
    if (!requireOpenssl(t)) return;
    const tls = await serve({ tlsCert: server!.cert, tlsKey: server!.key });
    for (const settings of [
      {},
      { ca: readFileSync(other!.cert) },
      { ca: readFileSync(server!.cert), servername: "example.org" },
    ]) {
      const error = await client(tls.port, { tls: settings })
        .get("k")
        .then(
          () => undefined,
          (e: Error) => e,
        );
      assert.ok(error instanceof TlsError, `${error?.name}: ${error?.message}`);
      assert.equal((error as TlsError).code, "ETLS");
    }
  });

  it("authentication works over TLS", async (t) => {
    if (!requireOpenssl(t)) return;
    const file = join(dir, "auth");
    writeFileSync(file, "alice:secret\n");
    const tls = await serve({ tlsCert: server!.cert, tlsKey: server!.key, authFile: file });
    const ca = readFileSync(server!.cert);
    const c = client(tls.port, { tls: { ca }, auth: { username: "alice", password: "secret" } });
    await c.set("k", "v");
    assert.equal((await c.get("k"))?.value.toString(), "v");
    const wrong = client(tls.port, { tls: { ca }, auth: { username: "alice", password: "wrong" } });
    await assert.rejects(wrong.get("k"), AuthenticationError);
  });

  it("--tls-ca requires a client certificate signed by that CA", async (t) => {
    if (!requireOpenssl(t)) return;
    // The self-signed client certificate is its own CA.
    const tls = await serve({ tlsCert: server!.cert, tlsKey: server!.key, tlsCa: other!.cert });
    const ca = readFileSync(server!.cert);
    const withCert = client(tls.port, {
      tls: { ca, cert: readFileSync(other!.cert), key: readFileSync(other!.key) },
    });
    await withCert.set("k", "v");
    for (const settings of [
      { ca },
      { ca, cert: readFileSync(server!.cert), key: readFileSync(server!.key) },
    ]) {
      const error = await client(tls.port, { tls: settings, timeout: 5000 })
        .get("k")
        .then(
          () => undefined,
          (e: Error) => e,
        );
      assert.ok(error instanceof ConnectionClosedError, `${error?.name}: ${error?.message}`);
    }
  });

  it("the client speaks TLS to real memcached -Z", async (t) => {
    if (!requireOpenssl(t) || !requireMemcached(t)) return;
    const memcached = await startRealMemcached({
      extraArgs: ["-Z", "-o", `ssl_chain_cert=${server!.cert},ssl_key=${server!.key}`],
    });
    try {
      const c = client(memcached.port, { tls: { ca: readFileSync(server!.cert) } });
      await c.set("k", "to memcached");
      assert.equal((await c.get("k"))?.value.toString(), "to memcached");
    } finally {
      await memcached.stop();
    }
  });
});
