var config = require('./config.js');
var createClient = require('./utils/client.js').createClient;
var errors = require('./utils/errors.js');

App({
  api: null,
  notices: null,
  globalData: { personas: null, setupError: '' },

  onLaunch: function () {
    var client = createClient();
    this.api = client.api;
    this.notices = client.notices;
    if (config.transport !== 'sse') {
      // wx.cloud arrived in base library 2.23.0 (callContainer); older WeChat gets words, not a crash.
      if (wx.cloud) wx.cloud.init({ env: config.cloudEnv });
      else this.globalData.setupError = errors.friendlyMessage('client_outdated');
    }
    var notices = this.notices;
    // Log in early so the first page loads faster, and show what the server asks the user
    // to read; pages retry on their own if this fails.
    this.api.ensureToken().then(function () { return notices.refresh(); }).catch(function () {});
  }
});
