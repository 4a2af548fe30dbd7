// The operator console: plain DOM, no framework, served by the backend itself. Every
// change sends the session's CSRF token; the session cookie is HttpOnly (never read here).
'use strict';

const state = { csrf: null, operator: null };
const $ = (id) => document.getElementById(id);

const ERRORS = {
  invalid_credentials: '用户名或密码错误',
  sign_in_locked: '登录失败次数过多，请稍后再试',
  login_rate_limited: '登录尝试过于频繁，请稍后再试',
  weak_password: '密码至少 12 个字符，且不能包含用户名',
  password_change_required: '请先修改初始密码',
  csrf_failed: '页面已过期，请刷新后重试',
  forbidden: '没有权限进行此操作',
  unauthorized: '登录已过期，请重新登录',
  not_found: '没有找到',
  invalid_body: '填写的内容有误',
  storage_unavailable: '存储暂时不可用，请稍后再试',
};

function say(text, isError) {
  const box = $('message');
  box.textContent = text;
  box.className = isError ? 'error' : '';
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && state.csrf) headers['x-csrf-token'] = state.csrf;
  const response = await fetch('/console/api' + path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const code = data.error && data.error.code;
    const error = new Error((code && ERRORS[code]) || (data.error && data.error.message) || '请求失败');
    error.code = code;
    error.status = response.status;
    throw error;
  }
  return data;
}

function show(section) {
  for (const id of ['signin', 'password', 'app']) $(id).hidden = id !== section;
}

function signedIn(session) {
  state.csrf = session.csrf_token;
  state.operator = session.operator;
  $('whoami').hidden = false;
  $('whoami-name').textContent = session.operator.name;
  $('whoami-role').textContent = session.operator.role === 'admin' ? '管理员' : '审核员';
  for (const el of document.querySelectorAll('[data-admin]')) el.hidden = session.operator.role !== 'admin';
  if (session.operator.must_change_password) {
    show('password');
    say('请先修改初始密码');
    return;
  }
  show('app');
  openTab('overview');
}

async function start() {
  try {
    signedIn(await api('GET', '/session'));
  } catch (e) {
    show('signin');
  }
}

$('signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    const session = await api('POST', '/session', { name: $('signin-name').value, password: $('signin-password').value });
    $('signin-password').value = '';
    say('');
    signedIn(session);
  } catch (e) { say(e.message, true); }
});

$('password-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    await api('POST', '/password', { current: $('password-current').value, new: $('password-new').value });
    $('password-current').value = '';
    $('password-new').value = '';
    say('密码已更新');
    signedIn(await api('GET', '/session'));
  } catch (e) { say(e.message, true); }
});

$('signout').addEventListener('click', async () => {
  try { await api('DELETE', '/session'); } catch (e) { /* already gone */ }
  state.csrf = null;
  $('whoami').hidden = true;
  show('signin');
  say('已退出登录');
});

for (const button of document.querySelectorAll('nav button')) {
  button.addEventListener('click', () => openTab(button.dataset.tab));
}

const LOADERS = {
  overview: loadOverview, personas: loadPersonas, users: () => {}, moderation: loadFlagged, keys: loadKeys, audit: loadAudit,
  crisis: loadCrisis, reports: loadReports,
};

function openTab(tab) {
  say('');
  if (tab === 'password') { show('password'); return; }
  show('app');
  for (const section of document.querySelectorAll('.tab')) section.hidden = section.id !== 'tab-' + tab;
  for (const button of document.querySelectorAll('nav button')) button.classList.toggle('active', button.dataset.tab === tab);
  Promise.resolve(LOADERS[tab]()).catch((e) => say(e.message, true));
}

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text === null || text === undefined ? '' : String(text);
  row.appendChild(td);
  return td;
}

function fillTable(id, items, columns) {
  const body = $(id).querySelector('tbody');
  body.replaceChildren();
  for (const item of items) {
    const row = document.createElement('tr');
    for (const column of columns) cell(row, column(item));
    body.appendChild(row);
  }
  return body;
}

const yuan = (n) => (Math.round(n * 10000) / 10000).toFixed(4);
const when = (t) => (t ? new Date(t).toLocaleString('zh-CN') : '');

function barChart(id, values, labels) {
  const width = 600, height = 140, max = Math.max(...values, 0) || 1, step = width / values.length;
  const svgNs = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(svgNs, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  values.forEach((value, i) => {
    const bar = document.createElementNS(svgNs, 'rect');
    const h = (value / max) * (height - 10);
    bar.setAttribute('x', String(i * step + 1));
    bar.setAttribute('y', String(height - h));
    bar.setAttribute('width', String(Math.max(step - 2, 1)));
    bar.setAttribute('height', String(h));
    bar.setAttribute('fill', '#1f6f5c');
    const title = document.createElementNS(svgNs, 'title');
    title.textContent = `${labels[i]}：${value}`;
    bar.appendChild(title);
    svg.appendChild(bar);
  });
  $(id).replaceChildren(svg);
}

async function loadOverview() {
  const data = await api('GET', '/overview?days=30');
  const [today, yesterday] = data.days;
  $('today-users').textContent = today.active_users;
  $('today-replies').textContent = today.replies;
  $('today-cost').textContent = yuan(today.cost_cny);
  $('yesterday-cost').textContent = yesterday ? yuan(yesterday.cost_cny) : '-';
  $('today-latency').textContent = `${today.first_token_p50_ms ?? '-'} / ${today.first_token_p95_ms ?? '-'}`;
  $('live-generations').textContent = data.live_generations_here;
  const oldestFirst = [...data.days].reverse();
  barChart('chart-cost', oldestFirst.map((d) => Number(yuan(d.cost_cny))), oldestFirst.map((d) => d.day));
  barChart('chart-replies', oldestFirst.map((d) => d.replies), oldestFirst.map((d) => d.day));
  fillTable('days-table', data.days, [
    (d) => d.day, (d) => d.active_users, (d) => d.conversations, (d) => d.replies, (d) => d.api_requests,
    (d) => d.replies_by_status.failed || 0,
    (d) => `${d.tokens.cache_hit} / ${d.tokens.cache_miss} / ${d.tokens.output}`,
    (d) => yuan(d.cost_cny) + (d.unpriced_models.length ? `（未定价：${d.unpriced_models.join('、')}）` : ''),
    (d) => d.rate_limited, (d) => d.quota_exceeded,
  ]);
}

let personas = [];

async function loadPersonas() {
  personas = (await api('GET', '/personas')).items;
  const list = $('persona-list');
  list.replaceChildren();
  for (const p of personas) {
    const item = document.createElement('li');
    item.className = 'persona-item' + (p.enabled ? '' : ' disabled');
    item.dataset.id = p.id;
    const link = document.createElement('button');
    link.type = 'button';
    const flags = [p.enabled ? '' : ' · 已停用', p.preview ? ' · 预览' : '', p.not_for_minors ? ' · 未成年人不可见' : '',
      p.emotional ? ' · 情感陪伴' : '', p.simulates_relative ? ' · 模拟亲属（不得面向老年用户）' : ''];
    link.textContent = `${p.name}（${p.id}）${flags.join('')}`;
    link.addEventListener('click', () => editPersona(p));
    item.appendChild(link);
    list.appendChild(item);
  }
}

function editPersona(p) {
  const form = $('persona-form');
  form.hidden = false;
  $('persona-id').value = p ? p.id : '';
  $('persona-id').disabled = Boolean(p);
  $('persona-name').value = p ? p.name : '';
  $('persona-description').value = p ? p.description : '';
  $('persona-greeting').value = p ? p.greeting : '';
  $('persona-system-prompt').value = p ? p.system_prompt : '';
  $('persona-model').value = (p && p.model) || '';
  $('persona-temperature').value = p && p.temperature !== null && p.temperature !== undefined ? p.temperature : '';
  $('persona-thinking').checked = Boolean(p && p.thinking);
  $('persona-memory').checked = p ? p.memory : true;
  $('persona-preview').checked = Boolean(p && p.preview);
  $('persona-enabled').checked = p ? p.enabled : true;
  $('persona-not-for-minors').checked = Boolean(p && p.not_for_minors);
  $('persona-emotional').checked = Boolean(p && p.emotional);
  $('persona-simulates-relative').checked = Boolean(p && p.simulates_relative);
  form.dataset.effort = (p && p.reasoning_effort) || '';
}

$('persona-new').addEventListener('click', () => editPersona(null));
$('persona-cancel').addEventListener('click', () => { $('persona-form').hidden = true; });
$('persona-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const id = $('persona-id').value.trim();
  const temperature = $('persona-temperature').value;
  const body = {
    name: $('persona-name').value, description: $('persona-description').value,
    greeting: $('persona-greeting').value, system_prompt: $('persona-system-prompt').value,
    model: $('persona-model').value.trim() || null,
    temperature: temperature === '' ? null : Number(temperature),
    thinking: $('persona-thinking').checked,
    reasoning_effort: $('persona-form').dataset.effort || null,
    preview: $('persona-preview').checked, memory: $('persona-memory').checked,
    enabled: $('persona-enabled').checked,
    not_for_minors: $('persona-not-for-minors').checked,
    emotional: $('persona-emotional').checked,
    simulates_relative: $('persona-simulates-relative').checked,
  };
  try {
    await api('PUT', '/personas/' + encodeURIComponent(id), body);
    $('persona-form').hidden = true;
    say(`已保存伙伴 ${body.name}，已生效`);
    await loadPersonas();
  } catch (e) { say(e.message, true); }
});

let foundUser = null;

function showUser(user) {
  foundUser = user;
  $('user-card').hidden = false;
  $('user-id').textContent = user.id;
  $('user-openid-hash').textContent = user.openid_hash;
  $('user-nickname').textContent = user.nickname || '（未设置）';
  $('user-created').textContent = when(user.created_at);
  const { messages, tokens } = user.usage_today;
  const used = (a) => (a ? `${a.used}${a.limit ? ' / ' + a.limit : '（不限）'}` : '-');
  $('user-usage').textContent = used(messages);
  $('user-tokens').textContent = used(tokens);
  $('user-quota').textContent = user.own_quota ? '单独设置' : '默认';
  $('quota-messages').value = messages ? messages.limit : 0;
  $('quota-tokens').value = tokens ? tokens.limit : 0;
  $('quota-reset').hidden = !user.own_quota;
  loadSafety().catch((e) => say(e.message, true));
  $('user-status').textContent = user.ban ? `已封禁：${user.ban.reason}（${user.ban.by}，${when(user.ban.at)}）` : '正常';
  $('ban-submit').hidden = Boolean(user.ban);
  $('unban-submit').hidden = !user.ban;
}

async function refreshUser() {
  showUser(await api('POST', '/users/search', { query: foundUser.id }));
}

const SAFETY_EVENTS = {
  notice_issued: '发出提示', notice_acknowledged: '确认提示', exit_phrase: '退出对话', crisis_detected: '识别到危机',
  taken_over: '人工接管', operator_replied: '人工回复', released: '结束接管', minor_mode_on: '开启未成年人模式',
  minor_mode_off: '关闭未成年人模式', guardian_consent: '监护人同意', minor_time_limit: '未成年人时长用尽',
};

async function loadSafety() {
  const record = await api('GET', `/users/${foundUser.id}/safety`);
  const minor = record.minor_mode;
  $('user-minor').textContent = minor
    ? `未成年人模式：开启（${when(minor.since)}）${minor.guardian_consent ? `，监护人同意已记录（${minor.guardian_consent.by}）` : '，未记录监护人同意'}`
    : '未成年人模式：未开启';
  $('consent-form').hidden = !minor;
  fillTable('safety-list', record.items, [
    (e) => when(e.at), (e) => SAFETY_EVENTS[e.kind] || e.kind, (e) => e.detail || '', (e) => e.conversation_id || '',
  ]);
}

$('consent-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const note = $('consent-note').value.trim();
  if (!note) { say('请填写核实方式', true); return; }
  try {
    await api('POST', `/users/${foundUser.id}/guardian-consent`, { note });
    $('consent-note').value = '';
    say('已记录监护人同意');
    await loadSafety();
  } catch (e) { say(e.message, true); }
});

$('minor-off').addEventListener('click', async () => {
  const reason = $('consent-note').value.trim();
  if (!reason) { say('请先在上方填写监护人同意的核实方式', true); return; }
  try {
    await api('DELETE', `/users/${foundUser.id}/minor-mode`, { reason });
    say('已关闭未成年人模式');
    await loadSafety();
  } catch (e) { say(e.message, true); }
});

const REPORT_REASONS = {
  illegal: '违法违规', pornographic: '色情低俗', abusive: '辱骂骚扰', fraud: '诈骗', misinformation: '虚假信息',
  harmful_to_minors: '危害未成年人', privacy: '侵犯隐私', self_harm: '自伤自杀', other: '其他',
};
const REPORT_STATUS = { pending: '待处理', accepted: '已受理', dismissed: '已驳回' };

async function loadReports() {
  const items = (await api('GET', '/reports')).items;
  const body = fillTable('report-list', items, [
    (r) => when(r.created_at), (r) => REPORT_REASONS[r.reason] || r.reason, (r) => r.text || '',
    (r) => r.snapshot.map((m) => `${ROLES[m.role] || m.role}：${m.content}`).join('\n'),
    (r) => r.user_id, (r) => when(r.due_at), (r) => REPORT_STATUS[r.status] || r.status, () => '',
  ]);
  [...body.rows].forEach((row, i) => {
    row.className = 'report-row';
    if (items[i].status !== 'pending') { row.lastChild.textContent = items[i].note || ''; return; }
    for (const [status, words] of [['accepted', '受理'], ['dismissed', '驳回']]) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'report-' + status;
      button.textContent = words;
      button.addEventListener('click', async () => {
        const note = window.prompt('处理说明（用户可见，将记入审计日志）');
        if (!note) return;
        try {
          await api('POST', `/reports/${items[i].id}/decision`, { status, note });
          say('已处理');
          await loadReports();
        } catch (e) { say(e.message, true); }
      });
      row.lastChild.appendChild(button);
    }
  });
}

let crisisOpen = null;

async function loadCrisis() {
  const items = (await api('GET', '/crisis')).items;
  const body = fillTable('crisis-list', items, [
    (c) => when(c.flagged_at), (c) => (c.detected_by === 'classifier' ? '识别模型' : (c.detected_by || '').replace('phrase:', '关键词：')),
    (c) => c.user_id, (c) => c.persona_id, (c) => c.taken_over_by || '', (c) => (c.handled_at ? when(c.handled_at) : '未处理'),
    () => '',
  ]);
  [...body.rows].forEach((row, i) => {
    row.className = 'crisis-row';
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'crisis-open';
    open.textContent = '查看并处理';
    open.addEventListener('click', () => openCrisis(items[i].conversation_id).catch((e) => say(e.message, true)));
    row.lastChild.appendChild(open);
  });
}

const ROLES = { user: '用户', assistant: 'AI 伙伴', operator: '人工' };

async function openCrisis(id) {
  crisisOpen = id;
  const data = await api('GET', '/crisis/' + id);
  $('crisis-view').hidden = false;
  $('crisis-conversation').textContent = id;
  fillTable('crisis-messages', data.items, [
    (m) => when(m.at), (m) => ROLES[m.role] || m.role, (m) => m.content || (m.status === 'streaming' ? '（等待人工回复）' : ''),
  ]);
  const taken = Boolean(data.conversation.taken_over_by);
  $('crisis-takeover').hidden = taken;
  $('crisis-reply-form').hidden = !taken;
  $('crisis-release').hidden = !taken;
}

$('crisis-takeover').addEventListener('click', async () => {
  try {
    await api('POST', `/conversations/${crisisOpen}/takeover`);
    say('已接管，AI 伙伴暂停回复');
    await openCrisis(crisisOpen);
    await loadCrisis();
  } catch (e) { say(e.message, true); }
});

$('crisis-reply-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = $('crisis-reply').value.trim();
  if (!text) return;
  try {
    await api('POST', `/conversations/${crisisOpen}/operator-reply`, { text });
    $('crisis-reply').value = '';
    say('已发送');
    await openCrisis(crisisOpen);
  } catch (e) { say(e.message, true); }
});

$('crisis-release').addEventListener('click', async () => {
  try {
    await api('POST', `/conversations/${crisisOpen}/release`);
    say('已结束接管，AI 伙伴继续陪伴');
    await openCrisis(crisisOpen);
    await loadCrisis();
  } catch (e) { say(e.message, true); }
});

$('user-search-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    showUser(await api('POST', '/users/search', { query: $('user-query').value.trim() }));
    say('');
  } catch (e) { $('user-card').hidden = true; say(e.message, true); }
});

$('ban-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const reason = $('ban-reason').value.trim();
  if (!reason) { say('请填写封禁原因', true); return; }
  try {
    await api('POST', `/users/${foundUser.id}/ban`, { reason });
    $('ban-reason').value = '';
    say('已封禁该用户');
    await refreshUser();
  } catch (e) { say(e.message, true); }
});

$('quota-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const reason = $('quota-reason').value.trim();
  if (!reason) { say('请填写调整原因', true); return; }
  const body = { messages: Number($('quota-messages').value), tokens: Number($('quota-tokens').value), reason };
  try {
    await api('PUT', `/users/${foundUser.id}/quota`, body);
    $('quota-reason').value = '';
    say('已调整该用户的每日额度');
    await refreshUser();
  } catch (e) { say(e.message, true); }
});

$('quota-reset').addEventListener('click', async () => {
  try {
    await api('DELETE', `/users/${foundUser.id}/quota`);
    say('已恢复默认额度');
    await refreshUser();
  } catch (e) { say(e.message, true); }
});

$('unban-submit').addEventListener('click', async () => {
  try {
    await api('DELETE', `/users/${foundUser.id}/ban`);
    say('已解除封禁');
    await refreshUser();
  } catch (e) { say(e.message, true); }
});

const FLAG_REASONS = { content_rejected: '用户消息未通过内容安全检测', content_blocked: '回复未通过内容安全检测' };
// msgSecCheck 的标签（label）。
const CHECK_LABELS = {
  100: '正常', 10001: '广告', 20001: '时政', 20002: '色情', 20003: '辱骂', 20006: '违法犯罪',
  20008: '欺诈', 20012: '低俗', 20013: '版权', 21000: '其他',
};
const checkLabel = (label) => (label == null ? '—' : `${CHECK_LABELS[label] || '其他'}（${label}）`);

async function loadFlagged() {
  const items = (await api('GET', '/moderation')).items;
  const body = fillTable('flagged-list', items, [
    (f) => when(f.at), (f) => (f.kind === 'input' ? '用户消息' : 'AI 回复'), (f) => FLAG_REASONS[f.code] || f.code,
    (f) => checkLabel(f.label), (f) => f.text || '（已撤回，不保存）', (f) => f.user_id, () => '',
  ]);
  [...body.rows].forEach((row, i) => {
    row.className = 'flagged-row';
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'flagged-user';
    open.textContent = '查看用户';
    open.addEventListener('click', async () => {
      openTab('users');
      $('user-query').value = items[i].user_id;
      try { showUser(await api('POST', '/users/search', { query: items[i].user_id })); } catch (e) { say(e.message, true); }
    });
    row.lastChild.appendChild(open);
  });
}

$('conversations-list').addEventListener('click', async () => {
  try {
    const items = (await api('GET', `/users/${foundUser.id}/conversations`)).items;
    const body = fillTable('conversation-list', items, [(c) => c.title, (c) => c.persona_id, (c) => when(c.last_active_at), () => '']);
    [...body.rows].forEach((row, i) => {
      const view = document.createElement('button');
      view.type = 'button';
      view.className = 'conversation-view';
      view.textContent = '查看';
      view.addEventListener('click', async () => {
        const reason = $('view-reason').value.trim();
        if (!reason) { say('请先填写查看原因', true); return; }
        try {
          const shown = await api('POST', '/conversations/view', { user_id: foundUser.id, conversation_id: items[i].id, reason });
          $('conversation-title').textContent = shown.title;
          fillTable('conversation-messages', shown.items, [(m) => when(m.at), (m) => (m.role === 'user' ? '用户' : '伙伴'), (m) => m.content]);
          $('conversation-view').hidden = false;
        } catch (e) { say(e.message, true); }
      });
      row.lastChild.appendChild(view);
    });
  } catch (e) { say(e.message, true); }
});

async function loadKeys() {
  const keys = (await api('GET', '/keys')).items;
  const body = fillTable('key-list', keys, [
    (k) => k.name, (k) => k.prefix + '…', (k) => k.per_minute || '不限', (k) => k.daily_tokens || '不限',
    (k) => `${k.used_today.requests} 次 / ${k.used_today.tokens} token`, (k) => k.check_as || '未设置', (k) => k.created_by,
    (k) => when(k.created_at), (k) => (k.revoked_at ? '已吊销' : '有效'), () => '',
  ]);
  [...body.rows].forEach((row, i) => {
    row.className = 'key-row';
    row.dataset.id = keys[i].id;
    if (keys[i].revoked_at) return;
    const revoke = document.createElement('button');
    revoke.type = 'button';
    revoke.className = 'key-revoke';
    revoke.textContent = '吊销';
    revoke.addEventListener('click', async () => {
      try {
        await api('DELETE', '/keys/' + keys[i].id);
        say(`已吊销密钥 ${keys[i].name}`);
        await loadKeys();
      } catch (e) { say(e.message, true); }
    });
    row.lastChild.appendChild(revoke);
  });
}

$('key-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    const created = await api('POST', '/keys', {
      name: $('key-name').value,
      per_minute: Number($('key-per-minute').value || 0),
      daily_tokens: Number($('key-daily-tokens').value || 0),
      check_as: $('key-check-as').value.trim() || null,
    });
    $('key-secret').textContent = created.key;
    $('key-created').hidden = false;
    $('key-name').value = '';
    say('已创建密钥');
    await loadKeys();
  } catch (e) { say(e.message, true); }
});

const ACTIONS = {
  sign_in: '登录', sign_out: '退出', password_changed: '修改密码', operator_added: '添加操作员',
  operator_reset: '重置操作员', operator_disabled: '停用操作员', persona_saved: '保存伙伴',
  user_banned: '封禁用户', user_unbanned: '解除封禁', quota_changed: '调整额度',
  conversation_viewed: '查看对话', api_key_created: '创建密钥', api_key_revoked: '吊销密钥',
  conversation_taken_over: '人工接管', operator_replied: '人工回复', conversation_released: '结束接管',
  guardian_consent_recorded: '记录监护人同意', minor_mode_off: '关闭未成年人模式', report_decided: '处理投诉',
};

async function loadAudit() {
  const entries = (await api('GET', '/audit')).items;
  fillTable('audit-list', entries, [
    (e) => when(e.at), (e) => e.actor, (e) => ACTIONS[e.action] || e.action, (e) => e.target, (e) => e.reason,
  ]);
}

start();
