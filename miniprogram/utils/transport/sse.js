// wx.request with enableChunked (base library ≥ 2.20.2) to the custom domain: real SSE.
var SseDecoder = require('../sse.js').SseDecoder;
var Utf8Decoder = require('../utf8.js').Utf8Decoder;
var createWatch = require('./watch.js').createWatch;
var clientMessageId = require('./watch.js').clientMessageId;

// How long a stream that ended without `done` waits for chunks still on their way
// (WeChat may call `success` before the last onChunkReceived) before watching again.
var LATE_CHUNK_GRACE_MS = 300;

function sseTransport(api) {
  function path(watch, suffix) {
    return '/api/conversations/' + watch.conversationId + '/messages' + suffix;
  }

  // One HTTP stream. `attempt` counts re-watches after cuts; `relogged` one re-login.
  function open(watch, method, suffix, data, attempt, relogged) {
    var stream = { task: null, status: 0, errorBytes: [], chunkBytes: 0, over: false, idle: 0 };
    var decoder = new SseDecoder();
    var cleanup = function () { stream.over = true; clearTimeout(stream.idle); if (stream.task) stream.task.abort(); };
    watch.onStop.push(cleanup);

    // The server sends a keepalive comment every 15 s: silence longer than `socketIdleMs`
    // means a half-open connection. Watch the reply again on a new one.
    function watchdog() {
      clearTimeout(stream.idle);
      stream.idle = setTimeout(function () {
        if (stream.over || watch.finished || watch.stopped) return;
        var stalled = stream.task;
        resume();
        if (stalled) stalled.abort();
      }, api.config.socketIdleMs || 45000);
    }

    function feed(chunk) {
      if (stream.over || !chunk || !chunk.byteLength) return;
      if (stream.status && stream.status !== 200) { stream.errorBytes.push(new Uint8Array(chunk)); return; }
      decoder.push(chunk).forEach(function (event) {
        var payload;
        try { payload = JSON.parse(event.data); } catch (e) { return; }
        watch.emit(event.event, payload);
      });
    }

    function errorCode(res) {
      var text = '';
      var utf8 = new Utf8Decoder();
      stream.errorBytes.forEach(function (bytes) { text += utf8.decode(bytes); });
      if (!text && res.data) text = typeof res.data === 'string' ? res.data : utf8.decode(res.data);
      try { return JSON.parse(text).error.code; } catch (e) { return 'http_' + res.statusCode; }
    }

    // The stream ended without `done`/`error` (a proxy cut it, the app went to the
    // background): the reply goes on at the server, so watch it again.
    function resume() {
      stream.over = true;
      clearTimeout(stream.idle);
      if (watch.finished || watch.stopped) return;
      if (!watch.messageId || attempt >= 3) { watch.fail('network'); return; }
      watch.rewind();
      open(watch, 'GET', '/' + watch.messageId + '/stream', undefined, attempt + 1, relogged);
    }

    var sending = method === 'POST';
    if (sending) watch.inFlight = true;
    api.ensureToken().then(function (token) {
      if (watch.stopped || stream.over) return;
      // 停止 came before the send went out: nothing reaches the server.
      if (sending && watch.signal.aborted) { watch.settleStart(null); return; }
      stream.task = wx.request({
        url: api.config.baseUrl + path(watch, suffix),
        method: method,
        data: data,
        header: { 'content-type': 'application/json', Accept: 'text/event-stream', Authorization: 'Bearer ' + token },
        enableChunked: true,
        responseType: 'arraybuffer',
        timeout: 600000,
        success: function (res) {
          clearTimeout(stream.idle);
          if (stream.over) return;
          stream.status = res.statusCode;
          if (res.statusCode === 401 && !relogged) {
            stream.over = true;
            api.renewToken(token).then(function () {
              if (!watch.stopped) open(watch, method, suffix, data, attempt, true);
              else if (sending) watch.settleStart(null);
            }, function () { watch.fail('network'); });
            return;
          }
          var body = res.data instanceof ArrayBuffer ? res.data : null;
          if (res.statusCode !== 200) {
            if (body && body.byteLength > stream.chunkBytes) stream.errorBytes.push(new Uint8Array(body.slice(stream.chunkBytes)));
            watch.fail(errorCode(res));
            stream.over = true;
            return;
          }
          // PC WeChat may deliver the body here instead of (or besides) chunk by chunk:
          // only what the chunks have not delivered is new.
          if (body && body.byteLength > stream.chunkBytes) {
            feed(body.slice(stream.chunkBytes));
            stream.chunkBytes = body.byteLength;
          }
          setTimeout(resume, LATE_CHUNK_GRACE_MS);
        },
        fail: function () {
          clearTimeout(stream.idle);
          // A dropped connection mid-reply: the reply goes on at the server; follow it again.
          if (!stream.over) resume();
        }
      });
      watchdog();
      stream.task.onHeadersReceived(function (res) { if (res.statusCode) stream.status = res.statusCode; });
      stream.task.onChunkReceived(function (res) {
        if (!stream.over) watchdog();
        var chunk = /** @type {ArrayBuffer} */ (res.data);
        feed(chunk);
        if (chunk) stream.chunkBytes += chunk.byteLength;
      });
    }, function (error) { watch.fail(error.code || 'network'); });
  }

  return {
    name: 'sse',
    send: function (conversationId, content, handlers, clientId) {
      var watch = createWatch(api, conversationId, handlers);
      open(watch, 'POST', '', { content: content, stream: true, client_message_id: clientId || clientMessageId() }, 0, false);
      return watch.handle;
    },
    reattach: function (conversationId, messageId, handlers, shown) {
      var watch = createWatch(api, conversationId, handlers, shown);
      watch.messageId = messageId;
      open(watch, 'GET', '/' + messageId + '/stream', undefined, 0, false);
      return watch.handle;
    },
    close: function () {}
  };
}

module.exports = { sseTransport: sseTransport };
