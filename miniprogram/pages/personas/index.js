Page({
  data: { personas: [], loading: true, errorText: '' },

  onLoad: function () {
    this.load();
  },

  onPullDownRefresh: function () {
    this.load().then(function () { wx.stopPullDownRefresh(); });
  },

  load: function () {
    var page = this;
    page.setData({ loading: true, errorText: '' });
    return getApp().api.get('/api/personas').then(function (body) {
      page.setData({ personas: body.items, loading: false });
    }, function (error) {
      page.setData({ loading: false, errorText: error.message });
    });
  },

  choose: function (event) {
    var personaId = event.currentTarget.dataset.id;
    var page = this;
    return getApp().api.post('/api/conversations', { persona_id: personaId }).then(function (conversation) {
      wx.navigateTo({ url: '/pages/chat/index?id=' + conversation.id + '&title=' + encodeURIComponent(conversation.title) });
      return conversation;
    }, function (error) {
      page.setData({ errorText: error.message });
    });
  }
});
