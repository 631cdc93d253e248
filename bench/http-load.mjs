// A small HTTP load generator for the proxy benchmark (wrk is not always installed): keeps
// `connections` keep-alive connections busy with GET requests for `seconds`, then prints one JSON
// line: requests per second, p50/p99 latency in ms, errors. Runs in its own process.
// Usage: node bench/http-load.mjs <url> <host header> <seconds> <connections>
import { Agent, request } from 'node:http';

const [url, host, seconds = '10', connections = '50'] = process.argv.slice(2);
const agent = new Agent({ keepAlive: true, maxSockets: Number(connections) });
const deadline = performance.now() + Number(seconds) * 1000;
const latencies = [];
let errors = 0;
/** What the errors were: status codes and error messages, with their counts. */
const errorKinds = {};
function failed(kind) {
  errors += 1;
  errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
}

function once() {
  return new Promise((resolve) => {
    const started = performance.now();
    const outgoing = request(url, { agent, headers: { host } }, (response) => {
      response.resume();
      response.on('end', () => {
        if (response.statusCode === 200) latencies.push(performance.now() - started);
        // Who answered: an app's error page has a body type, Node's own 408 (headers timeout) has none.
        else failed(`HTTP ${response.statusCode} (${response.headers['content-type'] ?? 'no body type'})`);
        resolve();
      });
    });
    outgoing.on('error', (error) => {
      failed(error.code ?? error.message);
      resolve();
    });
    outgoing.end();
  });
}

const began = performance.now();
await Promise.all(
  Array.from({ length: Number(connections) }, async () => {
    while (performance.now() < deadline) await once();
  }),
);
const elapsed = (performance.now() - began) / 1000;
latencies.sort((a, b) => a - b);
const percentile = (p) => latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))] ?? 0;
console.log(JSON.stringify({ requestsPerSecond: latencies.length / elapsed, p50: percentile(50), p99: percentile(99), errors, errorKinds }));
agent.destroy();
