'use strict';
// Bolt server: sofa-rpc-node + sofa-bolt-node, hessian2 content.
//   node peer_bolt_server.js [--port 0]
require('./peer_rpc_server_impl')(require('sofa-bolt-node')).catch(err => {
  console.error(err);
  process.exit(1);
});
