var transports = require('../../utils/transports.js');

function view(message) {
  return {
    id: message.id,
    role: message.role,
    content: message.content || '',
    reasoning: message.reasoning_content || '',
    status: message.status,
    errorText: message.error ? message.error.message : '',
    stopped: false
  };
}

Page({
  data: {
    messages: [],
    pageSize: 20,
    input: '',
    sending: false,
    nextCursor: null,
    loadingEarlier: false,
    errorText: '',
    scrollInto: ''
  },

  onLoad: function (query) {
    this.api = getApp().api;
    this.transport = transports.createTransport(this.api);
    this.conversationId = query.id;
    this.watching = null;
    this.waiters = [];
    if (query.title) wx.setNavigationBarTitle({ title: decodeURIComponent(query.title) });
    var page = this;
    return this.loadLatest().then(function () { page.resumeUnfinished(); });
  },

  onUnload: function () {
    this.stopWatching();
  },

  path: function (suffix) {
    return '/api/conversations/' + this.conversationId + '/messages' + (suffix || '');
  },

  loadLatest: function () {
    var page = this;
    return page.api.get(page.path('?limit=' + page.data.pageSize)).then(function (body) {
      var messages = body.items.map(view);
      page.setData({ messages: messages, nextCursor: body.next_cursor, scrollInto: page.anchor(messages.length - 1) });
    }, function (error) {
      page.setData({ errorText: error.message });
    });
  },

  // Scrolling to the top loads earlier messages.
  loadEarlier: function () {
    var page = this;
    // Not while a reply streams: its events address the message by position.
    if (!page.data.nextCursor || page.data.loadingEarlier || page.data.sending) return Promise.resolve();
    page.setData({ loadingEarlier: true });
    return page.api.get(page.path('?limit=' + page.data.pageSize + '&before=' + page.data.nextCursor)).then(function (body) {
      page.setData({
        messages: body.items.map(view).concat(page.data.messages),
        nextCursor: body.next_cursor,
        loadingEarlier: false
      });
    }, function (error) {
      page.setData({ loadingEarlier: false, errorText: error.message });
    });
  },

  // A reply still being generated when the page opens is picked up where it is.
  resumeUnfinished: function () {
    var messages = this.data.messages;
    var last = messages[messages.length - 1];
    if (last && last.role === 'assistant' && last.status === 'streaming') this.reattach(messages.length - 1);
  },

  onInput: function (event) {
    this.setData({ input: event.detail.value });
  },

  send: function () {
    var content = (this.data.input || '').trim();
    if (!content || this.data.sending) return;
    this.startReply(content);
  },

  startReply: function (content) {
    var messages = this.data.messages.concat([
      { id: 'local-user-' + Date.now(), role: 'user', content: content, reasoning: '', status: 'complete', errorText: '', stopped: false },
      { id: 'local-reply-' + Date.now(), role: 'assistant', content: '', reasoning: '', status: 'streaming', errorText: '', stopped: false }
    ]);
    var index = messages.length - 1;
    this.setData({ messages: messages, input: '', sending: true, errorText: '', scrollInto: this.anchor(index) });
    this.watching = this.transport.send(this.conversationId, content, this.handlers(index, content));
  },

  // Watches an existing reply again; the first delta carries everything stored so far.
  reattach: function (index) {
    var message = this.data.messages[index];
    var patch = { sending: true };
    patch['messages[' + index + '].content'] = '';
    patch['messages[' + index + '].reasoning'] = '';
    patch['messages[' + index + '].stopped'] = false;
    this.setData(patch);
    this.watching = this.transport.reattach(this.conversationId, message.id, this.handlers(index, null));
  },

  handlers: function (index, content) {
    var page = this;
    return { onEvent: function (name, data) { page.onReplyEvent(index, content, name, data); } };
  },

  onReplyEvent: function (index, content, name, data) {
    var key = 'messages[' + index + ']';
    var message = this.data.messages[index];
    var patch = {};
    if (name === 'start') {
      patch['messages[' + (index - 1) + '].id'] = data.user_message_id;
      patch[key + '.id'] = data.assistant_message_id;
    } else if (name === 'delta') {
      patch[key + '.content'] = message.content + data.content;
      patch.scrollInto = this.anchor(index);
    } else if (name === 'reasoning') {
      patch[key + '.reasoning'] = message.reasoning + data.content;
    } else if (name === 'done') {
      patch[key + '.status'] = data.finish_reason === 'length' ? 'incomplete' : 'complete';
      patch.sending = false;
    } else if (name === 'error') {
      if (data.code === 'transport_unavailable' && content && this.transport.name !== 'callContainer') {
        // Streaming is unavailable here (nothing was sent): fall back to send-and-poll.
        this.transport = transports.pollingTransport(this.api);
        this.watching = this.transport.send(this.conversationId, content, this.handlers(index, content));
        return;
      }
      var started = String(message.id).indexOf('local') !== 0;
      var connectionLost = data.code === 'network' || data.code === 'timeout' || data.code === 'generation_lost';
      if (connectionLost && started) {
        // The server is still generating and storing the reply: offer to watch it again.
        patch[key + '.stopped'] = true;
        patch.sending = false;
        patch.errorText = data.message;
        this.setData(patch);
        this.settle();
        return;
      }
      var withheld = data.code === 'content_blocked' || data.code === 'content_check_unavailable';
      // Text the safety check withheld is removed from the screen too.
      if (withheld) patch[key + '.content'] = '';
      patch[key + '.status'] = message.content && !withheld ? 'incomplete' : 'failed';
      patch[key + '.errorText'] = data.message;
      patch.sending = false;
    }
    this.setData(patch);
    if (name === 'done' || name === 'error') this.settle();
  },

  // The stop button: stop watching; the server finishes and stores the reply anyway.
  stop: function () {
    var index = this.data.messages.length - 1;
    this.stopWatching();
    var patch = { sending: false };
    patch['messages[' + index + '].stopped'] = true;
    this.setData(patch);
    this.settle();
  },

  stopWatching: function () {
    if (this.watching) this.watching.stop();
    this.watching = null;
  },

  // Tapping a stopped or unfinished reply shows it again, live if still generating.
  refresh: function (event) {
    if (this.data.sending) return;
    this.reattach(Number(event.currentTarget.dataset.index));
  },

  // Sends the user's message before a failed reply again.
  retry: function (event) {
    if (this.data.sending) return;
    var index = Number(event.currentTarget.dataset.index);
    var question = this.data.messages[index - 1];
    if (question && question.role === 'user') this.startReply(question.content);
  },

  anchor: function (index) {
    return 'm' + Math.max(index, 0);
  },

  // Resolves when the reply being watched ends (used by tests and by callers that chain).
  whenIdle: function () {
    var page = this;
    if (!page.data.sending) return Promise.resolve();
    return new Promise(function (resolve) { page.waiters.push(resolve); });
  },

  settle: function () {
    var waiters = this.waiters;
    this.waiters = [];
    waiters.forEach(function (resolve) { resolve(); });
  }
});
