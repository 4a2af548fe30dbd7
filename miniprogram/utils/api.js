// The one API module every page uses: login, token storage, one re-login on 401,
// and the server's error envelope turned into a friendly Chinese message.
var defaults = require('../config.js');
var errors = require('./errors.js');

var TOKEN_KEY = 'companion_token';

/**
 * @typedef {{ aborted: boolean }} AbortSignalLike  set `aborted` to drop a request not sent yet
 * @typedef {{ statusCode: number, data: any }} FullResponse
 */

function createApi(overrides) {
  var config = Object.assign({}, defaults, overrides || {});
  // 'sse' talks to the custom domain; the cloud transports go through Cloud Run.
  var via = config.transport === 'sse' ? 'request' : 'callContainer';
  var loggingIn = null;
  var hooks = { onNotices: function (_notices) {} };

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
        reject(new errors.ApiError(timedOut ? 'timeout' : 'network', 0));
      };
      if (via === 'request') {
        wx.request({
          url: config.baseUrl + path, method: method, data: data, header: headers(token), timeout: 20000,
          success: resolve, fail: fail
        });
        return;
      }
      // Base library < 2.23.0 has no wx.cloud.callContainer: say so in words the user can act on.
      if (!wx.cloud || !wx.cloud.callContainer) {
        reject(new errors.ApiError('client_outdated', 0));
        return;
      }
      var header = headers(token);
      header['X-WX-SERVICE'] = config.service;
      wx.cloud.callContainer({
        config: { env: config.cloudEnv }, path: path, method: method, data: data, header: header,
        success: resolve, fail: fail
      });
    });
  }

  function bodyOf(res) {
    if (typeof res.data === 'string') {
      try { return JSON.parse(res.data); } catch (e) { return {}; }
    }
    return res.data || {};
  }

  function toError(res) {
    var error = bodyOf(res).error || {};
    return new errors.ApiError(error.code || 'http_' + res.statusCode, res.statusCode);
  }

  function wxLogin() {
    return new Promise(function (resolve, reject) {
      wx.login({
        success: function (res) { resolve(res.code); },
        fail: function () { reject(new errors.ApiError('network', 0)); }
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
          if (body.notices && body.notices.length) hooks.onNotices(body.notices);
          return body.token;
        })
        .then(function (token) { loggingIn = null; return token; }, function (err) { loggingIn = null; throw err; });
    }
    return loggingIn;
  }

  function ensureToken() {
    if (loggingIn) return loggingIn;
    var token = getToken();
    return token ? Promise.resolve(token) : login();
  }

  // A token the server refused is dropped, unless another request already replaced it:
  // concurrent 401s then share one login instead of deleting each other's fresh token.
  function renewToken(refused) {
    if (getToken() === refused) wx.removeStorageSync(TOKEN_KEY);
    return ensureToken();
  }

  function checkAborted(signal) {
    if (signal && signal.aborted) throw new errors.ApiError('aborted', 0);
  }

  /**
   * Resolves the full response for 2xx; rejects with an ApiError. With `signal`, a request
   * not sent yet (waiting for a login) is dropped once the caller sets `signal.aborted`.
   * @param {string} method
   * @param {string} path
   * @param {any} [data]
   * @param {AbortSignalLike} [signal]
   * @returns {Promise<FullResponse>}
   */
  function requestFull(method, path, data, signal) {
    var used = '';
    return ensureToken()
      .then(function (token) {
        checkAborted(signal);
        used = token;
        return send(method, path, data, token);
      })
      .then(function (res) {
        if (res.statusCode !== 401) return res;
        // The token expired or the server's secret rotated: log in again, once.
        return renewToken(used).then(function (token) {
          checkAborted(signal);
          return send(method, path, data, token);
        });
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
    hooks: hooks,
    getToken: getToken,
    login: login,
    ensureToken: ensureToken,
    renewToken: renewToken,
    clearToken: function () { wx.removeStorageSync(TOKEN_KEY); },
    requestFull: requestFull,
    request: request,
    get: function (path) { return request('GET', path); },
    post: function (path, data) { return request('POST', path, data || {}); },
    put: function (path, data) { return request('PUT', path, data || {}); },
    patch: function (path, data) { return request('PATCH', path, data || {}); },
    del: function (path) { return request('DELETE', path); }
  };
}

module.exports = { createApi: createApi, TOKEN_KEY: TOKEN_KEY };
