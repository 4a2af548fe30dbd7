// What the chat page shows for a message, and the buffer that turns a stream of deltas
// into few, small setData calls: at most one per FLUSH_MS, carrying only the Markdown
// blocks that changed (a 2,000-character reply is not re-sent on every delta).
var markdown = require('../../utils/markdown.js');
var errors = require('../../utils/errors.js');
var config = require('../../config.js');

var FLUSH_MS = 50;
var counter = 0;

function newKey() {
  counter += 1;
  return 'k' + Date.now().toString(36) + counter;
}

function labelText(label) {
  return label && label.text ? label.text : '';
}

function mentionsHotline(text) {
  return !!config.hotline && (text || '').indexOf(config.hotline) !== -1;
}

// A growing paragraph is shown as plain text in pieces of this size, so an update carries
// only the last piece; once the paragraph (or the reply) is complete it becomes Markdown.
var SEGMENT = 100;

function segments(text) {
  var pieces = [];
  for (var i = 0; i < text.length; i += SEGMENT) pieces.push(text.slice(i, i + SEGMENT));
  return pieces;
}

// Sets `path` to `next`, sending only the items that changed (all of it when it shrank).
function patchList(patch, path, previous, next, render) {
  if (!previous || next.length < previous.length) {
    patch[path] = render ? next.map(render) : next;
    return;
  }
  next.forEach(function (item, k) {
    if (item !== previous[k]) patch[path + '[' + k + ']'] = render ? render(item, k) : item;
  });
}

// A Markdown block as the template lists it (`id` is its wx:key).
function block(source, index) {
  return { id: index, nodes: markdown.renderBlock(source) };
}

/** A message as the page shows it; `texts` keeps the plain text outside setData. */
function fromServer(message, texts) {
  var key = newKey();
  var content = message.content || '';
  var reasoning = message.reasoning_content || '';
  var role = message.role === 'operator' ? 'operator' : message.role;
  var sources = role === 'user' ? [] : markdown.splitBlocks(content);
  texts[key] = { content: content, reasoning: reasoning, blocks: sources, tail: [], thoughts: segments(reasoning), final: message.status !== 'streaming' };
  return {
    key: key,
    id: message.id,
    role: role,
    text: role === 'user' ? content : '',
    blocks: sources.map(block),
    tail: [],
    thoughts: texts[key].thoughts,
    reasoningOpen: false,
    status: message.status,
    note: message.error ? errors.friendlyMessage(message.error.code) : '',
    errorCode: message.error ? message.error.code : '',
    label: labelText(message.label),
    human: !!(message.label && message.label.author === 'human'),
    hotline: role !== 'user' && mentionsHotline(content),
    lost: false,
    watching: false
  };
}

function localUser(content, texts) {
  return fromServer({ id: '', role: 'user', content: content, status: 'complete' }, texts);
}

function localReply(texts) {
  return fromServer({ id: '', role: 'assistant', content: '', status: 'streaming' }, texts);
}

// Deltas for each message, flushed together.
function createRenderer(page) {
  var dirty = {};
  var timer = null;

  function append(key, kind, text) {
    var entry = page.texts[key];
    if (!entry || !text) return;
    entry[kind] += text;
    dirty[key] = true;
    if (!timer) timer = setTimeout(flush, FLUSH_MS);
  }

  // The patch for one message: completed paragraphs as Markdown blocks (only those that
  // changed), the growing one as plain-text pieces (only the last, usually).
  function patchFor(key, patch) {
    var index = page.indexOfKey(key);
    if (index === -1) return;
    var entry = page.texts[key];
    var base = 'messages[' + index + ']';
    var sources = markdown.splitBlocks(entry.content);
    var growing = '';
    if (!entry.final && sources.length && !/\n\s*\n\s*$/.test(entry.content)) growing = sources.pop();
    patchList(patch, base + '.blocks', entry.blocks, sources, block);
    entry.blocks = sources;
    var tail = segments(growing);
    patchList(patch, base + '.tail', entry.tail, tail);
    entry.tail = tail;
    var thoughts = segments(entry.reasoning);
    patchList(patch, base + '.thoughts', entry.thoughts, thoughts);
    entry.thoughts = thoughts;
    if (!page.data.messages[index].hotline && mentionsHotline(entry.content)) patch[base + '.hotline'] = true;
  }

  function flush(extra) {
    if (timer) { clearTimeout(timer); timer = null; }
    var patch = extra || {};
    Object.keys(dirty).forEach(function (key) { patchFor(key, patch); });
    dirty = {};
    if (page.following && Object.keys(patch).length) patch.scrollTop = page.nextScrollTop();
    if (!Object.keys(patch).length) return;
    page.setData(patch);
  }

  // The reply ended: everything it says becomes Markdown at the next flush.
  function complete(key) {
    var entry = page.texts[key];
    if (!entry) return;
    entry.final = true;
    dirty[key] = true;
  }

  // Replaces a message's text wholesale (a stopped reply's stored text).
  function replace(key, content) {
    var entry = page.texts[key];
    if (!entry) return;
    entry.content = content;
    entry.blocks = null; // re-render every block
    entry.final = true;
    dirty[key] = true;
  }

  // Watching again: the reply may grow.
  function reopen(key) {
    var entry = page.texts[key];
    if (entry) entry.final = false;
  }

  return { append: append, flush: flush, complete: complete, reopen: reopen, replace: replace };
}

module.exports = { fromServer: fromServer, localUser: localUser, localReply: localReply, createRenderer: createRenderer, newKey: newKey };
