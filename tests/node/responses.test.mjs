// The official OpenAI Node SDK's Responses API against the hub (the demo's simulated upstream:
// "[simulated] <model> in <region> heard: <user text>"; it calls the first offered tool with
// {"query": <user text>} and quotes tool results). Run by tests/python/run.sh with
// SWITCHYARD_BASE_URL and SWITCHYARD_API_KEY set.
import assert from "node:assert/strict";
import { test } from "node:test";

import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.SWITCHYARD_BASE_URL,
  apiKey: process.env.SWITCHYARD_API_KEY,
  maxRetries: 0,
  timeout: 30_000,
});

const weather = {
  type: "function",
  name: "get_weather",
  description: "Current weather for a city",
  parameters: {
    type: "object",
    properties: { query: { type: "string" } },
    required: ["query"],
    additionalProperties: false,
  },
  strict: true,
};

test("responses.create answers text", async () => {
  const resp = await client.responses.create({
    model: "demo",
    input: "Hello from Node",
    instructions: "be brief",
  });
  assert.equal(resp.object, "response");
  assert.equal(resp.status, "completed");
  assert.match(resp.id, /^resp_/);
  assert.match(resp.output_text, /heard: Hello from Node/);
  assert.equal(resp.usage.total_tokens, resp.usage.input_tokens + resp.usage.output_tokens);
});

test("responses.stream gives the event sequence and the final response", async () => {
  const stream = client.responses.stream({ model: "demo", input: "stream from Node" });
  const types = [];
  let text = "";
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === "response.output_text.delta") text += event.delta;
  }
  const final = await stream.finalResponse();
  assert.equal(types[0], "response.created");
  assert.equal(types[1], "response.in_progress");
  assert.equal(types.at(-1), "response.completed");
  assert.ok(types.includes("response.output_item.added"));
  assert.ok(types.includes("response.output_text.done"));
  assert.equal(text, final.output_text);
  assert.match(final.output_text, /stream from Node/);
});

test("responses.create with stream: true", async () => {
  const stream = await client.responses.create({ model: "demo", input: "raw Node stream", stream: true });
  const events = [];
  for await (const event of stream) events.push(event);
  const seqs = events.map((e) => e.sequence_number);
  assert.deepEqual(seqs, [...seqs.keys()]);
  const done = events.at(-1);
  assert.equal(done.type, "response.completed");
  const text = events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join("");
  assert.equal(text, done.response.output[0].content[0].text);
});

test("a function tool round trip, then retrieve and delete", async () => {
  const first = await client.responses.create({
    model: "demo",
    input: [{ role: "user", content: "weather in Lisbon" }],
    tools: [weather],
  });
  const call = first.output.find((o) => o.type === "function_call");
  assert.ok(call, JSON.stringify(first.output));
  assert.equal(call.name, "get_weather");
  assert.deepEqual(JSON.parse(call.arguments), { query: "weather in Lisbon" });
  const second = await client.responses.create({
    model: "demo",
    tools: [weather],
    previous_response_id: first.id,
    input: [{ type: "function_call_output", call_id: call.call_id, output: "sunny" }],
  });
  assert.match(second.output_text, /got the tool result: sunny/);
  const got = await client.responses.retrieve(first.id);
  assert.equal(got.id, first.id);
  await client.responses.delete(first.id);
  await assert.rejects(client.responses.retrieve(first.id), (e) => e.status === 404);
});

test("hosted tools are refused by name", async () => {
  await assert.rejects(
    client.responses.create({ model: "demo", input: "x", tools: [{ type: "code_interpreter", container: { type: "auto" } }] }),
    (e) => e.status === 400 && e.param === "tools[0].type",
  );
});
