'use strict';
// sofa-rpc-node RpcServer on 127.0.0.1:<port> (0 = pick a free one) with the
// protocol given by the wrapper script (sofa-bolt-node for Bolt, dubbo-remoting for Dubbo).
const { RpcServer } = require('sofa-rpc-node').server;
const { logger, emit, loopbackServerClass, parseArgs } = require('./peer_common');
const svc = require('./peer_services');

module.exports = async function runServer(protocol, extra) {
  const args = parseArgs(process.argv.slice(2));
  const Server = loopbackServerClass(RpcServer);
  const server = new Server(Object.assign({
    logger,
    port: Number(args.port || 0),
    protocol,
    killTimeout: 2000,
    codecType: args.codec || 'hessian2',
  }, extra || {}));
  server.addService({ interfaceName: svc.interfaceName, version: svc.version }, svc.methods);
  await server.start();
  emit({ ready: true, port: server.publishPort, protocol: protocol.name || 'bolt' });
  const stop = async () => {
    try { await server.close(); } catch (e) { /* closing anyway */ }
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
};
