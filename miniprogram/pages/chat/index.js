// The chat with one companion: history, a streamed reply, stop, watch again, report, exit.
var transports = require('../../utils/transport/index.js');
var view = require('./view.js');
var config = require('../../config.js');

var PAGE_SIZE = 20;
var EXIT_PHRASE = '退出聊天';
// Errors that mean "the connection went away", not "the reply failed": the reply goes on
// at the server and can be watched again.
// (`generation_lost` is not one: that reply ended at the server.)
var CONNECTION_LOST = ['network', 'timeout', 'transport_unavailable'];
var clientMessageId = require('../../utils/transport/watch.js').clientMessageId;

Page({
  data: {
    messages: [],
    input: '',
    sending: false,
    nextCursor: null,
    loadingEarlier: false,
    loading: true,
    errorText: '',
    scrollTop: 0,
    scrollInto: '',
    showJump: false,
    stopping: false,
    companion: null
  },

  onLoad: function (query) {
    var app = getApp();
    this.api = app.api;
    this.transport = transports.createTransport(this.api);
    this.conversationId = query.id;
    this.texts = {};
    this.watching = null; // { key, handle, attempts }
    this.waiters = [];
    this.following = true;
    this.hidden = false;
    this.scrollTick = 1000000;
    this.stream = view.createRenderer(this);
    if (query.title) wx.setNavigationBarTitle({ title: decodeURIComponent(query.title) });
    if (app.globalData && app.globalData.setupError) this.setData({ errorText: app.globalData.setupError });
    var page = this;
    this.loadCompanion();
    return this.loadLatest().then(function () { page.resumeUnfinished(); });
  },

  // Who this conversation is with: the avatar's letter and the way to 「TA记得的事」.
  loadCompanion: function () {
    var page = this;
    var app = getApp();
    var cached = app.globalData && app.globalData.personas;
    var personas = cached ? Promise.resolve(cached) : page.api.get('/api/personas').then(function (body) {
      if (app.globalData && body.items) app.globalData.personas = body.items;
      return body.items || [];
    });
    return Promise.all([page.api.get('/api/conversations/' + page.conversationId), personas]).then(function (found) {
      var conversation = found[0] || {};
      var known = found[1].filter(function (p) { return p.id === conversation.persona_id; })[0];
      // The title is the user's to rename: the companion's name comes from the companion.
      if (!known) return;
      page.setData({ companion: { id: known.id, name: known.name, initial: known.name.charAt(0) } });
    }).then(null, function () {}); // without it the page shows 'AI' as before
  },

  openMemories: function () {
    var companion = this.data.companion;
    if (!companion) return;
    wx.navigateTo({ url: '/pages/memories/index?persona=' + companion.id + '&name=' + encodeURIComponent(companion.name) });
  },

  onUnload: function () {
    this.stopWatching();
    this.transport.close();
  },

  // In the background WeChat may cut sockets and requests; a reply cut meanwhile is
  // watched again on return instead of being reported as a network failure.
  onHide: function () { this.hidden = true; },

  onShow: function () {
    if (!this.hidden) return;
    this.hidden = false;
    if (this.lostWhileHidden) {
      var key = this.lostWhileHidden;
      this.lostWhileHidden = null;
      this.watchAgain(key);
    }
  },

  path: function (suffix) {
    return '/api/conversations/' + this.conversationId + '/messages' + (suffix || '');
  },

  indexOfKey: function (key) {
    var messages = this.data.messages;
    for (var i = 0; i < messages.length; i++) if (messages[i].key === key) return i;
    return -1;
  },

  messageOf: function (key) { return this.data.messages[this.indexOfKey(key)]; },

  pageSize: function () { return this.api.config.pageSize || PAGE_SIZE; },

  nextScrollTop: function () { this.scrollTick += 1; return this.scrollTick; },

  loadLatest: function () {
    var page = this;
    return page.api.get(page.path('?limit=' + page.pageSize())).then(function (body) {
      page.texts = {};
      var messages = body.items.map(function (m) { return view.fromServer(m, page.texts); });
      page.setData({ messages: messages, nextCursor: body.next_cursor, loading: false, scrollTop: page.nextScrollTop() });
    }, function (error) {
      page.setData({ errorText: error.message, loading: false });
    });
  },

  // Scrolling to the top loads earlier messages, also while a reply streams (messages are
  // addressed by key, not position), and keeps the reader where they were.
  loadEarlier: function () {
    var page = this;
    if (!page.data.nextCursor || page.data.loadingEarlier) return Promise.resolve();
    page.setData({ loadingEarlier: true });
    var firstKey = page.data.messages.length ? page.data.messages[0].key : '';
    return page.api.get(page.path('?limit=' + page.pageSize() + '&before=' + page.data.nextCursor)).then(function (body) {
      page.stream.flush();
      var earlier = body.items.map(function (m) { return view.fromServer(m, page.texts); });
      page.setData({
        messages: earlier.concat(page.data.messages),
        nextCursor: body.next_cursor,
        loadingEarlier: false,
        scrollInto: firstKey ? 'm-' + firstKey : ''
      });
    }, function (error) {
      page.setData({ loadingEarlier: false, errorText: error.message });
    });
  },

  // A reply still being generated when the page opens is picked up where it is.
  resumeUnfinished: function () {
    var last = this.data.messages[this.data.messages.length - 1];
    if (last && last.role !== 'user' && last.status === 'streaming') this.watchAgain(last.key);
  },

  onInput: function (event) { this.setData({ input: event.detail.value }); },

  send: function () {
    var content = (this.data.input || '').trim();
    // Not before the history is on screen: it would replace the new message.
    if (!content || this.data.sending || this.data.loading) return;
    this.startReply(content);
  },

  // `clientId` is given when sending again a message that may have reached the server:
  // the server then answers with the original reply instead of a second one.
  startReply: function (content, clientId) {
    var user = view.localUser(content, this.texts);
    var reply = view.localReply(this.texts);
    this.texts[reply.key].clientId = clientId || clientMessageId();
    reply.watching = true;
    this.following = true;
    this.setData({
      messages: this.data.messages.concat([user, reply]), input: '', sending: true, errorText: '', showJump: false,
      scrollTop: this.nextScrollTop()
    });
    this.watch(reply.key, user.key, content, null);
  },

  // Watches a reply: a new one (content given) or an existing one again.
  watch: function (key, userKey, content, shown) {
    var page = this;
    var previous = page.watching;
    // One watch at a time: a second one would show every delta twice.
    if (previous) previous.handle.stop();
    var attempts = previous && previous.key === key ? previous.attempts : 0;
    var watching = { key: key, handle: null, attempts: attempts };
    var handlers = {
      onEvent: function (name, data) {
        if (page.watching === watching) page.onReplyEvent(key, userKey, content, name, data);
      }
    };
    page.watching = watching;
    watching.handle = content !== null
      ? page.transport.send(page.conversationId, content, handlers, page.texts[key].clientId)
      : page.transport.reattach(page.conversationId, page.messageOf(key).id, handlers, shown);
  },

  // Watches a stopped or cut reply again; nothing already on screen is erased or repeated.
  watchAgain: function (key) {
    var message = this.messageOf(key);
    if (!message || !message.id || (this.data.sending && !(this.watching && this.watching.key === key))) return;
    var patch = { sending: true };
    var base = 'messages[' + this.indexOfKey(key) + ']';
    patch[base + '.lost'] = false;
    patch[base + '.watching'] = true;
    patch[base + '.note'] = '';
    this.setData(patch);
    var texts = this.texts[key];
    this.stream.reopen(key);
    this.watch(key, null, null, { delta: texts.content.length, reasoning: texts.reasoning.length });
  },

  onReplyEvent: function (key, userKey, content, name, data) {
    if (!this.watching || this.watching.key !== key) return;
    var index = this.indexOfKey(key);
    var base = 'messages[' + index + ']';
    var patch = {};
    if (name === 'delta') { this.stream.append(key, 'content', data.content); return; }
    if (name === 'reasoning') { this.stream.append(key, 'reasoning', data.content); return; }
    if (name === 'notice') { getApp().notices.present([data]); return; }
    if (name === 'start') {
      var userIndex = userKey ? this.indexOfKey(userKey) : -1;
      if (userIndex !== -1 && data.user_message_id) patch['messages[' + userIndex + '].id'] = data.user_message_id;
      if (data.assistant_message_id) patch[base + '.id'] = data.assistant_message_id;
      if (data.label) {
        patch[base + '.label'] = data.label.text;
        patch[base + '.human'] = data.label.author === 'human';
      }
      this.stream.flush(patch);
      return;
    }
    if (name === 'done') {
      patch[base + '.status'] = data.finish_reason === 'length' ? 'incomplete' : 'complete';
      if (data.finish_reason === 'length') patch[base + '.note'] = '回复达到长度上限';
      this.finish(key, patch);
      return;
    }
    this.onReplyError(key, content, data, patch);
  },

  onReplyError: function (key, content, data, patch) {
    var message = this.messageOf(key);
    var base = 'messages[' + this.indexOfKey(key) + ']';
    if (data.code === 'transport_unavailable' && this.transport.name !== 'callContainer') {
      // Streaming is unavailable here and nothing was sent: send or watch by polling.
      this.transport = transports.pollingTransport(this.api);
      this.watch(key, content === null ? null : this.previousKey(key), content, content === null ? { delta: this.texts[key].content.length, reasoning: this.texts[key].reasoning.length } : null);
      return;
    }
    if (CONNECTION_LOST.indexOf(data.code) !== -1 && message.id) {
      // The server is still generating and storing the reply: watch it again, now or on return.
      if (this.hidden) { this.lostWhileHidden = key; return; }
      if (this.watching.attempts < 2) { this.watching.attempts += 1; this.watchAgain(key); return; }
      patch[base + '.lost'] = true;
      patch[base + '.note'] = data.message;
      this.finish(key, patch);
      return;
    }
    if (data.code === 'notice_required') getApp().notices.refresh();
    var withheld = data.code === 'content_blocked' || data.code === 'content_check_unavailable';
    // Text the safety check withheld is removed from the screen too.
    if (withheld) { this.stream.replace(key, ''); }
    var hasText = this.texts[key].content && !withheld;
    patch[base + '.status'] = data.code === 'cancelled' ? 'cancelled' : hasText ? 'incomplete' : 'failed';
    patch[base + '.note'] = data.message;
    patch[base + '.errorCode'] = data.code;
    this.finish(key, patch);
  },

  previousKey: function (key) {
    var index = this.indexOfKey(key);
    return index > 0 ? this.data.messages[index - 1].key : null;
  },

  finish: function (key, patch) {
    this.stream.complete(key);
    patch['messages[' + this.indexOfKey(key) + '].watching'] = false;
    patch.sending = false;
    this.stream.flush(patch);
    this.watching = null;
    this.settle();
  },

  // 停止: stops the reply being watched — the generation itself, not just the view.
  // The server keeps the text so far; a send not made yet (waiting for a login) is dropped.
  // The button stays busy until the server has confirmed; if it cannot be reached, the
  // reply is watched again rather than shown as stopped while it goes on.
  stop: function () {
    var watching = this.watching;
    // A second tap (or 结束 meanwhile) joins the stop under way.
    if (this.stopping) return this.stopping;
    if (!watching) return Promise.resolve();
    var page = this;
    var key = watching.key;
    page.setData({ stopping: true });
    page.stopping = watching.handle.cancel().then(function (stored) {
      page.stopping = null;
      if (page.watching === watching) page.watching = null;
      page.stream.complete(key);
      var patch = { sending: false, stopping: false };
      var base = 'messages[' + page.indexOfKey(key) + ']';
      patch[base + '.watching'] = false;
      patch[base + '.status'] = 'cancelled';
      patch[base + '.note'] = '已停止';
      page.stream.flush(patch);
      page.settle();
      if (stored) return page.settleStopped(key, stored, 5);
      if (!page.messageOf(key).id) return page.dropUnsent(key);
    }, function (error) {
      page.stopping = null;
      if (page.watching === watching) page.watching = null;
      page.setData({ stopping: false, sending: false, errorText: error.message });
      if (page.messageOf(key).id) page.watchAgain(key);
      else page.settle();
    });
    return page.stopping;
  },

  // The server answers 202 when the reply has not stopped within its wait: ask again
  // (a few times) so the page ends with the text the server kept.
  settleStopped: function (key, stored, triesLeft) {
    var page = this;
    page.applyStored(key, stored);
    if (stored.status !== 'streaming' || triesLeft <= 0) return Promise.resolve();
    return new Promise(function (resolve) { setTimeout(resolve, 500); }).then(function () {
      return page.api.get(page.path('/' + stored.id));
    }).then(function (latest) { return page.settleStopped(key, latest, triesLeft - 1); }, function () {});
  },

  // The server's final word on a stopped reply (its stored text may be a little longer).
  applyStored: function (key, stored) {
    var index = this.indexOfKey(key);
    if (index === -1) return;
    this.stream.replace(key, stored.content || '');
    var patch = {};
    // Stopped before `start` reached the page: the id still lets it be reported.
    if (stored.id) patch['messages[' + index + '].id'] = stored.id;
    patch['messages[' + index + '].status'] = stored.status === 'complete' ? 'complete' : 'cancelled';
    this.stream.flush(patch);
  },

  // Stopped before the server had the message: it goes back into the input box. (Had a
  // cut connection hidden that it arrived, reloading shows it.)
  dropUnsent: function (key) {
    var index = this.indexOfKey(key);
    var question = this.data.messages[index - 1];
    var messages = this.data.messages.filter(function (m, i) { return i !== index && i !== index - 1; });
    this.setData({ messages: messages, input: question && !question.id ? question.text : this.data.input });
    if (!this.data.sending) return this.loadLatest();
  },

  stopWatching: function () {
    if (this.watching) this.watching.handle.stop();
    this.watching = null;
  },

  onWatchAgain: function (event) { this.watchAgain(event.currentTarget.dataset.key); },

  // Sends the question before a failed reply again (only replies that really ended). A
  // reply that never started may have reached the server: the same client id is reused.
  retry: function (event) {
    if (this.data.sending) return;
    var key = event.currentTarget.dataset.key;
    var index = this.indexOfKey(key);
    var question = this.data.messages[index - 1];
    if (!question || question.role !== 'user') return;
    var reuse = !this.data.messages[index].id ? this.texts[key].clientId : null;
    this.startReply(question.text, reuse);
  },

  toggleReasoning: function (event) {
    var index = this.indexOfKey(event.currentTarget.dataset.key);
    var patch = {};
    patch['messages[' + index + '].reasoningOpen'] = !this.data.messages[index].reasoningOpen;
    this.setData(patch);
  },

  copy: function (event) {
    var texts = this.texts[event.currentTarget.dataset.key];
    if (texts) wx.setClipboardData({ data: texts.content });
  },

  report: function (event) {
    var message = this.messageOf(event.currentTarget.dataset.key);
    if (!message || !message.id) return;
    wx.navigateTo({ url: '/pages/report/index?conversation=' + this.conversationId + '&message=' + message.id });
  },

  callHotline: function () { wx.makePhoneCall({ phoneNumber: config.hotline }); },

  // The exit button: the companion says a neutral goodbye (the server's exit phrase), then the page closes.
  exit: function () {
    var page = this;
    if (page.exiting) return Promise.resolve();
    page.exiting = true;
    return (page.data.sending ? page.stop() : Promise.resolve()).then(function () {
      page.startReply(EXIT_PHRASE);
      return page.whenIdle();
    }).then(function () {
      page.exiting = false;
      wx.navigateBack({ delta: 1 });
    });
  },

  // Following a growing reply stops when the reader scrolls up; 回到底部 resumes it.
  onScroll: function (event) {
    if (event.detail.deltaY > 0 && this.following) {
      this.following = false;
      this.setData({ showJump: true });
    }
  },

  onReachBottom: function () {
    if (!this.following) { this.following = true; this.setData({ showJump: false }); }
  },

  jumpToBottom: function () {
    this.following = true;
    this.setData({ showJump: false, scrollTop: this.nextScrollTop() });
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
