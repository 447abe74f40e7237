'use strict';
// sofa-rpc-node RpcClient in direct mode (no registry) against --address host:port.
//   --method sayHello --args '["world"]' [--count N] [--timeout ms]
// Prints {"ok": true, "results": [...], "result": <last>} on stdout.
const { RpcClient } = require('sofa-rpc-node').client;
const { logger, emit, parseArgs, guard } = require('./peer_common');
const svc = require('./peer_services');

module.exports = async function runClient(protocol) {
  const args = parseArgs(process.argv.slice(2));
  const timeout = Number(args.timeout || 5000);
  guard(timeout * 2 + 2000);
  const client = new RpcClient({ logger, protocol });
  const consumer = client.createConsumer({
    interfaceName: args.service || svc.interfaceName,
    version: args.version || svc.version,
    serverHost: args.address,
  });
  await consumer.ready();
  const count = Number(args.count || 1);
  const callArgs = JSON.parse(args.args || '[]');
  const results = [];
  try {
    for (let i = 0; i < count; i++) {
      results.push(await consumer.invoke(args.method || 'sayHello', callArgs, { responseTimeout: timeout }));
    }
    emit({ ok: true, result: results[results.length - 1], results });
    await client.close();
    process.exit(0);
  } catch (err) {
    emit({ ok: false, error: String(err && (err.message || err)), name: err && err.name, results });
    process.exit(1);
  }
};
