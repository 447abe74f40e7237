'use strict';
// Bolt client: sofa-rpc-node + sofa-bolt-node, hessian2 content.
//   node peer_bolt_client.js --address 127.0.0.1:PORT --method sayHello --args '["world"]'
require('./peer_rpc_client_impl')(require('sofa-bolt-node')).catch(err => {
  console.error(err);
  process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.message) }) + '\n');
  process.exit(1);
});
