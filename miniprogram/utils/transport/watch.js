// One reply being watched, whatever the transport: the events it has passed on, the
// server's id for it, and the two ways to end watching:
//   stop()   – stop watching; the server goes on and stores the whole reply;
//   cancel() – stop the reply itself (the server keeps the text so far), resolving to the
//              stored message once the server has stopped it (null if it never started).
// Every error reaching a page goes through here, so its message is always Chinese.
var errors = require('../errors.js');

/**
 * @typedef {{ onEvent: (name: string, data: any) => void }} Handlers
 * @typedef {{ delta?: number, reasoning?: number }} Shown  text the page already shows
 */

/**
 * @param {any} api
 * @param {string} conversationId
 * @param {Handlers} handlers
 * @param {Shown} [shown]
 */
function createWatch(api, conversationId, handlers, shown) {
  var watch = {
    conversationId: conversationId,
    messageId: null,
    stopped: false,
    finished: false,
    // Requests not sent yet (waiting for a login) are dropped once this is set.
    signal: { aborted: false },
    // Characters of each kind passed on; a re-watch skips them (its first event carries
    // everything stored so far).
    delivered: { delta: (shown && shown.delta) || 0, reasoning: (shown && shown.reasoning) || 0 },
    skip: { delta: (shown && shown.delta) || 0, reasoning: (shown && shown.reasoning) || 0 },
    onStop: []
  };

  watch.emit = function (name, data) {
    if (watch.finished || watch.stopped) return;
    if (name === 'start' && data.assistant_message_id) watch.messageId = data.assistant_message_id;
    if (name === 'delta' || name === 'reasoning') {
      var text = data.content || '';
      var skipped = Math.min(watch.skip[name], text.length);
      watch.skip[name] -= skipped;
      text = text.slice(skipped);
      if (!text) return;
      watch.delivered[name] += text.length;
      data = { content: text };
    }
    if (name === 'error') data = { code: data.code, message: errors.friendlyMessage(data.code) };
    if (name === 'done' || name === 'error') watch.finished = true;
    handlers.onEvent(name, data);
  };

  // Watching again after a cut: skip what was already passed on.
  watch.rewind = function () {
    watch.skip.delta = watch.delivered.delta;
    watch.skip.reasoning = watch.delivered.reasoning;
  };

  watch.fail = function (code) { watch.emit('error', { code: code }); };

  function stop() {
    if (watch.stopped) return;
    watch.stopped = true;
    watch.signal.aborted = true;
    watch.onStop.forEach(function (callback) { callback(); });
  }

  function cancel() {
    var messageId = watch.messageId;
    var finished = watch.finished;
    stop();
    if (!messageId || finished) return Promise.resolve(null);
    var path = '/api/conversations/' + conversationId + '/messages/' + messageId + '/cancel';
    return api.requestFull('POST', path, {}).then(function (res) { return res.data; });
  }

  watch.handle = {
    stop: stop,
    cancel: cancel,
    messageId: function () { return watch.messageId; }
  };
  return watch;
}

// Makes a send safe to retry: the same id returns the original reply, never a second one.
function clientMessageId() {
  return 'mp-' + Date.now().toString(36) + '-' + Math.random().toString(36).slice(2, 10);
}

module.exports = { createWatch: createWatch, clientMessageId: clientMessageId };
