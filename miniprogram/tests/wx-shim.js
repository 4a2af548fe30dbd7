// A `wx` for Node that behaves like the mini-program runtime where the client relies on it:
// wx.request (with enableChunked delivering the server's real chunks as ArrayBuffers),
// wx.cloud.callContainer (platform identity headers, 15 s cut), wx.cloud.connectContainer
// (a real WebSocket, identity headers unless in iOS 高性能+ mode), wx.login, storage.
const http = require('node:http');
const WebSocket = require('ws');

function toArrayBuffer(buf) {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

function createWx({ baseUrl, devName, highPerformanceMode = false, dropStreamAfterChunks = 0 }) {
  const storage = new Map();
  const openid = 'dev_' + devName;
  const platformHeaders = () => {
    const headers = { 'X-WX-SOURCE': 'wx_client', 'X-WX-APPID': 'wx_test', 'X-WX-ENV': 'test-env' };
    if (!highPerformanceMode) headers['X-WX-OPENID'] = openid;
    return headers;
  };
  const stats = { chunks: 0, requests: [] };

  function httpRequest(opts, extraHeaders, cutAfterMs) {
    const chunkListeners = [];
    const headerListeners = [];
    let aborted = false;
    const url = new URL(opts.url);
    const body = opts.data === undefined || opts.method === 'GET' ? null
      : typeof opts.data === 'string' ? opts.data : JSON.stringify(opts.data);
    const headers = Object.assign({}, opts.header, extraHeaders);
    if (body !== null) headers['content-length'] = Buffer.byteLength(body);
    stats.requests.push({ method: opts.method || 'GET', path: url.pathname + url.search, headers });
    const fail = (errMsg, errCode) => {
      if (opts.fail) opts.fail({ errMsg, errCode });
      if (opts.complete) opts.complete({ errMsg });
    };
    const req = http.request(url, { method: opts.method || 'GET', headers }, (res) => {
      headerListeners.forEach((cb) => cb({ statusCode: res.statusCode, header: res.headers }));
      const chunks = [];
      let streamed = 0;
      res.on('data', (chunk) => {
        if (aborted) return;
        if (opts.enableChunked) {
          stats.chunks += 1;
          chunkListeners.forEach((cb) => cb({ data: toArrayBuffer(chunk) }));
          streamed += 1;
          // Simulates the network dropping a stream midway (once per shim).
          if (dropStreamAfterChunks && streamed === dropStreamAfterChunks && !stats.dropped) {
            stats.dropped = true;
            aborted = true;
            req.destroy();
            fail('request:fail connection reset');
          }
        } else {
          chunks.push(chunk);
        }
      });
      res.on('end', () => {
        if (aborted) return;
        const all = Buffer.concat(chunks);
        let data;
        if (opts.enableChunked) data = new ArrayBuffer(0);
        else if (opts.responseType === 'arraybuffer') data = toArrayBuffer(all);
        else {
          const text = all.toString('utf8');
          try { data = JSON.parse(text); } catch (e) { data = text; }
        }
        const result = { statusCode: res.statusCode, data, header: res.headers, errMsg: 'request:ok' };
        if (opts.success) opts.success(result);
        if (opts.complete) opts.complete(result);
      });
      res.on('error', () => { if (!aborted) fail('request:fail connection reset'); });
    });
    req.on('error', (e) => { if (!aborted) { aborted = true; fail('request:fail ' + e.message); } });
    const limit = cutAfterMs || opts.timeout;
    if (limit) {
      req.setTimeout(limit, () => {
        if (aborted) return;
        aborted = true;
        req.destroy();
        fail(cutAfterMs ? 'cloud.callContainer:fail timeout' : 'request:fail timeout', cutAfterMs ? 102002 : undefined);
      });
    }
    req.end(body === null ? undefined : body);
    return {
      abort() {
        if (aborted) return;
        aborted = true;
        req.destroy();
        fail('request:fail abort');
      },
      onChunkReceived(cb) { chunkListeners.push(cb); },
      offChunkReceived() {},
      onHeadersReceived(cb) { headerListeners.push(cb); }
    };
  }

  const wx = {
    stats,
    openid,
    sockets: [],
    getStorageSync: (key) => (storage.has(key) ? storage.get(key) : ''),
    setStorageSync: (key, value) => { storage.set(key, value); },
    removeStorageSync: (key) => { storage.delete(key); },
    login: ({ success }) => setImmediate(() => success({ code: 'dev:' + devName, errMsg: 'login:ok' })),
    canIUse: () => true,
    setNavigationBarTitle: () => {},
    stopPullDownRefresh: () => {},
    navigateTo: ({ url }) => { wx.lastNavigation = url; },
    showModal: ({ success }) => success({ confirm: true }),
    request: (opts) => httpRequest(opts, {}),
    cloud: {
      init: () => {},
      callContainer: (opts) => {
        httpRequest(Object.assign({}, opts, { url: baseUrl + opts.path }), platformHeaders(), 15000);
      },
      connectContainer: ({ path }) => {
        const socket = new WebSocket(baseUrl.replace(/^http/, 'ws') + path, { headers: platformHeaders() });
        const socketTask = {
          send: ({ data }) => socket.send(data),
          close: () => socket.close(),
          onOpen: (cb) => socket.on('open', () => cb({})),
          onMessage: (cb) => socket.on('message', (data) => cb({ data: data.toString() })),
          onClose: (cb) => socket.on('close', (code, reason) => cb({ code, reason: reason.toString() })),
          onError: (cb) => socket.on('error', (e) => cb({ errMsg: e.message }))
        };
        wx.sockets.push(socket);
        return Promise.resolve({ socketTask });
      }
    }
  };
  return wx;
}

// Loads a page's real module and returns an instance with a working setData
// (including 'messages[3].content' style paths).
function loadPage(file, app) {
  let definition = null;
  global.Page = (d) => { definition = d; };
  global.getApp = () => app;
  delete require.cache[require.resolve(file)];
  require(file);
  const page = Object.create(definition);
  page.data = JSON.parse(JSON.stringify(definition.data));
  page.setData = (patch, callback) => {
    for (const [path, value] of Object.entries(patch)) setPath(page.data, path, value);
    if (callback) callback();
  };
  return page;
}

function setPath(target, path, value) {
  const keys = path.match(/[^.[\]]+/g).map((k) => (/^\d+$/.test(k) ? Number(k) : k));
  let node = target;
  for (const key of keys.slice(0, -1)) node = node[key];
  node[keys[keys.length - 1]] = value;
}

module.exports = { createWx, loadPage };
