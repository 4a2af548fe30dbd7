// The three ways a reply reaches the mini-program. Each transport offers
//   send(conversationId, content, handlers, clientId?) and reattach(conversationId, messageId, handlers, shown)
// returning { stop(), cancel(), messageId() } (see watch.js), and close() for page unload.
// handlers.onEvent(name, data) receives the server's events: start, notice, reasoning,
// delta, done, error (exactly one of the last two ends a reply).
var sseTransport = require('./sse.js').sseTransport;
var websocketTransport = require('./websocket.js').websocketTransport;
var pollingTransport = require('./polling.js').pollingTransport;

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
