// Times as people read them in a chat list, in the phone's local time.
function pad(n) { return n < 10 ? '0' + n : String(n); }

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
}

/**
 * '刚刚', '5分钟前', '14:02' (today), '昨天 14:02', '11月20日', '2025年11月20日'.
 * @param {string} iso  a server timestamp (RFC 3339, UTC)
 * @param {number} [nowMs]
 */
function relativeTime(iso, nowMs) {
  var then = new Date(iso);
  if (isNaN(then.getTime())) return '';
  var now = new Date(nowMs === undefined ? Date.now() : nowMs);
  var seconds = (now.getTime() - then.getTime()) / 1000;
  if (seconds < 60) return '刚刚';
  if (seconds < 3600) return Math.floor(seconds / 60) + '分钟前';
  var clock = pad(then.getHours()) + ':' + pad(then.getMinutes());
  var days = Math.round((startOfDay(now) - startOfDay(then)) / 86400000);
  if (days === 0) return clock;
  if (days === 1) return '昨天 ' + clock;
  if (then.getFullYear() === now.getFullYear()) return (then.getMonth() + 1) + '月' + then.getDate() + '日';
  return then.getFullYear() + '年' + (then.getMonth() + 1) + '月' + then.getDate() + '日';
}

/** '2026年11月24日 14:02' */
function fullTime(iso) {
  var then = new Date(iso);
  if (isNaN(then.getTime())) return '';
  return then.getFullYear() + '年' + (then.getMonth() + 1) + '月' + then.getDate() + '日 ' + pad(then.getHours()) + ':' + pad(then.getMinutes());
}

module.exports = { relativeTime: relativeTime, fullTime: fullTime };
