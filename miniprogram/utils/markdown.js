// Markdown in replies, as <rich-text> nodes (WeChat's own renderer): no HTML strings, so
// nothing a model writes can become markup. Covers what companions write: paragraphs,
// headings, lists, quotes, code blocks, **bold**, *italic*, `code`. A reply is split into
// blocks so a streaming update re-renders only the block still growing.

/** Splits text into blocks at blank lines, keeping ``` fences whole. */
function splitBlocks(text) {
  var blocks = [];
  var current = [];
  var fenced = false;
  (text || '').split('\n').forEach(function (line) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    if (!fenced && line.trim() === '' && !/^\s*```/.test(line)) {
      if (current.length) blocks.push(current.join('\n'));
      current = [];
      return;
    }
    current.push(line);
  });
  if (current.length) blocks.push(current.join('\n'));
  return blocks;
}

function textNode(text) { return { type: 'text', text: text }; }

function el(name, cls, children) {
  return { name: name, attrs: { class: cls }, children: children };
}

/** **bold**, *italic*, `code` → nodes. */
function inline(text) {
  var nodes = [];
  var pattern = /(\*\*([^*]+)\*\*|`([^`]+)`|\*([^*\s][^*]*)\*)/g;
  var last = 0;
  var match;
  while ((match = pattern.exec(text))) {
    if (match.index > last) nodes.push(textNode(text.slice(last, match.index)));
    if (match[2]) nodes.push(el('strong', 'md-strong', [textNode(match[2])]));
    else if (match[3]) nodes.push(el('code', 'md-code', [textNode(match[3])]));
    else nodes.push(el('em', 'md-em', [textNode(match[4])]));
    last = match.index + match[0].length;
  }
  if (last < text.length) nodes.push(textNode(text.slice(last)));
  return nodes;
}

function lines(block) { return block.split('\n'); }

/** One block → rich-text nodes. */
function renderBlock(block) {
  var fence = /^\s*```[^\n]*\n?([\s\S]*?)(\n\s*```\s*)?$/.exec(block);
  if (fence && /^\s*```/.test(block)) return [el('pre', 'md-pre', [textNode(fence[1])])];
  var heading = /^(#{1,6})\s+(.*)$/.exec(block);
  if (heading && block.indexOf('\n') === -1) return [el('h' + Math.min(heading[1].length + 2, 6), 'md-h', inline(heading[2]))];
  var all = lines(block);
  if (all.every(function (l) { return /^\s*([-*+]|\d+[.)])\s+/.test(l); })) {
    var ordered = /^\s*\d/.test(all[0]);
    var items = all.map(function (l) { return el('li', 'md-li', inline(l.replace(/^\s*([-*+]|\d+[.)])\s+/, ''))); });
    return [el(ordered ? 'ol' : 'ul', 'md-list', items)];
  }
  if (all.every(function (l) { return /^\s*>/.test(l); })) {
    return [el('blockquote', 'md-quote', inline(all.map(function (l) { return l.replace(/^\s*>\s?/, ''); }).join('\n')))];
  }
  return [el('p', 'md-p', inline(block))];
}

module.exports = { splitBlocks: splitBlocks, renderBlock: renderBlock, inline: inline };
