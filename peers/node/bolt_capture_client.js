#!/usr/bin/env node
// Tiny sofa-rpc-node Bolt client used to capture a real request (see capture_bolt_request.py).
// Usage: node bolt_capture_client.js <port> [string-argument]
// Calls com.example.EchoService:1.0 echo(String) on 127.0.0.1:<port> directly (no registry).
// The recording listener closes the connection, so the call is expected to fail: exit 0.
'use strict';
const { RpcClient } = require('sofa-rpc-node').client;

const port = Number(process.argv[2]);
const arg = process.argv[3] || 'hello from node';
const quiet = { info() {}, warn() {}, error() {}, debug() {} };

async function main() {
  const client = new RpcClient({ logger: quiet });
  const consumer = client.createConsumer({
    interfaceName: 'com.example.EchoService',
    version: '1.0',
    serverHost: `127.0.0.1:${port}`,
  });
  await consumer.ready();
  try {
    await consumer.invoke('echo', [ arg ], { responseTimeout: 2000 });
  } catch (err) {
    console.log('call ended: %s', err.name);
  }
  await client.close();
}

const timer = setTimeout(() => process.exit(0), 8000);
main().then(() => { clearTimeout(timer); process.exit(0); }, err => {
  console.error(err);
  process.exit(1);
});
