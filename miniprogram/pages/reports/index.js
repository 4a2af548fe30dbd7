// 我的举报: the user's reports, newest first: the reason, the status, when it will be
// handled while pending, and the operator's note once decided.
var format = require('../../utils/format.js');

var REASONS = {
  illegal: '违法违规', pornographic: '色情低俗', abusive: '辱骂攻击', fraud: '诈骗', misinformation: '虚假信息',
  harmful_to_minors: '危害未成年人', privacy: '侵犯隐私', self_harm: '自伤自残', other: '其他'
};
var STATUSES = { pending: '处理中', accepted: '已受理', dismissed: '未采纳' };
var QUOTE_LENGTH = 60;

function quoteOf(snapshot) {
  var first = (snapshot || [])[0];
  if (!first || !first.content) return '';
  var text = String(first.content).replace(/\s+/g, ' ');
  return text.length > QUOTE_LENGTH ? text.slice(0, QUOTE_LENGTH) + '…' : text;
}

function entry(report) {
  return {
    id: report.id,
    reason: REASONS[report.reason] || '其他',
    status: STATUSES[report.status] || '处理中',
    statusClass: report.status === 'accepted' || report.status === 'dismissed' ? report.status : 'pending',
    created: format.fullTime(report.created_at),
    due: report.status === 'pending' ? format.fullTime(report.due_at) : '',
    decided: report.decided_at ? format.fullTime(report.decided_at) : '',
    note: report.note || '',
    text: report.text || '',
    quote: quoteOf(report.snapshot)
  };
}

Page({
  data: { items: [], loading: true, loaded: false, errorText: '' },

  onShow: function () {
    return this.load();
  },

  onPullDownRefresh: function () {
    return this.load().then(function () { wx.stopPullDownRefresh(); });
  },

  load: function () {
    var page = this;
    page.setData({ loading: true, errorText: '' });
    return getApp().api.get('/api/reports').then(function (body) {
      page.setData({ items: body.items.map(entry), loading: false, loaded: true });
    }, function (error) {
      page.setData({ loading: false, loaded: true, errorText: error.message });
    });
  }
});
