// The conversations, newest first: the companion's name, when it started, how long ago it
// was active (local time, as people say it) and a visible delete. Switching tabs refreshes
// the list in place instead of blanking it.
var format = require('../../utils/format.js');
var ask = require('../../utils/dialog.js').ask;

function personaNames() {
  var names = {};
  (getApp().globalData.personas || []).forEach(function (p) { names[p.id] = p.name; });
  return names;
}

function entry(conversation, names) {
  var name = names[conversation.persona_id] || conversation.title;
  return {
    id: conversation.id,
    name: name,
    title: conversation.title !== name ? conversation.title : '',
    initial: (name || '?').charAt(0),
    started: '开始于 ' + format.fullTime(conversation.created_at),
    active: format.relativeTime(conversation.last_active_at)
  };
}

Page({
  data: { conversations: [], nextCursor: null, loading: false, loaded: false, errorText: '' },

  onShow: function () {
    return this.refresh();
  },

  onPullDownRefresh: function () {
    return this.refresh().then(function () { wx.stopPullDownRefresh(); });
  },

  onReachBottom: function () {
    if (this.data.nextCursor) return this.loadPage(this.data.nextCursor);
  },

  // Persona names for the list (loaded once, kept in globalData).
  ensurePersonas: function () {
    var app = getApp();
    if (app.globalData.personas) return Promise.resolve();
    return app.api.get('/api/personas').then(function (body) { app.globalData.personas = body.items; }, function () {});
  },

  refresh: function () {
    return this.loadPage(null);
  },

  loadPage: function (cursor) {
    var page = this;
    if (page.data.loading) return Promise.resolve();
    page.setData({ loading: true, errorText: '' });
    var query = '?limit=20' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : '');
    return page.ensurePersonas().then(function () {
      return getApp().api.get('/api/conversations' + query);
    }).then(function (body) {
      var names = personaNames();
      var items = body.items.map(function (c) { return entry(c, names); });
      page.setData({
        conversations: cursor ? page.data.conversations.concat(items) : items,
        nextCursor: body.next_cursor, loading: false, loaded: true
      });
    }, function (error) {
      page.setData({ loading: false, loaded: true, errorText: error.message });
    });
  },

  open: function (event) {
    var item = this.data.conversations.filter(function (c) { return c.id === event.currentTarget.dataset.id; })[0];
    if (!item) return;
    wx.navigateTo({ url: '/pages/chat/index?id=' + item.id + '&title=' + encodeURIComponent(item.title || item.name) });
  },

  // A name of the user's own, so conversations with the same companion tell apart.
  rename: function (event) {
    var id = event.currentTarget.dataset.id;
    var item = this.data.conversations.filter(function (c) { return c.id === id; })[0];
    var page = this;
    if (!item) return Promise.resolve();
    return ask({ title: '重命名对话', content: item.title || item.name, editable: true, placeholderText: '给这段对话起个名字', confirmText: '保存' })
      .then(function (res) {
        var title = (res.content || '').trim();
        if (!res.confirm || !title) return;
        return getApp().api.patch('/api/conversations/' + id, { title: title }).then(function (conversation) {
          var updated = entry(conversation, personaNames());
          page.setData({ conversations: page.data.conversations.map(function (c) { return c.id === id ? updated : c; }) });
        }, function (error) {
          page.setData({ errorText: error.message });
        });
      });
  },

  remove: function (event) {
    var id = event.currentTarget.dataset.id;
    var item = this.data.conversations.filter(function (c) { return c.id === id; })[0];
    var page = this;
    if (!item) return Promise.resolve();
    return ask({
      title: '删除对话',
      content: '删除与「' + item.name + '」的这段对话及其全部消息？删除后无法恢复。',
      confirmText: '删除',
      confirmColor: '#cf1322'
    }).then(function (res) {
      if (!res.confirm) return;
      return getApp().api.del('/api/conversations/' + id).then(function () {
        page.setData({ conversations: page.data.conversations.filter(function (c) { return c.id !== id; }) });
      }, function (error) {
        page.setData({ errorText: error.message });
      });
    });
  }
});
