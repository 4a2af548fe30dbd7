// The 我的 page and the pages it opens (TA记得的事, 举报, 我的举报), rendered with
// miniprogram-simulate and driven through the Node `wx`, against the real server that
// scripts/test.sh starts (E2E_BASE_URL).
const test = require('node:test');
const assert = require('node:assert/strict');
const { createWx } = require('./wx-shim.js');
const { renderPage } = require('./simulate.js');
const { createClient } = require('../utils/client.js');

const { baseUrl, sleep, waitFor, UNREACHABLE } = require('./helpers.js');

let users = 0;

// A new user: its own wx (storage, openid) and client, logged in, notices acknowledged.
async function signIn(name, url = baseUrl) {
  const wx = createWx({ baseUrl, devName: `pages_${name}_${Date.now()}_${users++}` });
  global.wx = wx;
  const app = createClient({ transport: 'sse', baseUrl: url, pollIntervalMs: 100 });
  if (url === baseUrl) {
    await app.api.ensureToken();
    await app.notices.whenSettled();
  }
  return { wx, app, api: app.api };
}

const tapOn = (id) => ({ currentTarget: { dataset: { id } } });

// Text a user reads: Chinese, and no English word from a server message ("TA" is Chinese usage).
function assertChinese(text, what) {
  assert.match(text, /[\u4e00-\u9fff]/, `${what} is Chinese: ${text}`);
  assert.doesNotMatch(text.replace(/TA/g, ''), /[A-Za-z]{2,}/, `${what} has no English: ${text}`);
}

function errorBar(page) {
  const bar = page.find('error-bar');
  assert.ok(bar, 'an error bar is shown');
  assert.match(bar.textContent, /重试/, 'the error bar offers 重试');
  return bar.textContent;
}

async function conversationWithReply(api) {
  const conversation = await api.post('/api/conversations', { persona_id: 'xiaoxi' });
  const sent = await api.post(`/api/conversations/${conversation.id}/messages`, { content: '你好，想举报一下', stream: false });
  // The reply is still being written when the send returns; a report keeps the text as it is then.
  const path = `/api/conversations/${conversation.id}/messages/${sent.assistant_message.id}`;
  let message = sent.assistant_message;
  for (let i = 0; i < 300 && message.status === 'streaming'; i++) {
    await sleep(20);
    message = await api.get(path);
  }
  assert.notEqual(message.status, 'streaming', 'the reply finished');
  return { conversation, message };
}

test('the me page shows minor mode off, then on after the user turns it on', { skip: !baseUrl, timeout: 30000 }, async () => {
  const { wx, app, api } = await signIn('minor');
  const me = renderPage('me', app);
  await me.onShow();
  assert.equal(me.data.errorText, '');
  assert.equal(me.data.minorOn, false);
  assert.match(me.text(), /未成年人模式\s*未开启/);
  assert.match(me.text(), /开启后每日使用时长受限，部分伙伴不可用；关闭需联系客服/);
  assert.match(me.text(), /小溪记得的事/, 'one row per companion');

  me.tap('minor-on');
  await waitFor(() => me.data.minorOn, 'minor mode on the page', 10000);
  assert.ok(wx.modals.some((m) => m.title === '开启未成年人模式'), 'asked before switching on');
  const after = await api.get('/api/me');
  assert.ok(after.minor_mode, 'the server has minor mode on');
  assert.equal(me.data.minorOn, true);
  assert.match(me.text(), /已开启/);
  assert.equal(me.find('minor-on'), null, 'no button to switch it off');
  assert.match(me.text(), /今天已用 0 分钟，每日限 40 分钟/, 'the daily time limit');

  // The personas page marks 小溪 (an emotional companion) and explains instead of opening a chat.
  const personas = renderPage('personas', app);
  await personas.load();
  assert.match(personas.text(), /小溪.*需监护人同意/);
  assert.equal(await personas.choose({ currentTarget: { dataset: { id: 'xiaoxi' } } }), null);
  assert.ok(wx.modals.some((m) => m.title === '需要监护人同意'));
  assert.ok(await personas.choose({ currentTarget: { dataset: { id: 'ahang' } } }), 'others open as usual');

  await me.tap('reports-row');
  assert.equal(wx.lastNavigation, '/pages/reports/index');
  await me.tap('memory-row');
  assert.equal(wx.lastNavigation, '/pages/memories/index?persona=xiaoxi&name=' + encodeURIComponent('小溪'));
});

test('the export flow ends with the user\'s document copied to the clipboard', { skip: !baseUrl, timeout: 30000 }, async () => {
  const { wx, app, api } = await signIn('export');
  const me = renderPage('me', app);
  await me.onShow();
  // The dev server prepares an export at once: the first two polls answer "still preparing"
  // (202) as a large export would, so the page's polling is exercised; the rest is real.
  const requestFull = api.requestFull;
  let polls = 0;
  api.requestFull = (method, path, data) => {
    if (!path.startsWith('/api/me/exports/')) return requestFull(method, path, data);
    polls += 1;
    return polls <= 2 ? Promise.resolve({ statusCode: 202, data: { status: 'preparing' } }) : requestFull(method, path, data);
  };
  const started = Date.now();
  const finished = me.startExport();
  assert.equal(me.startExport(), finished, 'a second tap joins the export under way');
  assert.equal(me.data.exportStatus, 'preparing');
  assert.match(me.find('export-status').textContent, /正在整理/);
  await finished;
  assert.ok(polls >= 3, 'asked again while preparing');
  assert.ok(Date.now() - started >= 200, 'waited pollIntervalMs between polls');
  assert.equal(me.data.exportStatus, 'ready');
  assert.match(me.find('export-status').textContent, /已完成/);
  assert.ok(wx.modals.some((m) => m.title === '导出完成'), 'told that the export is ready');
  const { id } = await api.get('/api/me');
  const copied = JSON.parse(wx.clipboard);
  assert.equal(copied.user.id, id, 'the copied document is this user\'s');
  assert.ok(wx.clipboard.includes(id));
  assert.ok(!wx.clipboard.toLowerCase().includes('openid'), 'no openid in the export');
  assert.equal(wx.stats.requests.filter((r) => r.method === 'POST' && r.path === '/api/me/exports').length, 1, 'one export asked');
});

test('account deletion with the wrong confirmation word does nothing, and with 注销 erases the account', { skip: !baseUrl, timeout: 30000 }, async () => {
  const { wx, app, api } = await signIn('deletion');
  const before = await api.get('/api/me');
  const oldToken = api.getToken();
  const me = renderPage('me', app);
  await me.onShow();

  wx.answerModal = () => ({ confirm: true, cancel: false, content: '删除' });
  await me.deleteAccount();
  const [warned, asked] = wx.modals.slice(-2);
  assert.match(warned.content, /聊天记录/, 'first what deletion erases');
  assert.equal(asked.editable, true);
  assert.equal(asked.content, '', 'the input starts empty');
  assert.equal(asked.placeholderText, '请输入「注销」确认');
  assert.equal(wx.stats.requests.filter((r) => r.path === '/api/me/deletion').length, 0, 'nothing sent');
  assert.ok(wx.toasts.includes('输入不正确，账号未注销'));
  assert.equal((await api.get('/api/me')).id, before.id, 'the account is still there');
  assert.equal(api.getToken(), oldToken);

  wx.answerModal = () => ({ confirm: true, cancel: false, content: ' 注销 ' });
  me.tap('delete-row');
  await waitFor(() => wx.lastNavigation === '/pages/personas/index', 'back to the start', 10000);
  assert.ok(wx.toasts.includes('账号已注销'));
  assert.equal(api.getToken(), '', 'the token is dropped');
  const old = await fetch(baseUrl + '/api/me', { headers: { Authorization: 'Bearer ' + oldToken } });
  assert.equal(old.status, 401, 'the old token no longer works');
  const fresh = await api.get('/api/me');
  assert.notEqual(fresh.id, before.id, 'signing in again starts a new, empty account');
});

// The second server has a privacy policy and a 7-day cooling-off period before deletion.
const secondUrl = process.env.E2E_PRIVACY_BASE_URL;
test('a deletion waiting out its cooling-off period shows on 我的 after a reload and can be cancelled', { skip: !secondUrl, timeout: 30000 }, async () => {
  const wx = createWx({ baseUrl: secondUrl, devName: `pages_cooling_${Date.now()}_${users++}` });
  global.wx = wx;
  const app = createClient({ transport: 'sse', baseUrl: secondUrl, pollIntervalMs: 100 });
  await app.api.ensureToken();
  await app.notices.whenSettled();
  const me = renderPage('me', app);
  await me.onShow();
  wx.answerModal = () => ({ confirm: true, cancel: false, content: '注销' });
  await me.deleteAccount();
  const reloaded = renderPage('me', app);
  await reloaded.onShow();
  assert.match(reloaded.text(), /将于 \d{4}年.*注销，期间可撤销/, 'the schedule survives a reload');
  await reloaded.tap('cancel-deletion');
  await waitFor(() => reloaded.data.deletion === null, 'the cancellation', 10000);
  const again = renderPage('me', app);
  await again.onShow();
  assert.doesNotMatch(again.text(), /将于/);
  assert.ok(again.find('delete-row'), '注销账号 is offered again');
  assert.equal((await app.api.get('/api/me')).deletion_due_at, undefined, 'nothing scheduled at the server');
});

test('the report page files a report that then shows in the reports page as 处理中 with its Chinese reason', { skip: !baseUrl, timeout: 30000 }, async () => {
  const { wx, app, api } = await signIn('report');
  const { conversation, message } = await conversationWithReply(api);
  const report = renderPage('report', app);
  report.onLoad({ conversation: conversation.id, message: message.id });
  assert.match(report.text(), /辱骂攻击/);
  await report.submit();
  assert.equal(report.data.errorText, '请选择举报原因', 'a reason is needed');
  await report.tap('reason-abusive');
  assert.equal(report.data.reason, 'abusive');
  report.onText({ detail: { value: '说话很难听' } });
  const filed = await report.submit();
  assert.ok(filed && filed.id, 'filed');
  assert.ok(wx.toasts.some((t) => /^已提交，我们会在\d{4}年.+前处理$/.test(t)), wx.toasts.join());
  assert.equal(wx.wentBack, 1, 'the page closes');

  const reports = renderPage('reports', app);
  await reports.onShow();
  assert.equal(reports.data.items.length, 1);
  const text = reports.text();
  assert.match(text, /辱骂攻击/);
  assert.match(text, /处理中/);
  assert.match(text, /说话很难听/);
  assert.match(text, /预计 \d{4}年.+前处理/);
  assert.match(text, /离线演示回复/, 'quotes the reported message');
});

test('double-tapping submit on the report page files one report', { skip: !baseUrl, timeout: 30000 }, async () => {
  const { wx, app, api } = await signIn('double');
  const { conversation, message } = await conversationWithReply(api);
  const report = renderPage('report', app);
  report.onLoad({ conversation: conversation.id, message: message.id });
  report.choose({ currentTarget: { dataset: { reason: 'fraud' } } });
  report.tap('submit');
  report.tap('submit');
  const [first, second] = await Promise.all([report.submit(), report.submit()]);
  assert.equal(first, second);
  assert.equal(wx.stats.requests.filter((r) => r.method === 'POST' && r.path === '/api/reports').length, 1, 'one request');
  assert.equal((await api.get('/api/reports')).items.length, 1, 'one report');
  assert.equal(wx.wentBack, 1);
});

test('the memories page shows its empty state, and a failed edit or delete shows a Chinese error', { skip: !baseUrl, timeout: 30000 }, async () => {
  const { wx, app } = await signIn('memories');
  const memories = renderPage('memories', app);
  await memories.onLoad({ persona: 'xiaoxi', name: encodeURIComponent('小溪') });
  assert.equal(memories.data.errorText, '');
  assert.match(memories.text(), /TA还不记得关于你的事/);
  assert.equal(memories.find('clear-all'), null, 'nothing to clear');

  wx.answerModal = () => ({ confirm: true, cancel: false, content: '我喜欢猫' });
  await memories.edit(tapOn('000000000000000000000000'));
  assertChinese(errorBar(memories), 'the edit error');
  memories.tap('retry');
  await waitFor(() => !memories.data.errorText && !memories.data.loading, '重试 to reload', 10000);
  assert.equal(memories.find('error-bar'), null, '重试 reloads');

  // The server checks the text (≤ 200 characters, one line) and says so in Chinese.
  wx.answerModal = () => ({ confirm: true, cancel: false, content: '长'.repeat(201) });
  await memories.edit(tapOn('000000000000000000000000'));
  assert.match(errorBar(memories), /最多 200 字/);

  wx.answerModal = () => ({ confirm: true, cancel: false });
  await memories.remove(tapOn('not-a-memory'));
  assertChinese(errorBar(memories), 'the delete error');
  await memories.clearAll();
  assert.equal(memories.data.errorText, '', 'clearing nothing is fine');
});

test('each page renders its empty state and a Chinese error bar with 重试', { skip: !baseUrl, timeout: 30000 }, async () => {
  // Empty states, for a new user.
  const { app } = await signIn('empty');
  const reports = renderPage('reports', app);
  await reports.onShow();
  assert.match(reports.text(), /还没有举报记录/);
  const report = renderPage('report', app);
  report.onLoad({});
  assert.match(report.text(), /没有找到要举报的内容/);
  const missing = renderPage('report', app);
  missing.onLoad({ conversation: '000000000000000000000000', message: '000000000000000000000000' });
  missing.choose({ currentTarget: { dataset: { reason: 'other' } } });
  assert.equal(await missing.submit(), null);
  assertChinese(errorBar(missing), 'the report error');

  // Error bars, without a network; 重试 recovers once it is back.
  const offline = await signIn('offline', UNREACHABLE);
  for (const [name, start] of [['me', (p) => p.onShow()], ['reports', (p) => p.onShow()],
    ['memories', (p) => p.onLoad({ persona: 'xiaoxi', name: encodeURIComponent('小溪') })]]) {
    offline.api.config.baseUrl = UNREACHABLE;
    const page = renderPage(name, offline.app);
    await start(page);
    assertChinese(errorBar(page), `the ${name} page's error`);
    assert.doesNotMatch(page.text(), /加载中/, `${name}: loading ended`);
    offline.api.config.baseUrl = baseUrl;
    await page.load();
    assert.equal(page.find('error-bar'), null, `${name}: 重试 recovers`);
    assertChinese(page.text().replace(/\s+/g, ''), `the ${name} page`);
  }
});
