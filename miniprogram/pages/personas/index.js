// The companions to chat with. A failed load offers a retry (and pull-to-refresh works);
// a double tap opens one conversation, not two.
Page({
  data: { personas: [], loading: true, errorText: '', opening: '' },

  onLoad: function () {
    this.load();
  },

  onPullDownRefresh: function () {
    return this.load().then(function () { wx.stopPullDownRefresh(); });
  },

  load: function () {
    var page = this;
    page.setData({ loading: true, errorText: '' });
    return getApp().api.get('/api/personas').then(function (body) {
      var personas = body.items.map(function (p) {
        return {
          id: p.id, name: p.name, description: p.description, thinking: p.thinking, initial: (p.name || '?').charAt(0),
          needsConsent: !!p.needs_guardian_consent
        };
      });
      getApp().globalData.personas = body.items;
      page.setData({ personas: personas, loading: false });
    }, function (error) {
      page.setData({ loading: false, errorText: error.message });
    });
  },

  choose: function (event) {
    var personaId = event.currentTarget.dataset.id;
    var page = this;
    if (page.data.opening) return Promise.resolve(null);
    var persona = page.data.personas.filter(function (p) { return p.id === personaId; })[0];
    // Minor mode: the server would refuse every message; say why before opening a chat.
    if (persona && persona.needsConsent) {
      wx.showModal({ title: '需要监护人同意', content: '未成年人模式下，与「' + persona.name + '」聊天需要监护人同意。请监护人联系客服办理。', showCancel: false });
      return Promise.resolve(null);
    }
    page.setData({ opening: personaId, errorText: '' });
    return getApp().api.post('/api/conversations', { persona_id: personaId }).then(function (conversation) {
      page.setData({ opening: '' });
      wx.navigateTo({ url: '/pages/chat/index?id=' + conversation.id + '&title=' + encodeURIComponent(conversation.title) });
      return conversation;
    }, function (error) {
      page.setData({ opening: '', errorText: error.message });
      return null;
    });
  }
});
