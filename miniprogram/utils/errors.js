// The server's error codes as friendly Chinese messages.
var MESSAGES = {
  unauthorized: '登录已过期，请重新进入小程序',
  invalid_content: '消息不能为空，也不能太长',
  reply_in_progress: '上一条回复还在生成中，请稍候',
  not_found: '对话不存在或已被删除',
  login_rate_limited: '登录太频繁了，请稍后再试',
  rate_limited: '操作太频繁了，请稍后再试',
  quota_exceeded: '今天的聊天次数已用完，明天再来吧',
  content_rejected: '内容未通过安全检查，请修改后再发',
  content_blocked: '回复内容未通过安全检查，已停止显示',
  content_check_unavailable: '内容安全检查暂时不可用，请稍后再试',
  content_filtered: '回复内容被安全过滤，已停止',
  insufficient_balance: '服务暂时不可用（余额不足），请稍后再试',
  upstream_rate_limited: 'AI 伙伴太忙了，请稍后再试',
  upstream_overloaded: 'AI 伙伴太忙了，请稍后再试',
  upstream_server_error: 'AI 服务出错了，请重试',
  upstream_idle_timeout: '回复超时了，请重试',
  upstream_deadline_exceeded: '回复超时了，请重试',
  upstream_disconnected: '回复中断了，已保留收到的部分',
  server_shutdown: '服务正在更新，回复已保存，请重试',
  generation_interrupted: '回复中断了，已保留收到的部分',
  storage_unavailable: '服务暂时不可用，请稍后再试',
  wechat_unavailable: '微信登录服务繁忙，请稍后再试',
  network: '网络不太好，请检查网络后重试',
  timeout: '请求超时，请重试'
};

function friendlyMessage(code, fallback) {
  return MESSAGES[code] || fallback || '出了点问题，请稍后再试';
}

// An Error carrying the server's code and HTTP status.
function ApiError(code, message, status) {
  this.name = 'ApiError';
  this.code = code;
  this.status = status || 0;
  this.message = friendlyMessage(code, message);
}
ApiError.prototype = Object.create(Error.prototype);

module.exports = { friendlyMessage: friendlyMessage, ApiError: ApiError };
