// The personas and history pages, sign-in races, and an old WeChat without wx.cloud.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('./helpers.js');
const { TOKEN_KEY } = require('../utils/api.js');
const { createClient } = require('../utils/client.js');

const skip = !h.baseUrl;
const { UNREACHABLE } = h;

test('the personas page offers 重试 after a failed load, and pull-to-refresh works', { skip, timeout: 30000 }, async () => {
  const device = h.phone('sse', {}, { baseUrl: UNREACHABLE });
  const personas = h.loadPage(path.join(h.PAGES, 'personas/index.js'), device.app);
  await personas.load();
  assert.match(personas.find('error-bar').textContent, /网络不太好/);
  assert.ok(personas.find('retry'), 'a 重试 to tap');
  device.api.config.baseUrl = h.baseUrl;
  await personas.tap('retry');
  await h.waitFor(() => personas.data.personas.length >= 2, 'the personas after 重试');
  assert.equal(personas.find('error-bar'), null);
  await personas.onPullDownRefresh();
  assert.ok(personas.data.personas.length >= 2);
});

test('a double tap on a companion opens one conversation', { skip, timeout: 30000 }, async () => {
  const device = h.phone('sse');
  const personas = h.loadPage(path.join(h.PAGES, 'personas/index.js'), device.app);
  await personas.load();
  const before = (await device.api.get('/api/conversations?limit=50')).items.length;
  const tap = { currentTarget: { dataset: { id: 'xiaoxi' } } };
  const [first, second] = await Promise.all([personas.choose(tap), personas.choose(tap)]);
  assert.ok(first && first.id);
  assert.equal(second, null, 'the second tap is ignored');
  const after = (await device.api.get('/api/conversations?limit=50')).items.length;
  assert.equal(after - before, 1);
});

test('history shows the companion, local times and a visible delete, and does not blank on tab switch', { skip, timeout: 30000 }, async () => {
  const device = h.phone('sse');
  const first = await device.api.post('/api/conversations', { persona_id: 'xiaoxi' });
  await device.api.post('/api/conversations', { persona_id: 'xiaoxi' });
  const history = h.loadPage(path.join(h.PAGES, 'history/index.js'), device.app);
  await history.onShow();
  const text = history.text();
  assert.match(text, /小溪/);
  assert.match(text, /开始于 \d{4}年\d{1,2}月\d{1,2}日 \d\d:\d\d/);
  assert.match(text, /刚刚|分钟前|\d\d:\d\d/);
  assert.doesNotMatch(text, /\d{4}-\d\d-\d\dT/, 'no raw UTC timestamps');
  assert.equal(history.findAll('delete').length, 2, 'a delete button on each entry');
  // Switching back to the tab refreshes in place.
  const shown = [];
  const setData = history.setData;
  history.setData = (patch, cb) => { setData(patch, cb); shown.push(history.data.conversations.length); };
  await history.onShow();
  assert.ok(shown.every((n) => n === 2), `never blank: ${shown}`);
  // Two conversations with 小溪 tell apart once one has a name of its own.
  const index = history.data.conversations.findIndex((c) => c.id === first.id);
  device.wx.answerModal = () => ({ confirm: true, content: '周末的计划' });
  await history.tap('rename', index);
  await h.waitFor(() => history.data.conversations[index].title === '周末的计划', 'the new name');
  assert.match(history.text(), /小溪\S*周末的计划/, 'the companion, then the name');
  assert.equal((await device.api.get(`/api/conversations/${first.id}`)).title, '周末的计划');
  device.wx.answerModal = () => ({ confirm: true });
  await history.tap('delete', index);
  await h.waitFor(() => history.data.conversations.length === 1, 'the entry to go');
  await assert.rejects(device.api.get(`/api/conversations/${first.id}`), (e) => e.code === 'not_found');
});

test('concurrent 401s share one login and keep the fresh token', { skip, timeout: 30000 }, async () => {
  const device = h.phone('sse');
  const me = await device.api.get('/api/me');
  const expired = h.expiredToken(me.id);
  device.wx.setStorageSync(TOKEN_KEY, expired);
  const logins = device.wx.stats.logins;
  const results = await Promise.all([1, 2, 3, 4].map(() => device.api.get('/api/me')));
  assert.ok(results.every((r) => r.id === me.id));
  assert.equal(device.wx.stats.logins - logins, 1, 'one login for four 401s');
  const fresh = device.wx.getStorageSync(TOKEN_KEY);
  // A 401 for the old token that arrives after the new login must not delete the new token.
  device.wx.setStorageSync(TOKEN_KEY, h.expiredToken(me.id));
  const stale = device.wx.getStorageSync(TOKEN_KEY);
  device.wx.delayNext = { match: /\/api\/conversations$/, ms: 600 };
  const late = device.api.get('/api/conversations'); // its 401 comes back late
  await h.sleep(100);
  const first = await device.api.get('/api/me'); // 401, logs in again at once
  const renewed = device.wx.getStorageSync(TOKEN_KEY);
  assert.notEqual(renewed, stale);
  await late;
  assert.equal(first.id, me.id);
  assert.equal(device.wx.getStorageSync(TOKEN_KEY), renewed, 'the late 401 kept the fresh token');
  assert.equal(device.wx.stats.logins - logins, 2, 'one login for each expiry, none for the late 401');
  assert.ok(fresh);
});

test('without wx.cloud (base library < 2.23.0) the pages say to update WeChat', { timeout: 30000 }, async () => {
  const device = h.phone('callContainer');
  device.wx.cloud = undefined;
  global.App = (definition) => { device.launched = definition; };
  delete require.cache[require.resolve('../app.js')];
  require('../app.js');
  device.launched.onLaunch();
  assert.equal(device.launched.globalData.setupError, '当前微信版本过低，请升级微信后再试');
  const app = createClient({ transport: 'websocket', baseUrl: h.baseUrl || UNREACHABLE });
  app.globalData.setupError = device.launched.globalData.setupError;
  await assert.rejects(app.api.get('/api/personas'), (e) => e.message === '当前微信版本过低，请升级微信后再试');
  const personas = h.loadPage(path.join(h.PAGES, 'personas/index.js'), app);
  await personas.load();
  assert.match(personas.find('error-bar').textContent, /微信版本过低/);
  const chat = h.loadPage(path.join(h.PAGES, 'chat/index.js'), app);
  await chat.onLoad({ id: '000000000000000000000000' });
  assert.match(chat.find('error-bar').textContent, /微信版本过低/, 'the chat says it too');
  assert.ok(!h.hasEnglish(chat.text()), chat.text());
});
