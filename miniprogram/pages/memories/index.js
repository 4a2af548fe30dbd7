// TA记得的事: what one companion remembers about the user. Each fact can be corrected or
// deleted, or everything cleared; the server checks the text (≤ 200 characters, one line).
var format = require('../../utils/format.js');
var ask = require('../../utils/dialog.js').ask;

function decode(value) {
  try { return decodeURIComponent(value || ''); } catch (e) { return value || ''; }
}

function entry(memory) {
  return {
    id: memory.id,
    text: memory.text,
    learned: '记于 ' + format.relativeTime(memory.learned_at),
    edited: memory.updated_at !== memory.learned_at
  };
}

Page({
  data: { name: '', items: [], loading: true, loaded: false, errorText: '' },

  onLoad: function (query) {
    this.persona = decode(query.persona);
    var name = decode(query.name) || 'TA';
    this.setData({ name: name });
    wx.setNavigationBarTitle({ title: name + '记得的事' });
    return this.load();
  },

  onPullDownRefresh: function () {
    return this.load().then(function () { wx.stopPullDownRefresh(); });
  },

  path: function (id) {
    return '/api/personas/' + encodeURIComponent(this.persona) + '/memories' + (id ? '/' + encodeURIComponent(id) : '');
  },

  // A fact that is gone says so in words about facts, not about conversations.
  fail: function (error) {
    this.setData({ errorText: error.code === 'not_found' ? '这条记忆已不存在，请刷新后再试' : error.message });
  },

  load: function () {
    var page = this;
    page.setData({ loading: true, errorText: '' });
    return getApp().api.get(page.path()).then(function (body) {
      page.setData({ items: body.items.map(entry), loading: false, loaded: true });
    }, function (error) {
      page.setData({ loading: false, loaded: true });
      page.fail(error);
    });
  },

  find: function (id) {
    return this.data.items.filter(function (m) { return m.id === id; })[0];
  },

  edit: function (event) {
    var page = this;
    var id = event.currentTarget.dataset.id;
    var item = page.find(id);
    return ask({
      title: '修改这条记忆',
      content: item ? item.text : '',
      editable: true,
      placeholderText: '最多 200 字，只能一行',
      confirmText: '保存'
    }).then(function (res) {
      var text = (res.content || '').trim();
      if (!res.confirm || !text || (item && text === item.text)) return;
      page.setData({ errorText: '' });
      return getApp().api.patch(page.path(id), { text: text }).then(function (memory) {
        var items = page.data.items.map(function (m) { return m.id === id ? entry(memory) : m; });
        page.setData({ items: items });
        wx.showToast({ title: '已修改', icon: 'none' });
      }, function (error) { page.fail(error); });
    });
  },

  remove: function (event) {
    var page = this;
    var id = event.currentTarget.dataset.id;
    return ask({
      title: '删除这条记忆',
      content: '删除后，' + page.data.name + '将不再记得这件事。',
      confirmText: '删除',
      confirmColor: '#cf1322'
    }).then(function (res) {
      if (!res.confirm) return;
      page.setData({ errorText: '' });
      return getApp().api.del(page.path(id)).then(function () {
        page.setData({ items: page.data.items.filter(function (m) { return m.id !== id; }) });
      }, function (error) { page.fail(error); });
    });
  },

  clearAll: function () {
    var page = this;
    return ask({
      title: '全部清除',
      content: '清除后，' + page.data.name + '将忘记关于你的所有事情，且无法恢复。',
      confirmText: '清除',
      confirmColor: '#cf1322'
    }).then(function (res) {
      if (!res.confirm) return;
      page.setData({ errorText: '' });
      return getApp().api.del(page.path()).then(function () {
        page.setData({ items: [] });
        wx.showToast({ title: '已全部清除', icon: 'none' });
      }, function (error) { page.fail(error); });
    });
  }
});
