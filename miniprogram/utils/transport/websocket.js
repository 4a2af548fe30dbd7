// wx.cloud.connectContainer (base library ≥ 2.23.0): one WebSocket per transport carrying
// the same events as JSON frames. The page closes it when it unloads (WeChat allows five
// sockets at a time); a heartbeat finds a half-open socket and closes it, so replies
// being watched end with `network` and the page can watch them again.
var createWatch = require('./watch.js').createWatch;
var clientMessageId = require('./watch.js').clientMessageId;

var CONNECT_TIMEOUT_MS = 10000;

function websocketTransport(api) {
  var heartbeatMs = api.config.heartbeatMs || 15000;
  var idleMs = api.config.socketIdleMs || 45000;
  var connecting = null;
  var current = null; // { socket, timer, lastHeard }
  var watches = {};
  var counter = 0;
  var closed = false;

  function lost() {
    Object.keys(watches).forEach(function (id) {
      var watch = watches[id];
      delete watches[id];
      watch.fail('network');
    });
  }

  function drop(connection) {
    clearInterval(connection.timer);
    if (current === connection) current = null;
  }

  function route(frame) {
    var watch = watches[frame.request_id];
    if (!watch) return;
    if (frame.type === 'done' || frame.type === 'error') delete watches[frame.request_id];
    watch.emit(frame.type, frame);
  }

  function open(token) {
    return wx.cloud.connectContainer({ config: { env: api.config.cloudEnv }, service: api.config.service, path: '/api/ws' })
      .then(function (result) {
        var socket = result.socketTask;
        var connection = { socket: socket, timer: 0, lastHeard: Date.now() };
        return new Promise(function (resolve, reject) {
          var ready = false;
          socket.onOpen(function () {
            // In iOS 高性能+ mode the platform sends no identity: the token is the identity.
            socket.send({ data: JSON.stringify({ type: 'auth', token: token }) });
          });
          socket.onMessage(function (message) {
            connection.lastHeard = Date.now();
            var frame;
            try { frame = JSON.parse(String(message.data)); } catch (e) { return; }
            if (!ready && frame.type === 'ready') { ready = true; current = connection; heartbeat(connection); resolve(connection); return; }
            if (!ready && frame.type === 'error') { reject(frame); return; }
            route(frame);
          });
          // Only the socket in use fails the replies watched on it (a replaced one may close late).
          var gone = function () {
            var wasCurrent = current === connection;
            drop(connection);
            if (!ready) reject({ code: 'network' });
            else if (wasCurrent) lost();
          };
          socket.onClose(gone);
          socket.onError(gone);
          // A handshake that never finishes (a dying network) must not hold every later send.
          setTimeout(function () {
            if (ready) return;
            reject({ code: 'network' });
            socket.close({});
          }, CONNECT_TIMEOUT_MS);
        });
      });
  }

  // Pings keep proxies from idling the socket out; silence longer than `idleMs` means the
  // socket is half-open: close it rather than leave "正在思考…" forever.
  function heartbeat(connection) {
    connection.timer = setInterval(function () {
      if (Date.now() - connection.lastHeard > idleMs) {
        drop(connection);
        connection.socket.close({});
        lost();
        return;
      }
      connection.socket.send({ data: JSON.stringify({ type: 'ping' }) });
    }, heartbeatMs);
  }

  function connect(relogged) {
    if (current) return Promise.resolve(current);
    if (connecting) return connecting;
    if (!wx.cloud || !wx.cloud.connectContainer) return Promise.reject({ code: 'client_outdated' });
    var used = '';
    connecting = api.ensureToken().then(function (token) {
      used = token;
      return open(token);
    }).then(function (connection) {
      connecting = null;
      return connection;
    }, function (error) {
      connecting = null;
      if (error && error.code === 'unauthorized' && !relogged) {
        return api.renewToken(used).then(function () { return connect(true); });
      }
      throw error;
    });
    return connecting;
  }

  function request(frame, watch) {
    var requestId = 'r' + (++counter) + '_' + Date.now();
    frame.request_id = requestId;
    watches[requestId] = watch;
    closed = false;
    watch.onStop.push(function () {
      delete watches[requestId];
      if (watch.messageId && !watch.finished && current) {
        current.socket.send({ data: JSON.stringify({ type: 'stop', message_id: watch.messageId }) });
      }
    });
    var sending = frame.type === 'send';
    if (sending) watch.inFlight = true;
    connect(false).then(function (connection) {
      if (watch.stopped) return;
      // 停止 came before the send went out: nothing reaches the server.
      if (sending && watch.signal.aborted) { delete watches[requestId]; watch.settleStart(null); return; }
      connection.socket.send({ data: JSON.stringify(frame) });
    }, function (error) {
      delete watches[requestId];
      // Nothing was sent: the page may fall back to another transport.
      watch.fail(error && error.code === 'client_outdated' ? 'client_outdated' : 'transport_unavailable');
    });
    return watch.handle;
  }

  return {
    name: 'websocket',
    send: function (conversationId, content, handlers, clientId) {
      var watch = createWatch(api, conversationId, handlers);
      return request({ type: 'send', conversation_id: conversationId, content: content, client_message_id: clientId || clientMessageId() }, watch);
    },
    reattach: function (conversationId, messageId, handlers, shown) {
      var watch = createWatch(api, conversationId, handlers, shown);
      watch.messageId = messageId;
      return request({ type: 'reattach', conversation_id: conversationId, message_id: messageId }, watch);
    },
    // The page is going away: nothing more will be watched on this socket.
    close: function () {
      closed = true;
      watches = {};
      var connection = current;
      if (connection) { drop(connection); connection.socket.close({}); }
      else if (connecting) connecting.then(function (c) { if (closed) { drop(c); c.socket.close({}); } }, function () {});
    },
    openSockets: function () { return current ? 1 : 0; }
  };
}

module.exports = { websocketTransport: websocketTransport };
