// 举报 one message: a reason from the fixed list, optional words, one submit (a double
// tap files one report). The server answers with when it will be handled.
var format = require('../../utils/format.js');

var REASONS = [
  { value: 'illegal', label: '违法违规' },
  { value: 'pornographic', label: '色情低俗' },
  { value: 'abusive', label: '辱骂攻击' },
  { value: 'fraud', label: '诈骗' },
  { value: 'misinformation', label: '虚假信息' },
  { value: 'harmful_to_minors', label: '危害未成年人' },
  { value: 'privacy', label: '侵犯隐私' },
  { value: 'self_harm', label: '自伤自残' },
  { value: 'other', label: '其他' }
];
var MAX_TEXT = 500;

Page({
  data: { reasons: REASONS, reason: '', text: '', submitting: false, errorText: '', canRetry: false, missing: false },
  conversationId: '',
  messageId: '',
  /** @type {Promise<any> | null} the submit in flight or done: a second tap gets the same one */
  submitted: null,

  onLoad: function (query) {
    this.conversationId = (query && query.conversation) || '';
    this.messageId = (query && query.message) || '';
    this.submitted = null;
    this.setData({ missing: !this.conversationId });
  },

  choose: function (event) {
    this.setData({ reason: event.currentTarget.dataset.reason, errorText: '' });
  },

  onText: function (event) {
    this.setData({ text: String(event.detail.value || '').slice(0, MAX_TEXT) });
  },

  submit: function () {
    var page = this;
    if (page.submitted) return page.submitted;
    if (!page.conversationId) return Promise.resolve(null);
    if (!page.data.reason) {
      page.setData({ errorText: '请选择举报原因', canRetry: false });
      return Promise.resolve(null);
    }
    var body = { conversation_id: page.conversationId, reason: page.data.reason };
    if (page.messageId) body.message_id = page.messageId;
    var text = page.data.text.replace(/\s+/g, ' ').trim();
    if (text) body.text = text;
    page.setData({ submitting: true, errorText: '' });
    page.submitted = getApp().api.post('/api/reports', body).then(function (report) {
      // Stays "submitting": the page is closing and the report is filed.
      wx.showToast({ title: '已提交，我们会在' + format.fullTime(report.due_at) + '前处理', icon: 'none', duration: 3000 });
      wx.navigateBack({ delta: 1 });
      return report;
    }, function (error) {
      page.submitted = null;
      page.setData({ submitting: false, errorText: error.message, canRetry: true });
      return null;
    });
    return page.submitted;
  }
});
