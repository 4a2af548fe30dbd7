// wx.cloud.callContainer (or plain wx.request): no streaming; send, then poll the reply.
var createWatch = require('./watch.js').createWatch;
var clientMessageId = require('./watch.js').clientMessageId;

// A reply is polled for at most this long before the page is told to check back later.
var MAX_POLL_MS = 10 * 60 * 1000;
// Failed polls in a row before giving up; a single one (a blip, a 503) is retried.
var MAX_FAILED_POLLS = 5;
var RETRYABLE = ['network', 'timeout', 'rate_limited', 'storage_unavailable', 'dependency_unavailable', 'internal_error', 'shutting_down'];

function pollingTransport(api) {
  function follow(watch, message, state) {
    if (watch.stopped) return;
    (message.notices || []).forEach(function (notice) { watch.emit('notice', notice); });
    if (message.reasoning_content) watch.emit('reasoning', { content: message.reasoning_content.slice(state.reasoning) });
    state.reasoning = Math.max(state.reasoning, (message.reasoning_content || '').length);
    var text = message.content || '';
    if (text.length > state.sent) watch.emit('delta', { content: text.slice(state.sent) });
    state.sent = Math.max(state.sent, text.length);
    if (message.status !== 'streaming') {
      if (message.error) watch.emit('error', message.error);
      else watch.emit('done', { assistant_message_id: message.id, finish_reason: message.finish_reason || 'stop', usage: message.usage || null });
      return;
    }
    if (Date.now() - state.since > MAX_POLL_MS) { watch.fail('timeout'); return; }
    schedule(watch, message.id, state, api.config.pollIntervalMs || 1000);
  }

  function schedule(watch, messageId, state, delay) {
    var timer = setTimeout(function () {
      api.get('/api/conversations/' + watch.conversationId + '/messages/' + messageId).then(function (latest) {
        state.failures = 0;
        follow(watch, latest, state);
      }, function (error) {
        if (watch.stopped) return;
        state.failures += 1;
        if (RETRYABLE.indexOf(error.code) === -1 || state.failures >= MAX_FAILED_POLLS) { watch.fail(error.code); return; }
        schedule(watch, messageId, state, (api.config.pollIntervalMs || 1000) * Math.pow(2, state.failures));
      });
    }, delay);
    watch.onStop.push(function () { clearTimeout(timer); });
  }

  function newState(watch) {
    // The server sends whole texts; what the page shows already is not passed on again.
    return { sent: watch.skip.delta, reasoning: watch.skip.reasoning, since: Date.now(), failures: 0 };
  }

  return {
    name: 'callContainer',
    send: function (conversationId, content, handlers, clientId) {
      var watch = createWatch(api, conversationId, handlers);
      var body = { content: content, stream: false, client_message_id: clientId || clientMessageId() };
      watch.inFlight = true;
      api.requestFull('POST', '/api/conversations/' + conversationId + '/messages', body, watch.signal).then(function (res) {
        var reply = res.data.assistant_message;
        watch.emit('start', {
          user_message_id: res.data.user_message.id, assistant_message_id: reply.id,
          label: reply.label, content_mark: reply.content_mark
        });
        (res.data.notices || []).forEach(function (notice) { watch.emit('notice', notice); });
        follow(watch, reply, newState(watch));
      }, function (error) {
        if (error.code === 'aborted') watch.settleStart(null); // 停止 before it went out
        else watch.fail(error.code);
      });
      return watch.handle;
    },
    reattach: function (conversationId, messageId, handlers, shown) {
      var watch = createWatch(api, conversationId, handlers, shown);
      watch.messageId = messageId;
      var state = newState(watch);
      watch.skip.delta = 0;
      watch.skip.reasoning = 0;
      api.get('/api/conversations/' + conversationId + '/messages/' + messageId).then(function (message) {
        follow(watch, message, state);
      }, function (error) { watch.fail(error.code); });
      return watch.handle;
    },
    close: function () {}
  };
}

module.exports = { pollingTransport: pollingTransport };
