// Shared steps for the mini-program tests that drive real pages against the real server.
const path = require('node:path');
const crypto = require('node:crypto');
const { createWx, loadPage } = require('./wx-shim.js');
const { createClient } = require('../utils/client.js');

const baseUrl = process.env.E2E_BASE_URL;
const jwtSecret = process.env.E2E_JWT_SECRET;
const PAGES = path.join(__dirname, '..', 'pages');
const TRANSPORTS = ['sse', 'websocket', 'callContainer'];
// A port nothing listens on: every request fails the way a phone without network does.
const UNREACHABLE = 'http://127.0.0.1:9';

const last = (items) => items[items.length - 1];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let counter = 0;
// A dev-login name: at most 32 letters, digits, - or _.
const unique = (name) => `${name.slice(0, 14)}_${Date.now().toString(36)}_${(++counter).toString(36)}`;

async function waitFor(predicate, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what);
    await sleep(10);
  }
}

async function finalMessage(api, conversationId, messageId) {
  for (let i = 0; i < 300; i++) {
    const message = await api.get(`/api/conversations/${conversationId}/messages/${messageId}`);
    if (message.status !== 'streaming') return message;
    await sleep(50);
  }
  throw new Error('message never finished');
}

// A phone (wx), the client the app builds (api, notices) and a signed-in user.
function phone(transport, wxOptions = {}, config = {}) {
  const wx = createWx(Object.assign({ baseUrl, devName: unique('mp_' + transport) }, wxOptions));
  global.wx = wx;
  const app = createClient(Object.assign({
    transport, baseUrl, cloudEnv: 'test-env', service: 'companion-backend', pollIntervalMs: 100
  }, config));
  return { wx, app, api: app.api };
}

// The chat page opened on a new conversation with 小溪.
async function openChat(device, query = {}) {
  const conversation = await device.api.post('/api/conversations', { persona_id: 'xiaoxi' });
  await device.app.notices.whenSettled();
  const chat = loadPage(path.join(PAGES, 'chat/index.js'), device.app);
  await chat.onLoad(Object.assign({ id: conversation.id }, query));
  return { conversation, chat };
}

const textOf = (chat, message) => chat.texts[message.key].content;
const reply = (chat) => last(chat.data.messages);
const started = (chat) => textOf(chat, reply(chat)).length > 0 && !!reply(chat).id;

function base64url(value) {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

function expiredToken(userId) {
  const now = Math.floor(Date.now() / 1000);
  const header = base64url({ alg: 'HS256', typ: 'JWT' });
  const claims = base64url({ sub: userId, iat: now - 7200, exp: now - 3600, iss: 'companion-backend', aud: 'companion-miniprogram' });
  const signature = crypto.createHmac('sha256', jwtSecret).update(header + '.' + claims).digest('base64url');
  return header + '.' + claims + '.' + signature;
}

// Anything Latin in what a user reads is the server's English leaking through.
const hasEnglish = (text) => /[A-Za-z]{3,}/.test(text.replace(/AI|12356/g, ''));

module.exports = {
  baseUrl, jwtSecret, PAGES, TRANSPORTS, UNREACHABLE, last, sleep, unique, waitFor, finalMessage, phone, openChat,
  textOf, reply, started, expiredToken, hasEnglish, loadPage
};
