'use strict';
// Shared helpers for the xproto peer scripts (tests/peers/ drives them).
// Protocol with the Python harness: a server prints ONE JSON line
// {"ready": true, "port": N} on stdout once it listens, then runs until SIGTERM;
// a client prints ONE JSON line {"ok": true, "result": ...} or {"ok": false, "error": "..."}
// and exits 0 / 1. Everything else goes to stderr.
const net = require('net');

const logger = {
  debug() {},
  info(...a) { if (process.env.PEER_DEBUG) console.error('[info]', ...a); },
  warn(...a) { console.error('[warn]', ...a); },
  error(...a) { console.error('[error]', ...a); },
};

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// RpcServer listens on every interface; the harness binds loopback only.
function loopbackServerClass(RpcServer) {
  return class LoopbackRpcServer extends RpcServer {
    _startServer(port) {
      const server = net.createServer();
      server.once('error', err => { this.emit('error', err); });
      server.on('connection', socket => { this._handleSocket(socket); });
      server.listen(port, '127.0.0.1', () => {
        const realPort = server.address().port;
        if (port === this.publishPort && port === 0) this.publishPort = realPort;
      });
      return server;
    }
  };
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error('bad argument: ' + a);
    out[a.slice(2)] = argv[++i];
  }
  return out;
}

function guard(ms) {
  // Hard upper bound on a client's life: never hang the test suite.
  const t = setTimeout(() => {
    emit({ ok: false, error: 'peer client timed out after ' + ms + ' ms' });
    process.exit(3);
  }, ms);
  t.unref();
}

module.exports = { logger, emit, loopbackServerClass, parseArgs, guard };
