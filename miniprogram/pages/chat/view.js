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

/** A message as the page shows it; `texts` keeps the plain text outside setData. */
function fromServer(message, texts) {
  var key = newKey();
  var content = message.content || '';
  var role = message.role === 'operator' ? 'operator' : message.role;
  texts[key] = { content: content, reasoning: message.reasoning_content || '', blocks: [] };
  var view = {
    key: key,
    id: message.id,
    role: role,
    text: role === 'user' ? content : '',
    blocks: [],
    reasoning: message.reasoning_content || '',
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
  if (role !== 'user') {
    texts[key].blocks = markdown.splitBlocks(content);
    view.blocks = texts[key].blocks.map(markdown.renderBlock);
  }
  return view;
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
  var calls = { setData: 0, bytes: 0 };

  function append(key, kind, text) {
    var entry = page.texts[key];
    if (!entry || !text) return;
    entry[kind] += text;
    dirty[key] = true;
    if (!timer) timer = setTimeout(flush, FLUSH_MS);
  }

  // The patch for one message: only blocks whose source changed.
  function patchFor(key, patch) {
    var index = page.indexOfKey(key);
    if (index === -1) return;
    var entry = page.texts[key];
    var base = 'messages[' + index + ']';
    var blocks = markdown.splitBlocks(entry.content);
    if (!entry.blocks || blocks.length < entry.blocks.length) {
      patch[base + '.blocks'] = blocks.map(markdown.renderBlock);
    } else {
      blocks.forEach(function (source, k) {
        if (source !== entry.blocks[k]) patch[base + '.blocks[' + k + ']'] = markdown.renderBlock(source);
      });
    }
    entry.blocks = blocks;
    var shown = page.data.messages[index];
    if (shown.reasoning !== entry.reasoning) patch[base + '.reasoning'] = entry.reasoning;
    if (!shown.hotline && mentionsHotline(entry.content)) patch[base + '.hotline'] = true;
  }

  function flush(extra) {
    if (timer) { clearTimeout(timer); timer = null; }
    var patch = extra || {};
    Object.keys(dirty).forEach(function (key) { patchFor(key, patch); });
    dirty = {};
    if (page.following && Object.keys(patch).length) patch.scrollTop = page.nextScrollTop();
    if (!Object.keys(patch).length) return;
    calls.setData += 1;
    calls.bytes += JSON.stringify(patch).length;
    page.setData(patch);
  }

  // Replaces a message's text wholesale (a cancelled reply's stored text).
  function replace(key, content) {
    var entry = page.texts[key];
    if (!entry) return;
    entry.content = content;
    entry.blocks = null; // re-render every block
    dirty[key] = true;
  }

  return { append: append, flush: flush, replace: replace, calls: calls };
}

module.exports = { fromServer: fromServer, localUser: localUser, localReply: localReply, createRenderer: createRenderer, newKey: newKey };
