Page({
  data: { conversations: [], nextCursor: null, loading: false, errorText: '' },

  onShow: function () {
    this.refresh();
  },

  onPullDownRefresh: function () {
    this.refresh().then(function () { wx.stopPullDownRefresh(); });
  },

  onReachBottom: function () {
    if (this.data.nextCursor) this.loadPage(this.data.nextCursor);
  },

  refresh: function () {
    this.setData({ conversations: [], nextCursor: null });
    return this.loadPage(null);
  },

  loadPage: function (cursor) {
    var page = this;
    if (page.data.loading) return Promise.resolve();
    page.setData({ loading: true, errorText: '' });
    var query = '?limit=20' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : '');
    return getApp().api.get('/api/conversations' + query).then(function (body) {
      page.setData({ conversations: page.data.conversations.concat(body.items), nextCursor: body.next_cursor, loading: false });
    }, function (error) {
      page.setData({ loading: false, errorText: error.message });
    });
  },

  open: function (event) {
    var item = event.currentTarget.dataset.item;
    wx.navigateTo({ url: '/pages/chat/index?id=' + item.id + '&title=' + encodeURIComponent(item.title) });
  },

  remove: function (event) {
    var item = event.currentTarget.dataset.item;
    var page = this;
    wx.showModal({
      title: '删除对话',
      content: '删除「' + item.title + '」及其全部消息？',
      success: function (res) {
        if (!res.confirm) return;
        getApp().api.del('/api/conversations/' + item.id).then(function () {
          page.setData({ conversations: page.data.conversations.filter(function (c) { return c.id !== item.id; }) });
        }, function (error) {
          page.setData({ errorText: error.message });
        });
      }
    });
  }
});
