var config = require('./config.js');
var createApi = require('./utils/api.js').createApi;

App({
  onLaunch: function () {
    if (config.transport !== 'sse' && wx.cloud) {
      wx.cloud.init({ env: config.cloudEnv });
    }
    this.api = createApi();
    // Log in early so the first page loads faster; pages retry on their own if this fails.
    this.api.ensureToken().catch(function () {});
  }
});
