// End to end: the mini-program's own modules and pages, driven through a Node `wx`, against
// the real Rust server that scripts/test.sh starts (E2E_BASE_URL), on all three transports.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { createWx, loadPage } = require('./wx-shim.js');
const { createClient } = require('../utils/client.js');
const { TOKEN_KEY } = require('../utils/api.js');
const { baseUrl, jwtSecret, PAGES, last, waitFor, finalMessage, expiredToken, textOf } = require('./helpers.js');

test('the end-to-end environment is provided by scripts/test.sh', () => {
  assert.ok(baseUrl, 'E2E_BASE_URL is not set: run ./scripts/test.sh');
  assert.ok(jwtSecret, 'E2E_JWT_SECRET is not set: run ./scripts/test.sh');
});

for (const transport of ['sse', 'websocket', 'callContainer']) {
  test(`${transport}: login, personas, streamed reply, stop, reattach, history, re-login`, { skip: !baseUrl, timeout: 60000 }, async (t) => {
    const wx = createWx({ baseUrl, devName: `e2e_${transport}_${Date.now()}` });
    t.after(() => wx.sockets.forEach((socket) => socket.terminate()));
    global.wx = wx;
    const app = createClient({ transport, baseUrl, cloudEnv: 'test-env', service: 'companion-backend', pollIntervalMs: 100 });
    const api = app.api;

    // Development login happens on first use; the personas page lists companions.
    const personas = loadPage(path.join(PAGES, 'personas/index.js'), app);
    await personas.load();
    assert.ok(personas.data.personas.length >= 2, 'personas listed');
    assert.equal(personas.data.errorText, '');
    assert.ok(wx.getStorageSync(TOKEN_KEY), 'token stored');
    const conversation = await personas.choose({ currentTarget: { dataset: { id: 'xiaoxi' } } });
    assert.ok(wx.lastNavigation.includes(conversation.id));

    // A reply, delta by delta, through the chat page.
    const chat = loadPage(path.join(PAGES, 'chat/index.js'), app);
    await chat.onLoad({ id: conversation.id, title: encodeURIComponent(conversation.title) });
    assert.equal(chat.data.messages.length, 1, 'the greeting');
    assert.equal(chat.transport.name, transport);
    let updates = 0;
    const setData = chat.setData;
    chat.setData = (patch, cb) => { if (Object.keys(patch).some((k) => k.includes('.blocks') || k.includes('.tail'))) updates += 1; setData(patch, cb); };
    chat.onInput({ detail: { value: '你好，我是测试用户' } });
    chat.send();
    await chat.whenIdle();
    const reply = last(chat.data.messages);
    assert.equal(reply.status, 'complete', JSON.stringify(reply));
    const stored = await api.get(`/api/conversations/${conversation.id}/messages/${reply.id}`);
    assert.equal(textOf(chat, reply), stored.content);
    assert.match(stored.content, /离线演示回复/);
    assert.match(chat.text(), /离线演示回复/, 'the reply is on screen');
    assert.equal(reply.label, '内容由AI生成', 'AI replies carry the AI label');
    if (transport !== 'callContainer') assert.ok(updates > 3, `streamed in pieces (${updates} updates)`);
    if (transport === 'sse') assert.ok(wx.stats.chunks > 3, 'the server\'s chunks arrived one by one');

    // 停止 mid-stream stops the reply itself: the server keeps what was written so far.
    chat.startReply('再讲一遍');
    await waitFor(() => textOf(chat, last(chat.data.messages)).length > 0 && last(chat.data.messages).id, 'a first delta');
    await chat.stop();
    const stopped = last(chat.data.messages);
    assert.equal(stopped.status, 'cancelled');
    assert.equal(chat.data.sending, false);
    const cut = await finalMessage(api, conversation.id, stopped.id);
    assert.notEqual(cut.status, 'complete', 'generation stopped at the server');
    assert.equal(textOf(chat, stopped), cut.content, 'the page shows what the server kept');

    // Leaving stops only the watching: the reply goes on, and is watched again by key.
    chat.startReply('第三个问题');
    await waitFor(() => textOf(chat, last(chat.data.messages)).length > 0 && last(chat.data.messages).id, 'a first delta');
    chat.stopWatching();
    const key = last(chat.data.messages).key;
    const reopened = loadPage(path.join(PAGES, 'chat/index.js'), app);
    await reopened.onLoad({ id: conversation.id });
    chat.setData({ sending: false });
    chat.watchAgain(key);
    await chat.whenIdle();
    await reopened.whenIdle();
    const third = await finalMessage(api, conversation.id, chat.messageOf(key).id);
    assert.equal(third.status, 'complete');
    assert.equal(textOf(chat, chat.messageOf(key)), third.content, 'watched-again text equals the stored reply');
    assert.equal(chat.messageOf(key).status, 'complete');
    assert.equal(textOf(reopened, last(reopened.data.messages)), third.content, 'the reopened page shows the whole reply');
    reopened.onUnload();

    // Earlier messages load on scroll-up (with a small page).
    const messagesBefore = (await api.get(`/api/conversations/${conversation.id}/messages?limit=100`)).items.length;
    assert.equal(messagesBefore, 7);
    chat.onUnload();

    // History lists the conversation.
    const history = loadPage(path.join(PAGES, 'history/index.js'), app);
    await history.refresh();
    assert.ok(history.data.conversations.some((c) => c.id === conversation.id));

    // An expired token: the next request logs in again once and succeeds. (An open
    // WebSocket stays authenticated, so it is closed first and the client reconnects.)
    // The chat pages closed their sockets when they unloaded.
    if (transport === 'websocket') assert.ok(wx.sockets.length > 0, 'the pages talked over WebSockets');
    assert.equal(wx.openSockets(), 0, 'no socket left open by unloaded pages');
    const me = await api.get('/api/me');
    const expired = expiredToken(me.id);
    wx.setStorageSync(TOKEN_KEY, expired);
    const again = loadPage(path.join(PAGES, 'chat/index.js'), app);
    await again.onLoad({ id: conversation.id });
    again.startReply('令牌过期以后');
    await again.whenIdle();
    again.onUnload();
    assert.equal(last(again.data.messages).status, 'complete');
    assert.notEqual(wx.getStorageSync(TOKEN_KEY), expired, 'a new token was stored');
    assert.equal((await api.get('/api/me')).id, me.id, 'the same user');
  });
}

test('sse: a stream dropped midway is followed again and the page gets the whole reply', { skip: !baseUrl, timeout: 60000 }, async () => {
  const wx = createWx({ baseUrl, devName: `e2e_drop_${Date.now()}`, dropStreamAfterChunks: 3 });
  global.wx = wx;
  const app = createClient({ transport: 'sse', baseUrl });
  const api = app.api;
  const conversation = await api.post('/api/conversations', {});
  const chat = loadPage(path.join(PAGES, 'chat/index.js'), app);
  await chat.onLoad({ id: conversation.id });

  chat.startReply('网络不好也要收到完整回复');
  await chat.whenIdle();

  assert.ok(wx.stats.dropped, 'the stream was cut');
  const reply = last(chat.data.messages);
  const stored = await finalMessage(api, conversation.id, reply.id);
  assert.equal(reply.status, 'complete');
  assert.equal(textOf(chat, reply), stored.content, 'no text lost or repeated');
  assert.match(stored.content, /离线演示回复/);
});

test('the chat page loads earlier messages on scroll-up', { skip: !baseUrl, timeout: 60000 }, async () => {
  const wx = createWx({ baseUrl, devName: `e2e_scroll_${Date.now()}` });
  global.wx = wx;
  const app = createClient({ transport: 'sse', baseUrl, pageSize: 3 });
  const api = app.api;
  const conversation = await api.post('/api/conversations', {});
  for (let i = 0; i < 3; i++) {
    await api.requestFull('POST', `/api/conversations/${conversation.id}/messages`, { content: `问题${i}`, stream: false });
    const all = (await api.get(`/api/conversations/${conversation.id}/messages?limit=100`)).items;
    await finalMessage(api, conversation.id, last(all).id);
  }
  const chat = loadPage(path.join(PAGES, 'chat/index.js'), app);
  await chat.onLoad({ id: conversation.id });
  assert.equal(chat.data.messages.length, 3);
  await chat.loadEarlier();
  assert.equal(chat.data.messages.length, 6);
  await chat.loadEarlier();
  assert.equal(chat.data.messages.length, 7, 'everything, oldest first: ' + JSON.stringify(chat.data.messages.map((m) => [m.id.slice(-6), m.role, m.text.slice(0, 8)])));
  assert.equal(chat.data.messages[0].role, 'assistant', 'the greeting comes first');
  assert.equal(chat.data.messages[1].text, '问题0');
  assert.equal(chat.data.nextCursor, null);
});
