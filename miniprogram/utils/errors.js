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
  wechat_error: '微信登录失败，请重试',
  login_unavailable: '登录服务暂时不可用，请稍后再试',
  invalid_code: '登录凭证无效，请重新进入小程序',
  missing_code: '登录凭证缺失，请重新进入小程序',
  code_already_used: '登录凭证已失效，请重新进入小程序',
  user_blocked: '该微信账号暂时无法登录',
  user_banned: '你的账号因违反使用规则已被停用，如有疑问请通过"投诉与反馈"联系我们',
  notice_required: '请先阅读并确认提示后再继续聊天',
  notice_outdated: '提示内容已更新，请重新阅读确认',
  guardian_consent_required: '未成年人模式下，与这个伙伴聊天需要监护人同意',
  persona_not_for_minors: '未成年人模式下不能使用这个伙伴',
  minor_time_limit: '今天的未成年人模式使用时间已用完，明天再来吧',
  // The operator console's codes; the mini-program never sees them, but every code has words.
  invalid_credentials: '用户名或密码错误',
  weak_password: '密码至少 12 个字符，且不能包含用户名',
  forbidden: '没有权限进行此操作',
  csrf_failed: '页面已过期，请刷新后重试',
  password_change_required: '请先修改初始密码',
  sign_in_locked: '登录失败次数过多，请稍后再试',
  edit_conflict: '内容刚被其他人修改，请刷新后重试',
  bad_request: '请求有误，请重试',
  invalid_json: '请求格式有误，请重试',
  invalid_body: '请求内容有误，请重试',
  invalid_query: '请求参数有误，请重试',
  invalid_cursor: '加载更多失败，请刷新后重试',
  invalid_title: '标题不能为空，也不能太长',
  invalid_memory: '这条记忆不能为空，最多 200 字，且只能一行',
  invalid_profile: '昵称或头像不符合要求',
  invalid_frame: '连接数据有误，请重试',
  unknown_persona: '这个伙伴暂时不可用，请换一个',
  not_a_reply: '只能接续 AI 伙伴的回复',
  method_not_allowed: '请求方式有误，请更新小程序',
  payload_too_large: '内容太长了，请精简后再发',
  unsupported_media_type: '请求格式有误，请更新小程序',
  unsupported_content_encoding: '请求格式有误，请更新小程序',
  request_timeout: '网络太慢，请求未能送达，请重试',
  headers_too_large: '请求过大，请重新进入小程序',
  too_many_replies: '同时进行的回复太多了，请等上一条说完',
  too_many_sockets: '打开的连接太多了，请关闭其他页面后重试',
  internal_error: '服务出了点问题，请稍后再试',
  shutting_down: '服务正在更新，请稍后重发',
  companion_busy: '小伙伴正忙着陪很多人聊天，请稍后再发',
  upstream_unavailable: '小伙伴暂时无法回复，请稍后再试',
  dependency_unavailable: '服务暂时不可用，请稍后再试',
  cancelled: '已停止这条回复，已保留收到的部分',
  empty_reply: 'AI 伙伴没有回复，请重试',
  generation_lost: '回复意外中断，请刷新查看',
  upstream_insufficient_resource: 'AI 服务繁忙，回复中断了，请重试',
  upstream_unexpected_finish: '回复意外结束，已保留收到的部分',
  upstream_bad_request: 'AI 服务暂时不可用，请稍后再试',
  upstream_unauthorized: 'AI 服务暂时不可用，请稍后再试',
  upstream_invalid_parameters: 'AI 服务暂时不可用，请稍后再试',
  upstream_error: 'AI 服务出错了，请重试',
  upstream_unreachable: '连不上 AI 服务，请稍后再试',
  upstream_protocol_error: 'AI 服务出错了，请重试',
  // Codes the client itself uses.
  network: '网络不太好，请检查网络后重试',
  timeout: '请求超时，请重试',
  client_outdated: '当前微信版本过低，请升级微信后再试',
  aborted: '已取消',
  privacy_declined: '需要同意隐私政策后才能继续使用'
};

var GENERIC = '出了点问题，请稍后再试';

// The server's `message` is English and meant for developers: users only ever see these
// Chinese texts, whatever the code (an unknown one gets a generic sentence).
function friendlyMessage(code) {
  return (code && Object.prototype.hasOwnProperty.call(MESSAGES, code) && MESSAGES[code]) || GENERIC;
}

// An Error carrying the server's code and HTTP status.
function ApiError(code, status) {
  this.name = 'ApiError';
  this.code = code;
  this.status = status || 0;
  this.message = friendlyMessage(code);
}
ApiError.prototype = Object.create(Error.prototype);

module.exports = { friendlyMessage: friendlyMessage, ApiError: ApiError, MESSAGES: MESSAGES };
