// Unit tests of the streaming decoder the mini-program uses on wx.request chunks.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Utf8Decoder } = require('../utils/utf8.js');
const { SseDecoder } = require('../utils/sse.js');

const bytes = (text) => new Uint8Array(Buffer.from(text, 'utf8'));
const buffer = (u8) => u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength);

function decodeInPieces(input, cuts) {
  const decoder = new SseDecoder();
  const events = [];
  let start = 0;
  for (const cut of [...cuts, input.length]) {
    events.push(...decoder.push(buffer(input.slice(start, cut))));
    start = cut;
  }
  return events;
}

test('every split position of a multi-byte string decodes to the same text', () => {
  const text = '你好，世界🌏！Ça va? 한국어 ✓';
  const input = bytes(text);
  for (let i = 0; i <= input.length; i++) {
    const decoder = new Utf8Decoder();
    const out = decoder.decode(input.slice(0, i)) + decoder.decode(input.slice(i));
    assert.equal(out, text, `split at byte ${i}`);
  }
  for (let i = 0; i <= input.length; i++) {
    for (let j = i; j <= input.length; j++) {
      const decoder = new Utf8Decoder();
      const out = decoder.decode(input.slice(0, i)) + decoder.decode(input.slice(i, j)) + decoder.decode(input.slice(j));
      assert.equal(out, text, `split at bytes ${i} and ${j}`);
    }
  }
});

test('a character split across chunks is held back until complete', () => {
  const decoder = new Utf8Decoder();
  const emoji = bytes('🌏');
  assert.equal(decoder.decode(emoji.slice(0, 1)), '');
  assert.equal(decoder.decode(emoji.slice(1, 3)), '');
  assert.equal(decoder.decode(emoji.slice(3)), '🌏');
});

test('SSE events survive every split position, with CRLF, LF and comments', () => {
  const stream = 'event: delta\ndata: {"content":"你好🙂"}\n\n: keepalive\n\nevent: done\r\ndata: {"ok":true}\r\n\r\n';
  const input = bytes(stream);
  const whole = decodeInPieces(input, []);
  assert.deepEqual(whole, [
    { event: 'delta', data: '{"content":"你好🙂"}' },
    { event: 'done', data: '{"ok":true}' }
  ]);
  for (let i = 0; i <= input.length; i++) {
    assert.deepEqual(decodeInPieces(input, [i]), whole, `split at ${i}`);
  }
});

test('multi-line data joins with newlines', () => {
  const events = decodeInPieces(bytes('data: 第一行\ndata: 第二行\n\n'), [5]);
  assert.deepEqual(events, [{ event: 'message', data: '第一行\n第二行' }]);
});

test('an event split across three chunks arrives once, whole', () => {
  const input = bytes('event: delta\ndata: {"content":"三段"}\n\n');
  const decoder = new SseDecoder();
  assert.deepEqual(decoder.push(buffer(input.slice(0, 9))), []);
  assert.deepEqual(decoder.push(buffer(input.slice(9, 31))), []);
  assert.deepEqual(decoder.push(buffer(input.slice(31))), [{ event: 'delta', data: '{"content":"三段"}' }]);
});

test('comments alone produce no events', () => {
  const decoder = new SseDecoder();
  assert.deepEqual(decoder.push(buffer(bytes(': keepalive\n\n: keepalive\n\n'))), []);
});
