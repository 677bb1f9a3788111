// Drives a real workspaced release binary from Node.js with @grpc/grpc-js and
// @grpc/proto-loader, loading the project's .proto files as any Node.js client would.
// WORKSPACED_BIN names the binary (default: target/release/workspaced).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createServer } from "node:net";
import { randomBytes } from "node:crypto";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const root = resolve(import.meta.dirname, "..", "..");
const bin = process.env.WORKSPACED_BIN || join(root, "target", "release", "workspaced");
const dir = mkdtempSync(join(tmpdir(), "workspaced-node-"));
const key = join(dir, "key");
let server;
let addr;

const freePort = () =>
  new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });

const token = (subject, ...roles) =>
  execFileSync(bin, [
    "token", "--subject", subject, "--email", `${subject}@example.com`,
    "--jwt-hs256-secret-file", key, ...roles.flatMap((r) => ["--role", r]),
  ]).toString().trim();

const pkg = grpc.loadPackageDefinition(
  protoLoader.loadSync(
    ["workspaced/v1/workspace.proto", "workspaced/v1/membership.proto", "workspaced/v1/policy.proto"],
    { includeDirs: [join(root, "proto")], keepCase: true, longs: String, enums: String, defaults: true },
  ),
).workspaced.v1;

const call = (client, method, request, bearer) =>
  new Promise((ok, fail) => {
    const md = new grpc.Metadata();
    if (bearer) md.set("authorization", `Bearer ${bearer}`);
    client[method](request, md, (err, res) => (err ? fail(err) : ok(res)));
  });

before(async () => {
  writeFileSync(key, randomBytes(32).toString("hex"));
  const port = await freePort();
  addr = `127.0.0.1:${port}`;
  server = spawn(bin, [
    "serve", "--listen", addr, "--database-url", `sqlite://${join(dir, "node.db")}?mode=rwc`,
    "--jwt-hs256-secret-file", key,
  ], { stdio: ["ignore", "ignore", "inherit"] });
  const probe = new pkg.WorkspaceService(addr, grpc.credentials.createInsecure());
  const deadline = Date.now() + 30000;
  for (;;) {
    const ready = await new Promise((ok) =>
      probe.waitForReady(Date.now() + 500, (err) => ok(!err)));
    if (ready) break;
    if (Date.now() > deadline) throw new Error("workspaced did not start");
  }
  probe.close();
});

after(() => {
  server?.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
});

test("create, get and list workspaces; errors carry their gRPC codes", async () => {
  const ws = new pkg.WorkspaceService(addr, grpc.credentials.createInsecure());
  const alice = token("alice");
  const created = await call(ws, "CreateWorkspace",
    { workspace: { name: "node-team", labels: { lang: "js" } } }, alice);
  assert.equal(created.workspace.name, "node-team");
  assert.equal(created.workspace.visibility, "VISIBILITY_PRIVATE");
  assert.equal(created.workspace.created_by, "alice");

  const got = await call(ws, "GetWorkspace", { name: "node-team" }, alice);
  assert.equal(got.workspace.id, created.workspace.id);

  const listed = await call(ws, "ListWorkspaces", { page_size: 2 }, alice);
  assert.deepEqual(listed.workspaces.map((w) => w.name), ["default", "node-team"]);
  assert.equal(listed.total_size, 3);
  assert.notEqual(listed.next_page_token, "");

  await assert.rejects(call(ws, "GetWorkspace", { name: "node-team" }),
    (e) => e.code === grpc.status.UNAUTHENTICATED);
  await assert.rejects(call(ws, "GetWorkspace", { name: "node-team" }, token("eve")),
    (e) => e.code === grpc.status.PERMISSION_DENIED);
  await assert.rejects(call(ws, "CreateWorkspace", { workspace: { name: "Not Valid" } }, alice),
    (e) => e.code === grpc.status.INVALID_ARGUMENT);

  const members = new pkg.MembershipService(addr, grpc.credentials.createInsecure());
  const access = await call(members, "CheckAccess",
    { workspace: "node-team", permission: "members.manage" }, alice);
  assert.equal(access.allowed, true);
  assert.equal(access.role, "ROLE_ADMIN");
  ws.close();
  members.close();
});
