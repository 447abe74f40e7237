'use strict';
// sofa-rpc-node RpcClient (direct mode) that EXPECTS errors: times each call and reports the
// error the client raised, so a test can tell a protocol error reply from the client's own
// timeout.
//   node peer_errclient_rpc.js --protocol dubbo|bolt --address 127.0.0.1:PORT
//        [--service com.example.Greeter] [--method sayHello] [--args '["world"]']
//        [--count N] [--timeout ms]
// Prints {"ok": true, "calls": [{"ok": bool, "elapsed_ms": n, "error": "...", "name": "...",
//         "code": ..., "result": ...}, ...]} on stdout (ok: the client ran, whatever the calls did).
const { RpcClient } = require('sofa-rpc-node').client;
const { logger, emit, parseArgs, guard } = require('./peer_common');
const svc = require('./peer_services');

const LIBS = { dubbo: 'dubbo-remoting', bolt: 'sofa-bolt-node' };

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const lib = LIBS[args.protocol];
  if (!lib) throw new Error('--protocol must be dubbo or bolt, not ' + args.protocol);
  const timeout = Number(args.timeout || 5000);
  const count = Number(args.count || 1);
  guard(timeout * (count + 1) + 5000);
  const client = new RpcClient({ logger, protocol: require(lib) });
  const consumer = client.createConsumer({
    interfaceName: args.service || svc.interfaceName,
    version: args.version || svc.version,
    serverHost: args.address,
  });
  await consumer.ready();
  const callArgs = JSON.parse(args.args || '["world"]');
  const calls = [];
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    try {
      const result = await consumer.invoke(args.method || 'sayHello', callArgs, { responseTimeout: timeout });
      calls.push({ ok: true, elapsed_ms: Number(process.hrtime.bigint() - t0) / 1e6, result });
    } catch (err) {
      calls.push({
        ok: false,
        elapsed_ms: Number(process.hrtime.bigint() - t0) / 1e6,
        error: String(err && (err.message || err)),
        name: err && err.name,
        code: err && err.code,
        status: err && err.resultCode,
      });
    }
  }
  emit({ ok: true, calls });
  await client.close();
  process.exit(0);
}

main().catch(err => {
  console.error(err);
  emit({ ok: false, error: String(err && err.message) });
  process.exit(1);
});
