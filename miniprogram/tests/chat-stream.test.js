// The chat page keeps a reply whole through what phones do to connections: sockets left
// open, half-open sockets, failed reattaches, the background, late chunks, failed polls.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('./helpers.js');

const skip = !h.baseUrl;

test('six visits to the chat page leave no WebSocket open (WeChat allows five)', { skip, timeout: 60000 }, async () => {
  const device = h.phone('websocket');
  for (let visit = 0; visit < 6; visit++) {
    const { chat } = await h.openChat(device);
    chat.startReply('第' + visit + '次来');
    await chat.whenIdle();
    assert.equal(h.reply(chat).status, 'complete');
    assert.ok(device.wx.openSockets() <= 1, 'one socket per page at most');
    chat.onUnload();
    await h.waitFor(() => device.wx.openSockets() === 0, 'the socket to close');
  }
  assert.equal(device.wx.sockets.length, 6, 'one socket per visit, each closed');
});

test('a half-open WebSocket is found by the heartbeat and the reply still arrives whole', { skip, timeout: 60000 }, async () => {
  const device = h.phone('websocket', {}, { heartbeatMs: 100, socketIdleMs: 400 });
  const { conversation, chat } = await h.openChat(device);
  chat.startReply('半开的连接');
  await h.waitFor(() => h.started(chat), 'a first delta');
  device.wx.freezeSockets();
  await chat.whenIdle();
  const stored = await h.finalMessage(device.api, conversation.id, h.reply(chat).id);
  assert.equal(h.reply(chat).status, 'complete', JSON.stringify(h.reply(chat)));
  assert.equal(h.textOf(chat, h.reply(chat)), stored.content, 'nothing lost or repeated');
  assert.ok(device.wx.sockets.length >= 2, 'a new socket replaced the dead one');
  assert.doesNotMatch(chat.text(), /正在思考/);
  chat.onUnload();
  await h.waitFor(() => device.wx.openSockets() === 0, 'every socket closed after the page unloads');
});

test('a WebSocket gone half-open before the reply started ends in a retry, not in "正在思考…" forever', { skip, timeout: 60000 }, async () => {
  const device = h.phone('websocket', {}, { heartbeatMs: 100, socketIdleMs: 400 });
  const { conversation, chat } = await h.openChat(device);
  // The socket opens with the first reply; it goes half-open before the next one starts.
  chat.startReply('先连上');
  await chat.whenIdle();
  device.wx.freezeSockets();
  chat.startReply('没有回音');
  await chat.whenIdle();
  assert.equal(h.reply(chat).status, 'failed');
  assert.doesNotMatch(chat.text(), /正在思考/);
  assert.match(chat.text(), /网络不太好.*点此重试/);
  await chat.tap('failed');
  await chat.whenIdle();
  const stored = (await device.api.get(`/api/conversations/${conversation.id}/messages?limit=20`)).items;
  assert.equal(h.reply(chat).status, 'complete');
  assert.equal(stored.filter((m) => m.content === '没有回音').length, 1, 'sent once');
  chat.onUnload();
});

test('sse: a stream gone silent (half-open) is found by the idle watchdog and the reply arrives whole', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse', {}, { socketIdleMs: 400 });
  const { conversation, chat } = await h.openChat(device);
  chat.startReply('连接悄悄断了');
  await h.waitFor(() => h.started(chat), 'a first delta');
  device.wx.stallStreams();
  await chat.whenIdle();
  const stored = await h.finalMessage(device.api, conversation.id, h.reply(chat).id);
  assert.equal(h.reply(chat).status, 'complete', JSON.stringify(h.reply(chat)));
  assert.equal(h.textOf(chat, h.reply(chat)), stored.content, 'nothing lost or repeated');
  assert.ok(device.wx.stats.requests.some((r) => r.path.endsWith('/stream')), 'watched again');
});

test('a failed WebSocket reattach keeps the partial reply and never sends the question again', { skip, timeout: 60000 }, async () => {
  const device = h.phone('websocket');
  const { conversation, chat } = await h.openChat(device);
  chat.startReply('重新连接失败的时候');
  await h.waitFor(() => h.started(chat), 'a first delta');
  const key = h.reply(chat).key;
  chat.stopWatching();
  chat.setData({ sending: false });
  const partial = h.textOf(chat, h.reply(chat));
  device.wx.sockets.forEach((socket) => socket.terminate());
  device.wx.refuseConnections = true;
  const shown = [];
  const setData = chat.setData;
  chat.setData = (patch, cb) => { setData(patch, cb); shown.push(h.textOf(chat, chat.messageOf(key))); };
  chat.watchAgain(key);
  await chat.whenIdle();
  const stored = await h.finalMessage(device.api, conversation.id, chat.messageOf(key).id);
  assert.ok(shown.every((text) => text.startsWith(partial)), 'the partial reply was never erased');
  assert.equal(h.textOf(chat, chat.messageOf(key)), stored.content, 'followed to the end by polling');
  const sends = device.wx.stats.requests.filter((r) => r.method === 'POST' && /\/messages$/.test(r.path));
  assert.equal(sends.length, 0, 'the question was not sent again by HTTP');
  assert.equal(device.wx.stats.frames.filter((type) => type === 'send').length, 1, 'nor over the socket');
  assert.doesNotMatch(chat.text(), /点此重试/, 'no retry offered for a reply that is still generating');
  chat.onUnload();
});

for (const transport of ['sse', 'websocket']) {
  test(`${transport}: a reply cut while the app is in the background is watched again on return`, { skip, timeout: 60000 }, async () => {
    const device = h.phone(transport);
    const { conversation, chat } = await h.openChat(device);
    chat.startReply('我去回个消息');
    await h.waitFor(() => h.started(chat), 'a first delta');
    chat.onHide();
    device.wx.goBackground(); // sockets closed, streams cut, new requests fail until return
    await h.sleep(1200);
    assert.equal(chat.data.errorText, '');
    assert.equal(h.reply(chat).lost, false, 'no "network" failure shown for the background');
    assert.doesNotMatch(chat.text(), /网络不太好/);
    device.wx.goForeground();
    chat.onShow();
    await chat.whenIdle();
    const stored = await h.finalMessage(device.api, conversation.id, h.reply(chat).id);
    assert.equal(h.reply(chat).status, 'complete');
    assert.equal(h.textOf(chat, h.reply(chat)), stored.content);
    assert.doesNotMatch(chat.text(), /网络不太好/);
    chat.onUnload();
  });
}

for (const lateChunkMs of [100, 800]) {
  test(`sse: a last chunk arriving ${lateChunkMs} ms after success is shown once`, { skip, timeout: 60000 }, async () => {
    const device = h.phone('sse', { lateChunkMs });
    const { conversation, chat } = await h.openChat(device);
    chat.startReply('最后一块晚到了');
    await chat.whenIdle();
    await h.sleep(lateChunkMs + 100);
    assert.ok(device.wx.stats.lateChunks >= 1, 'the shim delivered chunks after success');
    assert.match(device.wx.stats.lateText, /event: delta/, 'and they carried reply text');
    const stored = await h.finalMessage(device.api, conversation.id, h.reply(chat).id);
    assert.equal(h.textOf(chat, h.reply(chat)), stored.content, 'no text repeated (ABCDCD)');
    assert.equal(h.reply(chat).status, 'complete');
  });
}

test('callContainer: failed polls are retried and the reply still arrives', { skip, timeout: 60000 }, async () => {
  const device = h.phone('callContainer');
  const { conversation, chat } = await h.openChat(device);
  device.wx.failNext = { match: /\/messages\/[^/]+$/, times: 2 };
  chat.startReply('网络抖了两下');
  await chat.whenIdle();
  assert.equal(device.wx.failNext.times, 0, 'two polls failed');
  const stored = await h.finalMessage(device.api, conversation.id, h.reply(chat).id);
  assert.equal(h.reply(chat).status, 'complete', JSON.stringify(h.reply(chat)));
  assert.equal(h.textOf(chat, h.reply(chat)), stored.content);
});

// The offline companion has no reasoning, so this one runs against a small fake of the
// server's SSE protocol: a thinking reply cut midway, then watched again.
test('sse: a resumed thinking reply shows its reasoning once, collapsible', { timeout: 30000 }, async (t) => {
  const http = require('node:http');
  const event = (name, data) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
  const server = http.createServer((req, res) => {
    const json = (body) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); };
    if (req.url === '/api/auth/login') return json({ token: 't1', expires_in: 3600, user: { id: 'u1' }, notices: [] });
    if (req.url.startsWith('/api/conversations/c1/messages?')) return json({ items: [], next_cursor: null });
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    if (req.method === 'POST') {
      res.write(event('start', { user_message_id: 'um1', assistant_message_id: 'm1', label: { author: 'ai', text: '内容由AI生成' } }));
      res.write(event('reasoning', { content: '先想一想' }));
      res.write(event('delta', { content: '你好' }));
      setTimeout(() => res.socket.destroy(), 50); // a proxy cuts the stream
      return;
    }
    // Reattach: everything stored so far, then the rest and the end.
    res.write(event('reasoning', { content: '先想一想，再想一想' }));
    res.write(event('delta', { content: '你好，朋友' }));
    res.end(event('done', { assistant_message_id: 'm1', finish_reason: 'stop' }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${server.address().port}`;
  const device = h.phone('sse', { baseUrl: url }, { baseUrl: url });
  const chat = h.loadPage(path.join(h.PAGES, 'chat/index.js'), device.app);
  await chat.onLoad({ id: 'c1' });
  chat.startReply('想好了再说');
  await chat.whenIdle();
  const reply = h.reply(chat);
  assert.equal(reply.status, 'complete');
  assert.equal(chat.texts[reply.key].reasoning, '先想一想，再想一想', 'reasoning not repeated');
  assert.equal(h.textOf(chat, reply), '你好，朋友');
  assert.doesNotMatch(chat.text(), /再想一想/, 'reasoning starts collapsed');
  await chat.tap('reasoning-toggle');
  assert.match(chat.text(), /先想一想，再想一想/);
  assert.equal(chat.text().split('先想一想').length - 1, 1, 'shown once');
});
