// The three ways a reply reaches the mini-program. Each transport offers
//   send(conversationId, content, handlers) and reattach(conversationId, messageId, handlers)
// and returns { stop() }. handlers.onEvent(name, data) receives the server's events:
// start, delta, reasoning, done, error (exactly one of the last two ends a reply).
// stop() only stops watching: the server keeps generating and stores the reply.
var SseDecoder = require('./sse.js').SseDecoder;
var Utf8Decoder = require('./utf8.js').Utf8Decoder;
var errors = require('./errors.js');

function isTerminal(name) {
  return name === 'done' || name === 'error';
}

function networkError(handlers) {
  handlers.onEvent('error', { code: 'network', message: errors.friendlyMessage('network') });
}

// 1. wx.request with enableChunked to the custom domain: real SSE.
function sseTransport(api) {
  // `suffix` follows /api/conversations/{id}/messages: '' to send, '/{message_id}/stream' to reattach.
  function open(conversationId, method, suffix, data, handlers, retried) {
    var path = '/api/conversations/' + conversationId + '/messages' + suffix;
    var state = { stopped: false, finished: false, task: null, status: 0, errorBytes: [], sawChunk: false, assistantId: null, delivered: 0 };
    var decoder = new SseDecoder();

    function dispatch(name, payload) {
      if (state.finished || state.stopped) return;
      if (isTerminal(name)) state.finished = true;
      if (name === 'start') state.assistantId = payload.assistant_message_id;
      if (name === 'delta') state.delivered += payload.content.length;
      handlers.onEvent(name, payload);
    }

    function feed(chunk) {
      if (!chunk || state.stopped) return;
      if (state.status && state.status !== 200) {
        state.errorBytes.push(new Uint8Array(chunk));
        return;
      }
      decoder.push(chunk).forEach(function (event) {
        var payload;
        try { payload = JSON.parse(event.data); } catch (e) { return; }
        dispatch(event.event, payload);
      });
    }

    function errorBody(res) {
      var text = '';
      var utf8 = new Utf8Decoder();
      state.errorBytes.forEach(function (bytes) { text += utf8.decode(bytes); });
      if (!text && res.data) text = typeof res.data === 'string' ? res.data : utf8.decode(res.data);
      try { return JSON.parse(text).error || {}; } catch (e) { return {}; }
    }

    // The stream ended without `done`/`error` (a proxy cut it): the reply goes on at the
    // server, so watch it again, passing on only the text not delivered yet.
    function resume() {
      if (!state.assistantId || retried) { state.finished = true; networkError(handlers); return; }
      var skip = state.delivered;
      var again = open(conversationId, 'GET', '/' + state.assistantId + '/stream', undefined, {
        onEvent: function (name, payload) {
          if (name === 'delta' && skip > 0) {
            var rest = payload.content.slice(skip);
            skip -= Math.min(skip, payload.content.length);
            if (!rest) return;
            payload = { content: rest };
          }
          handlers.onEvent(name, payload);
        }
      }, true);
      state.task = { abort: again.stop };
    }

    api.ensureToken().then(function (token) {
      if (state.stopped) return;
      state.task = wx.request({
        url: api.config.baseUrl + path,
        method: method,
        data: data,
        header: { 'content-type': 'application/json', Accept: 'text/event-stream', Authorization: 'Bearer ' + token },
        enableChunked: true,
        responseType: 'arraybuffer',
        timeout: 600000,
        success: function (res) {
          state.status = res.statusCode;
          if (res.statusCode === 401 && !retried) {
            api.clearToken();
            api.login().then(function () {
              var again = open(conversationId, method, suffix, data, handlers, true);
              state.task = { abort: again.stop };
            }, function () { networkError(handlers); });
            return;
          }
          if (res.statusCode !== 200) {
            var error = errorBody(res);
            dispatch('error', { code: error.code || 'http_' + res.statusCode, message: errors.friendlyMessage(error.code, error.message) });
            return;
          }
          // PC WeChat may deliver everything here instead of chunk by chunk.
          if (!state.sawChunk && res.data && res.data.byteLength) feed(res.data);
          // Chunk callbacks still queued run first.
          setTimeout(function () {
            if (!state.finished && !state.stopped) resume();
          }, 0);
        },
        fail: function () {
          // A dropped connection mid-reply: the reply goes on at the server; follow it again.
          if (!state.stopped && !state.finished) resume();
        }
      });
      if (state.task.onHeadersReceived) {
        state.task.onHeadersReceived(function (res) { if (res.statusCode) state.status = res.statusCode; });
      }
      state.task.onChunkReceived(function (res) { state.sawChunk = true; feed(res.data); });
    }, function () { networkError(handlers); });

    return {
      stop: function () {
        state.stopped = true;
        if (state.task) state.task.abort();
      }
    };
  }

  return {
    name: 'sse',
    send: function (conversationId, content, handlers) {
      return open(conversationId, 'POST', '', { content: content, stream: true }, handlers, false);
    },
    reattach: function (conversationId, messageId, handlers) {
      return open(conversationId, 'GET', '/' + messageId + '/stream', undefined, handlers, false);
    }
  };
}

// 2. wx.cloud.connectContainer: a WebSocket carrying the same events as JSON frames.
function websocketTransport(api) {
  var connecting = null;
  var pending = {};
  var counter = 0;

  function failAll() {
    Object.keys(pending).forEach(function (id) {
      var handlers = pending[id];
      delete pending[id];
      networkError(handlers);
    });
  }

  function route(frame) {
    var handlers = pending[frame.request_id];
    if (!handlers) return;
    if (isTerminal(frame.type)) delete pending[frame.request_id];
    if (frame.type === 'error') frame.message = errors.friendlyMessage(frame.code, frame.message);
    handlers.onEvent(frame.type, frame);
  }

  function connect(retried) {
    if (connecting) return connecting;
    connecting = api.ensureToken().then(function (token) {
      return wx.cloud.connectContainer({ config: { env: api.config.cloudEnv }, service: api.config.service, path: '/api/ws' })
        .then(function (result) {
          var socket = result.socketTask;
          return new Promise(function (resolve, reject) {
            var ready = false;
            socket.onOpen(function () {
              // In iOS 高性能+ mode the platform sends no identity: the token is the identity.
              socket.send({ data: JSON.stringify({ type: 'auth', token: token }) });
            });
            socket.onMessage(function (message) {
              var frame;
              try { frame = JSON.parse(message.data); } catch (e) { return; }
              if (!ready && frame.type === 'ready') { ready = true; resolve(socket); return; }
              if (!ready && frame.type === 'error') { reject(frame); return; }
              route(frame);
            });
            socket.onClose(function () {
              connecting = null;
              // Before `ready` the connect promise reports the failure (and may retry);
              // after it, replies being watched on this socket lost their connection.
              if (!ready) reject({ code: 'network' });
              else failAll();
            });
            socket.onError(function () {
              connecting = null;
              if (!ready) reject({ code: 'network' });
            });
          });
        });
    }).catch(function (error) {
      connecting = null;
      if (error && error.code === 'unauthorized' && !retried) {
        api.clearToken();
        return api.login().then(function () { return connect(true); });
      }
      throw error;
    });
    return connecting;
  }

  function request(frame, handlers) {
    var requestId = 'r' + (++counter) + '_' + Date.now();
    var stopped = false;
    var messageId = frame.message_id || null;
    frame.request_id = requestId;
    pending[requestId] = {
      onEvent: function (name, data) {
        if (data && data.message_id) messageId = data.message_id;
        if (!stopped) handlers.onEvent(name, data);
      }
    };
    connect(false).then(function (socket) {
      if (!stopped) socket.send({ data: JSON.stringify(frame) });
    }, function () {
      // Nothing was sent: the caller may safely fall back to another transport.
      delete pending[requestId];
      if (!stopped) handlers.onEvent('error', { code: 'transport_unavailable', message: errors.friendlyMessage('network') });
    });
    return {
      stop: function () {
        stopped = true;
        delete pending[requestId];
        if (messageId && connecting) {
          connecting.then(function (socket) { socket.send({ data: JSON.stringify({ type: 'stop', message_id: messageId }) }); }, function () {});
        }
      }
    };
  }

  return {
    name: 'websocket',
    send: function (conversationId, content, handlers) {
      return request({ type: 'send', conversation_id: conversationId, content: content }, handlers);
    },
    reattach: function (conversationId, messageId, handlers) {
      return request({ type: 'reattach', conversation_id: conversationId, message_id: messageId }, handlers);
    }
  };
}

// 3. wx.cloud.callContainer (or plain wx.request): no streaming; send, then poll.
function pollingTransport(api) {
  // A reply is polled for at most this long before the page is told to check back later.
  var MAX_POLL_MS = 10 * 60 * 1000;

  function follow(conversationId, message, handlers, state) {
    if (state.stopped) return;
    state.since = state.since || Date.now();
    var text = message.content || '';
    if (text.length > state.sent) {
      handlers.onEvent('delta', { content: text.slice(state.sent) });
      state.sent = text.length;
    }
    if (message.status !== 'streaming') {
      if (message.error) {
        handlers.onEvent('error', { code: message.error.code, message: errors.friendlyMessage(message.error.code, message.error.message) });
      } else {
        handlers.onEvent('done', { assistant_message_id: message.id, finish_reason: message.finish_reason || 'stop', usage: message.usage || null });
      }
      return;
    }
    if (Date.now() - state.since > MAX_POLL_MS) {
      handlers.onEvent('error', { code: 'network', message: errors.friendlyMessage('timeout') });
      return;
    }
    state.timer = setTimeout(function () {
      api.get('/api/conversations/' + conversationId + '/messages/' + message.id).then(function (latest) {
        follow(conversationId, latest, handlers, state);
      }, function (error) {
        if (!state.stopped) handlers.onEvent('error', { code: error.code, message: error.message });
      });
    }, api.config.pollIntervalMs);
  }

  function fail(handlers, state) {
    return function (error) {
      if (!state.stopped) handlers.onEvent('error', { code: error.code, message: error.message });
    };
  }

  return {
    name: 'callContainer',
    send: function (conversationId, content, handlers) {
      var state = { stopped: false, sent: 0, timer: null };
      api.requestFull('POST', '/api/conversations/' + conversationId + '/messages', { content: content, stream: false })
        .then(function (res) {
          if (state.stopped) return;
          handlers.onEvent('start', { user_message_id: res.data.user_message.id, assistant_message_id: res.data.assistant_message.id });
          follow(conversationId, res.data.assistant_message, handlers, state);
        }, fail(handlers, state));
      return { stop: function () { state.stopped = true; clearTimeout(state.timer); } };
    },
    reattach: function (conversationId, messageId, handlers) {
      var state = { stopped: false, sent: 0, timer: null };
      api.get('/api/conversations/' + conversationId + '/messages/' + messageId).then(function (message) {
        follow(conversationId, message, handlers, state);
      }, fail(handlers, state));
      return { stop: function () { state.stopped = true; clearTimeout(state.timer); } };
    }
  };
}

function streamingAvailable(name) {
  if (name === 'sse') return typeof wx.canIUse !== 'function' || wx.canIUse('request.object.enableChunked');
  if (name === 'websocket') return !!(wx.cloud && wx.cloud.connectContainer);
  return false;
}

// The configured transport, or polling when this client cannot stream with it.
function createTransport(api, name) {
  var wanted = name || api.config.transport;
  if (wanted === 'sse' && streamingAvailable('sse')) return sseTransport(api);
  if (wanted === 'websocket' && streamingAvailable('websocket')) return websocketTransport(api);
  return pollingTransport(api);
}

module.exports = {
  createTransport: createTransport,
  sseTransport: sseTransport,
  websocketTransport: websocketTransport,
  pollingTransport: pollingTransport
};
