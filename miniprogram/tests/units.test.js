// Pure client logic, table-driven: Markdown blocks, times, Chinese error messages, and the
// skipping that keeps a re-watched reply from showing anything twice.
const test = require('node:test');
const assert = require('node:assert/strict');
const markdown = require('../utils/markdown.js');
const format = require('../utils/format.js');
const errors = require('../utils/errors.js');
const { createWatch } = require('../utils/transport/watch.js');

const text = (nodes) => nodes.map((n) => (n.type === 'text' ? n.text : text(n.children))).join('');
const tags = (nodes) => nodes.filter((n) => n.name).map((n) => {
  const inner = tags(n.children || []);
  return n.name + (inner.length ? '(' + inner + ')' : '');
});

test('Markdown blocks split at blank lines and keep code fences whole', () => {
  const cases = [
    ['一段\n\n两段', ['一段', '两段']],
    ['```\na\n\nb\n```\n\n后面', ['```\na\n\nb\n```', '后面']],
    ['第一行\n第二行', ['第一行\n第二行']],
    ['', []],
    ['\n\n\n结尾\n\n', ['结尾']]
  ];
  for (const [input, blocks] of cases) assert.deepEqual(markdown.splitBlocks(input), blocks, JSON.stringify(input));
});

test('Markdown blocks render as rich-text nodes, never as HTML strings', () => {
  const cases = [
    ['你好 **朋友**', ['p(strong)'], '你好 朋友'],
    ['*轻轻地* 和 `code`', ['p(em,code)'], '轻轻地 和 code'],
    ['# 标题', ['h3'], '标题'],
    ['- 一\n- **二**', ['ul(li,li(strong))'], '一二'],
    ['1. 先\n2. 后', ['ol(li,li)'], '先后'],
    ['> 引用', ['blockquote'], '引用'],
    ['```js\nlet a = 1;\n```', ['pre'], 'let a = 1;'],
    ['<script>alert(1)</script>', ['p'], '<script>alert(1)</script>'],
    ['2 * 3 * 4 = 24', ['p'], '2 * 3 * 4 = 24']
  ];
  for (const [input, shape, plain] of cases) {
    const nodes = markdown.renderBlock(input);
    assert.deepEqual(tags(nodes), shape, input);
    assert.equal(text(nodes), plain, input);
  }
});

test('times read the way a chat list says them', () => {
  const now = new Date(2026, 10, 24, 15, 0, 0).getTime();
  const at = (y, m, d, hh, mm) => new Date(y, m - 1, d, hh, mm).toISOString();
  const cases = [
    [new Date(now - 20 * 1000).toISOString(), '刚刚'],
    [new Date(now - 5 * 60 * 1000).toISOString(), '5分钟前'],
    [at(2026, 11, 24, 9, 5), '09:05'],
    [at(2026, 11, 23, 22, 30), '昨天 22:30'],
    [at(2026, 11, 20, 8, 0), '11月20日'],
    [at(2025, 12, 31, 8, 0), '2025年12月31日'],
    ['not a time', '']
  ];
  for (const [iso, expected] of cases) assert.equal(format.relativeTime(iso, now), expected, iso);
  assert.equal(format.fullTime(at(2026, 11, 24, 9, 5)), '2026年11月24日 09:05');
});

test('every error message a user can see is Chinese, whatever the server said', () => {
  for (const [code, message] of Object.entries(errors.MESSAGES)) {
    assert.match(message, /[\u4e00-\u9fff]/, code);
  }
  assert.equal(errors.friendlyMessage('a_code_from_a_newer_server'), '出了点问题，请稍后再试');
  assert.equal(errors.friendlyMessage('a_code_from_a_newer_server', 'The server said this in English'), '出了点问题，请稍后再试');
  assert.equal(errors.friendlyMessage(undefined), '出了点问题，请稍后再试');
  assert.equal(errors.friendlyMessage('toString'), '出了点问题，请稍后再试', 'not an Object.prototype name');
  assert.equal(new errors.ApiError('http_502', 502).message, '出了点问题，请稍后再试');
});

test('a re-watched reply skips the reasoning and the answer already shown', () => {
  const seen = [];
  const watch = createWatch({}, 'c1', { onEvent: (name, data) => seen.push([name, data.content || data.code || '']) });
  watch.emit('reasoning', { content: '想一想' });
  watch.emit('delta', { content: '你好' });
  watch.rewind(); // the stream was cut; the reattach's first events carry everything stored
  watch.emit('reasoning', { content: '想一想，再想' });
  watch.emit('delta', { content: '你好，朋友' });
  watch.emit('error', { code: 'cancelled', message: 'the reply was cancelled' });
  assert.deepEqual(seen, [['reasoning', '想一想'], ['delta', '你好'], ['reasoning', '，再想'], ['delta', '，朋友'], ['error', 'cancelled']]);
  const shownSeen = [];
  const again = createWatch({}, 'c1', { onEvent: (name, data) => shownSeen.push([name, data.content || data.message]) }, { delta: 2, reasoning: 3 });
  again.emit('reasoning', { content: '想一想' });
  again.emit('delta', { content: '你好呀' });
  again.emit('error', { code: 'cancelled', message: 'the reply was cancelled' });
  assert.deepEqual(shownSeen, [['delta', '呀'], ['error', errors.friendlyMessage('cancelled')]]);
});
