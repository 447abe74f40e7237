'use strict';
// Dubbo client: sofa-rpc-node + dubbo-remoting, hessian2 body.
//   node peer_dubbo_client.js --address 127.0.0.1:PORT --method sayHello --args '["world"]'
require('./peer_rpc_client_impl')(require('dubbo-remoting')).catch(err => {
  console.error(err);
  process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.message) }) + '\n');
  process.exit(1);
});
