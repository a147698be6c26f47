// openai_sdk.mjs -- the official OpenAI Node SDK as a real client of
// `llmroute serve`: a non-streamed and a streamed completion through a route,
// and every error status surfacing as the SDK's own error class.
//
//   node openai_sdk.mjs NODE_MODULES_DIR GATEWAY_PORT GATEWAY_KEY FAKE_PORT
//
// Prints one "ok" or "FAIL" line per check; exits 1 if any failed.
import { createRequire } from "node:module";
import path from "node:path";

const [modulesDir, port, key, fakePort] = process.argv.slice(2);
const require = createRequire(path.join(modulesDir, "package.json"));
const OpenAI = require("openai");

const baseURL = `http://127.0.0.1:${port}/v1`;
const client = new OpenAI({ apiKey: key, baseURL, maxRetries: 0, timeout: 10000 });
const messages = [{ role: "user", content: "Say hello" }];
let failed = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   - ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL - ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

async function setScenario(spec) {
  const r = await fetch(`http://127.0.0.1:${fakePort}/_control`, {
    method: "POST",
    body: JSON.stringify({ scenario: spec, reset: true }),
  });
  assert(r.status === 200, `fake /_control answered ${r.status}`);
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// Expect the call to throw the SDK's error class `cls` with this status.
async function expectError(cls, status, call) {
  try {
    await call();
  } catch (e) {
    assert(e instanceof cls, `expected ${cls.name}, got ${e && e.constructor && e.constructor.name}: ${e}`);
    assert(e.status === status, `expected status ${status}, got ${e.status}`);
    assert(e.error && typeof e.error.message === "string", `no error.message: ${JSON.stringify(e.error)}`);
    return e;
  }
  throw new Error(`expected ${cls.name} (${status}), but the call succeeded`);
}

await check("non-streamed completion through a route", async () => {
  const { data, response } = await client.chat.completions
    .create({ model: "auto", messages })
    .withResponse();
  assert(data.object === "chat.completion", JSON.stringify(data));
  assert(data.choices[0].message.content === "tok0 tok1 tok2", JSON.stringify(data));
  assert(["upstream-a", "upstream-b"].includes(data.model), data.model);
  assert(response.headers.get("x-llmroute-route") === "auto", "route header");
  assert(response.headers.get("x-llmroute-strategy") === "sequential", "strategy header");
  assert(data.usage.completion_tokens === 3, JSON.stringify(data.usage));
});

await check("streamed completion through a route", async () => {
  const stream = await client.chat.completions.create({
    model: "auto",
    messages,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.choices.length && chunk.choices[0].delta.content) text += chunk.choices[0].delta.content;
    if (chunk.usage) usage = chunk.usage;
  }
  assert(text === "tok0 tok1 tok2", `text ${JSON.stringify(text)}`);
  assert(chunks >= 4, `only ${chunks} chunks`);
  assert(usage && usage.completion_tokens === 3, `usage ${JSON.stringify(usage)}`);
});

await check("embeddings through the SDK", async () => {
  const r = await client.embeddings.create({ model: "fake-a", input: ["a", "b"] });
  assert(r.data.length === 2 && r.data[0].embedding.length > 0, JSON.stringify(r).slice(0, 200));
});

await check("models list through the SDK", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert(ids.includes("auto") && ids.includes("fake-a"), ids.join(","));
});

await check("models retrieve through the SDK, and NotFoundError for another name", async () => {
  const m = await client.models.retrieve("auto");
  assert(m.id === "auto" && m.object === "model", JSON.stringify(m));
  await expectError(OpenAI.NotFoundError, 404, () => client.models.retrieve("no/such-model"));
});

await check("400 -> BadRequestError (messages not an array)", async () => {
  const e = await expectError(OpenAI.BadRequestError, 400, () =>
    client.chat.completions.create({ model: "auto", messages: "hi" }));
  assert(e.param === "messages", `param ${e.param}`);
});

await check("400 -> BadRequestError (stream not a boolean)", async () => {
  await expectError(OpenAI.BadRequestError, 400, () =>
    client.post("/chat/completions", { body: { model: "auto", messages, stream: "yes" } }));
});

await check("400 -> BadRequestError (malformed JSON)", async () => {
  const r = await fetch(`${baseURL}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: '{"model": "auto", "messages": [',
  });
  const e = OpenAI.APIError.generate(r.status, await r.json(), undefined, r.headers);
  assert(e instanceof OpenAI.BadRequestError && e.status === 400, `${e.constructor.name} ${e.status}`);
});

await check("401 -> AuthenticationError", async () => {
  const bad = new OpenAI({ apiKey: "wrong-key", baseURL, maxRetries: 0 });
  await expectError(OpenAI.AuthenticationError, 401, () =>
    bad.chat.completions.create({ model: "auto", messages }));
});

await check("404 -> NotFoundError (unknown model)", async () => {
  const e = await expectError(OpenAI.NotFoundError, 404, () =>
    client.chat.completions.create({ model: "gpt-9", messages }));
  assert(e.code === "model_not_found", `code ${e.code}`);
});

await check("404 -> NotFoundError (unknown path)", async () => {
  await expectError(OpenAI.NotFoundError, 404, () => client.get("/nothing-here"));
});

await check("405 -> APIError with status 405", async () => {
  await expectError(OpenAI.APIError, 405, () => client.get("/chat/completions"));
});

await check("413 -> APIError with status 413", async () => {
  const big = [{ role: "user", content: "x".repeat(70000) }];
  await expectError(OpenAI.APIError, 413, () =>
    client.chat.completions.create({ model: "auto", messages: big }));
});

await check("431 -> APIError with status 431", async () => {
  const loud = new OpenAI({ apiKey: key, baseURL, maxRetries: 0,
                            defaultHeaders: { "x-padding": "p".repeat(8000) } });
  await expectError(OpenAI.APIError, 431, () =>
    loud.chat.completions.create({ model: "auto", messages }));
});

await check("429 passed through -> RateLimitError", async () => {
  await setScenario("status=429;retry_after=1");
  try {
    await expectError(OpenAI.RateLimitError, 429, () =>
      client.chat.completions.create({ model: "auto", messages }));
  } finally {
    await setScenario("ok");
  }
});

await check("502 -> InternalServerError (upstream unreachable)", async () => {
  const e = await expectError(OpenAI.InternalServerError, 502, () =>
    client.chat.completions.create({ model: "dead", messages }));
  assert(e.code === "upstream_unreachable", `code ${e.code}`);
});

await check("the gateway still serves", async () => {
  const r = await client.chat.completions.create({ model: "mocky", messages });
  assert(r.system_fingerprint === "llmroute-mock", JSON.stringify(r));
});

process.exit(failed ? 1 : 0);
