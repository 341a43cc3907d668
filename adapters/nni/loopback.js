// facenas: make NNI's node processes listen on one interface (127.0.0.1 unless
// FACENAS_NNI_BIND_HOST says otherwise) instead of all of them.
//
// NNI 3.0's web server calls `app.listen(port)` without a host, which Node binds to every
// interface, and offers no option to change it. facenas launchers load this file into the NNI
// manager with NODE_OPTIONS="--require <this file>"; it fills in the host of any listen() call
// that gives a port but no host. Calls that name a host or a socket path are left alone.
'use strict';
const net = require('net');

const host = process.env.FACENAS_NNI_BIND_HOST || '127.0.0.1';
const originalListen = net.Server.prototype.listen;

function isPort(value) {
  return typeof value === 'number' || (typeof value === 'string' && /^\d+$/.test(value));
}

net.Server.prototype.listen = function listenOnHost(...args) {
  const first = args[0];
  if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
    if (first.port !== undefined && first.host === undefined && first.path === undefined && first.fd === undefined
        && first._handle === undefined) {
      args[0] = Object.assign({}, first, { host });
    }
  } else if (isPort(first) && typeof args[1] !== 'string') {
    args.splice(1, 0, host);
  }
  return originalListen.apply(this, args);
};
