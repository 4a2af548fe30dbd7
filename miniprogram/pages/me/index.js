// 我的: minor mode, my reports, what each companion remembers, a copy of my data, the
// privacy policy and account deletion (注销). Switching minor mode off goes through
// customer service (a guardian's consent), so the page only switches it on.
var format = require('../../utils/format.js');
var ask = require('../../utils/dialog.js').ask;

// '今天已用 12 分钟，每日限 40 分钟' (minor mode's daily time, China time).
function minorTimeText(minor) {
  if (!minor || !minor.daily_minutes) return '';
  return '今天已用 ' + Math.min(minor.used_minutes_today, minor.daily_minutes) + ' 分钟，每日限 ' + minor.daily_minutes + ' 分钟';
}

var DELETE_WORD = '注销';

function wait(ms) {
  return new Promise(function (resolve) { setTimeout(resolve, ms); });
}

Page({
  data: {
    loading: true, loaded: false, errorText: '',
    nickname: '', joined: '',
    minorOn: false, minorSince: '', guardianConsent: false, turningOn: false, minorTime: '',
    personas: [],
    privacyText: '',
    exportStatus: '', // '' | 'preparing' | 'ready' | 'failed'
    deletion: null, // { due: '…' } while a deletion waits out its cooling-off period
    deleting: false
  },

  onShow: function () {
    return this.load();
  },

  onPullDownRefresh: function () {
    return this.load().then(function () { wx.stopPullDownRefresh(); });
  },

  load: function () {
    var page = this;
    var api = getApp().api;
    page.setData({ loading: true, errorText: '' });
    return Promise.all([api.get('/api/me'), api.get('/api/personas')]).then(function (results) {
      var me = results[0];
      var privacy = (me.notices || []).filter(function (n) { return n.kind === 'privacy_policy'; })[0];
      page.setData({
        loading: false, loaded: true,
        nickname: me.nickname || '微信用户',
        joined: format.fullTime(me.created_at),
        minorOn: !!me.minor_mode,
        minorSince: me.minor_mode ? format.fullTime(me.minor_mode.since) : '',
        guardianConsent: !!(me.minor_mode && me.minor_mode.guardian_consent),
        minorTime: minorTimeText(me.minor_mode),
        privacyText: privacy ? privacy.text : '',
        // A deletion waiting out its cooling-off period, as the server has it.
        deletion: me.deletion_due_at ? { due: format.fullTime(me.deletion_due_at) } : null,
        personas: results[1].items.map(function (p) { return { id: p.id, name: p.name }; })
      });
    }, function (error) {
      page.setData({ loading: false, loaded: true, errorText: error.message });
    });
  },

  turnOnMinorMode: function () {
    var page = this;
    if (page.data.minorOn || page.data.turningOn) return Promise.resolve();
    return ask({
      title: '开启未成年人模式',
      content: '开启后每日使用时长受限，部分伙伴不可用；关闭需联系客服。确定开启吗？',
      confirmText: '开启'
    }).then(function (res) {
      if (!res.confirm) return;
      page.setData({ turningOn: true, errorText: '' });
      return getApp().api.put('/api/me/minor-mode', { on: true }).then(function () {
        page.setData({ turningOn: false });
        wx.showToast({ title: '已开启未成年人模式', icon: 'none' });
        return page.load();
      }, function (error) {
        page.setData({ turningOn: false, errorText: error.message });
      });
    });
  },

  openReports: function () {
    wx.navigateTo({ url: '/pages/reports/index' });
  },

  openMemories: function (event) {
    var data = event.currentTarget.dataset;
    wx.navigateTo({ url: '/pages/memories/index?persona=' + encodeURIComponent(data.id) + '&name=' + encodeURIComponent(data.name) });
  },

  // Asks for a copy of everything kept about the user, waits while the server prepares it,
  // then offers to copy the JSON document. Resolves once it is ready (and offered) or failed.
  startExport: function () {
    var page = this;
    if (page.exporting) return page.exporting;
    var api = getApp().api;
    var interval = api.config.pollIntervalMs || 1000;
    page.setData({ exportStatus: 'preparing', errorText: '' });
    var poll = function (id) {
      return api.requestFull('GET', '/api/me/exports/' + encodeURIComponent(id)).then(function (res) {
        if (res.statusCode === 202) return wait(interval).then(function () { return poll(id); });
        return res.data;
      });
    };
    page.exporting = api.post('/api/me/exports').then(function (started) {
      return poll(started.id);
    }).then(function (document) {
      page.setData({ exportStatus: 'ready' });
      return page.offerCopy(document);
    }, function (error) {
      page.setData({ exportStatus: 'failed', errorText: error.message });
    }).then(function () { page.exporting = null; });
    return page.exporting;
  },

  offerCopy: function (document) {
    return ask({
      title: '导出完成',
      content: '你的数据已整理好（JSON 格式，含聊天记录、记忆和设置）。复制到剪贴板后可粘贴保存。',
      confirmText: '复制',
      cancelText: '稍后'
    }).then(function (res) {
      if (!res.confirm) return;
      return new Promise(function (resolve) {
        wx.setClipboardData({
          data: JSON.stringify(document),
          success: function () { resolve(); },
          fail: function () { wx.showToast({ title: '复制失败，请重试', icon: 'none' }); resolve(); }
        });
      });
    });
  },

  // The 隐私保护指引 the operator filled in on 微信公众平台 (base library ≥ 2.32.3).
  openPrivacyContract: function () {
    if (wx.openPrivacyContract) wx.openPrivacyContract({});
    else wx.showToast({ title: '请在「设置 → 隐私」中查看', icon: 'none' });
  },

  reviewNotices: function () {
    var page = this;
    return getApp().notices.refresh().then(function () {}, function (error) {
      page.setData({ errorText: error.message });
    });
  },

  // 注销: the user types the word to confirm. Erased at once (200), or after a cooling-off
  // period (202) that can be cancelled.
  deleteAccount: function () {
    var page = this;
    if (page.data.deleting) return Promise.resolve();
    // First what it means; then the word, in an input that starts empty (an editable
    // dialog's `content` is the input's text, so the warning cannot go there).
    return ask({
      title: '注销账号',
      content: '注销后，你的全部聊天记录、伙伴记得的事和其他数据都将被清除，且无法恢复。',
      confirmText: '继续',
      confirmColor: '#cf1322'
    }).then(function (warned) {
      if (!warned.confirm) return { confirm: false, content: '' };
      return ask({
        title: '请输入「' + DELETE_WORD + '」确认',
        content: '',
        editable: true,
        placeholderText: '请输入「' + DELETE_WORD + '」确认',
        confirmText: '注销',
        confirmColor: '#cf1322'
      });
    }).then(function (res) {
      if (!res.confirm) return;
      if ((res.content || '').trim() !== DELETE_WORD) {
        wx.showToast({ title: '输入不正确，账号未注销', icon: 'none' });
        return;
      }
      var api = getApp().api;
      page.setData({ deleting: true, errorText: '' });
      return api.requestFull('POST', '/api/me/deletion', { confirm: DELETE_WORD }).then(function (res) {
        page.setData({ deleting: false });
        if (res.statusCode === 202) {
          page.setData({ deletion: { due: format.fullTime(res.data.due_at) } });
          return;
        }
        api.clearToken();
        wx.showToast({ title: '账号已注销', icon: 'none' });
        wx.reLaunch({ url: '/pages/personas/index' });
      }, function (error) {
        page.setData({ deleting: false, errorText: error.message });
      });
    });
  },

  cancelDeletion: function () {
    var page = this;
    page.setData({ errorText: '' });
    return getApp().api.del('/api/me/deletion').then(function () {
      page.setData({ deletion: null });
      wx.showToast({ title: '已撤销注销', icon: 'none' });
    }, function (error) {
      page.setData({ errorText: error.message });
    });
  }
});
