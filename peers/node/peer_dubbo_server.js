'use strict';
// Dubbo server: sofa-rpc-node + dubbo-remoting, hessian2 body.
//   node peer_dubbo_server.js [--port 0]
require('./peer_rpc_server_impl')(require('dubbo-remoting')).catch(err => {
  console.error(err);
  process.exit(1);
});
