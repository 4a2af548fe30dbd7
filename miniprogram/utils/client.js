// Everything the pages share, built once by app.js (and by the tests the same way).
var createApi = require('./api.js').createApi;
var createNotices = require('./notices.js').createNotices;

function createClient(overrides) {
  var api = createApi(overrides);
  var notices = createNotices(api);
  // Sign-in's notices are always shown.
  api.hooks.onNotices = notices.presentAsked;
  return { api: api, notices: notices, globalData: { personas: null } };
}

module.exports = { createClient: createClient };
