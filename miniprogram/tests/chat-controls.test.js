// What the user does in the chat: 停止 (the right reply, really stopped, also during a
// login), following a long reply, loading earlier messages mid-stream, few small setData
// calls, copy, report, exit, the crisis hotline, labels, notices, Chinese errors.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('./helpers.js');
const { TOKEN_KEY } = require('../utils/api.js');
const view = require('../pages/chat/view.js');

const skip = !h.baseUrl;

for (const transport of h.TRANSPORTS) {
  test(`${transport}: 停止 during a re-login sends nothing and gives the text back`, { skip, timeout: 60000 }, async () => {
    const device = h.phone(transport, { loginDelayMs: 400 });
    const { conversation, chat } = await h.openChat(device);
    const me = await device.api.get('/api/me');
    chat.transport.close();
    device.wx.setStorageSync(TOKEN_KEY, h.expiredToken(me.id));
    chat.onInput({ detail: { value: '这条不要发出去' } });
    chat.send();
    await h.sleep(50);
    await chat.stop();
    await h.sleep(900);
    const stored = await device.api.get(`/api/conversations/${conversation.id}/messages?limit=100`);
    assert.ok(!stored.items.some((m) => m.content === '这条不要发出去'), 'the server never got the message');
    assert.equal(chat.data.input, '这条不要发出去', 'the text is back in the input box');
    assert.equal(chat.data.sending, false);
    assert.equal(chat.data.messages.length, 1, 'only the greeting');
    chat.onUnload();
  });

  test(`${transport}: 停止 stops the reply being watched at the server, not the last message`, { skip, timeout: 60000 }, async () => {
    const device = h.phone(transport);
    const { conversation, chat } = await h.openChat(device);
    chat.startReply('讲一个长一点的故事');
    await h.waitFor(() => h.started(chat), 'a first delta');
    const watched = h.reply(chat).key;
    // Something arrives below the reply being watched (a later message on screen).
    const below = view.fromServer({ id: 'below', role: 'assistant', content: '下面的消息', status: 'complete' }, chat.texts);
    chat.setData({ messages: chat.data.messages.concat([below]) });
    const belowBefore = JSON.stringify(h.last(chat.data.messages));
    await chat.stop();
    assert.equal(JSON.stringify(chat.messageOf(below.key)), belowBefore, 'the last message is exactly as it was');
    assert.equal(chat.text().split('已停止').length - 1, 1, '已停止 shows once, on the watched reply');
    assert.equal(chat.messageOf(watched).status, 'cancelled');
    assert.equal(chat.messageOf(below.key).status, 'complete', 'the last message is untouched');
    const stored = await h.finalMessage(device.api, conversation.id, chat.messageOf(watched).id);
    assert.notEqual(stored.status, 'complete', 'generation stopped at the server');
    assert.equal(stored.error && stored.error.code, 'cancelled');
    assert.equal(h.textOf(chat, chat.messageOf(watched)), stored.content, 'the page shows what the server kept');
    assert.ok(!h.hasEnglish(chat.text()), chat.text());
    chat.onUnload();
  });
}

test('sse: an error inside the stream and a stored error from history read in Chinese', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse');
  const { conversation, chat } = await h.openChat(device);
  chat.startReply('被另一台设备停止');
  await h.waitFor(() => h.started(chat), 'a first delta');
  // Another device stops the reply: this stream ends with the server's `error` event.
  await device.api.post(`/api/conversations/${conversation.id}/messages/${h.reply(chat).id}/cancel`);
  await chat.whenIdle();
  assert.equal(h.reply(chat).errorCode, 'cancelled');
  assert.match(h.reply(chat).note, /[\u4e00-\u9fff]/);
  assert.ok(!h.hasEnglish(chat.text()), chat.text());
  const reopened = h.loadPage(path.join(h.PAGES, 'chat/index.js'), device.app);
  await reopened.onLoad({ id: conversation.id });
  assert.equal(h.reply(reopened).errorCode, 'cancelled');
  assert.ok(!h.hasEnglish(reopened.text()), reopened.text());
  chat.onUnload();
  reopened.onUnload();
});

test('a long reply follows the bottom until the reader scrolls up; 回到底部 brings it back', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse');
  const { chat } = await h.openChat(device);
  chat.startReply('跟着滚动');
  await h.waitFor(() => h.started(chat), 'a first delta');
  const first = chat.data.scrollTop;
  await h.waitFor(() => chat.data.scrollTop > first, 'the view to follow the reply');
  chat.onScroll({ detail: { deltaY: 30, scrollTop: 10 } });
  assert.equal(chat.data.showJump, true);
  assert.ok(chat.find('jump'), '回到底部 is on screen');
  const held = chat.data.scrollTop;
  await chat.whenIdle();
  assert.equal(chat.data.scrollTop, held, 'no jumping while the reader reads above');
  await chat.tap('jump');
  assert.equal(chat.data.showJump, false);
  assert.ok(chat.data.scrollTop > held, 'back at the bottom');
  chat.onUnload();
});

test('earlier messages load while a reply streams, and the reader keeps their place', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse', {}, { pageSize: 2 });
  const conversation = await device.api.post('/api/conversations', { persona_id: 'xiaoxi' });
  for (const question of ['第一问', '第二问']) {
    const sent = await device.api.post(`/api/conversations/${conversation.id}/messages`, { content: question, stream: false });
    await h.finalMessage(device.api, conversation.id, sent.assistant_message.id);
  }
  const chat = h.loadPage(path.join(h.PAGES, 'chat/index.js'), device.app);
  await chat.onLoad({ id: conversation.id });
  chat.startReply('第三问');
  await h.waitFor(() => h.started(chat), 'a first delta');
  const firstKey = chat.data.messages[0].key;
  await chat.loadEarlier();
  assert.equal(chat.data.scrollInto, 'm-' + firstKey, 'the view stays on the message that was first');
  assert.ok(chat.data.messages.length > 4, 'earlier messages arrived mid-stream');
  await chat.whenIdle();
  const stored = await h.finalMessage(device.api, conversation.id, h.reply(chat).id);
  assert.equal(h.textOf(chat, h.reply(chat)), stored.content, 'the reply went on into the right message');
  assert.equal(h.reply(chat).status, 'complete');
  chat.onUnload();
});

test('a 2,000-character reply takes few, small setData calls', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse');
  const { chat } = await h.openChat(device);
  // The page gets the events a 2,000-character stream brings: 1,000 deltas of 2 characters.
  chat.setData({ messages: chat.data.messages.concat([view.localReply(chat.texts)]), sending: true });
  const key = h.reply(chat).key;
  chat.watching = { key, handle: { stop() {}, cancel: async () => null }, attempts: 0 };
  device.wx.stats.setData = 0;
  let bytes = 0;
  const setData = chat.setData;
  chat.setData = (patch, cb) => { bytes += JSON.stringify(patch).length; setData(patch, cb); };
  // Paragraphs of 100 characters, and one long last paragraph of 1,000.
  const piece = (i) => (i % 50 === 49 && i < 500 ? '\n\n' : '好的');
  let sent = '';
  for (let i = 0; i < 1000; i++) {
    sent += piece(i);
    chat.onReplyEvent(key, null, null, 'delta', { content: piece(i) });
    if (i % 10 === 9) await h.sleep(2);
  }
  chat.onReplyEvent(key, null, null, 'done', { finish_reason: 'stop' });
  assert.equal(h.textOf(chat, h.reply(chat)), sent);
  assert.equal(chat.text().includes(sent.replace(/\n/g, '').slice(0, 40)), true, 'the text is on screen');
  const calls = device.wx.stats.setData;
  assert.ok(calls <= 100, `${calls} setData calls for 1,000 deltas`);
  assert.ok(bytes <= 60 * 1000, `${bytes} bytes of setData for a 2,000-character reply (one whole-text call per delta: about 3 MB)`);
});

test('the crisis reply offers 12356 to call, and replies carry copy, report and the AI label', { skip, timeout: 60000 }, async () => {
  const device = h.phone('websocket');
  const { conversation, chat } = await h.openChat(device);
  chat.startReply('我最近真的不想活了');
  await chat.whenIdle();
  assert.match(h.textOf(chat, h.reply(chat)), /12356/);
  await chat.tap('hotline');
  assert.deepEqual(device.wx.calls, ['12356']);
  const index = chat.data.messages.length - 1;
  await chat.tap('copy', chat.findAll('copy').length - 1);
  assert.equal(device.wx.clipboard, h.textOf(chat, chat.data.messages[index]));
  await chat.tap('report', chat.findAll('report').length - 1);
  assert.equal(device.wx.lastNavigation, `/pages/report/index?conversation=${conversation.id}&message=${h.reply(chat).id}`);
  const labels = chat.findAll('label').map((el) => el.textContent);
  assert.equal(h.last(labels), '内容由AI生成', 'the AI label under the reply');
  chat.onUnload();
});

test('a human operator\'s reply and a taken-over conversation are shown as human, not as the AI', () => {
  const { renderPage } = require('./simulate.js');
  const chat = renderPage('chat', { api: {}, globalData: {} });
  chat.texts = {};
  const operator = view.fromServer({ id: 'o1', role: 'operator', content: '我是值班的工作人员', status: 'complete', label: { author: 'human', text: '人工回复' } }, chat.texts);
  const waiting = view.fromServer({ id: 'o2', role: 'assistant', content: '', status: 'streaming', label: { author: 'human', text: '人工回复' } }, chat.texts);
  waiting.watching = true;
  chat.setData({ loading: false, messages: [operator, waiting] });
  assert.equal(operator.role, 'operator');
  assert.equal(operator.human, true);
  const text = chat.text().replace('你正在与AI聊天，内容由AI生成', '');
  assert.match(text, /人我是值班的工作人员人工回复/, 'the human avatar, the reply and its label');
  assert.match(text, /工作人员正在回复…/, 'a taken-over reply waits on a person, not on the AI');
  assert.doesNotMatch(text, /正在思考|内容由AI生成/);
});

test('the chat says it is an AI, shows the companion, and opens TA记得的事', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse');
  device.app.globalData.personas = (await device.api.get('/api/personas')).items;
  const { chat } = await h.openChat(device);
  await h.waitFor(() => chat.data.companion, 'the companion');
  assert.match(chat.text(), /^你正在与AI聊天，内容由AI生成TA记得的事 ›/, 'a standing AI disclosure at the top');
  assert.equal(chat.find('avatar').textContent, '小', '小溪\'s avatar');
  await chat.tap('memories-link');
  assert.equal(device.wx.lastNavigation, '/pages/memories/index?persona=xiaoxi&name=' + encodeURIComponent('小溪'));
  chat.onUnload();
});

test('an empty conversation invites the first message', () => {
  const { renderPage } = require('./simulate.js');
  const chat = renderPage('chat', { api: {}, globalData: {} });
  chat.setData({ loading: false, messages: [] });
  assert.match(chat.text(), /还没有消息，和TA打个招呼吧/);
});

test('结束 says goodbye through the exit phrase and leaves the chat', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse');
  const { conversation, chat } = await h.openChat(device);
  await chat.tap('exit');
  await chat.whenIdle();
  await h.waitFor(() => device.wx.wentBack === 1, 'the page to close');
  const stored = await device.api.get(`/api/conversations/${conversation.id}/messages?limit=10`);
  assert.equal(stored.items[stored.items.length - 2].content, '退出聊天');
  assert.equal(h.textOf(chat, h.reply(chat)), h.last(stored.items).content, 'the goodbye was shown');
  assert.equal(h.reply(chat).status, 'complete');
});

test('the AI disclosure arrives with a reply, is shown as a dialog and acknowledged', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse');
  // Signed in by another part of the app that did not show the sign-in notices.
  device.api.hooks.onNotices = () => {};
  const conversation = await device.api.post('/api/conversations', { persona_id: 'xiaoxi' });
  device.api.hooks.onNotices = device.app.notices.present;
  assert.ok((await device.api.get('/api/me')).notices.some((n) => n.kind === 'ai_disclosure'));
  const chat = h.loadPage(path.join(h.PAGES, 'chat/index.js'), device.app);
  await chat.onLoad({ id: conversation.id });
  chat.startReply('你是真人吗');
  await chat.whenIdle();
  await device.app.notices.whenSettled();
  assert.ok(device.wx.modals.some((m) => /AI|人工智能/.test(m.content)), 'the disclosure was shown');
  await h.waitFor(() => device.wx.stats.requests.some((r) => r.path === '/api/me/notices/ai_disclosure/ack'), 'the acknowledgement');
  await h.sleep(100);
  const me = await device.api.get('/api/me');
  assert.ok(!me.notices.some((n) => n.kind === 'ai_disclosure'), 'acknowledged at the server');
});

const privacyUrl = process.env.E2E_PRIVACY_BASE_URL;
test('signing in shows the privacy policy; declining keeps it pending, agreeing acknowledges it', { skip: !privacyUrl, timeout: 60000 }, async () => {
  const device = h.phone('sse', { baseUrl: privacyUrl }, { baseUrl: privacyUrl });
  device.wx.answerModal = (opts) => (opts.confirmText === '同意' ? { confirm: false, cancel: true } : { confirm: true });
  await device.api.ensureToken();
  await device.app.notices.whenSettled();
  assert.ok(device.wx.modals.some((m) => m.confirmText === '同意' && m.cancelText === '不同意'), 'the policy dialog');
  assert.ok(device.wx.toasts.some((t) => /隐私政策/.test(t)), 'told why it matters');
  assert.ok((await device.api.get('/api/me')).notices.some((n) => n.kind === 'privacy_policy'), 'still pending');
  device.wx.answerModal = () => ({ confirm: true });
  await device.app.notices.refresh();
  await device.app.notices.whenSettled();
  assert.ok(!(await device.api.get('/api/me')).notices.some((n) => n.kind === 'privacy_policy'), 'agreed');
  // Until then sends were refused (428 notice_required); now the chat works.
  const { chat } = await h.openChat(device);
  chat.startReply('同意以后');
  await chat.whenIdle();
  assert.equal(h.reply(chat).status, 'complete');
});

test('callContainer: 停止 after the message went out, before its reply started, stops that reply', { skip, timeout: 60000 }, async () => {
  const device = h.phone('callContainer');
  const { conversation, chat } = await h.openChat(device);
  const sends = () => device.wx.stats.requests.filter((r) => r.method === 'POST' && /\/messages$/.test(r.path)).length;
  chat.onInput({ detail: { value: '刚发出去就停止' } });
  chat.send();
  await h.waitFor(() => sends() === 1, 'the send to go out');
  await chat.stop();
  const stored = (await device.api.get(`/api/conversations/${conversation.id}/messages?limit=10`)).items;
  const question = stored.find((m) => m.content === '刚发出去就停止');
  assert.ok(question, 'the server has the message');
  const answer = await h.finalMessage(device.api, conversation.id, stored[stored.indexOf(question) + 1].id);
  assert.equal(answer.error && answer.error.code, 'cancelled', 'and its reply was stopped');
  assert.equal(chat.data.messages.filter((m) => m.text === '刚发出去就停止').length, 1, 'shown once, not dropped');
  assert.equal(h.reply(chat).status, 'cancelled');
  assert.equal(chat.data.sending, false);
});

test('watching a reply again twice (a double tap) shows it once', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse');
  const { conversation, chat } = await h.openChat(device);
  chat.startReply('点两下继续查看');
  await h.waitFor(() => h.started(chat), 'a first delta');
  const key = h.reply(chat).key;
  chat.stopWatching();
  chat.setData({ sending: false });
  chat.watchAgain(key);
  chat.watchAgain(key);
  await chat.whenIdle();
  const stored = await h.finalMessage(device.api, conversation.id, chat.messageOf(key).id);
  assert.equal(h.textOf(chat, chat.messageOf(key)), stored.content);
});

test('sending is held until the history is on screen', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse');
  const conversation = await device.api.post('/api/conversations', { persona_id: 'xiaoxi' });
  const chat = h.loadPage(path.join(h.PAGES, 'chat/index.js'), device.app);
  const loaded = chat.onLoad({ id: conversation.id });
  chat.onInput({ detail: { value: '太快了' } });
  chat.send();
  await loaded;
  assert.equal(chat.data.input, '太快了', 'kept in the input box');
  assert.equal(chat.data.messages.length, 1, 'only the greeting');
  chat.send();
  await chat.whenIdle();
  assert.equal(h.reply(chat).status, 'complete');
});

test('停止 that cannot reach the server says so and keeps watching the reply', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse');
  const { conversation, chat } = await h.openChat(device);
  chat.startReply('停不下来的时候');
  await h.waitFor(() => h.started(chat), 'a first delta');
  device.wx.failNext = { match: /\/cancel$/, times: 2 };
  await chat.stop();
  assert.equal(chat.data.errorText, '网络不太好，请检查网络后重试');
  await chat.whenIdle();
  const stored = await h.finalMessage(device.api, conversation.id, h.reply(chat).id);
  assert.equal(stored.status, 'complete', 'the reply went on');
  assert.equal(h.textOf(chat, h.reply(chat)), stored.content, 'and the page shows all of it');
  assert.equal(h.reply(chat).status, 'complete');
});

test('retrying a send whose answer was lost does not send the question twice', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse');
  const { conversation, chat } = await h.openChat(device);
  device.wx.failNext = { match: /\/messages$/, times: 1, afterSending: true };
  chat.startReply('只发一次');
  await chat.whenIdle();
  assert.equal(h.reply(chat).status, 'failed', 'the page saw a network failure');
  await h.sleep(1500); // the reply the server did start has finished
  await chat.tap('failed');
  await chat.whenIdle();
  const stored = (await device.api.get(`/api/conversations/${conversation.id}/messages?limit=20`)).items;
  assert.equal(stored.filter((m) => m.content === '只发一次').length, 1, 'one message at the server');
  assert.equal(h.reply(chat).status, 'complete');
  assert.equal(h.textOf(chat, h.reply(chat)), h.last(stored).content, 'the original reply is shown');
});

test('结束 while 停止 is under way waits for it, then says goodbye and leaves', { skip, timeout: 60000 }, async () => {
  const device = h.phone('sse');
  const { conversation, chat } = await h.openChat(device);
  chat.startReply('说个很长的故事');
  await h.waitFor(() => h.started(chat), 'a first delta');
  const storyKey = h.reply(chat).key;
  const stopping = chat.stop();
  const leaving = chat.exit();
  assert.equal(chat.stop(), stopping, 'a second 停止 joins the first');
  await leaving;
  assert.equal(device.wx.wentBack, 1);
  const story = await h.finalMessage(device.api, conversation.id, chat.messageOf(storyKey).id);
  assert.equal(story.error && story.error.code, 'cancelled');
  const stored = (await device.api.get(`/api/conversations/${conversation.id}/messages?limit=10`)).items;
  assert.equal(stored[stored.length - 2].content, '退出聊天');
  assert.equal(h.last(stored).status, 'complete', 'the goodbye was stored whole');
  assert.equal(chat.data.stopping, false);
});

test('callContainer: 停止 while the send is answered with a finished reply keeps both messages', { skip, timeout: 60000 }, async () => {
  const device = h.phone('callContainer');
  const { conversation, chat } = await h.openChat(device);
  const sends = () => device.wx.stats.requests.filter((r) => r.method === 'POST' && /\/messages$/.test(r.path)).length;
  chat.onInput({ detail: { value: '退出聊天' } }); // an exit phrase: answered at once, no model
  chat.send();
  await h.waitFor(() => sends() === 1, 'the send to go out');
  await chat.stop();
  const stored = (await device.api.get(`/api/conversations/${conversation.id}/messages?limit=10`)).items;
  assert.equal(chat.data.input, '', 'the question is not put back: it was sent');
  assert.equal(chat.data.messages.filter((m) => m.text === '退出聊天').length, 1);
  assert.equal(h.reply(chat).id, h.last(stored).id, 'the reply keeps its id (it can be reported)');
  assert.equal(h.textOf(chat, h.reply(chat)), h.last(stored).content);
});
