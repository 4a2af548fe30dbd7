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
    onStop: [],
    // A send that may have reached the server, with no `start` (and so no id) yet.
    inFlight: false,
    // 停止 before `start`: events are no longer shown, but the id is still awaited.
    silenced: false
  };
  var startWaiters = [];

  // The send's outcome is known: the reply's id, or null (nothing was taken).
  watch.settleStart = function (messageId) {
    watch.inFlight = false;
    var waiting = startWaiters;
    startWaiters = [];
    waiting.forEach(function (resolve) { resolve(messageId); });
  };

  watch.emit = function (name, data) {
    if (name === 'start' && data.assistant_message_id) {
      watch.messageId = data.assistant_message_id;
      watch.settleStart(watch.messageId);
    }
    var terminal = name === 'done' || name === 'error';
    if (terminal && watch.inFlight) watch.settleStart(null);
    if (watch.finished || watch.stopped || watch.silenced) {
      if (terminal) watch.finished = true;
      return;
    }
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
    // Nothing more will arrive: whoever waits for the id stops waiting.
    watch.settleStart(watch.messageId);
  }

  // The reply's id: known, or awaited while a send is on its way (a send not made yet is dropped).
  function idOnceStarted() {
    if (watch.messageId) return Promise.resolve(watch.messageId);
    if (!watch.inFlight) return Promise.resolve(null);
    watch.silenced = true;
    watch.signal.aborted = true;
    return new Promise(function (resolve) { startWaiters.push(resolve); });
  }

  function cancel() {
    if (watch.finished) { stop(); return Promise.resolve(null); }
    return idOnceStarted().then(function (messageId) {
      var finished = watch.finished;
      stop();
      if (!messageId) return null;
      var path = '/api/conversations/' + conversationId + '/messages/' + messageId;
      // It ended meanwhile: what the server has is the answer.
      if (finished) return api.get(path);
      return api.requestFull('POST', path + '/cancel', {}).then(function (res) { return res.data; });
    });
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
