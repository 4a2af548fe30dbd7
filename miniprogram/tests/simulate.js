// Renders the mini-program's real pages with WeChat's miniprogram-simulate (jsdom + the
// DevTools WXML compiler). Pages are written with Page(); a small adapter registers each
// as a Component, which is what miniprogram-simulate renders. Lifecycle hooks (onLoad,
// onShow, onHide, onUnload, onPullDownRefresh) are called by the tests, as WeChat would.
const path = require('node:path');
const { JSDOM } = require('jsdom');

const ROOT = path.join(__dirname, '..');
const dom = new JSDOM('<!doctype html><html><body></body></html>', { pretendToBeVisual: true });
global.window = dom.window;
global.document = dom.window.document;
for (const name of ['Event', 'Element', 'Node', 'HTMLElement', 'MutationObserver']) {
  if (!(name in global)) global[name] = dom.window[name];
}
// Node has its own CustomEvent; the simulator dispatches jsdom's.
global.CustomEvent = dom.window.CustomEvent;
const simulate = require('miniprogram-simulate');

let currentApp = null;
global.getApp = () => currentApp;
global.getCurrentPages = () => [];
global.Page = (definition) => {
  const methods = {};
  for (const [key, value] of Object.entries(definition)) if (typeof value === 'function') methods[key] = value;
  global.Component({ data: definition.data || {}, methods });
};

function nodesText(nodes) {
  return (nodes || []).map((n) => (n.type === 'text' ? n.text : nodesText(n.children))).join('');
}

// What the user reads: the DOM's text, and for <rich-text> (drawn by WeChat's native layer,
// left empty by the simulator) the text of the nodes it was given.
function screenText(node) {
  if (node.nodeType === 3) return node.data;
  if (node.tagName === 'WX-RICH-TEXT') {
    const attrs = (node.__wxElement && node.__wxElement._vt && node.__wxElement._vt.attrs) || [];
    const nodes = attrs.filter((a) => a.name === 'nodes')[0];
    return nodesText(nodes && nodes.value);
  }
  return Array.from(node.childNodes).map(screenText).join('');
}

// Renders pages/<name>/index with `app` as getApp(). Returns the page instance (`this`
// in the page's code) with `dom` and `$(selector)` for what is on screen.
function renderPage(name, app) {
  currentApp = app;
  const id = simulate.load(path.join(ROOT, 'pages', name, 'index'), {
    rootPath: ROOT, compiler: 'official'
  });
  const comp = simulate.render(id);
  comp.attach(document.createElement('parent-wrapper'));
  const page = comp.instance;
  page.dom = comp.dom;
  // Elements by their WXSS class (the simulator prefixes classes with the tag, `main--`).
  page.find = (cls) => comp.dom.querySelector('.main--' + cls);
  page.findAll = (cls) => Array.from(comp.dom.querySelectorAll('.main--' + cls));
  page.text = () => screenText(comp.dom);
  // Taps the element with this WXSS class (the nth one) the way WeChat does: its data-*
  // become event.currentTarget.dataset. Resolves after the handler has run.
  page.tap = (cls, nth = 0) => {
    const target = comp.querySelectorAll('.' + cls)[nth];
    if (!target) throw new Error('nothing on screen has class ' + cls);
    target.dispatchEvent('tap');
    return new Promise((resolve) => setTimeout(resolve, 0));
  };
  return page;
}

module.exports = { renderPage, simulate, ROOT };
