// Notices the server asks the user to read (AI disclosure, the usage reminder, a new
// privacy-policy version): shown one at a time as modal dialogs and acknowledged through
// the server, which records the version the user saw.
var errors = require('./errors.js');

var BUTTONS = {
  privacy_policy: { confirm: '同意', cancel: '不同意' },
  ai_disclosure: { confirm: '我知道了' },
  usage_reminder: { confirm: '休息一下' }
};

function createNotices(api) {
  var queue = [];
  var showing = false;
  var known = {}; // kind:version already queued, shown or acknowledged
  var declinedAt = {}; // kind:version → when the user said 不同意 (not asked again at once)
  var idle = [];
  var DECLINED_QUIET_MS = 60000;

  function key(notice) { return notice.kind + ':' + notice.version; }

  // `asked`: the user asked to see the notices (or sign-in did), so a declined one shows again.
  function present(list, asked) {
    (list || []).forEach(function (notice) {
      if (!notice || known[key(notice)]) return;
      // Every reply and poll carries pending notices: one just declined waits a while.
      if (!asked && Date.now() - (declinedAt[key(notice)] || 0) < DECLINED_QUIET_MS) return;
      known[key(notice)] = true;
      queue.push(notice);
    });
    pump();
  }

  function settle() {
    var waiting = idle;
    idle = [];
    waiting.forEach(function (resolve) { resolve(); });
  }

  function pump() {
    if (showing) return;
    var notice = queue.shift();
    if (!notice) { settle(); return; }
    showing = true;
    var buttons = BUTTONS[notice.kind] || { confirm: '我知道了' };
    wx.showModal({
      title: notice.title,
      content: notice.text,
      showCancel: !!buttons.cancel,
      cancelText: buttons.cancel || '取消',
      confirmText: buttons.confirm,
      success: function (res) {
        if (res.confirm) acknowledge(notice);
        else declined(notice);
      },
      fail: function () { forget(notice); next(); }
    });
  }

  function next() { showing = false; pump(); }

  // Shown again the next time the server lists it.
  function forget(notice) { delete known[key(notice)]; }

  function acknowledge(notice) {
    api.post('/api/me/notices/' + notice.kind + '/ack', { version: notice.version }).then(next, function (error) {
      forget(notice);
      // The text changed meanwhile: show the current one.
      if (error.code === 'notice_outdated') { next(); refresh(); return; }
      next();
    });
  }

  function declined(notice) {
    forget(notice);
    declinedAt[key(notice)] = Date.now();
    if (notice.kind === 'privacy_policy') wx.showToast({ title: errors.friendlyMessage('privacy_declined'), icon: 'none' });
    next();
  }

  // Everything pending for this user, from /api/me.
  function refresh() {
    return api.get('/api/me').then(function (me) { present(me.notices, true); return me; });
  }

  // Resolves when no dialog is showing or waiting.
  function whenSettled() {
    if (!showing && !queue.length) return Promise.resolve();
    return new Promise(function (resolve) { idle.push(resolve); });
  }

  return {
    present: function (list) { present(list, false); },
    presentAsked: function (list) { present(list, true); },
    refresh: refresh,
    whenSettled: whenSettled
  };
}

module.exports = { createNotices: createNotices };
