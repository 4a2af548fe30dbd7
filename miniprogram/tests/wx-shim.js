// A `wx` for Node that behaves like the mini-program runtime where the client relies on it:
// wx.request (with enableChunked delivering the server's real chunks as ArrayBuffers),
// wx.cloud.callContainer (platform identity headers, 15 s cut), wx.cloud.connectContainer
// (a real WebSocket, identity headers unless in iOS 高性能+ mode), wx.login, storage.
// It can also misbehave the way phones do: cut a stream midway, deliver the last chunk
// after `success`, hold a login, refuse to connect, leave a socket half-open, and go to
// the background (sockets closed, streams cut).
const http = require('node:http');
const path = require('node:path');
const WebSocket = require('ws');

function toArrayBuffer(buf) {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

function createWx({ baseUrl, devName, highPerformanceMode = false, dropStreamAfterChunks = 0, lateChunkMs = 0, loginDelayMs = 0 }) {
  const storage = new Map();
  const openid = 'dev_' + devName;
  const platformHeaders = () => {
    const headers = { 'X-WX-SOURCE': 'wx_client', 'X-WX-APPID': 'wx_test', 'X-WX-ENV': 'test-env' };
    if (!highPerformanceMode) headers['X-WX-OPENID'] = openid;
    return headers;
  };
  const stats = { chunks: 0, requests: [], setData: 0 };
  const inFlight = new Set(); // chunked requests still streaming, cut by goBackground()
  const stalled = new Set(); // streams gone silent (half-open): nothing more arrives

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
    // In the background new requests fail until the app returns.
    if (wx.inBackground) {
      setImmediate(() => { if (opts.fail) opts.fail({ errMsg: 'request:fail interrupted' }); });
      return { abort() {}, onChunkReceived() {}, offChunkReceived() {}, onHeadersReceived() {} };
    }
    // wx.failNext = { match: /regex/, times: n }: the next n matching requests never get
    // through; with `afterSending`, they reach the server but the answer is lost.
    let loseAnswer = false;
    if (wx.failNext && wx.failNext.times > 0 && wx.failNext.match.test(url.pathname) && wx.failNext.afterSending) {
      wx.failNext.times -= 1;
      loseAnswer = true;
    } else if (wx.failNext && wx.failNext.times > 0 && wx.failNext.match.test(url.pathname)) {
      wx.failNext.times -= 1;
      setImmediate(() => { if (opts.fail) opts.fail({ errMsg: 'request:fail network' }); });
      return { abort() {}, onChunkReceived() {}, offChunkReceived() {}, onHeadersReceived() {} };
    }
    const fail = (errMsg, errCode) => {
      if (opts.fail) opts.fail({ errMsg, errCode });
      if (opts.complete) opts.complete({ errMsg });
    };
    const cut = (errMsg) => {
      if (aborted) return;
      aborted = true;
      inFlight.delete(cut);
      req.destroy();
      fail(errMsg);
    };
    if (opts.enableChunked) inFlight.add(cut);
    // With lateChunkMs, the first stream's last three chunks (text and the end) arrive
    // after `success`.
    const holdLast = opts.enableChunked && lateChunkMs && !stats.holding;
    if (holdLast) stats.holding = true;
    const held = [];
    const deliver = (chunk) => {
      stats.chunks += 1;
      chunkListeners.forEach((cb) => cb({ data: toArrayBuffer(chunk) }));
    };
    const req = http.request(url, { method: opts.method || 'GET', headers }, (res) => {
      if (loseAnswer) { cut('request:fail connection reset'); return; }
      headerListeners.forEach((cb) => cb({ statusCode: res.statusCode, header: res.headers }));
      const chunks = [];
      let streamed = 0;
      res.on('data', (chunk) => {
        if (aborted || stalled.has(cut)) return;
        if (opts.enableChunked) {
          if (holdLast) {
            held.push(chunk);
            if (held.length > 3) deliver(held.shift());
          } else {
            deliver(chunk);
          }
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
        if (aborted || stalled.has(cut)) return;
        inFlight.delete(cut);
        const all = Buffer.concat(chunks);
        let data;
        if (opts.enableChunked) data = new ArrayBuffer(0);
        else if (opts.responseType === 'arraybuffer') data = toArrayBuffer(all);
        else {
          const text = all.toString('utf8');
          try { data = JSON.parse(text); } catch (e) { data = text; }
        }
        const result = { statusCode: res.statusCode, data, header: res.headers, errMsg: 'request:ok' };
        // wx.delayNext = { match: /regex/, ms }: this answer arrives late (once).
        const late = wx.delayNext && wx.delayNext.match.test(url.pathname) ? wx.delayNext.ms : 0;
        if (late) wx.delayNext = null;
        setTimeout(() => {
          if (opts.success) opts.success(result);
          if (opts.complete) opts.complete(result);
        }, late);
        // WeChat may call `success` before the last onChunkReceived.
        if (held.length) {
          const last = held.splice(0);
          stats.lateChunks = (stats.lateChunks || 0) + last.length;
          stats.lateText = Buffer.concat(last).toString('utf8');
          setTimeout(() => last.forEach(deliver), lateChunkMs);
        }
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
      abort() { cut('request:fail abort'); },
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
    login: ({ success }) => {
      stats.logins = (stats.logins || 0) + 1;
      setTimeout(() => success({ code: 'dev:' + devName, errMsg: 'login:ok' }), loginDelayMs);
    },
    canIUse: () => true,
    setNavigationBarTitle: () => {},
    stopPullDownRefresh: () => {},
    navigateTo: ({ url }) => { wx.lastNavigation = url; },
    navigateBack: () => { wx.wentBack = (wx.wentBack || 0) + 1; },
    reLaunch: ({ url }) => { wx.lastNavigation = url; },
    switchTab: ({ url }) => { wx.lastNavigation = url; },
    // Dialogs: every one shown is recorded; the user confirms unless a test says otherwise.
    modals: [],
    answerModal: () => ({ confirm: true, cancel: false }),
    showModal: (opts) => {
      wx.modals.push(opts);
      setImmediate(() => opts.success && opts.success(wx.answerModal(opts)));
    },
    toasts: [],
    showToast: ({ title }) => { wx.toasts.push(title); },
    clipboard: '',
    setClipboardData: ({ data, success }) => { wx.clipboard = data; if (success) success({}); },
    calls: [],
    makePhoneCall: ({ phoneNumber }) => { wx.calls.push(phoneNumber); },
    request: (opts) => httpRequest(opts, {}),
    // The app goes to the background: WeChat closes its sockets and cuts its streams.
    goBackground: () => {
      wx.inBackground = true;
      inFlight.forEach((cut) => cut('request:fail interrupted'));
      wx.sockets.forEach((socket) => socket.terminate());
    },
    goForeground: () => { wx.inBackground = false; },
    // Half-open streams: the connection stays, nothing more arrives.
    stallStreams: () => { inFlight.forEach((cut) => stalled.add(cut)); },
    // Half-open sockets: nothing arrives and nothing sent gets through, until closed.
    freezeSockets: () => { wx.sockets.forEach((socket) => { socket.frozen = true; }); },
    refuseConnections: false,
    openSockets: () => wx.sockets.filter((socket) => socket.readyState === WebSocket.OPEN && !socket.frozen).length,
    cloud: {
      init: () => {},
      callContainer: (opts) => {
        httpRequest(Object.assign({}, opts, { url: baseUrl + opts.path }), platformHeaders(), 15000);
      },
      connectContainer: ({ path: route }) => {
        if (wx.refuseConnections || wx.inBackground) return Promise.reject({ errMsg: 'cloud.connectContainer:fail network' });
        const socket = new WebSocket(baseUrl.replace(/^http/, 'ws') + route, { headers: platformHeaders() });
        const socketTask = {
          send: ({ data }) => {
            stats.frames = (stats.frames || []).concat([JSON.parse(data).type]);
            if (!socket.frozen && socket.readyState === WebSocket.OPEN) socket.send(data);
          },
          close: () => { if (socket.frozen) socket.terminate(); else socket.close(); },
          onOpen: (cb) => socket.on('open', () => cb({})),
          onMessage: (cb) => socket.on('message', (data) => { if (!socket.frozen) cb({ data: data.toString() }); }),
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

// Renders a page's real module, WXML and WXSS with miniprogram-simulate (see simulate.js);
// every setData call is counted in wx.stats.setData.
function loadPage(file, app) {
  const { renderPage } = require('./simulate.js');
  const page = renderPage(path.basename(path.dirname(file)), app);
  const setData = page.setData.bind(page);
  page.setData = (patch, callback) => {
    if (global.wx && global.wx.stats) global.wx.stats.setData += 1;
    return setData(patch, callback);
  };
  return page;
}

module.exports = { createWx, loadPage };
