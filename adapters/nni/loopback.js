// facenas: make NNI's node processes listen on one interface (127.0.0.1 unless
// FACENAS_NNI_BIND_HOST says otherwise) instead of all of them, and answer only requests that
// name a loopback host.
//
// NNI 3.0's web server calls `app.listen(port)` without a host, which Node binds to every
// interface, and offers no option to change it. facenas launchers load this file into the NNI
// manager with NODE_OPTIONS="--require <this file>"; it fills in the host of any listen() call
// that gives a port but no host. Calls that name a host or a socket path are left alone.
//
// Binding 127.0.0.1 does not stop DNS rebinding: a web page whose name first resolves to the
// attacker and then to 127.0.0.1 makes the browser send requests to the local server with
// `Host: evil.example`, and NNI's REST API (no authentication) would stop or change the
// experiment. So every HTTP request and WebSocket upgrade whose Host header is not a loopback
// name -- 127.0.0.1, localhost, [::1], with any port -- is answered 403 before NNI sees it. The
// bind host itself (when it is not a wildcard) and the comma-separated names in
// FACENAS_NNI_ALLOWED_HOSTS are allowed too. A request without a Host header (HTTP/1.0 tools
// on this machine; browsers always send one) is let through.
'use strict';
const net = require('net');
const http = require('http');

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

// -- Host check (DNS-rebinding guard) --------------------------------------------------------
const allowedNames = new Set(['127.0.0.1', 'localhost', '::1']);
if (!['0.0.0.0', '::', ''].includes(host)) {
  allowedNames.add(host.toLowerCase().replace(/^\[|\]$/g, ''));
}
for (const name of (process.env.FACENAS_NNI_ALLOWED_HOSTS || '').split(',')) {
  if (name.trim()) {
    allowedNames.add(name.trim().toLowerCase().replace(/^\[|\]$/g, ''));
  }
}

// The name part of a Host header ("name", "name:port", "[v6]" or "[v6]:port"); null if malformed.
function hostName(header) {
  const text = String(header).trim().toLowerCase();
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0 || !/^(:\d+)?$/.test(text.slice(end + 1))) {
      return null;
    }
    return text.slice(1, end);
  }
  const match = /^([^:\s]+)(:\d+)?$/.exec(text);
  return match ? match[1].replace(/\.$/, '') : null;
}

function hostAllowed(header) {
  if (header === undefined) {
    return true;
  }
  const name = hostName(header);
  return name !== null && allowedNames.has(name);
}

function refusal(header) {
  const shown = JSON.stringify(String(header).slice(0, 100));
  return `facenas: refused a request with Host ${shown}: NNI's server answers loopback names only `
    + '(127.0.0.1, localhost, [::1]; a guard against DNS rebinding)\n';
}

const originalEmit = http.Server.prototype.emit;
http.Server.prototype.emit = function emitIfLoopbackHost(event, req, target, ...rest) {
  if ((event === 'request' || event === 'upgrade') && req && req.headers && !hostAllowed(req.headers.host)) {
    const body = refusal(req.headers.host);
    if (event === 'request') {
      target.writeHead(403, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body),
                              Connection: 'close' });
      target.end(body);
    } else {  // a WebSocket upgrade: `target` is the raw socket
      target.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n`
                 + `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    }
    return true;
  }
  return originalEmit.call(this, event, req, target, ...rest);
};
