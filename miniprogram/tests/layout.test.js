// The chat page's real WXSS, laid out by a real browser (headless Chromium from Debian) at
// phone sizes with a home indicator: the input bar stays on screen, with and without the
// error bar, and English words in a bubble are not split across lines.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { renderPage, ROOT } = require('./simulate.js');
const view = require('../pages/chat/view.js');

const chromium = ['chromium', 'chromium-browser', 'google-chrome'].find((bin) => spawnSync('which', [bin]).status === 0);
const HOME_INDICATOR_PX = 34; // env(safe-area-inset-bottom) on an iPhone with a home indicator

// WXSS as a browser reads it, the way WeChat applies it: app.wxss and the page's own styles,
// rpx at the screen's width (750rpx = width), the safe-area inset of the phone, and the
// simulator's `main--` class prefix.
function css(width) {
  const wxss = ['app.wxss', 'pages/chat/index.wxss'].map((f) => fs.readFileSync(path.join(ROOT, f), 'utf8')).join('\n');
  return wxss
    .replace(/(-?\d*\.?\d+)rpx/g, (_, n) => `${(Number(n) * width) / 750}px`)
    .replace(/env\(safe-area-inset-bottom\)/g, `${HOME_INDICATOR_PX}px`)
    .replace(/(^|[\s,}])page(?=[\s,{])/g, '$1wx-page')
    .replace(/\.([a-zA-Z][\w-]*)(?=[^{}]*\{)/g, '.main--$1');
}

// As WeChat renders them: the page fills the window; built-in components are blocks
// (inline for text); a scroll-view is a host element around an inner element that scrolls.
const BASE = `
  html, body { margin: 0; padding: 0; height: 100%; }
  wx-page, wx-view, wx-scroll-view, wx-rich-text, wx-textarea { display: block; }
  .wx-scroll-view { height: 100%; overflow-x: hidden; overflow-y: auto; }
  wx-text { display: inline; }
  wx-button { display: inline-block; padding: 0 12px; line-height: 2.3; }
  wx-textarea { min-height: 20px; }
`;

const MEASURE = `
  const composer = document.querySelector('.main--composer');
  const bubbles = Array.from(document.querySelectorAll('.main--bubble'));
  const splitWords = [];
  for (const bubble of bubbles) {
    const walker = document.createTreeWalker(bubble, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      for (const match of node.data.matchAll(/[A-Za-z]{6,}/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const lines = new Set(Array.from(range.getClientRects()).map((r) => Math.round(r.top)));
        if (lines.size > 1) splitWords.push(match[0]);
      }
    }
  }
  document.body.setAttribute('data-result', JSON.stringify({
    viewport: window.innerHeight,
    composerBottom: composer.getBoundingClientRect().bottom,
    composerTop: composer.getBoundingClientRect().top,
    splitWords
  }));
`;

function layout(width, height, withErrorBar) {
  const chat = renderPage('chat', { api: {}, globalData: {} });
  const texts = {};
  const long = 'Internationalization and accessibility matter: understanding encyclopedias requires extraordinary concentration. '.repeat(3);
  const messages = [];
  for (let i = 0; i < 12; i++) {
    messages.push(view.fromServer({ id: 'u' + i, role: 'user', content: '第' + i + '个问题 ' + long.slice(0, 40), status: 'complete' }, texts));
    messages.push(view.fromServer({ id: 'a' + i, role: 'assistant', content: long, status: 'complete', label: { author: 'ai', text: '内容由AI生成' } }, texts));
  }
  chat.setData({ messages, loading: false, errorText: withErrorBar ? '网络不太好，请检查网络后重试' : '' });
  // Rich text is drawn natively; the browser gets its text in a block of the same class.
  let html = chat.dom.innerHTML;
  html = html.replace(/<wx-rich-text class="main--md"><\/wx-rich-text>/g, `<wx-view class="main--md">${long}</wx-view>`)
    .replace(/(<wx-scroll-view[^>]*>)/g, '$1<div class="wx-scroll-view">')
    .replace(/<\/wx-scroll-view>/g, '</div></wx-scroll-view>');
  const page = `<!doctype html><html><head><meta charset="utf-8"><style>${BASE}${css(width)}</style></head>
    <body><wx-page>${html}</wx-page><script>${MEASURE}</script></body></html>`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-layout-'));
  const file = path.join(dir, 'chat.html');
  fs.writeFileSync(file, page);
  const run = spawnSync(chromium, [
    '--headless=new', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', `--window-size=${width},${height}`,
    '--dump-dom', 'file://' + file
  ], { encoding: 'utf8', timeout: 60000 });
  fs.rmSync(dir, { recursive: true, force: true });
  const match = /data-result="([^"]*)"/.exec(run.stdout);
  assert.ok(match, 'Chromium measured the page: ' + run.stderr.slice(-500));
  return JSON.parse(match[1].replace(/&quot;/g, '"').replace(/&amp;/g, '&'));
}

for (const [width, height] of [[375, 812], [414, 896], [390, 844]]) {
  for (const withErrorBar of [false, true]) {
    test(`at ${width}×${height} with a home indicator${withErrorBar ? ' and the error bar' : ''} the input bar is on screen`, { skip: !chromium, timeout: 90000 }, () => {
      const result = layout(width, height, withErrorBar);
      assert.ok(result.composerBottom <= result.viewport + 0.5, `input bar bottom ${result.composerBottom}px, screen ${result.viewport}px`);
      assert.ok(result.composerTop > result.viewport / 2, 'the input bar sits at the bottom');
      assert.deepEqual(result.splitWords, [], 'English words stay whole');
    });
  }
}
