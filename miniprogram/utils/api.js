// The one API module every page uses: login, token storage, one re-login on 401,
// and the server's error envelope turned into a friendly Chinese message.
var defaults = require('../config.js');
var errors = require('./errors.js');

var TOKEN_KEY = 'companion_token';

function createApi(overrides) {
  var config = Object.assign({}, defaults, overrides || {});
  // 'sse' talks to the custom domain; the cloud transports go through Cloud Run.
  var via = config.transport === 'sse' ? 'request' : 'callContainer';
  var loggingIn = null;

  function getToken() {
    return wx.getStorageSync(TOKEN_KEY) || '';
  }

  function headers(token) {
    var header = { 'content-type': 'application/json' };
    if (token) header.Authorization = 'Bearer ' + token;
    return header;
  }

  // Resolves { statusCode, data, header } whatever the status; rejects on network failure.
  function send(method, path, data, token) {
    return new Promise(function (resolve, reject) {
      var fail = function (err) {
        var timedOut = err && (err.errCode === 102002 || /timeout/i.test(err.errMsg || ''));
        reject(new errors.ApiError(timedOut ? 'timeout' : 'network', '', 0));
      };
      if (via === 'request') {
        wx.request({
          url: config.baseUrl + path, method: method, data: data, header: headers(token), timeout: 20000,
          success: resolve, fail: fail
        });
      } else {
        var header = headers(token);
        header['X-WX-SERVICE'] = config.service;
        wx.cloud.callContainer({
          config: { env: config.cloudEnv }, path: path, method: method, data: data, header: header,
          success: resolve, fail: fail
        });
      }
    });
  }

  function bodyOf(res) {
    if (typeof res.data === 'string') {
      try { return JSON.parse(res.data); } catch (e) { return {}; }
    }
    return res.data || {};
  }

  function toError(res) {
    var body = bodyOf(res);
    var error = body.error || {};
    return new errors.ApiError(error.code || 'http_' + res.statusCode, error.message, res.statusCode);
  }

  function wxLogin() {
    return new Promise(function (resolve, reject) {
      wx.login({
        success: function (res) { resolve(res.code); },
        fail: function () { reject(new errors.ApiError('network', '', 0)); }
      });
    });
  }

  // Logs in once even when several requests find the token missing at the same time.
  function login() {
    if (!loggingIn) {
      loggingIn = wxLogin()
        .then(function (code) { return send('POST', '/api/auth/login', { code: code }, ''); })
        .then(function (res) {
          if (res.statusCode !== 200) throw toError(res);
          var body = bodyOf(res);
          wx.setStorageSync(TOKEN_KEY, body.token);
          return body.token;
        })
        .then(function (token) { loggingIn = null; return token; }, function (err) { loggingIn = null; throw err; });
    }
    return loggingIn;
  }

  function ensureToken() {
    var token = getToken();
    return token ? Promise.resolve(token) : login();
  }

  // Resolves the full response ({ statusCode, data }) for 2xx; rejects with an ApiError.
  function requestFull(method, path, data) {
    return ensureToken()
      .then(function (token) { return send(method, path, data, token); })
      .then(function (res) {
        if (res.statusCode !== 401) return res;
        // The token expired or the server's secret rotated: log in again, once.
        wx.removeStorageSync(TOKEN_KEY);
        return login().then(function (token) { return send(method, path, data, token); });
      })
      .then(function (res) {
        if (res.statusCode >= 200 && res.statusCode < 300) return { statusCode: res.statusCode, data: bodyOf(res) };
        throw toError(res);
      });
  }

  function request(method, path, data) {
    return requestFull(method, path, data).then(function (res) { return res.data; });
  }

  return {
    config: config,
    getToken: getToken,
    login: login,
    ensureToken: ensureToken,
    clearToken: function () { wx.removeStorageSync(TOKEN_KEY); },
    requestFull: requestFull,
    request: request,
    get: function (path) { return request('GET', path); },
    post: function (path, data) { return request('POST', path, data || {}); },
    patch: function (path, data) { return request('PATCH', path, data || {}); },
    del: function (path) { return request('DELETE', path); }
  };
}

module.exports = { createApi: createApi, TOKEN_KEY: TOKEN_KEY };
