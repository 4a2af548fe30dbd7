// Benchmark (not a test): what the chat page sends through setData for a streamed reply,
// against the old way (one setData per delta carrying the whole text), in the same run.
// Run: node miniprogram/tests/bench-setdata.js [characters] [delta size] [ms between deltas]
const view = require('../pages/chat/view.js');

const total = Number(process.argv[2] || 2000);
const size = Number(process.argv[3] || 2);
const gapMs = Number(process.argv[4] || 10);

function fakePage() {
  const page = {
    data: { messages: [] }, texts: {}, following: true, scrollTick: 0, calls: 0, bytes: 0,
    nextScrollTop() { page.scrollTick += 1; return page.scrollTick; },
    indexOfKey(key) { return page.data.messages.findIndex((m) => m.key === key); },
    setData(patch) {
      page.calls += 1;
      page.bytes += Buffer.byteLength(JSON.stringify(patch));
      for (const [path, value] of Object.entries(patch)) if (path === 'messages') page.data.messages = value;
    }
  };
  return page;
}

async function main() {
  // One long paragraph: the worst case (a paragraph is re-rendered until it is complete).
  const text = Array.from({ length: total / size }, () => '你好朋友'.slice(0, size));
  // Baseline: the old page, one setData per delta with the whole text so far.
  let baseline = { calls: 0, bytes: 0 };
  let sofar = '';
  for (const piece of text) {
    sofar += piece;
    baseline.calls += 1;
    baseline.bytes += Buffer.byteLength(JSON.stringify({ 'messages[1].content': sofar, scrollInto: 'm1' }));
  }
  // Now: the page's buffer, deltas arriving every gapMs.
  const page = fakePage();
  const reply = view.localReply(page.texts);
  page.setData({ messages: [view.localUser('问题', page.texts), reply] });
  page.calls = 0;
  page.bytes = 0;
  const buffer = view.createRenderer(page);
  for (const piece of text) {
    buffer.append(reply.key, 'content', piece);
    await new Promise((resolve) => setTimeout(resolve, gapMs));
  }
  buffer.flush();
  const row = (name, r) => `${name.padEnd(10)} ${String(r.calls).padStart(6)} calls ${String(r.bytes).padStart(9)} bytes`;
  console.log(`${total} characters in ${text.length} deltas, one every ${gapMs} ms`);
  console.log(row('baseline', baseline));
  console.log(row('now', page));
  console.log(`ratio now/baseline: calls ${(page.calls / baseline.calls).toFixed(3)}, bytes ${(page.bytes / baseline.bytes).toFixed(3)}`);
}

main();
